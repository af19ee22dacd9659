"""Backend `lava-fxp`: the integer arithmetic of SPEC.md section 14 as a Lava process graph of this project's own
Processes with `fixed_pt` ProcessModels (backends/lava_procs/), run on the CPU simulator (Loihi2SimCfg, tag
fixed_pt). SPEC.md 16.2.

Graph for a batch of N sequences (laid side by side: every weight is kron(I_N, W)):

    RingBuffer(u_q) -> conn(W_enc) -> neuron(s_enc)                                   "encoder"
      -> [ conn(fan-out) -> S4D neurons -> conn(fan-in) [probe y_i]                   "layer<i>.state/.message"
           -> neuron(0, ReLU) -> conn(W_i) -> neuron(s_i, ReLU) ] x n_layers          "layer<i>.relu/.block"
      -> conn(W_dec) -> neuron(s_dec) -> RingBuffer sink                              "decoder"

conn = FxpConnection (sends the previous step's int64 accumulation: +1 step each, like Lava's Dense/Sparse);
neuron = FxpNeuron (sat_M(act(R(a, s))), zero delay); S4D neurons = FxpS4dNeurons (update, then output; zero
delay). So the delays are those of lava-float: layer i's y at 3 + 3i, logits at 3 n_layers + 2.

Inputs are quantised on the host (14.3 step 1, `fixed_point_literal.quantize_input`, counted as "input").
Saturation counts: a process at pipeline depth d processes input step k at time step k + d. The job runs the
L' input steps plus (max delay) zero steps, so that every process has processed every input step of the run, and
each process counts its clamps only at its steps d .. d + L' - 1: the counts are those of SPEC.md 14.3 over the L'
input steps, as numpy-fxp reports them for the same input. The outputs returned are the first L' time steps, at
the backend's own indices (the harness compensates the declared delays, SPEC.md section 5).
"""
from __future__ import annotations

import numpy as np

from s4dconf.fixedpoint.formats import FxpModel
from s4dconf.fixedpoint.literal import quantize_input
from s4dconf.reference.validate import S4DInputError, as_input_sequence

from .base import BackendRun
from .lava_runtime import LavaSimBackend, lava_delays, run_isolated
from s4dconf.fixedpoint.engine import FxpRun

from .numpy_fxp import NumpyFxpBackend

LAVA_MSG_BITS = 24  # Loihi 2 graded spikes carry 24 bits


def saturation_names(n_layers: int) -> list[str]:
    """The names of SPEC.md 14.4, in numpy-fxp's order."""
    names = ["input", "encoder", "decoder"]
    for i in range(n_layers):
        names += [f"layer{i}.state", f"layer{i}.message", f"layer{i}.relu", f"layer{i}.block"]
    return names


def _fxp_job(m: FxpModel, u_q: np.ndarray):
    """Build, run and read the fixed-point graph; runs inside the isolated child.

    u_q: int64 (N, L, d_in) quantised inputs. Returns int64 step logits (N, L, classes), per-layer y (N, L, H)
    and the saturation counts of every name but "input".
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from scipy import sparse

    from .lava_procs.process import FxpConnection, FxpNeuron, FxpS4dNeurons, IntSink

    cfg, fmt, a = m.config, m.fmt, m.arrays
    N, L, d = u_q.shape
    H, P, C, n = cfg.H, cfg.P, cfg.n_classes, cfg.n_layers
    T = L + lava_delays(n).max  # every process sees all L input steps
    M, rnd, relu = fmt.msg_bits, fmt.rounding, cfg.activation == "relu"

    def window(depth: int) -> tuple[int, int]:  # the time steps at which a process at this depth sees the input
        return depth, depth + L

    def conn(W) -> FxpConnection:  # kron(I_N, W): the N sequences side by side
        return FxpConnection(weights=sparse.kron(sparse.identity(N, dtype=np.int64), sparse.csr_matrix(W),
                                                 format="csr"))

    def neuron(shape, shift, act, depth) -> FxpNeuron:
        return FxpNeuron(shape=shape, shift=shift, relu=act, msg_bits=M, rounding=rnd, count_steps=window(depth))

    data = np.zeros((N * d, T), dtype=np.int64)  # (N d, T): the last axis is time; |u_q| <= 2^23 fits int32
    data[:, :L] = u_q.transpose(0, 2, 1).reshape(N * d, L)
    src = Source(data=data)
    enc = conn(a["encoder.W"])
    h = neuron((N * H,), m.shift_encoder, False, 1)
    src.s_out.connect(enc.s_in)
    enc.a_out.connect(h.a_in)
    out = h.s_out
    counters = [("encoder", h.saturations)]
    probes = []
    ones = np.ones((P, 1), dtype=np.int64)
    for i in range(n):
        depth = 2 + 3 * i  # of the S4D neurons
        fo = conn(np.kron(np.eye(H, dtype=np.int64), ones))  # channel h drives its P mode neurons
        tile = lambda k: np.tile(a[f"layer{i}.{k}"].ravel(), N)  # noqa: E731  (n H P,) in the fan-out's order
        s4 = FxpS4dNeurons(shape=(N * H * P,), a_re=tile("Abar_re"), a_im=tile("Abar_im"), b_re=tile("Bbar_re"),
                           b_im=tile("Bbar_im"), c_re=tile("C_re"), c_im=tile("C_im"), frac_bits=fmt.frac_bits,
                           state_bits=fmt.state_bits, msg_bits=M, rounding=rnd, count_steps=window(depth))
        fi = conn(np.kron(np.eye(H, dtype=np.int64), ones.T))  # y_i = sum of the P messages of a channel
        probe = IntSink(shape=(N * H,), buffer=T)
        act1 = neuron((N * H,), 0, relu, depth + 1)
        mix = conn(a[f"layer{i}.W"])
        act2 = neuron((N * H,), m.shift_mixer(i), relu, depth + 2)
        out.connect(fo.s_in)
        fo.a_out.connect(s4.a_in)
        s4.s_out.connect(fi.s_in)
        fi.a_out.connect(probe.a_in)
        fi.a_out.connect(act1.a_in)
        act1.s_out.connect(mix.s_in)
        mix.a_out.connect(act2.a_in)
        out = act2.s_out
        probes.append(probe)
        counters += [(f"layer{i}.state", s4.state_saturations), (f"layer{i}.message", s4.message_saturations),
                     (f"layer{i}.relu", act1.saturations), (f"layer{i}.block", act2.saturations)]
    dec = conn(a["decoder.W"])
    lg = neuron((N * C,), m.shift_decoder, False, 3 * n + 2)
    sink = Sink(shape=(N * C,), buffer=T)  # lava-nc's fixed_pt RingBuffer: int32, |logits| <= 2^23 fits
    out.connect(dec.s_in)
    dec.a_out.connect(lg.a_in)
    lg.s_out.connect(sink.a_in)
    counters.append(("decoder", lg.saturations))
    try:
        sink.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        # Var.get() carries values as float64: exact for these integers (|y| <= P 2^23, counts < 2^53)
        logits = _ints(sink.data.get()).reshape(N, C, T).transpose(0, 2, 1)[:, :L]
        ys = [_ints(p.data.get()).reshape(N, H, T).transpose(0, 2, 1)[:, :L] for p in probes]
        sats = {name: int(_ints(var.get()).sum()) for name, var in counters}
    finally:
        sink.stop()
    return np.ascontiguousarray(logits), [np.ascontiguousarray(y) for y in ys], sats


def _ints(a) -> np.ndarray:
    a = np.asarray(a)
    r = np.rint(a).astype(np.int64)
    if not np.array_equal(r, a):  # pragma: no cover - a Var of integers read back as non-integers
        raise RuntimeError("lava-fxp: a Var read back non-integer values")
    return r


class LavaFxpBackend(LavaSimBackend):
    name = "lava-fxp"
    numeric_class = "fixed-point"
    tag = "fixed_pt"

    @staticmethod
    def _check_graph(cfg) -> None:
        if cfg.use_D:
            raise S4DInputError("lava-fxp: the Lava graph has no D path (SPEC.md 16.2); use a config with "
                                "use_D = false")
        if cfg.readout != "last":
            raise S4DInputError(f"lava-fxp: the Lava graph reads out the last step (readout 'last') only, the "
                                f"config has readout {cfg.readout!r}")

    def prepare(self, model):
        """An FxpModel is used as is; a float64 S4DModel is quantised by the default PTQ (SPEC.md 15), as
        numpy-fxp does. Refused: use_D, readout other than 'last', msg_bits > 24."""
        from s4dconf.reference.model import S4DModel

        if isinstance(model, S4DModel):
            self._check_graph(model.config)
            model = NumpyFxpBackend().prepare(model)
        elif not isinstance(model, FxpModel):
            raise S4DInputError(f"lava-fxp runs fixed-point models (FxpModel) or float64 models (S4DModel, "
                                f"quantised by the default PTQ), got {type(model).__name__}")
        self._check_graph(model.config)
        if model.fmt.msg_bits > LAVA_MSG_BITS:
            raise S4DInputError(f"lava-fxp: msg_bits = {model.fmt.msg_bits}, but Loihi 2 graded spikes carry "
                                f"{LAVA_MSG_BITS} bits (SPEC.md 16.2); quantise with msg_bits <= {LAVA_MSG_BITS}")
        return model

    def run_integers(self, handle: FxpModel, u) -> FxpRun:
        """The integer outputs at the backend's own indices and the saturation counts over the input steps."""
        u = as_input_sequence(u, handle.config.d_input)
        counts: dict = {}
        u_q = quantize_input(handle, u, counts)
        logits, ys, sats = run_isolated(_fxp_job, (handle, u_q), self.timeout_s, what="lava-fxp run")
        sats["input"] = counts["input"]
        return FxpRun(logits, ys, {k: sats[k] for k in saturation_names(handle.config.n_layers)}, {})

    def run(self, handle, u, path):
        r = self.run_integers(handle, u)
        logits, ys = r.dequantised(handle)
        return BackendRun(step_logits=logits, layer_y=ys, saturations=r.saturations)
