"""Shared by the benchmark modules: the one-thread fixture, models, inputs, the streaming feeder, timing figures.

A module uses the fixture by importing it (`from ._common import one_core`); it is module-scoped and autouse,
so every benchmark of that module runs with BLAS/OpenMP pools limited to 1 thread.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from s4dconf.reference.config import get_config
from s4dconf.reference.model import S4DModel

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # the benchmarks still run, on however many threads the BLAS picks
    threadpool_limits = None

SEQ_LEN = 784  # sequential MNIST: 28 x 28 pixels, one per step
STREAM_ROUNDS = 6 * SEQ_LEN  # timed tokens per streaming benchmark (six whole sequences)
STREAM_WARMUP = 200


@pytest.fixture(scope="module", autouse=True)
def one_core():
    """Limit BLAS/OpenMP thread pools to 1 for the whole module; yields what to record in extra_info."""
    if threadpool_limits is None:
        yield {"threads": None, "threads_note": "threadpoolctl not importable: BLAS/OpenMP threads not limited"}
        return
    with threadpool_limits(limits=1):
        yield {"threads": 1}


@functools.lru_cache(maxsize=None)
def model(name: str) -> S4DModel:
    """The float64 model of a named config, seed 0 (shared by the benchmarks; sessions do not change it)."""
    return S4DModel.create(get_config(name), seed=0)


def inputs(seed: int, shape) -> np.ndarray:
    """Pixel-like inputs in [0, 1): bounded, so the (stable) states stay bounded."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape)


LAVA_REPEATS = 3  # Lava runs per length for a marginal cost per step (marginal_seconds_per_step)


def min_seconds(benchmark):
    """Fastest timed call in seconds, or None when nothing was timed (--benchmark-disable)."""
    inner = getattr(getattr(benchmark, "stats", None), "stats", None)
    fastest = getattr(inner, "min", None)
    return fastest if fastest else None


def marginal_seconds_per_step(short_runs, long_runs, L_short: int, L_long: int) -> float:
    """Seconds per simulated step from Lava runs of the same streams at two lengths:
        (min t_long - min t_short) / (L_long - L_short)
    A Lava run costs a fixed part (compile, fork every process, start, stop: seconds, varying by tenths of a second
    from run to run) plus L steps. One run per length made the marginal noise-dominated (quiet machine: 5.0 ms per
    step at B = 1 in one benchmark, 1.1 ms in another of the same model); the fastest of LAVA_REPEATS runs per
    length is the least disturbed (load only adds time), and the windows are long enough that their variable part
    (seconds) dwarfs that spread."""
    return (min(long_runs) - min(short_runs)) / (L_long - L_short)


def mean_seconds(benchmark):
    """Mean seconds per call, or None when nothing was timed (--benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    inner = getattr(stats, "stats", None)
    mean = getattr(inner, "mean", None)
    return mean if mean else None


def stream_figures(benchmark, batch: int = 1) -> dict:
    """Per-step figures of a streaming benchmark (empty when nothing was timed): us_per_token is one step of all
    N streams (mean; also median and min), us_per_token_per_stream that divided by N, tokens_per_s = N / mean."""
    mean = mean_seconds(benchmark)
    if mean is None:
        return {}
    st = benchmark.stats.stats
    return {"us_per_token": mean * 1e6, "us_per_token_median": st.median * 1e6, "us_per_token_min": st.min * 1e6,
            "us_per_token_per_stream": mean * 1e6 / batch, "tokens_per_s": batch / mean}
