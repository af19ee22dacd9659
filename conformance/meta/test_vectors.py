"""Language-neutral test vectors (SPEC.md 10.1): `s4dconf vectors export` writes files from which an implementation
outside Python can run every case, `s4dconf vectors verify` judges its outputs like `s4dconf check` does, and the C99
implementation conformance/c/s4d_fxp.c passes bit for bit while deliberately wrong variants of it fail, naming the
case and the stage.

Runtime: the float tests export the 7 cases of `tiny` only; the fixed-point tests without C export 2 cases; the C
tests export all 23 integer cases once (about 2 s) and run three builds of the program (well under 1 s each)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from s4dconf import cli
from s4dconf.conformance.harness import load_tolerances
from s4dconf.conformance.vectors import (C_SOURCE, INDEX_FILE, export_vectors, load_index, read_bin, verify_vectors,
                                         write_output)
from s4dconf.fixedpoint.engine import run_fxp
from s4dconf.fixedpoint.formats import FxpFormat, FxpModel
from s4dconf.goldens.integer import SATURATION_CASES, expected_fxp_cases, saturation_names
from s4dconf.reference.config import ModelConfig
from s4dconf.reference.model import S4DModel


def cli_run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _params(root: Path, entry: dict) -> dict:
    return {name: read_bin(root / f["file"], f, name) for name, f in entry["params"].items()}


def _inputs(root: Path, case: dict) -> dict:
    sel = {s: read_bin(root / f["file"], f, s) for s, f in case["selection"].items()}
    return {"u": read_bin(root / case["inputs"]["u"]["file"], case["inputs"]["u"], "u"), **sel}


# ---------------------------------------------------------------- float64

def float_outputs(root: Path, out: Path, perturb: str | None = None) -> None:
    """An implementation that knows only the export: the model rebuilt from the .bin parameters and the config of
    index.json, run by the recurrence; writes every expected output (perturb: one probe of tiny/noise off by 1e-6)."""
    index = load_index(root)
    for case in index["cases"]:
        entry = index["models"][case["model"]]
        model = S4DModel(ModelConfig(**entry["config"]), _params(root, entry))
        x = _inputs(root, case)
        run = model.forward(x["u"], mode="recurrent", states_at=x["state_steps"])
        got = {"logits": run.logits, "step_logits": run.step_logits[:, x["steps"]]}
        for i, layer in enumerate(run.layers):
            got[f"layer{i}.y"] = layer.y[:, x["steps"]][:, :, x["channels"]]
            states = np.stack([model.last_states[int(k)][i][0, x["channels"]] for k in x["state_steps"]])
            got[f"layer{i}.state_re"], got[f"layer{i}.state_im"] = states.real, states.imag
        if case["id"] == "tiny/noise" and perturb:
            got[perturb] = got[perturb] * (1 + 1e-6)
        for name, a in got.items():
            write_output(out, case, name, a)


@pytest.fixture(scope="module")
def float_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vectors") / "float"
    export_vectors(root, "float64", configs=["tiny"])
    return root


def test_float_vectors_judged_with_the_tolerance_table(float_export, tmp_path):
    out = tmp_path / "out"
    float_outputs(float_export, out)
    v = verify_vectors(float_export, out, require_all=True)
    assert v.cases == 7 and not v.failed and not v.not_provided
    table = load_tolerances()
    for r in v.records:  # every record carries the bound of the suite's own table, as `s4dconf check` does
        family = "state" if ".state_" in r["probe"] else r["family"]
        row = table[("float64", family)]
        bound = {"rel_l2": row.rel_l2_max, "max_abs_rel": row.max_abs_rel_max, "argmax": row.argmax_min}[r["metric"]]
        assert r["tolerance"] == bound, r
    assert {r["probe"] for r in v.records} == {"logits", "step_logits", "layer0.y", "layer0.state_re",
                                               "layer0.state_im"}


def test_float_vectors_fail_a_small_error_naming_case_and_probe(float_export, tmp_path, capsys):
    out = tmp_path / "out"
    float_outputs(float_export, out, perturb="layer0.y")
    rc, text, _ = cli_run(capsys, "vectors", "verify", float_export, "--outputs", out, "--json", tmp_path / "r.json")
    assert rc == 1, text
    bad = [r for r in json.loads((tmp_path / "r.json").read_text())["records"] if r["verdict"] != "pass"]
    assert bad and {(r["case"], r["probe"]) for r in bad} == {("tiny/noise", "layer0.y")}
    assert "outside tiny/noise (layer0.y): rel_l2" in text


# ---------------------------------------------------------------- fixed point, no compiler needed

def fxp_outputs(root: Path, out: Path) -> None:
    """numpy-fxp on a model rebuilt from the exported integers, format and exponents only: writes u_q, the logits,
    y and the saturation counts (not the states, which stay optional)."""
    index = load_index(root)
    for case in index["cases"]:
        e = index["models"][case["model"]]
        ex = e["exponents"]
        m = FxpModel(config=ModelConfig(**e["config"]), fmt=FxpFormat(**e["format"]), inp_exp=ex["inp_exp"],
                     act_exp=tuple(ex["act_exp"]), out_exp=ex["out_exp"], w_exp=ex["w_exp"], arrays=_params(root, e))
        x = _inputs(root, case)
        run = run_fxp(m, x["u"])
        write_output(out, case, "logits", run.step_logits[:, -1])
        write_output(out, case, "step_logits", run.step_logits[:, x["steps"]])
        for i, y in enumerate(run.layer_y):
            write_output(out, case, f"layer{i}.y", y[:, x["steps"]][:, :, x["channels"]])
        write_output(out, case, "saturations", [run.saturations[k] for k in case["saturation_counters"]])


@pytest.fixture(scope="module")
def fxp_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vectors") / "fxp"
    export_vectors(root, "fixed-point", case_ids=["sat-state/step", "small/digits"])
    return root


def test_fixed_point_vectors_from_the_exported_integers(fxp_export, tmp_path, capsys):
    out = tmp_path / "out"
    fxp_outputs(fxp_export, out)
    v = verify_vectors(fxp_export, out)
    assert v.cases == 2 and not v.failed, v.failed
    assert {r["metric"] for r in v.records} == {"max_abs_int_diff"}
    assert {"sat-state/step/layer0.state_re", "sat-state/step/u_q"} <= set(v.not_provided)
    sat = {r["probe"]: r for r in v.records if r["case"] == "sat-state/step"}
    assert sat["saturations.layer0.state"]["verdict"] == "pass" and sat["logits"]["saturations"] == 294
    # --require-all: an optional output that is missing is bad input, named
    rc, _, err = cli_run(capsys, "vectors", "verify", fxp_export, "--outputs", out, "--require-all")
    assert rc == 2 and "u_q" in err and "missing" in err
    # one saturation event fewer is a failure of that counter, naming case and stage
    counts = out / "sat-state/step/saturations.bin"
    a = np.fromfile(counts, "<i8")
    a[saturation_names(1).index("layer0.state")] -= 1
    a.astype("<i8").tofile(counts)
    bad = verify_vectors(fxp_export, out).failed
    assert [(r["case"], r["probe"], r["stage"]) for r in bad] == [
        ("sat-state/step", "saturations.layer0.state", "layer0.state")]
    assert bad[0]["first_difference"] == {"got": 293, "want": 294}


# ---------------------------------------------------------------- bad input

def test_bad_input_exits_2_naming_the_file(fxp_export, tmp_path, capsys):
    out = tmp_path / "out"
    fxp_outputs(fxp_export, out)
    verify = ("vectors", "verify", fxp_export, "--outputs")
    (out / "small/digits/logits.bin").write_bytes(b"\0" * 8)
    rc, _, err = cli_run(capsys, *verify, out)
    assert rc == 2 and "small/digits/logits.bin has 8 bytes" in err and "int64 [8, 10]" in err
    (out / "small/digits/logits.bin").unlink()
    rc, _, err = cli_run(capsys, *verify, out)
    assert rc == 2 and "logits.bin is missing" in err
    rc, _, err = cli_run(capsys, *verify, tmp_path / "nowhere")
    assert rc == 2 and "outputs folder" in err
    rc, _, err = cli_run(capsys, "vectors", "verify", tmp_path, "--outputs", out)
    assert rc == 2 and INDEX_FILE in err and "not found" in err
    # a damaged export: an expected file that is not what the index says
    damaged = tmp_path / "damaged"
    shutil.copytree(fxp_export, damaged)
    fxp_outputs(damaged, out)
    f = damaged / "cases/small/digits/expected/logits.bin"
    f.write_bytes(bytes(len(f.read_bytes())))
    rc, _, err = cli_run(capsys, "vectors", "verify", damaged, "--outputs", out)
    assert rc == 2 and "sha256" in err and "vectors export" in err


def test_tolerance_rows_must_be_the_suites(float_export, tmp_path, capsys):
    edited = tmp_path / "edited"
    shutil.copytree(float_export, edited)
    index = json.loads((edited / INDEX_FILE).read_text())
    index["tolerances"][0]["rel_l2_max"] = 1.0
    (edited / INDEX_FILE).write_text(json.dumps(index))
    rc, _, err = cli_run(capsys, "vectors", "verify", edited, "--outputs", tmp_path)
    assert rc == 2 and "tolerances.csv" in err


@pytest.mark.parametrize("argv, names", [
    (["--config", "paper"], ["paper", "no fixed-point golden case"]),
    (["--config", "huge"], ["huge", "known: tiny"]),
    (["--case", "tiny/nope"], ["tiny/nope"]),
    (["--numeric-class", "float16"], ["float16"]),
    (["--config", "small", "--case", "tiny/noise"], ["no fixed-point golden case is both", "small", "tiny/noise"]),
])
def test_export_refuses_unknown_selections(tmp_path, capsys, argv, names):
    rc, _, err = cli_run(capsys, "vectors", "export", tmp_path / "v", *argv)
    assert rc == 2 and all(n in err for n in names), err
    assert not (tmp_path / "v").exists()


def test_export_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    rc, _, err = cli_run(capsys, "vectors", "export", tmp_path, "--case", "tiny/impulse")
    assert rc == 2 and "not empty" in err and (tmp_path / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------- the C99 implementation

def _compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler (cc on PATH or $CC): the C99 implementation conformance/c/s4d_fxp.c cannot be "
                    "built here")
    return cc


def build_c(tmp: Path, *defines: str) -> Path:
    exe = tmp / ("s4d_fxp" + "".join(f"-{d}" for d in defines))
    cmd = [_compiler(), "-std=c99", "-O2", "-Wall", "-Werror", *(f"-D{d}" for d in defines), "-o", str(exe),
           str(C_SOURCE)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
    return exe


@pytest.fixture(scope="module")
def all_fxp(tmp_path_factory) -> Path:
    _compiler()
    root = tmp_path_factory.mktemp("vectors") / "all-fxp"
    export_vectors(root, "fixed-point")
    return root


def run_c(exe: Path, root: Path, out: Path) -> None:
    done = subprocess.run([str(exe), str(root), str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_c_implementation_is_bit_exact_with_every_counter(all_fxp, tmp_path, capsys):
    out = tmp_path / "out"
    run_c(build_c(tmp_path), all_fxp, out)
    rc, text, err = cli_run(capsys, "vectors", "verify", all_fxp, "--outputs", out, "--require-all", "--name", "c99",
                            "--json", tmp_path / "r.json")
    assert rc == 0, text + err
    records = json.loads((tmp_path / "r.json").read_text())["records"]
    assert len({r["case"] for r in records}) == len(expected_fxp_cases()) == 23
    for case in load_index(all_fxp)["cases"]:
        probes = {r["probe"] for r in records if r["case"] == case["id"]}
        want = set(case["expected"]) - {"saturations"} | {f"saturations.{k}" for k in case["saturation_counters"]}
        assert probes == want, case["id"]
    # the saturation cases clamp, and a pass means the C counts equal the golden's
    for c in SATURATION_CASES:
        counts = {r["probe"]: r for r in records if r["case"] == c.id and r["probe"].startswith("saturations.")}
        assert all(r["verdict"] == "pass" for r in counts.values()) and records[0]["backend"] == "c99"
        assert next(r for r in records if r["case"] == c.id)["saturations"] > 0, c.id


@pytest.mark.parametrize("define, case, stages", [
    ("S4D_TRUNCATE", "tiny/impulse", {"3a layer0 state", "3c layer0 fan-in", "4 decoder"}),
    ("S4D_NO_STATE_SATURATION", "sat-state/step", {"3a layer0 state", "3c layer0 fan-in", "4 decoder",
                                                   "layer0.state"}),
])
def test_wrong_c_variants_fail_naming_case_and_stage(all_fxp, tmp_path, capsys, define, case, stages):
    out = tmp_path / "out"
    run_c(build_c(tmp_path, define), all_fxp, out)
    rc, text, _ = cli_run(capsys, "vectors", "verify", all_fxp, "--outputs", out, "--json", tmp_path / "r.json")
    assert rc == 1
    bad = [r for r in json.loads((tmp_path / "r.json").read_text())["records"] if r["verdict"] != "pass"]
    mine = [r for r in bad if r["case"] == case]
    assert {r["stage"] for r in mine} == stages, mine
    first = {}
    for r in bad:  # records run in the order of the stages: a case's first failure is its earliest stage
        first.setdefault(r["case"], r)
    assert {r["stage"] for r in first.values()} == {"3a layer0 state"}
    assert "step" in first[case]["first_difference"]
    assert f"{case} {first[case]['probe']} (stage 3a layer0 state): first difference at step" in text.replace(
        "\n    ", " ")
    if define == "S4D_TRUNCATE":  # rounding toward zero differs wherever a shifted value is negative: every case
        assert set(first) == set(expected_fxp_cases())
    else:  # only the cases whose state clamps can tell
        assert set(first) == {"sat-state/step", "sat-all-half-up/noise"}
        assert next(r for r in mine if r["probe"] == "saturations.layer0.state")["first_difference"] == {
            "got": 0, "want": 294}


def test_c_implementation_refuses_a_folder_without_its_manifest(float_export, tmp_path):
    done = subprocess.run([str(build_c(tmp_path)), str(float_export), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "cases.txt" in done.stderr


@pytest.mark.parametrize("damage, named", [
    (lambda ix: ix["cases"][0]["expected"]["logits"].pop("axes"), "'axes'"),
    (lambda ix: ix["cases"][0].pop("L"), "'L'"),
    (lambda ix: ix.update(schema="other/1"), "other/1"),
    (lambda ix: ix["cases"][0]["expected"]["logits"].update(output="../../elsewhere.bin"), "../../elsewhere.bin"),
])
def test_a_damaged_index_is_bad_input(fxp_export, tmp_path, capsys, damage, named):
    damaged = tmp_path / "damaged"
    shutil.copytree(fxp_export, damaged)
    index = json.loads((damaged / INDEX_FILE).read_text())
    damage(index)
    (damaged / INDEX_FILE).write_text(json.dumps(index))
    rc, _, err = cli_run(capsys, "vectors", "verify", damaged, "--outputs", tmp_path)
    assert rc == 2 and named in err, err
