"""The paper-size run (SPEC.md 18.5, `s4dconf paper-run`): the paper-size recipes trained (float), quantised (PTQ)
and fine-tuned (QAFT) on one torch device, then evaluated and merged into the accuracy table.

    for recipe in paper-smnist, paper-psmnist, paper-scifar:
        <out>/<recipe>-float.npz   float training (recipes.make_models, stage float)
        <out>/<recipe>-ptq.npz     post-training quantisation
        <out>/<recipe>-qaft.npz    QAFT at batch `qaft_batch` (backpropagation through L integer steps: memory)
    accuracy_table(recipes) -> merged into <table>/accuracy.{json,md}, rows keyed by model = recipe name
    <out>/paper-run.log.json       device, sizes, seconds per stage, the rows measured

Everything that can be checked is checked before the first step trains: the recipe names, the device (`cuda`
without a usable CUDA device is refused), the data (each split surveyed), the table to merge into.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from s4dconf.backends.torch_backends import choose_device, device_description
from s4dconf.reference.validate import S4DInputError

from .accuracy import (MODELS_DIR, PAPER_RECIPES, accuracy_table, check_limit, check_recipes, load_table,
                       merge_tables, row_model, write_table)
from .datasets import survey_dataset
from .recipes import make_models
from .train import git_commit

TABLE_DIR = Path(__file__).resolve().parent.parent / "reports" / "accuracy"
# QAFT keeps every step's float64 integer-valued tensors for backpropagation: for the paper config (H=128, P=32,
# 4 layers) the peak memory of a forward and backward pass is about 1.6 GB per sequence at L=784 and 2.2 GB at
# L=1024 (measured on CPU, batch 2; SPEC.md 18.5). The recipes' float batches (64, 50) would need ~105-110 GB;
# 8 sequences (~18 GB) fit a 24 GB GPU.
PAPER_QAFT_BATCH = 8
LOG_NAME = "paper-run.log.json"


def check_paper_recipes(recipes) -> dict[str, str]:
    """{recipe: dataset} of the paper-size recipes asked for; any other name is refused with what to use."""
    models = check_recipes(recipes)
    if not models:
        raise S4DInputError(f"no recipe to run; give some of {', '.join(PAPER_RECIPES)} (--recipes)")
    others = [r for r in models if r not in PAPER_RECIPES]
    if others:
        raise S4DInputError(f"paper-run trains the paper-size recipes ({', '.join(PAPER_RECIPES)}); "
                            f"{', '.join(others)} is not one: train it with `s4dconf train {others[0]}`")
    return models


def check_device(request: str | None) -> str:
    """The torch device; `cuda` without a usable CUDA device is refused, saying what runs instead."""
    try:
        return choose_device(request or "cuda")
    except S4DInputError as e:
        raise S4DInputError(f"{e}. The paper-size run needs a CUDA GPU (days of training on a CPU); run it on a GPU "
                            "machine, or pass --device cpu to run it here anyway (slowly; with --max-steps N and "
                            "--limit N to test the code path)") from None


def paper_run(recipes=PAPER_RECIPES, out_dir=MODELS_DIR, device: str | None = "cuda", table_dir=TABLE_DIR,
              max_steps: int | None = None, limit: int | None = None, batch_size: int | None = None,
              qaft_batch: int = PAPER_QAFT_BATCH, data_dir=None, resume: bool = False, progress=print,
              train_progress: bool = True) -> dict:
    """Train, quantise, fine-tune and evaluate each recipe on `device`; merge its rows into <table_dir>/accuracy.json
    (rows of the same recipes already there are replaced: a new run supersedes them). Returns the run log.

    max_steps: optimiser steps per stage (a short run: the code path); limit: first N test sequences in the table
    (cells marked as a subset); batch_size: the float stage's batch (default the recipe's)."""
    models = check_paper_recipes(recipes)
    limit = check_limit(limit)
    for value, what in ((max_steps, "max_steps (--max-steps)"), (batch_size, "batch_size (--batch-size)"),
                        (qaft_batch, "qaft_batch (--qaft-batch)")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise S4DInputError(f"{what} must be a positive integer, got {value!r}")
    device = check_device(device)
    for dataset in dict.fromkeys(models.values()):  # a missing dataset fails now, not after hours of training
        for split in ("train", "test"):
            survey_dataset(dataset, split, data_dir)
    table_json = Path(table_dir) / "accuracy.json"
    base = load_table(table_json, "accuracy table to merge into") if table_json.is_file() else None
    out_dir = Path(out_dir)
    steps = {} if max_steps is None else {"max_steps": max_steps}
    log = {"device": device, "device_description": device_description(device), "git_commit": git_commit(),
           "out_dir": str(out_dir), "table": str(table_json), "max_steps": max_steps, "limit": limit,
           "batch_size": batch_size, "qaft_batch": qaft_batch, "recipes": {}}
    for name in models:
        seconds = {}
        t0 = time.perf_counter()
        progress(f"{name}: float training and PTQ on {log['device_description']}")
        make_models(name, out_dir, ("float", "ptq"), data_dir, device, resume, train_progress, **steps,
                    **({} if batch_size is None else {"batch_size": batch_size}))
        seconds["float+ptq"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        progress(f"{name}: QAFT at batch {qaft_batch}")
        stages = make_models(name, out_dir, ("qaft",), data_dir, device, False, train_progress, **steps,
                             batch_size=qaft_batch)
        seconds["qaft"] = round(time.perf_counter() - t0, 1)
        log["recipes"][name] = {"seconds": seconds, "files": [f"{name}-{k}.npz" for k in ("float", "ptq", "qaft")],
                                "test_accuracy_training_forward": {k: stages[k].get("test_accuracy_training_forward")
                                                                   for k in ("float", "qaft")}}
    progress(f"evaluating {', '.join(models)} (" + ("full test splits" if limit is None else
                                                   f"first {limit} test sequences") + ")")
    table = accuracy_table((), out_dir, data_dir, limit, progress=progress, recipes=list(models))
    if base is not None:
        base["rows"] = [r for r in base["rows"] if row_model(r) not in models]
        table = merge_tables(base, table)
    write_table(table, table_dir)
    log["rows"] = [r for r in table["rows"] if row_model(r) in models]
    (out_dir / LOG_NAME).write_text(json.dumps(log, indent=1, sort_keys=True, default=str) + "\n")
    return log
