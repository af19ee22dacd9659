"""ProcessModels of the Processes in process.py.

The fixed_pt models do the integer arithmetic of SPEC.md 14.3 in int64 numpy, one operation per line, with the
primitives of 14.1 (R: arithmetic right shift, after adding 2^(s-1) for rounding "half_up", or an exact left shift
for s <= 0; sat_W: clamp to the signed width W, counting clamped elements). Every intermediate is below 2^53 in
magnitude (14.5, checked when the FxpModel is built), so int64 never wraps, and the connections' sums, done as
float64 matrix products for speed, are exact. Every counter counts per stream (the batch layout of lava_graph).

Precision of the messages (declared in each LavaPyType): neuron outputs (graded spikes: h, o, r, logits) are
signed integers of msg_bits <= 24 bits, carried in int64 containers; connection outputs (the dense accumulators of
14.3 steps 2, 3c, 3e, 4) need up to 53 bits and are int64. int32 would not do for the accumulators: the mixing
accumulator of the paper config reaches 128 * 127 * 2^23 ~ 2^37.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

# absolute import: Lava loads this file as a top-level module when it searches for ProcessModels
from s4dconf.backends.lava_procs.process import Activation, FxpConnection, FxpNeuron, FxpS4dNeurons


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


# ---------------------------------------------------------------- integer primitives (SPEC.md 14.1)

def rescale(a: np.ndarray, s: int, half_up: bool) -> np.ndarray:
    """R(a, s): floor(a / 2^s) by an arithmetic right shift (after + 2^(s-1) for half_up) for s >= 1;
    a * 2^-s by an exact left shift for s <= 0."""
    if s <= 0:
        return np.left_shift(a, -s)
    if half_up:
        a = a + (np.int64(1) << np.int64(s - 1))
    return np.right_shift(a, s)


def clamp(a: np.ndarray, bits: int, streams: int) -> tuple[np.ndarray, np.ndarray | None]:
    """sat_W(a) and the number of clamped elements per stream (streams,) int64, a (streams k,) laid out stream by
    stream; None when nothing clamped."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = (a < lo) | (a > hi)
    if not out.any():
        return a, None
    return np.clip(a, lo, hi), np.count_nonzero(out.reshape(streams, -1), axis=1).astype(np.int64)


def counting(model: PyLoihiProcessModel) -> bool:
    """Whether the current time step lies in the model's count window: first <= t < stop, t 0-based."""
    first, stop = model.proc_params["count_steps"]
    return first <= model.time_step - 1 < stop


# ---------------------------------------------------------------- fixed_pt models

@implements(proc=FxpConnection, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFxpConnectionFixed(PyLoihiProcessModel):
    """a_out(t) = kron(I_blocks, W) s_in(t - 1): sends the previous step's accumulation (one step of delay, as Lava's
    Dense), then accumulates this step's: each slice of s_in times the one block W, as one (blocks, c) x (c, r)
    product. Computed in float64 and exact: the operands are integers (|s| < 2^23, W int) and every partial sum is
    at most sum |w| 2^23 < 2^53 (checked by FxpConnection, SPEC.md 14.5), so no rounding happens in any order
    the BLAS sums; an int64 or csr product was ~18x slower (256 streams of loihi-profile's mixer, SPEC.md 16.5)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)  # graded spikes <= 24 bits
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=53)  # dense accumulators < 2^53
    a_buff: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=53)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=16)  # one block (r, c)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._w_t = None  # W.T in float64, made at the first step (the Vars are set after __init__)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buff)
        if self._w_t is None:
            self._w_t = np.ascontiguousarray(self.weights.T, dtype=np.float64)
        s = self.s_in.recv().astype(np.float64).reshape(self.proc_params["blocks"], -1)
        self.a_buff = (s @ self._w_t).astype(np.int64).reshape(-1)


@implements(proc=FxpNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFxpNeuronFixed(PyLoihiProcessModel):
    """s_out = sat_M(act(R(a_in, shift))), zero delay; clamps counted per stream in `saturations` inside the count
    window."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=53)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)  # msg_bits <= 24
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=53)

    def run_spk(self) -> None:
        p = self.proc_params
        a = self.a_in.recv().astype(np.int64)
        a = rescale(a, p["shift"], p["rounding"] == "half_up")
        if p["relu"]:
            a = np.maximum(a, 0)
        out, n = clamp(a, p["msg_bits"], p["streams"])
        if n is not None and counting(self):
            self.saturations += n
        self.s_out.send(out)


@implements(proc=FxpS4dNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFxpS4dNeuronsFixed(PyLoihiProcessModel):
    """One S4D mode per neuron, zero delay, update first and then output:

        p_re = a_re x_re - a_im x_im + b_re v,   p_im = a_re x_im + a_im x_re + b_im v     (< 2^53, SPEC.md 14.5)
        x_re = sat_S(R(p_re, F)),  x_im = sat_S(R(p_im, F))
        o    = sat_M(R(c_re x_re - c_im x_im, F - 1))                                        (2 Re(c x))
    """

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=53)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)  # msg_bits <= 24
    a_re: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)  # coef_bits <= 32
    a_im: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    b_re: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    b_im: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    c_re: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    c_im: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    x_re: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)  # state_bits <= 32
    x_im: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    state_saturations: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=53)
    message_saturations: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=53)

    def run_spk(self) -> None:
        p = self.proc_params
        F, half_up = p["frac_bits"], p["rounding"] == "half_up"
        v = self.a_in.recv().astype(np.int64)
        xr, xi = self.x_re, self.x_im
        p_re = self.a_re * xr - self.a_im * xi + self.b_re * v
        p_im = self.a_re * xi + self.a_im * xr + self.b_im * v
        N = p["streams"]
        xr, n_re = clamp(rescale(p_re, F, half_up), p["state_bits"], N)
        xi, n_im = clamp(rescale(p_im, F, half_up), p["state_bits"], N)
        o, n_o = clamp(rescale(self.c_re * xr - self.c_im * xi, F - 1, half_up), p["msg_bits"], N)
        if counting(self):
            for counter, n in ((self.state_saturations, n_re), (self.state_saturations, n_im),
                               (self.message_saturations, n_o)):
                if n is not None:
                    counter += n
        self.x_re[:] = xr
        self.x_im[:] = xi
        self.s_out.send(o)
