"""The harness library (SPEC.md sections 8 and 11): metrics, the tolerance table, skip lists, delay compensation.

Pure helpers; the pytest wiring is in plugin.py and the tests in test_*.py.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from pathlib import Path

import numpy as np

from s4dconf.backends.aligned import aligned_run
from s4dconf.reference.json_numbers import encode_number
from s4dconf.reference.metrics import argmax_agreement, snr_from_rel_l2
from s4dconf.reference.validate import S4DInputError

HERE = Path(__file__).resolve().parent
TOLERANCE_FILE = HERE / "tolerances.csv"
SKIP_DIR = HERE / "skips"
METRICS = ("rel_l2", "max_abs_rel", "snr_db", "argmax")


# ---------------------------------------------------------------- tolerance table

@dataclasses.dataclass(frozen=True)
class Tolerance:
    numeric_class: str
    family: str
    rel_l2_max: float | None
    max_abs_rel_max: float | None
    snr_db_min: float | None
    argmax_min: float | None
    reason: str


def _strip_comments(text: str) -> tuple[str, list[int]]:
    """The text without '#' comment lines, and the file line number (1-based) of each line kept."""
    kept = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if not line.lstrip().startswith("#")]
    return "\n".join(line for _, line in kept), [n for n, _ in kept]


TOLERANCE_COLUMNS = ["numeric_class", "family", "rel_l2_max", "max_abs_rel_max", "snr_db_min", "argmax_min", "reason"]


def load_tolerances(path: Path = TOLERANCE_FILE) -> dict[tuple[str, str], Tolerance]:
    """Parse the tolerance table; a row without a reason, a bad number or a duplicate is an error.

    Errors name the file and its line number (counting the comment lines).
    """
    path = Path(path)
    text, file_lines = _strip_comments(path.read_text())
    reader = csv.DictReader(io.StringIO(text))
    want = TOLERANCE_COLUMNS
    if reader.fieldnames != want:
        raise S4DInputError(f"{path}: columns must be {want}, got {reader.fieldnames}")
    table = {}
    first_seen = {}
    for row in reader:
        lineno = file_lines[min(reader.line_num, len(file_lines)) - 1]
        if None in row:
            raise S4DInputError(
                f"{path}:{lineno}: row has more than the {len(want)} columns {want}: extra cells {row[None]} "
                "(quote a reason that contains commas)"
            )
        missing = [c for c in want if row[c] is None]
        if missing and missing != ["reason"]:  # a row without its reason cell is reported as such below
            raise S4DInputError(f"{path}:{lineno}: row lacks the cell(s) {missing}; columns must be {want}")
        where = f"{path}:{lineno} ({row['numeric_class']}, {row['family']})"
        if not (row["reason"] or "").strip():
            raise S4DInputError(f"{where} has no reason; every tolerance must say why it is what it is")
        bounds = {}
        for col in want[2:6]:
            cell = (row[col] or "").strip()
            try:
                bounds[col] = float(cell) if cell else None
            except ValueError:
                bounds[col] = math.nan
            if bounds[col] is not None and math.isnan(bounds[col]):
                raise S4DInputError(f"{where}: {col} = {cell!r} is not a number") from None
        key = (row["numeric_class"], row["family"])
        if key in table:
            raise S4DInputError(f"{where} duplicates the row on line {first_seen[key]}")
        first_seen[key] = lineno
        table[key] = Tolerance(*key, **bounds, reason=row["reason"].strip())
    if not table:
        raise S4DInputError(f"{path}: the tolerance table has no rows")
    return table


def tolerance_for(table, numeric_class: str, family: str) -> Tolerance:
    try:
        return table[(numeric_class, family)]
    except KeyError:
        known = sorted(f for c, f in table if c == numeric_class)
        raise S4DInputError(
            f"no tolerance row for ({numeric_class}, {family}) in {TOLERANCE_FILE.name}; rows for "
            f"{numeric_class}: {known}. Add a row with its reason."
        ) from None


@dataclasses.dataclass
class Record:
    """One measured comparison: the unit of the conformance JSON."""

    backend: str
    case: str
    family: str
    probe: str
    metric: str
    value: float
    tolerance: float
    verdict: str  # "pass" | "fail"
    saturations: int | None = None  # fixed-point runs: saturation events in the run this record measured

    def as_json(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("value", "tolerance"):
            d[k] = encode_number(d[k])
        return d


def compare(out, ref, tol: Tolerance, *, backend: str, case: str, probe: str, logits: bool = False,
            scale_ref=None) -> list[Record]:
    """Every metric of the tolerance row, measured on one probe.

    scale_ref: a larger reference signal of the same kind (the whole logit trace for the last-step logits)
    whose RMS and peak floor the denominators, so a probe that is exactly zero in the reference (a ReLU
    silenced it) is judged against the signal scale instead of giving an infinite relative error
    (SPEC.md section 11.2).
    """
    out, ref = np.asarray(out), np.asarray(ref)
    if out.shape != ref.shape:
        raise AssertionError(f"{backend} {case} {probe}: shape {out.shape}, reference has {ref.shape}")
    recs = []

    def add(metric, value, bound, upper=True):
        ok = (value <= bound) if upper else (value >= bound)
        recs.append(Record(backend, case, tol.family, probe, metric, float(value), float(bound),
                           "pass" if ok and not math.isnan(value) else "fail"))

    err = out.astype(np.float64) - ref
    norm, peak = float(np.linalg.norm(ref)), float(np.max(np.abs(ref), initial=0.0))
    if scale_ref is not None and np.size(scale_ref):
        sr = np.asarray(scale_ref, dtype=np.float64)
        norm = max(norm, float(np.linalg.norm(sr)) * math.sqrt(ref.size / sr.size))
        peak = max(peak, float(np.max(np.abs(sr))))
    e_norm, e_peak = float(np.linalg.norm(err)), float(np.max(np.abs(err), initial=0.0))
    r = e_norm / norm if norm > 0 else (0.0 if e_norm == 0 else math.inf)
    if tol.rel_l2_max is not None:
        add("rel_l2", r, tol.rel_l2_max)
    if tol.max_abs_rel_max is not None:
        add("max_abs_rel", e_peak / peak if peak > 0 else (0.0 if e_peak == 0 else math.inf), tol.max_abs_rel_max)
    if tol.snr_db_min is not None:
        add("snr_db", snr_from_rel_l2(r), tol.snr_db_min, upper=False)
    if logits and tol.argmax_min is not None:
        # calls closer than twice the tolerated error may flip: the error bound is max_abs_rel_max, or the
        # relative RMS error 10^(-snr_db_min/20) where only an SNR is set (SPEC.md 11.2)
        eps = tol.max_abs_rel_max if tol.max_abs_rel_max is not None else (
            10.0 ** (-tol.snr_db_min / 20.0) if tol.snr_db_min is not None else 0.0)
        margin = 2.0 * eps * peak
        agree, _ = argmax_agreement(out, ref, margin)
        add("argmax", agree, tol.argmax_min, upper=False)
    return recs


def golden_case_records(backend, backend_name: str, path: str, case, model, case_label: str) -> list[Record]:
    """Run `model` on a golden case's input through one backend path (delays compensated, SPEC.md 5) and compare
    the last-step logits, the stored step logits and, where the backend exposes them, the per-layer outputs with the
    case's stored arrays, by the tolerance row of the backend's numeric class and the case's family (SPEC.md 11).
    `model` is the case's own model or one that must reproduce it (the discretised-coefficient variant, 7.1)."""
    info = backend.info()
    tol = tolerance_for(load_tolerances(), info.numeric_class, case.family)
    step_logits, layer_y, run = aligned_run(backend, backend.prepare(model), case.u, path, info)
    steps, channels = case.arrays["steps"], case.arrays["channels"]
    who = dict(backend=f"{backend_name}:{path}", case=case_label)
    recs = compare(step_logits[:, -1], case.arrays["logits"], tol, probe="logits", logits=True,
                   scale_ref=case.arrays["step_logits"], **who)
    recs += compare(step_logits[:, steps], case.arrays["step_logits"], tol, probe="step_logits", **who)
    if info.exposes_layers:
        assert layer_y is not None and len(layer_y) == case.n_layers, "backend must return one output per layer"
        for i, y in enumerate(layer_y):
            recs += compare(y[:, steps][:, :, channels], case.arrays[f"layer{i}.y"], tol, probe=f"layer{i}.y", **who)
    if run.saturations is not None:  # a run that saturated says so in every record of the case
        for r in recs:
            r.saturations = sum(run.saturations.values())
    return recs


def failures_message(records: list[Record]) -> str:
    bad = [r for r in records if r.verdict != "pass"]
    return "\n".join(
        f"{r.backend} {r.case} {r.probe}: {r.metric} = {r.value:.4g} violates tolerance {r.tolerance:g} "
        f"(row {r.family})"
        for r in bad
    )


# ---------------------------------------------------------------- skip / xfail lists

@dataclasses.dataclass
class SkipEntry:
    action: str  # "skip" | "xfail"
    pattern: str
    reason: str
    line: int
    used: bool = False


_ENTRY = re.compile(r"^(skip|xfail)\s+(\S+)\s*#\s*(.*\S)\s*$")


def load_skiplist(path: Path) -> list[SkipEntry]:
    """Parse `<skip|xfail> <node-id substring>  # <reason>` lines; '#' lines are comments.

    An entry without a reason is an error: the suite never skips without saying why.
    """
    entries = []
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ENTRY.match(line)
        if not m:
            raise S4DInputError(
                f"{path}:{lineno}: expected '<skip|xfail> <node-id substring>  # <reason>', got {raw!r}"
            )
        entries.append(SkipEntry(m.group(1), m.group(2), m.group(3), lineno))
    return entries


def skiplist_for(backend: str) -> list[SkipEntry]:
    path = SKIP_DIR / f"{backend}.txt"
    return load_skiplist(path) if path.is_file() else []
