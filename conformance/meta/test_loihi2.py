"""The loihi2 backend up to the hardware boundary: availability reasons, parameter conversion, graph building; and
the graph builder all Lava backends share (backends/lava_graph.py), with stand-in processes, so without Lava."""
import dataclasses

import numpy as np
import pytest

from s4dconf.backends.lava_runtime import lava_availability
from s4dconf.backends.loihi2 import LAVA_LOIHI_COMPILER, NXCORE, chip_parameters, hardware_availability
from s4dconf.goldens.store import GoldenSet
from s4dconf.reference.validate import S4DInputError

LAVA_OK = lambda: (True, "")  # noqa: E731


def _avail(environ, modules=(LAVA_LOIHI_COMPILER, NXCORE), sinfo=None, lava=LAVA_OK):
    return hardware_availability(environ=environ, module_exists=lambda m: m in modules,
                                 sinfo=sinfo or (lambda: None), lava=lava)


@pytest.mark.parametrize("environ,modules,sinfo,reason", [
    ({}, (), None, "lava-loihi is not installed"),
    ({}, (LAVA_LOIHI_COMPILER,), None, "nxcore"),
    ({}, None, None, "no Loihi 2 system is configured: set SLURM=1"),
    ({"NOSLURM": "1"}, None, None, "BOARD is not"),
    ({"SLURM": "1"}, None, None, "`sinfo` is not available"),
    ({"SLURM": "1"}, None, lambda: ["cpu", "gpu"], "sinfo lists no Loihi partition"),
])
def test_missing_pieces_are_named(environ, modules, sinfo, reason):
    av = _avail(environ, *([] if modules is None else [modules]), sinfo=sinfo)
    assert not av.available and reason in av.reason


@pytest.mark.parametrize("environ,sinfo", [
    ({"NOSLURM": "1", "BOARD": "ncl-ext-og-01"}, None),
    ({"SLURM": "1", "PARTITION": "oheogulch"}, None),
    ({"SLURM": "1"}, lambda: ["cpu", "oheogulch_2h*"]),
])
def test_complete_configuration_is_available(environ, sinfo):
    assert _avail(environ, sinfo=sinfo).available


def test_lava_missing_comes_first():
    av = _avail({"SLURM": "1", "PARTITION": "x"}, lava=lambda: (False, "lava-nc is not installed"))
    assert not av.available and av.reason == "lava-nc is not installed"


def test_this_machine_has_no_chip_and_says_why():
    av = hardware_availability()
    assert not av.available and av.reason, "no Loihi 2 system exists here: the backend must say so, with a reason"


@pytest.fixture(scope="module")
def fxp():
    return GoldenSet().fxp_model("small")


def test_chip_parameters_carry_the_integers_and_exponents(fxp):
    p = chip_parameters(fxp, batch=2)
    H, P = fxp.config.H, fxp.config.P
    assert p["encoder"]["weights"].shape == (2 * H, 2 * fxp.config.d_input)
    assert p["encoder"]["weight_exp"] == -fxp.shift_encoder
    for i, layer in enumerate(p["layers"]):
        a = layer["a"][: H * P].reshape(H, P)
        assert np.array_equal(a.real, fxp.arrays[f"layer{i}.Abar_re"])
        assert np.array_equal(a.imag, fxp.arrays[f"layer{i}.Abar_im"])
        assert np.array_equal(layer["a"][H * P:], layer["a"][: H * P]), "the batch repeats the neurons"
        assert layer["s4_exp"] == fxp.fmt.frac_bits and layer["inp_exp"] == fxp.act_exp[i]
        assert layer["mixer"]["weight_exp"] == -fxp.shift_mixer(i)
        assert layer["fan_out"].sum(axis=1).tolist() == [1] * (2 * H * P), "each neuron hears one channel"


@pytest.mark.parametrize("change,message", [
    (dict(msg_bits=32), "graded spikes carry 24 bits"),
    (dict(weight_bits=12), "8-bit"),
])
def test_formats_the_chip_cannot_carry_are_refused(fxp, change, message):
    fmt = dataclasses.replace(fxp.fmt, **change)
    arrays = {k: v.copy() for k, v in fxp.arrays.items()}
    m = dataclasses.replace(fxp, fmt=fmt, arrays=arrays)
    with pytest.raises(S4DInputError, match=message):
        chip_parameters(m)


def test_chip_graph_builds_in_lava():
    ok, reason = lava_availability()
    if not ok:
        pytest.skip(f"building the Lava graph needs lava-nc: {reason}")
    from s4dconf.backends.loihi2 import Loihi2Backend, build_chip_graph

    m = GoldenSet().fxp_model("tiny")
    graph = build_chip_graph(m, np.zeros((2, 5, 1), dtype=np.int64))
    assert graph.sink.a_in.shape == (2 * m.config.n_classes,)
    assert [p.a_in.shape for p in graph.probes] == [(2 * m.config.H,)] * m.config.n_layers
    assert (graph.batch, graph.steps) == (2, 5)
    assert graph.delays == Loihi2Backend().delays(m), "the chip graph as built has the delays the backend declares"


# ---------------------------------------------------------------- the graph builder of all Lava backends (no Lava)


class _Port:
    def __init__(self, proc, name):
        self.proc, self.name, self.targets = proc, name, []

    def connect(self, other):
        self.targets.append(other)


class _Proc:
    """A stand-in for a Lava process: the four ports the builder uses, and what it was made for."""

    def __init__(self, kind, site=None, size=None):
        self.kind, self.site, self.size = kind, site, size
        for port in ("s_in", "a_out", "a_in", "s_out"):
            setattr(self, port, _Port(self, port))


def _fake_parts(neurons):
    from s4dconf.backends.lava_graph import GraphParts

    return GraphParts(
        connection=lambda site, W: _Proc("conn", site, W.shape[0]), s4d=lambda site: _Proc("s4d", site),
        run_cfg=lambda: "cfg", neuron=lambda site: _Proc("neuron", site) if site.name in neurons else None,
        source=lambda data: _Proc("source", size=data.shape[0]), probe=lambda size, T: _Proc("probe", size=size),
        sink=lambda size, T: _Proc("sink", size=size))


def _walk(graph):
    """The chain from the source to the sink: (kind, name, layer, depth, size) per process, and the recorders
    hanging off each out port."""
    chain, port, taps = [], graph.source.s_out, {}
    while True:
        ins = [t for t in port.targets if t.proc.kind not in ("probe", "sink")]
        taps[len(chain)] = [t.proc.kind for t in port.targets if t.proc.kind in ("probe", "sink")]
        if not ins:
            return chain, taps
        assert len(ins) == 1 and ins[0].name in ("s_in", "a_in"), "one process follows each"
        p = ins[0].proc
        chain.append((p.kind, p.site.name, p.site.layer, p.site.depth, p.site.size))
        port = p.a_out if ins[0].name == "s_in" else p.s_out


@pytest.mark.parametrize("neurons", [("encoder", "relu", "block", "decoder"), ("relu", "block"), ()])
def test_the_graph_builder_wires_the_documented_graph_with_its_delays(neurons):
    """lava_graph.build_graph with stand-in processes: the documented chain, depths and sizes, whichever neuron
    places a backend fills (lava-fxp: all four, lava-float: relu and block, loihi2: none)."""
    from s4dconf.backends.lava_graph import GraphWeights, build_graph, lava_delays, time_major

    N, d, H, P, C, n = 2, 3, 4, 2, 5, 2
    rng = np.random.default_rng(0)
    arrays = {"encoder.W": rng.normal(size=(H, d)), "decoder.W": rng.normal(size=(C, H)),
              **{f"layer{i}.W": rng.normal(size=(H, H)) for i in range(n)}}
    graph = build_graph(time_major(np.zeros((N, 7, d))), GraphWeights.of(arrays, n, N, P), _fake_parts(neurons))
    want = [("conn", "encoder", None, 1, N * H), ("neuron", "encoder", None, 1, N * H)]
    for i in range(n):
        want += [("conn", "fan_out", i, 2 + 3 * i, N * H * P), ("s4d", "s4d", i, 2 + 3 * i, N * H * P),
                 ("conn", "fan_in", i, 3 + 3 * i, N * H), ("neuron", "relu", i, 3 + 3 * i, N * H),
                 ("conn", "mixer", i, 4 + 3 * i, N * H), ("neuron", "block", i, 4 + 3 * i, N * H)]
    want += [("conn", "decoder", None, 3 * n + 2, N * C), ("neuron", "decoder", None, 3 * n + 2, N * C)]
    want = [w for w in want if w[0] != "neuron" or w[1] in neurons]
    chain, taps = _walk(graph)
    assert chain == want
    probed = [chain[k - 1][1:3] for k, kinds in taps.items() if "probe" in kinds]
    assert probed == [("fan_in", i) for i in range(n)], "each probe reads a fan-in's output"
    assert taps[len(chain)] == ["sink"] and graph.sink.size == N * C
    assert [p.size for p in graph.probes] == [N * H] * n and graph.source.size == N * d
    assert (graph.batch, graph.steps, graph.run_cfg()) == (N, 7, "cfg")
    assert graph.delays == lava_delays(n) == type(graph.delays)(layers=(3, 6), logits=8)


def test_the_graph_weights_are_the_batch_side_by_side():
    """GraphWeights.of holds each connection as one block (BlockDiagonal): its csr form is kron(I_N, W), stored
    sparse; the chip's dense helpers (batched, fan_out) give the same matrices."""
    from scipy import sparse as sp

    from s4dconf.backends.lava_graph import (BlockDiagonal, GraphWeights, batch_neurons, batched, fan_out,
                                             per_sequence, time_major)

    N, P = 3, 2
    arrays = {"encoder.W": np.arange(6, dtype=np.int64).reshape(2, 3) - 2, "layer0.W": np.array([[1, -2], [3, 4]]),
              "decoder.W": np.array([[5, -6]])}
    w = GraphWeights.of(arrays, 1, N, P)
    dense = {"encoder": batched(arrays["encoder.W"], N), "fan_out": fan_out(N * 2, P, np.int64),
             "mixer": batched(arrays["layer0.W"], N), "decoder": batched(arrays["decoder.W"], N)}
    for name, W in (("encoder", w.encoder), ("fan_out", w.fan_out), ("mixer", w.mixers[0]), ("decoder", w.decoder)):
        assert isinstance(W, BlockDiagonal) and W.shape == dense[name].shape, name
        csr = W.tocsr()
        assert sp.issparse(csr) and csr.nnz == W.nnz == np.count_nonzero(dense[name]), name
        assert np.array_equal(csr.toarray(), dense[name]) and csr.dtype == np.int64, name
        assert np.array_equal(W.T.tocsr().toarray(), dense[name].T), name
    assert np.array_equal(dense["encoder"], np.kron(np.eye(N, dtype=np.int64), arrays["encoder.W"]))
    assert np.array_equal(dense["fan_out"], np.kron(np.eye(N * 2), np.ones((P, 1)))), "channel h drives P modes"
    assert w.fan_out.n == N * 2 and w.fan_out.block.shape == (P, 1), "one block per channel of every stream"
    assert np.array_equal(batch_neurons(np.array([[1, 2], [3, 4]]), 2), [1, 2, 3, 4, 1, 2, 3, 4])
    u = np.arange(2 * 4 * 3).reshape(2, 4, 3)
    data = time_major(u, steps=6)
    assert data.shape == (6, 6) and not data[:, 4:].any() and data[3 + 1, 2] == u[1, 2, 1]
    assert np.array_equal(per_sequence(data, 2)[:, :4], u), "the records are read back per sequence"


def _fake_version(version):
    def fake(name):
        if version is None:
            import importlib.metadata

            raise importlib.metadata.PackageNotFoundError(name)
        return version
    return fake


@pytest.mark.parametrize("version,message", [
    (None, "lava-nc is not installed in this environment; run the Lava backends with `tox -e lava`"),
    ("0.9.0", "lava-nc 0.9.0 is installed, this code supports 0.10.x; use `tox -e lava`"),
])
def test_lava_missing_or_other_version_names_the_tox_env(monkeypatch, version, message):
    import s4dconf.backends.lava_runtime as lr

    monkeypatch.setattr(lr.importlib.metadata, "version", _fake_version(version))
    ok, reason = lr.lava_availability()
    assert not ok and message in reason
