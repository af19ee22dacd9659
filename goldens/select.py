"""Which steps, channels and states a golden case stores (SPEC.md section 10): small enough to ship, dense enough
to catch an off-by-one step or a swapped channel. Shared by the float and the integer goldens."""
from __future__ import annotations

import numpy as np

MAX_STEPS = 128
MAX_CHANNELS = 4


def select_steps(L: int) -> np.ndarray:
    """All steps if L <= 128, else the first 32, the last 32 and 64 evenly spaced ones."""
    if L <= MAX_STEPS:
        return np.arange(L)
    picks = np.concatenate([np.arange(32), np.arange(L - 32, L), np.linspace(0, L - 1, 64).round()])
    return np.unique(picks.astype(np.int64))


def select_channels(H: int) -> np.ndarray:
    """All channels if H <= 4, else 4 evenly spaced from 0 to H - 1."""
    if H <= MAX_CHANNELS:
        return np.arange(H)
    return np.unique(np.linspace(0, H - 1, MAX_CHANNELS).round().astype(np.int64))


def select_state_steps(L: int) -> np.ndarray:
    return np.unique(np.array([min(15, L - 1), L - 1], dtype=np.int64))
