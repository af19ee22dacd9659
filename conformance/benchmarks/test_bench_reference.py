"""pytest-benchmark measurements of the float64 reference (not pass/fail timing tests).

    python -m pytest -q conformance/benchmarks --benchmark-disable      # each benchmark once, as a smoke test
    python -m pytest -q conformance/benchmarks --benchmark-json PATH    # real figures, in PATH

Groups:
  conv-throughput   `S4DModel.forward(u, mode="conv")`, a batch of 64 sequences of L=784 steps (sequential
                    MNIST length), d_input=1; extra_info: samples_per_s, tokens_per_s.
  stream-latency    `StreamingSession.step(u_t)` at batch 1, one token per timed call; extra_info:
                    us_per_token (mean), its median and min, and the goal of the issue for that config.

Everything runs on one core: BLAS/OpenMP pools are limited to 1 thread (threadpoolctl) for the module.
The figure quoted from the paper for Loihi 2 is context only; nothing here measures a chip.
"""
from __future__ import annotations

import numpy as np
import pytest

from s4dconf.reference.config import get_config
from s4dconf.reference.model import S4DModel

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # the benchmarks still run, on however many threads the BLAS picks
    threadpool_limits = None

pytestmark = [pytest.mark.benchmark]

CONV_BATCH = 64
SEQ_LEN = 784  # sequential MNIST: 28 x 28 pixels, one per step
CONV_ROUNDS = {"paper": 3, "loihi-profile": 5}  # one paper forward at batch 64 takes ~1-2 s on one core
STREAM_ROUNDS = 6 * SEQ_LEN  # timed tokens per streaming benchmark (six whole sequences)
STREAM_WARMUP = 200

QUOTED_SOURCE = "Meyer et al. 2024 profiling run, 1-layer H=128 P=4 model on 6 Loihi 2 cores (quoted, not measured here)"
QUOTED_CHIP_STEP_US = {"loihi-profile": 31.0}
GOAL_US_PER_TOKEN = {"loihi-profile": 31.0, "paper": 100.0}  # the goals, one CPU core, batch 1


@pytest.fixture(scope="module", autouse=True)
def one_core():
    """Limit BLAS/OpenMP thread pools to 1 for the whole module; yields what to record in extra_info."""
    if threadpool_limits is None:
        yield {"threads": None, "threads_note": "threadpoolctl not importable: BLAS/OpenMP threads not limited"}
        return
    with threadpool_limits(limits=1):
        yield {"threads": 1}


def _model(name: str) -> S4DModel:
    return S4DModel.create(get_config(name), seed=0)


def _inputs(seed: int, shape) -> np.ndarray:
    """Pixel-like inputs in [0, 1): bounded, so the (stable) states stay bounded."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape)


def _mean_seconds(benchmark):
    """Mean seconds per call, or None when nothing was timed (--benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    inner = getattr(stats, "stats", None)
    mean = getattr(inner, "mean", None)
    return mean if mean else None


def _conv_throughput(benchmark, one_core, name):
    model = _model(name)
    u = _inputs(0, (CONV_BATCH, SEQ_LEN, model.config.d_input))
    benchmark.extra_info.update(config=name, mode="conv", batch=CONV_BATCH, L=SEQ_LEN, **one_core)
    out = benchmark.pedantic(model.forward, args=(u,), kwargs={"mode": "conv"},
                             rounds=CONV_ROUNDS[name], iterations=1, warmup_rounds=1)
    assert out.logits.shape == (CONV_BATCH, model.config.n_classes)
    assert np.isfinite(out.logits).all()
    mean = _mean_seconds(benchmark)
    if mean is not None:
        benchmark.extra_info["samples_per_s"] = CONV_BATCH / mean
        benchmark.extra_info["tokens_per_s"] = CONV_BATCH * SEQ_LEN / mean


def _stream_latency(benchmark, one_core, name):
    """One `session.step` per timed round. The untimed setup feeds the tokens of a fixed sequence of
    SEQ_LEN pixel-like inputs in order and resets the session after each whole sequence, as when streaming
    sMNIST digits one after another: the state is always that of a real stream, never left to decay for
    tens of thousands of steps (where float64 subnormals would slow any CPU down)."""
    model = _model(name)
    session = model.session(1)
    tokens = _inputs(1, (SEQ_LEN, 1, model.config.d_input))
    pos = [0]

    def next_token():
        k = pos[0]
        if k == SEQ_LEN:
            session.reset()
            k = 0
        pos[0] = k + 1
        return (tokens[k],), {}

    info = {"config": name, "mode": "stream", "batch": 1, "seq_len": SEQ_LEN, **one_core}
    if name in QUOTED_CHIP_STEP_US:
        info["quoted_chip_step_us"] = QUOTED_CHIP_STEP_US[name]
        info["quoted_source"] = QUOTED_SOURCE
    if name in GOAL_US_PER_TOKEN:
        info["goal_us_per_token"] = GOAL_US_PER_TOKEN[name]
    benchmark.extra_info.update(info)
    logits = benchmark.pedantic(session.step, setup=next_token, rounds=STREAM_ROUNDS, iterations=1,
                                warmup_rounds=STREAM_WARMUP)
    assert logits.shape == (1, model.config.n_classes)
    assert np.isfinite(logits).all()
    assert all(np.isfinite(x).all() for x in session.get_state()["x"])
    mean = _mean_seconds(benchmark)
    if mean is not None:
        st = benchmark.stats.stats
        benchmark.extra_info["us_per_token"] = mean * 1e6
        benchmark.extra_info["us_per_token_median"] = st.median * 1e6
        benchmark.extra_info["us_per_token_min"] = st.min * 1e6
        benchmark.extra_info["tokens_per_s"] = 1.0 / mean
        if name in GOAL_US_PER_TOKEN:
            # the median: on a shared machine a few preempted rounds inflate the mean, not the median
            benchmark.extra_info["meets_goal"] = bool(st.median * 1e6 <= GOAL_US_PER_TOKEN[name])


@pytest.mark.benchmark(group="conv-throughput")
@pytest.mark.parametrize("name", [pytest.param("paper", marks=pytest.mark.slow), "loihi-profile"])
def test_conv_throughput(benchmark, one_core, name):
    _conv_throughput(benchmark, one_core, name)


@pytest.mark.benchmark(group="stream-latency")
@pytest.mark.parametrize("name", ["loihi-profile", "paper", "small"])
def test_stream_latency(benchmark, one_core, name):
    _stream_latency(benchmark, one_core, name)
