"""The integer engine of SPEC.md section 14, vectorised over batch, channels and modes: `FxpEngine` (one step for a
batch of streams, saturation and message-density counters) and `run_fxp` (a whole batch). The integer goldens,
the `numpy-fxp` backend, the Lava fixed-point backend's checks and the resource model's densities all run it.

Integers are held in float64 arrays: every intermediate is an integer below 2^53 in magnitude (SPEC.md 14.5,
checked when the model is built), so float64 products, sums, power-of-two scalings and floor() are exact, and
the fast BLAS and complex kernels can be used. `fixedpoint/literal.py` states the same step with
Python-int semantics; tests require both to agree bit for bit.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .formats import FxpFormat, FxpModel, int_range
from s4dconf.reference.validate import S4DInputError, as_input_sequence


try:  # BLAS i?amax: index of the largest |a_k|, one pass (a saturation check in one call)
    from scipy.linalg.blas import idamax as _iamax
except ImportError:  # pragma: no cover - scipy is a dependency; argmax |a| is the slower equivalent
    def _iamax(a: np.ndarray) -> int:
        return int(np.argmax(np.abs(a)))
try:  # the C function behind np.count_nonzero(a) without axis, minus its Python wrapper
    from numpy._core.multiarray import count_nonzero as _count_nonzero
except ImportError:  # numpy < 2
    _count_nonzero = np.count_nonzero


class _Saturator:
    """Clip to a signed width (the format's sat_W range) in place and count the clipped elements under a name."""

    def __init__(self, fmt: FxpFormat, bits: int, counts: dict, name: str):
        self.lo, self.hi = (float(v) for v in fmt.sat_range(bits))
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


def _flat(a: np.ndarray) -> np.ndarray:
    """The 1-d view of a C-contiguous array (never a copy: the fast step writes through these views)."""
    if not a.flags.c_contiguous:
        raise ValueError("internal: buffer is not C-contiguous")
    return a.reshape(-1)


def _count_via(mask: np.ndarray, a: np.ndarray) -> int:
    """count_nonzero(a) through a preallocated bool array of a's shape."""
    np.not_equal(a, 0.0, out=mask)
    return _count_nonzero(mask)


def rshift(a: np.ndarray, s: int, rounding: str) -> np.ndarray:
    """R(a, s) of SPEC.md 14.1 in place on integers held in float64: for s >= 1 floor, round half up or toward
    zero of a 2^-s (exact: a 2^-s is a power-of-two scaling); a << -s for s <= 0."""
    if s <= 0:
        a *= float(1 << -s)
        return a
    a *= 2.0 ** -s
    if rounding == "half_up":
        a += 0.5
    return (np.trunc if rounding == "toward_zero" else np.floor)(a, out=a)


def state_update(x: np.ndarray, A: np.ndarray, B: np.ndarray, v: np.ndarray, fmt: FxpFormat) -> np.ndarray:
    """Step 3a of SPEC.md 14.3 before saturation, in place on the complex state x (..., P) (C-contiguous):
    x = R(Abar x + Bbar v, F) per part ("per_sum"), or the sum of each product rescaled alone ("per_product":
    R(ar xr, F) - R(ai xi, F) + R(br v, F) and R(ar xi, F) + R(ai xr, F) + R(bi v, F)). A, B broadcast
    against x, v against x's last axis."""
    F, rnd = fmt.frac_bits, fmt.rounding
    if fmt.rescale == "per_sum":
        x *= A
        x += B * v  # ar xr - ai xi + br v, ar xi + ai xr + bi v: exact integers
        rshift(x.view(np.float64), F, rnd)
        return x
    xr, xi = x.real.copy(), x.imag.copy()
    ar, ai, br, bi = A.real, A.imag, B.real, B.imag
    x.real = rshift(ar * xr, F, rnd) - rshift(ai * xi, F, rnd) + rshift(br * v, F, rnd)
    x.imag = rshift(ar * xi, F, rnd) + rshift(ai * xr, F, rnd) + rshift(bi * v, F, rnd)
    return x


def neuron_output(x: np.ndarray, C: np.ndarray, fmt: FxpFormat) -> np.ndarray:
    """Step 3b of SPEC.md 14.3 before saturation: R(cr xr - ci xi, F - 1) ("per_sum"), or
    R(cr xr, F - 1) - R(ci xi, F - 1) ("per_product"); a new real array."""
    F, rnd = fmt.frac_bits, fmt.rounding
    if fmt.rescale == "per_sum":
        return rshift(np.ascontiguousarray((x * C).real), F - 1, rnd)  # cr xr - ci xi
    return rshift(C.real * x.real, F - 1, rnd) - rshift(C.imag * x.imag, F - 1, rnd)


def mode_states(fmt: FxpFormat, Abar: complex, Bbar: complex, v: np.ndarray) -> np.ndarray:
    """The state sequence of one mode neuron (steps 3a and its saturation), as the engine computes it: integer
    Abar, Bbar (complex of integers, F fractional bits) and integer inputs v (K, L), K independent streams, from
    the zero state. Returns the complex states (K, L) after each step (x_re + i x_im, integers)."""
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 2:
        raise S4DInputError(f"mode_states: v must be (K streams, L steps), got shape {v.shape}")
    A, B = np.complex128(Abar), np.complex128(Bbar)
    sat = _Saturator(fmt, fmt.state_bits, {}, "state")
    x = np.zeros(v.shape[0], dtype=np.complex128)
    out = np.empty(v.shape, dtype=np.complex128)
    for k in range(v.shape[1]):
        sat(state_update(x, A, B, v[:, k], fmt).view(np.float64))
        out[:, k] = x
    return out


class FxpEngine:
    """One integer time step of the whole model for a batch of N streams (SPEC.md 14.3).

    Two implementations of the same step. `_step_exact` writes SPEC.md 14.3 out one operation at a time, with the
    sigma-delta hooks of 14.4; it runs when a threshold vth is set. Otherwise `step` runs a fast plan:
      - every power-of-two rescale is folded into the coefficients (Abar, Bbar, D by 2^-F, C by 2^-(F-1), each
        dense matrix by 2^-s), so R(a, s) is one floor() of the product, after + 1/2 for half_up when s >= 1
        (trunc() for toward_zero). It rescales sums ("per_sum"); a "per_product" format runs `_step_exact`.
        Products and sums of k 2^-s with |k| < 2^53 (the bounds of SPEC.md 14.5, rounding offset included) are
        exact in float64, so these are the same integers;
      - cr xr - ci xi per neuron is the real part of one complex product;
      - a saturation check is one BLAS i?amax pass: when max |a| <= hi nothing can clip (lo = -hi - 1);
        otherwise the exact `_Saturator` counts and clips;
      - the batch is cut into chunks of rows whose states fit in a core's L2 cache (the streams are independent
        and every counter is a sum over elements), so the passes over each layer's state and messages run from
        cache; Abar and C are repeated for a chunk's rows (complex products of equal shapes, no broadcasting);
        buffers are preallocated, shared by chunks and layers, and each layer's operands are one tuple.
    Every value and counter equals `_step_exact` and `fixedpoint/literal.py`.
    """

    _COUNT_VIA_BOOL = 2048  # message arrays above this size count non-zeros through a bool mask (faster)
    _CHUNK_BYTES = 256 * 1024  # complex state bytes per batch chunk of the fast step

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
        self._round = np.trunc if fmt.rounding == "toward_zero" else np.floor  # R after the 2^-s scaling
        self.F = fmt.frac_bits
        self.relu = cfg.activation == "relu"
        self.saturations: dict[str, int] = {}
        self.density: dict[str, list] = {}
        M, S = fmt.msg_bits, fmt.state_bits
        sat = lambda bits, name: _Saturator(fmt, bits, self.saturations, name)  # noqa: E731
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
        # the states; updated in place, never replaced (the fast plan holds views of them)
        self.x = [np.zeros((batch, H, P), dtype=np.complex128) for _ in range(cfg.n_layers)]
        # the fast plan rescales sums only; per-product rescaling runs the operation-by-operation step
        self._fast = vth is None and batch > 0 and fmt.rescale == "per_sum"
        if self._fast:
            self._build_plan()
        self.reset()

    def _build_plan(self) -> None:
        """Pre-scaled coefficients, preallocated buffers and the per-layer (and per-chunk) operand tuples."""
        m, N, F = self.m, self.N, self.F
        cfg, fmt = m.config, m.fmt
        H, P, L = cfg.H, cfg.P, cfg.n_layers
        half = lambda s: self.half_up and s > 0  # noqa: E731  (R(a, s <= 0) is exact: no rounding offset)
        self._hi_msg = float(int_range(fmt.msg_bits)[1])
        self._hi_state = float(int_range(fmt.state_bits)[1])
        self._enc_s = self.enc_T * 2.0 ** -m.shift_encoder
        self._dec_s = self.dec_T * 2.0 ** -m.shift_decoder
        self._half_enc, self._half_dec, self._half_o = half(m.shift_encoder), half(m.shift_decoder), half(F - 1)
        self._st_enc = self.density["encoder"]
        self._y_shape = (L, N * H)
        self._h = np.zeros(N * H)  # block input / output, (N, H) flattened
        h2 = self._h.reshape(N, H)
        # batch chunks: the rows of the state, the scratch and the messages of a chunk stay in L2 between passes
        rows = max(1, min(N, self._CHUNK_BYTES // (16 * H * P)))
        scratch = np.zeros(rows * H * 2 * P)  # Bbar v, then (as complex) C x
        o_buf = np.zeros(rows * H * P)
        mask = np.zeros(rows * H * P, dtype=bool)
        ones = np.ones(P)
        layers = []
        for i in range(L):
            op = self.layer_ops[i]
            # Abar and C repeated for the rows of a chunk: a complex product of equal shapes is the fast kernel
            A_rows = np.tile(_flat(self.A[i] * 2.0 ** -F), rows)
            C_rows = np.tile(_flat(self.C[i] * 2.0 ** -(F - 1)), rows)
            chunks = []
            for a in range(0, N, rows):
                n = min(N, a + rows) - a
                inj, o = scratch[:n * H * 2 * P], o_buf[:n * H * P]
                ct = inj.view(np.complex128)
                x = _flat(self.x[i][a:a + n])  # complex (n H P,)
                chunks.append((
                    x, x.view(np.float64), A_rows[:n * H * P], inj.reshape(n, H, 2 * P), inj,
                    h2[a:a + n], h2[a:a + n, :, None], C_rows[:n * H * P], ct, ct.real, o,
                    o.reshape(n * H, P), a * H, (a + n) * H,
                    _count_nonzero if o.size <= self._COUNT_VIA_BOOL else functools.partial(
                        _count_via, mask[:n * H * P]),
                    n >= 4 and (P <= 8 or n >= 8)))  # einsum broadcasts Bbar v faster than multiply here
            layers.append((
                i, np.ascontiguousarray(self.B[i] * 2.0 ** -F).view(np.float64), ones,
                None if self.D[i] is None else self.D[i] * 2.0 ** -F, self.W_T[i] * 2.0 ** -self.shifts[i],
                half(self.shifts[i]), op["sat_state"], op["sat_msg"], op["sat_relu"], op["sat_block"],
                self.density[f"layer{i}.message"], self.density[f"layer{i}.relu"], self.density[f"layer{i}.block"],
                tuple(chunks)))
        self._layers = tuple(layers)
        self._r, self._dh = np.zeros(N * H), np.zeros(N * H)
        self._vecs = (self._h, self._r, self._dh, h2, self._r.reshape(N, H), self._dh.reshape(N, H))
        self._y_scratch = np.zeros(self._y_shape)  # y of the steps whose caller does not want it

    def reset(self) -> None:
        for x in self.x:
            x.fill(0.0)
        for s in self._sigma_deltas():
            s.reset()
        self.t = 0

    def _sigma_deltas(self) -> list:
        return [self.sd_enc] + [op[k] for op in self.layer_ops for k in ("sd_msg", "sd_relu", "sd_block")]

    def sigma_delta_state(self) -> list:
        """The receivers' last values of every sigma-delta signal (None where vth is None)."""
        return [None if s.last is None else s.last.copy() for s in self._sigma_deltas()]

    def set_state(self, t: int, x_int, saturations: dict, sigma_delta: list) -> None:
        """Resume from a snapshot: integer states (per layer (N, H, P) complex of integers), step count, saturation
        counters and sigma-delta memories, all copied in (shapes must match this engine)."""
        if len(x_int) != len(self.x) or any(np.shape(a) != x.shape for a, x in zip(x_int, self.x)):
            raise S4DInputError(f"state x_int must hold {len(self.x)} arrays of shape {self.x[0].shape}")
        sds = self._sigma_deltas()
        if len(sigma_delta) != len(sds):
            raise S4DInputError(f"state sigma_delta must hold {len(sds)} entries, got {len(sigma_delta)}")
        for x, a in zip(self.x, x_int):
            np.copyto(x, a)
        for s, last in zip(sds, sigma_delta):
            if (s.last is None) != (last is None):
                raise S4DInputError("state sigma_delta was taken with another sigma-delta threshold (vth)")
            if last is not None:
                np.copyto(s.last, last)
        self.saturations.clear()
        self.saturations.update(saturations)
        self.t = int(t)

    def rshift(self, a: np.ndarray, s: int) -> np.ndarray:
        """R(a, s) of SPEC.md 14.1 by the model's rounding mode, in place (module function `rshift`)."""
        return rshift(a, s, self.m.fmt.rounding)

    def quantize_input(self, u_t: np.ndarray) -> np.ndarray:
        """u_q = sat_M(Q(u 2^inp_exp)), Q = floor, floor(. + 1/2) or trunc by the rounding mode."""
        q = u_t * 2.0 ** self.m.inp_exp
        if self.half_up:
            q += 0.5
        self._round(q, out=q)
        if self._fast and q.dtype == np.float64 and q.size:
            qf = q.reshape(-1)
            if abs(qf[_iamax(qf)]) <= self._hi_msg:
                return q
        return self.sat_input(q)

    def step(self, u_q: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """One time step from quantised inputs (N, d_in); returns logits (N, classes) and per-layer y (N, H)."""
        if not self._fast:
            return self._step_exact(u_q)
        Y = np.empty(self._y_shape)
        return self._step_fast(u_q, Y), list(Y.reshape(len(Y), self.N, -1))

    def step_logits(self, u_q: np.ndarray) -> np.ndarray:
        """`step` without the per-layer y (the streaming session's step)."""
        if not self._fast:
            return self._step_exact(u_q)[0]
        return self._step_fast(u_q, self._y_scratch)

    def _step_fast(self, u_q: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """The fast plan of one step; writes y into Y (n_layers, N H) and returns the logits."""
        iamax, hi_msg, hi_state, relu, half_state, half_o = (
            _iamax, self._hi_msg, self._hi_state, self.relu, self.half_up, self._half_o)
        floor, multiply, add, dot, maximum, cnz, einsum = (  # floor: the rounding of R (np.trunc for toward_zero)
            self._round, np.multiply, np.add, np.dot, np.maximum, _count_nonzero, np.einsum)
        h, r, dh, h2, r2, dh2 = self._vecs  # (N H,) and their (N, H) views
        # encoder: h = sat_M(R(W_enc u_q, s_enc))
        dot(u_q, self._enc_s, out=h2)
        if self._half_enc:
            h += 0.5
        floor(h, out=h)
        if abs(h[iamax(h)]) > hi_msg:
            self.sat_enc(h)
        st = self._st_enc
        st[0] += cnz(h)
        st[1] += h.size
        for (i, Bv_s, ones, D_s, W_s, half_mix, sat_state, sat_msg, sat_relu, sat_block,
             st_msg, st_relu, st_block, chunks) in self._layers:
            y = Y[i]
            for (x, xf, A_s, inj, injf, hc, hc_col, C_s, ct, ct_re, o, o2, ya, yb, count_o, use_einsum) in chunks:
                # x = sat_S(R(Abar x + Bbar v, F)), real and imaginary parts (xf: re, im interleaved)
                multiply(x, A_s, out=x)
                if use_einsum:
                    einsum("nh,hk->nhk", hc, Bv_s, out=inj)
                else:
                    multiply(Bv_s, hc_col, out=inj)
                add(xf, injf, out=xf)
                if half_state:
                    xf += 0.5
                floor(xf, out=xf)
                if abs(xf[iamax(xf)]) > hi_state:
                    sat_state(xf)
                # o = sat_M(R(cr xr - ci xi, F - 1)) per neuron; y = sum over the P modes
                multiply(x, C_s, out=ct)
                if half_o:
                    add(ct_re, 0.5, out=o)
                    floor(o, out=o)
                else:
                    floor(ct_re, out=o)
                if abs(o[iamax(o)]) > hi_msg:
                    sat_msg(o)
                st_msg[0] += count_o(o)
                st_msg[1] += o.size
                dot(o2, ones, out=y[ya:yb])
            if D_s is not None:  # y += R(D v, F)
                multiply(D_s, h2, out=dh2)
                if half_state:
                    dh += 0.5
                floor(dh, out=dh)
                add(y, dh, out=y)
            # r = sat_M(act(y)); h = sat_M(act(R(W r, s_i))), written over h (v is no longer needed)
            if relu:
                maximum(y, 0.0, out=r)
            else:
                np.copyto(r, y)
            if abs(r[iamax(r)]) > hi_msg:
                sat_relu(r)
            st_relu[0] += cnz(r)
            st_relu[1] += r.size
            dot(r2, W_s, out=h2)
            if half_mix:
                h += 0.5
            floor(h, out=h)
            if relu:
                maximum(h, 0.0, out=h)
            if abs(h[iamax(h)]) > hi_msg:
                sat_block(h)
            st_block[0] += cnz(h)
            st_block[1] += h.size
        # decoder: logits = sat_M(R(W_dec h, s_dec))
        logits = dot(h2, self._dec_s)
        lf = logits.reshape(-1)
        if self._half_dec:
            lf += 0.5
        floor(lf, out=lf)
        if lf.size and abs(lf[iamax(lf)]) > hi_msg:
            self.sat_dec(lf)
        self.t += 1
        return logits

    def _step_exact(self, u_q: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """SPEC.md 14.3 one operation at a time, with the sigma-delta hooks of 14.4."""
        h = self.sd_enc(self.sat_enc(self.rshift(u_q @ self.enc_T, self.m.shift_encoder)))
        ys = []
        F = self.F
        fmt = self.m.fmt
        for i, op in enumerate(self.layer_ops):
            x = state_update(self.x[i], self.A[i], self.B[i], h[:, :, None], fmt)
            op["sat_state"](x.view(np.float64))
            o = op["sd_msg"](op["sat_msg"](neuron_output(x, self.C[i], fmt)))  # 2 Re(C x)
            y = o.sum(axis=2)
            if self.D[i] is not None:
                y += self.rshift(self.D[i] * h, F)
            ys.append(y)
            r = op["sd_relu"](op["sat_relu"](np.maximum(y, 0.0) if self.relu else y.copy()))  # y is reported unclipped
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
