"""Bad input to the fixed-point model, its files, the quantiser and the numpy-fxp engine: an S4DInputError whose
message says what is wrong and where (SPEC.md section 14). Saturating inputs are not an error: they are counted."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from s4dconf.backends.numpy_fxp import FxpSession, NumpyFxpBackend
from s4dconf.fixedpoint.engine import FxpEngine, run_fxp
from s4dconf.reference.config import NAMED_CONFIGS
from s4dconf.fixedpoint.formats import FXP_SCHEMA, FxpFormat, FxpModel, format_from_profile, load_fxp, save_fxp
from s4dconf.reference.model import S4DModel, init_params
from s4dconf.reference.modelfile import MODEL_SCHEMA, load_model, save_model
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.validate import S4DInputError

TINY = NAMED_CONFIGS["tiny"]  # H=4, P=2, one layer, 10 classes, d_input=1, no D


@pytest.fixture(scope="module")
def tiny_float():
    return S4DModel.create(TINY, seed=0)


@pytest.fixture()
def fxp(tiny_float):
    """A fresh fixed-point model of `tiny` (default format) per test, so tests may take its arrays apart."""
    return quantize(tiny_float)


def with_arrays(m: FxpModel, **changes) -> FxpModel:
    """The model rebuilt (and so validated) with some integer arrays replaced; the others are copies."""
    arrays = {k: v.copy() for k, v in m.arrays.items()}
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return dataclasses.replace(m, arrays=arrays)


# ---------------------------------------------------------------- files of the other kind


def test_float_model_file_given_to_load_fxp(tiny_float, tmp_path):
    path = tmp_path / "float.npz"
    save_model(tiny_float, path)
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path} has schema {MODEL_SCHEMA!r}") + r".*"
                       + re.escape(f"this reader needs {FXP_SCHEMA!r}") + r".*float64 model file: quantise it first"):
        load_fxp(path)


def test_fixed_point_file_given_to_load_model(fxp, tmp_path):
    path = tmp_path / "fxp.npz"
    save_fxp(fxp, path)
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path} has schema {FXP_SCHEMA!r}") + r".*"
                       + r"fixed-point model file: give it to a fixed-point backend"):
        load_model(path)


def test_fxp_file_with_broken_exponents_names_the_file(fxp, tmp_path):
    """A file whose exponent record lacks a key is refused with the file's name, not a bare KeyError."""
    import json

    from s4dconf.reference.npzio import read_npz, write_npz

    path = tmp_path / "fxp.npz"
    save_fxp(fxp, path)
    arrays = read_npz(path)
    ex = json.loads(str(arrays["__exponents__"]))
    del ex["out_exp"]
    arrays["__exponents__"] = np.array(json.dumps(ex))
    write_npz(path, arrays)
    with pytest.raises(S4DInputError, match=re.escape(f"fixed-point model file {path}: KeyError") + r".*out_exp"):
        load_fxp(path)


# ---------------------------------------------------------------- exponents


@pytest.mark.parametrize("field, value, shown", [
    ("inp_exp", 65, "inp_exp = 65"),
    ("out_exp", -65, "out_exp = -65"),
    ("inp_exp", 3.0, "inp_exp = 3.0"),
    ("out_exp", True, "out_exp = True"),
    ("inp_exp", "3", "inp_exp = '3'"),
    ("act_exp", (12, 64.5), "act_exp[1] = 64.5"),
    ("act_exp", (-70, 12), "act_exp[0] = -70"),
])
def test_exponent_out_of_range_or_not_an_integer(fxp, field, value, shown):
    with pytest.raises(S4DInputError, match=re.escape(f"exponent {shown} is not an integer in [-64, 64]")):
        dataclasses.replace(fxp, **{field: value})


def test_weight_exponent_out_of_range(fxp):
    with pytest.raises(S4DInputError, match=re.escape("exponent w_exp[layer0] = 100 is not an integer in [-64, 64]")):
        dataclasses.replace(fxp, w_exp={**fxp.w_exp, "layer0": 100})


def test_exponent_edges_are_accepted(fxp):
    """-64 and 64 are inside the range (the model may still be refused for other reasons, but not this one)."""
    for value in (-64, 64):
        try:
            dataclasses.replace(fxp, out_exp=value)
        except S4DInputError as e:
            assert "is not an integer in [-64, 64]" not in str(e)


@pytest.mark.parametrize("act_exp", [(12,), (12, 12, 12), ()])
def test_act_exp_wrong_length(fxp, act_exp):
    pattern = re.escape(f"act_exp must have n_layers + 1 = 2 entries, got {len(act_exp)}")
    with pytest.raises(S4DInputError, match=pattern):
        dataclasses.replace(fxp, act_exp=act_exp)


def test_w_exp_missing_or_extra_keys(fxp):
    w = dict(fxp.w_exp)
    del w["decoder"]
    with pytest.raises(S4DInputError, match=re.escape("w_exp must have keys ['decoder', 'encoder', 'layer0'], "
                                                      "got ['encoder', 'layer0']")):
        dataclasses.replace(fxp, w_exp=w)
    with pytest.raises(S4DInputError, match=re.escape("got ['decoder', 'encoder', 'layer0', 'layer1']")):
        dataclasses.replace(fxp, w_exp={**fxp.w_exp, "layer1": 7})


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(msg_bits=40), r"msg_bits must be an integer in \[2, 32\], got 40"),
    (dict(state_bits=1), r"state_bits must be an integer in \[2, 32\], got 1"),
    (dict(weight_bits=17), r"weight_bits must be an integer in \[2, 16\], got 17"),
    (dict(frac_bits=0), r"frac_bits must be an integer in \[1, 24\], got 0"),
    (dict(msg_bits=24.0), r"msg_bits must be an integer in \[2, 32\], got 24\.0"),
    (dict(weight_bits=True), r"weight_bits must be an integer in \[2, 16\], got True"),
    (dict(frac_bits=12, coef_bits=13), r"coef_bits must be an integer in \[frac_bits \+ 2 = 14, 32\].*got 13"),
    (dict(frac_bits=20, coef_bits=33), r"coef_bits must be an integer in \[frac_bits \+ 2 = 22, 32\].*got 33"),
    (dict(rounding="nearest"), r"unknown rounding 'nearest'; known: floor, half_up, toward_zero"),
    (dict(rescale="per_neuron"), r"unknown rescale 'per_neuron'; known: per_sum, per_product"),
    (dict(saturation="wrap"), r"unknown saturation 'wrap'; known: asymmetric, symmetric"),
])
def test_format_fields_out_of_range(kwargs, pattern):
    with pytest.raises(S4DInputError, match=r"fixed-point format: " + pattern):
        FxpFormat(**kwargs)


def test_unknown_format_profile_names_the_known_ones():
    with pytest.raises(S4DInputError, match=r"unknown fixed-point format profile 'loihi3'; known: s4dconf-default, "
                                            r"loihi2-rf"):
        format_from_profile("loihi3")


def test_fxp_file_with_an_unknown_format_field_value_names_the_file(fxp, tmp_path):
    """A format JSON naming a rescale this version does not know is refused with the file and the field."""
    from s4dconf.reference.npzio import read_npz, write_npz

    path = tmp_path / "m.npz"
    save_fxp(dataclasses.replace(fxp, fmt=dataclasses.replace(fxp.fmt, rescale="per_product")), path)
    arrays = read_npz(path)
    arrays["__format__"] = np.array(str(arrays["__format__"]).replace("per_product", "per_channel"))
    write_npz(path, arrays)
    with pytest.raises(S4DInputError, match=re.escape(f"fixed-point model file {path}: ") + r".*unknown rescale "
                                            r"'per_channel'; known: per_sum, per_product"):
        load_fxp(path)


def test_format_too_wide_for_exact_arithmetic(tiny_float):
    """msg = state = coef = 32 bits: the state accumulator 2 * 2^31 * 2^31 + 2^31 * 2^31 = 3 * 2^62 = 2^63.6."""
    fmt = FxpFormat(msg_bits=32, state_bits=32, coef_bits=32, frac_bits=24)
    with pytest.raises(S4DInputError, match=r"format too wide for exact arithmetic: the bound of layer0 state "
                                            r"accumulator is 2\^63\.6 >= 2\^53"):
        quantize(tiny_float, fmt=fmt)


def test_shift_outside_its_range_is_refused(fxp):
    """A mixing shift of -40 would multiply the accumulator by 2^40: refused by name."""
    w = fxp.w_exp["layer0"] - fxp.shift_mixer(0) - 40
    with pytest.raises(S4DInputError, match=r"the layer0 mixer shift .* is -40, outside \[-32, 52\]"):
        dataclasses.replace(fxp, w_exp={**fxp.w_exp, "layer0": w})


def test_left_shift_too_large_for_exact_arithmetic(fxp):
    """A left shift within range can still push the mixing accumulator past 2^53: named, with its bound."""
    s = fxp.shift_mixer(0)
    with pytest.raises(S4DInputError, match=r"too wide for exact arithmetic: the bound of layer0 mixing accumulator "
                                            r"is 2\^\d+\.\d >= 2\^53"):
        dataclasses.replace(fxp, w_exp={**fxp.w_exp, "layer0": fxp.w_exp["layer0"] - s - 30})


# ---------------------------------------------------------------- integer arrays


def test_weight_outside_its_width(fxp):
    W = fxp.arrays["layer0.W"].copy()
    W[1, 2] = 200
    with pytest.raises(S4DInputError, match=r"fixed-point array layer0\.W has values in \[-?\d+, 200\], outside the "
                                            r"weight_bits=8 range \[-127, 127\]"):
        with_arrays(fxp, layer0__W=W)


def test_weight_minus_128_is_outside_the_symmetric_range(fxp):
    W = fxp.arrays["decoder.W"].copy()
    W[0, 0] = -128
    with pytest.raises(S4DInputError, match=r"decoder\.W has values in \[-128, -?\d+\].*\[-127, 127\]"):
        with_arrays(fxp, decoder__W=W)


def test_coefficient_outside_its_width(fxp):
    C = fxp.arrays["layer0.C_im"].copy()
    C[0, 1] = 2**15
    with pytest.raises(S4DInputError, match=r"layer0\.C_im has values in \[-?\d+, 32768\], outside the coef_bits=16 "
                                            r"range \[-32768, 32767\]"):
        with_arrays(fxp, layer0__C_im=C)


def test_float_array_instead_of_integers(fxp):
    with pytest.raises(S4DInputError, match=r"fixed-point array encoder\.W must be an integer array, "
                                            r"got dtype float64"):
        with_arrays(fxp, encoder__W=fxp.arrays["encoder.W"].astype(np.float64))


def test_wrong_shape(fxp):
    with pytest.raises(S4DInputError, match=re.escape("fixed-point array layer0.Bbar_re must have shape (4, 2), "
                                                      "got (4, 3)")):
        with_arrays(fxp, layer0__Bbar_re=np.zeros((4, 3), np.int64))


def test_missing_and_unexpected_arrays(fxp):
    with pytest.raises(S4DInputError, match=re.escape("missing ['layer0.Abar_im'], unexpected []")):
        with_arrays(fxp, layer0__Abar_im=None)
    with pytest.raises(S4DInputError, match=re.escape("missing [], unexpected ['layer0.D']")):
        with_arrays(fxp, layer0__D=np.zeros(4, np.int64))  # tiny has no D


def test_unstable_pole(fxp):
    """|Abar_q| >= 2^F: (4000 + 1000i) / 2^12 has magnitude 1.006."""
    ar, ai = fxp.arrays["layer0.Abar_re"].copy(), fxp.arrays["layer0.Abar_im"].copy()
    ar[2, 1], ai[2, 1] = 4000, 1000
    with pytest.raises(S4DInputError, match=re.escape("layer0 Abar[2, 1] = (4000 + 1000i) / 2^12 has |Abar| >= 1")):
        with_arrays(fxp, layer0__Abar_re=ar, layer0__Abar_im=ai)
    ar[2, 1], ai[2, 1] = 4096, 0  # exactly 1: no decay either
    with pytest.raises(S4DInputError, match=re.escape("layer0 Abar[2, 1] = (4096 + 0i) / 2^12 has |Abar| >= 1")):
        with_arrays(fxp, layer0__Abar_re=ar, layer0__Abar_im=ai)
    ar[2, 1], ai[2, 1] = 4095, 0  # just inside
    with_arrays(fxp, layer0__Abar_re=ar, layer0__Abar_im=ai)


# ---------------------------------------------------------------- the quantiser


def test_calibration_with_nan_names_the_index(tiny_float):
    calib = np.zeros((3, 10, 1))
    calib[1, 7, 0] = np.nan
    with pytest.raises(S4DInputError, match=r"calibration data contains 1 non-finite .*index \(1, 7, 0\)"):
        quantize(tiny_float, calib)


@pytest.mark.parametrize("shape, pattern", [
    ((10, 1), r"calibration data must have shape \(batch, length, d_input=1\), got rank 2 shape \(10, 1\)"),
    ((2, 10, 3), r"calibration data has d_input=3 in its last axis, the model expects 1"),
    ((2, 0, 1), r"calibration data must hold at least one sequence of at least one step"),
])
def test_calibration_of_the_wrong_shape(tiny_float, shape, pattern):
    with pytest.raises(S4DInputError, match=pattern):
        quantize(tiny_float, np.zeros(shape))


def test_readout_mean_is_refused(fxp):
    model = S4DModel.create(TINY.replace(name="averaging", readout="mean"), 0)
    with pytest.raises(S4DInputError, match=r"fixed-point models support readout 'last' only.*'mean'"):
        quantize(model)
    with pytest.raises(S4DInputError, match=r"support readout 'last' only"):
        dataclasses.replace(fxp, config=fxp.config.replace(readout="mean"))


def test_coefficient_too_large_for_coef_bits():
    """Re(C) = 100 at F = 12: 100 * 2^12 = 409600 < 2^19, so 20 signed bits hold it and 19 do not."""
    params = init_params(TINY, 0)
    params["layer0.C_re"] = params["layer0.C_re"].copy()
    params["layer0.C_re"][1, 0] = 100.0
    model = S4DModel(TINY, params)
    with pytest.raises(S4DInputError, match=r"layer0 Re\(C\): max \|value\| = 100 does not fit coef_bits=16 with 12 "
                                            r"fractional bits; use coef_bits >= 20"):
        quantize(model)
    quantize(model, fmt=FxpFormat(coef_bits=20))
    with pytest.raises(S4DInputError, match=r"layer0 Re\(C\).*does not fit coef_bits=19"):
        quantize(model, fmt=FxpFormat(coef_bits=19))


def test_suggested_coef_bits_for_a_huge_coefficient():
    """Im(C) = -1e20 at F = 12: 4.1e23 lies between 2^78 and 2^79, so 80 signed bits (not an int64 wrap-around)."""
    params = init_params(TINY, 0)
    params["layer0.C_im"] = params["layer0.C_im"].copy()
    params["layer0.C_im"][3, 1] = -1e20
    with pytest.raises(S4DInputError, match=r"layer0 Im\(C\): max \|value\| = 1e\+20 does not fit coef_bits=16 .*"
                                            r"use coef_bits >= 80"):
        quantize(S4DModel(TINY, params))


def test_suggested_coef_bits_at_a_power_of_two():
    """D = -8 at F = 12 is -2^15: exactly the 16-bit minimum. D = +8 is 2^15: one over, 17 bits needed."""
    cfg = TINY.replace(name="with-D", use_D=True)
    params = init_params(cfg, 0)
    params["layer0.D"] = np.clip(params["layer0.D"], -3.0, 3.0)
    params["layer0.D"][2] = -8.0
    quantize(S4DModel(cfg, params))  # fits
    params["layer0.D"][2] = 8.0
    with pytest.raises(S4DInputError, match=r"layer0 D: max \|value\| = 8 does not fit coef_bits=16 .*"
                                            r"use coef_bits >= 17"):
        quantize(S4DModel(cfg, params))


def test_numpy_fxp_backend_refuses_other_objects():
    with pytest.raises(S4DInputError, match=r"numpy-fxp needs an S4DModel or FxpModel, got dict"):
        NumpyFxpBackend().prepare({})


# ---------------------------------------------------------------- the engine


@pytest.mark.parametrize("vth", [-1.0, -1e-9, float("nan"), float("inf")])
def test_bad_sigma_delta_threshold(fxp, vth):
    pattern = re.escape(f"sigma-delta threshold vth must be a finite number >= 0, got {vth!r}")
    with pytest.raises(S4DInputError, match=pattern):
        FxpEngine(fxp, 1, vth)
    with pytest.raises(S4DInputError, match=pattern):
        run_fxp(fxp, np.zeros((1, 3, 1)), vth)
    with pytest.raises(S4DInputError, match=pattern):
        FxpSession(fxp, 1, vth)
    with pytest.raises(S4DInputError, match=pattern):
        NumpyFxpBackend(vth).run(fxp, np.zeros((1, 3, 1)), "integer")


def test_bad_inputs_to_run_and_session(fxp):
    u = np.zeros((1, 5, 1))
    u[0, 3, 0] = np.nan
    with pytest.raises(S4DInputError, match=r"input contains 1 non-finite .*index \(0, 3, 0\)"):
        run_fxp(fxp, u)
    with pytest.raises(S4DInputError, match=r"input has d_input=2 in its last axis, the model expects 1"):
        run_fxp(fxp, np.zeros((1, 5, 2)))
    s = FxpSession(fxp, 2)
    s.step(np.zeros((2, 1)))
    with pytest.raises(S4DInputError, match=re.escape("step input must have shape (2, 1), got (1, 1)")):
        s.step(np.zeros((1, 1)))
    with pytest.raises(S4DInputError, match=r"step input at t=1 contains 1 non-finite .*index \(1, 0\)"):
        s.step(np.array([[0.0], [np.inf]]))


def test_out_of_range_input_is_saturated_not_refused(fxp):
    """Inputs beyond what inp_exp can represent are clamped to the message width and counted, not an error."""
    big = 2.0 ** (fxp.fmt.msg_bits - fxp.inp_exp) * 4  # 4 x the largest representable magnitude
    u = np.zeros((2, 6, 1))
    u[0, 1, 0], u[1, 4, 0], u[1, 5, 0] = big, -big, 1e300
    r = run_fxp(fxp, u)
    assert r.saturations["input"] == 3
    assert np.abs(r.step_logits).max() <= 2 ** (fxp.fmt.msg_bits - 1)
    s = FxpSession(fxp, 2)
    s.run(u)
    assert s.get_state()["saturations"]["input"] == 3
    run = NumpyFxpBackend().run(fxp, u, "integer")
    assert run.saturations["input"] == 3 and np.isfinite(run.step_logits).all()


def test_abar_magnitude_check_does_not_overflow_at_32_coefficient_bits():
    # |Abar|^2 of two 32-bit coefficients does not fit int64 (it wrapped negative and passed): squared in uint64
    from s4dconf.fixedpoint.formats import abs_squared

    big = np.full(3, -(2 ** 31), dtype=np.int64)
    assert (abs_squared(big, big) == np.uint64(2 ** 63)).all()
    assert int((big * big + big * big)[0]) < 0  # what the int64 check computed
