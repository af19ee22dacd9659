"""The committed accuracy table is of the shipped models and reproduces (SPEC.md 18.4): every row names the sha256 of
the model file shipped in training/models, and every measured cell's first samples give again the count the full
measurement recorded for them (`head`). The full splits take hours on the Lava simulator; a cell's first 200 samples
take seconds, and a changed model, backend or dataset loader changes them."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pytest

from s4dconf.backends import get_backend
from s4dconf.training import accuracy
from s4dconf.training.datasets import DatasetNotFound, load_dataset

TABLE = accuracy.load_table(Path(__file__).resolve().parents[2] / "reports" / "accuracy" / "accuracy.json")
SHIPPED_ROWS = [r for r in TABLE["rows"] if r.get("model_sha256")]
CELLS = [(r, col) for r in SHIPPED_ROWS for col, c in sorted(r["cells"].items()) if c["accuracy"] is not None]


def _id(rc) -> str:
    row, col = rc
    return f"{accuracy.row_model(row)}-{row['kind']}-{col}"


@functools.lru_cache(maxsize=None)
def _split(name: str):
    try:
        return load_dataset(name, "test")
    except DatasetNotFound as e:
        pytest.skip(f"{name} test split not found: {str(e).splitlines()[0]}")


@pytest.mark.parametrize("row", SHIPPED_ROWS, ids=lambda r: f"{accuracy.row_model(r)}-{r['kind']}")
def test_rows_name_the_shipped_model_files(row):
    path = accuracy.shipped_model(accuracy.row_model(row), row["kind"])
    assert path.is_file(), f"the table has a row of {path.name}, but training/models has no such file"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == row["model_sha256"], (
        f"{path.name} is not the file the table measured: rerun `s4dconf eval` on it")


@pytest.mark.slow
@pytest.mark.parametrize("row, col", CELLS, ids=[_id(rc) for rc in CELLS])
def test_each_cell_reproduces_on_its_first_samples(row, col):
    cell = row["cells"][col]
    if cell.get("head") is None:
        pytest.skip(f"{_id((row, col))} was measured before cells recorded their first samples (stop 12); its "
                    "figure stands on that run's log")
    backend = get_backend(col)
    av = backend.availability()
    if not av.available:
        pytest.skip(f"{col} not available here: {av.reason}")
    ds = _split(row["dataset"])
    if accuracy.over_lava_budget(col, len(ds.y), ds.length):  # the cell measured lava_subset's samples
        ds, note = accuracy.lava_subset(ds, len(ds.y))
        assert note == cell["note"], "the table's subset is not the one lava_subset draws"
    else:
        assert cell["n"] == len(ds.y), f"{_id((row, col))}: a cell of the first {cell['n']} samples"
    path = accuracy.shipped_model(accuracy.row_model(row), row["kind"])
    model = accuracy.read_row_model(path, row["kind"], _split(row["dataset"])).model
    again = accuracy.measure(backend, model, ds, cell["head"]["n"], batch=accuracy.measure_batch(col))
    assert again.head == cell["head"], (f"{_id((row, col))}: {again.head['correct']} of the first "
                                        f"{again.head['n']} right now, {cell['head']['correct']} in the table")
