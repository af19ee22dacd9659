"""The precision sweep (training/sweep.py, SPEC.md 18.8): grid rules, the smallest-format rule, bad input, and an
end-to-end sweep of the shipped sdigits model whose numbers are checked against the accuracy table's own path."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from s4dconf.backends import get_backend
from s4dconf.cli import main
from s4dconf.fixedpoint.formats import FxpFormat, read_model_file
from s4dconf.reference.validate import S4DInputError
from s4dconf.reports import sweep_report
from s4dconf.reports.report import build_report
from s4dconf.training import sweep as sw
from s4dconf.training.accuracy import measure, shipped_model
from s4dconf.training.datasets import load_dataset
from s4dconf.training.recipes import calibration_inputs, get_recipe


def test_fields_are_read_from_the_format_dataclass():
    fields = sw.format_fields()
    assert list(fields) == [f.name for f in dataclasses.fields(FxpFormat)]
    assert fields["weight_bits"] is int and fields["rounding"] is str


@pytest.mark.parametrize("grid,match", [
    ({"weight_bit": ["4"]}, "unknown format field 'weight_bit'.*weight_bits"),
    ({"weight_bits": ["four"]}, "weight_bits takes integers, got 'four'"),
    ({"weight_bits": ["1"]}, r"grid weight_bits=1: .*weight_bits must be an integer in \[2, 16\]"),
    ({"frac_bits": ["15"]}, r"grid frac_bits=15: .*coef_bits must be an integer in \[frac_bits \+ 2"),
    ({"rounding": ["nearest"]}, "unknown rounding 'nearest'"),
    ({}, "the grid is empty"),
])
def test_bad_grids_are_refused_before_any_work(grid, match):
    with pytest.raises(S4DInputError, match=match):
        sw.check_grid(grid)


@pytest.mark.parametrize("items,match", [(["weight_bits"], "expected FIELD=V1,V2"),
                                         (["weight_bits=4", "weight_bits=6"], "given twice")])
def test_bad_grid_flags(items, match):
    with pytest.raises(S4DInputError, match=match):
        sw.parse_grid_args(items)


def test_points_one_at_a_time_and_product():
    grid = sw.check_grid(sw.parse_grid_args(["weight_bits=4,8,6,4", "rounding=half_up"]))
    assert grid == {"weight_bits": (4, 8, 6), "rounding": ("half_up",)}
    pts = sw.grid_points(grid)
    # the base once (8 is its weight_bits), then 4 and 6, then half_up
    assert [p.label for p in pts] == ["paper format", "weight_bits=4", "weight_bits=6", "rounding=half_up"]
    prod = sw.grid_points(grid, product=True)
    # the product adds (4, half_up) and (6, half_up); (8, half_up) is the one-at-a-time point rounding=half_up
    assert [p.label for p in prod[4:]] == ["weight_bits=4, rounding=half_up", "weight_bits=6, rounding=half_up"]
    assert len(prod) == 6


def test_grid_file(tmp_path):
    f = tmp_path / "grid.toml"
    f.write_text("product = true\n[grid]\nweight_bits = [4, 6]\nrounding = ['half_up']\n")
    assert sw.read_grid_file(f) == ({"weight_bits": [4, 6], "rounding": ["half_up"]}, True)
    f.write_text("[grid]\nweight_bits = 4\n")
    with pytest.raises(S4DInputError, match="grid.weight_bits must be a non-empty list"):
        sw.read_grid_file(f)
    f.write_text("[grids]\nweight_bits = [4]\n")
    with pytest.raises(S4DInputError, match="unknown keys: grids"):
        sw.read_grid_file(f)


def test_smallest_within_one_point():
    base = dataclasses.asdict(FxpFormat())
    pt = lambda field, v, acc: {"varied": [] if v == base[field] else [field],  # noqa: E731
                                "format": {**base, field: v}, "accuracy": acc}
    points = [pt("weight_bits", 8, 0.980), pt("weight_bits", 4, 0.95), pt("weight_bits", 5, 0.975),
              pt("weight_bits", 6, 0.969), pt("rounding", "half_up", 0.97), pt("rounding", "toward_zero", 0.5)]
    out = sw.smallest_within(points, 0.98, base, ["weight_bits", "rounding"])
    # float 98 %: 97 % and above count; 5 bits (97.5 %) is the least such value even though 6 bits (96.9 %) is not
    assert out["weight_bits"] == {"smallest": 5, "accuracy": 0.975}
    assert out["rounding"] == {"within": ["floor", "half_up"]}


@pytest.fixture(scope="module")
def sdigits_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    rc = main(["sweep", str(shipped_model("sdigits", "float")), "--dataset", "sdigits", "--grid", "weight_bits=4",
               "--grid", "rounding=half_up", "--limit", "120", "--no-dask", "--out", str(out)])
    assert rc == 0
    return out


def test_sweep_numbers_are_the_accuracy_tables(sdigits_sweep):
    doc = sw.load_sweep(sdigits_sweep / "sweep.json")
    ds = load_dataset("sdigits", "test")
    fx = get_backend("numpy-fxp")
    assert doc["complete"] and doc["n"] == 120 and [p["label"] for p in doc["points"]] == [
        "paper format", "weight_bits=4", "rounding=half_up"]
    assert doc["float_accuracy"] == measure(get_backend("reference"), read_model_file(
        shipped_model("sdigits", "float")).model, ds, 120).accuracy
    # the paper-format point is the shipped PTQ model, and measures as the table measures it
    assert doc["base_is_shipped_ptq"] is True
    assert doc["points"][0]["accuracy"] == measure(fx, read_model_file(shipped_model("sdigits", "ptq")).model, ds,
                                                   120).accuracy
    calib, what = calibration_inputs(get_recipe("sdigits"))
    w4 = sw.ptq_at(FxpFormat(weight_bits=4), read_model_file(shipped_model("sdigits", "float")).model, calib, what)
    assert doc["points"][1]["accuracy"] == measure(fx, w4, ds, 120).accuracy
    assert {p.name for p in sdigits_sweep.iterdir()} >= {"sweep.json", "sweep.md", "sweep.png"}
    assert "| weight_bits=4 |" in (sdigits_sweep / "sweep.md").read_text()


SDIGITS_SWEEP = ["sweep", str(shipped_model("sdigits", "float")), "--dataset", "sdigits", "--grid", "weight_bits=4",
                 "--grid", "rounding=half_up", "--no-dask"]


def test_resume_evaluates_only_the_points_not_measured(sdigits_sweep, tmp_path, monkeypatch, capsys):
    full = sw.load_sweep(sdigits_sweep / "sweep.json")
    part = dict(full, points=[dict(p) for p in full["points"][:2]], complete=False)  # stopped after 2 points
    part["points"][1]["accuracy"] = 0.5  # a kept point is not measured again
    sw.write_sweep(part, tmp_path)
    evaluated, evaluate = [], sw.EvalPool.evaluate
    monkeypatch.setattr(sw.EvalPool, "evaluate",
                        lambda self, models, *a, **k: evaluated.append(list(models)) or evaluate(self, models, *a, **k))
    assert main([*SDIGITS_SWEEP, "--limit", "120", "--resume", "--out", str(tmp_path)]) == 0
    assert "resuming the sweep in" in capsys.readouterr().out
    doc = sw.load_sweep(tmp_path / "sweep.json")
    assert evaluated == [["rounding=half_up"]]  # not the float model, not the two kept points
    assert [p["accuracy"] for p in doc["points"]] == [full["points"][0]["accuracy"], 0.5, full["points"][2]["accuracy"]]
    assert doc["complete"] and doc["resumed"]["points_kept"] == 2 and doc["resumed"]["runs"] == 2
    assert doc["points"][1]["fxp_sha256"] == full["points"][1]["fxp_sha256"]
    assert "(in 2 runs, `--resume`)" in (tmp_path / "sweep.md").read_text()
    # the folder's sweep is of 120 samples: another sample count is another sweep, refused before any evaluation
    assert main([*SDIGITS_SWEEP, "--limit", "60", "--resume", "--out", str(tmp_path)]) == 2
    assert "--resume: the sweep in the output folder is another sweep (n 120, here 60)" in capsys.readouterr().err


def test_a_format_that_cannot_hold_the_model_is_a_refused_point_not_the_end(tmp_path, capsys):
    # Q14 coefficients in 16 bits: |Re(C)| of the shipped sdigits model reaches 4.2, which needs 18 bits
    assert main([*SDIGITS_SWEEP[:4], "--grid", "frac_bits=10,14", "--limit", "60", "--no-dask", "--out",
                 str(tmp_path)]) == 0
    assert "sweep: frac_bits=14: refused: layer0 Re(C)" in capsys.readouterr().out
    doc = sw.load_sweep(tmp_path / "sweep.json")
    by = {p["label"]: p for p in doc["points"]}
    assert doc["complete"] and list(by) == ["paper format", "frac_bits=10", "frac_bits=14"]
    assert by["frac_bits=14"]["accuracy"] is None and "fxp_sha256" not in by["frac_bits=14"]
    assert by["frac_bits=14"]["refused"].endswith("does not fit coef_bits=16 with 14 fractional bits; use coef_bits >= 18")
    assert isinstance(by["frac_bits=10"]["accuracy"], float) and doc["smallest_within"]["frac_bits"]["smallest"] != 14
    assert ("| frac_bits=14 | refused | - | layer0 Re(C): max \\|value\\| = 4.174 does not fit" in
            (tmp_path / "sweep.md").read_text())  # the message's bars escaped: one table cell
    assert (tmp_path / "sweep.png").is_file()
    figs = []
    with pytest.MonkeyPatch.context() as mp:  # the plot marks it: a cross at x = 14 on the panel's floor
        mp.setattr(sweep_report, "_save", lambda fig, d, name: figs.append(fig) or Path(d) / name)
        sweep_report.sweep_plot(doc, tmp_path)
    marks = [ln for ax in figs[0].axes for ln in ax.get_lines() if ln.get_label().startswith("refused")]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [14]
    assert marks[0].get_ydata()[0] == marks[0].axes.get_ylim()[0]
    assert sw.resumable_points(doc, doc, sw.grid_points({"frac_bits": [10, 14]}, FxpFormat(), False)).keys() == {
        "paper format", "frac_bits=10"}  # --resume refuses it again rather than keep it


@pytest.mark.parametrize("drop", ["n", "label", "accuracy"])
def test_a_sweep_point_without_its_sample_count_or_label_is_refused(sdigits_sweep, tmp_path, drop):
    doc = sw.load_sweep(sdigits_sweep / "sweep.json")
    del doc["points"][1][drop]  # --resume would otherwise keep a point it cannot tell was measured on the same samples
    (tmp_path / "sweep.json").write_text(json.dumps(doc))
    with pytest.raises(S4DInputError, match=r"sweep file .*sweep.json: points\[1\] needs 'label' \(a string\)"):
        sw.load_sweep(tmp_path / "sweep.json")


def test_the_report_shows_the_sweep_or_says_not_run(sdigits_sweep, tmp_path):
    page = build_report(tmp_path / "a", sweep_json=sdigits_sweep / "sweep.json")[0].read_text()
    section = page.split('<section id="sweep">')[1].split("</section>")[0]
    assert "weight_bits=4" in section and '<img src="img/sweep.png"' in section
    assert (tmp_path / "a" / "img" / "sweep.png").is_file()
    page = build_report(tmp_path / "b")[0].read_text()
    assert "not run" in page.split('<section id="sweep">')[1].split("</section>")[0]


@pytest.mark.parametrize("argv,match", [
    (["--grid", "weight_bits=1"], "weight_bits must be an integer in"),
    (["--grid", "nope=1"], "unknown format field 'nope'"),
    (["--grid", "weight_bits=4", "--qaft-at", "weight_bits=5"],
     r"--qaft-at 'weight_bits=5' is not a point of this sweep; its points: 'paper format'; 'weight_bits=4'"),
    (["--grid", "rounding=toward_zero", "--qaft-at", "rounding=toward_zero"],
     r"--qaft-at 'rounding=toward_zero': QAFT's forward pass .*rounding"),
    (["--grid", "weight_bits=4", "--qaft-max-steps", "3"], "name the points with --qaft-at"),
])
def test_cli_refuses_bad_sweeps(argv, match, capsys, tmp_path):
    assert main(["sweep", str(shipped_model("sdigits", "float")), "--dataset", "sdigits", "--no-dask", "--out",
                 str(tmp_path), *argv]) == 2
    assert re.search(match, capsys.readouterr().err)


def test_qaft_at_named_points(tmp_path):
    """--qaft-at: the named points are fine-tuned from their PTQ model; the accuracy recorded is numpy-fxp's on the
    fine-tuned file, and QAFT's own integer forward pass agrees with numpy-fxp on the whole split."""
    pytest.importorskip("torch", reason="QAFT fine-tunes with torch (the optional extra [torch]); not installed here")
    float_file = shipped_model("sdigits", "float")
    assert main(["sweep", str(float_file), "--dataset", "sdigits", "--grid", "weight_bits=4", "--limit", "120",
                 "--no-dask", "--out", str(tmp_path), "--qaft-at", "Weight_Bits = 4", "paper",
                 "--qaft-max-steps", "3"]) == 0
    doc = sw.load_sweep(tmp_path / "sweep.json")
    ds = load_dataset("sdigits", "test")
    fx = get_backend("numpy-fxp")
    assert doc["qaft_settings"]["points"] == ["weight_bits=4", "paper format"]
    for p in doc["points"]:
        q = p["qaft"]
        tuned = read_model_file(q["file"]).model
        assert tuned.fmt == FxpFormat(**p["format"]) and q["steps"] == 3
        assert q["fxp_sha256"] != p["fxp_sha256"]  # three steps moved the integers
        assert q["accuracy"] == measure(fx, tuned, ds, 120).accuracy
        assert q["training_forward_test_accuracy"] == measure(fx, tuned, ds, len(ds.y)).accuracy
    assert "after QAFT |" in (tmp_path / "sweep.md").read_text()


def test_a_fixed_point_model_is_refused(capsys, tmp_path):
    assert main(["sweep", str(shipped_model("sdigits", "ptq")), "--dataset", "sdigits", "--grid", "weight_bits=4",
                 "--no-dask", "--out", str(tmp_path)]) == 2
    assert "is a fixed-point model file" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()
