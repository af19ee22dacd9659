"""Models given as discretised coefficients (SPEC.md section 7.1): Abar, Bbar, C per layer instead of
(a_re, a_im, B, log_dt), as trained models of other frameworks and lava-nc's `S4d` process specify them.

Per layer i, every array float64 (re/im pairs, as the float64 model file stores B and C):

    layer<i>.Abar_re, .Abar_im   (H, P)   Abar = Abar_re + i Abar_im, 0 < |Abar| < 1 (a mode that decays)
    layer<i>.Bbar_re, .Bbar_im   (H, P)   Bbar = Bbar_re + i Bbar_im
    layer<i>.C_re, .C_im         (H, P)   C = C_re + i C_im
    layer<i>.D (H,) with use_D,  layer<i>.W (H, H)

plus encoder.W (H, d_in) and decoder.W (n_classes, H). The recurrence, convolution and streaming forms of section 3
use these Abar, Bbar, C as they are: no discretisation runs, so the config's `init`, `discretization`, `dt_min` and
`dt_max` are carried (one config format) but read by nothing.
"""
from __future__ import annotations

import numpy as np

from .config import ModelConfig
from .model import DiscreteLayer, S4DModel
from .validate import S4DInputError, check_float64_arrays

DISCRETE_SCHEMA = "s4dconf-model-discrete-float64/1"
COEFFICIENT_KEYS = ("Abar_re", "Abar_im", "Bbar_re", "Bbar_im", "C_re", "C_im")


def discrete_layer_param_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Shapes of one layer's arrays in a discretised-coefficient model, keyed by their model-file suffix."""
    shapes = {key: (cfg.H, cfg.P) for key in COEFFICIENT_KEYS}
    if cfg.use_D:
        shapes["D"] = (cfg.H,)
    shapes["W"] = (cfg.H, cfg.H)
    return shapes


def discrete_param_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Every parameter array of a discretised-coefficient model: name -> shape (SPEC.md 7.1)."""
    shapes = {"encoder.W": (cfg.H, cfg.d_input)}
    for i in range(cfg.n_layers):
        shapes.update({f"layer{i}.{k}": s for k, s in discrete_layer_param_shapes(cfg).items()})
    shapes["decoder.W"] = (cfg.n_classes, cfg.H)
    return shapes


def check_decaying(name: str, Abar: np.ndarray) -> None:
    """Require 0 < |Abar| < 1 for every mode, |Abar| = hypot(Re, Im) in float64: |Abar| >= 1 never decays (the
    state grows or keeps its size forever), Abar = 0 has no logarithm for the convolution form (SPEC.md 3.2)."""
    mag = np.abs(Abar)
    bad = ~((mag > 0.0) & (mag < 1.0))
    if np.any(bad):
        h, n = (int(j) for j in np.argwhere(bad)[0])
        re, im = float(Abar[h, n].real), float(Abar[h, n].imag)
        raise S4DInputError(
            f"parameter {name}[{h}, {n}] = {re!r} + {im!r}i has |Abar| = {float(mag[h, n])!r} "
            f"({int(bad.sum())} mode(s) out of range): a discretised model needs 0 < |Abar| < 1 strictly for every "
            "mode (a stable mode that decays; SPEC.md 7.1); rescale or drop the mode")


def validate_discrete_params(cfg: ModelConfig, params: dict) -> dict[str, np.ndarray]:
    """Names, dtypes, shapes, finiteness and 0 < |Abar| < 1 of a discretised model's parameters."""
    out = check_float64_arrays(params, discrete_param_shapes(cfg), f"discretised model (config {cfg.name!r})")
    for i in range(cfg.n_layers):
        check_decaying(f"layer{i}.Abar", out[f"layer{i}.Abar_re"] + 1j * out[f"layer{i}.Abar_im"])
    return out


class DiscreteS4DModel(S4DModel):
    """An S4DModel whose layers are given as Abar, Bbar, C (SPEC.md 7.1); evaluation is S4DModel's, unchanged."""

    schema = DISCRETE_SCHEMA

    def __init__(self, config: ModelConfig, params: dict[str, np.ndarray]):  # noqa: super().__init__ discretises
        self.config = config
        self.params = validate_discrete_params(config, params)
        self.layers = [self._given(i) for i in range(config.n_layers)]

    def _given(self, i: int) -> DiscreteLayer:
        p = {k: self.params[f"layer{i}.{k}"] for k in discrete_layer_param_shapes(self.config)}
        pair = lambda k: p[f"{k}_re"] + 1j * p[f"{k}_im"]  # noqa: E731 - exact: re/im of a complex128
        return DiscreteLayer(Abar=pair("Abar"), Bbar=pair("Bbar"), C=pair("C"), D=p.get("D"), W=p["W"])

    @classmethod
    def create(cls, config: ModelConfig, seed: int = 0) -> "DiscreteS4DModel":
        """The discretisation of `S4DModel.create(config, seed)` (same draws, SPEC.md 4.2)."""
        return cls.from_model(S4DModel.create(config, seed))

    @classmethod
    def from_model(cls, model: S4DModel) -> "DiscreteS4DModel":
        """The same model with its layers' Abar, Bbar, C written out: outputs bit-identical to `model`'s."""
        params = {"encoder.W": model.params["encoder.W"], "decoder.W": model.params["decoder.W"]}
        for i, layer in enumerate(model.layers):
            for key, z in (("Abar", layer.Abar), ("Bbar", layer.Bbar), ("C", layer.C)):
                z = np.asarray(z, dtype=np.complex128)
                params[f"layer{i}.{key}_re"], params[f"layer{i}.{key}_im"] = z.real.copy(), z.imag.copy()
            if layer.D is not None:
                params[f"layer{i}.D"] = layer.D
            params[f"layer{i}.W"] = layer.W
        return cls(model.config, params)

    @classmethod
    def from_coefficients(cls, config: ModelConfig, Abar, Bbar, C, *, encoder, mixers, decoder,
                          D=None) -> "DiscreteS4DModel":
        """A model from complex coefficients: Abar, Bbar, C one (H, P) array per layer (any complex or real dtype;
        complex64 converts exactly), D one (H,) per layer with use_D, mixers one (H, H) per layer."""
        n = config.n_layers
        if config.use_D and D is None:
            raise S4DInputError(f"config {config.name!r} has use_D: give D, one (H,) array per layer")
        per_layer = {"Abar": Abar, "Bbar": Bbar, "C": C, "mixers": mixers} | ({"D": D} if config.use_D else {})
        for key, arrays in per_layer.items():
            if len(arrays) != n:
                raise S4DInputError(f"{key}: {len(arrays)} array(s) given, config {config.name!r} has {n} layer(s)")
        params = {"encoder.W": np.asarray(encoder, dtype=np.float64),
                  "decoder.W": np.asarray(decoder, dtype=np.float64)}
        for i in range(n):
            for key in ("Abar", "Bbar", "C"):
                z = np.asarray(per_layer[key][i])
                if z.dtype.kind not in "iufc":
                    raise S4DInputError(f"layer {i} {key} must be a numeric array, got dtype {z.dtype}")
                z = z.astype(np.complex128)
                params[f"layer{i}.{key}_re"], params[f"layer{i}.{key}_im"] = z.real.copy(), z.imag.copy()
            if config.use_D:
                params[f"layer{i}.D"] = np.asarray(D[i], dtype=np.float64)
            params[f"layer{i}.W"] = np.asarray(mixers[i], dtype=np.float64)
        return cls(config, params)
