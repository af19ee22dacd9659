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


# ---------------------------------------------------------------- fixed-point processes of lava-fxp (SPEC.md 16.2)
#
# Every counting process takes count_steps = (first, stop): it counts the values it clamps only at the 0-based
# time steps t with first <= t < stop, the steps at which it processes the inputs of the run (a process at
# pipeline depth d processes input step k at time step k + d; before that it sees the connections' initial zeros,
# which never clamp). The default counts every step.

ALL_STEPS = (0, 2**62)


def _as_int_csr(weights, what: str):
    """weights (dense or scipy.sparse, integer-valued) as a csr_matrix of int64."""
    from scipy.sparse import csr_matrix, issparse

    m = weights.tocsr() if issparse(weights) else csr_matrix(np.asarray(weights))
    if m.dtype.kind not in "iu":
        raise TypeError(f"{what}: weights must be integers, got dtype {m.dtype}")
    return m.astype(np.int64)


def _check_format(rounding: str, **widths) -> None:
    if rounding not in ("floor", "half_up"):
        raise ValueError(f"rounding must be 'floor' or 'half_up', got {rounding!r}")
    for name, bits in widths.items():
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 62:
            raise ValueError(f"{name} must be an integer number of bits in [1, 62], got {bits!r}")


def _int_coefs(shape: tuple, **arrays) -> dict:
    out = {}
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind not in "iu" or a.shape != shape:
            raise TypeError(f"{name} must be an integer array of shape {shape}, got {a.dtype} {a.shape}")
        out[name] = a.astype(np.int64)
    return out


class FxpConnection(AbstractProcess):
    """Integer synapses a_out = W s_in (W int64, csr), sent ONE STEP LATE like Lava's Dense and Sparse: at time step t
    the process sends the accumulation of step t - 1 (zeros at the first step), then accumulates W s_in of step t.
    Used for the encoder, fan-out kron(I, ones(P, 1)), fan-in kron(I, ones(1, P)), mixing and decoder."""

    def __init__(self, *, weights, name: str | None = None) -> None:
        w = _as_int_csr(weights, "FxpConnection")
        super().__init__(shape=w.shape, name=name)
        n_out, n_in = w.shape
        self.s_in = InPort(shape=(n_in,))
        self.a_out = OutPort(shape=(n_out,))
        self.weights = Var(shape=w.shape, init=w)
        self.a_buff = Var(shape=(n_out,), init=0)


class FxpNeuron(AbstractProcess):
    """Zero-delay rescaling neuron (SPEC.md 14.3 steps 2, 3d, 3e, 4): s_out = sat_M(act(R(a_in, shift))) with
    act = max(., 0) when relu, else the identity; the clamped values are counted in `saturations`."""

    def __init__(self, *, shape: tuple, shift: int, relu: bool, msg_bits: int, rounding: str,
                 count_steps: tuple = ALL_STEPS, name: str | None = None) -> None:
        _check_format(rounding, msg_bits=msg_bits)
        super().__init__(shape=shape, shift=int(shift), relu=bool(relu), msg_bits=int(msg_bits), rounding=rounding,
                         count_steps=tuple(int(v) for v in count_steps), name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.saturations = Var(shape=(1,), init=0)


class FxpS4dNeurons(AbstractProcess):
    """Zero-delay S4D mode neurons (SPEC.md 14.3 steps 3a, 3b), one per (channel, mode), integer states x_re, x_im:
    update first, then output o = sat_M(R(c_re x_re - c_im x_im, F - 1)). Clamps are counted in
    `state_saturations` (both state parts) and `message_saturations`."""

    def __init__(self, *, shape: tuple, a_re, a_im, b_re, b_im, c_re, c_im, frac_bits: int, state_bits: int,
                 msg_bits: int, rounding: str, count_steps: tuple = ALL_STEPS, name: str | None = None) -> None:
        _check_format(rounding, frac_bits=frac_bits, state_bits=state_bits, msg_bits=msg_bits)
        super().__init__(shape=shape, frac_bits=int(frac_bits), state_bits=int(state_bits), msg_bits=int(msg_bits),
                         rounding=rounding, count_steps=tuple(int(v) for v in count_steps), name=name)
        coefs = _int_coefs(shape, a_re=a_re, a_im=a_im, b_re=b_re, b_im=b_im, c_re=c_re, c_im=c_im)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        for k, v in coefs.items():
            setattr(self, k, Var(shape=shape, init=v))
        self.x_re = Var(shape=shape, init=0)
        self.x_im = Var(shape=shape, init=0)
        self.state_saturations = Var(shape=(1,), init=0)
        self.message_saturations = Var(shape=(1,), init=0)


class IntSink(AbstractProcess):
    """Records a_in (int64) of every time step in `data` (shape + (buffer,)), like Lava's RingBuffer sink, whose
    fixed_pt model holds int32: a fan-in sum of P messages of 24 bits needs up to 24 + log2(P) bits."""

    def __init__(self, *, shape: tuple, buffer: int, name: str | None = None) -> None:
        super().__init__(shape=shape, buffer=int(buffer), name=name)
        self.a_in = InPort(shape=shape)
        self.data = Var(shape=shape + (int(buffer),), init=0)
