"""The benchmark audits (SPEC.md 20, after MLPerf's TEST01 and TEST04): a backend that returns stale or cached
outputs fails the very functions the timed benchmarks run; a correct backend passes them."""
from __future__ import annotations

import numpy as np
import pytest

from s4dconf.backends import get_backend
from s4dconf.conformance.benchmarks import _audit
from s4dconf.conformance.benchmarks._common import model
from s4dconf.conformance.benchmarks.test_bench_modes import SETS, measure_stream, measure_whole

CFG, L = "loihi-profile", 64
TINY = {**SETS["smoke"], "min_tokens": 3 * L, "min_seconds": 0.0, "rounds": 3, "anti_cache_pairs": 9}


class _Stats:
    def __init__(self, data):
        self.stats = type("S", (), {"data": data, "mean": float(np.mean(data)), "median": float(np.median(data)),
                                    "min": float(np.min(data))})()


class FakeBenchmark:
    """pytest-benchmark's pedantic, timed with perf_counter (enough for the audits: they run after it)."""

    def __init__(self):
        self.extra_info, self.stats, self.group = {}, None, None

    def pedantic(self, target, setup, rounds, iterations=1, warmup_rounds=0):
        import time

        data, out = [], None
        for i in range(warmup_rounds + rounds):
            args, kwargs = setup()
            t0 = time.perf_counter()
            out = target(*args, **kwargs)
            if i >= warmup_rounds:
                data.append(time.perf_counter() - t0)
        self.stats = _Stats(data)
        return out


class StaleBufferBackend:
    """Streaming that returns a view of one internal buffer, overwritten by the next step (stale outputs)."""

    def __init__(self):
        self.inner = get_backend("reference")
        self.name = "stale-buffer"

    def prepare(self, m):
        return self.inner.prepare(m)

    def open_session(self, handle, batch, **kw):
        s = self.inner.open_session(handle, batch)
        buf = [None]

        class Stale:
            def step(self, u):
                out = s.step(u)
                if buf[0] is None:
                    buf[0] = np.empty_like(out)
                buf[0][...] = out
                return buf[0]

            def reset(self):
                s.reset()

        return Stale()


class CachingBackend:
    """Whole-sample runs cached per handle and input shape (the first batch's answer for every later batch), and
    optionally per input content (right answers, no work on a repeat: what the anti-caching check is for)."""

    def __init__(self, by_content=False):
        self.inner = get_backend("reference")
        self.name = "caching"
        self.by_content = by_content

    def prepare(self, m):
        return {"h": self.inner.prepare(m), "cache": {}}

    def run(self, handle, u, path):
        key = u.tobytes() if self.by_content else u.shape
        if key not in handle["cache"]:
            handle["cache"][key] = self.inner.run(handle["h"], u, path)
        return handle["cache"][key]


def test_correct_backend_passes_both_audits():
    b = get_backend("reference")
    m = model(CFG)
    bench = FakeBenchmark()
    measure_stream(bench, b, b.prepare(m), m, 1, L, TINY)
    a = bench.extra_info["audit"]
    assert a["passed"] and a["hash_match"] and a["anti_caching"]["passed"]
    assert a["outputs_hashed"] >= TINY["min_tokens"]
    bench = FakeBenchmark()
    measure_whole(bench, b, b.prepare(m), m, "recurrent", 2, L, TINY)
    a = bench.extra_info["audit"]
    assert a["passed"] and a["output_sha256"] == a["replay_sha256"] and a["anti_caching"]["passed"]


def test_stale_stream_outputs_fail_the_hash_audit():
    b = StaleBufferBackend()
    m = model(CFG)
    with pytest.raises(_audit.AuditError, match="stale or cached"):
        measure_stream(FakeBenchmark(), b, b.prepare(m), m, 1, L, TINY)


def test_cached_whole_sample_outputs_fail_the_hash_audit():
    b = CachingBackend()
    m = model(CFG)
    with pytest.raises(_audit.AuditError, match="stale or cached"):
        measure_whole(FakeBenchmark(), b, b.prepare(m), m, "recurrent", 2, L, TINY)


def test_content_cache_fails_the_anti_caching_audit():
    b = CachingBackend(by_content=True)  # right outputs, so the hash passes; repeats cost nothing
    m = model(CFG)
    with pytest.raises(_audit.AuditError, match="anti-caching"):
        measure_whole(FakeBenchmark(), b, b.prepare(m), m, "recurrent", 2, L, TINY)


def test_output_hash_is_order_and_value_sensitive():
    x, y = np.zeros((1, 3)), np.ones((1, 3))
    assert _audit.output_hash([x, y]) != _audit.output_hash([y, x])
    assert _audit.output_hash([x]) == _audit.output_hash([-x])  # -0.0 and 0.0 hash alike
    assert _audit.percentiles([1.0, 2.0, 3.0])["max"] == 3.0 and _audit.percentiles([]) == {}
