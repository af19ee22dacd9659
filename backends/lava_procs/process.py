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
# which never clamp). The default counts every step. It counts per stream: `streams` (N) equal slices of its
# neurons, stream n owning the n-th (the batch layout of backends/lava_graph.py), one counter each.

ALL_STEPS = (0, 2**62)
MESSAGE_BITS = 24  # the widest graded spike a connection receives (Loihi 2; s_in's declared precision)
EXACT_BITS = 53  # FxpConnection accumulates in float64: exact while every partial sum stays below 2^53


def _int_block(weights, what: str) -> np.ndarray:
    """weights (a 2-d integer array: one block) as int64."""
    w = np.asarray(weights)
    if w.ndim != 2 or w.dtype.kind not in "iu":
        raise TypeError(f"{what}: weights must be a 2-d integer array (one block), got {w.dtype} {w.shape}")
    return w.astype(np.int64)


def _positive_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{what} must be a positive integer, got {v!r}")
    return int(v)


def _check_streams(streams, shape: tuple, what: str) -> int:
    """streams: a positive integer dividing the population of `shape` into equal slices (one per stream)."""
    streams, size = _positive_int(streams, f"{what} streams"), int(np.prod(shape))
    if size % streams:
        raise ValueError(f"{what}: {streams} streams do not divide its {size} neurons into equal slices")
    return streams


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
    """Integer synapses a_out = kron(I_blocks, W) s_in: the one block W (r, c) applied to each of `blocks` slices of
    s_in (blocks c,), giving a_out (blocks r,); sent ONE STEP LATE like Lava's Dense and Sparse: at time step t the
    process sends the accumulation of step t - 1 (zeros at the first step), then accumulates this step's.
    Used for the encoder, fan-out (W = ones(P, 1)), fan-in (ones(1, P)), mixing and decoder, one block per stream
    (per channel for the fans). Refused: a W whose row sum of |w| times a 24-bit message could reach 2^53 (the
    model accumulates exactly in float64)."""

    def __init__(self, *, weights, blocks: int = 1, name: str | None = None) -> None:
        w = _int_block(weights, "FxpConnection")
        blocks = _positive_int(blocks, "FxpConnection blocks")
        worst = int(np.abs(w).sum(axis=1).max(initial=0)) << (MESSAGE_BITS - 1)
        if worst >= 1 << EXACT_BITS:
            raise ValueError(f"FxpConnection: a row of the weights sums to {worst >> (MESSAGE_BITS - 1)} in "
                             f"magnitude; times a {MESSAGE_BITS}-bit message that reaches 2^{EXACT_BITS}, past "
                             "exact accumulation (SPEC.md 14.5)")
        r, c = w.shape
        super().__init__(shape=(blocks * r, blocks * c), blocks=blocks, name=name)
        self.s_in = InPort(shape=(blocks * c,))
        self.a_out = OutPort(shape=(blocks * r,))
        self.weights = Var(shape=w.shape, init=w)
        self.a_buff = Var(shape=(blocks * r,), init=0)


class FxpNeuron(AbstractProcess):
    """Zero-delay rescaling neuron (SPEC.md 14.3 steps 2, 3d, 3e, 4): s_out = sat_M(act(R(a_in, shift))) with
    act = max(., 0) when relu, else the identity; the clamped values are counted per stream in `saturations`
    (streams,)."""

    def __init__(self, *, shape: tuple, shift: int, relu: bool, msg_bits: int, rounding: str,
                 count_steps: tuple = ALL_STEPS, streams: int = 1, name: str | None = None) -> None:
        _check_format(rounding, msg_bits=msg_bits)
        streams = _check_streams(streams, shape, "FxpNeuron")
        super().__init__(shape=shape, shift=int(shift), relu=bool(relu), msg_bits=int(msg_bits), rounding=rounding,
                         count_steps=tuple(int(v) for v in count_steps), streams=streams, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.saturations = Var(shape=(streams,), init=0)


class FxpS4dNeurons(AbstractProcess):
    """Zero-delay S4D mode neurons (SPEC.md 14.3 steps 3a, 3b), one per (channel, mode), integer states x_re, x_im:
    update first, then output o = sat_M(R(c_re x_re - c_im x_im, F - 1)). Clamps are counted per stream in
    `state_saturations` (both state parts) and `message_saturations`, each (streams,)."""

    def __init__(self, *, shape: tuple, a_re, a_im, b_re, b_im, c_re, c_im, frac_bits: int, state_bits: int,
                 msg_bits: int, rounding: str, count_steps: tuple = ALL_STEPS, streams: int = 1,
                 name: str | None = None) -> None:
        _check_format(rounding, frac_bits=frac_bits, state_bits=state_bits, msg_bits=msg_bits)
        streams = _check_streams(streams, shape, "FxpS4dNeurons")
        super().__init__(shape=shape, frac_bits=int(frac_bits), state_bits=int(state_bits), msg_bits=int(msg_bits),
                         rounding=rounding, count_steps=tuple(int(v) for v in count_steps), streams=streams,
                         name=name)
        coefs = _int_coefs(shape, a_re=a_re, a_im=a_im, b_re=b_re, b_im=b_im, c_re=c_re, c_im=c_im)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        for k, v in coefs.items():
            setattr(self, k, Var(shape=shape, init=v))
        self.x_re = Var(shape=shape, init=0)
        self.x_im = Var(shape=shape, init=0)
        self.state_saturations = Var(shape=(streams,), init=0)
        self.message_saturations = Var(shape=(streams,), init=0)
