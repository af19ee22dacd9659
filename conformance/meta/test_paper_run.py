"""The paper-size run (SPEC.md 18.5, `s4dconf paper-run`): refusals, and its whole code path on CPU on a tiny data
folder and a few steps (the paper-size recipes themselves need a GPU)."""
from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: training needs it")

from s4dconf.cli import main  # noqa: E402
from s4dconf.conformance.meta.test_datasets import write_cifar_bin, write_mnist  # noqa: E402
from s4dconf.reference.validate import S4DInputError  # noqa: E402
from s4dconf.training import datafiles  # noqa: E402
from s4dconf.training.accuracy import COLUMNS, KINDS, NEEDS_GPU, PAPER_RECIPES, load_table, row_model  # noqa: E402
from s4dconf.training.paper_run import TABLE_DIR, check_paper_recipes, paper_run  # noqa: E402
from s4dconf.training.recipes import RECIPES  # noqa: E402
from s4dconf.training.datasets import SHAPES  # noqa: E402

MEASURED = ("reference", "torch-rec", "torch-conv", "numpy-fxp")  # the columns this environment has


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A tiny data folder: MNIST 12 train / 4 test, CIFAR-10 binary 5 x 2 train / 2 test."""
    monkeypatch.delenv(datafiles.ENV_VAR, raising=False)
    monkeypatch.setenv(datafiles.CACHE_ENV_VAR, str(tmp_path / "cache"))
    folder = tmp_path / "data"
    write_mnist(folder / "mnist", {"train": 12, "test": 4})
    write_cifar_bin(folder / "cifar10", per_file=2)
    return folder


def test_paper_recipes_are_the_papers_config_on_each_dataset():
    assert set(PAPER_RECIPES) == {"paper-smnist", "paper-psmnist", "paper-scifar"}
    for name in PAPER_RECIPES:
        spec = RECIPES[name]
        assert (spec.config.H, spec.config.P, spec.config.n_layers) == (128, 32, 4)
        assert spec.config.d_input == SHAPES[spec.dataset][1]  # scifar: RGB, d_input 3


def test_cuda_without_cuda_is_refused_before_anything_runs(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    rc = main(["paper-run", "--out-dir", str(tmp_path / "m"), "--table", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert rc == 2 and "no usable CUDA device" in err and "--device cpu" in err
    assert not (tmp_path / "m").exists() and not (tmp_path / "t").exists()


def test_only_paper_recipes_and_bad_sizes_are_refused(tmp_path):
    with pytest.raises(S4DInputError, match="s4dconf train smnist"):
        check_paper_recipes(["paper-smnist", "smnist"])
    with pytest.raises(S4DInputError, match="unknown recipe 'paper-nope'"):
        check_paper_recipes(["paper-nope"])
    with pytest.raises(S4DInputError, match="qaft_batch"):
        paper_run(["paper-smnist"], tmp_path, "cpu", tmp_path, qaft_batch=0)


def test_a_missing_dataset_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv(datafiles.ENV_VAR, raising=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(S4DInputError, match="CIFAR-10"):
        paper_run(["paper-scifar"], tmp_path / "m", "cpu", tmp_path / "t", data_dir=tmp_path / "empty")
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_paper_run_on_cpu_trains_quantises_fine_tunes_and_merges(data, tmp_path, capsys):
    """paper-smnist end to end on CPU: 2 optimiser steps per stage, QAFT at batch 1 (the paper config's QAFT
    backpropagates through 784 integer steps: ~20 s of CPU a sequence). paper-psmnist and paper-scifar run the same
    code (paper-scifar's 1024 x 3 QAFT is slower still); their rows are test_paper_rows_of_a_table_without_the_models
    below, their recipes test_paper_recipes_are_the_papers_config_on_each_dataset."""
    table_dir = tmp_path / "table"
    table_dir.mkdir()
    shutil.copy(TABLE_DIR / "accuracy.json", table_dir / "accuracy.json")
    before = load_table(table_dir / "accuracy.json")
    models = tmp_path / "models"
    rc = main(["paper-run", "--device", "cpu", "--recipes", "paper-smnist", "--max-steps", "2", "--limit", "3",
               "--batch-size", "4", "--qaft-batch", "1", "--out-dir", str(models), "--table", str(table_dir),
               "--data-dir", str(data), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    for kind in KINDS:
        assert (models / f"paper-smnist-{kind}.npz").is_file()
    train_log = json.loads((models / "paper-smnist.log.json").read_text())
    assert train_log["float"]["device"] == train_log["qaft"]["device"] == "cpu"
    assert train_log["float"]["steps_done"] == train_log["qaft"]["steps_done"] == 2
    assert train_log["qaft"]["spec"]["batch_size"] == 1 and train_log["float"]["spec"]["batch_size"] == 4
    run_log = json.loads((models / "paper-run.log.json").read_text())
    assert run_log["device"] == "cpu" and list(run_log["recipes"]) == ["paper-smnist"]
    table = load_table(table_dir / "accuracy.json")
    rows = {(row_model(r), r["kind"]): r for r in table["rows"]}
    for kind in KINDS:
        row = rows["paper-smnist", kind]
        assert row["dataset"] == "smnist" and row["model_file"] == f"paper-smnist-{kind}.npz"
        for col in COLUMNS[kind]:
            cell = row["cells"][col]
            if col in MEASURED:
                assert cell["accuracy"] is not None and cell["n"] == 3 and "first 3 of 4" in cell["note"]
            else:  # the Lava columns: not in this environment, and the cell says so
                assert cell["accuracy"] is None and cell["note"]
    # the CPU recipes' rows are untouched (the claims read those: SPEC.md 18.4)
    assert ([r for r in table["rows"] if row_model(r) == r["dataset"]]
            == [r for r in before["rows"] if row_model(r) == r["dataset"]])
    assert "smnist (paper-smnist)" in (table_dir / "accuracy.md").read_text()


def test_paper_rows_of_a_table_without_the_models(data, tmp_path):
    """A table of smnist and scifar names the paper-size recipes of both, every cell saying it needs a GPU; a later
    table that has the models replaces those rows on merge."""
    from s4dconf.training.accuracy import accuracy_table, merge_tables, table_markdown

    models = tmp_path / "models"
    models.mkdir()
    table = accuracy_table(["smnist", "scifar"], models_dir=_cpu_models(models, data), data_dir=data, limit=2,
                           backends=["reference", "numpy-fxp"], progress=lambda _: None)
    paper = [r for r in table["rows"] if row_model(r) != r["dataset"]]
    # paper-psmnist trains on psmnist, which this table does not measure
    assert {(row_model(r), r["dataset"]) for r in paper} == {("paper-smnist", "smnist"), ("paper-scifar", "scifar")}
    for r in paper:
        assert r["note"] == NEEDS_GPU and all(c["accuracy"] is None and c["note"] == NEEDS_GPU
                                              for c in r["cells"].values())
        assert set(r["cells"]) == set(COLUMNS[r["kind"]])  # every column, not only the two measured here
    md = table_markdown(table)
    assert md.count(NEEDS_GPU) == 2  # one footnote per recipe, shared by its rows' cells
    assert "| scifar (paper-scifar) | qaft | missing |" in md
    trained = {"rows": [{**paper[0], "model_sha256": "ab" * 32, "note": "",
                         "cells": {"reference": {"accuracy": 0.5, "n": 2, "seconds": 0.1, "note": "first 2"}}}]}
    merged = merge_tables(table, trained)
    row = next(r for r in merged["rows"] if (row_model(r), r["kind"]) == (row_model(paper[0]), paper[0]["kind"]))
    assert row["model_sha256"] == "ab" * 32 and row["cells"]["reference"]["accuracy"] == 0.5


def _cpu_models(folder, data):
    """Untrained float and PTQ models of smnist and scifar (tiny configs) in `folder`: the CPU recipes' rows."""
    from s4dconf.fixedpoint.formats import save_fxp
    from s4dconf.fixedpoint.quantize import quantize
    from s4dconf.reference.config import ModelConfig
    from s4dconf.reference.model import S4DModel, init_params
    from s4dconf.reference.modelfile import save_model
    from s4dconf.training.datasets import load_dataset

    for name in ("smnist", "scifar"):
        cfg = ModelConfig(name=name, d_input=SHAPES[name][1], H=4, P=2, n_layers=1)
        model = S4DModel(cfg, init_params(cfg, 0))
        save_model(model, folder / f"{name}-float.npz", {"dataset": name})
        save_fxp(quantize(model, load_dataset(name, "train", data).inputs(slice(0, 4))), folder / f"{name}-ptq.npz")
    return folder
