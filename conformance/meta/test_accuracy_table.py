"""The accuracy table's pure parts (SPEC.md 18.4): merging columns measured in another environment, and the
Markdown that keeps quoted numbers apart."""
import copy

import pytest

from s4dconf.reference.validate import S4DInputError
from s4dconf.training.accuracy import QUOTED, merge_tables, table_markdown


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
    assert "## Quoted from the paper (not measured here)" in text and "quoted)" in text
