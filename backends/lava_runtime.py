"""Running Lava safely (SPEC.md section 16.3): every Lava job runs in a forked child that leads its own process group,
with a timeout. Lava's own forked workers join that group, so when the job ends, fails or times out the whole
group is killed: no process outlives a run, and a hang becomes a clear error.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import multiprocessing as mp
import os
import signal
import traceback

from s4dconf.reference.validate import S4DInputError

from .base import Availability, Backend, BackendInfo, Delays
from .lava_graph import lava_delays

LAVA_VERSION = "0.10"  # the lava-nc release line this code is written and tested against
DEFAULT_TIMEOUT_S = 600.0


class LavaRunError(RuntimeError):
    """A Lava job failed or timed out."""


def lava_availability() -> tuple[bool, str]:
    """(available, reason): lava-nc importable and of the supported release line."""
    try:
        version = importlib.metadata.version("lava-nc")
    except importlib.metadata.PackageNotFoundError:
        return False, ("lava-nc is not installed in this environment; run the Lava backends with `tox -e lava` "
                       "(Python 3.10, lava-nc 0.10.0)")
    if not version.startswith(LAVA_VERSION):
        return False, f"lava-nc {version} is installed, this code supports {LAVA_VERSION}.x; use `tox -e lava`"
    try:
        import lava.magma.core.run_configs  # noqa: F401
    except Exception as e:  # a broken install: say what failed
        return False, f"lava-nc {version} does not import: {type(e).__name__}: {e}"
    return True, ""


def _child(conn, fn, args):
    os.setpgid(0, 0)  # lead a new process group: Lava's workers inherit it
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as e:  # report everything, including KeyboardInterrupt in the job
        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_isolated(fn, args=(), timeout_s: float = DEFAULT_TIMEOUT_S, what: str = "Lava run"):
    """fn(*args) in a forked child with its own process group; returns its (picklable) result.

    Raises LavaRunError on an exception in the child (with its traceback) or after timeout_s seconds.
    The child's whole process group is killed before returning, in every case.
    """
    if timeout_s <= 0:
        raise S4DInputError(f"timeout must be > 0 seconds, got {timeout_s}")
    _import_lava_messaging()
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=False)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise LavaRunError(f"{what} did not finish within {timeout_s:g} s; it was stopped and its processes "
                               "killed (raise the timeout for long sequences: Lava costs ~1-10 ms per step)")
        try:
            status, payload = parent.recv()
        except EOFError:
            raise LavaRunError(f"{what} died without a result (exit code {proc.exitcode})") from None
        if status != "ok":
            raise LavaRunError(f"{what} failed: {payload}")
        return payload
    finally:
        _kill_group(proc.pid)
        proc.join(5)
        parent.close()


def _import_lava_messaging() -> None:
    """Import Lava's multiprocessing layer in this process, before forking: at import it calls
    mp.set_start_method('fork'), which fails where a start method is already set (as in a forked child)."""
    import sys

    name = "lava.magma.runtime.message_infrastructure.multiprocessing"
    if name not in sys.modules:
        mp.set_start_method(None, force=True)
        importlib.import_module(name)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LavaSimBackend(Backend):
    """What the Lava simulator backends share: availability, per-model delays, metadata, the run timeout."""

    numeric_class = ""
    tag = ""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.timeout_s = timeout_s

    def availability(self) -> Availability:
        ok, reason = lava_availability()
        return Availability(ok, reason)

    def info(self) -> BackendInfo:
        return BackendInfo(name=self.name, numeric_class=self.numeric_class,
                           version=f"lava-nc {importlib.metadata.version('lava-nc')} (Loihi2SimCfg, {self.tag})",
                           device="cpu (Lava simulator)", paths=("lava",), streaming=False, exposes_state=False)

    def delays(self, handle) -> Delays:
        """The graph's delays (lava_graph.lava_delays): the same for every backend built by lava_graph."""
        return lava_delays(handle.config.n_layers)
