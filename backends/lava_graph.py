"""The Lava process graph of the S4D model: one builder for lava-float, lava-fxp and loihi2 (SPEC.md 16).

A batch of N sequences (streams) is folded into the processes' shapes: a population of k units per sequence has
N k units, sequence n owning units n k .. n k + k - 1, and every connection is block diagonal, kron(I_N, W) of one
sequence's W, held as that one block (`BlockDiagonal`), never as a dense (N k_out, N k_in) matrix. The number of
processes does not depend on N, so one simulated step serves N samples (Lava's cost per step is dominated by the
number of processes and their messages, not by the neurons inside them). With d inputs, H channels, P modes per
channel, C classes, n layers and T time steps, the graph is

    source (N d, T)                                                                         depth 0
      -> conn "encoder"  kron(I_N, W_enc)      (N H, N d)    +1
      -> neuron "encoder"                      (N H,)?                                      depth 1
      -> [ conn "fan_out" kron(I_NH, ones(P, 1)) (N H P, N H) +1
           -> S4D neurons "s4d"                (N H P,)                                     depth 2 + 3i
           -> conn "fan_in" kron(I_NH, ones(1, P)) (N H, N H P) +1
           -> probe y_i                        (N H, T)                                     depth 3 + 3i
           -> neuron "relu"                    (N H,)?
           -> conn "mixer" kron(I_N, W_i)      (N H, N H)    +1
           -> neuron "block"                   (N H,)?                                      depth 4 + 3i
         ] x n  (i = 0 .. n - 1)
      -> conn "decoder"  kron(I_N, W_dec)      (N C, N H)    +1
      -> neuron "decoder"                      (N C,)?
      -> sink logits                           (N C, T)                                     depth 3n + 2

A connection ("+1") sends at time step t the sum of what it received at step t - 1 (zeros at the first step), as
Lava's Dense and Sparse do; neurons, the source, the probes and the sink add no delay. The depth of a place is
the number of connections between the source and it: it handles input step k at time step k + depth. So every
backend built here declares the same delays (`lava_delays`): layer i's S4D output y_i (read after the fan-in) at
3 + 3i, the logits at 3n + 2. A neuron marked ? is one a backend may leave out (a plain wire).

What differs between the backends is passed in as `GraphParts` (the processes for each place, the run config):

    lava-float  connections lava-nc Sparse (24-bit graded spikes; each BlockDiagonal as csr); S4D neurons lava-nc
                S4d (float64); neurons Activation at "relu" and "block"; probes and sink lava-nc Extractor
                (streamed); run config Loihi2SimCfg, floating_pt
    lava-fxp    connections FxpConnection (int64; the one block applied to every slice); S4D neurons FxpS4dNeurons;
                neurons FxpNeuron at all four places (they count saturations per stream); probes and sink
                Extractor (streamed); run config Loihi2SimCfg, fixed_pt
    loihi2      connections lava-nc Dense (weight_exp) / Sparse (msg_bits) of dense kron(I_N, W) arrays; S4D
                neurons lava-nc S4d (integer a, b, c, s4_exp, inp_exp); no other neurons (the chip's neuron models
                rectify and saturate); probes RingBuffer; run config Loihi2HwCfg

Nothing here imports Lava at module level: the parts and `run_graph` import it when they are called.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from .base import Delays

FANS = ("fan_out", "fan_in")
ACTIVATED = ("relu", "block")  # the neuron places that apply the model's activation (ReLU or identity)


def lava_delays(n_layers: int) -> Delays:
    """Delays of the graph above (SPEC.md 16.1): +1 per connection, 0 per neuron, source, probe and sink."""
    return Delays(layers=tuple(3 + 3 * i for i in range(n_layers)), logits=3 * n_layers + 2)


def batched(W: np.ndarray, N: int) -> np.ndarray:
    """kron(I_N, W) as a dense array of W's dtype: the chip graph's parameters (loihi2.chip_parameters) only; the
    simulator graphs hold a batch as a `BlockDiagonal`."""
    W = np.asarray(W)
    return np.kron(np.eye(N, dtype=W.dtype), W)


def fan_out(n: int, P: int, dtype=np.float64) -> np.ndarray:
    """(n P, n) = kron(I_n, ones(P, 1)), dense: channel h drives its P mode neurons h P .. h P + P - 1, weight 1."""
    return batched(np.ones((P, 1), dtype=dtype), n)


@dataclasses.dataclass(frozen=True)
class BlockDiagonal:
    """kron(I_n, block): n copies of one (r, c) block on the diagonal, a (n r, n c) matrix held as the block alone.

    Applied to s (n c,): out[m r : m r + r] = block @ s[m c : m c + c], i.e. (s.reshape(n, c) @ block.T).ravel().
    `tocsr()` gives the same matrix as scipy csr (n r c stored entries at most) for processes that take a sparse
    matrix (lava-nc's Sparse); nothing here ever builds it dense."""

    block: np.ndarray  # (r, c)
    n: int

    def __post_init__(self):
        if np.ndim(self.block) != 2 or isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) \
                or self.n < 1:
            raise ValueError(f"BlockDiagonal needs a 2-d block and n >= 1 copies, got shape {np.shape(self.block)} "
                             f"and n = {self.n!r}")

    @property
    def shape(self) -> tuple[int, int]:
        r, c = self.block.shape
        return self.n * r, self.n * c

    @property
    def dtype(self):
        return self.block.dtype

    @property
    def T(self) -> "BlockDiagonal":
        return BlockDiagonal(np.ascontiguousarray(self.block.T), self.n)

    @property
    def nnz(self) -> int:
        """Stored entries of its csr form: n times the block's non-zeros."""
        return self.n * int(np.count_nonzero(self.block))

    def tocsr(self):
        """The matrix as scipy.sparse csr, of the block's dtype."""
        from scipy import sparse as sp

        return sp.kron(sp.identity(self.n, dtype=self.dtype, format="csr"), sp.csr_matrix(self.block), format="csr")


def batch_neurons(x: np.ndarray, N: int) -> np.ndarray:
    """(N x.size,): one sequence's neuron parameters x (H, P), flattened in the fan-out's order, N times."""
    return np.tile(np.asarray(x).ravel(), N)


def time_major(u: np.ndarray, steps: int | None = None, dtype=None) -> np.ndarray:
    """(N, L, d) -> (N d, steps), the source's data (the last axis is time): row n d + j is input j of sequence n;
    zeros after step L (steps defaults to L)."""
    N, L, d = u.shape
    out = np.zeros((N * d, L if steps is None else steps), dtype=u.dtype if dtype is None else dtype)
    out[:, :L] = u.transpose(0, 2, 1).reshape(N * d, L)
    return out


def per_sequence(data, N: int) -> np.ndarray:
    """A probe's or the sink's record (N k, T) -> (N, T, k)."""
    data = np.asarray(data)
    return data.reshape(N, -1, data.shape[-1]).transpose(0, 2, 1)


@dataclasses.dataclass(frozen=True)
class Site:
    """A place of the graph, as the builder asks a backend for its process.

    name: "encoder", "fan_out", "fan_in", "mixer", "decoder" (connections), "s4d", or "encoder", "relu", "block",
    "decoder" (neurons); layer: i inside the layers, else None; depth: the time step offset at which the process's
    output carries input step k (k + depth; for a connection one more than at its input); size: its number of
    outputs (N H, N H P or N C)."""

    name: str
    layer: int | None
    depth: int
    size: int

    @property
    def label(self) -> str:
        """The place as SPEC.md 14.4 names the saturations of its neurons: "encoder", "decoder", "layer<i>.<name>"."""
        return self.name if self.layer is None else f"layer{self.layer}.{self.name}"


@dataclasses.dataclass(frozen=True)
class GraphWeights:
    """The batched weights of the graph's connections (the fan-in is fan_out.T): `BlockDiagonal`s of one sequence's
    weights for the simulator graphs, dense kron(I_N, W) arrays for the chip graph (loihi2)."""

    batch: int  # N
    encoder: Any  # (N H, N d)
    fan_out: Any  # (N H P, N H)
    mixers: tuple  # n x (N H, N H)
    decoder: Any  # (N C, N H)

    @classmethod
    def of(cls, arrays: dict, n_layers: int, N: int, P: int) -> "GraphWeights":
        """From one sequence's weights arrays["encoder.W"], arrays["layer<i>.W"], arrays["decoder.W"] (a float
        model's params or a fixed-point model's integer arrays), each the block of a BlockDiagonal of N blocks; the
        fan-out, kron(I_NH, ones(P, 1)), has the encoder's dtype."""
        enc = np.asarray(arrays["encoder.W"])
        return cls(batch=N, encoder=BlockDiagonal(enc, N),
                   fan_out=BlockDiagonal(np.ones((P, 1), dtype=enc.dtype), N * enc.shape[0]),
                   mixers=tuple(BlockDiagonal(np.asarray(arrays[f"layer{i}.W"]), N) for i in range(n_layers)),
                   decoder=BlockDiagonal(np.asarray(arrays["decoder.W"]), N))


def ring_buffer_source(data: np.ndarray):
    """lava-nc's RingBuffer source: sends column t of data (k, T) at time step t."""
    from lava.proc.io.source import RingBuffer

    return RingBuffer(data=data)


def ring_buffer_sink(size: int, steps: int):
    """lava-nc's RingBuffer sink: records a_in (size,) of every step in `data` (size, steps), read after the run.
    Lava 0.10 reads a Var back one element per message (Var.get), so reading it costs ~size x steps messages: fine
    for a short unbatched run, the dominant cost of a batched one (see streamed_recorder)."""
    from lava.proc.io.sink import RingBuffer

    return RingBuffer(shape=(size,), buffer=steps)


RECORDER_BUFFER = 32  # steps an Extractor's channel holds before the graph waits for the host to read


def streamed_recorder(size: int, steps: int):
    """lava-nc's Extractor: sends a_in (size,) of every step to the host through a channel as one float64 vector,
    read by run_graph while the graph runs (the simulators' probes and sink; exact for the integers of lava-fxp,
    all below 2^53 in magnitude)."""
    from lava.proc.io.extractor import Extractor

    return Extractor(shape=(size,), buffer_size=max(1, min(steps, RECORDER_BUFFER)))


def no_neuron(site: Site) -> None:
    """No neuron at this place: the graph is a plain wire there."""
    return None


def lava_nc_connection(msg_bits: int, weight_exp: Callable[[Site], int] | None = None):
    """The connection part with lava-nc's processes, all sending graded spikes of msg_bits bits: Sparse for a
    `BlockDiagonal` (as csr) and for the fan-out and fan-in, Dense for the chip graph's dense weights elsewhere;
    weight_exp(site), when given, is each Dense's weight exponent (the chip scales its weights by 2^weight_exp)."""

    def connection(site: Site, W):
        from lava.proc.dense.process import Dense
        from lava.proc.sparse.process import Sparse
        from scipy.sparse import csr_matrix

        if isinstance(W, BlockDiagonal):
            return Sparse(weights=W.tocsr(), num_message_bits=msg_bits)
        if site.name in FANS:
            return Sparse(weights=csr_matrix(W), num_message_bits=msg_bits)
        exp = {} if weight_exp is None else {"weight_exp": weight_exp(site)}
        return Dense(weights=W, num_message_bits=msg_bits, **exp)

    return connection


def recorder_port(recorder):
    """The InPort of a probe or sink: `a_in` (RingBuffer), `in_port` (Extractor)."""
    return getattr(recorder, "a_in", None) or recorder.in_port


def sim_run_cfg(tag: str) -> Callable[[], Any]:
    """The run config of the CPU simulator: Loihi2SimCfg selecting the ProcessModels tagged `tag`, and for lava-nc's
    Extractor (whose models carry no tag) its synchronous model."""

    def run_cfg():
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel

        return Loihi2SimCfg(select_tag=tag, exception_proc_model_map={Extractor: PyLoihiExtractorModel})

    return run_cfg


@dataclasses.dataclass(frozen=True)
class GraphParts:
    """What a backend puts into the graph. Connections have ports s_in, a_out; neurons a_in, s_out; the source
    s_out; probes and the sink an InPort (`recorder_port`) and either a Var `data` (size, T) or `receive()`.

    connection(site, W): the process of W (its size is W's rows), sending one step late;
    s4d(site): the S4D mode neurons of layer site.layer, (N H P,) in the fan-out's order;
    run_cfg(): the Lava run config;
    neuron(site): a zero-delay neuron population (site.size,) at "encoder", "relu", "block", "decoder", or None;
    source(data): the input (N d, T); probe(size, T): the recorder of y_i; sink(size, T): the logits' recorder.
    A recorder with a `receive()` (streamed_recorder) is read step by step while the graph runs; one with a Var
    `data` (ring_buffer_sink, the default) after it."""

    connection: Callable[[Site, Any], Any]
    s4d: Callable[[Site], Any]
    run_cfg: Callable[[], Any]
    neuron: Callable[[Site], Any] = no_neuron
    source: Callable[[np.ndarray], Any] = ring_buffer_source
    probe: Callable[[int, int], Any] = ring_buffer_sink
    sink: Callable[[int, int], Any] = ring_buffer_sink


@dataclasses.dataclass
class LavaGraph:
    """A built graph: its source, sink (logits) and probes (y_i), how many sequences and steps it holds, its run
    config, and the delays of its probes and sink as built (the depths; equal to lava_delays by construction)."""

    source: Any
    sink: Any
    probes: list
    batch: int
    steps: int
    run_cfg: Callable[[], Any]
    delays: Delays


class _OpenEnd:
    """The graph's open end while it is built: the OutPort to connect next, its depth and its size."""

    def __init__(self, parts: GraphParts, port, size: int):
        self.parts, self.port, self.size, self.depth = parts, port, size, 0

    def connection(self, name: str, layer: int | None, W) -> None:
        self.depth += 1
        self.size = W.shape[0]
        proc = self.parts.connection(Site(name, layer, self.depth, self.size), W)
        self._through(proc.s_in, proc.a_out)

    def neuron(self, name: str, layer: int | None, make: Callable[[Site], Any] | None = None) -> None:
        """The neuron population the part `make` (default: parts.neuron) gives here; none is a plain wire, except
        for the S4D neurons, which every graph has."""
        proc = (make or self.parts.neuron)(Site(name, layer, self.depth, self.size))
        if proc is None and name == "s4d":
            raise TypeError("GraphParts.s4d returned no process: every graph has its S4D neurons")
        if proc is not None:
            self._through(proc.a_in, proc.s_out)

    def record(self, recorder) -> int:
        """Connects a recorder (probe or sink) here; returns the depth it records."""
        self.port.connect(recorder_port(recorder))
        return self.depth

    def _through(self, in_port, out_port) -> None:
        self.port.connect(in_port)
        self.port = out_port


def build_graph(data: np.ndarray, weights: GraphWeights, parts: GraphParts) -> LavaGraph:
    """Builds the graph of the module docstring; data (N d, T) is the source's input (see time_major)."""
    steps = data.shape[1]
    source = parts.source(data)
    end = _OpenEnd(parts, source.s_out, data.shape[0])
    end.connection("encoder", None, weights.encoder)
    end.neuron("encoder", None)
    probes, probe_depths = [], []
    for i, mixer in enumerate(weights.mixers):
        end.connection("fan_out", i, weights.fan_out)
        end.neuron("s4d", i, parts.s4d)
        end.connection("fan_in", i, weights.fan_out.T)
        probes.append(parts.probe(end.size, steps))
        probe_depths.append(end.record(probes[-1]))
        end.neuron("relu", i)
        end.connection("mixer", i, mixer)
        end.neuron("block", i)
    end.connection("decoder", None, weights.decoder)
    end.neuron("decoder", None)
    sink = parts.sink(end.size, steps)
    delays = Delays(layers=tuple(probe_depths), logits=end.record(sink))
    return LavaGraph(source=source, sink=sink, probes=probes, batch=weights.batch, steps=steps,
                     run_cfg=parts.run_cfg, delays=delays)


def run_graph(graph: LavaGraph, read: Callable[[], Any] | None = None):
    """Runs the graph for its steps, reads its records and stops its runtime, also when the run fails.

    Returns (logits (N, T, C), [y_i (N, T, H)], read()) as the recorders give them (float64 arrays), where read
    reads further Vars (saturation counts) before the runtime stops; None without it."""
    from lava.magma.core.run_conditions import RunSteps

    sink, recorders = graph.sink, [graph.sink] + graph.probes
    kinds = {hasattr(r, "receive") for r in recorders}
    if len(kinds) > 1:
        raise TypeError("the graph's recorders are of two kinds (streamed and Var data): give GraphParts one kind")
    streamed = kinds == {True}
    try:
        sink.run(condition=RunSteps(num_steps=graph.steps, blocking=not streamed), run_cfg=graph.run_cfg())
        if streamed:
            records = _receive_all(recorders, graph.steps)
            sink.wait()
        else:
            records = [r.data.get() for r in recorders]
        logits, *ys = (per_sequence(data, graph.batch) for data in records)
        more = None if read is None else read()
    finally:
        sink.stop()
    return logits, ys, more


def _receive_all(recorders: list, steps: int) -> list[np.ndarray]:
    """Each streamed recorder's vectors of every step, (size, steps), received in step order (step t of every
    recorder before step t + 1 of any), so that no recorder's channel waits on a full one."""
    records = [np.empty((recorder_port(r).shape[0], steps)) for r in recorders]
    for t in range(steps):
        for r, data in zip(recorders, records):
            data[:, t] = r.receive()
    return records
