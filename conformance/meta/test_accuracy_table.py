"""The accuracy table's pure parts (SPEC.md 18.4): merging columns measured in another environment, and the
Markdown that keeps quoted numbers apart."""
import copy

import numpy as np

import pytest

from s4dconf.reference.validate import S4DInputError
from s4dconf.reports.claims import _accuracy_by_dataset
from s4dconf.reports.sections import accuracy_headline
from s4dconf.training.accuracy import QUOTED, check_table, merge_tables, row_model, table_markdown


def _table(cells, sha="aa" * 32):
    return {"rows": [{"dataset": "sdigits", "kind": "float", "model_sha256": sha, "cells": cells}],
            "quoted": QUOTED, "columns": ["reference", "lava-float"]}


NOT_AVAILABLE = {"accuracy": None, "n": 0, "seconds": None, "note": "not available: lava-nc is not installed"}


def test_merge_puts_measured_cells_in_and_keeps_the_rest():
    base = _table({"reference": {"accuracy": 0.98, "n": 360, "seconds": 0.1, "note": ""},
                   "lava-float": NOT_AVAILABLE})
    lava = _table({"lava-float": {"accuracy": 0.97, "n": 360, "seconds": 40.0, "note": ""}})
    merged = merge_tables(copy.deepcopy(base), lava)
    cells = merged["rows"][0]["cells"]
    assert cells["lava-float"]["accuracy"] == 0.97 and cells["reference"]["accuracy"] == 0.98
    # an unmeasured cell of the new table does not overwrite a measured one
    again = merge_tables(copy.deepcopy(merged), _table({"lava-float": NOT_AVAILABLE, "reference": NOT_AVAILABLE}))
    assert again["rows"][0]["cells"]["lava-float"]["accuracy"] == 0.97
    assert again["rows"][0]["cells"]["reference"]["accuracy"] == 0.98


def test_merge_refuses_tables_of_different_model_files():
    with pytest.raises(S4DInputError, match="different model files"):
        merge_tables(_table({}), _table({}, sha="bb" * 32))


def test_markdown_marks_unmeasured_cells_and_quotes():
    text = table_markdown(_table({"reference": {"accuracy": 0.98, "n": 360, "seconds": 0.1, "note": ""},
                               "lava-float": NOT_AVAILABLE}))
    assert "98.00 %" in text and "n/m [1]" in text and "not available: lava-nc" in text
    assert "## Quoted (not measured here)" in text and "(quoted; " in text


def test_markdown_says_an_applicable_column_without_a_cell_was_not_measured():
    """A row measured with --backend reference only: its lava-float cell is absent, which is "not measured", never
    "-" (not applicable); a fixed-point row's float columns stay "-"."""
    table = _table({"reference": {"accuracy": 0.98, "n": 360, "seconds": 0.1, "note": ""}})
    table["rows"].append({"dataset": "sdigits", "kind": "ptq", "model_sha256": "bb" * 32,
                          "cells": {"numpy-fxp": {"accuracy": 0.97, "n": 360, "seconds": 0.1, "note": ""}}})
    text = table_markdown(table)
    assert "| sdigits | float | aaaaaaaaaaaa | 98.00 % | n/m [1] |" in text
    assert "| sdigits | ptq | bbbbbbbbbbbb | - | - |" in text
    assert "[1] sdigits float lava-float: not measured in this table" in text


def _cell(acc, n=10_000):
    return {"accuracy": acc, "n": n, "seconds": 1.0, "note": ""}


def _two_models_of_smnist() -> dict:
    """smnist's own rows (no "model" key, as in tables older than it) and paper-smnist's rows with other figures."""
    rows = []
    for model, (f, p, q) in (("smnist", (0.98, 0.97, 0.975)), ("paper-smnist", (0.99, 0.80, 0.95))):
        for kind, acc in (("float", f), ("ptq", p), ("qaft", q)):
            col = "reference" if kind == "float" else "numpy-fxp"
            row = {"dataset": "smnist", "kind": kind, "model_sha256": f"{model}-{kind}", "cells": {col: _cell(acc)}}
            rows.append(row if model == "smnist" else {**row, "model": model})
    return {"rows": rows, "quoted": QUOTED, "columns": ["reference", "numpy-fxp"]}


def test_rows_are_keyed_by_model_and_kind():
    table = check_table(_two_models_of_smnist())  # two models of one dataset: not a duplicate
    assert [row_model(r) for r in table["rows"]] == ["smnist"] * 3 + ["paper-smnist"] * 3
    dup = _two_models_of_smnist()
    dup["rows"][3]["model"] = "smnist"
    with pytest.raises(S4DInputError, match="a second row of smnist float"):
        check_table(dup)
    bad = _two_models_of_smnist()
    bad["rows"][0]["model"] = ""
    with pytest.raises(S4DInputError, match="'model' must be a recipe name"):
        check_table(bad)


def test_claims_and_headline_keep_the_models_apart():
    table = _two_models_of_smnist()
    assert _accuracy_by_dataset(table) == {"smnist": {"float": (0.98, 10_000, False), "ptq": (0.97, 10_000, False),
                                                      "qaft": (0.975, 10_000, False)}}
    lines = accuracy_headline(table)
    assert lines[0].startswith("smnist: float 98.00 %") and lines[1].startswith("smnist (paper-smnist): float 99.00 %")
    md = table_markdown(table)
    assert "| smnist | ptq | smnist-ptq |" in md and "| smnist (paper-smnist) | ptq | paper-smnist |" in md


def test_merge_matches_rows_by_model():
    base = _two_models_of_smnist()
    lava = {"rows": [{"dataset": "smnist", "model": "paper-smnist", "kind": "float", "model_sha256": "paper-smnist-float",
                      "cells": {"lava-float": _cell(0.5, 100)}}]}
    merged = merge_tables(copy.deepcopy(base), lava)
    cells = {(row_model(r), r["kind"]): r["cells"] for r in merged["rows"]}
    assert cells["paper-smnist", "float"]["lava-float"]["accuracy"] == 0.5
    assert "lava-float" not in cells["smnist", "float"] and len(merged["rows"]) == 6


def test_lava_subset_is_a_seeded_random_subset_that_says_so(monkeypatch):
    """A split over the Lava budget is measured on a random subset: the same samples on every run, drawn from the whole
    split (not its first samples), in split order, labels kept with their sequences, and the note names size and seed."""
    from s4dconf.training import accuracy
    from s4dconf.training.datasets import load_dataset

    ds = load_dataset("sdigits", "test")
    monkeypatch.setattr(accuracy, "LAVA_MAX_STEPS", ds.length * 50)
    sub, note = accuracy.lava_subset(ds, len(ds.y))
    again, _ = accuracy.lava_subset(ds, len(ds.y))
    assert len(sub.y) == 50 and np.array_equal(sub.x, again.x)
    rows = [int(np.flatnonzero((ds.x == s).all(axis=(1, 2)) & (ds.y == y))[0]) for s, y in zip(sub.x, sub.y)]
    assert rows == sorted(rows) and rows[-1] >= 50, "spread over the split, not its first 50 samples"
    assert f"random subset of 50 of {len(ds.y)} test samples" in note and "default_rng(0)" in note
    assert accuracy.is_partial("sdigits", {"n": 50, "note": note})
    first, _ = accuracy.lava_subset(ds, 100)  # with --limit 100: drawn from those 100 samples
    assert len(first.y) == 50 and all((first.x[i] == ds.x[:100]).all(axis=(1, 2)).any() for i in range(50))
    monkeypatch.setattr(accuracy, "LAVA_MAX_STEPS", ds.length - 1)
    with pytest.raises(S4DInputError, match="more than the Lava budget"):
        accuracy.lava_subset(ds, len(ds.y))


def test_lava_cell_over_budget_measures_the_stated_subset(monkeypatch):
    """The table's Lava cell over the budget is a measurement on the subset lava_subset names (run in the Lava env):
    lava-float's accuracy there equals the reference's on the same samples."""
    from s4dconf.backends import get_backend
    from s4dconf.training import accuracy
    from s4dconf.training.datasets import load_dataset

    av = get_backend("lava-float").availability()
    if not av.available:
        pytest.skip(f"lava-float not available here: {av.reason} (the Lava env runs this test)")
    ds = load_dataset("sdigits", "test")
    monkeypatch.setattr(accuracy, "LAVA_MAX_STEPS", ds.length * 40)
    table = accuracy.accuracy_table(["sdigits"], backends=["lava-float"], progress=lambda _: None)
    cell = next(r for r in table["rows"] if r["kind"] == "float")["cells"]["lava-float"]
    sub, note = accuracy.lava_subset(ds, len(ds.y))
    mf = accuracy.read_row_model(accuracy.MODELS_DIR / "sdigits-float.npz", "float", ds)
    ref = accuracy.measure(get_backend("reference"), mf.model, sub)
    assert cell["n"] == 40 and cell["note"] == note and cell["accuracy"] == ref.accuracy
