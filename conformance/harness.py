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

from s4dconf.reference.validate import S4DInputError

HERE = Path(__file__).resolve().parent
TOLERANCE_FILE = HERE / "tolerances.csv"
SKIP_DIR = HERE / "skips"
METRICS = ("rel_l2", "max_abs_rel", "snr_db", "argmax")


# ---------------------------------------------------------------- metrics

def rel_l2(out, ref) -> float:
    """||out - ref||_2 / ||ref||_2; 0 if both are zero, inf if only ref is."""
    out, ref = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    num, den = float(np.linalg.norm(out - ref)), float(np.linalg.norm(ref))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def max_abs_rel(out, ref) -> float:
    """max |out - ref| / max |ref|: the worst error relative to the signal's peak."""
    out, ref = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    num, den = float(np.max(np.abs(out - ref))), float(np.max(np.abs(ref)))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def snr_db(out, ref) -> float:
    """10 log10(sum ref^2 / sum (out - ref)^2); inf when out == ref."""
    r = rel_l2(out, ref)
    if r == 0.0:
        return math.inf
    return -20.0 * math.log10(r) if math.isfinite(r) else -math.inf


def argmax_agreement(out_logits, ref_logits, tie_margin: float) -> tuple[float, int]:
    """Fraction of decisive samples whose argmax agrees, and how many samples were decisive.

    A sample is decisive when its reference top-1 minus top-2 logit exceeds tie_margin: closer calls may
    legitimately flip within the tolerance and are not counted (SPEC.md section 11.2).
    """
    out, ref = np.asarray(out_logits), np.asarray(ref_logits)
    if ref.shape[-1] < 2:
        return 1.0, 0  # one class: no decision to agree on
    top2 = np.sort(ref, axis=-1)[..., -2:]
    decisive = (top2[..., 1] - top2[..., 0]) > tie_margin
    n = int(decisive.sum())
    if n == 0:
        return 1.0, 0
    agree = np.argmax(out, axis=-1) == np.argmax(ref, axis=-1)
    return float(agree[decisive].mean()), n


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
            if not math.isfinite(d[k]):
                d[k] = str(d[k])
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
        snr = math.inf if r == 0 else (-20.0 * math.log10(r) if math.isfinite(r) else -math.inf)
        add("snr_db", snr, tol.snr_db_min, upper=False)
    if logits and tol.argmax_min is not None:
        # calls closer than twice the tolerated error may flip: the error bound is max_abs_rel_max, or the
        # relative RMS error 10^(-snr_db_min/20) where only an SNR is set (SPEC.md 11.2)
        eps = tol.max_abs_rel_max if tol.max_abs_rel_max is not None else (
            10.0 ** (-tol.snr_db_min / 20.0) if tol.snr_db_min is not None else 0.0)
        margin = 2.0 * eps * peak
        agree, _ = argmax_agreement(out, ref, margin)
        add("argmax", agree, tol.argmax_min, upper=False)
    return recs


def failures_message(records: list[Record]) -> str:
    bad = [r for r in records if r.verdict != "pass"]
    return "\n".join(
        f"{r.backend} {r.case} {r.probe}: {r.metric} = {r.value:.4g} violates tolerance {r.tolerance:g} "
        f"(row {r.family})"
        for r in bad
    )


# ---------------------------------------------------------------- delay compensation

def pad_for_delay(u: np.ndarray, delay: int) -> np.ndarray:
    """u followed by `delay` zero steps, so that a backend with that latency emits all L answers."""
    if isinstance(delay, bool) or not isinstance(delay, (int, np.integer)) or delay < 0:
        raise S4DInputError(f"a backend delay must be an integer >= 0 steps, got {delay!r}")
    if delay == 0:
        return u
    return np.concatenate([u, np.zeros((u.shape[0], delay, u.shape[2]))], axis=1)


def aligned_run(backend, handle, u: np.ndarray, path: str, info):
    """Run a whole batch and return (step_logits, layer_y) aligned with the reference's step indices."""
    L = u.shape[1]
    d = backend.delays(handle)
    run = backend.run(handle, pad_for_delay(u, d.max), path)
    step_logits = run.step_logits[:, d.logits:d.logits + L]
    layer_y = None
    if run.layer_y is not None:
        layer_y = [y[:, d.layer(i):d.layer(i) + L] for i, y in enumerate(run.layer_y)]
    return step_logits, layer_y, run


def aligned_stream(session, u: np.ndarray, info, stops=(), chunk_sizes=None):
    """Stream u (plus delay padding) through a session; returns (step_logits aligned, {t: state at t}).

    stops: backend time indices t after which get_state() is read (state after t+1 inputs).
    chunk_sizes: an iterable of chunk lengths (cycled); default: stop boundaries only.
    """
    L = u.shape[1]
    d = info.delays
    up = pad_for_delay(u, d.max)
    total = up.shape[1]
    bounds = {t + 1 for t in stops if t + 1 <= total} | {total}
    if chunk_sizes is not None:
        sizes = list(chunk_sizes)
        pos, i = 0, 0
        while pos < total:
            pos += max(1, int(sizes[i % len(sizes)]))
            i += 1
            bounds.add(min(pos, total))
    outs, states, pos = [], {}, 0
    for b in sorted(bounds):
        if b > pos:
            outs.append(session.run(up[:, pos:b]))
            pos = b
        if b - 1 in stops:
            states[b - 1] = session.get_state()
    step_logits = np.concatenate(outs, axis=1)
    return step_logits[:, d.logits:d.logits + L], states


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
