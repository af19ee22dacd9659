"""Backend `lava-fxp`: the integer arithmetic of SPEC.md section 14 as a Lava process graph of this project's own
Processes with `fixed_pt` ProcessModels (backends/lava_procs/), run on the CPU simulator (Loihi2SimCfg, tag
fixed_pt). SPEC.md 16.2.

The graph is lava_graph's, for a batch of N sequences folded into the processes' shapes (every connection
kron(I_N, W), held and applied as the one block W), of T = L' + (max delay) steps, with every neuron place filled
(saturation names of SPEC.md 14.4 in quotes):

    RingBuffer(u_q) (N d, T) -> conn(W_enc) -> neuron(s_enc) (N H)                          "encoder"
      -> [ conn(fan-out) -> S4D neurons (N H P) -> conn(fan-in) (N H) [probe y_i]          "layer<i>.state/.message"
           -> neuron(0, ReLU) -> conn(W_i) -> neuron(s_i, ReLU) (N H) ] x n_layers         "layer<i>.relu/.block"
      -> conn(W_dec) -> neuron(s_dec) (N C) -> sink (N C, T)                                "decoder"

conn = FxpConnection (sends the previous step's int64 accumulation: +1 step each, like Lava's Dense/Sparse);
neuron = FxpNeuron (sat_M(act(R(a, s))), zero delay); S4D neurons = FxpS4dNeurons (update, then output; zero
delay); probes and sink = lava-nc's Extractor, streamed to the host as float64 (exact: every value is below
2^53). So the delays are those of lava-float (lava_graph.lava_delays): layer i's y at 3 + 3i, logits at
3 n_layers + 2.

Inputs are quantised on the host (14.3 step 1, `fixed_point_literal.quantize_input`, counted as "input").
Saturation counts: a process at pipeline depth d processes input step k at time step k + d. The job runs the
L' input steps plus (max delay) zero steps, so that every process has processed every input step of the run, and
each process counts its clamps only at its steps d .. d + L' - 1: the counts are those of SPEC.md 14.3 over the L'
input steps, as numpy-fxp reports them for the same input. Every counter counts per stream (the streams of a batch
are independent): `LavaFxpRun.stream_saturations` holds (N,) counts per name, their sums the totals. The outputs
returned are the first L' time steps, at the backend's own indices (the harness compensates the declared delays,
SPEC.md section 5).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from s4dconf.reference.model import S4DModel
from s4dconf.fixedpoint.engine import FxpRun
from s4dconf.fixedpoint.formats import DEFAULT_CONVENTIONS, FxpModel, require_format_choices
from s4dconf.fixedpoint.literal import quantize_input
from s4dconf.reference.validate import S4DInputError, as_input_sequence

from .base import BackendRun
from .lava_graph import (ACTIVATED, GraphParts, GraphWeights, LavaGraph, batch_neurons, build_graph, lava_delays,
                         run_graph, sim_run_cfg, streamed_recorder, time_major)
from .lava_runtime import LavaSimBackend, run_isolated
from .numpy_fxp import NumpyFxpBackend

LAVA_MSG_BITS = 24  # Loihi 2 graded spikes carry 24 bits
FXP_TAG = "fixed_pt"


def saturation_names(n_layers: int) -> list[str]:
    """The names of SPEC.md 14.4, in numpy-fxp's order."""
    names = ["input", "encoder", "decoder"]
    for i in range(n_layers):
        names += [f"layer{i}.state", f"layer{i}.message", f"layer{i}.relu", f"layer{i}.block"]
    return names


@dataclasses.dataclass
class LavaFxpRun(FxpRun):
    """FxpRun plus the saturation counts of each stream: per name of SPEC.md 14.4, int64 (N,), summing to
    saturations[name] (the contract's BackendRun.stream_saturations)."""

    stream_saturations: dict = dataclasses.field(default_factory=dict)


def fxp_graph(m: FxpModel, u_q: np.ndarray, counters: list) -> LavaGraph:
    """The fixed-point graph of m for quantised inputs u_q: int64 (N, L, d_in), run for L + (max delay) steps
    (needs lava-nc). Appends (saturation name, Var of per-stream counts (N,)) of every counting process to
    counters."""
    from .lava_procs.process import FxpConnection, FxpNeuron, FxpS4dNeurons  # deferred: lava-nc only

    cfg, fmt, a = m.config, m.fmt, m.arrays
    N, L, _ = u_q.shape
    M, rnd, relu = fmt.msg_bits, fmt.rounding, cfg.activation == "relu"
    shifts = {"encoder": m.shift_encoder, "relu": 0, "decoder": m.shift_decoder}

    def window(site) -> tuple[int, int]:  # the time steps at which the process sees the L input steps
        return site.depth, site.depth + L

    def neuron(site) -> FxpNeuron:
        shift = m.shift_mixer(site.layer) if site.name == "block" else shifts[site.name]
        h = FxpNeuron(shape=(site.size,), shift=shift, relu=relu and site.name in ACTIVATED, msg_bits=M,
                      rounding=rnd, count_steps=window(site), streams=N)
        counters.append((site.label, h.saturations))
        return h

    def s4d(site) -> FxpS4dNeurons:
        arrays = {"a": "Abar", "b": "Bbar", "c": "C"}  # a_re = the batched layer<i>.Abar_re, ...
        coefs = {f"{x}_{part}": batch_neurons(a[f"layer{site.layer}.{name}_{part}"], N)
                 for x, name in arrays.items() for part in ("re", "im")}
        s4 = FxpS4dNeurons(shape=(site.size,), **coefs, frac_bits=fmt.frac_bits, state_bits=fmt.state_bits,
                           msg_bits=M, rounding=rnd, count_steps=window(site), streams=N)
        counters.extend([(f"layer{site.layer}.state", s4.state_saturations),
                         (f"layer{site.layer}.message", s4.message_saturations)])
        return s4

    parts = GraphParts(connection=lambda site, W: FxpConnection(weights=W.block, blocks=W.n), s4d=s4d,
                       neuron=neuron, run_cfg=sim_run_cfg(FXP_TAG), probe=streamed_recorder, sink=streamed_recorder)
    # |u_q| <= 2^23 fits the source; the records are float64: |logits| <= 2^23, |y| <= P 2^23, exact
    data = time_major(u_q, L + lava_delays(cfg.n_layers).max)  # every process sees all L input steps
    return build_graph(data, GraphWeights.of(a, cfg.n_layers, N, cfg.P), parts)


def _fxp_job(m: FxpModel, u_q: np.ndarray):
    """Build, run and read the fixed-point graph; runs inside the isolated child.

    u_q: int64 (N, L, d_in) quantised inputs. Returns int64 step logits (N, L, classes), per-layer y (N, L, H)
    and the per-stream saturation counts, int64 (N,), of every name but "input".
    """
    counters: list = []
    graph = fxp_graph(m, u_q, counters)
    L = u_q.shape[1]
    # Var.get() carries values as float64: exact for these integers (|y| <= P 2^23, counts < 2^53)
    logits, ys, sats = run_graph(graph, lambda: {name: _ints(var.get()) for name, var in counters})
    return _first_steps(logits, L), [_first_steps(y, L) for y in ys], sats


def _first_steps(a: np.ndarray, L: int) -> np.ndarray:
    """(N, T, k) read back -> int64 (N, L, k): the time steps of the L input steps."""
    return np.ascontiguousarray(_ints(a)[:, :L])


def _ints(a) -> np.ndarray:
    a = np.asarray(a)
    r = np.rint(a).astype(np.int64)
    if not np.array_equal(r, a):  # pragma: no cover - a Var of integers read back as non-integers
        raise RuntimeError("lava-fxp: a Var read back non-integer values")
    return r


class LavaFxpBackend(LavaSimBackend):
    name = "lava-fxp"
    numeric_class = "fixed-point"
    tag = FXP_TAG

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
        numpy-fxp does. Refused: use_D, readout other than 'last', msg_bits > 24, a format choice outside
        DEFAULT_CONVENTIONS (the only ones lava_procs implement)."""
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
        require_format_choices(model.fmt, DEFAULT_CONVENTIONS, "lava-fxp", "run this format on numpy-fxp")
        return model

    def run_integers(self, handle: FxpModel, u) -> LavaFxpRun:
        """The integer outputs at the backend's own indices and the saturation counts over the input steps, in total
        and per stream."""
        u = as_input_sequence(u, handle.config.d_input)
        u_q, input_counts = _quantize_streams(handle, u)
        logits, ys, per_stream = run_isolated(_fxp_job, (handle, u_q), self.timeout_s, what="lava-fxp run")
        per_stream["input"] = input_counts
        names = saturation_names(handle.config.n_layers)
        return LavaFxpRun(logits, ys, {k: int(per_stream[k].sum()) for k in names}, {},
                          stream_saturations={k: per_stream[k] for k in names})

    def run(self, handle, u, path):
        r = self.run_integers(handle, u)
        logits, ys = r.dequantised(handle)
        return BackendRun(step_logits=logits, layer_y=ys, saturations=r.saturations,
                          stream_saturations=r.stream_saturations)


def _quantize_streams(m: FxpModel, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """14.3 step 1 on the host, stream by stream: u_q int64 (N, L, d) and the "input" clamps of each stream (N,)."""
    counts = [{} for _ in range(u.shape[0])]
    u_q = np.stack([quantize_input(m, u[n], c) for n, c in enumerate(counts)])
    return u_q, np.array([c["input"] for c in counts], dtype=np.int64)
