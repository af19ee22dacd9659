"""Lava Processes used by the lava-float and lava-fxp backends (models in models.py)."""
from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class Activation(AbstractProcess):
    """A neuron per element that sends act(a_in) every step with no delay: act = ReLU or identity.
    The fixed_pt model also saturates to msg_bits and counts clamped values (SPEC.md 14.3 d, e)."""

    def __init__(self, *, shape: tuple, relu: bool = True, msg_bits: int = 24) -> None:
        super().__init__(shape=shape, relu=relu, msg_bits=msg_bits)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.saturations = Var(shape=(1,), init=0)
