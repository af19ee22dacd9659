"""The conformance summary: the records of a conformance run (`s4dconf check --json`, `pytest --conformance-json`)
per backend x case family, with pass/fail counts and the worst value of each metric. Computed here once, for the
matrix `s4dconf check` prints and for the report's conformance matrix.

The worst value of a metric: for the upper-bound metrics (rel_l2, max_abs_rel, and any other metric with a
maximum, such as max_abs_int_diff) the largest value, for the lower-bound ones (snr_db, argmax) the smallest. A
missing or NaN value is worse than any number. Values written as "inf" / "-inf" / "nan" are read through
`json_numbers.decode_number`.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter

from s4dconf.reference.json_numbers import decode_number

UPPER = ("rel_l2", "max_abs_rel")  # upper bounds: the worst value is the largest
LOWER = ("snr_db", "argmax")  # lower bounds: the worst value is the smallest
CHECK_WORST = ("rel_l2", "snr_db", "max_abs_int_diff")  # `s4dconf check` shows the first of these a cell has
CHECK_HEADER = ("backend:path", "family", "cases", "failed checks", "saturated cases", "worst", "tolerance", "verdict")


def decode_record(record: dict) -> dict:
    """A copy of a record with its value and tolerance read by `decode_number`; ValueError names the field."""
    out = dict(record)
    for k in ("value", "tolerance"):
        try:
            out[k] = decode_number(out.get(k))
        except ValueError as e:
            raise ValueError(f"record {k}: {e}") from None
    return out


def badness(metric: str, value) -> float:
    """How bad a value of a metric is, larger = worse: the value for upper bounds, minus the value for lower ones,
    +inf for a missing or NaN value."""
    if value is None or math.isnan(value):
        return math.inf
    return -value if metric in LOWER else value


@dataclasses.dataclass
class ConformanceCellSummary:
    """The records of one backend and case family."""

    counts: Counter  # verdict -> number of records
    worst: dict  # metric -> the record with its worst value
    saturated: int = 0  # records with saturations
    cases: set = dataclasses.field(default_factory=set)
    saturated_cases: set = dataclasses.field(default_factory=set)

    @property
    def overall_verdict(self) -> str:
        """fail when a record fails, else pass when one passes, else the most common verdict ("-": no record)."""
        if self.counts.get("fail"):
            return "fail"
        return "pass" if self.counts.get("pass") else (self.counts.most_common(1)[0][0] if self.counts else "-")

    def metrics(self) -> list[str]:
        """The metrics of the cell: upper bounds, lower bounds, then the others by name."""
        known = UPPER + LOWER
        return [m for m in known if m in self.worst] + sorted(set(self.worst) - set(known))


def summarize_conformance(records: list[dict]) -> tuple[list[str], list[str], dict]:
    """(backends, families, {(backend, family): ConformanceCellSummary}), backends and families in the order the
    records first name them. Records need backend, case, family, metric, value, tolerance, verdict."""
    cells: dict = {}
    for r in map(decode_record, records):
        c = cells.setdefault((r["backend"], r["family"]), ConformanceCellSummary(Counter(), {}))
        c.counts[r["verdict"]] += 1
        c.cases.add(r.get("case"))
        if r.get("saturations"):
            c.saturated += 1
            c.saturated_cases.add(r.get("case"))
        m, w = r["metric"], c.worst.get(r["metric"])
        if w is None or badness(m, r["value"]) > badness(m, w["value"]):
            c.worst[m] = r
    backends = list(dict.fromkeys(r["backend"] for r in records))
    families = list(dict.fromkeys(r["family"] for r in records))
    return backends, families, cells


def _g(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def check_matrix_rows(records: list[dict]) -> list[tuple]:
    """The matrix `s4dconf check` prints: CHECK_HEADER, then one row per backend and family (sorted) with the cases,
    the records that did not pass, the cases with saturations, the worst value of the first metric of CHECK_WORST
    the cell has, its tolerance and PASS / FAIL."""
    _, _, cells = summarize_conformance(records)
    rows = [CHECK_HEADER]
    for (backend, family), c in sorted(cells.items()):
        worst = next((c.worst[m] for m in CHECK_WORST if m in c.worst), None)
        failed = sum(c.counts.values()) - c.counts.get("pass", 0)
        rows.append((backend, family, len(c.cases), failed, len(c.saturated_cases),
                     f"{worst['metric']} {_g(worst['value'], '.3g')}" if worst else "-",
                     _g(worst["tolerance"], "g") if worst else "-", "PASS" if failed == 0 else "FAIL"))
    return rows
