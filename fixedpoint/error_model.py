"""The expected error of the fixed-point model against float64, from F and the widths (SPEC.md section 14.6).

First-order model of the two dominant sources, for a model whose dt is log-uniform in [dt_min, dt_max]:

  Coefficients. Rounding Abar and Bbar to F fractional bits adds to each complex coefficient an error of RMS
  sigma = 2^-F / sqrt(6) (uniform rounding, 2^-F/sqrt(12) per real component). For one mode the relative output
  error is about
        e(dt) = sigma * min(L, 1 / (dt |Re A|))     the pole error, compounded over the steps it is remembered
              + sigma / |Bbar(dt)|                  the input-gain error
  (C is O(1) and its relative rounding error, ~sigma, is negligible next to these.)

  Weights. A weight matrix rounded to b bits with its peak at 2^(b-1) - 1 has, for uniformly spread weights, a
  relative error of (peak / (2^(b-1) - 1) / sqrt(12)) / (peak / sqrt(3)) = 1 / (2 (2^(b-1) - 1)) per matrix.

  Activations and states are rescaled with >= 18 fractional bits in the default PTQ: negligible.

The expected SNR is -10 log10( mean over dt and modes of e^2  +  n_matrices * e_w^2 ). The worst-channel SNR
uses the largest e^2 over dt and modes instead of the mean.
"""
from __future__ import annotations

import math

import numpy as np

from s4dconf.reference.init import init_modes

from .formats import FxpFormat


def _mode_errors(fmt: FxpFormat, L: int, P: int, init: str, dt_min: float, dt_max: float) -> np.ndarray:
    sigma = 2.0 ** -fmt.frac_bits / math.sqrt(6.0)
    A, B = init_modes(init, P)
    dts = np.exp(np.linspace(math.log(dt_min), math.log(dt_max), 401))[:, None]
    bbar = np.abs(np.expm1(dts * A) / A * B)
    return sigma * np.minimum(L, 1.0 / (dts * np.abs(A.real))) + sigma / bbar  # (dt, mode)


def weight_error(fmt: FxpFormat) -> float:
    return 1.0 / (2.0 * ((1 << (fmt.weight_bits - 1)) - 1))


def predicted_snr_db(fmt: FxpFormat, L: int, P: int, n_layers: int, init: str = "legs",
                     dt_min: float = 0.001, dt_max: float = 0.1) -> float:
    """Expected output SNR (dB) of a PTQ model against float64 for sequences of L steps."""
    e = _mode_errors(fmt, L, P, init, dt_min, dt_max)
    n_matrices = n_layers + 2
    return -10.0 * math.log10(float(np.mean(e**2)) + n_matrices * weight_error(fmt) ** 2)


def predicted_worst_channel_snr_db(fmt: FxpFormat, L: int, P: int, init: str = "legs",
                                   dt_min: float = 0.001, dt_max: float = 0.1) -> float:
    """SNR (dB) of the worst single mode: the bound for probes of a few channels, such as stored states."""
    return -10.0 * math.log10(float(np.max(_mode_errors(fmt, L, P, init, dt_min, dt_max) ** 2)))
