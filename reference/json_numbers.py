"""Numbers in JSON records. JSON has no literal for infinity or NaN, so a record writes a non-finite float as the
string "inf", "-inf" or "nan" (what `str(float)` gives; the conformance harness's `Record.as_json` does this) and
every other number as a JSON number. `encode_number` writes that form, `decode_number` reads it back; a reader of
records takes every number through `decode_number`, so a record holds numbers as numbers once read.
"""
from __future__ import annotations

import math

NON_FINITE = ("inf", "-inf", "nan")


def encode_number(x: float | int | None) -> float | int | str | None:
    """`x` as JSON can hold it: a finite number as it is, inf / -inf / nan as "inf" / "-inf" / "nan", None as
    None."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def decode_number(x) -> float | int | None:
    """The number `encode_number` wrote: a JSON number (not a bool) as it is, "inf" / "-inf" / "nan" as the float,
    None as None. ValueError for anything else, a numeric string ("0.5") included: records hold numbers as JSON
    numbers."""
    if x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)):
        return x
    if isinstance(x, str) and x in NON_FINITE:
        return float(x)
    raise ValueError(f"{x!r} is not a number (a JSON number, or one of {', '.join(map(repr, NON_FINITE))})")
