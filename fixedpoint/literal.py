"""SPEC.md section 14.3 written out literally in int64, one operation per line, for one time step.

This is the readable statement of the arithmetic, used to check the fast backend (`backends/numpy_fxp.py`) bit for
bit and as the template for other implementations (Lava fixed_pt models, chip microcode). Not optimised.
Sigma-delta messaging (14.4) is not part of it: with vth = 0 it is the identity.
"""
from __future__ import annotations

import numpy as np

from .formats import FxpModel, int_range


def R(a: np.ndarray, s: int, rounding: str) -> np.ndarray:
    """Rescale by 2^-s: arithmetic right shift (floor), round half up, or toward zero (sign times the shifted
    magnitude) for s >= 1; exact left shift for s <= 0."""
    a = np.asarray(a, dtype=np.int64)
    if s <= 0:
        return a << -s
    if rounding == "toward_zero":
        return np.sign(a) * (np.abs(a) >> s)
    if rounding == "half_up":
        a = a + (1 << (s - 1))
    return a >> s


def sat(a: np.ndarray, bits: int, counts: dict, name: str, saturation: str = "asymmetric") -> np.ndarray:
    """Clamp to the signed width, [-2^(b-1), 2^(b-1) - 1] or symmetric [-(2^(b-1) - 1), 2^(b-1) - 1]; count the
    clamped elements."""
    lo, hi = int_range(bits)
    if saturation == "symmetric":
        lo = -hi
    counts[name] = counts.get(name, 0) + int(np.count_nonzero((a < lo) | (a > hi)))
    return np.clip(a, lo, hi)


def quantize_input(m: FxpModel, u_t: np.ndarray, counts: dict) -> np.ndarray:
    """u_q = sat_M(floor(u 2^inp_exp)), sat_M(floor(u 2^inp_exp + 1/2)) or sat_M(trunc(u 2^inp_exp)): the only
    float operation."""
    scaled = np.asarray(u_t, dtype=np.float64) * 2.0 ** m.inp_exp
    if m.fmt.rounding == "half_up":
        scaled = scaled + 0.5
    lo, hi = int_range(m.fmt.msg_bits)
    Q = np.trunc if m.fmt.rounding == "toward_zero" else np.floor
    q = Q(np.clip(scaled, lo - 1, hi + 1)).astype(np.int64)
    return sat(q, m.fmt.msg_bits, counts, "input", m.fmt.saturation)


def literal_step(m: FxpModel, state: list, u_q: np.ndarray, counts: dict):
    """state: per layer (xr, xi) int64 (N, H, P); u_q int64 (N, d_in). Returns (new state, logits, [y_i])."""
    fmt, cfg, rnd = m.fmt, m.config, m.fmt.rounding
    M, S, F = fmt.msg_bits, fmt.state_bits, fmt.frac_bits
    a = m.arrays
    per_product = fmt.rescale == "per_product"

    def clamp(x, bits, name):  # sat_W with the format's saturation range, counted
        return sat(x, bits, counts, name, fmt.saturation)

    # encoder: h0 = sat_M(R(W_enc u_q, w_exp_enc + inp_exp - act_exp[0]))
    h = clamp(R(u_q @ a["encoder.W"].T, m.shift_encoder, rnd), M, "encoder")
    new_state, ys = [], []
    for i in range(cfg.n_layers):
        ar, ai = a[f"layer{i}.Abar_re"], a[f"layer{i}.Abar_im"]
        br, bi = a[f"layer{i}.Bbar_re"], a[f"layer{i}.Bbar_im"]
        cr, ci = a[f"layer{i}.C_re"], a[f"layer{i}.C_im"]
        xr, xi = state[i]
        v = h[:, :, None]  # fan-out: channel h to its P mode neurons
        if per_product:  # each product rescaled on its own, then summed
            pr = R(ar * xr, F, rnd) - R(ai * xi, F, rnd) + R(br * v, F, rnd)
            pi = R(ar * xi, F, rnd) + R(ai * xr, F, rnd) + R(bi * v, F, rnd)
        else:
            pr = R(ar * xr - ai * xi + br * v, F, rnd)
            pi = R(ar * xi + ai * xr + bi * v, F, rnd)
        xr = clamp(pr, S, f"layer{i}.state")
        xi = clamp(pi, S, f"layer{i}.state")
        if per_product:
            o = R(cr * xr, F - 1, rnd) - R(ci * xi, F - 1, rnd)
        else:
            o = R(cr * xr - ci * xi, F - 1, rnd)
        o = clamp(o, M, f"layer{i}.message")  # 2 Re(C x) per neuron
        y = o.sum(axis=2)  # fan-in: the P neurons of a channel
        if cfg.use_D:
            y = y + R(a[f"layer{i}.D"] * h, F, rnd)
        ys.append(y)
        r = clamp(np.maximum(y, 0) if cfg.activation == "relu" else y, M, f"layer{i}.relu")
        mix = R(r @ a[f"layer{i}.W"].T, m.shift_mixer(i), rnd)
        h = clamp(np.maximum(mix, 0) if cfg.activation == "relu" else mix, M, f"layer{i}.block")
        new_state.append((xr, xi))
    logits = clamp(R(h @ a["decoder.W"].T, m.shift_decoder, rnd), M, "decoder")
    return new_state, logits, ys


def literal_run(m: FxpModel, u: np.ndarray):
    """Whole sequence (N, L, d_in) through literal_step; returns (step_logits (N, L, C), [y_i (N, L, H)], counts)."""
    N, L, _ = u.shape
    counts: dict = {}
    state = [(np.zeros((N, m.config.H, m.config.P), np.int64),) * 2 for _ in range(m.config.n_layers)]
    logits, ys = [], []
    for k in range(L):
        state, lg, y = literal_step(m, state, quantize_input(m, u[:, k], counts), counts)
        logits.append(lg)
        ys.append(y)
    return (np.stack(logits, axis=1), [np.stack([y[i] for y in ys], axis=1) for i in range(m.config.n_layers)],
            counts)
