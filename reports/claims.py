"""The claims registry (`reports/claims.toml`) checked against measurements (SPEC.md section 21).

Every verdict is computed from measured JSON only: pytest-benchmark files (the `extra_info` of SPEC.md section 20:
backend, mode, path, device, batch, L, config, us_per_token, tokens_per_s, ...) and the accuracy table. Verdicts:

    reproduced            the measured effect has the claimed sign, and (when a size is quoted) the measured ratio
                          r is within [quoted / f, quoted * f] for the claim's tolerance_factor f
    direction reproduced  the sign is right, the size is outside that range
    not measurable here   the measurement needs hardware that is absent (a chip, a Jetson, an energy meter); the
                          reason lists what was looked for
    contradicted          the measured effect has the opposite sign

Claims use audited benchmarks only (extra_info "audit" with passed = true: the outputs of the timed calls hashed
the same as an untimed replay; SPEC.md 20); a benchmark without an audit record is left out and every
benchmark-based verdict's note says which and why.

A verdict computed from accuracy figures of fewer samples than the full test split (`s4dconf eval --limit`) is
marked: its verdict ends in " (partial)" and its note starts with "partial:", naming the subsets.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from s4dconf.reference.npzio import read_text_file
from s4dconf.reference.provenance import check_grades, grade_text
from s4dconf.reference.validate import S4DInputError
from s4dconf.training.accuracy import FULL_TEST_SIZES, is_partial, load_table, row_model

from .compare import load_run
from .tables import markdown_table

try:
    import tomllib
except ImportError:  # Python 3.10 (the Lava env)
    import tomli as tomllib

REPORTS_DIR = Path(__file__).resolve().parent
CLAIMS_FILE = REPORTS_DIR / "claims.toml"
VERDICTS = ("reproduced", "direction reproduced", "not measurable here", "contradicted")
PARTIAL = " (partial)"  # appended to a verdict computed from a subset of a test split
# the quoted numbers a claim (or an also_quoted entry) may carry: each must be > 0
QUOTED_NUMBERS = ("quoted_ratio", "quoted_value_us", "quoted_max_drop_points", "quoted_min_recovery",
                  "quoted_recovery", "tolerance_factor")
QUANTITIES = ("us_per_token", "tokens_per_s", "energy_per_token_j")  # what chip_vs_jetson can compare
# numbers of a benchmark's extra_info that the checks read: each, when present and not null, must be > 0
POSITIVE_INFO = ("us_per_token", "tokens_per_s", "energy_per_token_j", "speedup_numpy_over_lava",
                 "lava_us_per_step", "numpy_fxp_us_per_step", "batch", "L")


@dataclasses.dataclass
class Verdict:
    id: str
    verdict: str
    measured: dict  # the numbers behind the verdict (empty when not measurable)
    evidence: list  # "file: benchmark name" of every measurement used
    note: str
    quoted: str
    source: str
    grade: tuple = ()  # SPEC.md 21.1, of `source`
    also_quoted: list = dataclasses.field(default_factory=list)  # other sources' figures: source, grade, quoted

    def __post_init__(self):
        base = self.verdict[:-len(PARTIAL)] if self.verdict.endswith(PARTIAL) else self.verdict
        assert base in VERDICTS, self.verdict

    @property
    def partial(self) -> bool:
        return self.verdict.endswith(PARTIAL)


@dataclasses.dataclass(frozen=True)
class BenchFigure:
    """One timed benchmark of a pytest-benchmark file."""

    file: str
    name: str
    info: dict
    machine: str

    def get(self, key, default=None):
        return self.info.get(key, default)


def _positive_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def load_claims(path: Path = CLAIMS_FILE) -> list[dict]:
    """The claims of a claims file (TOML, `[[claim]]` tables), each checked for what its check reads: every
    problem is an S4DInputError naming the file and the claim."""
    try:
        doc = tomllib.loads(read_text_file(path, "claims file"))
    except tomllib.TOMLDecodeError as e:
        raise S4DInputError(f"claims file {path}: {type(e).__name__}: {e}") from None
    claims = doc.get("claim")
    if not isinstance(claims, list) or not claims:
        got = "nothing" if claims is None else f"{type(claims).__name__} {claims!r}"[:80]
        raise S4DInputError(f"claims file {path}: 'claim' must be a non-empty array of tables ([[claim]] entries, "
                            f"see {CLAIMS_FILE.name}), got {got}")
    ids = {}
    for i, c in enumerate(claims):
        where = f"claims file {path}: claim {i + 1}"
        if not isinstance(c, dict):
            raise S4DInputError(f"{where} must be a table ([[claim]] with keys), got {type(c).__name__} {c!r}"[:300])
        where += f" (id {c.get('id')!r})"
        missing = [k for k in ("id", "source", "quoted", "metric", "check") if k not in c]
        if missing:
            raise S4DInputError(f"{where} lacks {', '.join(missing)}")
        for k in ("id", "source", "quoted", "metric", "check"):
            if not isinstance(c[k], str) or not c[k].strip():
                raise S4DInputError(f"{where}: {k!r} must be a non-empty string, got {c[k]!r}")
        if c["id"] in ids:
            raise S4DInputError(f"{where}: id {c['id']!r} is also the id of claim {ids[c['id']] + 1}")
        ids[c["id"]] = i
        if c["check"] not in CHECKS:
            raise S4DInputError(f"{where} names an unknown check {c['check']!r} (known: {', '.join(CHECKS)})")
        for k in CHECK_NEEDS[c["check"]]:
            if k not in c:
                raise S4DInputError(f"{where}: check {c['check']!r} needs {k!r}, which is missing")
        c["grade"] = check_grades(c.get("grade"), where)
        c["also_quoted"] = _also_quoted(c.get("also_quoted", []), where)
        for k in QUOTED_NUMBERS:
            if k in c and not _positive_number(c[k]):
                raise S4DInputError(f"{where}: {k!r} must be a number > 0, got {c[k]!r}")
        if c.get("tolerance_factor", 1.0) < 1.0:
            raise S4DInputError(f"{where}: 'tolerance_factor' must be >= 1 (reproduced within [quoted / f, "
                                f"quoted * f]), got {c['tolerance_factor']!r}")
        if "quantity" in c and c["quantity"] not in QUANTITIES:
            raise S4DInputError(f"{where}: 'quantity' must be one of {', '.join(QUANTITIES)}, got {c['quantity']!r}")
    return claims


def _also_quoted(entries, where: str) -> list[dict]:
    """A claim's `[[claim.also_quoted]]` tables: the same figure as another source gives it, each with source,
    grade and quoted text, and the number its check compares with (quoted_ratio or quoted_recovery) when it has one."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise S4DInputError(f"{where}: 'also_quoted' must be an array of tables ([[claim.also_quoted]]), got "
                            f"{entries!r}"[:300])
    out = []
    for j, e in enumerate(entries):
        here = f"{where}, also_quoted {j + 1}"
        for k in ("source", "quoted"):
            if not isinstance(e.get(k), str) or not e[k].strip():
                raise S4DInputError(f"{here}: {k!r} must be a non-empty string, got {e.get(k)!r}")
        for k in QUOTED_NUMBERS:
            if k in e and not _positive_number(e[k]):
                raise S4DInputError(f"{here}: {k!r} must be a number > 0, got {e[k]!r}")
        out.append({**e, "grade": check_grades(e.get("grade"), here)})
    return out


def load_benchmarks(paths) -> list[BenchFigure]:
    """Every timed benchmark of the given pytest-benchmark JSON files (untimed ones carry no figures), read by the
    one pytest-benchmark reader, `reports/compare.py: load_run`."""
    out = []
    for p in paths:
        try:
            run = load_run(p)
        except S4DInputError as e:
            raise S4DInputError(f"benchmark file {p} is not a pytest-benchmark JSON file: {e}") from None
        mi = run.machine_info
        ours = mi.get("s4dconf") if isinstance(mi.get("s4dconf"), dict) else {}
        machine = f"{mi.get('node', '?')} ({ours.get('cpu') or mi.get('processor', '?')})"
        for b in run.benchmarks.values():
            for k in POSITIVE_INFO:
                v = b.extra_info.get(k)
                if v is not None and not _positive_number(v):
                    raise S4DInputError(f"benchmark file {p}: benchmark {b.fullname!r}: extra_info[{k!r}] must be a "
                                        f"number > 0 (or null: not measured), got {v!r}")
        out += [BenchFigure(Path(p).name, b.name, b.extra_info, machine) for b in run.benchmarks.values() if b.stats]
    return out


def _ratio_verdict(r: float, quoted: float | None, factor: float) -> str:
    if r <= 1.0:
        return "contradicted"
    if quoted is None or quoted / factor <= r <= quoted * factor:
        return "reproduced"
    return "direction reproduced"


def _pick(benches, **want) -> list[BenchFigure]:
    return [b for b in benches if all(b.get(k) == v for k, v in want.items())]


def _ev(b: BenchFigure) -> str:
    return f"{b.file}: {b.name} [{b.machine}]"


def _is_jetson(device: str) -> bool:
    return any(k in str(device).lower() for k in ("jetson", "orin", "tegra"))


# ----------------------------------------------------------------------------------------- checks


def chip_vs_jetson(claim, benches, accuracy):
    q = claim["quantity"]
    chip = [b for b in _pick(benches, backend="loihi2", mode="stream", batch=1) if b.get(q) is not None]
    jetson = [b for b in _pick(benches, backend="torch-rec", mode="stream", batch=1)
              if _is_jetson(b.get("device")) and b.get(q) is not None]
    missing = []
    if not chip:
        missing.append(f"no loihi2 streaming benchmark with {q} (needs a Loihi 2 chip)")
    if not jetson:
        devices = sorted({str(b.get("device")) for b in _pick(benches, backend="torch-rec", mode="stream")})
        missing.append(f"no torch-rec streaming benchmark on a Jetson with {q} (torch-rec devices measured: "
                       f"{', '.join(devices) or 'none'})")
    if missing:
        return "not measurable here", {}, [], "; ".join(missing)
    pairs = [(c, j) for c in chip for j in jetson if (c.get("config"), c.get("L")) == (j.get("config"), j.get("L"))]
    if not pairs:
        return "not measurable here", {}, [], "chip and Jetson benchmarks share no (config, L)"
    c, j = pairs[0]
    r = c.get(q) / j.get(q) if q == "tokens_per_s" else j.get(q) / c.get(q)
    return (_ratio_verdict(r, claim.get("quoted_ratio"), claim.get("tolerance_factor", 3.0)),
            {"ratio": r, "chip": c.get(q), "jetson": j.get(q), "config": c.get("config")}, [_ev(c), _ev(j)], "")


def chip_step_time(claim, benches, accuracy):
    cpu = {f"{b.get('backend')}:{b.get('path')} on {b.get('device')}": b.get("us_per_token")
           for b in _pick(benches, config="loihi-profile", mode="stream", batch=1) if b.get("us_per_token")}
    chip = [b for b in _pick(benches, backend="loihi2", config="loihi-profile", mode="stream", batch=1)
            if b.get("us_per_token")]
    if not chip:
        return ("not measurable here", {"context_us_per_token_measured": cpu}, [],
                "no loihi2 streaming benchmark of loihi-profile (needs a Loihi 2 chip); the measured figures of the "
                "other backends are context, not a test of the claim")
    c = chip[0]
    r = claim["quoted_value_us"] / c.get("us_per_token")
    verdict = "reproduced" if 0.5 <= r <= 2.0 else "direction reproduced"
    return verdict, {"us_per_token": c.get("us_per_token"), "context_us_per_token_measured": cpu}, [_ev(c)], ""


def first_winning_batch(stream_tokens_per_s: float, conv_tokens_per_s: dict) -> int | None:
    """The crossover (SPEC.md 21): the smallest measured batch whose whole-sample tokens/s exceed the streaming
    tokens/s at batch 1; None when no measured batch does."""
    return next((b for b in sorted(conv_tokens_per_s) if conv_tokens_per_s[b] > stream_tokens_per_s), None)


def _stream_vs_conv(benches):
    """{(file, config, L): (torch-rec stream b1 bench, {batch: torch-conv whole-sample bench})} for measured pairs
    of one file (one run on one machine: figures of different runs are never set against each other)."""
    out = {}
    for s in _pick(benches, backend="torch-rec", mode="stream", batch=1, path="default"):
        convs = {b.get("batch"): b for b in _pick(benches, backend="torch-conv", mode="whole-sample",
                                                  config=s.get("config"), L=s.get("L"), device=s.get("device"))
                 if b.get("tokens_per_s") and b.file == s.file}
        if s.get("tokens_per_s") and convs:
            out[(s.file, s.get("config"), s.get("L"))] = (s, convs)
    return out


def _pair_label(file, cfg, L, s) -> str:
    return f"{cfg} L={L} on {s.get('device')} ({file})"


def batched_vs_streaming(claim, benches, accuracy):
    pairs = {k: v for k, v in _stream_vs_conv(benches).items() if 64 in v[1]}
    if not pairs:
        return ("not measurable here", {}, [], "no torch-rec streaming (batch 1) and torch-conv whole-sample "
                "(batch 64) benchmarks of the same config, L and device (torch not installed?)")
    measured, evidence, bad = {}, [], []
    for (file, cfg, L), (s, convs) in sorted(pairs.items()):
        r = convs[64].get("tokens_per_s") / s.get("tokens_per_s")
        measured[_pair_label(file, cfg, L, s)] = {"conv_b64_tokens_per_s": convs[64].get("tokens_per_s"),
                                                         "rec_stream_tokens_per_s": s.get("tokens_per_s"),
                                                         "ratio": r}
        evidence += [_ev(s), _ev(convs[64])]
        if r <= 1.0:
            bad.append(f"{cfg} L={L}")
    devices = sorted({s.get("device") for s, _ in pairs.values()})
    note = f"measured on {', '.join(map(str, devices))}" + ("" if any(_is_jetson(d) for d in devices)
                                                          else " (not a Jetson: the modes' effect on this device)")
    if bad:
        return "contradicted", measured, evidence, note + f"; streaming wins for {', '.join(bad)}"
    return "reproduced", measured, evidence, note


def crossover_points(benches) -> list[dict]:
    """The crossover (SPEC.md 21) of every measured pair of one run (benchmark file), config and L
    (`_stream_vs_conv`), in the order of (file, config, L): dicts with file, config, L, device, "stream" (the
    torch-rec streaming BenchFigure at batch 1), "convs" ({batch: torch-conv whole-sample BenchFigure}) and "batch", the
    `first_winning_batch` (None when no measured batch wins). Used by the claim and by the report's plots."""
    out = []
    for (file, cfg, L), (s, convs) in sorted(_stream_vs_conv(benches).items()):
        batch = first_winning_batch(s.get("tokens_per_s"), {b: c.get("tokens_per_s") for b, c in convs.items()})
        out.append({"file": file, "config": cfg, "L": L, "device": s.get("device"), "stream": s, "convs": convs,
                    "batch": batch})
    return out


def _not_measurable(why: str):
    """A check's result when the files hold nothing to measure it from: (verdict, measured, evidence, note)."""
    return ("not measurable here", {}, [], why)


def crossover_batch(claim, benches, accuracy):
    points = crossover_points(benches)
    if not points:
        return _not_measurable("no torch-rec streaming and torch-conv whole-sample benchmarks of the same config, L "
                               "and device")
    measured, evidence, never = {}, [], []
    for p in points:
        s, convs = p["stream"], p["convs"]
        measured[_pair_label(p["file"], p["config"], p["L"], s)] = {
            "crossover_batch": p["batch"], "batches_measured": sorted(convs),
            "rec_stream_tokens_per_s": s.get("tokens_per_s"),
            "conv_tokens_per_s": {b: convs[b].get("tokens_per_s") for b in sorted(convs)}}
        evidence += [_ev(s)] + [_ev(convs[b]) for b in sorted(convs)]
        if p["batch"] is None:
            never.append(f"{p['config']} L={p['L']}")
    if never:
        return ("contradicted", measured, evidence,
                f"whole-sample never beats streaming up to batch {max(max(p['convs']) for p in points)} for "
                f"{', '.join(never)}")
    return "reproduced", measured, evidence, "crossover = first measured batch where whole-sample wins"


def _latency(b: BenchFigure, stat: str) -> float | None:
    """Seconds per timed call: extra_info latency_s[stat] (recorded at measure time), else the mean."""
    lat = b.get("latency_s")
    if isinstance(lat, dict) and _positive_number(lat.get(stat)):
        return float(lat[stat])
    us = b.get("us_per_token") if b.get("mode") == "stream" else b.get("us_per_sample")
    return us * 1e-6 * (1 if b.get("mode") == "stream" else b.get("batch", 1)) if _positive_number(us) else None


def time_to_decision(rate: float, step_s: float, whole_s: float, L: int) -> dict:
    """Seconds from the arrival of a sequence's last token to its answer, tokens arriving at `rate` per second
    (period T = 1 / rate). Streaming answers one step after the last token while it keeps up (step <= T); when it
    does not, the backlog of the L tokens adds (L - 1)(step - T). Whole-sample buffers the whole sequence, then
    computes it: whole_s after the last token (it keeps up with back-to-back sequences while whole_s <= L T)."""
    T = 1.0 / rate
    stream = step_s if step_s <= T else step_s + (L - 1) * (step_s - T)
    return {"stream": stream, "whole": whole_s, "stream_keeps_up": step_s <= T, "whole_keeps_up": whole_s <= L * T}


def decision_crossover_rate(step_s: float, whole_s: float, L: int) -> float | None:
    """The token rate above which whole-sample answers sooner than streaming (time_to_decision equal); None when
    streaming answers sooner at every rate (whole_s >= L step_s) and 0.0 when whole-sample always does."""
    if whole_s <= step_s:
        return 0.0
    T = step_s - (whole_s - step_s) / (L - 1)
    return None if T <= 0 else 1.0 / T


def decision_points(benches, stat: str = "p99") -> list[dict]:
    """Per (file, config, L, streaming backend): the streaming step (its `stat`, p99 by default: keeping up needs
    the slow steps too) at batch 1 and the fastest whole-sample path at batch 1 (median) of the same backend, and
    of torch-conv for torch-rec (the paper's pair), with the rates at which each keeps up and the crossover."""
    out = []
    for s in _pick(benches, mode="stream", batch=1, path="default"):
        step = _latency(s, stat)
        L = s.get("L")
        if step is None or not isinstance(L, int) or L < 2:
            continue
        whole_backends = [s.get("backend")] + (["torch-conv"] if s.get("backend") == "torch-rec" else [])
        for wb in whole_backends:
            wholes = [(w, _latency(w, "p50")) for w in _pick(benches, backend=wb, mode="whole-sample", batch=1,
                                                              config=s.get("config"), L=L, device=s.get("device"))
                      if w.file == s.file]
            wholes = [(w, t) for w, t in wholes if t is not None]
            if not wholes:
                continue
            w, whole = min(wholes, key=lambda x: x[1])
            out.append({"file": s.file, "config": s.get("config"), "L": L, "device": s.get("device"),
                        "stream_backend": s.get("backend"), "whole_backend": wb, "whole_path": w.get("path"),
                        "step_s": step, "step_stat": stat, "whole_s": whole,
                        "stream_max_rate": 1.0 / step, "whole_max_rate": L / whole,
                        "crossover_rate": decision_crossover_rate(step, whole, L),
                        "quoted_chip_step_us": s.get("quoted_chip_step_us"), "evidence": [_ev(s), _ev(w)]})
    return out


def decision_crossover(claim, benches, accuracy):
    measured, evidence, bad = {}, [], []  # bad: pairs where whole-sample answers sooner at every rate
    points = decision_points(benches)
    if not points:
        return _not_measurable("no audited streaming (batch 1, with latency_s) and whole-sample (batch 1) "
                               "benchmarks of one backend, config, L and device in one run")
    for p in points:
        key = (f"{p['stream_backend']} stream vs {p['whole_backend']}:{p['whole_path']} whole-sample, "
               f"{p['config']} L={p['L']} on {p['device']} ({p['file']})")
        measured[key] = {"step_us_p99": p["step_s"] * 1e6, "whole_sample_ms": p["whole_s"] * 1e3,
                         "stream_keeps_up_to_tokens_per_s": p["stream_max_rate"],
                         "crossover_tokens_per_s": p["crossover_rate"]}
        evidence += p["evidence"]
        if p["crossover_rate"] == 0.0:
            bad.append(key)
    note = ("time to decision after the last token; streaming step = p99 of the measured steps; above the "
            "crossover rate whole-sample answers sooner (None: streaming answers sooner at every rate)")
    if bad:
        return "contradicted", measured, evidence, note + "; whole-sample answers sooner at every rate for " + \
            "; ".join(bad)
    return "reproduced", measured, evidence, note


def emulator_vs_lava(claim, benches, accuracy):
    found = [b for b in benches if b.get("speedup_numpy_over_lava") is not None]
    if not found:
        return ("not measurable here", {}, [], "no lava-vs-numpy-fxp benchmark JSON among the inputs (run "
                "`tox -e bench-lava`; needs lava-nc in Python 3.10)")
    measured = {b.get("config"): {"speedup": b.get("speedup_numpy_over_lava"),
                                  "lava_us_per_step": b.get("lava_us_per_step"),
                                  "numpy_fxp_us_per_step": b.get("numpy_fxp_us_per_step")} for b in found}
    worst = min(v["speedup"] for v in measured.values())
    verdict = "reproduced" if worst >= claim["quoted_ratio"] else ("direction reproduced" if worst > 1 else
                                                                  "contradicted")
    return verdict, measured, [_ev(b) for b in found], f"worst speedup {worst:.0f}x (target {claim['quoted_ratio']:.0f}x)"


def accuracy_drop(claim, benches, accuracy):
    if accuracy is None:
        return "not measurable here", {}, [], "no accuracy table (run `s4dconf eval`)"
    by = _accuracy_by_dataset(accuracy)
    measured, subsets = {}, []
    for ds, kinds in sorted(by.items()):
        if "float" in kinds and ("ptq" in kinds or "qaft" in kinds):
            measured[ds] = {k: round(100 * (kinds["float"][0] - kinds[k][0]), 2) for k in ("ptq", "qaft") if k in kinds}
            measured[ds]["float_accuracy"] = kinds["float"][0]
            measured[ds]["n_test"] = kinds["float"][1]
            part = {k: v[1] for k, v in kinds.items() if v[2]}
            if part:
                measured[ds]["partial"] = True
                full = FULL_TEST_SIZES.get(ds)
                subsets.append(f"{ds} " + ", ".join(f"{k} {n}" for k, n in part.items())
                               + (f" of {full}" if full else "") + " test samples")
    drops = [v for m in measured.values() for k, v in m.items() if k in ("ptq", "qaft")]
    if not drops:
        return "not measurable here", {}, [], "the accuracy table has no float and fixed-point pair"
    limit = claim["quoted_max_drop_points"]
    if max(drops) <= limit:
        verdict = "reproduced"
    elif all(m.get("qaft", 1e9) < m.get("ptq", -1e9) for m in measured.values()):
        verdict = "direction reproduced"
    else:
        verdict = "contradicted"
    note = f"drops in percentage points (float - fixed point); limit {limit}"
    if subsets:  # a figure from part of a test split: the verdict says so, it is not the full-split claim
        verdict += PARTIAL
        note = (f"partial: from fewer samples than the full test split ({'; '.join(subsets)}; `s4dconf eval "
                f"--limit`); rerun without --limit for the verdict on the full split; " + note)
    return verdict, measured, ["accuracy table"], note


def _accuracy_by_dataset(accuracy) -> dict:
    """{dataset: {kind: (accuracy, n, partial)}}: float from the `reference` column, ptq and qaft from `numpy-fxp`.
    Only the rows of each dataset's own (CPU) recipe, whose model is the dataset (SPEC.md 18.4): a paper-size
    recipe's rows (`paper-smnist`) are another model of the same dataset and would overwrite them."""
    by = {}
    for row in accuracy["rows"]:
        if row_model(row) != row["dataset"]:
            continue
        col = "reference" if row["kind"] == "float" else "numpy-fxp"
        cell = row.get("cells", {}).get(col)
        if cell and cell.get("accuracy") is not None:
            by.setdefault(row["dataset"], {})[row["kind"]] = (cell["accuracy"], cell.get("n"),
                                                              is_partial(row["dataset"], cell, row))
    return by


MNIST_FAMILY = ("smnist", "psmnist")


def ptq_recovery(float_acc: float, ptq_acc: float, qaft_acc: float) -> float | None:
    """The share of the PTQ loss that QAFT wins back, (qaft - ptq) / (float - ptq); None when PTQ lost nothing."""
    loss = float_acc - ptq_acc
    return None if loss <= 0 else (qaft_acc - ptq_acc) / loss


def quantisation_recovery(claim, benches, accuracy):
    """PTQ loses more on scifar than on every MNIST-family dataset measured, and QAFT wins back at least
    `quoted_min_recovery` (0.5: "most") of scifar's PTQ loss. Direction reproduced: scifar loses most, QAFT wins
    back some but less; contradicted: another dataset loses as much, or QAFT wins back nothing."""
    if accuracy is None:
        return _not_measurable("no accuracy table (run `s4dconf eval`)")
    by = _accuracy_by_dataset(accuracy)
    cif = by.get("scifar", {})
    mnist = {d: by[d] for d in MNIST_FAMILY if d in by and {"float", "ptq"} <= set(by[d])}
    if not {"float", "ptq", "qaft"} <= set(cif) or not mnist:
        return _not_measurable(f"needs float, PTQ and QAFT accuracy of scifar and float and PTQ of smnist or psmnist "
                               f"in the accuracy table (scifar has: {', '.join(sorted(cif)) or 'nothing'}; MNIST "
                               f"family: {', '.join(sorted(mnist)) or 'nothing'})")
    pts = lambda k: {ds: round(100 * (v["float"][0] - v["ptq"][0]), 2) for ds, v in k.items()}  # noqa: E731
    losses = pts({"scifar": cif, **mnist})
    rec = ptq_recovery(cif["float"][0], cif["ptq"][0], cif["qaft"][0])
    measured = {"ptq_loss_points": losses, "scifar_qaft_gain_points": round(100 * (cif["qaft"][0] - cif["ptq"][0]), 2),
                "scifar_recovery": None if rec is None else round(rec, 4)}
    others = max(v for d, v in losses.items() if d != "scifar")
    if losses["scifar"] <= others or rec is None or rec <= 0:
        verdict = "contradicted"
    elif rec >= claim["quoted_min_recovery"]:
        verdict = "reproduced"
    else:
        verdict = "direction reproduced"
    note = (f"PTQ loss in points (float - PTQ, numpy-fxp); recovery = (QAFT - PTQ) / (float - PTQ) on scifar, 'most' "
            f"= at least {claim['quoted_min_recovery']}")
    partial = [f"{ds} {k} {v[1]}" for ds, kinds in {"scifar": cif, **mnist}.items() for k, v in kinds.items() if v[2]]
    if partial:
        verdict += PARTIAL
        note = f"partial: from fewer samples than the full test split ({', '.join(partial)}); " + note
    return verdict, measured, ["accuracy table"], note


CHECKS = {f.__name__: f for f in (chip_vs_jetson, chip_step_time, batched_vs_streaming, crossover_batch,
                                  decision_crossover, emulator_vs_lava, accuracy_drop, quantisation_recovery)}
# the keys of a claim that its check reads (beyond id, source, quoted, metric, check)
CHECK_NEEDS = {"chip_vs_jetson": ("quantity",), "chip_step_time": ("quoted_value_us",), "batched_vs_streaming": (),
               "crossover_batch": (), "decision_crossover": (), "emulator_vs_lava": ("quoted_ratio",),
               "accuracy_drop": ("quoted_max_drop_points",), "quantisation_recovery": ("quoted_min_recovery",)}


BENCH_CHECKS = ("chip_vs_jetson", "chip_step_time", "batched_vs_streaming", "crossover_batch", "decision_crossover",
                "emulator_vs_lava")


def audited(benches) -> tuple[list[BenchFigure], list[str]]:
    """The benchmarks whose extra_info carries a passed audit record (the output hash matched an untimed replay;
    SPEC.md 20), and "file: name (reason)" of those left out: claims use audited figures only."""
    kept, left = [], []
    for b in benches:
        a = b.get("audit")
        if not isinstance(a, dict):
            left.append(f"{b.file}: {b.name} (no audit record)")
        elif a.get("passed") is not True or a.get("hash_match", True) is not True:
            left.append(f"{b.file}: {b.name} (audit not passed)")
        else:
            kept.append(b)
    return kept, left


def audit_note(left_out: list[str]) -> str:
    """What a benchmark-based verdict says about the figures it could not use."""
    if not left_out:
        return "audited figures only"
    shown = ", ".join(left_out[:3]) + (f", ... ({len(left_out) - 3} more)" if len(left_out) > 3 else "")
    return f"audited figures only: {len(left_out)} benchmark(s) left out: {shown}"


def default_benchmark_files() -> list[Path]:
    """Fresh runs (reports/out/*.json that are benchmark files) and the committed ones (reports/benchmarks/)."""
    return committed_benchmark_files() + sorted((REPORTS_DIR / "out").glob("benchmark*.json"))


def committed_benchmark_files() -> list[Path]:
    """The runs committed under reports/benchmarks/ (full sets, the Lava cost per step)."""
    return sorted((REPORTS_DIR / "benchmarks").glob("*.json"))


def default_accuracy_file() -> Path | None:
    for p in (REPORTS_DIR / "out" / "accuracy" / "accuracy.json", REPORTS_DIR / "accuracy" / "accuracy.json"):
        if p.is_file():
            return p
    return None


def evaluate(bench_files=None, accuracy_file=None, claims_file: Path = CLAIMS_FILE) -> list[Verdict]:
    bench_files = default_benchmark_files() if bench_files is None else [Path(p) for p in bench_files]
    benches = load_benchmarks(bench_files)
    accuracy_file = default_accuracy_file() if accuracy_file is None else Path(accuracy_file)
    claims = load_claims(claims_file)
    accuracy = load_table(accuracy_file) if accuracy_file else None
    benches, left_out = audited(benches)
    out = []
    for c in claims:
        verdict, measured, evidence, note = CHECKS[c["check"]](c, benches, accuracy)
        if c["check"] in BENCH_CHECKS:  # first: the one line `s4dconf claims` prints of a note starts so
            note = "; ".join(x for x in (audit_note(left_out), note) if x)
        note = "; ".join(x for x in (note, versions_note(c, measured)) if x)
        out.append(Verdict(c["id"], verdict, measured, evidence, note, c["quoted"], c["source"], c["grade"],
                           c["also_quoted"]))
    return out


def versions_note(claim: dict, measured: dict) -> str:
    """Which quoted figure the verdict tested (its source grade) and, for each other version of the figure
    (`also_quoted`), the verdict the same measured ratio gets against it; empty for a claim with one version."""
    if not claim["also_quoted"]:
        return ""
    main = next((claim[k] for k in ("quoted_ratio", "quoted_min_recovery") if k in claim), None)
    parts = [f"tested against {main:g} ({grade_text(claim['grade'])})" if main is not None
             else f"tested against the {grade_text(claim['grade'])} text"]
    r = measured.get("ratio")
    for e in claim["also_quoted"]:
        alt = e.get("quoted_ratio", e.get("quoted_recovery"))
        label = f"{alt:g} ({grade_text(e['grade'])})" if alt is not None else f"'{e['quoted']}' ({grade_text(e['grade'])})"
        if r is not None and e.get("quoted_ratio") is not None:
            v = _ratio_verdict(r, e["quoted_ratio"], claim.get("tolerance_factor", 3.0))
            parts.append(f"against {label}: {v}")
        else:
            parts.append(f"also quoted: {label}")
    return "; ".join(parts)


def verdicts_markdown(verdicts: list[Verdict]) -> str:
    rows = [(v.id, f"{v.quoted} ({v.source})", grade_text(v.grade), f"**{v.verdict}**", measured_text(v.measured),
             v.note) for v in verdicts]
    return markdown_table(("claim", "quoted", "source grade", "verdict", "measured", "note"), rows) + "\n"


def _rounded(x):
    if isinstance(x, float):
        return float(f"{x:.4g}")
    if isinstance(x, dict):
        return {str(k): _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


def measured_text(measured: dict) -> str:
    """The numbers behind a verdict (`Verdict.measured`) in one line, for tables: compact JSON with every float
    rounded to 4 significant digits, cut to 400 characters (then ending in "...")."""
    text = json.dumps(_rounded(measured))
    return (text[:400] + "...") if len(text) > 400 else text
