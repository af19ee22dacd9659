"""Backend `lava-float`: the model as a Lava process graph with lava-nc's own floating-point S4d neurons
(SPEC.md section 16.1), run on the CPU simulator (Loihi2SimCfg, tag floating_pt).

The graph is lava_graph's, for a batch of N sequences of L steps folded into the processes' shapes (every
connection kron(I_N, W), a lava-nc Sparse of that block-diagonal csr matrix; never dense):

    RingBuffer(u) (N d, L) -> Sparse(W_enc) (N H) -> [ Sparse(fan-out) (N H P) -> S4d (N H P) -> Sparse(fan-in)
                  (N H) [probe y_i] -> Activation(ReLU) -> Sparse(W_i) -> Activation(ReLU) ] x n_layers
                  -> Sparse(W_dec) (N C) -> sink (N C, L)

Probes and sink are lava-nc Extractors, read while the graph runs. Each Sparse sends the previous step's sum
(+1 step); S4d, Activation, the source and the recorders add none. Declared delays (lava_graph.lava_delays):
layer i's S4D output (read after the fan-in) 3 + 3i, logits 3 n_layers + 2.
"""
from __future__ import annotations

import numpy as np

from s4dconf.reference.model import S4DModel
from s4dconf.reference.validate import S4DInputError, as_input_sequence

from .base import BackendRun
from .lava_graph import (ACTIVATED, GraphParts, GraphWeights, LavaGraph, batch_neurons, build_graph, lava_nc_connection,
                         run_graph, sim_run_cfg, streamed_recorder, time_major)
from .lava_runtime import LavaSimBackend, run_isolated

MSG_BITS_FLOAT = 24  # graded spikes: Dense/Sparse pass values (num_message_bits > 0), not binary spikes
FLOAT_TAG = "floating_pt"


def float_graph(model, u: np.ndarray) -> LavaGraph:
    """The float graph of model for inputs u (N, L, d_in) float64 (needs lava-nc)."""
    from lava.proc.s4d.process import S4d

    from .lava_procs.process import Activation  # deferred: lava-nc exists in the Lava environment only

    cfg = model.config
    N = u.shape[0]
    relu = cfg.activation == "relu"

    def s4d(site):  # lava-nc's S4d: update, then output 2 Re(c x)
        layer = model.layers[site.layer]
        return S4d(shape=(site.size,), a=batch_neurons(layer.Abar, N), b=batch_neurons(layer.Bbar, N),
                   c=batch_neurons(layer.C, N))

    def neuron(site):  # ReLU (or identity) around the mixing layer; the encoder and decoder have none
        return Activation(shape=(site.size,), relu=relu) if site.name in ACTIVATED else None

    parts = GraphParts(connection=lava_nc_connection(MSG_BITS_FLOAT), s4d=s4d, neuron=neuron,
                       run_cfg=sim_run_cfg(FLOAT_TAG), probe=streamed_recorder, sink=streamed_recorder)
    return build_graph(time_major(u), GraphWeights.of(model.params, cfg.n_layers, N, cfg.P), parts)


def _float_job(model, u: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Build, run and read the float graph; runs inside the isolated child."""
    logits, ys, _ = run_graph(float_graph(model, u))
    return logits, ys


class LavaFloatBackend(LavaSimBackend):
    name = "lava-float"
    numeric_class = "float64"
    tag = FLOAT_TAG

    def prepare(self, model):
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
