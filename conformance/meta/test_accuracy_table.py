"""The accuracy table's pure parts (SPEC.md 18.4): merging columns measured in another environment, and the
Markdown that keeps quoted numbers apart."""
import copy

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
