"""Discretised-coefficient models under conformance (SPEC.md 7.1): each stored golden model, written as Abar, Bbar,
C through a model file of that schema and read back, must reproduce the golden outputs of its cases on every
backend x path, by the same tolerance rows as the model it came from (SPEC.md 11)."""
import pytest

from s4dconf.reference.discrete import DiscreteS4DModel
from s4dconf.reference.modelfile import load_model, save_model

from .harness import failures_message, golden_case_records

pytestmark = pytest.mark.conformance

# Every short family once, on each config with a stored model file (tiny, small, loihi-profile). Not `long` (the
# Lava backends skip it, 16.3) nor `paper` (rebuilt, not stored): the file variant changes no arithmetic that
# depends on length or depth, which the golden cases of the continuous models cover.
DISCRETE_CASES = ("tiny/impulse", "tiny/dc", "small/step", "small/noise", "small/spikes", "small/digits",
                  "loihi-profile/noise")


@pytest.fixture(scope="module")
def discrete_model_of(tmp_path_factory):
    """config -> the discretised-coefficient model of its golden model, written to a file and loaded from it."""
    cache = {}

    def get(golden, config: str) -> DiscreteS4DModel:
        if config not in cache:
            path = tmp_path_factory.mktemp("discrete") / f"model-{config}-discrete.npz"
            save_model(DiscreteS4DModel.from_model(golden.model(config)), path)
            cache[config] = load_model(path)
        return cache[config]

    return get


@pytest.mark.parametrize("discrete_case_id", DISCRETE_CASES)
def test_discrete_model_reproduces_golden(backend, backend_name, path, discrete_case_id, suite, record,
                                          discrete_model_of):
    case = suite.golden.case(discrete_case_id)
    model = discrete_model_of(suite.golden, case.config)
    assert isinstance(model, DiscreteS4DModel), "the file must load as a discretised-coefficient model"
    recs = record(golden_case_records(backend, backend_name, path, case, model, f"discrete:{discrete_case_id}"))
    assert all(r.verdict == "pass" for r in recs), failures_message(recs)
