"""Streaming versus whole-sample benchmarks of every available backend (the paper's two modes; SPEC.md section 20).

    pytest -m benchmark conformance/benchmarks/test_bench_modes.py --benchmark-json reports/benchmarks/NAME.json
    ... --bench-set smoke        # what CI compares: loihi-profile, L=784, batch 1, 8 and 64, few rounds

Groups (extra_info: backend, mode, path, device, dtype, batch, L, config, model_sha256, threads):
  stream        scenarios single-stream (batch 1) and multi-stream (batch B): `session.step(u_t)`, one token per
                timed call, numpy in and out (what a streaming user sees), the session reset after each whole
                sequence of L tokens, at least min_tokens steps and min_seconds; us_per_token (+ p50/p90/p99/max).
                torch-rec on CUDA also through its captured CUDA graph (path cuda-graph).
  whole-sample  scenario offline: `backend.run(handle, u, path)` on a batch of whole sequences (a different one
                each round), for each evaluation path; every benchmark is audited (_audit.py: output hash
                against an untimed replay, anti-caching):
                samples_per_s, tokens_per_s (= batch L / seconds).
Configs paper and loihi-profile, L = 784 (sMNIST) and 1024 (sCIFAR), batch 1, 8, 64; float backends get the
float64 model of (config, seed 0), fixed-point ones its default PTQ. CPU backends run on one thread. The Lava
simulator is benchmarked apart (test_bench_lava.py: its per-step cost is milliseconds). The chip's step time for
loihi-profile is quoted from the paper (quoted_* fields), never measured here.
"""
from __future__ import annotations

import functools
import math
import time

import numpy as np
import pytest

from s4dconf.backends import REGISTRY, get_backend
from s4dconf.reference.modelfile import params_digest
from s4dconf.measure.energy import energy_extra_info, measure, meter_for

from . import _audit
from ._common import inputs, mean_seconds, model, one_core, stream_figures  # noqa: F401

pytestmark = [pytest.mark.benchmark]

QUOTED_SOURCE = ("Meyer et al. 2024 profiling run, 1-layer H=128 P=4 model on 6 Loihi 2 cores (quoted, not measured "
                 "here; grade: paper body, SPEC.md 21.1)")
QUOTED_CHIP_STEP_US = {"loihi-profile": 31.0}
BENCH_BACKENDS = ("reference", "numpy-fxp", "torch-rec", "torch-conv")  # float64, integer, and the paper's GPU modes
SETS = {
    "full": {"configs": ("loihi-profile", "paper"), "lengths": (784, 1024), "batches": (1, 8, 64),
             "stream_batches": (1, 8, 64), "min_tokens": 4 * 784, "min_seconds": 2.0, "rounds": 3,
             "anti_cache_pairs": 8},
    "smoke": {"configs": ("loihi-profile",), "lengths": (784,), "batches": (1, 8, 64), "stream_batches": (1, 8),
              "min_tokens": 784, "min_seconds": 0.1, "rounds": 2, "anti_cache_pairs": 4},
}


def _available() -> list[str]:
    return [n for n in BENCH_BACKENDS if n in REGISTRY and get_backend(n).availability().available]


def pytest_generate_tests(metafunc):
    # a run with --benchmark-disable executes each benchmark once as a test: the smoke set is enough for that
    disabled = metafunc.config.getoption("benchmark_disable", False)
    bench_set = SETS["smoke" if disabled else metafunc.config.getoption("--bench-set")]
    if "bench_case" not in metafunc.fixturenames:
        return
    streaming = metafunc.function.__name__ == "test_stream"
    cases = []
    for name in _available():
        info = get_backend(name).info()
        if streaming and not info.streaming:
            continue
        paths = (["default"] + (["cuda-graph"] if "cuda-graph" in info.paths else [])) if streaming else info.paths
        for cfg in bench_set["configs"]:
            for L in bench_set["lengths"]:
                for path in paths:
                    for batch in (bench_set["stream_batches"] if streaming else bench_set["batches"]):
                        cases.append(pytest.param((name, path, cfg, L, batch, bench_set),
                                                  id=f"{name}:{path}-{cfg}-L{L}-b{batch}"))
    metafunc.parametrize("bench_case", cases)


@functools.lru_cache(maxsize=None)
def _prepared(name: str, cfg: str):
    backend = get_backend(name)
    return backend, backend.prepare(model(cfg))


def _extra(backend, path, cfg, L, batch, mode, one_core) -> dict:
    info = backend.info()
    out = {"backend": backend.name, "mode": mode, "path": path, "device": info.device, "dtype": info.numeric_class,
           "batch": batch, "L": L, "config": cfg, "model_sha256": params_digest(model(cfg)), **one_core}
    if info.numeric_class == "fixed-point":
        out["model_note"] = "the float64 model's default PTQ (SPEC.md 15)"
    if cfg in QUOTED_CHIP_STEP_US:
        out.update(quoted_chip_step_us=QUOTED_CHIP_STEP_US[cfg], quoted_source=QUOTED_SOURCE)
    return out


def _torch_threads_one():
    try:
        import torch
    except ImportError:
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return lambda: torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def torch_one_thread():
    restore = _torch_threads_one()
    yield
    if restore:
        restore()


def _syncer(backend):
    """What the timed call runs last: torch.cuda.synchronize for a torch backend on CUDA, else nothing. Decided
    once, outside the timed call (backend.info() costs microseconds: the streaming step is tens of them)."""
    if backend.name.startswith("torch") and "cuda" in backend.info().device:
        import torch

        return torch.cuda.synchronize
    return lambda: None


ENERGY_MIN_SECONDS = 2.0  # an energy span long enough for counters of ms / mJ resolution


def _energy(benchmark, backend, fn, args, tokens_per_call: int, samples_per_call: float):
    """Energy of the timed call, measured over repeated calls after the timing (never estimated): energy_* fields
    of SPEC.md 20 when the device has a meter, else energy = "not measured: <reason>"."""
    meter = meter_for("cuda" if "cuda" in backend.info().device else "cpu")
    mean = mean_seconds(benchmark)
    ok, _ = meter.available()
    if not ok or mean is None:
        benchmark.extra_info.update(energy_extra_info(None, None, 0, 0, meter))
        return
    calls = max(1, int(ENERGY_MIN_SECONDS / mean))

    def repeat():
        for _ in range(calls):
            fn(*args)

    _, joules, seconds = measure(meter, repeat)
    benchmark.extra_info.update(energy_extra_info(joules, seconds, calls * tokens_per_call,
                                                  calls * samples_per_call, meter))


def _stream_rounds(session, tokens, step, bench_set) -> int:
    """single-stream / multi-stream: at least `min_tokens` timed steps and at least `min_seconds` of them, the
    step time estimated outside the timer from 50 steps of a separate session."""
    t0 = time.perf_counter()
    for k in range(50):
        step(session, tokens[k % len(tokens)])
    est = (time.perf_counter() - t0) / 50
    return max(bench_set["min_tokens"], math.ceil(bench_set["min_seconds"] / max(est, 1e-9)))


def measure_stream(benchmark, backend, handle, mdl, batch: int, L: int, bench_set: dict, graph: bool = False,
                   sync=lambda: None):
    """The single-stream (batch 1) / multi-stream (batch B) scenario: `session.step(u_t)` of B streams advanced
    together, one token per timed call, a reset after each whole sequence of L tokens; then the audits (the output
    hash against an untimed replay, anti-caching). Returns the last output. Used by test_stream and by
    conformance/meta/test_bench_audit.py (with backends that cheat)."""
    def opener(h):
        return backend.open_session(h, batch, graph=True) if graph else backend.open_session(h, batch)

    tokens = inputs(1, (L, batch, mdl.config.d_input))

    def bare_step(s, u):
        out = s.step(u)
        sync()
        return out

    record = _audit.StreamRecord(opener(handle), tokens, bare_step)
    rounds = _stream_rounds(opener(handle), tokens, bare_step, bench_set)
    logits = benchmark.pedantic(record.timed, setup=record.setup, rounds=rounds, iterations=1,
                                warmup_rounds=min(200, L))
    _audit.audit_stream(benchmark, record, lambda: opener(backend.prepare(mdl)), lambda: opener(handle),
                        bench_set["anti_cache_pairs"], f"{backend.name} stream batch {batch}")
    return logits


def test_stream(benchmark, one_core, bench_case):
    name, path, cfg, L, batch, bench_set = bench_case
    backend, handle = _prepared(name, cfg)
    mdl = model(cfg)
    benchmark.group = f"stream {cfg} L={L}"
    benchmark.extra_info.update(_extra(backend, path, cfg, L, batch, "stream", one_core))
    benchmark.extra_info["scenario"] = "single-stream" if batch == 1 else "multi-stream"
    sync = _syncer(backend)
    logits = measure_stream(benchmark, backend, handle, mdl, batch, L, bench_set, graph=path == "cuda-graph",
                            sync=sync)
    assert logits.shape == (batch, mdl.config.n_classes) and np.isfinite(logits).all()
    figures = stream_figures(benchmark, batch)
    if figures:
        benchmark.extra_info.update(figures)
        benchmark.extra_info.update(_audit.percentile_figures(benchmark, "per_token"))
    session = backend.open_session(handle, batch)
    tok = inputs(1, (1, batch, mdl.config.d_input))[0]

    def step(u):
        out = session.step(u)
        sync()
        return out

    _energy(benchmark, backend, step, (tok,), batch, batch / L)


def measure_whole(benchmark, backend, handle, mdl, path: str, batch: int, L: int, bench_set: dict,
                  sync=lambda: None):
    """The offline scenario: `backend.run(handle, u, path)` on a batch of whole sequences, a different batch each
    round (warm-up included); then the audits. Returns the last output."""
    n = bench_set["rounds"] + 1
    pool = [inputs(100 + k, (batch, L, mdl.config.d_input)) for k in range(n)]
    order, outs, pos = [], [], [0]

    def next_batch():
        k = pos[0] % n
        pos[0] += 1
        order.append(k)
        return (pool[k],), {}

    def run(u):
        out = backend.run(handle, u, path)
        sync()
        outs.append(out)
        return out

    out = benchmark.pedantic(run, setup=next_batch, rounds=bench_set["rounds"], iterations=1, warmup_rounds=1)
    audit = _audit.check_hash(_audit.output_hash(outs),
                              _audit.replay_whole(backend, mdl, path, [pool[k] for k in order]),
                              f"{backend.name} whole-sample {path} batch {batch}")
    audit["outputs_hashed"] = len(outs)
    if mean_seconds(benchmark) is not None:
        pairs = bench_set["anti_cache_pairs"]

        def call(u):
            backend.run(handle, u, path)
            sync()

        anti = _audit.inputs_anti_caching(call, pool[0], _audit.varied_inputs(pool[0].shape, pairs), pairs)
    else:
        anti = _audit.NOT_TIMED
    _audit.store_audit(benchmark, audit, anti)
    return out


def test_whole_sample(benchmark, one_core, bench_case):
    name, path, cfg, L, batch, bench_set = bench_case
    backend, handle = _prepared(name, cfg)
    mdl = model(cfg)
    sync = _syncer(backend)
    benchmark.group = f"whole-sample {cfg} L={L}"
    benchmark.extra_info.update(_extra(backend, path, cfg, L, batch, "whole-sample", one_core))
    benchmark.extra_info["scenario"] = "offline"
    out = measure_whole(benchmark, backend, handle, mdl, path, batch, L, bench_set, sync)
    assert out.step_logits.shape[0] == batch and np.isfinite(out.step_logits[:, -1]).all()
    mean = mean_seconds(benchmark)
    if mean is not None:
        benchmark.extra_info.update(samples_per_s=batch / mean, tokens_per_s=batch * L / mean,
                                    us_per_sample=mean * 1e6 / batch)
        benchmark.extra_info.update(_audit.percentile_figures(benchmark, "per_call"))
    u = inputs(0, (batch, L, mdl.config.d_input))

    def run():
        r = backend.run(handle, u, path)
        sync()
        return r

    _energy(benchmark, backend, run, (), batch * L, batch)
