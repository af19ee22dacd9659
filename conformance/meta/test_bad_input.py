"""Every bad input gets an S4DInputError whose message says what is wrong and where."""
from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from s4dconf.backends import REGISTRY, get_backend
from s4dconf.goldens import store as golden
from s4dconf.reference.config import ACTIVATIONS, NAMED_CONFIGS, READOUTS, ModelConfig, get_config
from s4dconf.reference.init import INITS
from s4dconf.reference.inputs import FAMILIES, make_input
from s4dconf.reference.model import S4DModel, init_params, validate_params
from s4dconf.reference.modelfile import MODEL_SCHEMA, load_model, save_model
from s4dconf.reference.npzio import read_npz, write_npz
from s4dconf.reference.s4d import DISCRETIZATIONS, discretize, discretize_bilinear, discretize_zoh
from s4dconf.reference.validate import S4DInputError

TINY = NAMED_CONFIGS["tiny"]


def known_list(names) -> str:
    """The 'known: a, b, c' tail of a message, as a regex."""
    return re.escape("known: " + ", ".join(names))


@pytest.fixture(scope="module")
def tiny():
    return S4DModel.create(TINY, seed=0)


def test_error_class_is_a_value_error():
    assert issubclass(S4DInputError, ValueError)
    assert issubclass(golden.GoldenError, S4DInputError)


# ---------------------------------------------------------------- NaN / Inf in inputs


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("mode", ["conv", "recurrent"])
def test_forward_names_first_non_finite_index(tiny, bad, mode):
    u = np.zeros((3, 7, 1))
    u[1, 4, 0] = bad
    u[2, 1, 0] = bad  # later in C order: (1, 4, 0) is the first
    with pytest.raises(S4DInputError, match=r"input contains 2 non-finite .*first at index \(1, 4, 0\)"):
        tiny.forward(u, mode=mode)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_step_names_time_and_index(tiny, bad):
    s = tiny.session(batch=2)
    s.step(np.zeros((2, 1)))
    s.step(np.ones((2, 1)))
    u_t = np.zeros((2, 1))
    u_t[1, 0] = bad
    with pytest.raises(S4DInputError, match=r"step input at t=2 contains 1 non-finite .*index \(1, 0\)"):
        s.step(u_t)


@pytest.mark.parametrize("bad", [np.nan, -np.inf], ids=["nan", "-inf"])
def test_session_run_names_first_bad_index(tiny, bad):
    s = tiny.session(batch=2)
    chunk = np.zeros((2, 6, 1))
    chunk[0, 5, 0] = bad
    with pytest.raises(S4DInputError, match=r"chunk contains 1 non-finite .*index \(0, 5, 0\)"):
        s.run(chunk)


# ---------------------------------------------------------------- NaN / Inf in parameters


@pytest.mark.parametrize("name", ["encoder.W", "layer0.a_re", "layer0.C_im", "layer0.log_dt", "decoder.W"])
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_poisoned_parameter_is_named(name, bad):
    params = init_params(TINY, 0)
    a = params[name].copy()
    a.flat[a.size - 1] = bad
    params[name] = a
    last = tuple(int(i) for i in np.unravel_index(a.size - 1, a.shape))
    with pytest.raises(S4DInputError, match=re.escape(f"parameter {name} contains 1 non-finite") + r".*"
                       + re.escape(f"index {last}")):
        S4DModel(TINY, params)


def test_a_re_minus_inf_is_refused_by_name():
    params = init_params(TINY, 0)
    params["layer0.a_re"] = params["layer0.a_re"].copy()
    params["layer0.a_re"][2, 1] = -np.inf
    with pytest.raises(S4DInputError, match=r"parameter layer0\.a_re contains .*non-finite.*index \(2, 1\)"):
        validate_params(TINY, params)


def test_a_re_underflow_gives_re_a_zero():
    """A finite a_re far below -745 makes exp(a_re) = 0: Re(A) = 0, an unstable mode."""
    cfg = TINY.replace(name="two", n_layers=2)
    params = init_params(cfg, 0)
    params["layer1.a_re"] = params["layer1.a_re"].copy()
    params["layer1.a_re"][3, 0] = -1000.0
    with pytest.raises(S4DInputError, match=r"layer1\.a_re\[3, 0\] = -1000.0 is outside .*Re\(A\) = -exp\(a_re\) would be 0"):
        validate_params(cfg, params)
    with pytest.raises(S4DInputError, match=r"layer1\.a_re\[3, 0\]"):
        S4DModel(cfg, params)


@pytest.mark.parametrize("key,value", [("a_re", 800.0), ("log_dt", -800.0), ("log_dt", 710.0)])
def test_exp_range_of_a_re_and_log_dt_is_checked_by_name(key, value):
    """Overflowing a_re or an extreme log_dt is named as the parameter, not found later as 'A non-finite'."""
    params = init_params(TINY, 0)
    params[f"layer0.{key}"] = params[f"layer0.{key}"].copy()
    params[f"layer0.{key}"].flat[1] = value
    with pytest.raises(S4DInputError, match=rf"parameter layer0\.{key}\[.*\] = {value!r} is outside"):
        S4DModel(TINY, params)


def test_parameter_set_problems_are_named():
    params = init_params(TINY, 0)
    missing = {k: v for k, v in params.items() if k != "layer0.W"}
    with pytest.raises(S4DInputError, match=r"'tiny'.*missing.*\['layer0\.W'\]"):
        S4DModel(TINY, missing)
    with pytest.raises(S4DInputError, match=r"unexpected .*\['layer0\.D'\]"):
        S4DModel(TINY, {**params, "layer0.D": np.zeros(TINY.H)})
    with pytest.raises(S4DInputError, match=r"parameter layer0\.W must have shape \(4, 4\), got \(4, 5\)"):
        S4DModel(TINY, {**params, "layer0.W": np.zeros((4, 5))})
    with pytest.raises(S4DInputError, match=r"parameter decoder\.W must be float64, got float32"):
        S4DModel(TINY, {**params, "decoder.W": params["decoder.W"].astype(np.float32)})


# ---------------------------------------------------------------- input shapes and dtypes


@pytest.mark.parametrize(
    "u, pattern",
    [
        (np.zeros((5, 1)), r"shape \(batch, length, d_input=1\), got rank 2 shape \(5, 1\)"),
        (np.zeros((1, 1, 5, 1)), r"got rank 4"),
        (np.zeros((1, 5, 3)), r"input has d_input=3 in its last axis, the model expects 1"),
        (np.zeros((1, 0, 1)), r"at least one step, got shape \(1, 0, 1\)"),
        (np.zeros((0, 4, 1)), r"at least one sequence.*\(0, 4, 1\)"),
        (np.zeros((1, 5, 1), dtype=np.complex128), r"real numeric array, got dtype complex128"),
        (np.zeros((1, 5, 1), dtype=bool), r"real numeric array, got dtype bool"),
        (np.array([[[{}]]], dtype=object), r"real numeric array, got dtype object"),
        (np.array([[["1.0"]]]), r"real numeric array, got dtype <U3"),
    ],
    ids=["rank2", "rank4", "d_input", "no-steps", "no-seq", "complex", "bool", "object", "str"],
)
def test_forward_refuses_bad_arrays(tiny, u, pattern):
    with pytest.raises(S4DInputError, match=pattern):
        tiny.forward(u)


def test_forward_accepts_integer_input(tiny):
    out = tiny.forward(np.ones((1, 5, 1), dtype=np.int32))
    assert np.array_equal(out.step_logits, tiny.forward(np.ones((1, 5, 1))).step_logits)


def test_forward_unknown_mode(tiny):
    with pytest.raises(S4DInputError, match=r"unknown mode 'fft'; " + known_list(["conv", "recurrent"])):
        tiny.forward(np.zeros((1, 3, 1)), mode="fft")


@pytest.mark.parametrize("shape", [(1, 1), (2,), (2, 1, 1), (2, 2)])
def test_step_wrong_shape(tiny, shape):
    s = tiny.session(batch=2)
    with pytest.raises(S4DInputError, match=re.escape(f"shape (batch=2, d_input=1), got {shape}")):
        s.step(np.zeros(shape))


def test_run_wrong_batch_and_width(tiny):
    s = tiny.session(batch=2)
    with pytest.raises(S4DInputError, match=r"chunk has batch 3, the session was opened for 2"):
        s.run(np.zeros((3, 4, 1)))
    with pytest.raises(S4DInputError, match=r"chunk has d_input=2 .* expects 1"):
        s.run(np.zeros((2, 4, 2)))
    with pytest.raises(S4DInputError, match=r"chunk must be a real numeric array, got dtype complex128"):
        s.run(np.zeros((2, 4, 1), dtype=complex))


@pytest.mark.parametrize("batch", [0, -1, True, 1.5])
def test_session_bad_batch(tiny, batch):
    with pytest.raises(S4DInputError, match=re.escape(f"batch must be a positive integer, got {batch!r}")):
        tiny.session(batch=batch)


@pytest.mark.parametrize("seed", [-1, 1.0, True, "0"])
def test_bad_seed(seed):
    with pytest.raises(S4DInputError, match=re.escape(f"seed must be a non-negative integer, got {seed!r}")):
        S4DModel.create(TINY, seed)


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("field", ["d_input", "H", "P", "n_layers", "n_classes"])
@pytest.mark.parametrize("value", [0, -3, 2.0, True, "4", None])
def test_config_sizes_must_be_positive_ints(field, value):
    with pytest.raises(S4DInputError, match=re.escape(f"config 'mine': {field} must be a positive integer, "
                                                      f"got {value!r}")):
        ModelConfig(name="mine", **{field: value})


@pytest.mark.parametrize(
    "dt_min, dt_max",
    [(0.0, 0.1), (-0.01, 0.1), (0.2, 0.1), (0.001, float("inf")), (float("nan"), 0.1)],
)
def test_config_dt_range(dt_min, dt_max):
    with pytest.raises(S4DInputError, match=r"config 'mine': need 0 < dt_min <= dt_max < inf, got "
                                            + re.escape(f"dt_min={dt_min}, dt_max={dt_max}")):
        ModelConfig(name="mine", dt_min=dt_min, dt_max=dt_max)


@pytest.mark.parametrize("field", ["dt_min", "dt_max"])
@pytest.mark.parametrize("value", ["0.01", None, True])
def test_config_dt_must_be_numbers(field, value):
    with pytest.raises(S4DInputError, match=re.escape(f"config 'mine': {field} must be a number, got {value!r}")):
        ModelConfig(name="mine", **{field: value})


def test_config_equal_dt_bounds_are_fine():
    assert ModelConfig(dt_min=0.01, dt_max=0.01).dt_max == 0.01


@pytest.mark.parametrize(
    "field, known",
    [("init", INITS), ("discretization", DISCRETIZATIONS), ("activation", ACTIVATIONS), ("readout", READOUTS)],
)
def test_config_unknown_names_list_known(field, known):
    with pytest.raises(S4DInputError, match=re.escape(f"config 'mine': unknown {field} 'bogus'; ")
                       + known_list(known)):
        ModelConfig(name="mine", **{field: "bogus"})


def test_config_use_d_must_be_bool():
    with pytest.raises(S4DInputError, match=r"use_D must be true or false, got 1"):
        ModelConfig(use_D=1)


def test_get_config_lists_known():
    with pytest.raises(S4DInputError, match=r"unknown config 'nope'; " + known_list(NAMED_CONFIGS)):
        get_config("nope")


def test_config_json_problems():
    with pytest.raises(S4DInputError, match=r"unknown field\(s\) \['colour'\]"):
        ModelConfig.from_json(json.dumps({"H": 4, "colour": "red"}))
    with pytest.raises(S4DInputError, match=r"not valid JSON"):
        ModelConfig.from_json("{H: 4")
    with pytest.raises(S4DInputError, match=r"config JSON must be a JSON object, got list"):
        ModelConfig.from_json("[1, 2]")


def test_get_backend_lists_known():
    with pytest.raises(S4DInputError, match=r"unknown backend 'nope'; " + known_list(REGISTRY)):
        get_backend("nope")


def test_make_input_unknown_family_lists_known():
    with pytest.raises(S4DInputError, match=r"unknown input family 'nope'; " + known_list(FAMILIES)):
        make_input("nope")


def test_digits_family_needs_one_input():
    with pytest.raises(S4DInputError, match=r"family 'digits' is 1-dimensional .*expects d_input=3"):
        make_input("digits", d_input=3)


# ---------------------------------------------------------------- discretisation


def _system(H=3, P=2):
    A = -0.5 + 1j * np.arange(H * P).reshape(H, P)
    B = np.ones((H, P), dtype=complex)
    dt = np.full(H, 0.01)
    return A, B, dt


DISCRETIZE_FUNCS = [discretize_zoh, discretize_bilinear, lambda A, B, dt: discretize(A, B, dt, "bilinear")]


@pytest.fixture(params=DISCRETIZE_FUNCS, ids=["zoh", "bilinear", "dispatch"])
def disc(request):
    return request.param


@pytest.mark.parametrize("bad_dt", [0.0, -0.5])
def test_discretize_dt_names_channel(disc, bad_dt):
    A, B, dt = _system()
    dt[2] = bad_dt
    with pytest.raises(S4DInputError, match=r"dt must be > 0 for every channel; dt\[2\] = "):
        disc(A, B, dt)


@pytest.mark.parametrize("re_a", [0.0, 0.25])
def test_discretize_unstable_a_names_index(disc, re_a):
    A, B, dt = _system()
    A[1, 1] = re_a + 3j
    with pytest.raises(S4DInputError, match=r"Re\(A\) must be < 0 .*A\[1, 1\]"):
        disc(A, B, dt)


def test_discretize_shape_mismatch(disc):
    A, B, dt = _system()
    with pytest.raises(S4DInputError, match=r"B must have shape \(3, 2\), got \(3, 3\)"):
        disc(A, np.ones((3, 3)), dt)
    with pytest.raises(S4DInputError, match=r"dt must have shape \(3\), got \(2,\)"):
        disc(A, B, dt[:2])
    with pytest.raises(S4DInputError, match=r"A must have shape \(H, P\), got shape \(6,\)"):
        disc(A.ravel(), B.ravel(), dt)


def test_discretize_non_finite_names_array(disc):
    A, B, dt = _system()
    B[0, 1] = np.nan
    with pytest.raises(S4DInputError, match=r"B contains 1 non-finite .*index \(0, 1\)"):
        disc(A, B, dt)


def test_discretize_unknown_method():
    A, B, dt = _system()
    with pytest.raises(S4DInputError, match=r"unknown discretization 'euler'; " + known_list(DISCRETIZATIONS)):
        discretize(A, B, dt, "euler")


# ---------------------------------------------------------------- model files


@pytest.fixture
def model_file(tmp_path, tiny):
    path = tmp_path / "tiny.npz"
    save_model(tiny, path)
    return path


def _rewrite(src: Path, dst: Path, **changes) -> Path:
    """Copy a model file, replacing (value) or deleting (None) entries."""
    arrays = read_npz(src)
    for k, v in changes.items():
        k = k.replace("__dot__", ".")
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    write_npz(dst, arrays)
    return dst


def test_model_file_sanity(model_file, tiny):
    """The untouched file loads (the other model-file tests change exactly one thing)."""
    assert load_model(model_file).config == tiny.config


def test_model_file_other_schema(model_file, tmp_path):
    path = _rewrite(model_file, tmp_path / "v2.npz", __schema__=np.array("s4dconf-model-float64/2"))
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path} has schema 's4dconf-model-float64/2', "
                                                      f"this reader needs {MODEL_SCHEMA!r}")):
        load_model(path)


def test_model_file_fixed_point_schema_hints_backend(model_file, tmp_path):
    path = _rewrite(model_file, tmp_path / "fxp.npz", __schema__=np.array("s4dconf-model-fixed/1"))
    with pytest.raises(S4DInputError, match=r"fixed-point backend"):
        load_model(path)


def test_model_file_without_schema(model_file, tmp_path):
    path = _rewrite(model_file, tmp_path / "noschema.npz", __schema__=None)
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path} has no '__schema__' entry")):
        load_model(path)


def test_model_file_schema_not_a_string(model_file, tmp_path):
    path = _rewrite(model_file, tmp_path / "numschema.npz", __schema__=np.array(1.0))
    with pytest.raises(S4DInputError, match=re.escape(f"{path}: entry '__schema__' must be a string")):
        load_model(path)


def test_model_file_missing_array(model_file, tmp_path):
    path = _rewrite(model_file, tmp_path / "missing.npz", layer0__dot__B_im=None)
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path} lacks array(s) ['layer0.B_im']")):
        load_model(path)


def test_model_file_not_npz(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("this is not an archive\n")
    with pytest.raises(S4DInputError, match=re.escape(f"model file {text} is not a .npz archive")):
        load_model(text)
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(S4DInputError, match=re.escape(f"model file {npy} is not a .npz archive")):
        load_model(npy)


def test_model_file_zip_without_npy_members(tmp_path):
    path = tmp_path / "plain.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path}: member 'readme.txt' is not a .npy array")):
        load_model(path)


def test_model_file_truncated(model_file, tmp_path):
    path = tmp_path / "cut.npz"
    path.write_bytes(model_file.read_bytes()[:-200])
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path} is not a")):
        load_model(path)


def test_model_file_missing_path(tmp_path):
    path = tmp_path / "nowhere" / "model.npz"
    with pytest.raises(S4DInputError, match=re.escape(f"model file not found: {path}")):
        load_model(path)


def test_model_file_object_array_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{}], dtype=object))
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path}: array 'x' holds data that needs pickle")):
        load_model(path)


class _Canary:
    """Unpickling this creates a file: proof that pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_object_array_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "canary.npz"
    np.savez(path, x=np.array([_Canary(marker)], dtype=object))
    np.load(path, allow_pickle=True)["x"]  # the canary works: unpickling does create the marker
    assert marker.exists()
    marker.unlink()
    with pytest.raises(S4DInputError, match=r"needs pickle, which is refused"):
        load_model(path)
    with pytest.raises(S4DInputError, match=r"needs pickle"):
        read_npz(path)
    assert not marker.exists(), "reading the file ran pickle"


def test_write_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(S4DInputError, match=r"array 'x' has object dtype"):
        write_npz(tmp_path / "o.npz", {"x": np.array([{}], dtype=object)})


def test_model_file_config_with_unknown_field(model_file, tmp_path, tiny):
    cfg = json.loads(tiny.config.to_json())
    cfg["hidden_size"] = 4
    path = _rewrite(model_file, tmp_path / "cfg.npz", __config__=np.array(json.dumps(cfg)))
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path}: config JSON has unknown field(s) "
                                                      "['hidden_size']")):
        load_model(path)


def test_model_file_config_invalid_value(model_file, tmp_path, tiny):
    cfg = json.loads(tiny.config.to_json())
    cfg["dt_min"] = "fast"
    path = _rewrite(model_file, tmp_path / "cfg.npz", __config__=np.array(json.dumps(cfg)))
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path}: config 'tiny': dt_min must be a number")):
        load_model(path)


def test_model_file_float32_parameters(model_file, tmp_path, tiny):
    path = _rewrite(model_file, tmp_path / "f32.npz", layer0__dot__C_re=tiny.params["layer0.C_re"].astype(np.float32))
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path}: parameter layer0.C_re must be float64, "
                                                      "got float32")):
        load_model(path)


def test_model_file_nan_parameter(model_file, tmp_path, tiny):
    w = tiny.params["encoder.W"].copy()
    w[2, 0] = np.nan
    path = _rewrite(model_file, tmp_path / "nan.npz", encoder__dot__W=w)
    with pytest.raises(S4DInputError, match=re.escape(f"model file {path}: parameter encoder.W contains 1 "
                                                      "non-finite") + r".*index \(2, 0\)"):
        load_model(path)


# ---------------------------------------------------------------- goldens

CASE_FILE = "case-tiny-noise.npz"


@pytest.fixture
def golden_copy(tmp_path) -> Path:
    d = tmp_path / "golden"
    shutil.copytree(golden.GOLDEN_DIR, d)
    return d


def test_golden_copy_is_clean(golden_copy):
    """Sanity for the tests below: an unmodified copy has no problems."""
    assert golden.GoldenSet(golden_copy).check_hashes() == []


def _assert_one_problem(problems, path: Path, what: str):
    assert len(problems) == 1, problems
    assert str(path) in problems[0] and what in problems[0], problems[0]
    assert "s4dconf golden generate" in problems[0], problems[0]


def test_golden_flipped_byte(golden_copy):
    path = golden_copy / CASE_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    gs = golden.GoldenSet(golden_copy)
    _assert_one_problem(gs.check_hashes(), path, "does not match its sha256")
    logged = []
    report = golden.verify(golden_copy, log=logged.append)
    assert not report.ok
    _assert_one_problem(report.problems, path, "does not match its sha256")
    with pytest.raises(golden.GoldenError, match=re.escape(str(path)) + r".*s4dconf golden generate"):
        gs.case("tiny/noise")


def test_golden_missing_file(golden_copy):
    path = golden_copy / "case-small-dc.npz"
    path.unlink()
    _assert_one_problem(golden.GoldenSet(golden_copy).check_hashes(), path, "missing")
    _assert_one_problem(golden.verify(golden_copy, log=lambda s: None).problems, path, "missing")


def test_golden_unlisted_extra_file(golden_copy):
    extra = golden_copy / "case-tiny-extra.npz"
    shutil.copy(golden_copy / CASE_FILE, extra)
    _assert_one_problem(golden.GoldenSet(golden_copy).check_hashes(), extra, "not listed in manifest.json")
    _assert_one_problem(golden.verify(golden_copy, log=lambda s: None).problems, extra, "not listed")


def test_golden_manifest_other_schema(golden_copy):
    mpath = golden_copy / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["schema"] = "s4dconf-golden/99"
    mpath.write_text(json.dumps(manifest))
    pattern = re.escape(f"golden manifest {mpath} has schema 's4dconf-golden/99'") + r".*s4dconf golden generate"
    with pytest.raises(golden.GoldenError, match=pattern):
        golden.GoldenSet(golden_copy)
    with pytest.raises(golden.GoldenError, match=pattern):
        golden.verify(golden_copy, log=lambda s: None)


def test_golden_manifest_missing_or_broken(golden_copy):
    mpath = golden_copy / "manifest.json"
    mpath.write_text("{ not json")
    with pytest.raises(golden.GoldenError, match=re.escape(f"golden manifest {mpath} is not valid JSON")):
        golden.GoldenSet(golden_copy)
    mpath.unlink()
    with pytest.raises(golden.GoldenError, match=re.escape(f"golden manifest not found: {mpath}")):
        golden.GoldenSet(golden_copy)


def test_golden_unknown_case_lists_known(golden_copy):
    gs = golden.GoldenSet(golden_copy)
    with pytest.raises(golden.GoldenError, match=r"no golden case 'tiny/nope'; known: .*tiny/noise"):
        gs.case("tiny/nope")


@pytest.mark.parametrize("bad", [np.array([[1 + 2j]]), np.array([[True]]), np.array([["1.5"]])])
def test_session_step_refuses_non_real_dtypes(bad):
    session = S4DModel.create(TINY, 0).session(1)
    with pytest.raises(S4DInputError, match="step input must be a real numeric array, got dtype"):
        session.step(bad)


# ---------------------------------------------------------------- every backend's session: one shared check


def _session_backends():
    from s4dconf.backends.torch_backends import torch_availability

    names = ["reference", "numpy-fxp"]
    if torch_availability().available:
        names += ["torch-rec", "torch-rec-f64"]
    return names


@pytest.mark.parametrize("name", _session_backends())
@pytest.mark.parametrize("batch", [0, -1, 1.5, True, "2", None])
def test_every_session_refuses_a_bad_batch(tiny, name, batch):
    backend = get_backend(name)
    with pytest.raises(S4DInputError, match=re.escape(f"batch must be a positive integer, got {batch!r}")):
        backend.open_session(backend.prepare(tiny), batch)


@pytest.mark.parametrize("name", _session_backends())
@pytest.mark.parametrize("bad, pattern", [
    (np.full((2, 1), 1j), r"real numeric array .*got dtype complex128 at t=1"),
    (np.array([[True], [False]]), r"real numeric array .*got dtype bool"),
    (np.array([["1"], ["2"]]), r"real numeric array .*got dtype <U1"),
    (np.zeros((2, 1), dtype=object), r"real numeric array .*got dtype object"),
    (None, r"real numeric array .*got dtype object"),
    (np.zeros((1, 1)), re.escape("step input must have shape (2, 1), got (1, 1)")),
    (np.zeros(2), re.escape("step input must have shape (2, 1), got (2,)")),
    (np.array([[0.0], [np.nan]]), r"step input at t=1 contains 1 non-finite .*index \(1, 0\)"),
])
def test_every_session_step_checks_its_input_the_same_way(tiny, name, bad, pattern):
    """numpy-fxp dropped the imaginary part of a complex step input; every backend now refuses it, as the
    reference does, through the one check of backends/base.py."""
    backend = get_backend(name)
    s = backend.open_session(backend.prepare(tiny), 2)
    s.step(np.zeros((2, 1), dtype=np.int32))  # integer input is fine
    with pytest.raises(S4DInputError, match=pattern):
        s.step(bad)
    assert s.step([[0.5], [1.0]]).shape == (2, TINY.n_classes)  # a nested list of floats is fine


@pytest.mark.parametrize("name", _session_backends())
def test_every_session_run_checks_its_chunk(tiny, name):
    backend = get_backend(name)
    s = backend.open_session(backend.prepare(tiny), 2)
    with pytest.raises(S4DInputError, match=r"chunk must be a real numeric array, got dtype complex128"):
        s.run(np.zeros((2, 3, 1), dtype=complex))
    with pytest.raises(S4DInputError, match=r"chunk has batch 3, the session was opened for 2"):
        s.run(np.zeros((3, 3, 1)))
    with pytest.raises(S4DInputError, match=r"chunk must have shape \(batch, length, d_input=1\)"):
        s.run(np.zeros((2, 3)))
    assert s.run(np.zeros((2, 3, 1))).shape == (2, 3, TINY.n_classes)


def test_session_set_state_refuses_what_get_state_never_gives():
    model = S4DModel.create(TINY, 0)
    for name in ("reference", "numpy-fxp"):
        backend = get_backend(name)
        s = backend.open_session(backend.prepare(model), 1)
        s.step(np.ones((1, 1)))
        good = s.get_state()
        with pytest.raises(S4DInputError, match="state must be a dict"):
            s.set_state([good])
        with pytest.raises(S4DInputError, match="state lacks 't'"):
            s.set_state({k: v for k, v in good.items() if k != "t"})
        with pytest.raises(S4DInputError, match=r"state 't' .* got -1"):
            s.set_state(dict(good, t=-1))
        s.set_state(good)
