"""Error metrics between an output and its reference (SPEC.md section 11), one definition each for the whole suite.

    rel_l2(out, ref)      = ||out - ref||_2 / ||ref||_2
    max_abs_rel(out, ref) = max |out - ref| / max |ref|
    snr_db(out, ref)      = -20 log10 rel_l2(out, ref)
    argmax_agreement      = share of decisive samples (top-1 minus top-2 > tie margin) whose argmax agrees
All take arrays of any equal shape and compute in float64.
"""
from __future__ import annotations

import math

import numpy as np


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
    return snr_from_rel_l2(rel_l2(out, ref))


def snr_from_rel_l2(r: float) -> float:
    """-20 log10(r): inf for r == 0, -inf for r == inf."""
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
