"""ProcessModels of the Processes in process.py."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

# absolute import: Lava loads this file as a top-level module when it searches for ProcessModels
from s4dconf.backends.lava_procs.process import Activation


@implements(proc=Activation, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyActivationFloat(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    saturations: np.ndarray = LavaPyType(np.ndarray, int)

    def run_spk(self) -> None:
        a = self.a_in.recv()
        self.s_out.send(np.maximum(a, 0.0) if self.proc_params["relu"] else a)
