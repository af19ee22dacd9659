"""Whole-batch conformance: every backend x evaluation path x golden case (SPEC.md sections 10-11)."""
import numpy as np
import pytest

from .harness import compare, failures_message, golden_case_records, load_tolerances, tolerance_for

pytestmark = pytest.mark.conformance


def test_golden_case(backend, backend_name, path, golden_case_id, suite, record):
    case = suite.golden.case(golden_case_id)
    recs = golden_case_records(backend, backend_name, path, case, case.model, golden_case_id)
    record(recs)
    assert all(r.verdict == "pass" for r in recs), failures_message(recs)


def test_golden_case_shapes_are_checked(suite):
    """The comparison refuses arrays of another shape instead of broadcasting them."""
    case = suite.golden.case(suite.golden.case_ids()[0])
    tol = tolerance_for(load_tolerances(), "float64", case.family)
    with pytest.raises(AssertionError, match="shape"):
        compare(case.arrays["logits"][:, :-1], case.arrays["logits"], tol, backend="x", case="y", probe="logits")
    bad = case.arrays["logits"] + 1e-3 * np.abs(case.arrays["logits"]).max()
    recs = compare(bad, case.arrays["logits"], tol, backend="x", case="y", probe="logits", logits=True)
    assert any(r.verdict == "fail" for r in recs), "a 1e-3 error must fail the float64 row"
