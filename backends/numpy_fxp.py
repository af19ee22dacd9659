"""Backend `numpy-fxp`: a thin adapter over the integer engine of SPEC.md section 14 (`fixedpoint/engine.py`).

Whole batches run through `run_fxp`; a streaming session steps one `FxpEngine`. Outputs are dequantised with
the model's exponents; saturation counts and raw integer states are passed on unchanged.
"""
from __future__ import annotations

import numpy as np

import s4dconf
from s4dconf.fixedpoint.engine import FxpEngine, run_fxp
from s4dconf.fixedpoint.formats import FxpModel
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.model import S4DModel
from s4dconf.reference.validate import S4DInputError

from .base import (Backend, BackendInfo, BackendRun, Session, check_session_batch, check_session_chunk, check_state,
                   check_step_input)


class FxpSession(Session):
    """Streaming session: step(u_t) float (N, d_in) -> dequantised logits (N, classes)."""

    def __init__(self, m: FxpModel, batch: int, vth=None):
        self.m = m
        self.engine = FxpEngine(m, check_session_batch(batch), vth)
        self._out_scale = 2.0 ** -m.out_exp

    def step(self, u_t):
        e = self.engine
        return self._step(check_step_input(u_t, e.N, self.m.config.d_input, e.t))

    def _step(self, u_t: np.ndarray) -> np.ndarray:
        e = self.engine
        logits = e.step_logits(e.quantize_input(u_t))
        logits *= self._out_scale
        return logits

    def run(self, chunk):
        """T steps: chunk (N, T, d_input) -> dequantised logits (N, T, n_classes); the chunk is checked once."""
        chunk = check_session_chunk(chunk, self.engine.N, self.m.config.d_input)
        return np.stack([self._step(chunk[:, k]) for k in range(chunk.shape[1])], axis=1)

    def reset(self):
        self.engine.reset()

    def get_state(self):
        """States dequantised to complex (N, H, P) per layer, plus the raw integers and counters."""
        e = self.engine
        return {"t": e.t, "x": [x * 2.0 ** -self.m.act_exp[i] for i, x in enumerate(e.x)],
                "x_int": [x.copy() for x in e.x], "saturations": dict(e.saturations),
                "sigma_delta": e.sigma_delta_state()}

    def set_state(self, state):
        """Restore the integer states, the step count, the saturation counters and the sigma-delta memories."""
        check_state(state, ("t", "x_int", "saturations", "sigma_delta"))
        if not isinstance(state["saturations"], dict) or not isinstance(state["sigma_delta"], (list, tuple)):
            raise S4DInputError("state 'saturations' must be a dict and 'sigma_delta' a list, as get_state() gives")
        self.engine.set_state(state["t"], state["x_int"], state["saturations"], state["sigma_delta"])


class NumpyFxpBackend(Backend):
    name = "numpy-fxp"

    def __init__(self, vth: float | None = None):
        self.vth = vth

    def info(self) -> BackendInfo:
        return BackendInfo(name=self.name, numeric_class="fixed-point",
                           version=f"s4dconf {s4dconf.__version__} (numpy {np.__version__})", device="cpu",
                           paths=("integer",), restores_state=True)

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
