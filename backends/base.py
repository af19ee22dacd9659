"""The backend contract (SPEC.md section 8). One small class per backend; the harness needs nothing else.

A backend declares:
    name, info() -> BackendInfo          numeric class, version, device, delays, what it exposes
    availability() -> Availability       (available, reason): "not available: <reason>" when absent
    prepare(model) -> handle             load/compile a float64 reference model (S4DModel) once
    run(handle, u, path) -> BackendRun   whole batch u (N, L', d_input) -> outputs, for each path in info().paths
    open_session(handle, batch) -> Session   streaming: step(u_t), run(chunk), reset(), get_state(), set_state(s)
    delays(handle) -> Delays             the delays of a prepared model (default: info().delays)

Delays: a backend may emit the answer for input step k at its output index k + d (d >= 0, per probe).
It declares d in BackendInfo.delays; the harness feeds d extra zero steps and reads index k + d
(conformance/harness.py). Tests never trim arrays by hand.
"""
from __future__ import annotations

import abc
import dataclasses

import numpy as np

from s4dconf.reference.validate import S4DInputError, as_input_sequence, check_finite

NUMERIC_CLASSES = ("float64", "float32", "fixed-point")


@dataclasses.dataclass(frozen=True)
class Delays:
    """Steps of latency per probe: per-layer S4D outputs (one int per layer, or one for all) and logits."""

    layers: int | tuple[int, ...] = 0
    logits: int = 0

    def layer(self, i: int) -> int:
        return self.layers if isinstance(self.layers, int) else self.layers[i]

    @property
    def max(self) -> int:
        layers = [self.layers] if isinstance(self.layers, int) else list(self.layers)
        return max(layers + [self.logits])


@dataclasses.dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""

    def __str__(self) -> str:
        return "available" if self.available else f"not available: {self.reason}"


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    name: str
    numeric_class: str  # one of NUMERIC_CLASSES; selects the tolerance table rows
    version: str
    device: str
    paths: tuple[str, ...] = ("default",)  # evaluation paths of the whole-batch run
    delays: Delays = Delays()
    exposes_layers: bool = True  # run() returns per-layer S4D outputs
    exposes_state: bool = True  # Session.get_state() returns the complex states
    restores_state: bool = False  # Session.set_state() resumes a stream from a get_state() snapshot
    streaming: bool = True  # open_session() is supported

    def __post_init__(self):
        if self.numeric_class not in NUMERIC_CLASSES:
            raise ValueError(f"backend {self.name}: numeric_class must be one of {NUMERIC_CLASSES}")


@dataclasses.dataclass
class BackendRun:
    """Outputs of a whole-batch run, at the backend's own time indices (delays not removed)."""

    step_logits: np.ndarray  # (N, L', n_classes)
    layer_y: list[np.ndarray] | None = None  # per layer (N, L', H), when info().exposes_layers
    saturations: dict | None = None  # fixed-point backends: events per layer
    # optional, batched simulators (lava-fxp): per saturation name the counts of each stream, int (N,), summing to
    # saturations[name]; None where a backend counts only totals
    stream_saturations: dict | None = None


def check_session_batch(batch) -> int:
    """The shared check of every backend's session constructor: `batch` (the number of streams) is a positive
    integer (a Python or numpy int, not a bool, float or string); returns it as an int."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise S4DInputError(f"batch must be a positive integer, got {batch!r}; a session streams `batch` "
                            "independent sequences side by side")
    return int(batch)


def check_step_input(u_t, batch: int, d_input: int, t: int) -> np.ndarray:
    """The shared check of every backend's Session.step: u_t is a real numeric array (int or float kinds: complex
    would lose its imaginary part, bool and strings would convert silently) of shape (batch, d_input), finite;
    returns it as float64. `t` (the step about to run) names where a non-finite value was found."""
    u = np.asarray(u_t)
    if u.dtype.kind not in "iuf":
        raise S4DInputError(f"step input must be a real numeric array (int or float kinds), got dtype {u.dtype} "
                            f"at t={t}")
    if u.shape != (batch, d_input):
        raise S4DInputError(f"step input must have shape ({batch}, {d_input}), got {u.shape} (one row per stream of "
                            f"the batch, one column per model input: batch={batch}, d_input={d_input})")
    u = u.astype(np.float64, copy=False)
    if not np.isfinite(u).all():
        check_finite(f"step input at t={t}", u)
    return u


def check_session_chunk(chunk, batch: int, d_input: int) -> np.ndarray:
    """The shared check of a Session.run chunk: real, finite, shape (batch, T, d_input) with T >= 1; float64."""
    chunk = as_input_sequence(chunk, d_input, name="chunk")
    if chunk.shape[0] != batch:
        raise S4DInputError(f"chunk has batch {chunk.shape[0]}, the session was opened for {batch}")
    return chunk


def check_state(state, keys: tuple[str, ...]) -> dict:
    """The shared check of Session.set_state: a dict (a get_state() snapshot) holding `keys`, its step count "t"
    an integer >= 0."""
    if not isinstance(state, dict):
        raise S4DInputError(f"state must be a dict as returned by get_state(), got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise S4DInputError(f"state lacks {', '.join(map(repr, missing))}; pass a snapshot of get_state() of a "
                            "session of the same backend")
    t = state.get("t", 0)
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise S4DInputError(f"state 't' (steps taken) must be an integer >= 0, got {t!r}")
    return state


class Session(abc.ABC):
    """A streaming session over a batch of N independent streams."""

    @abc.abstractmethod
    def step(self, u_t: np.ndarray) -> np.ndarray:
        """One time step: u_t (N, d_input) -> logits (N, n_classes)."""

    def run(self, chunk: np.ndarray) -> np.ndarray:
        """T steps: chunk (N, T, d_input) -> (N, T, n_classes)."""
        return np.stack([self.step(chunk[:, k]) for k in range(chunk.shape[1])], axis=1)

    @abc.abstractmethod
    def reset(self) -> None:
        """Back to the zero state at step 0."""

    def get_state(self) -> dict:
        """{"t": steps taken, "x": [per layer complex (N, H, P)]} when info().exposes_state."""
        raise NotImplementedError

    def set_state(self, state: dict) -> None:
        """Resume from a snapshot of get_state() (when info().restores_state): the steps that follow give the
        outputs, bit for bit, that followed the snapshot."""
        raise NotImplementedError


class Backend(abc.ABC):
    name: str = ""

    @abc.abstractmethod
    def info(self) -> BackendInfo: ...

    def availability(self) -> Availability:
        return Availability(True)

    @abc.abstractmethod
    def prepare(self, model): ...

    @abc.abstractmethod
    def run(self, handle, u: np.ndarray, path: str) -> BackendRun: ...

    def delays(self, handle) -> Delays:
        """Delays of a prepared model; by default the static ones of info() (a graph may depend on depth)."""
        return self.info().delays

    def open_session(self, handle, batch: int) -> Session:
        raise NotImplementedError(f"backend {self.name} has no streaming session")
