"""Backend `numpy-fxp`: the integer arithmetic of SPEC.md section 14, vectorised over batch, channels and modes.

Integers are held in float64 arrays: every intermediate is an integer below 2^53 in magnitude (SPEC.md 14.5,
checked when the model is built), so float64 products, sums, power-of-two scalings and floor() are exact, and
the fast BLAS and complex kernels can be used. `reference/fixed_point_literal.py` states the same step with
Python-int semantics; tests require both to agree bit for bit.
"""
from __future__ import annotations

import dataclasses

import numpy as np

import s4dconf
from s4dconf.reference.fixed_point import FxpModel, int_range
from s4dconf.reference.model import S4DModel
from s4dconf.reference.quantize import quantize
from s4dconf.reference.validate import S4DInputError, as_input_sequence, check_finite

from .base import Backend, BackendInfo, BackendRun, Session


class _Saturator:
    """Clip to a signed width in place and count the clipped elements under a name."""

    def __init__(self, bits: int, counts: dict, name: str):
        self.lo, self.hi = (float(v) for v in int_range(bits))
        self.counts, self.name = counts, name
        counts.setdefault(name, 0)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        if a.size and (a.max() > self.hi or a.min() < self.lo):
            self.counts[self.name] += int(np.count_nonzero((a > self.hi) | (a < self.lo)))
            np.clip(a, self.lo, self.hi, out=a)
        return a


class _SigmaDelta:
    """Sigma-delta messaging of one signal (SPEC.md 14.4): a sender transmits a - last only when |a - last| > vth;
    the receiver's value is last (updated when sent). With vth = None the signal passes unchanged and the
    density counts its non-zero values (a zero graded spike is not sent)."""

    def __init__(self, shape, vth, stats: dict, name: str):
        self.vth = vth
        self.last = np.zeros(shape) if vth is not None else None
        self.stats, self.name = stats, name
        stats.setdefault(name, [0, 0])

    def reset(self):
        if self.last is not None:
            self.last[...] = 0.0

    def __call__(self, a: np.ndarray) -> np.ndarray:
        st = self.stats[self.name]
        st[1] += a.size
        if self.vth is None:
            st[0] += int(np.count_nonzero(a))
            return a
        send = np.abs(a - self.last) > self.vth
        st[0] += int(np.count_nonzero(send))
        np.copyto(self.last, a, where=send)
        return self.last.copy()


class FxpEngine:
    """One integer time step of the whole model for a batch of N streams (SPEC.md 14.3)."""

    def __init__(self, m: FxpModel, batch: int, vth: float | None = None):
        if vth is not None and (not np.isfinite(vth) or vth < 0):
            raise S4DInputError(f"sigma-delta threshold vth must be a finite number >= 0, got {vth!r}")
        self.m, self.N, self.vth = m, batch, vth
        cfg, fmt = m.config, m.fmt
        f64 = lambda k: m.arrays[k].astype(np.float64)  # noqa: E731
        self.enc_T = f64("encoder.W").T.copy()
        self.dec_T = f64("decoder.W").T.copy()
        self.A = [f64(f"layer{i}.Abar_re") + 1j * f64(f"layer{i}.Abar_im") for i in range(cfg.n_layers)]
        self.B = [f64(f"layer{i}.Bbar_re") + 1j * f64(f"layer{i}.Bbar_im") for i in range(cfg.n_layers)]
        self.C = [f64(f"layer{i}.C_re") + 1j * f64(f"layer{i}.C_im") for i in range(cfg.n_layers)]
        self.D = [f64(f"layer{i}.D") if cfg.use_D else None for i in range(cfg.n_layers)]
        self.W_T = [f64(f"layer{i}.W").T.copy() for i in range(cfg.n_layers)]
        self.shifts = [m.shift_mixer(i) for i in range(cfg.n_layers)]
        self.half_up = fmt.rounding == "half_up"
        self.F = fmt.frac_bits
        self.relu = cfg.activation == "relu"
        self.saturations: dict[str, int] = {}
        self.density: dict[str, list] = {}
        M, S = fmt.msg_bits, fmt.state_bits
        sat = lambda bits, name: _Saturator(bits, self.saturations, name)  # noqa: E731
        sd = lambda shape, name: _SigmaDelta(shape, vth, self.density, name)  # noqa: E731
        H, P = cfg.H, cfg.P
        self.sat_input, self.sat_enc, self.sat_dec = sat(M, "input"), sat(M, "encoder"), sat(M, "decoder")
        self.sd_enc = sd((batch, H), "encoder")
        self.layer_ops = []
        for i in range(cfg.n_layers):
            self.layer_ops.append(dict(
                sat_state=sat(S, f"layer{i}.state"), sat_msg=sat(M, f"layer{i}.message"),
                sat_relu=sat(M, f"layer{i}.relu"), sat_block=sat(M, f"layer{i}.block"),
                sd_msg=sd((batch, H, P), f"layer{i}.message"), sd_relu=sd((batch, H), f"layer{i}.relu"),
                sd_block=sd((batch, H), f"layer{i}.block")))
        self.reset()

    def reset(self) -> None:
        cfg = self.m.config
        self.x = [np.zeros((self.N, cfg.H, cfg.P), dtype=np.complex128) for _ in range(cfg.n_layers)]
        for s in [self.sd_enc] + [op[k] for op in self.layer_ops for k in ("sd_msg", "sd_relu", "sd_block")]:
            s.reset()
        self.t = 0

    def rshift(self, a: np.ndarray, s: int) -> np.ndarray:
        """R(a, s) of SPEC.md 14.1 for s >= 1 (floor or round-half-up), a << -s for s <= 0; in place."""
        if s <= 0:
            a *= float(1 << -s)
            return a
        a *= 2.0 ** -s
        if self.half_up:
            a += 0.5
        return np.floor(a, out=a)

    def quantize_input(self, u_t: np.ndarray) -> np.ndarray:
        """u_q = sat_M(Q(u 2^inp_exp)), Q = floor or floor(. + 1/2) by the rounding mode."""
        q = u_t * 2.0 ** self.m.inp_exp
        if self.half_up:
            q += 0.5
        return self.sat_input(np.floor(q))

    def step(self, u_q: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """One time step from quantised inputs (N, d_in); returns logits (N, classes) and per-layer y (N, H)."""
        h = self.sd_enc(self.sat_enc(self.rshift(u_q @ self.enc_T, self.m.shift_encoder)))
        ys = []
        F = self.F
        for i, op in enumerate(self.layer_ops):
            x = self.x[i]
            x *= self.A[i]
            x += self.B[i] * h[:, :, None]  # ar xr - ai xi + br v, ar xi + ai xr + bi v: exact integers
            xv = x.view(np.float64)
            op["sat_state"](self.rshift(xv, F))
            o = (x * self.C[i]).real  # cr xr - ci xi
            o = op["sd_msg"](op["sat_msg"](self.rshift(np.ascontiguousarray(o), F - 1)))  # 2 Re(C x)
            y = o.sum(axis=2)
            if self.D[i] is not None:
                y += self.rshift(self.D[i] * h, F)
            ys.append(y)
            r = op["sd_relu"](op["sat_relu"](np.maximum(y, 0.0) if self.relu else y))
            mix = self.rshift(r @ self.W_T[i], self.shifts[i])
            h = op["sd_block"](op["sat_block"](np.maximum(mix, 0.0, out=mix) if self.relu else mix))
        logits = self.sat_dec(self.rshift(h @ self.dec_T, self.m.shift_decoder))
        self.t += 1
        return logits, ys


@dataclasses.dataclass
class FxpRun:
    """Integer outputs of a fixed-point run and their scales."""

    step_logits: np.ndarray  # int64 (N, L, classes), out_exp fractional bits
    layer_y: list[np.ndarray]  # int64 (N, L, H), act_exp[i] fractional bits
    saturations: dict[str, int]
    density: dict[str, float]  # fraction of messages sent, per signal

    def dequantised(self, m: FxpModel) -> tuple[np.ndarray, list[np.ndarray]]:
        return (self.step_logits * 2.0 ** -m.out_exp,
                [y * 2.0 ** -m.act_exp[i] for i, y in enumerate(self.layer_y)])


def run_fxp(m: FxpModel, u, vth: float | None = None) -> FxpRun:
    """Whole-batch run: the same step as the streaming session, over every step of u (N, L, d_in)."""
    u = as_input_sequence(u, m.config.d_input)
    N, L, _ = u.shape
    eng = FxpEngine(m, N, vth)
    logits = np.empty((N, L, m.config.n_classes))
    ys = [np.empty((N, L, m.config.H)) for _ in range(m.config.n_layers)]
    for k in range(L):
        logits[:, k], y = eng.step(eng.quantize_input(u[:, k]))
        for i in range(len(ys)):
            ys[i][:, k] = y[i]
    return FxpRun(logits.astype(np.int64), [y.astype(np.int64) for y in ys], dict(eng.saturations),
                  {k: (s / n if n else 0.0) for k, (s, n) in eng.density.items()})


class FxpSession(Session):
    """Streaming session: step(u_t) float (N, d_in) -> dequantised logits (N, classes)."""

    def __init__(self, m: FxpModel, batch: int, vth=None):
        self.m = m
        self.engine = FxpEngine(m, batch, vth)

    def step(self, u_t):
        u_t = np.asarray(u_t, dtype=np.float64)
        if u_t.shape != (self.engine.N, self.m.config.d_input):
            raise S4DInputError(f"step input must have shape ({self.engine.N}, {self.m.config.d_input}), "
                                f"got {u_t.shape}")
        check_finite(f"step input at t={self.engine.t}", u_t)
        logits, _ = self.engine.step(self.engine.quantize_input(u_t))
        return logits * 2.0 ** -self.m.out_exp

    def reset(self):
        self.engine.reset()

    def get_state(self):
        """States dequantised to complex (N, H, P) per layer, plus the raw integers and counters."""
        e = self.engine
        return {"t": e.t, "x": [x * 2.0 ** -self.m.act_exp[i] for i, x in enumerate(e.x)],
                "x_int": [x.copy() for x in e.x], "saturations": dict(e.saturations)}


class NumpyFxpBackend(Backend):
    name = "numpy-fxp"

    def __init__(self, vth: float | None = None):
        self.vth = vth

    def info(self) -> BackendInfo:
        return BackendInfo(name=self.name, numeric_class="fixed-point",
                           version=f"s4dconf {s4dconf.__version__} (numpy {np.__version__})", device="cpu",
                           paths=("integer",))

    def prepare(self, model):
        """A FxpModel is used as is; a float64 S4DModel is quantised by the default PTQ rule (SPEC.md 15)."""
        if isinstance(model, FxpModel):
            return model
        if isinstance(model, S4DModel):
            return quantize(model)
        raise S4DInputError(f"numpy-fxp needs an S4DModel or FxpModel, got {type(model).__name__}")

    def run(self, handle, u, path):
        r = run_fxp(handle, u, self.vth)
        logits, ys = r.dequantised(handle)
        return BackendRun(step_logits=logits, layer_y=ys, saturations=r.saturations)

    def open_session(self, handle, batch):
        return FxpSession(handle, batch, self.vth)
