"""Distributed evaluation on Dask (SPEC.md 18.7): a test split cut into contiguous shards of whole batches, each
shard evaluated by the table's own per-sample code path (`accuracy.last_logits`) on a Dask worker, the logits put
back in sample order.

    shards   [0, s_1), [s_1, s_2), ..., [s_{k-1}, n),  every s_i a multiple of the batch size b
    shard i  last_logits(backend, model, ds, stop=s_{i+1}, batch=b, start=s_i)    -> (s_{i+1} - s_i, classes)
    result   the shards' logits concatenated in order                              -> (n, classes)

Because every shard boundary is a batch boundary of the single-process run, each batch is the same array in the
same order either way: the integers of a fixed-point backend are identical, and a float backend gets the same
numbers as long as one batch gives the same numbers in any process (the workers run one BLAS thread each; the test
of this module checks `reference` against the single-process run bit for bit).

Where the shards run (`EvalPool`): an existing Dask scheduler (`scheduler="tcp://HOST:PORT"`), else a
`distributed.LocalCluster` of this machine's cores (processes, one thread each) started on first use, else this
process (`use_dask=False`, or dask not installed: the pool's description says which). Work of a single shard never
starts a cluster. A task whose worker dies is rerun by Dask's scheduler (`distributed.scheduler.allowed-failures`); a
task that raises is retried `retries` times; what still fails is a ShardError naming its samples and the cause.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import uuid
from pathlib import Path

import numpy as np

from s4dconf.backends import get_backend, runs_lava_simulator
from s4dconf.reference.validate import S4DInputError

from .accuracy import _bar, last_logits

DASK_HINT = 'pip install -e ".[dask]"'
# The LocalCluster's settings. Non-daemonic workers: a Lava backend runs each job in a child process (SPEC.md 16.3),
# which a daemonic multiprocessing worker may not start. The rest quiets Dask's own housekeeping, which on 2 cores
# is not free: an idle 2-worker cluster with the defaults (statistical profiler every 10 ms, event-loop tick every
# 20 ms, system and memory monitors at 0.5 s and 0.1 s, a dashboard) took 15 % of a core here, with these 2.5 %.
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.daemon": False,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}
# One Lava network is ~10-30 processes (one per Lava process and the runtime's) that keep 2 cores busy by themselves:
# on this 2-core machine one batch of 256 smnist samples took 31 s alone and 120 s with two networks at once (each
# worker running one), so two workers halved the throughput. On a LocalCluster started here at most
# cores // LAVA_NETWORK_CORES Lava shards run at once.
LAVA_NETWORK_CORES = 2
# At most this many shards per worker, so usually one batch per shard: Dask balances small shards well. With 4 per
# worker the smnist split (20 batches of 500) was 8 shards of 2 or 3 batches, and 2 workers finished it in 139-147 s
# against 218 s in one process (1.5x); one batch per shard took 125 s (1.75x). Eight 1-batch shards on 2 workers kept
# both busy to within 1 s.
SHARDS_PER_WORKER = 16
DEFAULT_RETRIES = 2  # reruns of a shard that raised, before its error is reported


@dataclasses.dataclass(frozen=True)
class Shard:
    """Samples start..stop-1 of a test split."""

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def __str__(self) -> str:
        return f"samples {self.start}..{self.stop - 1}"


class ShardError(RuntimeError):
    """A shard (or the model it needed) failed after its retries; the message names the samples and the cause."""


def plan_shards(n: int, batch: int, n_shards: int) -> tuple[Shard, ...]:
    """Contiguous shards covering samples 0..n-1: at most n_shards, each a whole number of batches (the last may end
    short), as equal as the batches allow. b = batch, B = ceil(n / b) batches, k = min(n_shards, B):
    shard i = batches floor(i B / k) .. floor((i + 1) B / k) - 1."""
    if n < 1 or batch < 1 or n_shards < 1:
        raise ValueError(f"plan_shards needs n, batch, n_shards >= 1, got {n}, {batch}, {n_shards}")
    n_batches = -(-n // batch)
    k = min(n_shards, n_batches)
    cuts = [i * n_batches // k for i in range(k + 1)]
    return tuple(Shard(a * batch, min(n, b * batch)) for a, b in zip(cuts, cuts[1:]))


def shard_logits(backend_name: str, model, ds, shard: Shard, batch: int) -> np.ndarray:
    """The work of one shard, on a worker: the table's per-sample code path over the shard's samples."""
    return last_logits(get_backend(backend_name), model, ds, shard.stop, batch, start=shard.start)


def lava_jobs_at_once(cores: int) -> int:
    """How many Lava networks a machine of `cores` cores runs at once without slowing each other (LAVA_NETWORK_CORES)."""
    return max(1, cores // LAVA_NETWORK_CORES)


def _holding(lease, fn, *args):
    """fn(*args), holding one of the lease's slots while it runs (lease None: no limit)."""
    if lease is None:
        return fn(*args)
    with lease:
        return fn(*args)


def _same(x):
    """A task that returns its argument: data held in the task graph, so Dask can recompute it when the worker
    holding it dies (scattered data could not be)."""
    return x


def dask_missing() -> str | None:
    """None when dask.distributed imports, else why not (with how to install it)."""
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        return f"dask is not installed ({e.name or e}); {DASK_HINT} for distributed evaluation"
    return None


def machine_cores() -> int:
    """The cores this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# The subpackages a shard's code path runs (the model file readers, the backends, the evaluation itself).
SHARD_CODE = ("reference", "fixedpoint", "backends", "training")


def code_fingerprint() -> str:
    """s4dconf's version and a sha256 of the source of SHARD_CODE: equal on two machines when their shards compute
    with the same code (a worker with another checkout would give other numbers, or fail to unpickle a task, which
    Dask does not report: the job hangs)."""
    from s4dconf import __version__

    h = hashlib.sha256()
    for sub in SHARD_CODE:
        root = Path(importlib.util.find_spec(f"s4dconf.{sub}").submodule_search_locations[0])
        for f in sorted(root.rglob("*.py")):
            h.update(f"{sub}/{f.relative_to(root).as_posix()}\0".encode() + f.read_bytes())
    return f"s4dconf {__version__}, code sha256 {h.hexdigest()[:16]}"


class WorkerMismatch(S4DInputError):
    """Dask workers that cannot run this process's shards (s4dconf missing there, or other code): the cluster the
    user named is not usable, as a bad input is."""


class EvalPool:
    """Where shards run (module docstring). Use as a context manager, or call close()."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None, use_dask: bool = True,
                 retries: int = DEFAULT_RETRIES, shard_fn=shard_logits, say=print, bar: bool = True,
                 connect_timeout_s: float = 30.0):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if scheduler is not None and workers is not None:
            raise ValueError("workers sizes the LocalCluster started here; a scheduler's cluster has its own")
        self.scheduler, self.workers, self.retries = scheduler, workers, retries
        self.shard_fn, self.say, self.bar, self.connect_timeout_s = shard_fn, say, bar, connect_timeout_s
        self.why_local = "--no-dask" if not use_dask else dask_missing()
        self._client = self._cluster = None

    # ------------------------------------------------------------------------------------------- where
    @property
    def description(self) -> str:
        if self.why_local:
            return f"one process ({self.why_local})"
        if self._client is not None:
            return (f"Dask, {len(self._client.scheduler_info().get('workers', {}))} worker processes "
                    f"({self.scheduler or 'a LocalCluster on this machine, 1 thread each'})")
        if self.scheduler:
            return f"the Dask cluster at {self.scheduler}"
        return (f"a Dask LocalCluster of {self.workers or machine_cores()} worker processes, 1 thread each "
                "(started when the first job of more than one shard comes)")

    def client(self):
        """The Dask client, connected (or the LocalCluster started) on first use."""
        if self._client is None:
            from distributed import Client, LocalCluster

            if self.scheduler:
                try:
                    self._client = Client(self.scheduler, timeout=self.connect_timeout_s)
                except OSError as e:  # refused, unknown host, timed out: Dask retries until the timeout, then this
                    raise S4DInputError(f"cannot reach the Dask scheduler at {self.scheduler} ({e}); start one with "
                                        "`dask scheduler` (README), or drop --scheduler") from None
            else:
                import dask

                with dask.config.set(LOCAL_CLUSTER_CONFIG):
                    self._cluster = LocalCluster(n_workers=self.workers or machine_cores(), threads_per_worker=1,
                                                 processes=True, dashboard_address=None)
                self._client = Client(self._cluster)
            self.check_workers()
            self.say(f"evaluation: {self.description}")
        return self._client

    def check_workers(self) -> None:
        """WorkerMismatch unless every worker imports s4dconf with this process's code (code_fingerprint). Checked
        once, when the client connects; a worker that joins later is not."""
        want = code_fingerprint()

        def probe():  # a closure, so Dask ships it by value: it runs even where s4dconf does not import
            import importlib

            try:
                return importlib.import_module("s4dconf.training.distributed").code_fingerprint()
            except Exception as e:  # noqa: BLE001 - whatever stops the import is the answer
                return f"s4dconf does not import ({type(e).__name__}: {e})"

        bad = {w: got for w, got in self._client.run(probe).items() if got != want}
        if bad:
            where = self.scheduler or "the LocalCluster"
            lines = "; ".join(f"{w}: {got}" for w, got in sorted(bad.items()))
            self.close()
            raise WorkerMismatch(f"Dask workers of {where} cannot run this evaluation: here {want}, on {len(bad)} "
                                 f"worker(s): {lines}. Install this checkout where the workers run (pip install -e "
                                 f"'.[dask]') and restart them, or use --no-dask")

    def n_workers(self) -> int:
        """Workers to plan shards for (an existing cluster is asked; a LocalCluster is not started for this)."""
        if self.why_local:
            return 1
        if self._client is None and not self.scheduler:
            return self.workers or machine_cores()
        return max(1, len(self.client().scheduler_info().get("workers", {})))

    def close(self) -> None:
        for x in (self._client, self._cluster):
            if x is not None:
                x.close()
        self._client = self._cluster = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------------------------------- work
    def runner(self, backend, model, ds, n: int, batch: int) -> np.ndarray:
        """The `runner` hook of accuracy.predict / measure / accuracy_table: (n, classes) logits of one model."""
        name = getattr(backend, "name", "") or type(backend).__name__
        return self.evaluate({name: model}, name, ds, n, batch, what=f"{ds.name} {name}")[name]

    def evaluate(self, models: dict, backend_name: str, ds, n: int, batch: int, on_done=None,
                 what: str = "") -> dict:
        """{key: (n, classes) logits of samples 0..n-1} for every model of `models` ({key: model}). on_done(key,
        logits) is called as each model's shards are all in. Raises ShardError naming the samples of a shard that
        failed."""
        shards = plan_shards(n, batch, SHARDS_PER_WORKER * self.n_workers())
        if self.why_local or len(shards) * len(models) == 1:
            return self._evaluate_here(models, backend_name, ds, shards, batch, on_done, what)
        return self._evaluate_dask(models, backend_name, ds, shards, batch, on_done, what)

    def _progress(self, total: int, what: str):
        return _bar(total, what) if self.bar else None

    def _evaluate_here(self, models, backend_name, ds, shards, batch, on_done, what) -> dict:
        out = {}
        bar = self._progress(len(models) * shards[-1].stop, what)
        for key, model in models.items():
            parts = []
            for i, s in enumerate(shards):
                try:
                    parts.append(self.shard_fn(backend_name, model, ds, s, batch))
                except Exception as e:
                    raise ShardError(_shard_failed(what, key, i, shards, e)) from e
                if bar is not None:
                    bar.update(len(s))
            out[key] = np.concatenate(parts)
            if on_done is not None:
                on_done(key, out[key])
        if bar is not None:
            bar.close()
        return out

    def _evaluate_dask(self, models, backend_name, ds, shards, batch, on_done, what) -> dict:
        from distributed import as_completed

        client = self.client()
        lease = self._lava_lease(backend_name)
        tag = uuid.uuid4().hex[:8]
        ds_f = client.submit(_same, ds, key=f"dataset-{tag}")
        futures, model_fs = {}, {}
        for j, (key, model) in enumerate(models.items()):
            model_fs[key] = client.submit(_same, model, key=f"model-{tag}-{j}")
            for i, s in enumerate(shards):
                f = client.submit(_holding, lease, self.shard_fn, backend_name, model_fs[key], ds_f, s, batch,
                                  key=f"shard-{tag}-{j}-{i}", retries=self.retries)
                futures[f.key] = (key, i, f)
        parts = {key: [None] * len(shards) for key in models}
        out = {}
        bar = self._progress(len(models) * shards[-1].stop, what)
        try:
            for f in as_completed([f for _, _, f in futures.values()]):
                key, i, _ = futures[f.key]
                if f.status != "finished":
                    raise self._failure(f, key, i, shards, what)
                parts[key][i] = f.result()
                f.release()
                if bar is not None:
                    bar.update(len(shards[i]))
                if all(p is not None for p in parts[key]):
                    out[key] = np.concatenate(parts.pop(key))
                    if on_done is not None:
                        on_done(key, out[key])
        finally:
            if bar is not None:
                bar.close()
            client.cancel([f for _, _, f in futures.values()] + list(model_fs.values()) + [ds_f])
            if lease is not None:
                lease.close()  # the scheduler keeps a semaphore until it is closed
        return {key: out[key] for key in models}

    def _lava_lease(self, backend_name: str):
        """A Dask Semaphore of lava_jobs_at_once(cores) leases that a Lava backend's shards hold while they run, on the
        LocalCluster started here when it has more workers than that; else None. (Worker restrictions do not do it:
        work stealing moves loosely restricted tasks, and strictly restricted ones wait forever for a worker that
        died and came back under a new address.) A cluster of the user's (--scheduler) is theirs to size (README)."""
        if self._cluster is None or not runs_lava_simulator(backend_name):
            return None
        cores = machine_cores()
        n, k = len(self._client.scheduler_info().get("workers", {})), lava_jobs_at_once(cores)
        if n <= k:
            return None
        from distributed import Semaphore

        self.say(f"evaluation: {backend_name} shards {k} at a time on the {n} workers (a Lava network keeps "
                 f"{LAVA_NETWORK_CORES} cores busy by itself; this machine has {cores})")
        return Semaphore(max_leases=k, name=f"lava-{uuid.uuid4().hex[:8]}")

    def _failure(self, f, key, i, shards, what) -> ShardError:
        try:
            e = f.exception()
        except Exception as lost:  # cancelled or lost: no exception object to show
            e = lost
        err = ShardError(_shard_failed(what, key, i, shards, e, self.retries))
        err.__cause__ = e if isinstance(e, BaseException) else None
        return err


def _shard_failed(what: str, key, i: int, shards, e, retries: int | None = None) -> str:
    tries = "" if retries is None else f" after {retries} retries"
    return (f"{what}: {shards[i]} (shard {i + 1} of {len(shards)}) of {key!r} failed{tries}: "
            f"{type(e).__name__}: {e}")
