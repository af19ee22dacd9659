"""Post-training quantisation (SPEC.md section 15): a float64 model + calibration inputs -> a fixed-point model.

The rule, for a signal whose calibration maximum magnitude is r, stored in a signed width of W bits:

    frac_bits(r, W) = floor(log2((2^(W-1) - 1) / r)) - headroom_bits      (r > 0; r = 0 gives MAX_FRAC)

Exponents chosen:
    inp_exp     = frac_bits(max |u|, msg_bits)
    act_exp[i]  = min(frac_bits(max |h_i|, msg_bits), frac_bits(max |Re x|, |Im x| of layer i, state_bits),
                      frac_bits(max |2 Re(C_n x_n)|, msg_bits), frac_bits(max |y_i|, msg_bits))   i < n_layers
    act_exp[n]  = frac_bits(max |h_n|, msg_bits)
    out_exp     = frac_bits(max |logits|, msg_bits)
    w_exp       = floor(log2((2^(weight_bits-1) - 1) / max |W|))  per matrix (encoder, each mixer, decoder)
Values: W_q = clip(round(W 2^w_exp)); Abar, Bbar, C, D as round(. 2^F), then each mode with |Abar_q| >= 2^F is
moved toward zero one unit per component until it decays. round(x) = floor(x + 1/2). Abar, Bbar, C are the model's
layers as evaluated (`model.layers`): the ZOH/bilinear discretisation of a float64 model, or the coefficients a
discretised-coefficient model (SPEC.md 7.1) gives, quantised directly, never rebuilt from (A, B, dt).

headroom_bits must be an integer >= 0 (a negative headroom scales every calibrated maximum past its width), and the
calibration inputs must not be all zero (every exponent would be MAX_FRAC). The model built is run on its own
calibration set by the integer engine; if any signal saturates there, the counts per stage are recorded in the
provenance ("calibration_saturations") and a SaturationWarning names them.
"""
from __future__ import annotations

import hashlib
import math
import warnings

import numpy as np

import s4dconf

from s4dconf.reference.inputs import SHORT_LENGTH
from s4dconf.reference.discrete import DiscreteS4DModel
from s4dconf.reference.model import S4DModel
from s4dconf.reference.modelfile import params_digest
from s4dconf.reference.s4d import s4d_recurrence
from s4dconf.reference.validate import S4DInputError, as_input_sequence

from .engine import run_fxp
from .formats import FxpFormat, FxpModel, abs_squared, format_from_profile, int_range, weight_range

MAX_FRAC = 40  # fractional bits given to a signal that is identically zero in calibration
DEFAULT_HEADROOM_BITS = 1


class SaturationWarning(UserWarning):
    """A quantised model saturates on its own calibration set (SPEC.md 15.1)."""


def default_calibration(d_input: int = 1, seed: int = 1000) -> np.ndarray:
    """The calibration set used when none is given: 8 sequences of 256 steps (SPEC.md 15.2):
    4 white Gaussian (unit variance, PCG64(seed)), constant +1 and -1, a unit step at k = 16, and sparse spikes."""
    rng = np.random.default_rng(seed)
    L = SHORT_LENGTH
    u = np.zeros((8, L, d_input))
    u[:4] = rng.standard_normal((4, L, d_input))
    u[4], u[5] = 1.0, -1.0
    u[6, 16:] = 1.0
    u[7] = (rng.random((L, d_input)) < 0.05).astype(np.float64)
    return u


def calibration_ranges(model: S4DModel, calib: np.ndarray) -> dict:
    """Max magnitudes over the calibration set of every signal the fixed-point model stores."""
    u = as_input_sequence(calib, model.config.d_input, name="calibration data")
    ranges = {"u": float(np.max(np.abs(u))), "h": [], "x": [], "o": [], "y": []}
    h = u @ model.params["encoder.W"].T
    ranges["h"].append(float(np.max(np.abs(h))))
    for layer in model.layers:
        peak = {"x": 0.0, "o": 0.0}
        C2 = 2.0 * layer.C

        def observe(k, x, peak=peak, C2=C2):
            peak["x"] = max(peak["x"], float(np.max(np.abs(x.real))), float(np.max(np.abs(x.imag))))
            peak["o"] = max(peak["o"], float(np.max(np.abs((C2 * x).real))))

        y, _, _ = s4d_recurrence(h, layer.Abar, layer.Bbar, layer.C, layer.D, on_state=observe)
        h = model.act(model.act(y) @ layer.W.T)
        ranges["x"].append(peak["x"])
        ranges["o"].append(peak["o"])
        ranges["y"].append(float(np.max(np.abs(y))))
        ranges["h"].append(float(np.max(np.abs(h))))
    ranges["logits"] = float(np.max(np.abs(model.readout(h))))
    return ranges


def frac_bits_for(r: float, bits: int, headroom_bits: int) -> int:
    if r <= 0.0:
        return MAX_FRAC
    return min(MAX_FRAC, math.floor(math.log2(((1 << (bits - 1)) - 1) / r)) - headroom_bits)


def round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def quantize_weights(W: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    lo, hi = weight_range(bits)
    peak = float(np.max(np.abs(W)))
    w_exp = 0 if peak == 0.0 else math.floor(math.log2(hi / peak))
    return np.clip(round_half_up(W * 2.0**w_exp), lo, hi), w_exp


def quantize_coefficient(name: str, z: np.ndarray, fmt: FxpFormat) -> np.ndarray:
    # round half up; the range is checked on the floats, before the int64 cast (a huge value would not survive it)
    q = np.floor(np.asarray(z, dtype=np.float64) * 2.0**fmt.frac_bits + 0.5)
    lo, hi = int_range(fmt.coef_bits)
    if q.size and (q.min() < lo or q.max() > hi):
        # the smallest signed width b with -2^(b-1) <= q <= 2^(b-1) - 1
        need = max(max(int(q.max()), 0).bit_length(), max(-int(q.min()) - 1, 0).bit_length()) + 1
        raise S4DInputError(
            f"{name}: max |value| = {float(np.max(np.abs(z))):.4g} does not fit coef_bits={fmt.coef_bits} with "
            f"{fmt.frac_bits} fractional bits; use coef_bits >= {need}")
    return q.astype(np.int64)


def stabilise(ar: np.ndarray, ai: np.ndarray, F: int) -> tuple[np.ndarray, np.ndarray]:
    """Move each mode with |Abar_q| >= 2^F one unit toward zero per component until |Abar_q| < 2^F."""
    ar, ai = ar.copy(), ai.copy()
    one2 = 1 << (2 * F)
    while True:
        bad = abs_squared(ar, ai) >= one2
        if not bad.any():
            return ar, ai
        ar[bad] -= np.sign(ar[bad])
        ai[bad] -= np.sign(ai[bad])


def quantize(model: S4DModel, calib: np.ndarray | None = None, fmt: FxpFormat | str | None = None,
             headroom_bits: int = DEFAULT_HEADROOM_BITS, calib_description: str | None = None) -> FxpModel:
    """Post-training quantisation of a float64 model by the rule of the module docstring. `fmt`: a format, the
    name of a profile of formats.FORMAT_PROFILES (SPEC.md 14.9), or None for the default format."""
    fmt = format_from_profile(fmt) if isinstance(fmt, str) else (fmt or FxpFormat())
    cfg = model.config
    if isinstance(headroom_bits, bool) or not isinstance(headroom_bits, (int, np.integer)) or headroom_bits < 0:
        raise S4DInputError(f"headroom_bits must be an integer >= 0, got {headroom_bits!r}: a negative headroom "
                            "scales every calibrated maximum past its width, so the model saturates on its own "
                            "calibration set")
    headroom_bits = int(headroom_bits)
    if calib is None:
        calib = default_calibration(cfg.d_input)
        calib_description = calib_description or "default_calibration(seed=1000): 4 noise, +1, -1, step, spikes"
    calib = as_input_sequence(calib, cfg.d_input, name="calibration data")
    if not np.any(calib):
        raise S4DInputError(f"calibration data of shape {calib.shape} is all zero: it measures no range, every "
                            f"exponent would be {MAX_FRAC} and any non-zero input would saturate; calibrate on "
                            "inputs like those the model will see")
    r = calibration_ranges(model, calib)
    M, S = fmt.msg_bits, fmt.state_bits
    fb = lambda v, bits: frac_bits_for(v, bits, headroom_bits)  # noqa: E731
    act_exp = [min(fb(r["h"][i], M), fb(r["x"][i], S), fb(r["o"][i], M), fb(r["y"][i], M))
               for i in range(cfg.n_layers)] + [fb(r["h"][-1], M)]
    arrays, w_exp = quantize_arrays(model, fmt)
    provenance = {
        "method": "post-training quantisation (SPEC.md section 15)",
        "source_params_sha256": params_digest(model),
        "calibration": {
            "description": calib_description or "user-supplied",
            "shape": list(calib.shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(calib).tobytes()).hexdigest(),
            "ranges": r,
        },
        "headroom_bits": headroom_bits,
        "s4dconf": s4dconf.__version__,
    }
    if isinstance(model, DiscreteS4DModel):  # its params_sha256 follows the rule of its schema (SPEC.md 7.1)
        provenance["source_schema"] = model.schema
    m = FxpModel(config=cfg, fmt=fmt, inp_exp=fb(r["u"], M), act_exp=tuple(act_exp),
                 out_exp=fb(r["logits"], M), arrays=arrays, w_exp=w_exp, provenance=provenance)
    sat = {k: n for k, n in run_fxp(m, calib).saturations.items() if n}
    if sat:  # recorded only when it happens: the provenance of a model that does not saturate is unchanged
        provenance["calibration_saturations"] = sat
        warnings.warn(SaturationWarning(
            f"the quantised model saturates on its own calibration set ({calib_description or 'user-supplied'}, "
            f"shape {list(calib.shape)}): {', '.join(f'{k} {n}' for k, n in sat.items())} clamped values; "
            f"raise headroom_bits (now {headroom_bits}) or widen msg_bits/state_bits (SPEC.md 15.1)"), stacklevel=2)
    return m


def quantize_arrays(model: S4DModel, fmt: FxpFormat) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The integer arrays and weight exponents of a float64 model (the value rules of the module docstring).
    Shared by PTQ and QAFT, whose forward pass and export must use the same integers."""
    arrays, w_exp = {}, {}
    arrays["encoder.W"], w_exp["encoder"] = quantize_weights(model.params["encoder.W"], fmt.weight_bits)
    for i, layer in enumerate(model.layers):
        F = fmt.frac_bits
        ar = quantize_coefficient(f"layer{i} Re(Abar)", layer.Abar.real, fmt)
        ai = quantize_coefficient(f"layer{i} Im(Abar)", layer.Abar.imag, fmt)
        arrays[f"layer{i}.Abar_re"], arrays[f"layer{i}.Abar_im"] = stabilise(ar, ai, F)
        arrays[f"layer{i}.Bbar_re"] = quantize_coefficient(f"layer{i} Re(Bbar)", layer.Bbar.real, fmt)
        arrays[f"layer{i}.Bbar_im"] = quantize_coefficient(f"layer{i} Im(Bbar)", layer.Bbar.imag, fmt)
        arrays[f"layer{i}.C_re"] = quantize_coefficient(f"layer{i} Re(C)", layer.C.real, fmt)
        arrays[f"layer{i}.C_im"] = quantize_coefficient(f"layer{i} Im(C)", layer.C.imag, fmt)
        if layer.D is not None:
            arrays[f"layer{i}.D"] = quantize_coefficient(f"layer{i} D", layer.D, fmt)
        arrays[f"layer{i}.W"], w_exp[f"layer{i}"] = quantize_weights(layer.W, fmt.weight_bits)
    arrays["decoder.W"], w_exp["decoder"] = quantize_weights(model.params["decoder.W"], fmt.weight_bits)
    return arrays, w_exp
