"""Backend `lava-float`: the model as a Lava process graph with lava-nc's own floating-point S4d neurons
(SPEC.md section 16), run on the CPU simulator (Loihi2SimCfg, tag floating_pt).

Graph for a batch of N sequences (the batch is laid side by side: every weight is kron(I_N, W)):

    RingBuffer(u) -> Dense(W_enc) -> [ Sparse(fan-out) -> S4d -> Sparse(fan-in) -> Activation(ReLU)
                  -> Dense(W_i) -> Activation(ReLU) ] x n_layers -> Dense(W_dec) -> RingBuffer sink

Each Dense and Sparse sends the previous step's sum (+1 step); S4d, Activation and RingBuffers add none.
Declared delays: layer i's S4D output (read after the fan-in) 3 + 3i, logits 3 n_layers + 2.
"""
from __future__ import annotations

import numpy as np

from s4dconf.reference.validate import S4DInputError, as_input_sequence

from .base import BackendRun
from .lava_runtime import LavaSimBackend, run_isolated

MSG_BITS_FLOAT = 24  # graded spikes: Dense/Sparse pass values (num_message_bits > 0), not binary spikes


def fan_out(n: int, P: int) -> np.ndarray:
    """(n P, n): channel h drives its P mode neurons, weight 1 (kron(I_n, ones(P, 1)))."""
    return np.kron(np.eye(n), np.ones((P, 1)))


def _float_job(model, u: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Build, run and read the float graph; runs inside the isolated child."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.s4d.process import S4d
    from lava.proc.sparse.process import Sparse
    from scipy.sparse import csr_matrix

    from .lava_procs.process import Activation

    cfg = model.config
    N, T, d = u.shape
    H, P = cfg.H, cfg.P
    eye = np.eye(N)
    src = Source(  # (N d, T): the last axis is time
        data=np.ascontiguousarray(u.transpose(0, 2, 1).reshape(N * d, T)))
    enc = Dense(weights=np.kron(eye, model.params["encoder.W"]), num_message_bits=MSG_BITS_FLOAT)
    src.s_out.connect(enc.s_in)
    out, probes = enc.a_out, []
    relu = cfg.activation == "relu"
    for layer in model.layers:
        fo = Sparse(weights=csr_matrix(fan_out(N * H, P)), num_message_bits=MSG_BITS_FLOAT)
        s4 = S4d(shape=(N * H * P,), a=np.tile(layer.Abar.ravel(), N), b=np.tile(layer.Bbar.ravel(), N),
                 c=np.tile(layer.C.ravel(), N))
        fi = Sparse(weights=csr_matrix(fan_out(N * H, P).T), num_message_bits=MSG_BITS_FLOAT)
        probe = Sink(shape=(N * H,), buffer=T)
        act1 = Activation(shape=(N * H,), relu=relu)
        mix = Dense(weights=np.kron(eye, layer.W), num_message_bits=MSG_BITS_FLOAT)
        act2 = Activation(shape=(N * H,), relu=relu)
        out.connect(fo.s_in)
        fo.a_out.connect(s4.a_in)
        s4.s_out.connect(fi.s_in)
        fi.a_out.connect(probe.a_in)
        fi.a_out.connect(act1.a_in)
        act1.s_out.connect(mix.s_in)
        mix.a_out.connect(act2.a_in)
        out = act2.s_out
        probes.append(probe)
    dec = Dense(weights=np.kron(eye, model.params["decoder.W"]), num_message_bits=MSG_BITS_FLOAT)
    sink = Sink(shape=(N * cfg.n_classes,), buffer=T)
    out.connect(dec.s_in)
    dec.a_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        logits = sink.data.get().reshape(N, cfg.n_classes, T).transpose(0, 2, 1)
        ys = [p.data.get().reshape(N, H, T).transpose(0, 2, 1) for p in probes]
    finally:
        sink.stop()
    return logits, ys


class LavaFloatBackend(LavaSimBackend):
    name = "lava-float"
    numeric_class = "float64"
    tag = "floating_pt"

    def prepare(self, model):
        from s4dconf.reference.model import S4DModel

        if not isinstance(model, S4DModel):
            raise S4DInputError(f"lava-float runs float64 models (S4DModel), got {type(model).__name__}")
        if model.config.use_D:
            raise S4DInputError("lava-float: lava-nc's S4d neuron has no D term; use a config with use_D = false")
        if model.config.readout != "last":
            raise S4DInputError("lava-float: the Lava graph reads out the last step (readout 'last') only")
        return model

    def run(self, handle, u, path):
        u = as_input_sequence(u, handle.config.d_input)
        logits, ys = run_isolated(_float_job, (handle, u), self.timeout_s, what="lava-float run")
        return BackendRun(step_logits=logits, layer_y=ys)
