"""Running a backend with its delays removed (SPEC.md section 8): the one way the suite, the accuracy table and the
benchmarks read a backend's answers at the reference's step indices.

A backend with delay d emits the answer for input step k at output index k + d. `pad_for_delay` feeds d extra
zero steps; `aligned_run` and `aligned_stream` read indices d .. d + L - 1.
"""
from __future__ import annotations

import numpy as np

from s4dconf.reference.validate import S4DInputError


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
