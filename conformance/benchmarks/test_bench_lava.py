"""Lava's cost per time step for lava-fxp next to numpy-fxp on the same fixed-point model, in one run.

A Lava run has a fixed cost (compile, fork every process, start, stop: ~0.4 s) plus a cost per step. The per-step
figure is the marginal one: (t(L2) - t(L1)) / (L2 - L1) from two runs of different lengths, so the fixed cost
cancels. numpy-fxp is timed per step on the same model and inputs. Skips with the reason without lava-nc.
The guide's target: the fixed-point emulator at least 100x faster per step than the Lava fixed-point simulator.

Audited as every timed benchmark is (SPEC.md 20, `_audit.py`), since the claim `emulator-vs-lava` reads these
figures: the outputs of every timed run (both Lava lengths, each numpy-fxp repetition) hash the same as those
inputs run again untimed on a freshly quantised model; anti-caching on each engine, one fixed input against varied
ones (Lava at L_SHORT with LAVA_ANTI_CACHE_PAIRS pairs: a run costs ~0.7 s, and a cache would cost ~nothing).
extra_info["audit"]["anti_caching"] holds one record per engine.
"""
from __future__ import annotations

import time

import pytest

from s4dconf.backends.lava_runtime import lava_availability
from s4dconf.fixedpoint.engine import run_fxp
from s4dconf.fixedpoint.quantize import quantize

from . import _audit
from ._common import (LAVA_REPEATS, inputs, marginal_seconds_per_step, mean_seconds, min_seconds,  # noqa: F401
                      model, one_core)

pytestmark = [pytest.mark.benchmark]

L_SHORT, L_LONG = 64, 1024  # ~1 s of steps at B = 1 beyond the short run (marginal_seconds_per_step)
GOAL_SPEEDUP = 100.0
NUMPY_REPS = 5
LAVA_ANTI_CACHE_PAIRS = 2


@pytest.fixture(scope="module")
def lava_fxp():
    ok, reason = lava_availability()
    if not ok:
        pytest.skip(f"lava-fxp benchmark needs lava-nc: {reason}")
    from s4dconf.backends import get_backend

    return get_backend("lava-fxp")


@pytest.mark.slow
@pytest.mark.benchmark(group="lava-vs-numpy-fxp-step")
@pytest.mark.parametrize("name", ["loihi-profile", "small"])
def test_lava_fxp_cost_per_step(benchmark, one_core, lava_fxp, name):  # noqa: F811
    m = quantize(model(name))
    u = inputs(3, (1, L_LONG, m.config.d_input))
    lava_inputs, timed_outs = [], []  # every timed run's input (Lava) and output, in order, by reference

    def lava_run(x):
        out = lava_fxp.run_integers(m, x)
        lava_inputs.append(x)
        timed_outs.append(out)
        return out

    def lava_seconds(L):
        t0 = time.perf_counter()
        lava_run(u[:, :L])
        return time.perf_counter() - t0

    repeats = 1 if benchmark.disabled else LAVA_REPEATS  # --benchmark-disable (tox -e lava): a run-through only
    shorts = [lava_seconds(L_SHORT) for _ in range(repeats)]
    result = benchmark.pedantic(lava_run, args=(u,), rounds=repeats, iterations=1)
    assert result.step_logits.shape[:2] == (1, L_LONG)  # bit-exactness is the conformance suite's job
    longs = [min_seconds(benchmark) or lava_seconds(L_LONG)]
    n_lava = len(timed_outs)
    t0 = time.perf_counter()
    for _ in range(NUMPY_REPS):
        timed_outs.append(run_fxp(m, u))
    numpy_step_us = (time.perf_counter() - t0) / (NUMPY_REPS * L_LONG) * 1e6
    lava_step_us = marginal_seconds_per_step(shorts, longs, L_SHORT, L_LONG) * 1e6
    fresh = quantize(model(name))
    replayed = (_audit.replay(lambda x: lava_fxp.run_integers(fresh, x), lava_inputs)
                + _audit.replay(lambda x: run_fxp(fresh, x), [u] * NUMPY_REPS))
    audit = _audit.check_hash(_audit.output_hash(timed_outs), _audit.output_hash(replayed),
                              f"lava-fxp ({n_lava} runs) and numpy-fxp ({NUMPY_REPS} runs) of {name}")
    audit["outputs_hashed"] = len(timed_outs)
    if mean_seconds(benchmark) is not None:
        short = u[:, :L_SHORT]
        anti = {"lava-fxp": _audit.inputs_anti_caching(
                    lambda x: lava_fxp.run_integers(m, x), short,
                    _audit.varied_inputs(short.shape, LAVA_ANTI_CACHE_PAIRS), LAVA_ANTI_CACHE_PAIRS),
                "numpy-fxp": _audit.inputs_anti_caching(lambda x: run_fxp(m, x), u, _audit.varied_inputs(u.shape))}
    else:
        anti = _audit.NOT_TIMED
    _audit.store_audit(benchmark, audit, anti)
    benchmark.extra_info.update(
        config=name, batch=1, backend="lava-fxp", steps=(L_SHORT, L_LONG), **one_core,
        lava_fixed_cost_s=min(shorts) - L_SHORT * lava_step_us * 1e-6, repeats=repeats, lava_us_per_step=lava_step_us,
        numpy_fxp_us_per_step=numpy_step_us, speedup_numpy_over_lava=lava_step_us / numpy_step_us,
        goal_speedup=GOAL_SPEEDUP, meets_goal=bool(lava_step_us / numpy_step_us >= GOAL_SPEEDUP))
