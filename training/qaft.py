"""Quantisation-aware fine-tuning (SPEC.md section 18.3): the forward pass is the integer arithmetic of SPEC.md 14.3,
run on integer-valued float64 tensors, with straight-through gradients; the export is a fixed-point model file.

    integers    q = Q(float parameters)            (reference/quantize.py: quantize_arrays, the PTQ value rule)
    STE         q_ste = s + (q - s).detach(),  s = the float parameter times its scale 2^e (d q_ste / d s = 1)
    rescale     R(a, k) = floor(a 2^-k [+ 1/2]) for k >= 1, a 2^k' for k = -k' <= 0;
                floor_ste(v) = v + (floor(v) - v).detach()
    saturate    clamp to the signed width (zero gradient outside, as the hardware clips)
The exponents (inp_exp, act_exp, out_exp) are fixed to those PTQ chose for the starting model; the weight exponents
follow each matrix's peak, by the PTQ rule. Every intermediate is an integer below 2^53 (SPEC.md 14.5), so float64
torch arithmetic gives the integers of `numpy-fxp` exactly: `qaft_forward` and `run_fxp` agree bit for bit on the
exported model (conformance/meta/test_training.py).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from s4dconf.fixedpoint.formats import DEFAULT_CONVENTIONS, FxpFormat, FxpModel, int_range, require_format_choices
from s4dconf.fixedpoint.quantize import quantize_arrays


@dataclasses.dataclass(frozen=True)
class QaftScales:
    """The fixed exponents and format of a QAFT run (from the PTQ model it starts from)."""

    fmt: FxpFormat
    inp_exp: int
    act_exp: tuple[int, ...]
    out_exp: int

    @classmethod
    def from_fxp(cls, m: FxpModel) -> "QaftScales":
        require_format_choices(m.fmt, DEFAULT_CONVENTIONS, "QAFT's forward pass",
                               "fine-tune a model quantised with these choices (the default profile)")
        return cls(fmt=m.fmt, inp_exp=m.inp_exp, act_exp=tuple(m.act_exp), out_exp=m.out_exp)


def export_fxp(module, scales: QaftScales, provenance: dict | None = None) -> FxpModel:
    """The fixed-point model of the module's current parameters (validated: widths, shifts, overflow bounds)."""
    arrays, w_exp = quantize_arrays(module.to_reference(), scales.fmt)
    return FxpModel(config=module.config, fmt=scales.fmt, inp_exp=scales.inp_exp, act_exp=scales.act_exp,
                    out_exp=scales.out_exp, arrays=arrays, w_exp=w_exp, provenance=dict(provenance or {}))


def _ste(scaled: torch.Tensor, q: np.ndarray) -> torch.Tensor:
    return scaled + (torch.as_tensor(q, dtype=torch.float64, device=scaled.device) - scaled).detach()


def ste_integers(module, fxp: FxpModel) -> dict[str, torch.Tensor]:
    """The integer arrays of `fxp` as float64 tensors whose gradient flows to the module's parameters."""
    F = 2.0 ** fxp.fmt.frac_bits
    g = module.param
    out = {"encoder.W": _ste(g("encoder.W") * 2.0 ** fxp.w_exp["encoder"], fxp.arrays["encoder.W"]),
           "decoder.W": _ste(g("decoder.W") * 2.0 ** fxp.w_exp["decoder"], fxp.arrays["decoder.W"])}
    for i in range(module.config.n_layers):
        _, Abar, Bbar, _ = module.discrete(i)
        scaled = {"Abar_re": Abar.real * F, "Abar_im": Abar.imag * F, "Bbar_re": Bbar.real * F,
                  "Bbar_im": Bbar.imag * F, "C_re": g(f"layer{i}.C_re") * F, "C_im": g(f"layer{i}.C_im") * F,
                  "W": g(f"layer{i}.W") * 2.0 ** fxp.w_exp[f"layer{i}"]}
        if module.config.use_D:
            scaled["D"] = g(f"layer{i}.D") * F
        for k, s in scaled.items():
            out[f"layer{i}.{k}"] = _ste(s, fxp.arrays[f"layer{i}.{k}"])
    return out


def _floor_ste(v: torch.Tensor) -> torch.Tensor:
    return v + (torch.floor(v) - v).detach()


def qaft_forward(module, scales: QaftScales, u: torch.Tensor, all_steps: bool = False) -> torch.Tensor:
    """Dequantised logits of the integer model of the module's parameters: u (N, L, d_in) float64 ->
    last-step logits (N, classes), or every step's (N, L, classes) with all_steps."""
    fxp = export_fxp(module, scales)
    q = ste_integers(module, fxp)
    fmt, cfg = fxp.fmt, fxp.config
    half_up = fmt.rounding == "half_up"
    Mlo, Mhi = int_range(fmt.msg_bits)
    Slo, Shi = int_range(fmt.state_bits)
    F = fmt.frac_bits

    def R(a, s):
        if s <= 0:
            return a * float(1 << -s)
        a = a * 2.0 ** -s
        return _floor_ste(a + 0.5 if half_up else a)

    act = torch.relu if cfg.activation == "relu" else (lambda v: v)
    N, L, _ = u.shape
    uq = u.detach() * 2.0 ** fxp.inp_exp
    uq = torch.clamp(torch.floor(uq + 0.5 if half_up else uq), Mlo, Mhi)
    enc_T, dec_T = q["encoder.W"].T, q["decoder.W"].T
    layers = [tuple(q[f"layer{i}.{k}"] for k in ("Abar_re", "Abar_im", "Bbar_re", "Bbar_im", "C_re", "C_im", "W"))
              + (q.get(f"layer{i}.D"), fxp.shift_mixer(i)) for i in range(cfg.n_layers)]
    xs = [(torch.zeros(N, cfg.H, cfg.P, dtype=torch.float64, device=u.device),) * 2 for _ in range(cfg.n_layers)]
    outs = []
    for k in range(L):
        h = torch.clamp(R(uq[:, k] @ enc_T, fxp.shift_encoder), Mlo, Mhi)
        for i, (ar, ai, br, bi, cr, ci, W, D, shift) in enumerate(layers):
            xr, xi = xs[i]
            v = h[:, :, None]
            xr, xi = (torch.clamp(R(ar * xr - ai * xi + br * v, F), Slo, Shi),
                      torch.clamp(R(ar * xi + ai * xr + bi * v, F), Slo, Shi))
            xs[i] = (xr, xi)
            y = torch.clamp(R(cr * xr - ci * xi, F - 1), Mlo, Mhi).sum(dim=2)
            if D is not None:
                y = y + R(D * h, F)
            r = torch.clamp(act(y), Mlo, Mhi)
            h = torch.clamp(act(R(r @ W.T, shift)), Mlo, Mhi)
        if all_steps or k == L - 1:
            outs.append(torch.clamp(R(h @ dec_T, fxp.shift_decoder), Mlo, Mhi))
    logits = torch.stack(outs, dim=1) if all_steps else outs[-1]
    return logits * 2.0 ** -fxp.out_exp
