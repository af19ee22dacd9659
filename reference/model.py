"""The paper's S4D classifier in float64 (SPEC.md section 4): parameters, whole-sequence forward, streaming.

Shapes: input u (N, L, d_input); per layer the S4D output y and the block output z, both (N, L, H);
per-step logits (N, L, n_classes); logits = the readout at the last step, (N, n_classes).

    h^0_k   = W_enc u_k
    y^i_k   = S4D_i(h^{i-1})_k                    (SPEC.md section 3)
    h^i_k   = act(W_i act(y^i_k))                 (i = 1 .. n_layers)
    logit_k = W_dec h^n_k               (readout "last": the answer at step k is logit_k)
            = W_dec mean_{j<=k} h^n_j   (readout "mean")
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .config import ModelConfig
from .init import init_modes
from .s4d import discretize, s4d_convolution, s4d_recurrence
from .validate import S4DInputError, as_input_sequence, check_finite, check_float64_arrays, check_shape

MODES = ("conv", "recurrent")


def layer_param_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Shapes of one layer's arrays, keyed by the suffix used in model files."""
    H, P = cfg.H, cfg.P
    shapes = {
        "a_re": (H, P),
        "a_im": (H, P),
        "B_re": (H, P),
        "B_im": (H, P),
        "C_re": (H, P),
        "C_im": (H, P),
        "log_dt": (H,),
        "W": (H, H),
    }
    if cfg.use_D:
        shapes["D"] = (H,)
    return shapes


def param_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Every parameter array of a model: name -> shape (the model file schema, SPEC.md section 7)."""
    shapes = {"encoder.W": (cfg.H, cfg.d_input)}
    for i in range(cfg.n_layers):
        for key, shape in layer_param_shapes(cfg).items():
            shapes[f"layer{i}.{key}"] = shape
    shapes["decoder.W"] = (cfg.n_classes, cfg.H)
    return shapes


def init_params(cfg: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """Deterministic parameters from (config, seed), drawn in the order of SPEC.md section 4.2."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise S4DInputError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    H, P = cfg.H, cfg.P

    def linear(fan_out, fan_in):
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=(fan_out, fan_in))

    A1, B1 = init_modes(cfg.init, P)
    params = {"encoder.W": linear(H, cfg.d_input)}
    for i in range(cfg.n_layers):
        log_dt = rng.uniform(np.log(cfg.dt_min), np.log(cfg.dt_max), size=H)
        C = (rng.standard_normal((H, P)) + 1j * rng.standard_normal((H, P))) / np.sqrt(2.0)
        A = np.broadcast_to(A1, (H, P))
        B = np.broadcast_to(B1, (H, P))
        layer = {
            "a_re": np.log(-A.real),
            "a_im": A.imag.copy(),
            "B_re": B.real.copy(),
            "B_im": B.imag.copy(),
            "C_re": C.real,
            "C_im": C.imag,
            "log_dt": log_dt,
        }
        if cfg.use_D:
            layer["D"] = rng.standard_normal(H)
        layer["W"] = linear(H, H)
        for key, value in layer.items():
            params[f"layer{i}.{key}"] = np.ascontiguousarray(value, dtype=np.float64)
    params["decoder.W"] = linear(cfg.n_classes, H)
    return params


@dataclasses.dataclass(frozen=True)
class DiscreteLayer:
    """One layer, discretised: Abar, Bbar, C complex (H, P); D (H,) or None; W (H, H)."""

    Abar: np.ndarray
    Bbar: np.ndarray
    C: np.ndarray
    D: np.ndarray | None
    W: np.ndarray


@dataclasses.dataclass
class LayerOutput:
    y: np.ndarray  # S4D output, (N, L, H)
    z: np.ndarray  # block output act(W act(y)), (N, L, H)


@dataclasses.dataclass
class ModelOutput:
    layers: list[LayerOutput]
    step_logits: np.ndarray  # (N, L, n_classes): the readout if the sequence ended at each step

    @property
    def logits(self) -> np.ndarray:
        return self.step_logits[:, -1]


class S4DModel:
    """A configured model with its float64 parameters. Build with `S4DModel.create(cfg, seed)`."""

    def __init__(self, config: ModelConfig, params: dict[str, np.ndarray]):
        self.config = config
        self.params = validate_params(config, params)
        self.layers = [self._discretise(i) for i in range(config.n_layers)]

    @classmethod
    def create(cls, config: ModelConfig, seed: int = 0) -> "S4DModel":
        return cls(config, init_params(config, seed))

    def _discretise(self, i: int) -> DiscreteLayer:
        p = {k: self.params[f"layer{i}.{k}"] for k in layer_param_shapes(self.config)}
        A = -np.exp(p["a_re"]) + 1j * p["a_im"]
        B = p["B_re"] + 1j * p["B_im"]
        C = p["C_re"] + 1j * p["C_im"]
        Abar, Bbar = discretize(A, B, np.exp(p["log_dt"]), self.config.discretization)
        return DiscreteLayer(Abar=Abar, Bbar=Bbar, C=C, D=p.get("D"), W=p["W"])

    def act(self, v: np.ndarray) -> np.ndarray:
        return np.maximum(v, 0.0) if self.config.activation == "relu" else v

    def forward(self, u, mode: str = "conv", states_at=()) -> ModelOutput:
        """Whole-sequence forward. mode "conv" (FFT convolution) or "recurrent" (time loop).

        states_at: with mode "recurrent", the steps k whose states x_k are returned in `self.last_states`
        as {k: [per layer complex (N, H, P)]}.
        """
        if mode not in MODES:
            raise S4DInputError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        u = as_input_sequence(u, self.config.d_input)
        h = u @ self.params["encoder.W"].T
        outs = []
        states: dict[int, list] = {int(k): [] for k in states_at}
        for layer in self.layers:
            if mode == "conv":
                y = s4d_convolution(h, layer.Abar, layer.Bbar, layer.C, layer.D)
            else:
                y, _, st = s4d_recurrence(h, layer.Abar, layer.Bbar, layer.C, layer.D, return_states_at=states)
                for k in states:
                    states[k].append(st[k])
            h = self.act(self.act(y) @ layer.W.T)
            outs.append(LayerOutput(y=y, z=h))
        self.last_states = states
        return ModelOutput(layers=outs, step_logits=self.readout(h))

    def readout(self, h: np.ndarray) -> np.ndarray:
        """Per-step logits from the last block output h (N, L, H)."""
        if self.config.readout == "mean":
            h = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)[None, :, None]
        return h @ self.params["decoder.W"].T

    def session(self, batch: int = 1) -> "StreamingSession":
        return StreamingSession(self, batch)


def validate_params(cfg: ModelConfig, params: dict) -> dict[str, np.ndarray]:
    """Check names, shapes, dtypes and values of a parameter dict against the config."""
    out = check_float64_arrays(params, param_shapes(cfg), f"model parameters for config {cfg.name!r}")
    # exp() of these must be finite and > 0 in float64: Re(A) = -exp(a_re) < 0 and dt = exp(log_dt) > 0
    for i in range(cfg.n_layers):
        for key, what in (("a_re", "Re(A) = -exp(a_re)"), ("log_dt", "dt = exp(log_dt)")):
            a = out[f"layer{i}.{key}"]
            bad = (a <= _EXP_MIN) | (a >= _EXP_MAX)
            if np.any(bad):
                idx = tuple(int(j) for j in np.argwhere(bad)[0])
                raise S4DInputError(
                    f"parameter layer{i}.{key}{list(idx)} = {float(a[idx])!r} is outside ({_EXP_MIN}, {_EXP_MAX}): "
                    f"{what} would be 0 or overflow in float64 (Re(A) must be < 0, dt > 0 and finite)"
                )
    # Re(A) < 0 is not enough in float64: with exp(a_re) tiny against 1/dt (a_re = -60, say) dt Re(A) is lost
    # against 1 and |Abar| = 1, a mode that never decays (SPEC.md 3.4). Checked on the Abar the model will use.
    for i in range(cfg.n_layers):
        a_re, a_im, log_dt = (out[f"layer{i}.{k}"] for k in ("a_re", "a_im", "log_dt"))
        A = -np.exp(a_re) + 1j * a_im
        dt = np.exp(log_dt)
        Abar, _ = discretize(A, np.zeros_like(A), dt, cfg.discretization)
        dt_re_a = dt[:, None] * A.real
        bad = ~(np.abs(Abar) < 1.0) | ~(1.0 + dt_re_a < 1.0)
        if np.any(bad):
            h, n = (int(j) for j in np.argwhere(bad)[0])
            mag, x = float(np.abs(Abar[h, n])), float(dt_re_a[h, n])
            why = f"|Abar| = {mag!r} >= 1" if mag >= 1.0 else f"|Abar| = {mag!r} only by rounding"
            raise S4DInputError(
                f"parameters layer{i}.a_re[{h}, {n}] = {float(a_re[h, n])!r} with layer{i}.log_dt[{h}] = "
                f"{float(log_dt[h])!r}: dt Re(A) = {x!r}, {why} ({cfg.discretization}): the mode would not "
                "decay; the valid domain (SPEC.md 3.4) has -Re(A) >= 1e-3 and dt >= 1e-4"
            )
    return out


_EXP_MIN, _EXP_MAX = -745.0, 709.0  # exp underflows to 0 below, overflows to inf above


class StreamingSession:
    """Token-by-token evaluation with explicit state (SPEC.md section 3.3).

    state: per layer complex (N, H, P), plus the readout accumulator for readout "mean".
    `step(u_t)` (N, d_input) -> logits (N, n_classes); `run(chunk)` (N, T, d_input) -> (N, T, n_classes).
    Any split of a sequence into chunks gives the same outputs as one call.

    Per step and layer i (the arithmetic of `s4d_recurrence`, one step at a time; update first, then output):
        x_i <- Abar_i * x_i + Bbar_i * h            (complex (N, H, P))
        y_i  = 2 Re(sum_n C_i[n] x_i[n]) + D_i h     (N, H)
        h   <- act(act(y_i) @ W_i^T)

    Implementation, for the latency of one step at batch 1 (every buffer is allocated once, here):
      * the states of all layers live in one complex array (n_layers, N, H, P); `self.states[i]` is a view of
        layer i. The decay x_i *= Abar_i of every layer only needs the previous state, so it is one multiply
        for all layers at the start of the step; the input term of layer i follows once h is known.
      * the input term and the output work on the float64 view of the state, (N, H, 2P) with re/im
        interleaved: Bbar*h is a real multiply (Bbar as interleaved (H, 2P)), and 2 Re(sum_n C_n x_n) =
        sum_k Cv[k] xv[k] with Cv = interleaved (2 Re C, -2 Im C), a real dot product per channel.
      * matrix products and ufuncs write into preallocated buffers (`out=`); only the returned logits are new.
    """

    def __init__(self, model: S4DModel, batch: int = 1):
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise S4DInputError(f"batch must be a positive integer, got {batch!r}")
        self.model = model
        self.batch = int(batch)
        cfg = model.config
        N, H, P, n_layers = self.batch, cfg.H, cfg.P, len(model.layers)
        self._in_shape = (N, cfg.d_input)
        self._relu = cfg.activation == "relu"
        self._mean = cfg.readout == "mean"
        self._enc_T = np.ascontiguousarray(model.params["encoder.W"].T)
        self._dec_T = np.ascontiguousarray(model.params["decoder.W"].T)
        # Per-layer constants, precomputed once.
        self._Abar = np.ascontiguousarray(np.stack([layer.Abar for layer in model.layers])[:, None], np.complex128)
        self._Bv = []  # Bbar as interleaved (re, im) float64, (H, 2P)
        self._Cv = []  # (2 Re C, -2 Im C) interleaved, (H, 2P): y = sum_k Cv[k] * xv[k]
        self._Cm = []  # the same as (H, 2P, 1), for numpy < 2 (matmul instead of vecdot)
        self._D = []
        self._WT = []
        for layer in model.layers:
            self._Bv.append(np.ascontiguousarray(layer.Bbar, dtype=np.complex128).view(np.float64))
            cv = np.empty((H, 2 * P))
            cv[:, 0::2] = 2.0 * layer.C.real
            cv[:, 1::2] = -2.0 * layer.C.imag
            self._Cv.append(cv)
            self._Cm.append(np.ascontiguousarray(cv[:, :, None]))
            self._D.append(None if layer.D is None else np.ascontiguousarray(layer.D, dtype=np.float64))
            self._WT.append(np.ascontiguousarray(layer.W.T))
        self._vecdot = getattr(np, "vecdot", None)
        # State and scratch buffers.
        self._x = np.zeros((n_layers, N, H, P), dtype=np.complex128)
        self._xv = [self._x[i].view(np.float64) for i in range(n_layers)]  # (N, H, 2P) views
        self.states = [self._x[i] for i in range(n_layers)]
        self.readout_sum = np.zeros((N, H))
        self._h = np.zeros((N, H))  # block input / output
        self._y = np.zeros((N, H))  # S4D output
        self._dh = np.zeros((N, H))  # D * h
        self._inj = np.zeros((N, H, 2 * P))  # Bbar * h
        # What the step loop reads per layer, in one tuple: (state view, Bbar, C, C for matmul, D, W^T).
        self._plan = tuple(zip(self._xv, self._Bv, self._Cv, self._Cm, self._D, self._WT))
        self.t = 0

    def reset(self) -> None:
        """Zero state, step count 0."""
        for buf in (self._x, self.readout_sum, self._h, self._y, self._dh, self._inj):
            buf.fill(0.0)
        self.t = 0

    def get_state(self) -> dict:
        """A copy of the full state (to save or compare)."""
        return {"t": self.t, "x": [x.copy() for x in self.states], "readout_sum": self.readout_sum.copy()}

    def set_state(self, state: dict) -> None:
        """Load a state as returned by `get_state` (copied in; the session keeps its own buffers)."""
        cfg = self.model.config
        xs = list(state["x"])
        if len(xs) != len(self.states):
            raise S4DInputError(f"state has {len(xs)} layer state(s), the model has {len(self.states)}")
        xs = [np.asarray(x, dtype=np.complex128) for x in xs]
        for i, x in enumerate(xs):
            check_shape(f"state x[{i}]", x, (self.batch, cfg.H, cfg.P))
        readout_sum = np.asarray(state["readout_sum"], dtype=np.float64)
        check_shape("state readout_sum", readout_sum, (self.batch, cfg.H))
        for i, x in enumerate(xs):
            np.copyto(self._x[i], x)
        np.copyto(self.readout_sum, readout_sum)
        self.t = int(state["t"])

    def step(self, u_t) -> np.ndarray:
        u_t = np.asarray(u_t)
        if u_t.dtype.kind not in "iuf":  # complex would lose its imaginary part, bool/str convert silently
            raise S4DInputError(f"step input must be a real numeric array, got dtype {u_t.dtype}")
        u_t = u_t.astype(np.float64, copy=False)
        if u_t.shape != self._in_shape:
            raise S4DInputError(
                f"step input must have shape (batch={self.batch}, d_input={self.model.config.d_input}), "
                f"got {u_t.shape}"
            )
        if not np.isfinite(u_t).all():
            check_finite(f"step input at t={self.t}", u_t)
        return self._step(u_t)

    def _step(self, u_t: np.ndarray) -> np.ndarray:
        h, y, dh, inj = self._h, self._y, self._dh, self._inj
        h_col = h[:, :, None]
        np.dot(u_t, self._enc_T, out=h)
        x = self._x
        np.multiply(x, self._Abar, out=x)  # decay of every layer: x_i *= Abar_i
        vecdot = self._vecdot
        relu = self._relu
        for xv, Bv, Cv, Cm, D, WT in self._plan:
            np.multiply(Bv, h_col, out=inj)
            np.add(xv, inj, out=xv)  # x_i += Bbar_i * h: the state update is complete
            if vecdot is not None:
                vecdot(xv, Cv, out=y)  # y = 2 Re(sum_n C_n x_n)
            else:
                np.matmul(xv[:, :, None, :], Cm, out=y[:, :, None, None])
            if D is not None:
                np.multiply(D, h, out=dh)
                np.add(y, dh, out=y)
            if relu:
                np.maximum(y, 0.0, out=y)
                np.dot(y, WT, out=h)
                np.maximum(h, 0.0, out=h)
            else:
                np.dot(y, WT, out=h)
        self.t += 1
        if self._mean:
            np.add(self.readout_sum, h, out=self.readout_sum)
            np.divide(self.readout_sum, self.t, out=h)
        return h @ self._dec_T

    def run(self, chunk) -> np.ndarray:
        """Feed T steps; returns the per-step logits (N, T, n_classes)."""
        chunk = as_input_sequence(chunk, self.model.config.d_input, name="chunk")
        if chunk.shape[0] != self.batch:
            raise S4DInputError(f"chunk has batch {chunk.shape[0]}, the session was opened for {self.batch}")
        T = chunk.shape[1]
        out = np.empty((self.batch, T, self.model.config.n_classes))
        for k in range(T):
            out[:, k] = self._step(chunk[:, k])
        return out
