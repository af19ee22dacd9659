"""The report's sections about performance and the verdict: benchmarks (streaming vs whole-sample, crossover),
claims with their figures, resources, and the summary block that opens the page (SPEC.md sections 19-21)."""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from pathlib import Path

from s4dconf.backends import backend_names, get_backend
from s4dconf.reference.provenance import grade_text

from . import plots
from .claims import (VERDICTS, BenchFigure, audited, crossover_points, decision_points, load_claims,
                     time_to_decision)
from .page import Details, MarkdownFragment, Paragraph, ReportSection, SubHeading, TableBlock, TableCell
from .report_inputs import LoadedInput, NUMERIC_EXTRA, RunOrigin, expect_input, fmt_number, not_run, safe_name
from .sections import accuracy_headline, accuracy_source, accuracy_table_of, conformance_records


# ---------------------------------------------------------------------------------------------------------------
# Benchmarks

def _int_or(x, default: int) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else default


def load_bench_rows(benches: list[LoadedInput]) -> tuple[list[dict], list[str]]:
    """One dict per timed benchmark (its extra_info, plus file, node, name, mean_s), and the names of those left
    out: untimed ones (stats None) silently, those without backend, mode and a positive integer batch by name.
    `benches` hold the BenchRun of `compare.load_run`."""
    rows, skipped = [], []
    for b in benches:
        node = b.data.machine_info.get("node", "?")
        for e in b.data.benchmarks.values():
            info = e.extra_info
            if not e.stats:
                continue
            if "backend" not in info or "mode" not in info or _int_or(info.get("batch"), 0) < 1:
                skipped.append(f"{Path(b.path).name}: {e.name}")
                continue
            numbers = {k: info[k] if isinstance(info[k], (int, float)) and info[k] > 0 else None
                       for k in NUMERIC_EXTRA if k in info}  # a figure that is not a positive number is not drawn
            rows.append({**info, **numbers, "file": Path(b.path).name, "path_of_run": b.path, "node": node,
                         "name": e.name, "mean_s": e.stats.get("mean")})
    return rows, skipped


def _figures(rows: list[dict]) -> list[BenchFigure]:
    """The rows of `load_bench_rows` as the claims read benchmarks."""
    return [BenchFigure(r["file"], r["name"], r, r["node"]) for r in rows]


def benchmark_crossovers(rows: list[dict]) -> list[dict]:
    """The crossovers of `claims.crossover_points` (one run, config, L and device with both torch-rec streaming at
    batch 1 and torch-conv whole-sample) among the rows: dicts with device, where (the device, and the file when
    there are several), batch (None: no measured batch wins), stream_tokens_per_s, batches, conv_tokens_per_s."""
    points = crossover_points(_figures(rows))
    several_files = len({p["file"] for p in points}) > 1
    out = []
    for p in points:
        conv = {b: c.get("tokens_per_s") for b, c in p["convs"].items()}
        out.append({"device": p["device"], "where": f"{p['device']}, {p['file']}" if several_files else str(p["device"]),
                    "batch": p["batch"], "stream_tokens_per_s": p["stream"].get("tokens_per_s"),
                    "batches": sorted(conv), "conv_tokens_per_s": conv.get(p["batch"])})
    return out


def _crossover_text(title: str, crossovers: list[dict]) -> list[Paragraph]:
    out = []
    for c in crossovers:
        head = (f"{title}, on {c['where']}: torch-conv whole-sample tokens/s exceeds torch-rec streaming "
                f"({c['stream_tokens_per_s']:,.0f} tokens/s at batch 1)")
        out.append(Paragraph(f"{head} from batch {c['batch']} (batches measured: {c['batches']})."
                             if c["batch"] is not None else
                             f"{head.replace('exceeds', 'does not exceed')} at any measured batch ({c['batches']})."))
    return out


def _bench_table(rows: list[dict]) -> TableBlock:
    hdr = ["config", "L", "backend", "path", "mode", "device", "dtype", "batch", "us per token", "tokens/s",
           "samples/s", "mean (s)"]
    return TableBlock(hdr, [[r.get("config"), r.get("L"), r["backend"], r.get("path"), r["mode"], r.get("device"),
                             r.get("dtype"), r.get("batch"), fmt_number(r.get("us_per_token")),
                             fmt_number(r.get("tokens_per_s"), ",.0f"), fmt_number(r.get("samples_per_s")), fmt_number(r.get("mean_s"))]
                            for r in rows])


DECISION_RATES = (1e2, 1e3, 1e4, 1e5)  # tokens/s: from a 100 Hz sensor to raw audio's order of magnitude


def _duration(s: float) -> str:
    return f"{s * 1e6:.3g} us" if s < 1e-3 else f"{s * 1e3:.3g} ms" if s < 1.0 else f"{s:.3g} s"


def _crossover_cell(rate) -> str:
    """`claims.decision_crossover_rate` in words: None and 0.0 mean one mode answers sooner at every rate."""
    if rate is None:
        return "none: streaming sooner at every rate"
    return "none: whole-sample sooner at every rate" if rate == 0.0 else f"{rate:,.0f}"


def _sooner_cell(p: dict, rate: float) -> str:
    """Which mode answers sooner at `rate` (`claims.time_to_decision`), in how long, and whether it keeps up."""
    t = time_to_decision(rate, p["step_s"], p["whole_s"], p["L"])
    mode = "streaming" if t["stream"] <= t["whole"] else "whole-sample"
    behind = "" if t["stream_keeps_up" if mode == "streaming" else "whole_keeps_up"] else ", falls behind"
    return f"{mode}\n{_duration(min(t['stream'], t['whole']))}{behind}"


def decision_table(points: list[dict]) -> TableBlock:
    """Per `claims.decision_points` entry (backend, config, L): the step and whole-sample times, the rates each mode
    keeps up with, the crossover rate, and which mode answers sooner at each of DECISION_RATES."""
    hdr = (["config", "L", "streaming (step p99)", "whole-sample (median)", "keeps up to (tokens/s)",
            "crossover (tokens/s)"] + [f"at {r:,.0f} tokens/s" for r in DECISION_RATES])
    rows = [[p["config"], p["L"], f"{p['stream_backend']}\n{_duration(p['step_s'])}",
             f"{p['whole_backend']}:{p['whole_path']}\n{_duration(p['whole_s'])}",
             f"streaming {p['stream_max_rate']:,.0f}\nwhole-sample {p['whole_max_rate']:,.0f}",
             _crossover_cell(p["crossover_rate"])] + [_sooner_cell(p, r) for r in DECISION_RATES] for p in points]
    return TableBlock(hdr, rows)


def quoted_chip_step() -> tuple[float, str] | None:
    """The Loihi 2 chip's step time quoted from the paper, (us, source), as the claim `chip_step_time` of
    claims.toml quotes it; None when no claim does."""
    c = next((c for c in load_claims() if c["check"] == "chip_step_time"), None)
    return (float(c["quoted_value_us"]), str(c["source"])) if c else None


def _decision_blocks(run_label: str, stem: str, panels: dict, img_dir: Path, colours: dict) -> list:
    """Time to decision of one run, from its audited figures only (`claims.audited`, `claims.decision_points`):
    a sentence, the plot and the table, or a sentence saying why there are none (no audited figures)."""
    figures = {title: _figures(rows) for title, rows in panels.items()}
    left_out = [x for fs in figures.values() for x in audited(fs)[1]]
    points = {title: decision_points(audited(fs)[0]) for title, fs in figures.items()}
    points = {title: ps for title, ps in points.items() if ps}
    n = sum(len(fs) for fs in figures.values())
    if not points:
        why = (f"none of its {n} timed benchmarks carries a passed audit record" if len(left_out) == n else
               "its audited figures hold no streaming (batch 1) and whole-sample (batch 1) benchmarks of one "
               "backend, config and L")
        return [Paragraph(f"Time to decision: not shown for this run, {why} (claims and this table use audited "
                          "figures only, SPEC.md 20; `tox -e bench` measures them with their audits).")]
    quoted = quoted_chip_step()
    on = {title: quoted[0] for title in points if quoted and any(r.get("quoted_chip_step_us") is not None
                                                                  for r in panels[title])}
    blocks = [Paragraph("Time to decision (SPEC.md 20): tokens arrive every T = 1 / rate seconds; streaming answers "
                        "one step (its p99) after the last token while step <= T, and falls behind otherwise (the "
                        "backlog adds (L - 1)(step - T)); whole-sample buffers the sequence, then computes it at "
                        "batch 1 (fastest path, median). Above the crossover rate whole-sample answers sooner. "
                        "Audited figures only" + (f" ({len(left_out)} benchmarks of this run without a passed audit "
                                                  "left out)" if left_out else "") + ".")]
    img = plots.decision_plot(img_dir, stem, run_label, points, on, quoted[1] if quoted else "", colours)
    return blocks + [img, decision_table([p for ps in points.values() for p in ps])]


def _group_key(kv) -> tuple:
    (config, L), _ = kv
    return config, _int_or(L, -1), str(L)


def _bench_run(origin: RunOrigin, stem: str, rows: list[dict], img_dir: Path, colours: dict) -> list:
    """The blocks of one run (one machine): its plots, one panel per (config, L), the crossovers, the quoted chip
    step time, then its numbers, collapsed."""
    groups = defaultdict(list)
    for r in rows:
        groups[(str(r.get("config", "?")), r.get("L", "?"))].append(r)
    groups = dict(sorted(groups.items(), key=_group_key))
    panels = {f"{config}, L={L}": grp for (config, L), grp in groups.items()}
    crossovers = {title: benchmark_crossovers(grp) for title, grp in panels.items()}
    blocks = [SubHeading(origin.heading)]
    blocks += [img for img in (plots.latency_plot(img_dir, stem, origin.label, panels, colours),
                               plots.throughput_plot(img_dir, stem, origin.label, panels, crossovers, colours))
               if img is not None]
    for title, cs in crossovers.items():
        blocks += _crossover_text(title, cs)
    blocks += _decision_blocks(origin.label, stem, panels, img_dir, colours)
    for q in plots.quoted_chip(rows):
        src = next((r.get("quoted_source") for r in rows if r.get("quoted_chip_step_us") == q), None)
        blocks.append(Paragraph(f"**quoted** (not measured here): Loihi 2 chip step time {q:g} us"
                                + (f" ({src})" if src else "") + ".", cls="quoted"))
    blocks.append(Details(f"The numbers of this run ({len(rows)} timed benchmarks"
                          + ("" if origin.here else f", {origin.label}") + ")", [_bench_table(rows)]))
    return blocks


def benchmarks_section(benches: list[LoadedInput], missing: list[str], img_dir: Path, origins: dict,
                       log: list) -> ReportSection:
    """One run (machine) at a time, this machine's first: streaming latency per token and throughput vs batch size
    with the crossover, one panel per (config, L), the quoted chip step time, and the numbers."""
    miss = "; ".join(missing)
    if miss:
        log.append(f"benchmarks: not found: {miss}")
    if not benches:
        return ReportSection("benchmarks", not_run("benchmarks", "no pytest-benchmark JSON", miss))
    rows, skipped = load_bench_rows(benches)
    for s in skipped:
        log.append(f"benchmarks: left out (no backend, mode or positive batch in extra_info): {s}")
    runs = sorted(benches, key=lambda b: not origins[b.path].here)
    n_other = sum(not origins[b.path].here for b in benches)
    blocks = [Paragraph(f"{len(rows)} timed benchmarks in {len(benches)} runs"
                        + (f" ({n_other} of another machine: each such plot and table names its machine)"
                           if n_other else "") + ". Every plot shows one run.")]
    colours = plots.backend_colours(rows)
    stems = set()
    for b in runs:
        origin = origins[b.path]
        run_rows = [r for r in rows if r["path_of_run"] == b.path]
        stem = base = safe_name(Path(origin.file).stem) or "run"
        k = 1
        while stem in stems:  # two runs of one file name: image names apart
            k += 1
            stem = f"{base}-{k}"
        stems.add(stem)
        if run_rows:
            blocks += _bench_run(origin, stem, run_rows, img_dir, colours)
        else:
            blocks += [SubHeading(origin.heading),
                       Paragraph(f"No streaming or whole-sample figures: its {len(b.data.benchmarks)} benchmark(s) "
                                 "feed the claims only (such as the Lava cost per step).")]
    return ReportSection("benchmarks", blocks)


# ---------------------------------------------------------------------------------------------------------------
# Claims

def _claims_list(cl: LoadedInput) -> list[dict]:
    d = cl.data
    d = d.get("verdicts", d.get("claims")) if isinstance(d, dict) else d
    expect_input(isinstance(d, list) and all(isinstance(c, dict) and "id" in c and "verdict" in c for c in d), "claims",
            cl.path, "expected a list of {id, verdict, measured, evidence, note, quoted, source} (s4dconf claims "
                     "--json)")
    return d


PARTIAL = " (partial)"  # a verdict from part of a test split (claims.py) ends so


def _base_verdict(verdict: str) -> str:
    return verdict[:-len(PARTIAL)] if verdict.endswith(PARTIAL) else verdict


EVIDENCE = re.compile(r"^(?P<file>[^:\[\]]+?\.json): (?P<name>.*?)(?: \[(?P<machine>[^\]]*)\])?$")
SUBJECT_FILE = re.compile(r"\s*\((?P<file>[^()]+\.json)\)$")


def _figure(x) -> str:
    """A measured figure for a table: 4 significant digits, thousands separated; lists and dicts inline."""
    if isinstance(x, bool) or x is None:
        return fmt_number(x)
    if isinstance(x, (int, float)):
        return f"{x:,.0f}" if abs(x) >= 1e3 else f"{x:.4g}"
    if isinstance(x, list):
        return ", ".join(map(_figure, x))
    if isinstance(x, dict):
        return "; ".join(f"{k}: {_figure(v)}" for k, v in x.items())
    return str(x)


def _pretty(key: str) -> str:
    return str(key).replace("_", " ")


class _ClaimRuns:
    """The run label of a claim's figures: from the file a figure names, else from the claim's evidence
    ("file: benchmark [machine]"), else from the one benchmark run whose extra_info holds that very value:
    "here", or the machine (never "here" for a run that is not this machine's)."""

    NOT_RECORDED = "not recorded (the claim names no run)"

    def __init__(self, claim: dict, origins_by_file: dict, values_by_origin: dict):
        self.by_file = origins_by_file
        self.values = values_by_origin  # RunOrigin -> the numbers of its benchmarks' extra_info (4 digits)
        self.raw = [str(e) for e in claim.get("evidence") or []]
        self.evidence = [EVIDENCE.match(e) for e in self.raw]
        self.machines = {m["file"]: m["machine"] for m in self.evidence if m and m["machine"]}

    def of_file(self, file: str) -> str:
        if file in self.by_file:
            return self.by_file[file].label
        return f"{self.machines[file]} ({file})" if file in self.machines else f"run {file} (machine not recorded)"

    def of_claim(self) -> str:
        if not self.raw:
            return self.NOT_RECORDED
        labels = {self.of_file(m["file"]) if m else raw for raw, m in zip(self.raw, self.evidence)}
        return labels.pop() if len(labels) == 1 else "several runs: " + "; ".join(sorted(labels))

    def of_value(self, x) -> str:
        """The run of a figure the claim does not attribute, when exactly one run holds that number."""
        if isinstance(x, float) and math.isfinite(x):
            found = {o.label for o, vals in self.values.items() if _digits(x) in vals}
            if len(found) == 1:
                return f"{found.pop()} (found by its value)"
        return self.NOT_RECORDED

    def evidence_items(self) -> list[str]:
        return [f"{m['name']} ({self.of_file(m['file'])}: `{m['file']}`)" if m else raw
                for raw, m in zip(self.raw, self.evidence)]


def _digits(x: float) -> float:
    return float(f"{x:.4g}")


def bench_values(benches: list[LoadedInput], origins: dict) -> dict:
    """RunOrigin -> every float of its benchmarks' extra_info, to 4 significant digits (`_ClaimRuns.of_value`)."""
    out = defaultdict(set)
    for b in benches:
        for e in b.data.benchmarks.values():
            out[origins[b.path]].update(_digits(v) for v in e.extra_info.values()
                                        if isinstance(v, float) and math.isfinite(v))
    return dict(out)


def _claim_figures(claim: dict, runs: _ClaimRuns) -> TableBlock | None:
    """The numbers behind a verdict as a small table: one row per measured subject (a config, a run) with its run,
    pivoted when the subjects share their figures, else one row per figure."""
    measured = claim.get("measured") or {}
    if not isinstance(measured, dict) or not measured:
        return None
    scalars = {k: v for k, v in measured.items() if not isinstance(v, dict)}
    subjects = [("", scalars)] if scalars else []
    subjects += [(k, v) for k, v in measured.items() if isinstance(v, dict)]
    labelled = []
    for subject, figs in subjects:
        m = SUBJECT_FILE.search(subject)
        run = runs.of_file(m["file"]) if m else runs.of_claim()
        labelled.append((SUBJECT_FILE.sub("", subject), figs, run))
    keys = [list(f) for _, f, _ in labelled]
    if len(labelled) > 1 and all(k == keys[0] for k in keys):
        return TableBlock(["measured", "measured on"] + [_pretty(k) for k in keys[0]],
                          [[_pretty(s), run] + [_figure(f[k]) for k in keys[0]] for s, f, run in labelled],
                          cls="figures")
    rows = [[_pretty(s), _pretty(k), _figure(v), run if run != runs.NOT_RECORDED else runs.of_value(v)]
            for s, f, run in labelled for k, v in f.items()]
    if all(not s for s, _, _ in labelled):
        return TableBlock(["figure", "value", "measured on"], [r[1:] for r in rows], cls="figures")
    return TableBlock(["measured", "figure", "value", "measured on"], rows, cls="figures")


def _grade_of(entry: dict) -> str:
    """The source grade of a claim (or of one of its other versions) as the claims JSON gives it."""
    g = entry.get("grade")
    if isinstance(g, str):
        g = [g]
    return grade_text(x for x in g if isinstance(x, str)) if isinstance(g, list) and g else "ungraded"


def claims_section(cl: LoadedInput, origins_by_file: dict, values_by_origin: dict) -> ReportSection:
    """Every claim: the verdict, the quoted value with its source, the note, the measured figures as a small table
    with the run (machine) of each, and the evidence, collapsed."""
    if cl.data is None:
        return ReportSection("claims", not_run("claims", "no claims JSON", cl.missing))
    claims = _claims_list(cl)
    colour = {"reproduced": "pass", "contradicted": "fail"}
    blocks = [Paragraph(f"From `{Path(cl.path).name}`. The paper's claims, quoted, next to the verdict computed from "
                        "the measurements (SPEC.md 21). Each figure names the run it comes from: \"here\" (this "
                        "machine) or another machine."),
              TableBlock(["claim", "verdict", "quoted", "source grade (SPEC.md 21.1)"],
                         [[c["id"], TableCell(c["verdict"], colour.get(_base_verdict(c["verdict"]), "")),
                           TableCell(f"{c.get('quoted', '')} ({c.get('source', '')})", "quoted"),
                           _grade_of(c)] for c in claims])]
    for c in claims:
        runs = _ClaimRuns(c, origins_by_file, values_by_origin)
        blocks.append(SubHeading(f"{c['id']}: **{c['verdict']}**"))
        if c.get("note"):
            blocks.append(Paragraph(str(c["note"])))
        others = [e for e in c.get("also_quoted") or [] if isinstance(e, dict)]
        if others:
            blocks.append(Details(f"Quoted differently by {len(others)} other source{'s' if len(others) > 1 else ''}",
                                  items=[f"{e.get('quoted', '')} ({_grade_of(e)}: {e.get('source', '')}; quoted)"
                                         for e in others]))
        table = _claim_figures(c, runs)
        blocks.append(table if table is not None else Paragraph("Measured: nothing."))
        ev = runs.evidence_items()
        if ev:
            blocks.append(Details(f"Evidence ({len(ev)} measurement{'s' if len(ev) > 1 else ''})", items=ev))
    return ReportSection("claims", blocks)


# ---------------------------------------------------------------------------------------------------------------
# Resources

def resources_section(resources) -> ReportSection:
    """The operation and resource model (counts, SPEC.md 19), its Markdown included as is."""
    if isinstance(resources, dict) and isinstance(resources.get("markdown"), str):
        return ReportSection("resources", [MarkdownFragment(resources["markdown"])])
    return ReportSection("resources", not_run("resources", "no operation and resource counts "
                                                            "(s4dconf.measure.resources)"))


# ---------------------------------------------------------------------------------------------------------------
# Summary: the answer, first

def _availability_here(name: str) -> tuple[bool, str]:
    """Whether a registered backend is available on the machine building the report, and why not; never raises."""
    try:
        a = get_backend(name).availability()
        return bool(a.available), str(a.reason or "")
    except Exception as e:  # noqa: BLE001 - a broken backend must not break the report
        return False, f"its availability check failed: {type(e).__name__}: {e}"


def _backend_status(conf: LoadedInput) -> tuple[list, list, dict, list]:
    """(conformant, failing, not available {reason: [names]}, not checked) from the conformance JSON; a backend is
    conformant when every record of every path passes, failing when one fails. Registered backends the run did not
    name are asked here, on the machine building the report, and said so."""
    records = conformance_records(conf)
    by = defaultdict(Counter)
    fams = defaultdict(set)
    for r in records:
        name = str(r["backend"]).split(":", 1)[0]
        by[name][r["verdict"]] += 1
        if r["verdict"] != "pass":
            fams[name].add(r["family"])
    declared = conf.data.get("backends") or {}
    conformant, failing, unavailable, unchecked = [], [], defaultdict(list), []
    for name in dict.fromkeys([*declared, *by]):
        c, d = by.get(name, Counter()), declared.get(name) or {}
        if d.get("available") is False:
            unavailable[str(d.get("reason", "no reason given"))].append(name)
        elif c.get("fail"):
            failing.append(f"{name}: {c['fail']} of {sum(c.values())} checks fail (families: "
                           f"{', '.join(sorted(fams[name]))})")
        elif c.get("pass"):
            conformant.append(f"{name} ({c['pass']} checks)")
        else:
            unchecked.append(f"{name} (available, no records)")
    for name in backend_names():
        if name in declared or name in by:
            continue
        ok, reason = _availability_here(name)
        if ok:
            unchecked.append(f"{name} (not in this run; available on the machine building the report)")
        else:
            unavailable[f"{reason} (not in this run; asked on the machine building the report)"].append(name)
    return conformant, failing, dict(unavailable), unchecked


def summary_section(conf: LoadedInput, acc: LoadedInput, cl: LoadedInput, benches: list[LoadedInput],
                    origins: dict) -> ReportSection:
    """The answer: backends conformant / failing / not available (with the reasons), the claims counted by verdict,
    the accuracy headline, and which runs are this machine's."""
    rows = []
    if conf.data is not None:
        conformant, failing, unavailable, unchecked = _backend_status(conf)
        status = conf.data.get("exitstatus")
        if not failing and status not in (0, None):  # a test failed that wrote no record: not a clean pass
            failing.append(f"no failing record, but pytest exited with status {status}: a test without a record "
                           "failed or errored (`s4dconf check` prints which)")
        rows.append(["Conformant", TableCell(", ".join(conformant) or "none", "pass" if conformant else "")])
        rows.append(["Failing", TableCell("\n".join(failing) or "none", "fail" if failing else "pass")])
        rows.append(["Not available", TableCell("\n".join(f"{', '.join(names)}: {reason}"
                                                          for reason, names in unavailable.items()) or "none",
                                                "na" if unavailable else "")])
        if unchecked:
            rows.append(["Not checked", TableCell("\n".join(unchecked), "na")])
    else:
        rows.append(["Conformance", TableCell("not run: no conformance JSON (`s4dconf run`, `s4dconf check --json`)",
                                              "na")])
    if cl.data is not None:
        claims = _claims_list(cl)
        base = {c["id"]: _base_verdict(c["verdict"]) for c in claims}
        counts = Counter(base.values())
        lines = [f"{counts.get(v, 0)} {v}" + (": " + ", ".join(c["id"] + (PARTIAL if c["verdict"] != v else "")
                                                                for c in claims if base[c["id"]] == v)
                                             if counts.get(v) else "") for v in VERDICTS]
        lines += [f"{n} {v}" for v, n in counts.items() if v not in VERDICTS]
        rows.append(["Claims", TableCell("\n".join(lines), "fail" if counts.get("contradicted") else "")])
    else:
        rows.append(["Claims", TableCell("not run: no claims JSON (`s4dconf claims --json`)", "na")])
    if acc.data is not None:
        head = accuracy_headline(accuracy_table_of(acc))
        rows.append(["Accuracy", "\n".join(head or ["no figure in the table"]) + f"\nfrom {accuracy_source(acc)}"])
    else:
        rows.append(["Accuracy", TableCell("not run: no accuracy table (`s4dconf eval`)", "na")])
    here = [origins[b.path] for b in benches if origins[b.path].here]
    other = [origins[b.path] for b in benches if not origins[b.path].here]
    where = []
    if here:
        where.append(f"here ({here[0].machine}): " + ", ".join(f"`{o.file}`" for o in here))
    elif benches:
        where.append("here: none (this machine's: `s4dconf run`, or `tox -e bench`)")
    if other:
        where.append("another machine, labelled so wherever shown: "
                     + "; ".join(f"`{o.file}` ({o.label})" for o in other))
    rows.append(["Benchmark runs", "\n".join(where) or "none"])
    return ReportSection("summary", [TableBlock(["", ""], rows, cls="summary")])
