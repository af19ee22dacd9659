"""Format profiles and the later format fields (SPEC.md 14.1, 14.8, 14.9): the default profile is the default format
and writes the six-field JSON that every stored file and fxp_sha256 were made with; a profile is chosen by name in
PTQ and on the command line, with single fields replaced; a profile's format survives its model file; and the
engine's one-mode state sequence (`mode_states`, what the check against lava-nc's RF neuron uses) is the state
of 14.3 step 3a as the literal statement computes it, under every rounding, rescale and saturation."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s4dconf import cli
from s4dconf.fixedpoint.engine import mode_states, run_fxp
from s4dconf.fixedpoint.formats import (FORMAT_PROFILES, RESCALE_MODES, ROUNDING_MODES, SATURATION_MODES,
                                        FxpFormat, format_from_profile, fxp_digest, load_fxp, save_fxp)
from s4dconf.fixedpoint.literal import literal_step
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.config import ModelConfig
from s4dconf.reference.model import S4DModel
from s4dconf.reference.modelfile import save_model
from s4dconf.reference.validate import S4DInputError

SIX_FIELDS = ["coef_bits", "frac_bits", "msg_bits", "rounding", "state_bits", "weight_bits"]


def test_default_profile_is_the_default_format_and_its_json_has_the_six_fields():
    """The JSON of SPEC.md 14.8, key for key: the stored goldens' fxp_sha256 were computed over it."""
    assert FORMAT_PROFILES["s4dconf-default"] == FxpFormat() == format_from_profile()
    assert FxpFormat().to_json() == ('{"coef_bits": 16, "frac_bits": 12, "msg_bits": 24, "rounding": "floor", '
                                     '"state_bits": 24, "weight_bits": 8}')
    assert sorted(json.loads(FxpFormat(rounding="toward_zero").to_json())) == SIX_FIELDS


def test_rf_profile_fields_and_json():
    rf = FORMAT_PROFILES["loihi2-rf"]
    assert (rf.rounding, rf.rescale, rf.saturation, rf.state_bits, rf.frac_bits) == (
        "toward_zero", "per_product", "symmetric", 24, 12)
    d = json.loads(rf.to_json())
    assert d["rescale"] == "per_product" and d["saturation"] == "symmetric"
    assert FxpFormat(**d) == rf


def test_profile_overrides_replace_single_fields():
    f = format_from_profile("loihi2-rf", rounding="floor", msg_bits=None)
    assert f == dataclasses.replace(FORMAT_PROFILES["loihi2-rf"], rounding="floor")


@pytest.fixture(scope="module")
def tiny_float():
    return S4DModel.create(ModelConfig(name="profiles", H=3, P=2, n_layers=2, n_classes=3, use_D=True), 4)


def test_quantize_by_profile_name_and_model_file_round_trip(tiny_float, tmp_path):
    """PTQ takes a profile name; the model file keeps the format, the digest sees it, and the run differs from
    the default profile's (the conventions change the integers)."""
    m = quantize(tiny_float, fmt="loihi2-rf")
    assert m.fmt == FORMAT_PROFILES["loihi2-rf"]
    save_fxp(m, tmp_path / "rf.npz")
    back = load_fxp(tmp_path / "rf.npz")
    assert back.fmt == m.fmt and fxp_digest(back) == fxp_digest(m)
    d = quantize(tiny_float)
    assert fxp_digest(d) != fxp_digest(m)
    u = np.random.default_rng(2).standard_normal((2, 64, 1))
    assert not np.array_equal(run_fxp(m, u).step_logits, run_fxp(d, u).step_logits)


def test_cli_quantize_profile_with_an_override(tiny_float, tmp_path, capsys):
    save_model(tiny_float, tmp_path / "f.npz")
    rc = cli.main(["quantize", str(tmp_path / "f.npz"), "--out", str(tmp_path / "q.npz"), "--profile", "loihi2-rf",
                   "--saturation", "asymmetric"])
    assert rc == 0
    assert load_fxp(tmp_path / "q.npz").fmt == dataclasses.replace(FORMAT_PROFILES["loihi2-rf"],
                                                                   saturation="asymmetric")
    assert '"rescale": "per_product"' in capsys.readouterr().out


def test_cli_quantize_refuses_an_unknown_profile(tiny_float, tmp_path, capsys):
    save_model(tiny_float, tmp_path / "f.npz")
    rc = cli.main(["quantize", str(tmp_path / "f.npz"), "--out", str(tmp_path / "q.npz"), "--profile", "loihi3"])
    assert rc == 2
    assert "invalid choice: 'loihi3'" in capsys.readouterr().err


# ---------------------------------------------------------------- mode_states == the literal step 3a


def one_mode_model(fmt: FxpFormat, A: complex, B: complex):
    """A model of one channel and one mode whose encoder passes u_q through unchanged (W = 1, shift 0), so the
    block input v of layer 0 is u_q; its Abar, Bbar are A, B (integers, F fractional bits)."""
    cfg = ModelConfig(name="one-mode", H=1, P=1, n_layers=1, n_classes=1, activation="identity")
    m = quantize(S4DModel.create(cfg, 0), fmt=dataclasses.replace(fmt, coef_bits=fmt.frac_bits + 4))
    arrays = dict(m.arrays)
    arrays["encoder.W"] = np.ones((1, 1), np.int64)
    arrays["layer0.Abar_re"], arrays["layer0.Abar_im"] = (np.full((1, 1), int(v), np.int64) for v in (A.real, A.imag))
    arrays["layer0.Bbar_re"], arrays["layer0.Bbar_im"] = (np.full((1, 1), int(v), np.int64) for v in (B.real, B.imag))
    return dataclasses.replace(m, arrays=arrays, w_exp={**m.w_exp, "encoder": m.act_exp[0] - m.inp_exp})


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(rounding=st.sampled_from(ROUNDING_MODES), rescale=st.sampled_from(RESCALE_MODES),
       saturation=st.sampled_from(SATURATION_MODES), state_bits=st.integers(12, 24),
       ar=st.integers(-4095, 4095), ai=st.integers(-4095, 4095), br=st.integers(-8191, 8191),
       bi=st.integers(-8191, 8191), seed=st.integers(0, 2**16))
def test_mode_states_equal_the_literal_step(rounding, rescale, saturation, state_bits, ar, ai, br, bi, seed):
    fmt = FxpFormat(state_bits=state_bits, rounding=rounding, rescale=rescale, saturation=saturation)
    if ar * ar + ai * ai >= 1 << (2 * fmt.frac_bits):
        ar, ai = ar // 2, ai // 2  # keep |Abar| < 1, as validation requires
    m = one_mode_model(fmt, complex(ar, ai), complex(br, bi))
    rng = np.random.default_rng(seed)
    v = np.round(rng.standard_normal((3, 24)) * 2.0 ** rng.integers(0, 23)).clip(-(2**23) + 1, 2**23 - 1)
    v = v.astype(np.int64)
    got = mode_states(m.fmt, complex(ar, ai), complex(br, bi), v)
    state, counts = [(np.zeros((3, 1, 1), np.int64),) * 2], {}
    for k in range(v.shape[1]):
        state, _, _ = literal_step(m, state, v[:, k:k + 1], counts)
        xr, xi = state[0]
        assert np.array_equal(got[:, k].real, xr[:, 0, 0]) and np.array_equal(got[:, k].imag, xi[:, 0, 0]), k


@pytest.mark.parametrize("field, value", [("rescale", "per_product"), ("saturation", "symmetric"),
                                          ("rounding", "toward_zero")])
def test_implementations_of_the_default_conventions_refuse_other_choices(tiny_float, field, value):
    """lava-fxp, the chip and QAFT's forward pass do the default profile's arithmetic only: a model file that says
    otherwise is refused by name, never run with other arithmetic (SPEC.md 14.9)."""
    from s4dconf.backends.lava_fxp import LavaFxpBackend
    from s4dconf.backends.loihi2 import Loihi2Backend

    m = quantize(S4DModel.create(ModelConfig(name="p", H=3, P=2, n_layers=1, n_classes=3), 4),
                 fmt=dataclasses.replace(FxpFormat(), **{field: value}))
    for backend, who in ((LavaFxpBackend(), "lava-fxp"), (Loihi2Backend(), "loihi2")):
        with pytest.raises(S4DInputError, match=f"{who}: {field} '{value}' is not implemented"):
            backend.prepare(m)
    torch = pytest.importorskip("torch", reason="QAFT's forward pass needs torch (py311 env)")
    assert torch
    from s4dconf.training.qaft import QaftScales

    with pytest.raises(S4DInputError, match=f"QAFT's forward pass: {field} '{value}' is not implemented"):
        QaftScales.from_fxp(m)
    QaftScales.from_fxp(quantize(tiny_float))  # the default conventions are accepted
