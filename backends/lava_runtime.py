"""Running Lava safely (SPEC.md section 16.3): every Lava job runs in a forked child that leads its own process group,
with a timeout. Lava's own forked workers join that group, so when the job ends, fails or times out the whole
group is killed: no process outlives a run, and a hang becomes a clear error.

The run also ends when the parent dies, however it dies:
  * SIGTERM or SIGHUP to the parent (`timeout`, a cancelled CI job, a closed terminal): during the run a handler
    kills the child's group, then the signal takes its course (the previous handler, or the default: exit);
  * SIGINT: the KeyboardInterrupt passes through run_isolated's cleanup;
  * SIGKILL (nothing runs in the parent): the child watches its parent. On Linux, prctl(PR_SET_PDEATHSIG) has
    the kernel send it SIGTERM when the parent goes, and its handler kills the group; everywhere, a thread of the
    child polls os.getppid() and kills the group when the parent has changed.
The child closes its copy of the pipe's read end, so a write to a parent that is gone fails at once (and the child
kills its group) instead of blocking forever.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import importlib.metadata
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback

from s4dconf.reference.validate import S4DInputError

from .base import Availability, Backend, BackendInfo, Delays
from .lava_graph import lava_delays

LAVA_VERSION = "0.10"  # the lava-nc release line this code is written and tested against
DEFAULT_TIMEOUT_S = 600.0
PARENT_POLL_S = 0.2  # how often the child's watcher thread looks at its parent
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PARENT_SIGNALS = ("SIGTERM", "SIGHUP")  # what a handler in the parent turns into "kill the child's group, then go"


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


def _kill_own_group() -> None:
    """In the child: SIGKILL to its whole process group (Lava's workers and itself); does not return."""
    try:
        os.killpg(0, signal.SIGKILL)
    finally:
        os._exit(1)


def _set_parent_death_signal(sig: int) -> bool:
    """Linux: have the kernel send `sig` to this process when its parent dies (prctl PR_SET_PDEATHSIG). False
    where that is not available (another OS, no libc found)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    """In the child: end the whole run (kill the group) as soon as the parent is gone."""
    me = os.getpid()

    def on_signal(signum, frame):
        if os.getpid() == me:
            _kill_own_group()
        signal.signal(signum, signal.SIG_DFL)  # a Lava worker that inherited this handler: the default action
        os.kill(os.getpid(), signum)

    for name in _PARENT_SIGNALS:  # the parent-death signal, and what a dying session sends: kill the group
        signal.signal(getattr(signal, name), on_signal)
    _set_parent_death_signal(signal.SIGTERM)

    def poll():  # the fallback, and a safety net where the signal's handler cannot run (a blocked main thread)
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        _kill_own_group()

    threading.Thread(target=poll, name="s4dconf-parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the watch was set up
        _kill_own_group()


def _child(conn, fn, args, read_end, parent_pid):
    os.setpgid(0, 0)  # lead a new process group: Lava's workers inherit it
    read_end.close()  # only the parent reads: a write to a parent that is gone must fail, not block
    _watch_parent(parent_pid)
    try:
        result = ("ok", fn(*args))
    except BaseException as e:  # report everything, including KeyboardInterrupt in the job
        result = ("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    try:
        try:
            conn.send(result)
        except OSError:  # the parent closed its end (it is gone or gave up): nobody wants the result
            _kill_own_group()
        except Exception as e:  # the result does not pickle: say so instead of dying silently
            try:
                conn.send(("error", f"the result could not be sent to the parent: {type(e).__name__}: {e}"))
            except OSError:
                _kill_own_group()
    finally:
        conn.close()


class _ParentSignals:
    """While a run is in progress: SIGTERM/SIGHUP to this process first kill the child's process group, then go
    on as they would have (the previous Python handler, or the default action re-raised: the process ends by the
    signal). Only in the main thread, where Python handlers can be installed; elsewhere a no-op."""

    def __init__(self, pgid: int):
        self.pgid, self.previous = pgid, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in _PARENT_SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:  # ignored stays ignored
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        _kill_group(self.pgid)
        previous = self.previous.get(signum, signal.SIG_DFL)
        self.__exit__(None, None, None)  # every handler back as it was
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL (or a handler not set from Python): the default action now, the process ends by the signal
            os.kill(os.getpid(), signum)

    def __exit__(self, *exc):
        for sig, previous in self.previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self.previous = {}
        return False


def run_isolated(fn, args=(), timeout_s: float = DEFAULT_TIMEOUT_S, what: str = "Lava run"):
    """fn(*args) in a forked child with its own process group; returns its (picklable) result.

    Raises LavaRunError on an exception in the child (with its traceback) or after timeout_s seconds.
    The child's whole process group is killed before returning, in every case, and when this process is
    terminated (SIGTERM, SIGHUP) or killed (SIGKILL: the child watches its parent) during the run.
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise S4DInputError(f"timeout must be a number of seconds > 0, got {timeout_s!r}")
    _import_lava_messaging()
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, parent, os.getpid()), daemon=False)
    proc.start()
    try:
        os.setpgid(proc.pid, proc.pid)  # also here: the group exists before any kill below can target it
    except OSError:  # the child did it first, or is already gone
        pass
    child.close()
    try:
        with _ParentSignals(proc.pid):
            if not parent.poll(timeout_s):
                raise LavaRunError(f"{what} did not finish within {timeout_s:g} s; it was stopped and its "
                                   "processes killed (raise the timeout for long sequences: Lava costs ~1-10 ms "
                                   "per step)")
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
