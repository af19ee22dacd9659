"""Test-vector families (SPEC.md section 9). Each returns float64 inputs of shape (N, L, d_input).

Every family is deterministic: fixed amplitudes, or a numpy PCG64 stream from the documented seed.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .validate import S4DInputError

LONG_LENGTH = 16384
SHORT_LENGTH = 256


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    description: str
    make: object  # (d_input, seed) -> (N, L, d_input)


def impulse(d_input: int = 1, seed: int = 0) -> np.ndarray:
    """Unit impulse at k = 0 on every input channel: u[0, 0, :] = 1, zero elsewhere. N=1, L=256."""
    u = np.zeros((1, SHORT_LENGTH, d_input))
    u[0, 0, :] = 1.0
    return u


def step(d_input: int = 1, seed: int = 0) -> np.ndarray:
    """Unit step switched on at k = 16 (zero before, so the initial state is exercised). N=1, L=256."""
    u = np.zeros((1, SHORT_LENGTH, d_input))
    u[0, 16:, :] = 1.0
    return u


def dc(d_input: int = 1, seed: int = 0) -> np.ndarray:
    """Constant levels from k = 0: +1.0 and -0.5. N=2, L=256."""
    return np.stack([np.full((SHORT_LENGTH, d_input), 1.0), np.full((SHORT_LENGTH, d_input), -0.5)])


def noise(d_input: int = 1, seed: int = 0) -> np.ndarray:
    """White Gaussian noise, unit variance, PCG64(seed + 1). N=2, L=256."""
    return np.random.default_rng(seed + 1).standard_normal((2, SHORT_LENGTH, d_input))


def spikes(d_input: int = 1, seed: int = 0) -> np.ndarray:
    """Sparse binary spikes: each step 1 with probability 0.05, else 0, PCG64(seed + 2). N=2, L=256."""
    return (np.random.default_rng(seed + 2).random((2, SHORT_LENGTH, d_input)) < 0.05).astype(np.float64)


def long_noise(d_input: int = 1, seed: int = 0) -> np.ndarray:
    """White Gaussian noise, unit variance, PCG64(seed + 3). N=1, L=16384."""
    return np.random.default_rng(seed + 3).standard_normal((1, LONG_LENGTH, d_input))


def digits(d_input: int = 1, seed: int = 0) -> np.ndarray:
    """scikit-learn load_digits samples 0..7, pixels / 16 in row-major order: N=8, L=64, d_input=1."""
    if d_input != 1:
        raise S4DInputError(f"family 'digits' is 1-dimensional (d_input=1), the model expects d_input={d_input}")
    from sklearn.datasets import load_digits

    return (load_digits().images[:8].reshape(8, 64, 1) / 16.0).astype(np.float64)


FAMILIES = {
    f.name: f
    for f in [
        Family("impulse", impulse.__doc__, impulse),
        Family("step", step.__doc__, step),
        Family("dc", dc.__doc__, dc),
        Family("noise", noise.__doc__, noise),
        Family("spikes", spikes.__doc__, spikes),
        Family("long", long_noise.__doc__, long_noise),
        Family("digits", digits.__doc__, digits),
    ]
}


def make_input(family: str, d_input: int = 1, seed: int = 0) -> np.ndarray:
    try:
        fam = FAMILIES[family]
    except KeyError:
        raise S4DInputError(f"unknown input family {family!r}; known: {', '.join(FAMILIES)}") from None
    return fam.make(d_input, seed)
