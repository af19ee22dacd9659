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
from .validate import S4DInputError, as_input_sequence, check_finite, check_shape

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
    shapes = param_shapes(cfg)
    missing = [k for k in shapes if k not in params]
    if missing:
        raise S4DInputError(f"model parameters missing for config {cfg.name!r}: {missing}")
    extra = sorted(set(params) - set(shapes))
    if extra:
        raise S4DInputError(f"unexpected model parameters for config {cfg.name!r}: {extra}")
    out = {}
    for name, shape in shapes.items():
        a = np.asarray(params[name])
        if a.dtype != np.float64:
            raise S4DInputError(f"parameter {name} must be float64, got {a.dtype}")
        check_shape(f"parameter {name}", a, shape)
        check_finite(f"parameter {name}", a)
        out[name] = a
    for i in range(cfg.n_layers):
        re_a = -np.exp(out[f"layer{i}.a_re"])
        if np.any(re_a >= 0):
            idx = tuple(int(j) for j in np.argwhere(re_a >= 0)[0])
            raise S4DInputError(
                f"parameter layer{i}.a_re{list(idx)} = {out[f'layer{i}.a_re'][idx]} gives Re(A) = -exp(a_re) = 0, "
                "not < 0 (unstable); a_re must be above about -745"
            )
    return out


class StreamingSession:
    """Token-by-token evaluation with explicit state (SPEC.md section 3.3).

    state: per layer complex (N, H, P), plus the readout accumulator for readout "mean".
    `step(u_t)` (N, d_input) -> logits (N, n_classes); `run(chunk)` (N, T, d_input) -> (N, T, n_classes).
    Any split of a sequence into chunks gives the same outputs as one call.
    """

    def __init__(self, model: S4DModel, batch: int = 1):
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise S4DInputError(f"batch must be a positive integer, got {batch!r}")
        self.model = model
        self.batch = int(batch)
        cfg = model.config
        self._C2 = [2.0 * layer.C for layer in model.layers]
        self._WT = [np.ascontiguousarray(layer.W.T) for layer in model.layers]
        self._enc_T = np.ascontiguousarray(model.params["encoder.W"].T)
        self._dec_T = np.ascontiguousarray(model.params["decoder.W"].T)
        self._relu = cfg.activation == "relu"
        self._mean = cfg.readout == "mean"
        self.reset()

    def reset(self) -> None:
        """Zero state, step count 0."""
        cfg = self.model.config
        self.states = [np.zeros((self.batch, cfg.H, cfg.P), dtype=np.complex128) for _ in self.model.layers]
        self.readout_sum = np.zeros((self.batch, cfg.H))
        self.t = 0

    def get_state(self) -> dict:
        """A copy of the full state (to save or compare)."""
        return {"t": self.t, "x": [x.copy() for x in self.states], "readout_sum": self.readout_sum.copy()}

    def set_state(self, state: dict) -> None:
        self.t = int(state["t"])
        self.states = [np.array(x, dtype=np.complex128) for x in state["x"]]
        self.readout_sum = np.array(state["readout_sum"], dtype=np.float64)

    def step(self, u_t) -> np.ndarray:
        u_t = np.asarray(u_t, dtype=np.float64)
        if u_t.shape != (self.batch, self.model.config.d_input):
            raise S4DInputError(
                f"step input must have shape (batch={self.batch}, d_input={self.model.config.d_input}), "
                f"got {u_t.shape}"
            )
        check_finite(f"step input at t={self.t}", u_t)
        return self._step(u_t)

    def _step(self, u_t: np.ndarray) -> np.ndarray:
        h = u_t @ self._enc_T
        for i, layer in enumerate(self.model.layers):
            x = self.states[i]
            x *= layer.Abar
            x += layer.Bbar * h[:, :, None]
            y = (x * self._C2[i]).real.sum(axis=2)
            if layer.D is not None:
                y += layer.D * h
            if self._relu:
                np.maximum(y, 0.0, out=y)
                h = y @ self._WT[i]
                np.maximum(h, 0.0, out=h)
            else:
                h = y @ self._WT[i]
        self.t += 1
        if self._mean:
            self.readout_sum += h
            h = self.readout_sum / self.t
        return h @ self._dec_T

    def run(self, chunk) -> np.ndarray:
        """Feed T steps; returns the per-step logits (N, T, n_classes)."""
        chunk = as_input_sequence(chunk, self.model.config.d_input, name="chunk")
        if chunk.shape[0] != self.batch:
            raise S4DInputError(f"chunk has batch {chunk.shape[0]}, the session was opened for {self.batch}")
        return np.stack([self._step(chunk[:, k]) for k in range(chunk.shape[1])], axis=1)
