"""Backend `reference`: the float64 numpy/scipy model itself, through both evaluation paths."""
from __future__ import annotations

import numpy as np
import scipy

import s4dconf

from .base import Backend, BackendInfo, BackendRun, Session, check_session_batch, check_state, check_step_input


class _ReferenceSession(Session):
    def __init__(self, model, batch):
        self._s = model.session(check_session_batch(batch))
        self._d_input = model.config.d_input

    def step(self, u_t):
        s = self._s
        return s._step(check_step_input(u_t, s.batch, self._d_input, s.t))  # checked once, by the shared rule

    def run(self, chunk):
        return self._s.run(chunk)

    def reset(self):
        self._s.reset()

    def get_state(self):
        return self._s.get_state()

    def set_state(self, state):
        self._s.set_state(check_state(state, ("t", "x", "readout_sum")))


class ReferenceBackend(Backend):
    name = "reference"

    def info(self) -> BackendInfo:
        return BackendInfo(
            name=self.name,
            numeric_class="float64",
            version=f"s4dconf {s4dconf.__version__} (numpy {np.__version__}, scipy {scipy.__version__})",
            device="cpu",
            paths=("conv", "recurrent"),
            restores_state=True,
        )

    def prepare(self, model):
        return model

    def run(self, handle, u, path):
        out = handle.forward(u, mode=path)
        return BackendRun(step_logits=out.step_logits, layer_y=[layer.y for layer in out.layers])

    def open_session(self, handle, batch):
        return _ReferenceSession(handle, batch)
