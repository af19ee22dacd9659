"""Whole-batch conformance: every backend x evaluation path x golden case (SPEC.md sections 10-11)."""
import numpy as np
import pytest

from s4dconf.backends.aligned import aligned_run

from .harness import compare, failures_message, load_tolerances, tolerance_for

pytestmark = pytest.mark.conformance


def test_golden_case(backend, backend_name, path, golden_case_id, suite, record):
    case = suite.golden.case(golden_case_id)
    info = backend.info()
    tol = tolerance_for(load_tolerances(), info.numeric_class, case.family)
    handle = backend.prepare(case.model)
    step_logits, layer_y, run = aligned_run(backend, handle, case.u, path, info)
    steps, channels = case.arrays["steps"], case.arrays["channels"]
    who = dict(backend=f"{backend_name}:{path}", case=golden_case_id)
    recs = compare(step_logits[:, -1], case.arrays["logits"], tol, probe="logits", logits=True,
                   scale_ref=case.arrays["step_logits"], **who)
    recs += compare(step_logits[:, steps], case.arrays["step_logits"], tol, probe="step_logits", **who)
    if info.exposes_layers:
        assert layer_y is not None and len(layer_y) == case.n_layers, "backend must return one output per layer"
        for i, y in enumerate(layer_y):
            recs += compare(y[:, steps][:, :, channels], case.arrays[f"layer{i}.y"], tol, probe=f"layer{i}.y", **who)
    if run.saturations is not None:  # a run that saturated says so in every record of the case
        for r in recs:
            r.saturations = sum(run.saturations.values())
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
