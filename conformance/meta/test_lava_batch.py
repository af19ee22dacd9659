"""Batched Lava runs (SPEC.md 16.5): B independent streams in one Lava network, the batch folded into the
processes' shapes and every connection block diagonal. lava-fxp is bit-exact with numpy-fxp stream by stream, its
saturation counts per stream included; lava-float agrees with the reference within the float64 rows; no dense
(B k)^2 matrix is built and the number of processes does not depend on B."""
import numpy as np
import pytest

from s4dconf.backends.lava_graph import BlockDiagonal
from s4dconf.backends.lava_runtime import lava_availability
from s4dconf.reference.config import ModelConfig
from s4dconf.reference.model import S4DModel

CFG = ModelConfig(name="lava-batch", H=4, P=3, n_layers=2, n_classes=3)
BATCHES = [1, 3, 16]
_LAVA_OK, _LAVA_REASON = lava_availability()
needs_lava = pytest.mark.skipif(not _LAVA_OK, reason=f"batched Lava runs need lava-nc (tox -e lava): {_LAVA_REASON}")


@pytest.fixture(scope="module")
def float_model():
    return S4DModel.create(CFG, 1)


@pytest.fixture(scope="module")
def fxp_model(float_model):
    from s4dconf.fixedpoint.formats import FxpFormat
    from s4dconf.fixedpoint.quantize import quantize

    return quantize(float_model, fmt=FxpFormat(msg_bits=12, state_bits=12))


def loud_streams(B: int, L: int = 30) -> np.ndarray:
    """(B, L, 1): stream n a square wave of amplitude 1000, 30, 1 or 0.03 (n mod 4) with its own period and phase,
    quiet for its last 8 steps. Narrow 12-bit formats clamp the loud streams in several places and the quiet ones
    not at all, so a stream's counts differ from its neighbours' (a count given to the wrong stream shows)."""
    k = np.arange(L)
    amplitude = (1e3, 30.0, 1.0, 0.03)
    u = np.stack([amplitude[n % 4] * np.sign(np.sin((k + n) / (1.5 + 0.25 * n))) for n in range(B)])
    u[:, L - 8:] = 0.0
    return u[:, :, None]


# ---------------------------------------------------------------- the graph: block diagonal, processes fixed


def test_block_diagonal_is_kron_of_its_block_and_refuses_bad_input():
    W = np.array([[1, 0, -2], [0, 3, 0]])
    bd = BlockDiagonal(W, 4)
    assert bd.shape == (8, 12) and bd.nnz == 4 * 3 and bd.T.shape == (12, 8)
    assert np.array_equal(bd.tocsr().toarray(), np.kron(np.eye(4, dtype=W.dtype), W))
    for bad in (dict(block=W, n=0), dict(block=W, n=True), dict(block=np.ones(3), n=2)):
        with pytest.raises(ValueError, match="BlockDiagonal needs a 2-d block and n >= 1"):
            BlockDiagonal(**bad)


def _processes(graph) -> list:
    """Every process reachable from the graph's source, in breadth-first order."""
    seen, todo = [], [graph.source]
    while todo:
        p = todo.pop(0)
        if any(p is q for q in seen):
            continue
        seen.append(p)
        todo += [c.process for port in p.out_ports.members for c in port.out_connections]
    return seen


@needs_lava
@pytest.mark.parametrize("backend", ["lava-float", "lava-fxp"])
def test_connections_are_block_diagonal_and_processes_do_not_grow_with_the_batch(backend, float_model, fxp_model,
                                                                                  monkeypatch):
    """Built (not run) at B = 1 and 16: the same processes; lava-float's connections are lava-nc Sparse with B times
    the block's non-zeros, lava-fxp's hold one block; the dense kron helpers are never called."""
    from lava.proc.dense.process import Dense
    from lava.proc.sparse.process import Sparse
    from scipy import sparse as sp

    from s4dconf.backends import lava_graph
    from s4dconf.backends.lava_float import float_graph
    from s4dconf.backends.lava_fxp import fxp_graph
    from s4dconf.backends.lava_procs.process import FxpConnection

    def dense_kron(*args, **kwargs):
        raise AssertionError("a dense kron(I_N, W) was built for a simulator graph")

    for where, name in ((lava_graph, "batched"), (lava_graph, "fan_out"), (np, "kron")):
        monkeypatch.setattr(where, name, dense_kron)

    def build(B):
        if backend == "lava-float":
            return float_graph(float_model, np.zeros((B, 5, 1)))
        return fxp_graph(fxp_model, np.zeros((B, 5, 1), dtype=np.int64), [])

    kinds, weights = {}, {}
    for B in (1, 16):
        procs = _processes(build(B))
        kinds[B] = [type(p).__name__ for p in procs]
        assert not any(isinstance(p, Dense) for p in procs), "no dense weight matrix"
        conns = [p for p in procs if isinstance(p, (Sparse, FxpConnection))]
        assert len(conns) == 2 + 3 * CFG.n_layers, "encoder, decoder and three connections per layer"
        weights[B] = [c.weights.init for c in conns]
        for c, w in zip(conns, weights[B]):
            if backend == "lava-float":
                assert isinstance(c, Sparse) and sp.issparse(w), type(c).__name__
            else:
                assert isinstance(c, FxpConnection) and isinstance(w, np.ndarray)
                assert c.proc_params["blocks"] * w.shape[0] == c.a_out.shape[0], "one block, applied per slice"
    assert kinds[1] == kinds[16], "the batch changes the processes' shapes, not their number"
    for w1, w16 in zip(weights[1], weights[16]):
        if backend == "lava-float":  # kron(I_16, W): 16 times the entries of one stream's matrix, on the diagonal
            assert w16.nnz == 16 * w1.nnz and w16.shape == (16 * w1.shape[0], 16 * w1.shape[1])
            assert (w16 != sp.kron(sp.identity(16), w1)).nnz == 0
        else:  # the same one block
            assert np.array_equal(w16, w1)


# ---------------------------------------------------------------- lava-fxp: bit-exact per stream


@needs_lava
@pytest.mark.parametrize("B", BATCHES)
def test_lava_fxp_is_bit_exact_with_numpy_fxp_per_stream(B, fxp_model):
    """Every stream of a batch against numpy-fxp run on that stream alone: logits, every layer's y and every
    saturation count; the totals are the sums over the streams and equal numpy-fxp's batched run."""
    from s4dconf.backends.aligned import pad_for_delay
    from s4dconf.backends.lava_fxp import LavaFxpBackend, saturation_names
    from s4dconf.fixedpoint.engine import run_fxp

    backend = LavaFxpBackend(timeout_s=300)
    handle = backend.prepare(fxp_model)
    d = backend.delays(handle)
    u = pad_for_delay(loud_streams(B), d.max)
    got = backend.run_integers(handle, u)
    T, names = u.shape[1], saturation_names(CFG.n_layers)
    assert list(got.stream_saturations) == names
    assert all(c.shape == (B,) and c.dtype == np.int64 for c in got.stream_saturations.values())
    for n in range(B):
        want = run_fxp(fxp_model, u[n:n + 1])
        assert np.array_equal(got.step_logits[n, d.logits:], want.step_logits[0, :T - d.logits]), f"stream {n}"
        for i, y in enumerate(got.layer_y):
            assert np.array_equal(y[n, d.layer(i):], want.layer_y[i][0, :T - d.layer(i)]), f"stream {n} layer{i}.y"
        assert {k: int(v[n]) for k, v in got.stream_saturations.items()} == want.saturations, f"stream {n}"
    assert got.saturations == {k: int(v.sum()) for k, v in got.stream_saturations.items()}
    assert got.saturations == run_fxp(fxp_model, u).saturations
    loud = np.array([sum(int(v[n]) for v in got.stream_saturations.values()) for n in range(B)])
    assert loud.any(), f"the case must saturate: {got.saturations}"
    if B > 1:
        assert len(set(loud.tolist())) > 1, "streams must differ in their counts, or a mix-up would not show"


@needs_lava
def test_lava_fxp_run_reports_the_per_stream_counts_in_the_contract(fxp_model):
    """BackendRun.stream_saturations (SPEC.md 8, 16.5): per name (N,) counts summing to saturations[name]."""
    from s4dconf.backends.lava_fxp import LavaFxpBackend

    backend = LavaFxpBackend(timeout_s=300)
    run = backend.run(backend.prepare(fxp_model), loud_streams(3, 12), "lava")
    assert set(run.stream_saturations) == set(run.saturations)
    assert all(int(v.sum()) == run.saturations[k] for k, v in run.stream_saturations.items())


# ---------------------------------------------------------------- lava-float: the reference per stream


@needs_lava
@pytest.mark.parametrize("B", BATCHES)
def test_lava_float_agrees_with_the_reference_for_every_stream(B, float_model):
    from s4dconf.backends import get_backend
    from s4dconf.backends.aligned import aligned_run
    from s4dconf.conformance.harness import compare, load_tolerances, tolerance_for

    tol = tolerance_for(load_tolerances(), "float64", "noise")
    lava, ref = get_backend("lava-float"), get_backend("reference")
    u = np.random.default_rng(B).uniform(-1.0, 1.0, (B, 24, 1))
    got_logits, got_ys, _ = aligned_run(lava, lava.prepare(float_model), u, "lava", lava.info())
    want_logits, want_ys, _ = aligned_run(ref, ref.prepare(float_model), u, "recurrent", ref.info())
    for n in range(B):
        who = dict(backend="lava-float", case=f"B={B} stream {n}")
        recs = compare(got_logits[n:n + 1], want_logits[n:n + 1], tol, probe="step_logits", **who)
        for i, (y, y_ref) in enumerate(zip(got_ys, want_ys)):
            recs += compare(y[n:n + 1], y_ref[n:n + 1], tol, probe=f"layer{i}.y", **who)
        assert all(r.verdict == "pass" for r in recs), [r for r in recs if r.verdict != "pass"]


# ---------------------------------------------------------------- refusals of the batched processes


@needs_lava
def test_the_fixed_point_processes_refuse_what_they_cannot_run_exactly():
    from s4dconf.backends.lava_procs.process import FxpConnection, FxpNeuron

    with pytest.raises(ValueError, match=r"reaches 2\^53, past exact accumulation"):
        FxpConnection(weights=np.full((1, 2), 2**29, dtype=np.int64))
    with pytest.raises(TypeError, match="2-d integer array"):
        FxpConnection(weights=np.ones((2, 2)))
    with pytest.raises(ValueError, match="FxpConnection blocks must be a positive integer"):
        FxpConnection(weights=np.ones((2, 2), dtype=np.int64), blocks=0)
    with pytest.raises(ValueError, match="3 streams do not divide its 8 neurons"):
        FxpNeuron(shape=(8,), shift=0, relu=False, msg_bits=8, rounding="floor", streams=3)


@needs_lava
def test_a_graph_with_two_kinds_of_recorder_is_refused():
    from s4dconf.backends.lava_graph import LavaGraph, run_graph

    class _Ring:
        a_in = None

    class _Streamed:
        def receive(self):
            return None

    graph = LavaGraph(source=None, sink=_Streamed(), probes=[_Ring()], batch=1, steps=1, run_cfg=lambda: None,
                      delays=None)
    with pytest.raises(TypeError, match="recorders are of two kinds"):
        run_graph(graph)
