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
The fixed-point engine's streaming step, against this one: test_bench_fixed_point.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from ._common import (  # noqa: F401  (one_core: the module's autouse fixture)
    SEQ_LEN,
    STREAM_ROUNDS,
    STREAM_WARMUP,
    inputs,
    mean_seconds,
    model,
    one_core,
    stream_feeder,
    stream_figures,
)

pytestmark = [pytest.mark.benchmark]

CONV_BATCH = 64
CONV_ROUNDS = {"paper": 3, "loihi-profile": 5}  # one paper forward at batch 64 takes ~1-2 s on one core

QUOTED_SOURCE = "Meyer et al. 2024 profiling run, 1-layer H=128 P=4 model on 6 Loihi 2 cores (quoted, not measured here)"
QUOTED_CHIP_STEP_US = {"loihi-profile": 31.0}
GOAL_US_PER_TOKEN = {"loihi-profile": 31.0, "paper": 100.0}  # the goals, one CPU core, batch 1


def _conv_throughput(benchmark, one_core, name):
    m = model(name)
    u = inputs(0, (CONV_BATCH, SEQ_LEN, m.config.d_input))
    benchmark.extra_info.update(config=name, mode="conv", batch=CONV_BATCH, L=SEQ_LEN, **one_core)
    out = benchmark.pedantic(m.forward, args=(u,), kwargs={"mode": "conv"},
                             rounds=CONV_ROUNDS[name], iterations=1, warmup_rounds=1)
    assert out.logits.shape == (CONV_BATCH, m.config.n_classes)
    assert np.isfinite(out.logits).all()
    mean = mean_seconds(benchmark)
    if mean is not None:
        benchmark.extra_info["samples_per_s"] = CONV_BATCH / mean
        benchmark.extra_info["tokens_per_s"] = CONV_BATCH * SEQ_LEN / mean


def _stream_latency(benchmark, one_core, name):
    """One `session.step` per timed round; the untimed setup feeds the tokens of a fixed sequence of SEQ_LEN
    pixel-like inputs in order and resets the session after each whole sequence (`_common.stream_feeder`)."""
    m = model(name)
    session = m.session(1)
    tokens = inputs(1, (SEQ_LEN, 1, m.config.d_input))
    next_token = stream_feeder(session, tokens)

    info = {"config": name, "mode": "stream", "batch": 1, "seq_len": SEQ_LEN, **one_core}
    if name in QUOTED_CHIP_STEP_US:
        info["quoted_chip_step_us"] = QUOTED_CHIP_STEP_US[name]
        info["quoted_source"] = QUOTED_SOURCE
    if name in GOAL_US_PER_TOKEN:
        info["goal_us_per_token"] = GOAL_US_PER_TOKEN[name]
    benchmark.extra_info.update(info)
    logits = benchmark.pedantic(session.step, setup=next_token, rounds=STREAM_ROUNDS, iterations=1,
                                warmup_rounds=STREAM_WARMUP)
    assert logits.shape == (1, m.config.n_classes)
    assert np.isfinite(logits).all()
    assert all(np.isfinite(x).all() for x in session.get_state()["x"])
    figures = stream_figures(benchmark)
    if figures:
        benchmark.extra_info.update({k: figures[k] for k in (
            "us_per_token", "us_per_token_median", "us_per_token_min", "tokens_per_s")})
        if name in GOAL_US_PER_TOKEN:
            # the median: on a shared machine a few preempted rounds inflate the mean, not the median
            benchmark.extra_info["meets_goal"] = bool(figures["us_per_token_median"] <= GOAL_US_PER_TOKEN[name])


@pytest.mark.benchmark(group="conv-throughput")
@pytest.mark.parametrize("name", [pytest.param("paper", marks=pytest.mark.slow), "loihi-profile"])
def test_conv_throughput(benchmark, one_core, name):
    _conv_throughput(benchmark, one_core, name)


@pytest.mark.benchmark(group="stream-latency")
@pytest.mark.parametrize("name", ["loihi-profile", "paper", "small"])
def test_stream_latency(benchmark, one_core, name):
    _stream_latency(benchmark, one_core, name)
