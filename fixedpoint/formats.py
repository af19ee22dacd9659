"""The fixed-point model of Loihi 2 arithmetic (SPEC.md section 14): formats, the model record, its file, and the
overflow bounds that make the integer arithmetic exact.

A fixed-point model holds integer weights and coefficients plus the exponents that give them meaning:

    input      u_q  = sat_M(Q(u * 2^inp_exp))                     u_q has inp_exp fractional bits
    activation h_i  has act_exp[i] fractional bits (i = 0: encoder output / input of layer 0;
                    i = n_layers: output of the last block, input of the decoder)
    state      x    of layer i has act_exp[i] fractional bits (the state shares its input's scale, as on the chip)
    weights    W_q  = round(W * 2^w_exp), W_q in [-(2^(weight_bits-1) - 1), 2^(weight_bits-1) - 1]
    coefs      Abar, Bbar, C (and D) as round(. * 2^F), F = frac_bits, within coef_bits (signed)
    logits     have out_exp fractional bits
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from s4dconf.reference.config import ModelConfig
from s4dconf.reference.modelfile import MODEL_SCHEMA, model_from_arrays, record_from_arrays
from s4dconf.reference.npzio import (DEFAULT_MAX_BYTES, check_entries, check_schema, read_file_bytes, read_npz,
                                     read_npz_bytes, read_str, write_npz)
from s4dconf.reference.validate import S4DInputError

FXP_SCHEMA = "s4dconf-model-fixed-point/1"
FXP_ENTRIES = frozenset({"__schema__", "__config__", "__format__", "__exponents__", "__provenance__"})
ROUNDING_MODES = ("floor", "half_up", "toward_zero")
RESCALE_MODES = ("per_sum", "per_product")  # where the neuron's rescale applies (SPEC.md 14.1)
SATURATION_MODES = ("asymmetric", "symmetric")
# format fields added after the first six: written to the format JSON only when they differ from these defaults,
# so the JSON, the model files and fxp_sha256 of every default-format model stay as they were (SPEC.md 14.8)
LATER_FIELD_DEFAULTS = {"rescale": "per_sum", "saturation": "asymmetric"}
SHIFT_MIN, SHIFT_MAX = -32, 52  # dense shifts: a right shift past 52 leaves nothing of a 53-bit accumulator
EXACT_LIMIT = 2**53  # every intermediate stays below this: exact in int64 and in float64 (SPEC.md 14.5)


@dataclasses.dataclass(frozen=True)
class FxpFormat:
    """Widths and rounding of the integer arithmetic (SPEC.md 14.1). Defaults: Loihi 2 as in the paper."""

    msg_bits: int = 24  # graded-spike payloads and activations (signed)
    state_bits: int = 24  # real and imaginary state parts (signed)
    weight_bits: int = 8  # dense weights (signed, symmetric range)
    coef_bits: int = 16  # Abar, Bbar, C, D (signed): sign + 3 integer bits + F fraction bits by default
    frac_bits: int = 12  # F: fractional bits of Abar, Bbar, C, D
    rounding: str = "floor"  # rescaling right shifts: "floor" (arithmetic shift), "half_up" or "toward_zero"
    rescale: str = "per_sum"  # the neuron's products shifted after summing ("per_sum") or each one ("per_product")
    saturation: str = "asymmetric"  # sat_W to [-2^(W-1), 2^(W-1) - 1], or "symmetric" [-(2^(W-1) - 1), ...]

    def __post_init__(self):
        limits = {"msg_bits": (2, 32), "state_bits": (2, 32), "weight_bits": (2, 16), "frac_bits": (1, 24)}
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise S4DInputError(f"fixed-point format: {name} must be an integer in [{lo}, {hi}], got {v!r}")
        F = self.frac_bits
        if isinstance(self.coef_bits, bool) or not isinstance(self.coef_bits, (int, np.integer)) or not (
                F + 2 <= self.coef_bits <= 32):
            raise S4DInputError(
                f"fixed-point format: coef_bits must be an integer in [frac_bits + 2 = {F + 2}, 32] (sign, one "
                f"integer bit for |Abar| < 1, F fraction bits), got {self.coef_bits!r}")
        for name, known in (("rounding", ROUNDING_MODES), ("rescale", RESCALE_MODES),
                            ("saturation", SATURATION_MODES)):
            if getattr(self, name) not in known:
                raise S4DInputError(
                    f"fixed-point format: unknown {name} {getattr(self, name)!r}; known: {', '.join(known)}")

    def to_json(self) -> str:
        """Canonical JSON (SPEC.md 14.8): the six first fields always, a later field only when not its default."""
        d = dataclasses.asdict(self)
        for name, default in LATER_FIELD_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return json.dumps(d, sort_keys=True)

    def sat_range(self, bits: int) -> tuple[int, int]:
        """[lo, hi] of sat_W for a signed width (SPEC.md 14.1): two's complement, or symmetric (lo = -hi)."""
        lo, hi = int_range(bits)
        return (-hi, hi) if self.saturation == "symmetric" else (lo, hi)


# Named formats (SPEC.md 14.9): the suite's default, and the conventions of Intel's bit-accurate model of the
# complex resonate-and-fire neuron (lava-nc's PyRFModelFixed): decays of F = 12 fractional bits (its decay_bits,
# unsigned 12-bit magnitudes), each product shifted alone and rounded toward zero (sign times the shifted
# magnitude), the 24-bit state clipped to +-(2^23 - 1).
FORMAT_PROFILES = {
    "s4dconf-default": FxpFormat(),
    "loihi2-rf": FxpFormat(state_bits=24, frac_bits=12, rounding="toward_zero", rescale="per_product",
                           saturation="symmetric"),
}
DEFAULT_PROFILE = "s4dconf-default"
# the conventions of the default profile that lava-fxp, loihi2 and QAFT's forward pass implement (SPEC.md 14.9)
DEFAULT_CONVENTIONS = {"rounding": ("floor", "half_up"), "rescale": ("per_sum",), "saturation": ("asymmetric",)}


def require_format_choices(fmt: FxpFormat, choices: dict[str, tuple], who: str, instead: str) -> None:
    """Refuse a format whose rounding/rescale/saturation (SPEC.md 14.1) an implementation does not do: a clear
    error naming `who` and what it does, never a run with other arithmetic than the model file says."""
    for name, allowed in choices.items():
        if getattr(fmt, name) not in allowed:
            raise S4DInputError(f"{who}: {name} {getattr(fmt, name)!r} is not implemented here; {who} does {name} "
                                f"{' or '.join(map(repr, allowed))} (SPEC.md 14.9); {instead}")


def format_from_profile(name: str = DEFAULT_PROFILE, **overrides) -> FxpFormat:
    """The format of a named profile, with the fields in `overrides` replaced (None values are ignored)."""
    if name not in FORMAT_PROFILES:
        raise S4DInputError(f"unknown fixed-point format profile {name!r}; known: {', '.join(FORMAT_PROFILES)}")
    return dataclasses.replace(FORMAT_PROFILES[name], **{k: v for k, v in overrides.items() if v is not None})


def abs_squared(ar: np.ndarray, ai: np.ndarray) -> np.ndarray:
    """ar^2 + ai^2 of integer arrays, exact in uint64 for |ar|, |ai| <= 2^31 (coef_bits <= 32)."""
    r, i = np.abs(ar).astype(np.uint64), np.abs(ai).astype(np.uint64)
    return r * r + i * i


def int_range(bits: int) -> tuple[int, int]:
    """Signed two's-complement range of a width."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def weight_range(bits: int) -> tuple[int, int]:
    """Symmetric weight range: -(2^(b-1) - 1) .. 2^(b-1) - 1 (so negation never overflows)."""
    return -((1 << (bits - 1)) - 1), (1 << (bits - 1)) - 1


@dataclasses.dataclass
class FxpModel:
    """Integer parameters and exponents of one model (SPEC.md 14.2)."""

    config: ModelConfig
    fmt: FxpFormat
    inp_exp: int
    act_exp: tuple[int, ...]  # n_layers + 1 entries
    out_exp: int
    arrays: dict[str, np.ndarray]  # integer arrays (int64), names as in layer_int_names()
    w_exp: dict[str, int]  # "encoder", "layer<i>", "decoder"
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        validate_fxp(self)

    # the shift of each dense connection: in-scale + weight scale - out-scale (SPEC.md 14.3)
    @property
    def shift_encoder(self) -> int:
        return self.w_exp["encoder"] + self.inp_exp - self.act_exp[0]

    def shift_mixer(self, i: int) -> int:
        return self.w_exp[f"layer{i}"] + self.act_exp[i] - self.act_exp[i + 1]

    @property
    def shift_decoder(self) -> int:
        return self.w_exp["decoder"] + self.act_exp[-1] - self.out_exp


def int_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Integer arrays of a fixed-point model file and their shapes."""
    H, P = cfg.H, cfg.P
    shapes = {"encoder.W": (H, cfg.d_input)}
    for i in range(cfg.n_layers):
        for k in ("Abar_re", "Abar_im", "Bbar_re", "Bbar_im", "C_re", "C_im"):
            shapes[f"layer{i}.{k}"] = (H, P)
        if cfg.use_D:
            shapes[f"layer{i}.D"] = (H,)
        shapes[f"layer{i}.W"] = (H, H)
    shapes["decoder.W"] = (cfg.n_classes, H)
    return shapes


def _exp_ok(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and -64 <= int(v) <= 64


def validate_fxp(m: FxpModel) -> None:
    """Types, ranges, exponents and the no-overflow bounds of SPEC.md 14.5; raises S4DInputError."""
    cfg, fmt = m.config, m.fmt
    if cfg.readout != "last":
        raise S4DInputError(
            f"fixed-point models support readout 'last' only (the paper's streaming readout), config has "
            f"{cfg.readout!r}")
    if len(m.act_exp) != cfg.n_layers + 1:
        raise S4DInputError(f"act_exp must have n_layers + 1 = {cfg.n_layers + 1} entries, got {len(m.act_exp)}")
    for name, v in [("inp_exp", m.inp_exp), ("out_exp", m.out_exp)] + [
            (f"act_exp[{i}]", v) for i, v in enumerate(m.act_exp)] + [(f"w_exp[{k}]", v) for k, v in m.w_exp.items()]:
        if not _exp_ok(v):
            raise S4DInputError(f"exponent {name} = {v!r} is not an integer in [-64, 64]")
    want_w = {"encoder", "decoder"} | {f"layer{i}" for i in range(cfg.n_layers)}
    if set(m.w_exp) != want_w:
        raise S4DInputError(f"w_exp must have keys {sorted(want_w)}, got {sorted(m.w_exp)}")
    shapes = int_shapes(cfg)
    missing = [k for k in shapes if k not in m.arrays]
    extra = sorted(set(m.arrays) - set(shapes))
    if missing or extra:
        raise S4DInputError(f"fixed-point arrays: missing {missing}, unexpected {extra}")
    wlo, whi = weight_range(fmt.weight_bits)
    clo, chi = int_range(fmt.coef_bits)
    for name, shape in shapes.items():
        a = m.arrays[name]
        if a.dtype.kind not in "iu":
            raise S4DInputError(f"fixed-point array {name} must be an integer array, got dtype {a.dtype}")
        if a.shape != shape:
            raise S4DInputError(f"fixed-point array {name} must have shape {shape}, got {a.shape}")
        lo, hi = (wlo, whi) if name.endswith(".W") else (clo, chi)
        what = f"weight_bits={fmt.weight_bits}" if name.endswith(".W") else f"coef_bits={fmt.coef_bits}"
        if a.size and (a.min() < lo or a.max() > hi):
            raise S4DInputError(f"fixed-point array {name} has values in [{a.min()}, {a.max()}], outside the "
                                f"{what} range [{lo}, {hi}]")
        m.arrays[name] = a.astype(np.int64)
    for i in range(cfg.n_layers):
        ar, ai = m.arrays[f"layer{i}.Abar_re"], m.arrays[f"layer{i}.Abar_im"]
        mag2 = abs_squared(ar, ai)  # in uint64: with coef_bits = 32 an int64 square sum overflows
        if np.any(mag2 >= (1 << (2 * fmt.frac_bits))):
            idx = tuple(int(j) for j in np.argwhere(mag2 >= (1 << (2 * fmt.frac_bits)))[0])
            raise S4DInputError(f"layer{i} Abar{list(idx)} = ({ar[idx]} + {ai[idx]}i) / 2^{fmt.frac_bits} has "
                                "|Abar| >= 1: the quantised system would not decay")
    shifts = {"encoder": m.shift_encoder, "decoder": m.shift_decoder,
              **{f"layer{i} mixer": m.shift_mixer(i) for i in range(cfg.n_layers)}}
    for name, sh in shifts.items():
        if not SHIFT_MIN <= sh <= SHIFT_MAX:
            raise S4DInputError(
                f"the {name} shift (w_exp + input act_exp - output act_exp) is {sh}, outside [{SHIFT_MIN}, "
                f"{SHIFT_MAX}] (SPEC.md 14.2): the exponents do not describe a usable dense connection")
    for name, bound in overflow_bounds(m).items():
        if bound >= EXACT_LIMIT:
            raise S4DInputError(
                f"fixed-point format too wide for exact arithmetic: the bound of {name} is 2^{math.log2(bound):.1f} "
                f">= 2^53 (SPEC.md 14.5); lower msg_bits/state_bits/coef_bits/weight_bits or the shift")


def overflow_bounds(m: FxpModel) -> dict[str, int]:
    """Largest magnitude of every intermediate of SPEC.md 14.3, from the widths and sizes (SPEC.md 14.5)."""
    cfg, fmt = m.config, m.fmt
    M = 1 << (fmt.msg_bits - 1)
    S = 1 << (fmt.state_bits - 1)
    Wm = (1 << (fmt.weight_bits - 1)) - 1
    Cm = 1 << (fmt.coef_bits - 1)
    half = 1 << fmt.frac_bits  # covers the rounding offset 2^(s-1) of any shift by s <= F

    def dense(fan_in, shift):
        acc = fan_in * Wm * M
        # a right shift by s adds its rounding offset 2^(s-1) first; a left shift multiplies
        return acc + (1 << (shift - 1)) if shift > 0 else acc << -shift

    bounds = {
        "input scaling": M,
        "encoder accumulator": dense(cfg.d_input, m.shift_encoder),
        "decoder accumulator": dense(cfg.H, m.shift_decoder),
    }
    for i in range(cfg.n_layers):
        bounds[f"layer{i} state accumulator"] = 2 * Cm * S + Cm * M + half
        bounds[f"layer{i} output product"] = 2 * Cm * S + half
        bounds[f"layer{i} fan-in sum"] = cfg.P * M + (Cm * M if cfg.use_D else 0)
        bounds[f"layer{i} mixing accumulator"] = dense(cfg.H, m.shift_mixer(i))
    return bounds


# ---------------------------------------------------------------- files

def save_fxp(m: FxpModel, path: str | Path) -> None:
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in m.arrays.items()}
    arrays["__schema__"] = np.array(FXP_SCHEMA)
    arrays["__config__"] = np.array(m.config.to_json())
    arrays["__format__"] = np.array(m.fmt.to_json())
    arrays["__exponents__"] = np.array(json.dumps(
        {"inp_exp": m.inp_exp, "act_exp": list(m.act_exp), "out_exp": m.out_exp, "w_exp": m.w_exp}, sort_keys=True))
    arrays["__provenance__"] = np.array(json.dumps(m.provenance, sort_keys=True))
    write_npz(path, arrays)


def load_fxp(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> FxpModel:
    """Load and validate a fixed-point model file; every failure names the file and the problem. `max_bytes` caps
    the arrays' total size (see npzio.read_npz)."""
    return fxp_from_arrays(read_npz(path, "fixed-point model file", max_bytes), path)


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """A model file read once: the model (S4DModel or FxpModel), the file's sha256 and its record."""

    path: Path
    model: object
    sha256: str
    record: dict
    schema: str


def read_model_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> ModelFile:
    """Either kind of model file (float64 or fixed point, by its schema), its bytes read once. `max_bytes` caps
    the arrays' total size (see npzio.read_npz)."""
    path = Path(path)
    data = read_file_bytes(path, "model file", max_bytes)
    arrays = read_npz_bytes(data, path, "model file", max_bytes)
    schema = read_str(arrays, "__schema__", path, "model file")
    if schema == FXP_SCHEMA:
        model = fxp_from_arrays(arrays, path)
    elif schema == MODEL_SCHEMA:
        model = model_from_arrays(arrays, path)
    else:
        raise S4DInputError(f"model file {path} has unknown schema {schema!r}; known: {MODEL_SCHEMA}, {FXP_SCHEMA}")
    return ModelFile(path, model, hashlib.sha256(data).hexdigest(), record_from_arrays(arrays, path), schema)


def fxp_from_arrays(arrays: dict, path) -> FxpModel:
    """The validated FxpModel of a fixed-point model file's arrays; `path` names the file in errors."""
    check_schema(arrays, path, "fixed-point model file", FXP_SCHEMA,
                 {"float64": "a float64 model file: quantise it first with `s4dconf quantize`"})
    check_entries(arrays, FXP_ENTRIES, path, "fixed-point model file")
    try:
        cfg = ModelConfig.from_json(read_str(arrays, "__config__", path, "fixed-point model file"))
        fmt_d = json.loads(read_str(arrays, "__format__", path, "fixed-point model file"))
        ex = json.loads(read_str(arrays, "__exponents__", path, "fixed-point model file"))
        prov = json.loads(read_str(arrays, "__provenance__", path, "fixed-point model file"))
        return FxpModel(
            config=cfg, fmt=FxpFormat(**fmt_d), inp_exp=ex["inp_exp"], act_exp=tuple(ex["act_exp"]),
            out_exp=ex["out_exp"], w_exp=dict(ex["w_exp"]), provenance=prov,
            arrays={k: v for k, v in arrays.items() if not k.startswith("__")})
    # S4DInputError and json.JSONDecodeError are ValueErrors; RecursionError: JSON nested too deep
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise S4DInputError(f"fixed-point model file {path}: {type(e).__name__}: {e}") from None


def fxp_digest(m: FxpModel) -> str:
    """sha256 over format, config, exponents and integer arrays."""
    h = hashlib.sha256((m.config.to_json() + m.fmt.to_json()).encode())
    h.update(json.dumps([m.inp_exp, list(m.act_exp), m.out_exp, m.w_exp], sort_keys=True).encode())
    for name in sorted(m.arrays):
        a = np.ascontiguousarray(m.arrays[name], dtype="<i8")  # little-endian on every host (SPEC.md 14.8)
        h.update(f"{name}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
