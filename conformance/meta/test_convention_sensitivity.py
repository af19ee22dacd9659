"""The float64 tolerance can see every convention SPEC.md pins: each wrong convention moves the goldens by far more
than the tolerance (SPEC.md section 11.1). If one of these ever passed, the tolerance would be too loose to matter.
"""
import numpy as np
import pytest

from s4dconf.conformance.harness import load_tolerances
from s4dconf.reference.metrics import rel_l2
from s4dconf.goldens.store import GoldenSet
from s4dconf.reference.model import S4DModel

SHORT_CASES = [c for c in GoldenSet().case_ids() if not c.endswith("/long") and not c.startswith("paper/")]
MARGIN = 1000.0  # a wrong convention must exceed the tolerance by three orders of magnitude


def _first_layer_y(model, u):
    return model.forward(u, mode="recurrent").layers[0].y


def _mutations(model, u):
    y = _first_layer_y(model, u)
    bilinear = S4DModel(model.config.replace(discretization="bilinear"), model.params)
    yield "bilinear instead of ZOH", _first_layer_y(bilinear, u), y
    # output before update (or a one-step delay left uncompensated): y_k computed from x_{k-1}
    yield "output before update", np.concatenate([np.zeros_like(y[:, :1]), y[:, :-1]], axis=1), y
    yield "missing 2*Re factor", 0.5 * y, y
    dt_scaled = dict(model.params)
    dt_scaled["layer0.log_dt"] = model.params["layer0.log_dt"] + np.log(2.0)
    yield "dt in other units (x2)", _first_layer_y(S4DModel(model.config, dt_scaled), u), y


@pytest.mark.parametrize("case_id", SHORT_CASES)
def test_wrong_conventions_exceed_the_float64_tolerance(case_id):
    tol = load_tolerances()[("float64", GoldenSet().case(case_id).family)].rel_l2_max
    case = GoldenSet().case(case_id)
    for name, wrong, right in _mutations(case.model, case.u):
        err = rel_l2(wrong, right)
        assert err > MARGIN * tol, f"{name}: rel L2 {err:.2e} is within {MARGIN:g} x the tolerance {tol:g}"
