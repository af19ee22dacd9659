"""The loihi2 backend up to the hardware boundary: availability reasons, parameter conversion, graph building."""
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
    from s4dconf.backends.loihi2 import build_chip_graph

    m = GoldenSet().fxp_model("tiny")
    src, sink, probes = build_chip_graph(m, np.zeros((2, 5, 1), dtype=np.int64))
    assert sink.a_in.shape == (2 * m.config.n_classes,)
    assert [p.a_in.shape for p in probes] == [(2 * m.config.H,)] * m.config.n_layers


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
