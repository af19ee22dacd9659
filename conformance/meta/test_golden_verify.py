"""`s4dconf golden verify` checks the golden set against the spec, not against the manifest's own lists (SPEC.md 10,
14.7): each test tampers with a copy of goldens/data and requires verify to fail naming the case, array or file.
Also: the saturation goldens saturate where they say, and PTQ refuses or reports a model that saturates on its own
calibration set (SPEC.md 15.1)."""
from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from s4dconf.fixedpoint.formats import FxpFormat
from s4dconf.fixedpoint.quantize import SaturationWarning, quantize
from s4dconf.goldens import integer
from s4dconf.goldens import store as golden
from s4dconf.reference.config import get_config
from s4dconf.reference.model import S4DModel
from s4dconf.reference.npzio import read_npz, sha256_file, write_npz
from s4dconf.reference.validate import S4DInputError


@pytest.fixture
def cli_main():
    """s4dconf's main(); it imports the report stack (jinja2), which an environment such as the Lava venv may lack."""
    try:
        from s4dconf.cli import main  # deferred: the rest of this file needs no report stack
    except ImportError as e:
        pytest.skip(f"the command line needs {e.name}, not installed here")
    return main


@pytest.fixture
def copy(tmp_path) -> Path:
    d = tmp_path / "golden"
    shutil.copytree(golden.GOLDEN_DIR, d)
    return d


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, m) -> None:
    (d / "manifest.json").write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")


def _rehash(d: Path, m: dict, name: str) -> None:
    m["files"][name] = sha256_file(d / name)


def _problems(d: Path) -> list[str]:
    report = golden.verify(d, log=lambda s: None)
    assert not report.ok, "verify passed a tampered golden set"
    assert report.cases == 0
    return report.problems


def _one_naming(problems: list[str], *words: str) -> str:
    hits = [p for p in problems if all(w in p for w in words)]
    assert hits, f"no problem names {words}: {problems}"
    return hits[0]


def test_the_committed_set_is_the_spec_set():
    """The manifest lists exactly the spec's cases, models and files (the structure checks, without regenerating)."""
    gs = golden.GoldenSet()
    assert gs.check_hashes() == []
    assert golden.check_expected(gs) == []
    assert gs.case_ids() == golden.expected_case_ids()
    assert gs.fxp_case_ids() == golden.expected_fxp_case_ids()
    assert {c.id for c in integer.SATURATION_CASES} <= set(gs.fxp_case_ids())


# ---------------------------------------------------------------- cases missing, extra, emptied


def test_float_case_removed_from_manifest_and_disk(copy):
    m = _manifest(copy)
    m["cases"] = [c for c in m["cases"] if c["id"] != "tiny/noise"]
    del m["files"]["case-tiny-noise.npz"]
    (copy / "case-tiny-noise.npz").unlink()
    _write_manifest(copy, m)
    problems = _problems(copy)
    _one_naming(problems, "case tiny/noise", "missing from manifest.json")
    _one_naming(problems, "case-tiny-noise.npz", "not listed")


def test_every_case_removed(copy, cli_main):
    """The attack of the issue: no cases, no case files; verify used to print "OK, 0 cases"."""
    m = _manifest(copy)
    for c in m["cases"] + m["fixed_point"]["cases"]:
        del m["files"][c["file"]]
        (copy / c["file"]).unlink()
    m["cases"], m["fixed_point"]["cases"] = [], []
    _write_manifest(copy, m)
    problems = _problems(copy)
    for cid in golden.expected_case_ids():
        _one_naming(problems, f"case {cid} is missing")
    for cid in golden.expected_fxp_case_ids():
        _one_naming(problems, f"fixed-point case {cid} is missing")
    assert cli_main(["golden", "verify", "--dir", str(copy)]) == 1


def test_saturation_case_and_model_removed(copy):
    m = _manifest(copy)
    fx = m["fixed_point"]
    fx["cases"] = [c for c in fx["cases"] if c["id"] != "sat-decoder/step"]
    del fx["models"]["sat-decoder"]
    for name in ("fxp-case-sat-decoder-step.npz", "fxp-model-sat-decoder.npz"):
        del m["files"][name]
        (copy / name).unlink()
    _write_manifest(copy, m)
    problems = _problems(copy)
    _one_naming(problems, "fixed-point case sat-decoder/step is missing")
    _one_naming(problems, "fixed-point model sat-decoder", "missing")


def test_case_file_gone_but_case_listed(copy):
    """The case stays in the manifest, its file is deleted and unlisted: named, no exception."""
    m = _manifest(copy)
    del m["files"]["fxp-case-sat-state-step.npz"]
    (copy / "fxp-case-sat-state-step.npz").unlink()
    _write_manifest(copy, m)
    _one_naming(_problems(copy), "fxp-case-sat-state-step.npz", "is not listed in manifest.json")


def test_extra_case_in_manifest(copy):
    m = _manifest(copy)
    shutil.copy(copy / "case-tiny-noise.npz", copy / "case-tiny-extra.npz")
    m["cases"].append({**m["cases"][0], "id": "tiny/extra", "family": "extra", "file": "case-tiny-extra.npz"})
    _rehash(copy, m, "case-tiny-extra.npz")
    _write_manifest(copy, m)
    problems = _problems(copy)
    _one_naming(problems, "case 'tiny/extra'", "not one the spec defines")
    _one_naming(problems, "case-tiny-extra.npz", "no file the spec defines")


def test_case_listed_twice(copy):
    m = _manifest(copy)
    m["fixed_point"]["cases"].append(dict(m["fixed_point"]["cases"][0]))
    _write_manifest(copy, m)
    _one_naming(_problems(copy), "fixed-point case tiny/impulse is listed 2 times")


def test_case_pointing_at_another_file(copy):
    """A case entry that names another case's file (hash intact) is caught by the spec's file name."""
    m = _manifest(copy)
    entry = next(c for c in m["cases"] if c["id"] == "tiny/noise")
    entry["file"] = "case-tiny-step.npz"
    _write_manifest(copy, m)
    _one_naming(_problems(copy), "case tiny/noise", "case-tiny-step.npz", "the spec 'case-tiny-noise.npz'")


# ---------------------------------------------------------------- arrays dropped or swapped (hash updated)


def _drop_array(d: Path, name: str, array: str) -> None:
    arrays = read_npz(d / name)
    del arrays[array]
    write_npz(d / name, arrays)
    m = _manifest(d)
    _rehash(d, m, name)
    _write_manifest(d, m)


@pytest.mark.parametrize("array", ["layer0.y", "layer0.state_im", "step_logits", "steps"])
def test_float_array_dropped(copy, array):
    _drop_array(copy, "case-small-noise.npz", array)
    _one_naming(_problems(copy), "case small/noise", f"array {array} is missing")
    with pytest.raises(golden.GoldenError, match=re.escape(f"array {array} is missing")):
        golden.GoldenSet(copy).case("small/noise")  # pytest blames the golden, not the backend


def test_last_layer_arrays_dropped(copy):
    """Dropping every array of the last layer used to make the case a shallower model."""
    name = "case-small-digits.npz"
    arrays = read_npz(copy / name)
    for k in [k for k in arrays if k.startswith("layer1.")]:
        del arrays[k]
    write_npz(copy / name, arrays)
    m = _manifest(copy)
    _rehash(copy, m, name)
    _write_manifest(copy, m)
    problems = _problems(copy)
    for k in ("layer1.y", "layer1.state_re", "layer1.state_im"):
        _one_naming(problems, "case small/digits", f"array {k} is missing")


@pytest.mark.parametrize("name, case_id, array", [
    ("fxp-case-tiny-step.npz", "tiny/step", "layer0.state_re"),
    ("fxp-case-sat-state-step.npz", "sat-state/step", "saturations"),
    ("fxp-case-sat-block-step.npz", "sat-block/step", "tail_saturations"),
])
def test_integer_array_dropped(copy, name, case_id, array):
    _drop_array(copy, name, array)
    _one_naming(_problems(copy), f"fixed-point case {case_id}", f"array {array} is missing")
    with pytest.raises(golden.GoldenError, match=re.escape(f"array {array} is missing")):
        golden.GoldenSet(copy).fxp_case(case_id)


def test_extra_array(copy):
    name = "fxp-case-small-noise.npz"
    arrays = read_npz(copy / name)
    arrays["layer2.y"] = arrays["layer1.y"]
    write_npz(copy / name, arrays)
    m = _manifest(copy)
    _rehash(copy, m, name)
    _write_manifest(copy, m)
    _one_naming(_problems(copy), "fixed-point case small/noise", "unexpected array layer2.y")


def test_file_of_another_case(copy):
    """case-tiny-step's bytes under case-tiny-noise's name, hash updated: the file says which case it holds."""
    shutil.copy(copy / "case-tiny-step.npz", copy / "case-tiny-noise.npz")
    m = _manifest(copy)
    _rehash(copy, m, "case-tiny-noise.npz")
    _write_manifest(copy, m)
    _one_naming(_problems(copy), "case tiny/noise", "holds case 'tiny/step'")


# ---------------------------------------------------------------- regenerated integers and models


def test_saturation_counts_altered(copy):
    """Counts edited to zero (as a wrapping backend would report): the regeneration names the array."""
    name = "fxp-case-sat-relu-digits.npz"
    arrays = read_npz(copy / name)
    counts = json.loads(str(arrays["saturations"]))
    arrays["saturations"] = np.array(json.dumps(dict.fromkeys(counts, 0), sort_keys=True))
    write_npz(copy / name, arrays)
    m = _manifest(copy)
    _rehash(copy, m, name)
    _write_manifest(copy, m)
    gs = golden.GoldenSet(copy)
    assert golden.check_expected(gs) == []  # structurally fine: the integers are what is wrong
    problems, _ = integer.verify_fxp(gs, exact_platform=False)
    assert problems == ["fixed-point case sat-relu/digits: saturations differs from the stored integers"]


def test_saturation_model_replaced(copy):
    """The base model stored under a saturation model's name (file hash and fxp_sha256 updated): verify re-derives
    it from the base and the recipe of SATURATION_CASES."""
    shutil.copy(copy / "fxp-model-tiny.npz", copy / "fxp-model-sat-input.npz")
    m = _manifest(copy)
    _rehash(copy, m, "fxp-model-sat-input.npz")
    m["fixed_point"]["models"]["sat-input"]["fxp_sha256"] = m["fixed_point"]["models"]["tiny"]["fxp_sha256"]
    _write_manifest(copy, m)
    problems, _ = integer.verify_fxp(golden.GoldenSet(copy), exact_platform=False)
    _one_naming(problems, "fixed-point model sat-input", "is not the model of tiny")


def test_saturation_model_digest_altered(copy):
    """A wrong fxp_sha256 in the manifest is a problem naming the model (and its cases are not regenerated)."""
    m = _manifest(copy)
    m["fixed_point"]["models"]["sat-block"]["fxp_sha256"] = "0" * 64
    _write_manifest(copy, m)
    problems, checked = integer.verify_fxp(golden.GoldenSet(copy), exact_platform=False)
    _one_naming(problems, "fixed-point model sat-block", "fxp_sha256")
    _one_naming(problems, "fixed-point case sat-block/step", "not regenerated")
    assert checked == len(golden.expected_fxp_case_ids()) - 1


# ---------------------------------------------------------------- malformed manifests: input errors, never tracebacks


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: [], r"must be a JSON object, got an array"),
    (lambda m: "golden", r"must be a JSON object, got a string"),
    (lambda m: {**m, "cases": {}}, r"cases must be an array, got an object"),
    (lambda m: {**m, "files": []}, r"files must be an object, got an array"),
    (lambda m: {**m, "cases": [1]}, r"cases\[0\] must be an object, got a number"),
    (lambda m: {**m, "cases": [{k: v for k, v in m["cases"][3].items() if k != "file"}]},
     r"cases\[0\] lacks the key 'file'"),
    (lambda m: {**m, "cases": [{**m["cases"][0], "id": 7}]}, r"cases\[0\]\.id must be a string, got a number"),
    (lambda m: {**m, "models": {**m["models"], "tiny": {"file": None, "seed": "0", "params_sha256": "x"}}},
     r"models\['tiny'\]\.seed must be an integer, got a string"),
    (lambda m: {**m, "inputs": {"noise": {}}}, r"inputs\['noise'\] lacks the key 'file'"),
    (lambda m: {**m, "fixed_point": []}, r"fixed_point must be an object, got an array"),
    (lambda m: {**m, "fixed_point": {**m["fixed_point"], "cases": [{"id": "tiny/step", "config": "tiny",
                                                                   "family": "step", "input": "inputs-step.npz"}]}},
     r"fixed_point\.cases\[0\] lacks the key 'file'"),
    (lambda m: {**m, "fixed_point": {"cases": []}}, r"fixed_point lacks the key 'models'"),
    (lambda m: {**m, "files": {**m["files"], "inputs-step.npz": 5}}, r"files\['inputs-step.npz'\] must be a sha256"),
])
def test_malformed_manifest_is_an_input_error(copy, edit, pattern):
    _write_manifest(copy, edit(_manifest(copy)))
    with pytest.raises(golden.GoldenError, match=pattern):
        golden.verify(copy, log=lambda s: None)
    assert issubclass(golden.GoldenError, S4DInputError)


def test_malformed_manifest_on_the_command_line(copy, capsys, cli_main):
    _write_manifest(copy, [])
    assert cli_main(["golden", "verify", "--dir", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "must be a JSON object" in err and "Traceback" not in err


@pytest.mark.parametrize("bad", ["../case-tiny-noise.npz", "sub/case-tiny-noise.npz", "..", "/etc/hostname",
                                 "..\\case-tiny-noise.npz", "C:case.npz", ""])
@pytest.mark.parametrize("where", ["case", "fxp_case", "input", "model", "files"])
def test_file_names_stay_inside_the_golden_folder(copy, bad, where):
    m = _manifest(copy)
    if where == "case":
        m["cases"][0]["file"] = bad
    elif where == "fxp_case":
        m["fixed_point"]["cases"][0]["file"] = bad
    elif where == "input":
        m["inputs"]["noise"]["file"] = bad
    elif where == "model":
        m["fixed_point"]["models"]["tiny"]["file"] = bad
    else:
        m["files"][bad] = m["files"]["case-tiny-noise.npz"]
    _write_manifest(copy, m)
    with pytest.raises(golden.GoldenError, match=r"not a plain file name inside the golden folder"):
        golden.verify(copy, log=lambda s: None)


def test_a_file_outside_is_never_read(copy, tmp_path):
    """A manifest naming ../outside.npz (with its correct hash) is refused before anything is read."""
    outside = tmp_path / "outside.npz"
    shutil.copy(copy / "case-tiny-noise.npz", outside)
    m = _manifest(copy)
    m["cases"][0]["file"] = "../outside.npz"
    m["files"]["../outside.npz"] = sha256_file(outside)
    _write_manifest(copy, m)
    with pytest.raises(golden.GoldenError, match=re.escape("'../outside.npz'")):
        golden.GoldenSet(copy)


# ---------------------------------------------------------------- the saturation goldens


def test_every_stage_saturates_in_some_case():
    """Every counter name of SPEC.md 14.4 (the engine's keys) has events in at least one stored case, with half_up
    among them; each single-stage case saturates at its stage only."""
    gs = golden.GoldenSet()
    seen, half_up = set(), False
    for c in integer.SATURATION_CASES:
        counts = json.loads(str(gs.fxp_case(c.id)["saturations"]))
        m = gs.fxp_model(c.name)
        assert set(counts) == set(integer.saturation_names(m.config.n_layers))
        hit = {k for k, n in counts.items() if n}
        assert hit == (set(counts) if c.stages == ("*",) else set(c.stages)), (c.id, counts)
        seen |= {k.split(".")[-1] for k in hit}
        half_up |= m.fmt.rounding == "half_up"
    assert seen == {"input", "encoder", "state", "message", "relu", "block", "decoder"}
    assert half_up


def test_saturation_cases_are_reproduced_exactly():
    """The stored models are the recipe applied to the stored PTQ models, and their integers (tail included) are
    what the literal statement computes now (a fast subset of verify_fxp)."""
    gs = golden.GoldenSet()
    for c in integer.SATURATION_CASES:
        m = gs.fxp_model(c.name)
        assert integer.fxp_digest(integer.derive_saturation_model(gs.fxp_model(c.base), c)) == integer.fxp_digest(m)
        fresh = integer.compute_saturation_case(m, gs.input(c.family))
        stored = gs.fxp_case(c.id)
        for k, v in fresh.items():
            assert np.array_equal(v, stored[k]), (c.id, k)


# ---------------------------------------------------------------- PTQ: headroom, zero calibration, saturation


@pytest.fixture(scope="module")
def tiny_float():
    return S4DModel.create(get_config("tiny"), 0)


@pytest.mark.parametrize("headroom", [-1, -3, 1.5, True])
def test_quantize_refuses_bad_headroom(tiny_float, headroom):
    with pytest.raises(S4DInputError, match=r"headroom_bits must be an integer >= 0"):
        quantize(tiny_float, headroom_bits=headroom)


def test_quantize_refuses_all_zero_calibration(tiny_float):
    with pytest.raises(S4DInputError, match=r"calibration data of shape \(2, 16, 1\) is all zero"):
        quantize(tiny_float, np.zeros((2, 16, 1)))


def test_quantize_warns_and_records_when_it_saturates_on_its_calibration(tiny_float):
    """8-bit messages and states with no headroom: the integer arithmetic passes the float maxima."""
    with pytest.warns(SaturationWarning, match=r"saturates on its own calibration set .*decoder \d+"):
        m = quantize(tiny_float, fmt=FxpFormat(msg_bits=6, state_bits=6), headroom_bits=0)
    sat = m.provenance["calibration_saturations"]
    assert sat and all(n > 0 for n in sat.values()) and "decoder" in sat


def test_quantize_silent_when_it_does_not_saturate(tiny_float):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = quantize(tiny_float)
    assert "calibration_saturations" not in m.provenance


def test_cli_quantize_refuses_negative_headroom(tmp_path, capsys, cli_main):
    model = tmp_path / "tiny.npz"
    assert cli_main(["model", "--config", "tiny", "--seed", "0", "--out", str(model)]) == 0
    try:  # the parser may refuse it first (argparse exits with 2) or quantize does (an input error: rc 2)
        rc = cli_main(["quantize", str(model), "--headroom-bits", "-1", "--out", str(tmp_path / "q.npz")])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and "must be an integer >= 0" in err and "Traceback" not in err
    assert not (tmp_path / "q.npz").exists()
