"""Compare two pytest-benchmark JSON files (`--benchmark-json PATH`): `s4dconf bench compare A.json B.json`.

Benchmarks are matched by `fullname`. For each pair the ratio is

    ratio = stat(B) / stat(A)        (stat: median by default, or mean, min, p50, p90, p99, max; seconds per call)

so ratio > 1 means B is slower. With threshold t the verdict is "regression" when ratio > 1 + t, "improvement" when
ratio < 1 / (1 + t) (the same factor the other way), else "same". The text shows the benchmarks of both runs first
(their verdicts counted, then the table), then counts by group those found in one file only ("only in A" / "only
in B"; the JSON lists them); two runs without a benchmark in common are refused, with what each holds.
p50/p90/p99/max come from the per-call timings (stats.data) when the file keeps them, else from
extra_info["latency_s"], which the benchmarks record at measure time. Those run with `--benchmark-disable` (no
stats) are "not timed" and never compared. Only time stats are compared; throughput figures in extra_info follow
from them. Runs from different machines (node, machine, processor, cpu.brand_raw, system, release, and
gpu/gpus/cuda when recorded; one recorded in one run only counts as different) are refused: their ratios measure
the machines, not the code. `--force` compares anyway and the report says so.

CI procedure: in one CI job, on one machine, run the smoke set twice, the baseline (the base commit, e.g. a
`git worktree` of it) and then the current tree, and compare:

    pytest -m benchmark conformance/benchmarks/test_bench_modes.py --bench-set smoke --benchmark-json base.json
    pytest -m benchmark conformance/benchmarks/test_bench_modes.py --bench-set smoke --benchmark-json cur.json
    s4dconf bench compare base.json cur.json --threshold 1.0 --fail-on-regression --json reports/out/compare.json

CI uses --threshold 1.0 (fail only when B is more than 2x slower; "improvement" below 0.5x). The reason: the smoke
set takes few rounds, and a shared CI runner (noisy neighbours, frequency scaling, cache and thermal state) moves
the median of a few rounds by tens of percent between two back-to-back runs of the same code; a 25% bound would
fail on noise alone. The regressions CI must catch are multiples, not percents (a Python loop per step, a lost
vectorisation, an O(L^2) path, a device copy per token), and 2x still catches them. The default, 0.25, is for
humans comparing full runs (more rounds) on a quiet machine they control, where a 25% change is real.
"""
from __future__ import annotations

import argparse
import json
import math
import textwrap
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from s4dconf.reference.npzio import BENCH_MAX_BYTES, atomic_write, check_output_path, read_text_file
from s4dconf.reference.validate import S4DInputError, json_object
from s4dconf.reports.tables import text_table

REQUIRED_KEYS = ("machine_info", "commit_info", "benchmarks", "datetime", "version")
MACHINE_FIELDS = ("node", "machine", "processor", "system", "release")
GPU_FIELDS = ("gpu", "gpus", "cuda")
INFO_FIELDS = ("backend", "mode", "config", "batch", "L", "device")
STATS = ("median", "mean", "min", "p50", "p90", "p99", "max")
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}  # max: stats["max"] when kept, else as these
FORCED_NOTE = "FORCED: runs from different machines; ratios are not meaningful"
WIDTH = 100  # the CLI's line width (s4dconf/check_output.py)
VERDICTS = ("regression", "improvement", "same", "not timed")  # of a benchmark in both runs
ONLY = ("only in A", "only in B")


@dataclass(frozen=True)
class Bench:
    fullname: str
    name: str
    group: str | None
    params: dict | None
    extra_info: dict
    stats: dict | None  # None: not timed (--benchmark-disable)


@dataclass(frozen=True)
class BenchRun:
    path: str
    machine_info: dict
    commit_info: dict
    datetime: str
    version: str
    benchmarks: dict  # fullname -> Bench, in file order


def load_run(path) -> BenchRun:
    """Read a pytest-benchmark JSON file; S4DInputError when it is missing, not JSON, not one or empty."""
    p = Path(path)
    if not p.is_file():
        raise S4DInputError(f"benchmark file {p} does not exist" + (" (it is a directory)" if p.is_dir() else ""))
    text = read_text_file(p, "benchmark file", BENCH_MAX_BYTES)
    if not text.strip():
        raise S4DInputError(f"benchmark file {p} is empty (a run with --benchmark-disable leaves it empty)")
    doc = json_object(text, f"benchmark file {p}")
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise S4DInputError(f"{p} is not a pytest-benchmark file: missing key(s) {', '.join(missing)}")
    if not isinstance(doc["machine_info"], dict) or not isinstance(doc["benchmarks"], list):
        raise S4DInputError(f"{p} is not a pytest-benchmark file: machine_info must be an object, benchmarks a list")
    if not doc["benchmarks"]:
        raise S4DInputError(f"benchmark file {p} has no benchmarks")
    if doc["commit_info"] is not None and not isinstance(doc["commit_info"], dict):
        raise S4DInputError(f"{p} is not a pytest-benchmark file: commit_info must be an object or null, got "
                            f"{type(doc['commit_info']).__name__}")
    benches = {}
    for i, b in enumerate(doc["benchmarks"]):
        bench = _parse_bench(p, i, b)
        if bench.fullname in benches:
            raise S4DInputError(f"{p}: benchmark {bench.fullname!r} appears twice")
        benches[bench.fullname] = bench
    return BenchRun(str(p), doc["machine_info"], doc["commit_info"] or {}, str(doc["datetime"]),
                    str(doc["version"]), benches)


def _parse_bench(p: Path, i: int, b) -> Bench:
    """One entry of "benchmarks", checked for the types every reader relies on; S4DInputError naming the file and
    the entry (its index, and its fullname once that is known to be a string)."""
    if not isinstance(b, dict):
        raise S4DInputError(f"{p}: benchmarks[{i}] is a {type(b).__name__}, not an object")
    for k in ("name", "fullname"):
        if k not in b:
            raise S4DInputError(f"{p}: benchmarks[{i}] is missing key {k!r}")
        if not isinstance(b[k], str) or not b[k]:
            raise S4DInputError(f"{p}: benchmarks[{i}]: {k!r} must be a non-empty string, got "
                                f"{type(b[k]).__name__} {b[k]!r}"[:300])
    where = f"{p}: benchmark {b['fullname']!r} (benchmarks[{i}])"
    stats = b.get("stats")
    if stats is not None and not isinstance(stats, dict):
        raise S4DInputError(f"{where} has stats that are not an object")
    for k, kinds, want in (("extra_info", dict, "an object"), ("params", dict, "an object"),
                           ("group", str, "a string")):
        v = b.get(k)
        if v is not None and not isinstance(v, kinds):
            raise S4DInputError(f"{where}: {k!r} must be {want} or null, got {type(v).__name__} {v!r}"[:300])
    return Bench(b["fullname"], b["name"], b.get("group"), b.get("params"), b.get("extra_info") or {}, stats)


def machine_key(machine_info: dict) -> dict:
    """The fields that identify a machine; cpu.brand_raw is None without py-cpuinfo; gpu fields only when present
    (at the top level or in the project's `s4dconf` entry)."""
    key = {f: machine_info.get(f) for f in MACHINE_FIELDS}
    cpu = machine_info.get("cpu")
    key["cpu.brand_raw"] = cpu.get("brand_raw") if isinstance(cpu, dict) else None
    ours = machine_info.get("s4dconf") if isinstance(machine_info.get("s4dconf"), dict) else {}
    for f in GPU_FIELDS:
        if f in machine_info:
            key[f] = machine_info[f]
        elif f in ours:
            key[f] = ours[f]
    return key


def machine_differences(a: dict, b: dict) -> list[str]:
    """'field: <value> in A, <value> in B' for each field of machine_key that differs; a field recorded in one run
    only differs ("not recorded")."""
    ka, kb = machine_key(a), machine_key(b)

    def shown(v) -> str:
        return "not recorded" if v is None else repr(v)

    return [f"{f}: {shown(ka.get(f))} in A, {shown(kb.get(f))} in B" for f in dict.fromkeys([*ka, *kb])
            if ka.get(f) != kb.get(f)]


def group_of(bench: Bench) -> str:
    """The benchmark's pytest-benchmark group, else its test function (the name without [params])."""
    return bench.group or bench.name.split("[", 1)[0]


def group_counts(groups) -> str:
    """'group (count), ...' of group labels (group_of), in first-seen order: what a set of benchmarks holds."""
    return ", ".join(f"{g} ({n})" for g, n in Counter(groups).items())


def _wrapped(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False, break_long_words=False)


def _holds(label: str, run: BenchRun) -> str:
    n = len(run.benchmarks)
    return _wrapped(f"{label} = {run.path}: {n} benchmark{'s' if n != 1 else ''}: "
                    f"{group_counts(map(group_of, run.benchmarks.values()))}")


def nothing_in_common(a: BenchRun, b: BenchRun) -> str:
    """The refusal when no benchmark is in both runs: what each holds, and what to compare instead."""
    return "\n".join([
        "nothing to compare: A and B have no benchmark in common",
        "(benchmarks are matched by their full pytest name, file::test[params]); they hold:",
        _holds("A", a), _holds("B", b),
        _wrapped("Compare two runs of the same benchmark set: e.g. a fresh `tox -e bench` "
                 "(reports/out/benchmark.json) with a committed full run in reports/benchmarks/, or two "
                 "`tox -e bench-lava` runs. --force does not help here: it only lets runs of different machines "
                 "be compared.", indent="")])


def different_machines(a: BenchRun, b: BenchRun, diffs: list[str], n_common: int) -> str:
    """The refusal of runs from different machines: which fields differ, what they share, what to do."""
    return "\n".join([
        "A and B were recorded on different machines (their machine records differ), so ratios between them",
        "would measure the machines, not the code:", *(_wrapped(d) for d in diffs),
        _wrapped(f"They share {n_common} benchmark{'s' if n_common != 1 else ''} (A = {a.path} has "
                 f"{len(a.benchmarks)}, B = {b.path} has {len(b.benchmarks)}). Compare two runs of one machine (run the same set on this machine), or "
                 "add --force to compare anyway (the output is then marked FORCED).", indent="")])


def verdict(ratio: float, threshold: float) -> str:
    if ratio > 1.0 + threshold:
        return "regression"
    if ratio < 1.0 / (1.0 + threshold):
        return "improvement"
    return "same"


@dataclass(frozen=True)
class Row:
    fullname: str
    a: float | None  # seconds (the chosen stat); None: absent or not timed
    b: float | None
    ratio: float | None
    verdict: str  # regression | improvement | same | not timed | only in A | only in B
    info: dict = field(default_factory=dict)  # the key extra_info fields, for display
    group: str = ""  # group_of the benchmark


def _percentile(run: BenchRun, bench: Bench, stat: str):
    """p50/p90/p99/max of the per-call seconds: from stats.data when kept (numpy's linear percentile), else from
    extra_info["latency_s"] (recorded at measure time: committed runs strip stats.data); None when neither."""
    data = bench.stats.get("data")
    if isinstance(data, list) and data and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data):
        import numpy as np

        return float(np.max(data)) if stat == "max" else float(np.percentile(data, PERCENTILES[stat]))
    lat = bench.extra_info.get("latency_s")
    if isinstance(lat, dict) and stat in lat:
        return lat[stat]
    if stat == "max" and "max" in bench.stats:
        return bench.stats["max"]
    raise S4DInputError(f"{run.path}: benchmark {bench.fullname!r} has neither stats.data nor extra_info"
                        f"['latency_s'][{stat!r}]: {stat} cannot be compared (run it again with this version)")


def _stat(run: BenchRun, bench: Bench, stat: str) -> float | None:
    if bench.stats is None:
        return None
    v = _percentile(run, bench, stat) if stat in PERCENTILES or stat == "max" else bench.stats.get(stat)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise S4DInputError(f"{run.path}: benchmark {bench.fullname!r} has {stat}={v!r}; need a time > 0")
    return float(v)


def _row(name: str, a: BenchRun, b: BenchRun, stat: str, threshold: float) -> Row:
    ba, bb = a.benchmarks.get(name), b.benchmarks.get(name)
    extra = (bb or ba).extra_info
    info, group = {k: extra[k] for k in INFO_FIELDS if k in extra}, group_of(bb or ba)
    if ba is None or bb is None:
        return Row(name, None if ba is None else _stat(a, ba, stat), None if bb is None else _stat(b, bb, stat),
                   None, "only in B" if ba is None else "only in A", info, group)
    ta, tb = _stat(a, ba, stat), _stat(b, bb, stat)
    if ta is None or tb is None:
        return Row(name, ta, tb, None, "not timed", info, group)
    return Row(name, ta, tb, tb / ta, verdict(tb / ta, threshold), info, group)


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    stat: str
    threshold: float
    forced: bool
    machine_differences: list
    rows: list

    def counts(self) -> dict:
        out: dict = {}
        for r in self.rows:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "stat": self.stat, "threshold": self.threshold,
                "ratio": "stat(B) / stat(A); > 1 is slower", "forced": self.forced,
                "note": FORCED_NOTE if self.forced else None, "machine_differences": self.machine_differences,
                "counts": self.counts(), "rows": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    def to_text(self) -> str:
        """What the CLI prints: the two runs and what they share first, the verdicts of the benchmarks in both, the
        table of those, then the ones in one run only, counted by group."""
        t, counts = self.threshold, self.counts()
        common = [r for r in self.rows if r.verdict not in ONLY]
        head = [f"A: {self.a}", f"B: {self.b}"]
        if Path(self.a).resolve() == Path(self.b).resolve():
            head.append("A and B are the same file: every ratio is 1 by construction")
        if self.forced:
            head += [FORCED_NOTE, *(_wrapped(d) for d in self.machine_differences)]
        head += [f"in common: {len(common)} benchmark{'s' if len(common) != 1 else ''}: "
                 + ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
                 + "".join(f"; {counts.get(v, 0)} {v}" for v in ONLY),
                 f"ratio = {self.stat}(B) / {self.stat}(A); regression > {1 + t:.3g}, improvement < {1 / (1 + t):.3g}"]
        # the test's name, or file::name where two files share it; extra_info (backend, mode, ...) is in the JSON
        names = Counter(r.fullname.partition("::")[2] for r in common)
        table = [("benchmark", "A", "B", "ratio", "verdict")]
        for r in common:
            name = r.fullname.partition("::")[2]
            ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
            table.append((_short(r.fullname) if names[name] > 1 or not name else name, _fmt_time(r.a),
                          _fmt_time(r.b), ratio, r.verdict))
        tail = [_wrapped(f"{v} ({counts[v]}): {group_counts(r.group for r in self.rows if r.verdict == v)}",
                         indent="") for v in ONLY if v in counts]
        return "\n".join([*head, "", text_table(table, width=WIDTH), *([""] + tail if tail else [])]) + "\n"

    def exit_code(self, fail_on_regression: bool) -> int:
        return 1 if fail_on_regression and any(r.verdict == "regression" for r in self.rows) else 0


def _short(fullname: str) -> str:
    """file.py::test[params] without the file's folders (the table's first column)."""
    path, sep, rest = fullname.partition("::")
    return path.rsplit("/", 1)[-1] + sep + rest


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.4g} {unit}"
    return f"{s / 1e-9:.4g} ns"


def compare(a: BenchRun, b: BenchRun, threshold: float = 0.25, stat: str = "median", force=False) -> Comparison:
    """Compare B against A (see the module docstring); S4DInputError for a bad stat or threshold, or for runs
    from different machines unless force."""
    if stat not in STATS:
        raise S4DInputError(f"stat must be one of {', '.join(STATS)}, got {stat!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < math.inf:
        raise S4DInputError(f"threshold must be a finite number > 0, got {threshold!r}")
    common = [n for n in a.benchmarks if n in b.benchmarks]
    if not common:
        raise S4DInputError(nothing_in_common(a, b))
    diffs = machine_differences(a.machine_info, b.machine_info)
    if diffs and not force:
        raise S4DInputError(different_machines(a, b, diffs, len(common)))
    # the benchmarks of both runs first (in A's order), then those of one run only
    names = common + [n for n in a.benchmarks if n not in b.benchmarks] + [n for n in b.benchmarks
                                                                             if n not in a.benchmarks]
    rows = [_row(n, a, b, stat, float(threshold)) for n in names]
    return Comparison(a.path, b.path, stat, float(threshold), bool(diffs), diffs, rows)


def cmd_bench_compare(args) -> int:
    if args.json:  # before any reading: an unwritable output or one that is an input fails first
        check_output_path(args.json, args.a, args.b, what="comparison JSON (--json)")
    c = compare(load_run(args.a), load_run(args.b), args.threshold, args.stat, args.force)
    print(c.to_text(), end="")
    if args.json:
        atomic_write(args.json, lambda f: f.write(c.to_json().encode()), "comparison JSON (--json)", make_dirs=True)
    return c.exit_code(args.fail_on_regression)


def register(subparsers) -> None:
    """Add `bench compare` to the CLI's subparsers (dest 'command'); the CLI maps S4DInputError to exit 2."""
    p = subparsers.add_parser("bench", help="pytest-benchmark JSON files: compare two runs of one machine")
    actions = p.add_subparsers(dest="action", required=True)
    c = actions.add_parser("compare", help="ratio B/A per benchmark with a verdict; exit 1 on regression if asked",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("a", metavar="A.json", help="baseline pytest-benchmark JSON")
    c.add_argument("b", metavar="B.json", help="current pytest-benchmark JSON")
    c.add_argument("--threshold", type=float, default=0.25,
                   help="regression when B/A > 1 + T, improvement when B/A < 1/(1 + T) (default 0.25; CI: 1.0)")
    c.add_argument("--stat", choices=STATS, default="median", help="time statistic compared (default median; p50/p90/p99/max from stats.data or extra_info latency_s)")
    c.add_argument("--force", action="store_true", help="compare runs from different machines anyway")
    c.add_argument("--json", metavar="OUT", help="also write the comparison as JSON to OUT")
    c.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any benchmark regressed")
    c.set_defaults(func=cmd_bench_compare)
