"""Distributed evaluation on Dask (training/distributed.py, SPEC.md 18.7): shards of whole batches, a two-worker
LocalCluster giving the single-process logits bit for bit, a killed worker's shards rerun, a failing shard named by
its samples, and the one-process fallback said so."""
from __future__ import annotations

import os

import numpy as np
import pytest

from s4dconf.backends import get_backend
from s4dconf.cli import main
from s4dconf.fixedpoint.formats import read_model_file
from s4dconf.training import distributed
from s4dconf.training.accuracy import last_logits, shipped_model
from s4dconf.training.datasets import load_dataset
from s4dconf.training.distributed import EvalPool, Shard, ShardError, plan_shards, shard_logits

BATCH = 50  # sdigits' 360 test samples in 8 batches: 8 shards on two workers (one batch of 500 would be one shard)
COLUMNS = (("float", "reference"), ("ptq", "numpy-fxp"))


@pytest.mark.parametrize("n,batch,k", [(1, 1, 1), (360, 50, 8), (360, 50, 3), (10_000, 500, 8), (7, 3, 100)])
def test_shards_are_contiguous_whole_batches(n, batch, k):
    shards = plan_shards(n, batch, k)
    assert shards[0].start == 0 and shards[-1].stop == n and len(shards) <= k
    assert all(a.stop == b.start for a, b in zip(shards, shards[1:]))
    assert all(s.start % batch == 0 and len(s) > 0 for s in shards)
    sizes = [len(s) for s in shards[:-1]]
    assert not sizes or max(sizes) - min(sizes) <= batch  # as equal as whole batches allow


@pytest.fixture(scope="module")
def sdigits():
    return load_dataset("sdigits", "test")


@pytest.fixture(scope="module")
def pool():
    pytest.importorskip("distributed", reason="dask is an optional extra: pip install -e '.[dask]'")
    with EvalPool(workers=2, say=lambda _: None, bar=False) as p:
        yield p


@pytest.mark.slow
@pytest.mark.parametrize("kind,backend", COLUMNS)
def test_two_workers_give_the_single_process_logits(pool, sdigits, kind, backend):
    model = read_model_file(shipped_model("sdigits", kind)).model
    alone = last_logits(get_backend(backend), model, sdigits, len(sdigits.y), BATCH)
    shared = pool.runner(get_backend(backend), model, sdigits, len(sdigits.y), BATCH)
    assert len(pool.client().scheduler_info()["workers"]) == 2
    np.testing.assert_array_equal(shared, alone)  # bit for bit, float included: the same batches


def _kill_first(flag):
    """A shard function that kills its own worker process the first time it runs a shard past the first."""
    def shard_fn(backend_name, model, ds, shard, batch):
        if shard.start > 0 and not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(1)  # the worker dies mid-run, no exception, no cleanup
        return shard_logits(backend_name, model, ds, shard, batch)
    return shard_fn


@pytest.mark.slow
def test_a_killed_worker_is_rerun_and_the_result_is_complete(pool, sdigits, tmp_path):
    model = read_model_file(shipped_model("sdigits", "ptq")).model
    alone = last_logits(get_backend("numpy-fxp"), model, sdigits, len(sdigits.y), BATCH)
    flag = tmp_path / "killed"
    pool.shard_fn = _kill_first(str(flag))
    try:
        shared = pool.evaluate({"m": model}, "numpy-fxp", sdigits, len(sdigits.y), BATCH)["m"]
    finally:
        pool.shard_fn = shard_logits
    assert flag.exists()  # a worker was killed
    np.testing.assert_array_equal(shared, alone)


def _fail_at(sample):
    def shard_fn(backend_name, model, ds, shard, batch):
        if shard.start <= sample < shard.stop:
            raise ValueError(f"bad sample {sample}")
        return shard_logits(backend_name, model, ds, shard, batch)
    return shard_fn


@pytest.mark.slow
def test_a_failing_shard_names_its_samples(pool, sdigits):
    model = read_model_file(shipped_model("sdigits", "ptq")).model
    pool.client().wait_for_workers(2, timeout=120)  # a worker killed by the test above is back: 8 shards planned
    pool.shard_fn, pool.retries = _fail_at(120), 1
    try:
        with pytest.raises(ShardError, match=r"samples 100\.\.149 \(shard 3 of 8\) .*after 1 retries: ValueError: "
                                             "bad sample 120"):
            pool.evaluate({"m": model}, "numpy-fxp", sdigits, len(sdigits.y), BATCH, what="sdigits numpy-fxp")
    finally:
        pool.shard_fn, pool.retries = shard_logits, distributed.DEFAULT_RETRIES


def test_one_process_names_the_failing_shard_too(sdigits):
    model = read_model_file(shipped_model("sdigits", "ptq")).model
    local = EvalPool(use_dask=False, shard_fn=_fail_at(120), bar=False)
    assert local.description == "one process (--no-dask)"
    with pytest.raises(ShardError, match=r"samples 120\.\.239 .*ValueError: bad sample 120"):
        local.evaluate({"m": model}, "numpy-fxp", sdigits, len(sdigits.y), 120)


def test_one_process_gives_the_same_logits(sdigits):
    model = read_model_file(shipped_model("sdigits", "float")).model
    alone = last_logits(get_backend("reference"), model, sdigits, len(sdigits.y), BATCH)
    np.testing.assert_array_equal(
        EvalPool(use_dask=False, bar=False).runner(get_backend("reference"), model, sdigits, 360, BATCH), alone)


def test_without_dask_it_says_one_process(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(distributed, "dask_missing", lambda: "dask is not installed (distributed); "
                        + distributed.DASK_HINT + " for distributed evaluation")
    assert main(["eval", "--dataset", "sdigits", "--backend", "numpy-fxp", "--limit", "20", "--out",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "evaluation: one process (dask is not installed" in out and '.[dask]"' in out
    assert main(["eval", "--dataset", "sdigits", "--backend", "numpy-fxp", "--limit", "20", "--no-dask", "--out",
                 str(tmp_path)]) == 0
    assert "evaluation: one process (--no-dask)" in capsys.readouterr().out


def test_scheduler_with_workers_is_refused(capsys, tmp_path):
    assert main(["eval", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2", "--out", str(tmp_path)]) == 2
    assert "--scheduler uses an existing Dask cluster" in capsys.readouterr().err


def test_shard_text():
    assert str(Shard(100, 150)) == "samples 100..149" and len(Shard(100, 150)) == 50


def _timed():
    """A shard function whose 'logits' are when it ran: column 0 its start, column 1 its end (time.time()). A closure,
    so that Dask ships it by value: workers need not import this test module (under tox they cannot)."""
    def shard_fn(backend_name, model, ds, shard, batch):
        import time

        t0 = time.time()
        time.sleep(0.2)
        out = np.zeros((len(shard), 10))
        out[:, 0], out[:, 1] = t0, time.time()
        return out
    return shard_fn


def _most_at_once(logits) -> int:
    spans = np.unique(logits[:, :2], axis=0)
    return max(int(((spans[:, 0] <= t) & (t < spans[:, 1])).sum()) for t in spans[:, 0])


@pytest.mark.slow
def test_lava_shards_run_cores_over_two_at_a_time(pool, sdigits, monkeypatch):
    # one Lava network keeps 2 cores busy (SPEC.md 18.7): on 2 cores a 2-worker LocalCluster runs one Lava shard at
    # a time; other backends, and machines with cores for both, run a shard on every worker at once
    monkeypatch.setattr(pool, "shard_fn", _timed())
    monkeypatch.setattr(distributed, "machine_cores", lambda: 2)
    said = []
    monkeypatch.setattr(pool, "say", said.append)
    lava = pool.evaluate({"m": None}, "lava-fxp", sdigits, len(sdigits.y), 45)["m"]
    assert lava.shape == (360, 10) and len(np.unique(lava[:, 0])) == 8 and _most_at_once(lava) == 1
    assert said[-1] == ("evaluation: lava-fxp shards 1 at a time on the 2 workers (a Lava network keeps 2 cores busy "
                        "by itself; this machine has 2)")
    assert _most_at_once(pool.evaluate({"m": None}, "numpy-fxp", sdigits, 360, 45)["m"]) == 2
    monkeypatch.setattr(distributed, "machine_cores", lambda: 4)
    assert _most_at_once(pool.evaluate({"m": None}, "lava-float", sdigits, 360, 45)["m"]) == 2


def test_lava_jobs_at_once():
    assert [distributed.lava_jobs_at_once(c) for c in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]


def test_runs_lava_simulator_names_the_simulator_backends_only():
    from s4dconf.backends import REGISTRY, runs_lava_simulator

    assert sorted(n for n in REGISTRY if runs_lava_simulator(n)) == ["lava-float", "lava-fxp"]
    assert not runs_lava_simulator("lava-not-a-backend") and not runs_lava_simulator("loihi2")


@pytest.mark.slow
def test_workers_with_other_code_are_refused_before_any_work(pool, monkeypatch):
    address = pool.client().scheduler.address
    monkeypatch.setattr(distributed, "code_fingerprint", lambda: "s4dconf 0.0, code sha256 0123456789abcdef")
    other = EvalPool(address, say=lambda _: None, bar=False)  # this process now "has other code" than the workers
    with pytest.raises(distributed.WorkerMismatch, match=(
            rf"Dask workers of {address} cannot run this evaluation: here s4dconf 0.0, code sha256 0123456789abcdef, "
            r"on 2 worker\(s\): tcp://.*: s4dconf \d+\.\d+\.\d+, code sha256 [0-9a-f]{16}.*pip install -e")):
        other.client()
    assert other._client is None  # closed, nothing submitted


def test_an_unreachable_scheduler_is_bad_input():
    pytest.importorskip("distributed", reason="dask is an optional extra: pip install -e '.[dask]'")
    pool = EvalPool("tcp://127.0.0.1:1", say=lambda _: None, bar=False, connect_timeout_s=1.0)
    with pytest.raises(distributed.S4DInputError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:1 \(.*\); "
                                                        r"start one with `dask scheduler`"):
        pool.client()


def test_code_fingerprint_follows_the_shard_code(tmp_path, monkeypatch):
    import importlib.util
    import types

    for sub in distributed.SHARD_CODE:
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: types.SimpleNamespace(
        submodule_search_locations=[str(tmp_path / name.split(".")[1])]))
    before = distributed.code_fingerprint()
    assert before == distributed.code_fingerprint()
    (tmp_path / "backends" / "a.py").write_text("x = 2\n")  # one changed line of a backend: other code
    changed = distributed.code_fingerprint()
    (tmp_path / "backends" / "a.py").write_text("x = 1\n")
    (tmp_path / "backends" / "b.py").write_text("")  # a file more: other code
    assert len({before, changed, distributed.code_fingerprint()}) == 3
