"""Probes of the command line as a careful user and an adversary would run it (README "Command line": exit code 2 on
bad input, the message saying what, where and what to do). Every probe goes through `s4dconf.cli.main`; each bad
input must exit 2 with a message naming the thing, before any long work starts (the long steps are replaced by
stand-ins that fail the test if they are reached). The silent results of old (an accuracy from -5 samples, an empty
table) must now be refused or marked. Fast: tiny inputs, --limit, the shipped sdigits models."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from s4dconf import cli
from s4dconf.reports.claims import PARTIAL
from s4dconf.training.accuracy import FULL_TEST_SIZES, MODELS_DIR, is_partial

SHIPPED = Path(MODELS_DIR)


def run(capsys, *argv) -> tuple[int, str]:
    """cli.main(argv) -> (exit code, stderr)."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def refused(capsys, *argv, names=()) -> str:
    """Run argv; assert exit code 2, an error line, and that every string of `names` is in the message."""
    rc, err = run(capsys, *argv)
    assert rc == 2, f"exit code {rc} for {argv}; stderr: {err}"
    assert "error:" in err, err
    for n in names:
        assert str(n) in err, f"{n!r} not named in: {err}"
    return err


def _never(name):
    def stand_in(*a, **k):
        raise AssertionError(f"{name} ran although the input was bad: the check must come first")
    return stand_in


@pytest.fixture
def no_long_work(monkeypatch):
    """Every long step fails the test if reached: the conformance suite, measuring, training, golden verify."""
    from s4dconf.training import accuracy

    monkeypatch.setattr(cli, "run_conformance", _never("the conformance suite"))
    monkeypatch.setattr(cli, "cmd_golden", _never("golden verify"))
    monkeypatch.setattr(cli, "make_models", _never("training"))
    monkeypatch.setattr(accuracy, "measure", _never("measuring accuracy"))
    monkeypatch.setattr(cli.subprocess, "call", _never("a subprocess"))


@pytest.fixture
def afile(tmp_path) -> Path:
    p = tmp_path / "a-file"
    p.write_text("not a folder")
    return p


# ---------------------------------------------------------------- eval: arguments


@pytest.mark.parametrize("limit", ["-5", "0", "abc", "2.5"])
def test_eval_limit_must_be_a_positive_integer(capsys, tmp_path, no_long_work, limit):
    refused(capsys, "eval", "--limit", limit, "--out", tmp_path / "e", names=["--limit", "positive integer", limit])
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("backend, names", [
    ("nope", ["unknown backend 'nope'", "known: reference"]),
    ("torch-rec-f64", ["'torch-rec-f64' has no column", "columns: reference"]),
    ("loihi2", ["'loihi2' has no column"]),
])
def test_eval_backend_must_be_a_column(capsys, tmp_path, no_long_work, backend, names):
    refused(capsys, "eval", "--limit", 5, "--backend", "reference", "--backend", backend, "--out", tmp_path / "e",
            names=names)
    assert not (tmp_path / "e" / "accuracy.json").exists()


def test_eval_models_folder_must_exist(capsys, tmp_path, afile, no_long_work):
    refused(capsys, "eval", "--limit", 5, "--models", tmp_path / "missing", "--out", tmp_path / "e",
            names=["models folder", "missing", "does not exist"])
    refused(capsys, "eval", "--limit", 5, "--models", afile, "--out", tmp_path / "e", names=["a-file", "not a folder"])
    (tmp_path / "empty").mkdir()
    refused(capsys, "eval", "--limit", 5, "--models", tmp_path / "empty", "--out", tmp_path / "e",
            names=["no model file of dataset 'sdigits'", "sdigits-float.npz"])


@pytest.mark.parametrize("src, dst, names", [
    ("sdigits-qaft.npz", "sdigits-float.npz", ["sdigits-float.npz", "fixed-point model file", "'float'"]),
    ("sdigits-float.npz", "sdigits-ptq.npz", ["sdigits-ptq.npz", "float64 model file", "'ptq'"]),
    ("smnist-float.npz", "sdigits-float.npz", ["sdigits-float.npz", "trained on 'smnist'"]),
])
def test_eval_model_file_must_match_its_row(capsys, tmp_path, no_long_work, src, dst, names):
    """A fixed-point file named *-float.npz crashed the float backends (AttributeError); a float file named
    *-ptq.npz was quantised silently; another dataset's model ran silently."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SHIPPED / src, models / dst)
    refused(capsys, "eval", "--limit", 5, "--models", models, "--out", tmp_path / "e", names=names)


def _only_sdigits(tmp_path) -> Path:
    """A models folder with the sdigits models only: smnist's are missing there, whatever training/models ships."""
    folder = tmp_path / "only-sdigits"
    folder.mkdir()
    for kind in ("float", "ptq", "qaft"):
        shutil.copy(SHIPPED / f"sdigits-{kind}.npz", folder)
    return folder


def test_eval_dataset_and_data_dir(capsys, tmp_path, no_long_work):
    refused(capsys, "eval", "--dataset", "nope", "--out", tmp_path / "e", names=["unknown dataset 'nope'", "known:"])
    refused(capsys, "eval", "--dataset", "sdigits", "smnist", "--models", _only_sdigits(tmp_path), "--out",
            tmp_path / "e", names=["no model file of dataset 'smnist'"])
    refused(capsys, "eval", "--data-dir", tmp_path / "no-data", "--out", tmp_path / "e",
            names=["--data-dir", "no-data", "does not exist"])


@pytest.mark.parametrize("content, names", [
    (None, ["does not exist"]),
    ("{", ["is not valid JSON"]),
    ("[1]", ["must be a JSON object, got list"]),
    ('{"rows": 3}', ["'rows'"]),
    ('{"rows": [{"dataset": 3}]}', ["rows[0]", "'dataset'"]),
    ('{"rows": [{"dataset": "sdigits", "kind": "fp8"}]}', ["rows[0]", "'kind'", "'fp8'"]),
    ('{"rows": [{"dataset": "sdigits", "kind": "float", "cells": []}]}', ["rows[0]", "'cells'"]),
    ('{"rows": [{"dataset": "sdigits", "kind": "float", "cells": {"reference": {"accuracy": "0.9", "n": 5}}}]}',
     ["rows[0].cells['reference']", "'accuracy'", "'0.9'"]),
    ('{"rows": [{"dataset": "sdigits", "kind": "float", "cells": {"reference": {"accuracy": 1.5, "n": 5}}}]}',
     ["rows[0].cells['reference']", "1.5"]),
    ('{"rows": [{"dataset": "sdigits", "kind": "float", "cells": {"reference": {"accuracy": 0.9, "n": -5}}}]}',
     ["rows[0].cells['reference']", "'n'", "-5"]),
    ('{"rows": [{"dataset": "sdigits", "kind": "float", "cells": {"reference": {"accuracy": 0.9, "n": 0}}}]}',
     ["rows[0].cells['reference']", "n=0"]),
    ('{"rows": [{"dataset": "sdigits", "kind": "float", "cells": {"reference": {"accuracy": 0.9, "n": 361}}}]}',
     ["rows[0].cells['reference']", "n=361", "has 360"]),
    ('{"rows": [{"dataset": "sdigits", "kind": "float"}, {"dataset": "sdigits", "kind": "float"}]}',
     ["rows[1]", "second row"]),
    ('{"schema": "other/9", "rows": []}', ["schema 'other/9'"]),
])
def test_malformed_accuracy_json_is_named_by_merge_and_claims(capsys, tmp_path, no_long_work, content, names):
    bad = tmp_path / "acc.json"
    if content is not None:
        bad.write_text(content)
    refused(capsys, "eval", "--limit", 5, "--merge", bad, "--out", tmp_path / "e", names=[str(bad), *names])
    refused(capsys, "claims", "--bench", "--accuracy", bad, names=[str(bad), *names])


# ---------------------------------------------------------------- subsets: refused or marked, never passed as full


def test_a_subset_accuracy_marks_the_claim_partial(capsys, tmp_path):
    rc, _ = run(capsys, "eval", "--limit", 5, "--backend", "reference", "--backend", "numpy-fxp",
                "--out", tmp_path / "acc")
    assert rc == 0
    table = json.loads((tmp_path / "acc" / "accuracy.json").read_text())
    cells = [(r, c) for r in table["rows"] for c in r["cells"].values()]
    assert cells and all(c["n"] == 5 and "first 5 of 360" in c["note"] for _, c in cells)
    assert all(is_partial(r["dataset"], c, r) for r, c in cells)
    rc, _ = run(capsys, "claims", "--bench", "--accuracy", tmp_path / "acc" / "accuracy.json",
                "--json", tmp_path / "claims.json")
    assert rc == 0
    (drop,) = [v for v in json.loads((tmp_path / "claims.json").read_text()) if v["id"] == "accuracy-drop"]
    assert drop["verdict"].endswith(PARTIAL) and drop["note"].startswith("partial:"), drop
    assert "5 of 360" in drop["note"] and drop["measured"]["sdigits"]["partial"] is True


def test_a_full_split_accuracy_is_not_partial(capsys, tmp_path):
    full = FULL_TEST_SIZES["sdigits"]
    rows = [{"dataset": "sdigits", "kind": k, "cells": {c: {"accuracy": a, "n": full, "note": ""}}}
            for k, c, a in (("float", "reference", 0.98), ("ptq", "numpy-fxp", 0.97), ("qaft", "numpy-fxp", 0.975))]
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"rows": rows}))
    rc, _ = run(capsys, "claims", "--bench", "--accuracy", acc, "--json", tmp_path / "claims.json")
    assert rc == 0
    (drop,) = [v for v in json.loads((tmp_path / "claims.json").read_text()) if v["id"] == "accuracy-drop"]
    assert drop["verdict"] == "reproduced" and "partial" not in drop["note"]


# ---------------------------------------------------------------- outputs: checked first


def test_check_json_output_is_checked_before_the_suite(capsys, tmp_path, afile, no_long_work):
    refused(capsys, "check", "--backend", "reference", "--json", afile / "x.json", names=["--json", "a-file"])
    refused(capsys, "check", "--backend", "reference", "--json", tmp_path, names=["is a directory"])
    if Path("/proc/self").is_dir():  # a folder that cannot be created even by root
        refused(capsys, "check", "--backend", "reference", "--json", "/proc/s4dconf-nope/x.json",
                names=["/proc/s4dconf-nope/x.json", "cannot create"])
    refused(capsys, "check", "--backend", "nope", names=["unknown backend 'nope'"])


@pytest.mark.parametrize("argv, names", [
    (["model", "--config", "tiny", "--out", "{dir}"], ["model file (--out)", "is a directory"]),
    (["model", "--config", "tiny", "--out", "{file}/m.npz"], ["model file (--out)", "a-file", "not a folder"]),
    (["quantize", "{shipped}/sdigits-float.npz", "--out", "{shipped}/sdigits-float.npz"], ["is the input file"]),
    (["eval", "--limit", "5", "--out", "{file}"], ["output folder (--out)", "a-file", "not a folder"]),
    (["eval", "--limit", "5", "--out", "{file}/sub"], ["a-file", "not a folder"]),
    (["run", "--out", "{file}"], ["output folder (--out)", "a-file"]),
    (["report", "--out", "{file}"], ["output folder (--out)", "a-file"]),
    (["train", "sdigits", "--out-dir", "{file}"], ["output folder (--out-dir)", "a-file"]),
    (["golden", "generate", "--dir", "{file}"], ["golden folder (--dir)", "a-file"]),
    (["claims", "--bench", "--json", "{dir}"], ["verdicts JSON (--json)", "is a directory"]),
    (["claims", "--bench", "--accuracy", "{acc}", "--json", "{acc}"], ["is the input file"]),
    (["bench", "compare", "{acc}", "{dir}/b.json", "--json", "{acc}"], ["comparison JSON (--json)", "input file"]),
])
def test_outputs_are_checked_first(capsys, tmp_path, afile, no_long_work, argv, names):
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"rows": []}))
    fill = {"dir": tmp_path, "file": afile, "shipped": SHIPPED, "acc": acc}
    refused(capsys, *[a.format(**fill) for a in argv], names=names)


# ---------------------------------------------------------------- run: inputs checked before the first step


@pytest.mark.parametrize("extra, names", [
    (["--models", "{missing}"], ["models folder", "does not exist"]),
    (["--dataset", "nope"], ["unknown dataset 'nope'"]),
    (["--dataset", "sdigits", "smnist", "--models", "{only_sdigits}"], ["no model file of dataset 'smnist'"]),
    (["--models", "{fxp_as_float}"], ["fixed-point model file", "'float'"]),
])
def test_run_checks_its_inputs_before_the_golden_step(capsys, tmp_path, no_long_work, extra, names):
    bad = tmp_path / "fxp-as-float"
    bad.mkdir()
    shutil.copy(SHIPPED / "sdigits-qaft.npz", bad / "sdigits-float.npz")
    fill = {"missing": tmp_path / "missing", "fxp_as_float": bad, "only_sdigits": _only_sdigits(tmp_path)}
    refused(capsys, "run", "--out", tmp_path / "out", *[a.format(**fill) for a in extra], names=names)


# ---------------------------------------------------------------- argument types


@pytest.mark.parametrize("argv, names", [
    (["train", "sdigits", "--epochs", "-1"], ["--epochs", "positive integer"]),
    (["train", "sdigits", "--epochs", "0"], ["--epochs"]),
    (["train", "sdigits", "--max-steps", "0"], ["--max-steps"]),
    (["train", "sdigits", "--seed", "-1"], ["--seed", ">= 0"]),
    (["train", "sdigits", "--data-dir", "{missing}"], ["--data-dir", "does not exist"]),
    (["train", "nope"], ["unknown recipe 'nope'"]),
    (["model", "--config", "tiny", "--seed", "-1", "--out", "{dir}/m.npz"], ["--seed"]),
    (["model", "--config", "nope", "--out", "{dir}/m.npz"], ["'nope'"]),
    (["quantize", "{shipped}/sdigits-float.npz", "--out", "{dir}/q.npz", "--headroom-bits", "-40"],
     ["--headroom-bits"]),
    (["quantize", "{dir}/missing.npz", "--out", "{dir}/q.npz"], ["missing.npz"]),
])
def test_bad_arguments_exit_2_before_work(capsys, tmp_path, no_long_work, argv, names):
    fill = {"dir": tmp_path, "missing": tmp_path / "missing", "shipped": SHIPPED}
    out = ["--out-dir", str(tmp_path / "tr")] if argv[0] == "train" else []
    refused(capsys, *[a.format(**fill) for a in argv], *out, names=names)
    assert not (tmp_path / "q.npz").exists() and not (tmp_path / "m.npz").exists()


# ---------------------------------------------------------------- benchmark files


def _bench_file(path: Path, **change) -> Path:
    bench = {"name": "t", "fullname": "t.py::t", "group": None, "params": None,
             "extra_info": {"backend": "reference", "tokens_per_s": 10.0},
             "stats": {"median": 1e-3, "mean": 1e-3, "min": 1e-3}}
    bench.update(change)
    path.write_text(json.dumps({"machine_info": {"node": "n"}, "commit_info": {}, "benchmarks": [bench],
                                "datetime": "2026-01-01", "version": "5"}))
    return path


@pytest.mark.parametrize("change, names", [
    (dict(extra_info="backend=reference"), ["'extra_info'", "str"]),
    (dict(extra_info=[1, 2]), ["'extra_info'", "list"]),
    (dict(fullname=["t.py", "t"]), ["benchmarks[0]", "'fullname'", "list"]),
    (dict(name=7), ["benchmarks[0]", "'name'"]),
    (dict(group=["g"]), ["'group'"]),
    (dict(params="x=1"), ["'params'"]),
    (dict(stats=[1.0]), ["stats"]),
    (dict(stats={"median": "fast"}), ["median='fast'"]),
])
def test_malformed_benchmark_entries_are_named(capsys, tmp_path, change, names):
    good = _bench_file(tmp_path / "good.json")
    bad = _bench_file(tmp_path / "bad.json", **change)
    refused(capsys, "bench", "compare", good, bad, names=[str(bad), *names])
    if "stats" not in change:
        refused(capsys, "claims", "--bench", bad, names=[str(bad), *names])


def test_claims_refuse_unusable_benchmark_figures(capsys, tmp_path):
    bad = _bench_file(tmp_path / "bad.json", extra_info={"backend": "torch-rec", "tokens_per_s": "fast"})
    refused(capsys, "claims", "--bench", bad, names=[str(bad), "'t.py::t'", "tokens_per_s", "'fast'"])
    bad = _bench_file(tmp_path / "zero.json", extra_info={"backend": "torch-rec", "tokens_per_s": 0})
    refused(capsys, "claims", "--bench", bad, names=[str(bad), "tokens_per_s", "> 0"])
    commit = tmp_path / "commit.json"
    doc = json.loads(_bench_file(commit).read_text())
    commit.write_text(json.dumps(dict(doc, commit_info=["abc"])))
    refused(capsys, "bench", "compare", commit, commit, names=[str(commit), "commit_info"])


# ---------------------------------------------------------------- the rule's other half


def test_an_internal_bug_keeps_its_traceback(monkeypatch):
    """Only bad input becomes exit code 2: any other exception is a bug and propagates with its traceback."""
    def bug(args):
        raise KeyError("an internal bug")

    monkeypatch.setattr(cli, "cmd_configs", bug)
    with pytest.raises(KeyError, match="an internal bug"):
        cli.main(["configs"])


def test_help_and_version_exit_0(capsys):
    assert cli.main(["--version"]) == 0
    assert cli.main(["eval", "--help"]) == 0
    assert "--limit" in capsys.readouterr().out


@pytest.mark.parametrize("pytest_rc, names", [(4, ["pytest refused the extra arguments", "--bogus"]),
                                              (5, ["collected no conformance case", "--bogus"])])
def test_check_bad_pytest_arguments_exit_2(capsys, monkeypatch, pytest_rc, names):
    """pytest's own usage error (4) or an empty selection (5) from the arguments after -- is bad input: exit 2."""
    monkeypatch.setattr(cli, "run_conformance", lambda *a, **k: pytest_rc)
    refused(capsys, "check", "--backend", "reference", "--", "--bogus", names=names)

