"""Audits of timed benchmarks, after MLPerf's compliance tests (SPEC.md section 20, "Audits").

TEST01 analogue, the output hash: every timed call's output is kept (by reference, as a consumer holding the
results would) and hashed after the timing (`output_hash`: sha256 of the outputs rounded to 9 decimals, in call
order). The same inputs are then run again outside the timer on a freshly prepared handle (a new session per
stream, a new handle per whole-sample call, inputs copied, each output copied at once) and hashed the same way;
a different hash fails the benchmark (`AuditError`). It catches outputs that are stale (a buffer overwritten by the
next call), cached across calls, or otherwise not what the backend computes when it is not being timed.

TEST04 analogue, anti-caching: the call is repeated on one fixed input and on varied inputs, interleaved (fixed,
varied, fixed, ...) so that drift of a loaded machine hits both alike; the ratio median(fixed) / median(varied)
must be >= 1 - ANTI_CACHE_THRESHOLD (measured again once before failing). MLPerf's TEST04 allows 10 %; here the bound is 40 %: with the correct
backends of the smoke set (21 benchmarks, 8 interleaved pairs each) on this project's 2-core machine shared with a
CI run and a training job, the measured ratio spread from 0.77 to 1.19, so 10 % (or 25 %) would fail on noise; a
cache hit is a many-fold speed-up (the caching backend of conformance/meta/test_bench_audit.py measures far below
0.6), beyond any noise seen here.
"""
from __future__ import annotations

import hashlib
import time

import numpy as np

HASH_DECIMALS = 9
ANTI_CACHE_THRESHOLD = 0.4  # fixed-input calls may be at most 40 % faster than varied-input calls
ANTI_CACHE_PAIRS = 8


class AuditError(AssertionError):
    """A timed benchmark failed an audit: its timed outputs differ from an untimed run, or it caches."""


def _array(out) -> np.ndarray:
    out = getattr(out, "step_logits", out)
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().cpu().numpy()
    return np.asarray(out)


def output_hash(outputs) -> str:
    """sha256 over the outputs in order, each rounded to HASH_DECIMALS decimals as float64 (-0.0 made 0.0)."""
    h = hashlib.sha256()
    for o in outputs:
        a = np.ascontiguousarray(np.round(_array(o).astype(np.float64), HASH_DECIMALS) + 0.0)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def replay_stream(backend, model, batch: int, token_calls, opener=None) -> str:
    """Hash of the token calls (a list of (batch, d) arrays, or None for a session reset) on a fresh handle and
    session (`opener(handle)`, default open_session(handle, batch)), outside any timer; each output copied at once."""
    handle = backend.prepare(model)
    session = opener(handle) if opener else backend.open_session(handle, batch)
    outs = []
    for tok in token_calls:
        if tok is None:
            session.reset()
        else:
            outs.append(np.array(_array(session.step(np.array(tok, copy=True))), copy=True))
    return output_hash(outs)


def replay_whole(backend, model, path: str, inputs) -> str:
    """Hash of whole-sample runs of the inputs, each on a freshly prepared handle, outside any timer."""
    return output_hash([np.array(_array(backend.run(backend.prepare(model), np.array(u, copy=True), path)),
                                 copy=True) for u in inputs])


def check_hash(timed: str, replayed: str, what: str) -> dict:
    rec = {"output_sha256": timed, "replay_sha256": replayed, "hash_match": timed == replayed}
    if timed != replayed:
        raise AuditError(f"{what}: the outputs of the timed calls (sha256 {timed[:16]}...) differ from the same "
                         f"inputs run outside the timer (sha256 {replayed[:16]}...): stale or cached outputs")
    return rec


def _fixed_over_varied(fixed_call, varied_call, pairs: int, first: int) -> tuple[float, float, float]:
    fixed, varied = [], []
    fixed_call()  # one untimed call of each, so neither side pays a first-call cost
    varied_call(first + pairs)
    for k in range(first, first + pairs):
        t0 = time.perf_counter()
        fixed_call()
        t1 = time.perf_counter()
        varied_call(k)
        t2 = time.perf_counter()
        fixed.append(t1 - t0)
        varied.append(t2 - t1)
    return float(np.median(fixed) / np.median(varied)), float(np.median(fixed)), float(np.median(varied))


def anti_caching(fixed_call, varied_call, pairs: int = ANTI_CACHE_PAIRS,
                 threshold: float = ANTI_CACHE_THRESHOLD, attempts: int = 2) -> dict:
    """Interleaved timing of fixed_call() and varied_call(k) (k: a new input index each call, below
    attempts (pairs + 1)); AuditError when the fixed input is
    more than `threshold` faster (ratio of medians < 1 - threshold) in each of `attempts` measurements: a burst of
    load on a shared machine can fail one, a cache fails every one."""
    ratios = []
    for i in range(attempts):
        ratio, f, v = _fixed_over_varied(fixed_call, varied_call, pairs, i * (pairs + 1))
        ratios.append(ratio)
        if ratio >= 1.0 - threshold:
            break
    rec = {"fixed_over_varied": ratio, "attempts": ratios, "threshold": threshold, "pairs": pairs,
           "passed": ratio >= 1.0 - threshold}
    if not rec["passed"]:
        raise AuditError(f"anti-caching: one fixed input runs {1 / ratio:.2f}x as fast as varied inputs (median "
                         f"{f * 1e6:.1f} us vs {v * 1e6:.1f} us; {attempts} measurements, ratios "
                         f"{', '.join(f'{r:.2f}' for r in ratios)}; allowed: at most {threshold:.0%} faster): "
                         "the backend caches results")
    return rec


def percentiles(data) -> dict:
    """p50/p90/p99/max of per-call seconds (numpy's linear percentile), or {} without data."""
    if data is None or len(data) == 0:
        return {}
    d = np.asarray(data, dtype=float)
    return {"p50": float(np.percentile(d, 50)), "p90": float(np.percentile(d, 90)),
            "p99": float(np.percentile(d, 99)), "max": float(d.max())}
