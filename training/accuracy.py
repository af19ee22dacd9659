"""The accuracy table (SPEC.md section 18.4): rows dataset x {float, PTQ, QAFT}, columns backends, every cell
measured on the dataset's full test split (or an explicitly labelled subset) and tied to the model file's sha256.

    accuracy = #{argmax(logits at the last step, after the backend's declared delay) == label} / #samples

A float model runs on the float backends (reference, torch-rec, torch-conv, lava-float); a fixed-point model on
the integer ones (numpy-fxp, lava-fxp). A cell that is not measured says why. The paper's numbers are kept apart,
labelled "quoted".
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from s4dconf.backends import get_backend
from s4dconf.backends.aligned import aligned_run
from s4dconf.fixedpoint.formats import read_model_file
from s4dconf.reference.validate import S4DInputError

from .datasets import load_dataset

MODELS_DIR = Path(__file__).resolve().parent / "models"
KINDS = ("float", "ptq", "qaft")
COLUMNS = {"float": ("reference", "torch-rec", "torch-conv", "lava-float"), "ptq": ("numpy-fxp", "lava-fxp"),
           "qaft": ("numpy-fxp", "lava-fxp")}
# The Lava simulator costs ~2.5 ms per time step (SPEC.md 16.5); a full test split is hours of simulation.
LAVA_MAX_STEPS = 200_000
LAVA_BATCH = 20  # a Lava graph lays the batch side by side (weights kron(I_N, W)): keep N small
QUOTED = [
    {"claim": "accuracy after quantisation to Loihi 2 precision stays within about 1 to 3 points of the float model; "
              "PTQ loses more on sCIFAR, QAFT recovers most of it", "source": "paper abstract (claim 4)"},
    {"claim": "sCIFAR float 86.5 %, PTQ 71.7 %, QAFT 84.1 %", "source": "a secondary source (unverified)"},
]


def shipped_model(dataset: str, kind: str) -> Path:
    return MODELS_DIR / f"{dataset}-{kind}.npz"


@dataclasses.dataclass
class AccuracyCell:
    accuracy: float | None
    n: int
    seconds: float | None = None
    note: str = ""  # why not measured, or what subset


def measure(backend, model, ds, limit: int | None = None, batch: int = 500) -> AccuracyCell:
    """Accuracy of one backend on ds (the first `limit` samples when given), batch by batch."""
    n = len(ds.y) if limit is None else min(limit, len(ds.y))
    handle = backend.prepare(model)
    info = backend.info()
    path = info.paths[0]
    t0 = time.perf_counter()
    correct = 0
    for a in range(0, n, batch):
        sel = np.arange(a, min(n, a + batch))
        logits, _, _ = aligned_run(backend, handle, ds.inputs(sel), path, info)
        correct += int((np.argmax(logits[:, -1], axis=1) == ds.y[sel]).sum())
    note = "" if n == len(ds.y) else f"first {n} of {len(ds.y)} test samples"
    return AccuracyCell(correct / n, n, round(time.perf_counter() - t0, 1), note)


def accuracy_table(datasets=("sdigits",), models_dir: Path = MODELS_DIR, data_dir=None, limit: int | None = None,
                   backends=None, progress=print) -> dict:
    """Measure every (dataset, kind, backend) cell for the model files `<dataset>-<kind>.npz` in models_dir."""
    rows = []
    for name in datasets:
        ds = load_dataset(name, "test", data_dir)
        for kind in KINDS:
            path = Path(models_dir) / f"{name}-{kind}.npz"
            row = {"dataset": name, "kind": kind, "model_file": str(path.name), "cells": {}}
            if not path.is_file():
                row["note"] = f"no model file {path}"
                rows.append(row)
                continue
            mf = read_model_file(path)
            row["model_sha256"] = mf.sha256
            row["record"] = _summary(mf.record)
            model = mf.model
            for col in COLUMNS[kind]:
                if backends is not None and col not in backends:
                    continue
                b = get_backend(col)
                av = b.availability()
                n = len(ds.y) if limit is None else min(limit, len(ds.y))
                if not av.available:
                    cell = AccuracyCell(None, 0, note=f"not available: {av.reason}")
                elif col.startswith("lava") and n * ds.length > LAVA_MAX_STEPS:
                    cell = AccuracyCell(None, 0, note=f"not run: {n} samples x {ds.length} steps on the Lava simulator "
                                              f"(~2.5 ms/step, SPEC.md 16.5) exceeds the {LAVA_MAX_STEPS} step budget")
                else:
                    cell = measure(b, model, ds, limit, batch=LAVA_BATCH if col.startswith("lava") else 500)
                progress(f"{name:8s} {kind:5s} {col:11s} "
                         + (f"{cell.accuracy:.4f} ({cell.n} samples, {cell.seconds} s)" if cell.accuracy is not None
                            else cell.note))
                row["cells"][col] = dataclasses.asdict(cell)
            rows.append(row)
    return {"schema": "s4dconf-accuracy/1", "rows": rows, "quoted": QUOTED,
            "columns": sorted({c for cols in COLUMNS.values() for c in cols}, key=_col_order)}


def merge_tables(base: dict, new: dict) -> dict:
    """`base` with the measured cells of `new` put in (rows matched by dataset, kind and model sha256): columns
    measured in another environment (the Lava env) join the same table. A row whose model differs is refused."""
    index = {(r["dataset"], r["kind"]): r for r in base["rows"]}
    for row in new["rows"]:
        old = index.get((row["dataset"], row["kind"]))
        if old is None:
            base["rows"].append(row)
            continue
        if old.get("model_sha256") != row.get("model_sha256"):
            raise S4DInputError(f"cannot merge {row['dataset']} {row['kind']}: the tables measured different model "
                                f"files ({old.get('model_sha256', '?')[:12]} vs {row.get('model_sha256', '?')[:12]})")
        for col, cell in row["cells"].items():
            if cell["accuracy"] is not None or col not in old["cells"]:
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
             "backends). Model files by sha256 (first 12 hex digits).", "",
             "| dataset | model | sha256 | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    notes = []
    for row in table["rows"]:
        cells = []
        for c in cols:
            cell = row["cells"].get(c)
            if cell is None:
                cells.append("-")
            elif cell["accuracy"] is None:
                notes.append(f"{row['dataset']} {row['kind']} {c}: {cell['note']}")
                cells.append(f"n/m [{len(notes)}]")
            else:
                mark = ""
                if cell["note"]:
                    notes.append(f"{row['dataset']} {row['kind']} {c}: {cell['note']}")
                    mark = f" [{len(notes)}]"
                cells.append(f"{100 * cell['accuracy']:.2f} %{mark}")
        lines.append(f"| {row['dataset']} | {row['kind']} | {row.get('model_sha256', 'missing')[:12]} | "
                     + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes (n/m = not measured):", ""] + [f"[{i + 1}] {n}" for i, n in enumerate(notes)]
    lines += ["", "## Quoted from the paper (not measured here)", ""]
    lines += [f"- {q['claim']} ({q['source']}, quoted)" for q in table["quoted"]]
    return "\n".join(lines) + "\n"


def write_table(table: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    j, m = out_dir / "accuracy.json", out_dir / "accuracy.md"
    j.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    m.write_text(table_markdown(table))
    return j, m
