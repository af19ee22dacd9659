"""The accuracy table (SPEC.md section 18.4): rows model x {float, PTQ, QAFT}, columns backends, every cell
measured on the dataset's full test split (or an explicitly labelled subset) and tied to the model file's sha256.

A row's model is the recipe that trained it (model files `<model>-<kind>.npz`): the CPU recipes are named after
their datasets (`smnist`), the paper-size ones are not (`paper-smnist`, evaluated on smnist). A row without a
"model" key (tables written before it existed) is the dataset's own: `row_model`.

    accuracy = #{argmax(logits at the last step, after the backend's declared delay) == label} / #samples

A float model runs on the float backends (reference, torch-rec, torch-conv, lava-float); a fixed-point model on
the integer ones (numpy-fxp, lava-fxp). A cell that is not measured says why. The paper's numbers are kept apart,
labelled "quoted".
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from s4dconf.backends import get_backend, runs_lava_simulator
from s4dconf.backends.aligned import aligned_run
from s4dconf.fixedpoint.formats import FXP_SCHEMA, read_model_file
from s4dconf.reference.modelfile import MODEL_SCHEMA
from s4dconf.reference.provenance import check_grades, grade_text
from s4dconf.reference.npzio import read_text_file
from s4dconf.reference.validate import S4DInputError, json_object

from .datasets import DATASETS, SDIGITS_N_TEST, load_dataset
from .recipes import RECIPES

MODELS_DIR = Path(__file__).resolve().parent / "models"
SCHEMA = "s4dconf-accuracy/1"
KINDS = ("float", "ptq", "qaft")
COLUMNS = {"float": ("reference", "torch-rec", "torch-conv", "lava-float"), "ptq": ("numpy-fxp", "lava-fxp"),
           "qaft": ("numpy-fxp", "lava-fxp")}
# The size of each dataset's full test split (datasets.py): a cell of fewer samples is a subset ("partial").
FULL_TEST_SIZES = {"sdigits": SDIGITS_N_TEST, "smnist": 10_000, "psmnist": 10_000, "scifar": 10_000,
                   "scifar-gray": 10_000}
# The Lava simulator costs ~2.5 ms per time step (SPEC.md 16.5); a full test split is hours of simulation.
# A batched Lava run costs ~0.05-0.25 ms per sample-step at batch 64-256 on 2 cores (SPEC.md 16.5): the budget in
# sample-steps covers a full 10,000 x 784 test split (measured: 19-20 min for lava-fxp, one process)
LAVA_MAX_STEPS = 8_000_000
HEAD_SAMPLES = 200  # a measured cell also records its first 200 samples' count: the rerun CI can afford
LAVA_SUBSET_SEED = 0  # the seed of the random subset a Lava cell measures when the split exceeds the budget
LAVA_BATCH = 256  # streams of one Lava network (block-diagonal connections, SPEC.md 16.5); ~100 MB per layer output
# Quoted figures (never measured here), each with its source and grade (SPEC.md 21.1): claim 4 is in no abstract.
QUOTED = [
    {"claim": "competitive results on MNIST-family datasets and some degradation on CIFAR that QAFT can mitigate",
     "source": "a published summary of the paper (claim 4)", "grade": ["secondary source"]},
    {"claim": "accuracy after quantisation to Loihi 2 precision stays within about 1 to 3 points of the float model",
     "source": "secondary compilations of the paper (claim 4)", "grade": ["secondary source"]},
    {"claim": "sCIFAR float 86.5 %, PTQ 71.7 %, QAFT 84.1 %",
     "source": "secondary compilations, unverified against the paper's tables", "grade": ["secondary source"]},
]


# The paper-size recipes (the paper's config, for a GPU): their rows are in every table of their datasets, and a
# model file that is not there is said so, never left out.
PAPER_RECIPES = tuple(name for name in RECIPES if name.startswith("paper-"))
NEEDS_GPU = "not trained here: needs a GPU (run `s4dconf paper-run --device cuda`)"


def shipped_model(model: str, kind: str) -> Path:
    return MODELS_DIR / f"{model}-{kind}.npz"


def row_model(row: dict) -> str:
    """The model (recipe) of an accuracy-table row: its "model", else its dataset (tables older than the key)."""
    return row.get("model") or row["dataset"]


def row_label(row: dict) -> str:
    """How a row is named in text: the dataset, or "<dataset> (<model>)" when the model is not the dataset's own."""
    model = row_model(row)
    return row["dataset"] if model == row["dataset"] else f"{row['dataset']} ({model})"


def paper_recipes_of(datasets) -> tuple[str, ...]:
    """The paper-size recipes that train on one of `datasets`."""
    return tuple(r for r in PAPER_RECIPES if RECIPES[r].dataset in datasets)


def check_recipes(recipes) -> dict[str, str]:
    """{recipe: its dataset} of a list of recipe names; S4DInputError for an unknown name."""
    if isinstance(recipes, str):
        raise S4DInputError(f"recipes must be a list of recipe names, got the string {recipes!r}")
    for name in recipes:
        if name not in RECIPES:
            raise S4DInputError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return {name: RECIPES[name].dataset for name in dict.fromkeys(recipes)}


@dataclasses.dataclass
class AccuracyCell:
    accuracy: float | None
    n: int
    seconds: float | None = None
    note: str = ""  # why not measured, or what subset
    # {"n": k, "correct": c}: how many of the cell's first k samples were right, from the same predictions: what a
    # quick rerun of those k samples must give again (CI checks the shipped models' cells this way, SPEC.md 18.4)
    head: dict | None = None


def check_limit(limit) -> int | None:
    """`limit` (the first N test samples only) is None or a positive integer; S4DInputError otherwise."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise S4DInputError(f"limit (--limit) must be a positive number of test samples, got {limit!r}; leave it out "
                            "to measure the full test split")
    return int(limit)


def check_columns(backends) -> tuple[str, ...] | None:
    """The columns asked for (None: all): each a registered backend with a column in the table."""
    if backends is None:
        return None
    known = sorted({c for cols in COLUMNS.values() for c in cols}, key=_col_order)
    for name in backends:
        get_backend(name)  # an unknown name fails here with the list of known ones
        if name not in known:
            raise S4DInputError(f"backend {name!r} has no column in the accuracy table; columns: {', '.join(known)}")
    return tuple(backends)


def check_models_dir(models_dir, datasets) -> Path:
    """models_dir is an existing folder holding at least one `<dataset>-<kind>.npz` of every dataset."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise S4DInputError(f"models folder {models_dir} " + ("is not a folder" if models_dir.exists() else
                            "does not exist") + "; pass the folder of <dataset>-<float|ptq|qaft>.npz (--models), "
                            f"e.g. the shipped {MODELS_DIR}")
    for name in datasets:
        if not any((models_dir / f"{name}-{kind}.npz").is_file() for kind in KINDS):
            raise S4DInputError(f"models folder {models_dir} has no model file of dataset {name!r} (looked for "
                                f"{', '.join(f'{name}-{k}.npz' for k in KINDS)}); train one with `s4dconf train "
                                f"{name} --out-dir {models_dir}` or drop it from --dataset")
    return models_dir


def read_row_model(path: Path, kind: str, ds):
    """The model file of a row, read and checked against the row: a float model for "float", a fixed-point model
    for "ptq"/"qaft" (a float file would be quantised silently by numpy-fxp, a fixed-point one crash the float
    backends), with the dataset's input width and number of classes."""
    mf = read_model_file(path)
    want = MODEL_SCHEMA if kind == "float" else FXP_SCHEMA
    if mf.schema != want:
        got = "fixed-point" if mf.schema == FXP_SCHEMA else "float64"
        raise S4DInputError(f"model file {path} is a {got} model file, but its name says {kind!r}, which needs "
                            f"schema {want!r}: a {kind} row holds a "
                            + ("float64 model (`s4dconf model` / `s4dconf train --stage float`)" if kind == "float"
                               else "fixed-point model (`s4dconf quantize`)") + "; rename or replace the file")
    trained_on = mf.record.get("dataset") if isinstance(mf.record, dict) else None
    if isinstance(trained_on, str) and trained_on != ds.name:
        raise S4DInputError(f"model file {path} was trained on {trained_on!r} (its training record says so), but its "
                            f"name puts it in the {ds.name!r} rows; rename or replace the file")
    cfg = mf.model.config
    if (cfg.d_input, cfg.n_classes) != (ds.d_input, ds.n_classes):
        raise S4DInputError(f"model file {path} has d_input={cfg.d_input}, n_classes={cfg.n_classes}; dataset "
                            f"{ds.name!r} has d_input={ds.d_input}, n_classes={ds.n_classes}: not a model of this "
                            "dataset")
    return mf


def _bar(total: int, desc: str):
    """A tqdm bar (samples done of total, rate, time left) on a terminal; None elsewhere: the caller's one line per
    cell is the progress then."""
    try:
        terminal = sys.stderr.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if not terminal:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", file=sys.stderr, leave=False, dynamic_ncols=True)


def last_logits(backend, model, ds, stop: int, batch: int = 500, start: int = 0, on_batch=None) -> np.ndarray:
    """(stop - start, classes): the last-step logits (after the backend's declared delay) of ds's samples
    start..stop-1, batch by batch from `start` (batches [start, start + batch), ...). The one per-sample code path of
    the table: in one process, and per shard on Dask workers (distributed.py), so both give the same numbers."""
    handle = backend.prepare(model)
    info = backend.info()
    path = info.paths[0]
    out = None
    for a in range(start, stop, batch):
        sel = np.arange(a, min(stop, a + batch))
        logits, _, _ = aligned_run(backend, handle, ds.inputs(sel), path, info)
        if out is None:
            out = np.empty((stop - start, logits.shape[-1]), logits.dtype)
        out[sel - start] = logits[:, -1]
        if on_batch is not None:
            on_batch(len(sel))
    return out


def predict(backend, model, ds, n: int, batch: int = 500, runner=None) -> np.ndarray:
    """int64 (n,): the class each of ds's first n sequences gets from one backend, argmax of the last-step logits
    (after the backend's declared delay), batch by batch. runner: None (this process, `last_logits`) or a callable
    runner(backend, model, ds, n, batch) -> the same (n, classes) logits, e.g. sharded over Dask workers
    (distributed.py)."""
    if runner is not None:
        return np.argmax(runner(backend, model, ds, n, batch), axis=1).astype(np.int64)
    bar = _bar(n, f"{ds.name} {getattr(backend, 'name', type(backend).__name__)}")
    logits = last_logits(backend, model, ds, n, batch, on_batch=None if bar is None else bar.update)
    if bar is not None:
        bar.close()
    return np.argmax(logits, axis=1).astype(np.int64)


def measure(backend, model, ds, limit: int | None = None, batch: int = 500, runner=None) -> AccuracyCell:
    """Accuracy of one backend on ds (the first `limit` samples when given), batch by batch (runner: `predict`)."""
    limit = check_limit(limit)
    n = len(ds.y) if limit is None else min(limit, len(ds.y))
    if n < 1:
        raise S4DInputError(f"dataset {ds.name!r} ({ds.split}) has no samples to measure")
    t0 = time.perf_counter()
    right = predict(backend, model, ds, n, batch, runner) == ds.y[:n]
    note = "" if n == len(ds.y) else f"first {n} of {len(ds.y)} test samples"
    head = min(n, HEAD_SAMPLES)
    return AccuracyCell(int(right.sum()) / n, n, round(time.perf_counter() - t0, 1), note,
                        {"n": head, "correct": int(right[:head].sum())})


def measure_batch(col: str) -> int:
    """The sequences per batch a column's cells run: LAVA_BATCH streams in one Lava network, 500 elsewhere."""
    return LAVA_BATCH if runs_lava_simulator(col) else 500


def over_lava_budget(col: str, n: int, length: int) -> bool:
    """Whether a cell of n sequences of `length` steps is more than the Lava simulator's budget (lava_subset)."""
    return runs_lava_simulator(col) and n * length > LAVA_MAX_STEPS


def lava_subset(ds, n: int):
    """(the samples a Lava cell measures, its note) when ds's first n samples exceed the simulator's budget, n x L >
    LAVA_MAX_STEPS: a random subset of LAVA_MAX_STEPS // L of them, drawn without replacement by
    numpy.random.default_rng(LAVA_SUBSET_SEED).choice and kept in split order, so anyone draws the same samples. A
    random subset, not the first samples: a split's order may follow its classes or sources."""
    k = LAVA_MAX_STEPS // ds.length
    if k < 1:
        raise S4DInputError(f"dataset {ds.name!r} has sequences of {ds.length} steps, more than the Lava budget of "
                            f"{LAVA_MAX_STEPS} sample-steps")
    idx = np.sort(np.random.default_rng(LAVA_SUBSET_SEED).choice(n, size=k, replace=False))
    sub = dataclasses.replace(ds, x=ds.x[idx], y=ds.y[idx], meta={**ds.meta, "subset_of": n,
                                                                   "subset_seed": LAVA_SUBSET_SEED})
    note = (f"random subset of {k} of {n} test samples (numpy default_rng({LAVA_SUBSET_SEED}).choice, without "
            f"replacement): {n} x {ds.length} steps exceed the Lava simulator's budget of {LAVA_MAX_STEPS} "
            f"sample-steps (~0.2 ms per sample-step at batch {LAVA_BATCH}, SPEC.md 16.5)")
    return sub, note


def prepare_table(datasets=("sdigits",), models_dir: Path = MODELS_DIR, data_dir=None, limit: int | None = None,
                  backends=None, recipes=None):
    """Every check of accuracy_table before its first measurement: the dataset and recipe names, `limit`, the
    columns, the models folder; then every test split is loaded and every model file read and matched to its row.
    recipes: further models by recipe name (None: the paper-size recipes of `datasets`). Returns (models {model:
    dataset}, splits {dataset: SequenceDataset}, files {(model, kind): ModelFile or None}, limit, backends). Also
    what `s4dconf run` calls before its long steps."""
    if isinstance(datasets, str) or not (datasets or recipes):
        raise S4DInputError(f"datasets must be a non-empty list of names (known: {', '.join(DATASETS)}), "
                            f"got {datasets!r}")
    datasets = list(dict.fromkeys(datasets))
    for name in datasets:
        if name not in DATASETS:
            raise S4DInputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    models = {name: name for name in datasets}
    models.update(check_recipes(paper_recipes_of(datasets) if recipes is None else recipes))
    limit = check_limit(limit)
    backends = check_columns(backends)
    models_dir = check_models_dir(models_dir, datasets)
    splits = {name: load_dataset(name, "test", data_dir) for name in dict.fromkeys(models.values())}
    files = {}
    for model, name in models.items():
        for kind in KINDS:
            path = models_dir / f"{model}-{kind}.npz"
            files[model, kind] = read_row_model(path, kind, splits[name]) if path.is_file() else None
    return models, splits, files, limit, backends


def missing_model_note(model: str, path: Path) -> str:
    return NEEDS_GPU if model in PAPER_RECIPES else f"no model file {path}"


def accuracy_table(datasets=("sdigits",), models_dir: Path = MODELS_DIR, data_dir=None, limit: int | None = None,
                   backends=None, progress=print, recipes=None, runner=None) -> dict:
    """Measure every (model, kind, backend) cell for the model files `<model>-<kind>.npz` in models_dir: the models
    of `datasets` (named after them) and `recipes` (None: the paper-size recipes of `datasets`). A missing model
    file gives a row whose cells say why (a paper-size recipe: NEEDS_GPU).

    Every argument is checked, every test split loaded and every model file read and matched to its row before the
    first cell is measured: bad input fails in seconds, not after an hour of measuring. runner: how each cell's
    logits are computed (`predict`; distributed.py shards them over Dask workers)."""
    models, splits, files, limit, backends = prepare_table(datasets, models_dir, data_dir, limit, backends, recipes)
    models_dir = Path(models_dir)
    rows = []
    for model, name in models.items():
        ds = splits[name]
        for kind in KINDS:
            path = models_dir / f"{model}-{kind}.npz"
            row = {"dataset": name, "model": model, "kind": kind, "model_file": str(path.name), "n_test": len(ds.y),
                   "cells": {}}
            mf = files[model, kind]
            if mf is None:
                row["note"] = missing_model_note(model, path)
                # every column of the row says why, --backend or not: no backend can measure a missing model (a
                # Lava-only run merged into the table would otherwise leave the other columns blank)
                row["cells"] = {col: dataclasses.asdict(AccuracyCell(None, 0, note=row["note"]))
                                for col in COLUMNS[kind]}
                rows.append(row)
                continue
            row["model_sha256"] = mf.sha256
            row["record"] = _summary(mf.record)
            for col in COLUMNS[kind]:
                if backends is not None and col not in backends:
                    continue
                b = get_backend(col)
                av = b.availability()
                n = len(ds.y) if limit is None else min(limit, len(ds.y))
                if not av.available:
                    cell = AccuracyCell(None, 0, note=f"not available: {av.reason}")
                elif over_lava_budget(col, n, ds.length):
                    sub, note = lava_subset(ds, n)
                    cell = measure(b, mf.model, sub, None, batch=measure_batch(col), runner=runner)
                    cell.note = note
                else:
                    cell = measure(b, mf.model, ds, limit, batch=measure_batch(col), runner=runner)
                progress(f"{model:8s} {kind:5s} {col:11s} "
                         + (f"{cell.accuracy:.4f} ({cell.n} samples, {cell.seconds} s, "
                            f"{cell.n / max(cell.seconds, 0.1):.0f} samples/s)" if cell.accuracy is not None
                            else cell.note))
                row["cells"][col] = dataclasses.asdict(cell)
            rows.append(row)
    return {"schema": SCHEMA, "rows": rows, "quoted": QUOTED,
            "columns": sorted({c for cols in COLUMNS.values() for c in cols}, key=_col_order)}


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def check_table(table, what: str = "accuracy table") -> dict:
    """Check the shape of an accuracy table (the JSON of `s4dconf eval`) before anything reads it: an object whose
    "rows" is a list of {dataset, kind, cells: {column: {accuracy, n, note}}}; S4DInputError naming `what` and the
    entry otherwise. "schema", "columns" and "quoted" are optional (a hand-written table may leave them out); so is
    a row's "model" (default: its dataset, `row_model`). Rows are keyed by (model, kind)."""
    if not isinstance(table, dict):
        raise S4DInputError(f"{what} must be a JSON object with a list 'rows', got {type(table).__name__}")
    if "schema" in table and table["schema"] != SCHEMA:
        raise S4DInputError(f"{what} has schema {table['schema']!r}, this reader needs {SCHEMA!r}")
    rows = table.get("rows")
    if not isinstance(rows, list):
        raise S4DInputError(f"{what} must have a list 'rows' (one per dataset and model kind), got "
                            + ("nothing" if rows is None else type(rows).__name__))
    seen = {}
    for i, row in enumerate(rows):
        where = f"{what}: rows[{i}]"
        if not isinstance(row, dict):
            raise S4DInputError(f"{where} must be an object, got {type(row).__name__}")
        if not isinstance(row.get("dataset"), str) or not row["dataset"]:
            raise S4DInputError(f"{where}: 'dataset' must be a dataset name, got {row.get('dataset')!r}")
        if row.get("kind") not in KINDS:
            raise S4DInputError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {row.get('kind')!r}")
        if "model" in row and (not isinstance(row["model"], str) or not row["model"]):
            raise S4DInputError(f"{where}: 'model' must be a recipe name (or left out: the dataset's own model), "
                                f"got {row['model']!r}")
        key = (row_model(row), row["kind"])
        if key in seen:
            raise S4DInputError(f"{where}: a second row of {key[0]} {key[1]} (the first is rows[{seen[key]}])")
        seen[key] = i
        for k in ("model_sha256", "note", "model_file"):
            if k in row and not isinstance(row[k], str):
                raise S4DInputError(f"{where}: {k!r} must be a string, got {row[k]!r}")
        if "n_test" in row and (isinstance(row["n_test"], bool) or not isinstance(row["n_test"], int)
                                or row["n_test"] < 1):
            raise S4DInputError(f"{where}: 'n_test' must be a positive integer, got {row['n_test']!r}")
        cells = row.get("cells", {})
        if not isinstance(cells, dict):
            raise S4DInputError(f"{where}: 'cells' must be an object (column -> cell), got {type(cells).__name__}")
        full = FULL_TEST_SIZES.get(row["dataset"])
        for col, cell in cells.items():
            _check_cell(cell, f"{where}.cells[{col!r}]")
            if full is not None and cell["n"] > full:
                raise S4DInputError(f"{where}.cells[{col!r}]: n={cell['n']} samples, but the {row['dataset']} test "
                                    f"split has {full}")
    for k in ("columns", "quoted"):
        if k in table and not isinstance(table[k], list):
            raise S4DInputError(f"{what}: {k!r} must be a list, got {type(table[k]).__name__}")
    if not all(isinstance(c, str) for c in table.get("columns", [])):
        raise S4DInputError(f"{what}: 'columns' must be a list of backend names")
    if not all(isinstance(q, dict) and isinstance(q.get("claim"), str) and isinstance(q.get("source"), str)
               for q in table.get("quoted", [])):
        raise S4DInputError(f"{what}: 'quoted' must be a list of {{claim, source, grade}} objects")
    for i, q in enumerate(table.get("quoted", [])):
        if "grade" in q:
            check_grades(q["grade"], f"{what}: quoted[{i}]")
    return table


def _check_cell(cell, where: str) -> None:
    if not isinstance(cell, dict):
        raise S4DInputError(f"{where} must be an object {{accuracy, n, seconds, note}}, got {type(cell).__name__}")
    acc, n = cell.get("accuracy"), cell.get("n")
    if acc is not None and not (_number(acc) and 0.0 <= acc <= 1.0):
        raise S4DInputError(f"{where}: 'accuracy' must be a fraction in [0, 1] or null (not measured), got {acc!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise S4DInputError(f"{where}: 'n' must be the number of samples measured (an integer >= 0), got {n!r}")
    if acc is not None and n < 1:
        raise S4DInputError(f"{where}: an accuracy of {acc!r} from n={n} samples; a measured cell needs n >= 1")
    if "note" in cell and not isinstance(cell["note"], str):
        raise S4DInputError(f"{where}: 'note' must be a string, got {cell['note']!r}")
    secs = cell.get("seconds")
    if secs is not None and not (_number(secs) and secs >= 0):
        raise S4DInputError(f"{where}: 'seconds' must be a number >= 0 or null, got {secs!r}")
    head = cell.get("head")
    if head is not None:
        k, c = (head.get("n"), head.get("correct")) if isinstance(head, dict) else (None, None)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (k, c)) or not 0 <= c <= k <= n:
            raise S4DInputError(f"{where}: 'head' must be {{n, correct}} with 0 <= correct <= n <= the cell's n "
                                f"({n}), or null, got {head!r}")


def load_table(path, what: str = "accuracy file") -> dict:
    """Read and check an accuracy table JSON file (check_table); every problem is an S4DInputError naming the
    file and the entry."""
    path = Path(path)
    if not path.is_file():
        raise S4DInputError(f"{what} {path} " + ("is a directory" if path.is_dir() else "does not exist")
                            + "; give the accuracy.json written by `s4dconf eval`")
    text = read_text_file(path, what)
    return check_table(json_object(text, f"{what} {path}"), f"{what} {path}")


def is_partial(dataset: str, cell: dict, row: dict | None = None) -> bool:
    """Whether a measured cell covers fewer samples than the dataset's full test split (a --limit subset)."""
    full = FULL_TEST_SIZES.get(dataset, (row or {}).get("n_test"))
    if full is None:
        return bool(cell.get("note"))  # an unknown dataset: a measured cell's note names its subset
    return cell.get("n", 0) < full


def merge_tables(base: dict, new: dict) -> dict:
    """`base` with the measured cells of `new` put in (rows matched by model, kind and model sha256): columns
    measured in another environment (the Lava env) join the same table. A row whose model differs is refused; a
    base row without a model file (never trained here) is replaced by a new row that has one."""
    check_table(base, "accuracy table to merge into")
    check_table(new, "new accuracy table")
    base.setdefault("schema", SCHEMA)
    base["quoted"] = new.get("quoted") or base.get("quoted") or QUOTED  # the newer run's sources win
    base["columns"] = sorted(set(base.get("columns", [])) | set(new.get("columns", [])), key=_col_order)
    index = {(row_model(r), r["kind"]): i for i, r in enumerate(base["rows"])}
    for row in new["rows"]:
        i = index.get((row_model(row), row["kind"]))
        if i is None:
            base["rows"].append(row)
            continue
        old = base["rows"][i]
        if "model_sha256" not in old and "model_sha256" in row:
            base["rows"][i] = row
            continue
        if old.get("model_sha256") != row.get("model_sha256"):
            raise S4DInputError(f"cannot merge {row_label(row)} {row['kind']}: the tables measured different model "
                                f"files ({old.get('model_sha256', '?')[:12]} vs {row.get('model_sha256', '?')[:12]})")
        for col, cell in row.get("cells", {}).items():
            if cell["accuracy"] is not None or col not in old.setdefault("cells", {}):
                old["cells"][col] = cell
    return base


def _col_order(c):
    order = ["reference", "torch-rec", "torch-conv", "numpy-fxp", "lava-float", "lava-fxp"]
    return order.index(c) if c in order else len(order)


def _summary(record: dict) -> dict:
    keep = ("kind", "method", "dataset", "epochs_done", "steps_done", "seconds", "git_commit", "params_sha256",
            "source_params_sha256", "start_params_sha256", "test_accuracy_training_forward")
    return {k: record[k] for k in keep if k in record}


def table_markdown(table: dict) -> str:
    cols = table["columns"]
    lines = ["# Accuracy (measured)", "",
             "Each cell: accuracy on the full test split (unless the note says otherwise), argmax of the last-step "
             "logits. `-`: not applicable (float models run on float backends, fixed-point models on integer "
             "backends). Model files by sha256 (first 12 hex digits); a dataset's rows of another recipe name it in "
             "parentheses.", "",
             "| dataset | model | sha256 | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    notes = {}  # note text -> its number: a note shared by a row's cells (a missing model file) is listed once

    def mark(text: str) -> str:
        return f"[{notes.setdefault(text, len(notes) + 1)}]"

    for row in table["rows"]:
        cells, name = [], row_label(row)
        for c in cols:
            cell = row["cells"].get(c)
            if cell is None and c in COLUMNS.get(row["kind"], ()):
                # an applicable column the table's runs did not measure (a --backend run, the Lava env not merged):
                # said, never shown as not applicable
                cells.append("n/m " + mark(f"{name} {row['kind']} {c}: not measured in this table (`s4dconf eval "
                                           f"--dataset {row['dataset']} --backend {c} --merge <accuracy.json>`)"))
            elif cell is None:
                cells.append("-")
            elif cell["accuracy"] is None:
                # a row's own note (no model file) holds for all its cells: one footnote
                shared = cell["note"] == row.get("note")
                cells.append("n/m " + mark(f"{name}: {cell['note']}" if shared
                                           else f"{name} {row['kind']} {c}: {cell['note']}"))
            else:
                subset = " " + mark(f"{name} {row['kind']} {c}: {cell['note']}") if cell["note"] else ""
                cells.append(f"{100 * cell['accuracy']:.2f} %{subset}")
        lines.append(f"| {name} | {row['kind']} | {row.get('model_sha256', 'missing')[:12]} | "
                     + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes (n/m = not measured):", ""] + [f"[{i}] {n}" for n, i in notes.items()]
    lines += ["", "## Quoted (not measured here), with each source's grade (SPEC.md 21.1)", ""]
    lines += [f"- {q['claim']} (quoted; {q['source']}; grade: {grade_text(q.get('grade', ['ungraded']))})"
              for q in table["quoted"]]
    return "\n".join(lines) + "\n"


def write_table(table: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    j, m = out_dir / "accuracy.json", out_dir / "accuracy.md"
    j.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    m.write_text(table_markdown(table))
    return j, m
