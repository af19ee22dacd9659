"""Properties of the fixed-point emulation of Loihi 2 arithmetic (SPEC.md section 14), checked with hypothesis.

The fast engine (backends/numpy_fxp.py, integers held in float64) must equal the literal int64 statement of the
arithmetic (reference/fixed_point_literal.py) bit for bit; every stored integer stays inside its declared width;
saturation is counted, never raised; the error against float64 falls as the widths grow; sigma-delta messaging
with vth = 0 is the identity; streaming equals the batch run; model files round-trip; and the fixed-point rows
of the tolerance table follow from the error model of SPEC.md 14.6 rather than from measured outputs.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from s4dconf.backends.numpy_fxp import FxpSession
from s4dconf.fixedpoint.engine import FxpEngine, run_fxp
from s4dconf.reference.config import NAMED_CONFIGS, ModelConfig
from s4dconf.fixedpoint.formats import (
    RESCALE_MODES,
    ROUNDING_MODES,
    SATURATION_MODES,
    FxpFormat,
    fxp_digest,
    load_fxp,
    overflow_bounds,
    save_fxp,
)
from s4dconf.fixedpoint.literal import R, literal_run, literal_step, quantize_input, sat
from s4dconf.fixedpoint.error_model import predicted_snr_db, predicted_worst_channel_snr_db
from s4dconf.goldens.store import GoldenSet
from s4dconf.reference.init import INITS
from s4dconf.reference.inputs import make_input
from s4dconf.reference.model import S4DModel
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.s4d import DISCRETIZATIONS
from s4dconf.reference.validate import S4DInputError

from s4dconf.reference.metrics import snr_db

from .harness import load_tolerances

pytestmark = pytest.mark.conformance

# example counts come from the suite's hypothesis profile (100, or --max-examples)
FXP_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def signed_range(bits: int, saturation: str = "asymmetric") -> tuple[int, int]:
    """Two's complement: -2^(b-1) .. 2^(b-1) - 1, or symmetric -(2^(b-1) - 1) .. 2^(b-1) - 1 (written out here,
    not taken from the code under test)."""
    return -(2 ** (bits - 1)) + (saturation == "symmetric"), 2 ** (bits - 1) - 1


# ---------------------------------------------------------------- strategies


@st.composite
def fxp_formats(draw):
    F = draw(st.integers(6, 16))
    return FxpFormat(msg_bits=draw(st.integers(8, 32)), state_bits=draw(st.integers(8, 32)),
                     weight_bits=draw(st.integers(4, 12)), coef_bits=F + 4, frac_bits=F,
                     rounding=draw(st.sampled_from(ROUNDING_MODES)), rescale=draw(st.sampled_from(RESCALE_MODES)),
                     saturation=draw(st.sampled_from(SATURATION_MODES)))


@st.composite
def fxp_configs(draw):
    return ModelConfig(
        name="fxp-property",
        d_input=draw(st.integers(1, 2)),
        H=draw(st.integers(1, 6)),
        P=draw(st.integers(1, 4)),
        n_layers=draw(st.integers(1, 2)),
        n_classes=draw(st.integers(2, 4)),
        init=draw(st.sampled_from(INITS)),
        discretization=draw(st.sampled_from(DISCRETIZATIONS)),
        use_D=draw(st.booleans()),
        activation=draw(st.sampled_from(["relu", "identity"])),
        readout="last",
    )


@st.composite
def fxp_models(draw, fmt=None):
    """(float64 model, its fixed-point model). Formats that validate_fxp refuses are rejected (rare)."""
    cfg = draw(fxp_configs())
    fmt = fmt or draw(fxp_formats())
    seed = draw(st.integers(0, 2**16))
    model = S4DModel.create(cfg, seed)
    calib = np.random.default_rng(seed).standard_normal((2, 32, cfg.d_input))
    try:
        m = quantize(model, calib, fmt, headroom_bits=draw(st.integers(0, 2)))
    except S4DInputError:
        assume(False)
    return model, m


@st.composite
def fxp_inputs(draw, d_input: int, max_len: int = 64):
    """Random inputs, some large enough to saturate every width: standard normal or spikes times 2^k, k <= 30."""
    N = draw(st.integers(1, 3))
    L = draw(st.integers(1, max_len))
    k = draw(st.one_of(st.just(0), st.integers(0, 30)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["normal", "spikes", "mixed"]))
    if kind == "normal":
        u = rng.standard_normal((N, L, d_input))
    elif kind == "spikes":
        u = (rng.random((N, L, d_input)) < 0.1) * rng.choice([-1.0, 1.0], (N, L, d_input))
    else:  # a loud burst inside quiet noise: saturation followed by recovery
        u = rng.standard_normal((N, L, d_input))
        a, b = sorted(rng.integers(0, L + 1, 2))
        u[:, a:b] *= 2.0**30
    return u * 2.0**k


@st.composite
def fxp_cases(draw, fmt=None, max_len: int = 64):
    model, m = draw(fxp_models(fmt))
    return model, m, draw(fxp_inputs(m.config.d_input, max_len))


def zero_state(m, N):
    return [(np.zeros((N, m.config.H, m.config.P), np.int64),) * 2 for _ in range(m.config.n_layers)]


# ---------------------------------------------------------------- fast engine == literal statement


@FXP_SETTINGS
@given(case=fxp_cases())
def test_fast_engine_equals_literal_bit_for_bit(case):
    _, m, u = case
    logits, ys, counts = literal_run(m, u)
    r = run_fxp(m, u)
    assert r.step_logits.dtype == np.int64 and all(y.dtype == np.int64 for y in r.layer_y)
    assert r.step_logits.shape == logits.shape == (u.shape[0], u.shape[1], m.config.n_classes)
    assert np.array_equal(r.step_logits, logits)
    assert len(r.layer_y) == len(ys) == m.config.n_layers
    for i, (fast, lit) in enumerate(zip(r.layer_y, ys)):
        assert np.array_equal(fast, lit), f"layer{i}.y differs"
    assert r.saturations == counts
    for name, n in counts.items():  # coverage, shown by --hypothesis-show-statistics
        if n:
            event(f"saturated: {name.split('.')[-1]} ({m.config.activation})")


def test_fast_engine_equals_literal_when_the_fan_in_saturates():
    """Identity activation, loud input: y (the fan-in of P saturated messages) exceeds the message width.
    The fast engine reports the same pre-saturation y as the literal statement, and the same counts."""
    cfg = ModelConfig(name="fan-in", H=3, P=4, n_layers=2, n_classes=3, activation="identity", use_D=True)
    m = quantize(S4DModel.create(cfg, 3), fmt=FxpFormat(msg_bits=10, state_bits=12))
    u = np.random.default_rng(5).standard_normal((2, 48, 1)) * 2.0**20
    logits, ys, counts = literal_run(m, u)
    lo, hi = signed_range(m.fmt.msg_bits)
    assert any(((y < lo) | (y > hi)).any() for y in ys), "the case must drive y beyond the message width"
    assert counts["layer0.relu"] > 0
    r = run_fxp(m, u)
    assert np.array_equal(r.step_logits, logits)
    for fast, lit in zip(r.layer_y, ys):
        assert np.array_equal(fast, lit)
    assert r.saturations == counts


# ---------------------------------------------------------------- declared widths


@FXP_SETTINGS
@given(case=fxp_cases())
def test_integers_stay_within_declared_widths(case):
    _, m, u = case
    N, L, _ = u.shape
    fmt = m.fmt
    mlo, mhi = signed_range(fmt.msg_bits, fmt.saturation)
    slo, shi = signed_range(fmt.state_bits, fmt.saturation)
    bounds = overflow_bounds(m)
    state = zero_state(m, N)
    counts: dict = {}
    for k in range(L):
        u_q = quantize_input(m, u[:, k], counts)
        assert u_q.dtype == np.int64 and mlo <= u_q.min() and u_q.max() <= mhi
        state, logits, ys = literal_step(m, state, u_q, counts)
        assert mlo <= logits.min() and logits.max() <= mhi, f"logits out of msg_bits at step {k}"
        for i, (xr, xi) in enumerate(state):
            assert slo <= min(xr.min(), xi.min()) and max(xr.max(), xi.max()) <= shi, f"layer{i} state at {k}"
        for i, y in enumerate(ys):  # the fan-in sum is not saturated, but stays within its stated bound
            assert np.abs(y).max() <= bounds[f"layer{i} fan-in sum"]
    r = run_fxp(m, u)
    assert mlo <= r.step_logits.min() and r.step_logits.max() <= mhi
    for name, bound in bounds.items():
        assert bound < 2**53, name


# ---------------------------------------------------------------- saturation and rounding at the edges


def test_sat_clamps_to_the_signed_width_and_counts():
    counts: dict = {}
    a = np.array([-129, -128, -1, 0, 127, 128, 10**12, -(10**12)], dtype=np.int64)
    out = sat(a, 8, counts, "sig")
    assert out.tolist() == [-128, -128, -1, 0, 127, 127, 127, -128]
    assert counts == {"sig": 4}
    sym: dict = {}  # symmetric: -128 is clamped to -127 too
    assert sat(a, 8, sym, "sig", "symmetric").tolist() == [-127, -127, -1, 0, 127, 127, 127, -127]
    assert sym == {"sig": 5}
    sat(np.array([5, 300]), 8, counts, "sig")
    assert counts == {"sig": 5}  # counts accumulate per name
    sat(np.array([1]), 2, counts, "two")  # 2 bits: -2 .. 1
    sat(np.array([2, -2, -3]), 2, counts, "two")
    assert counts["two"] == 2


@pytest.mark.parametrize("a, s, floor, half_up", [
    (-3, 1, -2, -1),  # -1.5: floor -2; half up (-3 + 1) >> 1 = -1
    (3, 1, 1, 2),  # 1.5: floor 1; half up 2
    (-1, 1, -1, 0),  # -0.5: tie rounds up to 0
    (1, 1, 0, 1),  # 0.5
    (-2, 1, -1, -1),  # exact
    (-7, 2, -2, -2),  # -1.75
    (-6, 2, -2, -1),  # -1.5: tie
    (-5, 2, -2, -1),  # -1.25
    (6, 2, 1, 2),  # 1.5: tie
    (5, 2, 1, 1),  # 1.25
    (-(2**40) - 1, 40, -2, -1),  # just below -1
    (2**52 - 1, 52, 0, 1),  # just below 1 at the largest exact magnitude
    (5, 0, 5, 5),  # no shift
    (-5, -3, -40, -40),  # left shift: exact
])
def test_rescale_floor_and_half_up(a, s, floor, half_up):
    assert int(R(np.array([a]), s, "floor")[0]) == floor
    assert int(R(np.array([a]), s, "half_up")[0]) == half_up


@pytest.mark.parametrize("a, s, toward_zero", [
    (-3, 1, -1),  # -1.5: the magnitude 3 >> 1 = 1, sign restored (floor gives -2)
    (3, 1, 1),
    (-1, 1, 0),  # -0.5: a small negative value decays to 0, not to -1
    (-7, 2, -1),  # -1.75
    (7, 2, 1),
    (-8, 2, -2),  # exact
    (-(2**40) - 1, 40, -1),
    (2**52 - 1, 52, 0),
    (-5, 0, -5),
    (-5, -3, -40),  # left shift: exact
])
def test_rescale_toward_zero(a, s, toward_zero):
    assert int(R(np.array([a]), s, "toward_zero")[0]) == toward_zero


@FXP_SETTINGS
@given(a=st.integers(-(2**53) + 2**40, 2**53 - 2**40), s=st.integers(-8, 40), rounding=st.sampled_from(ROUNDING_MODES))
def test_rescale_matches_python_integers(a, s, rounding):
    """R(a, s) = floor(a / 2^s), floor(a / 2^s + 1/2) or sign(a) floor(|a| / 2^s), from Python's exact
    integers; both engines."""
    if s <= 0:
        assume(abs(a) << -s < 2**53)
        want = a * 2 ** -s
    elif rounding == "floor":
        want = a // 2**s
    elif rounding == "toward_zero":
        want = (1 if a >= 0 else -1) * (abs(a) // 2**s)
    else:
        want = (2 * a + 2**s) // 2 ** (s + 1)
    assert int(R(np.array([a], dtype=np.int64), s, rounding)[0]) == want
    cfg = ModelConfig(name="r", H=1, P=1)
    m = quantize(S4DModel.create(cfg, 0), fmt=FxpFormat(rounding=rounding))
    eng = FxpEngine(m, 1)
    assert eng.rshift(np.array([float(a)]), s)[0] == want


EDGE_FORMATS = [(r, sat_mode) for r in ROUNDING_MODES for sat_mode in SATURATION_MODES]


@pytest.fixture(scope="module")
def edge_models():
    cfg = ModelConfig(name="edge", H=3, P=2, n_layers=1, n_classes=2)
    model = S4DModel.create(cfg, 11)
    return {(r, sat_mode): quantize(model, fmt=FxpFormat(msg_bits=16, state_bits=20, rounding=r, saturation=sat_mode))
            for r, sat_mode in EDGE_FORMATS}


def _input_saturations(m, values):
    u = np.array(values, dtype=np.float64).reshape(len(values), 1, 1)
    lit: dict = {}
    q = quantize_input(m, u[:, 0], lit)
    fast = run_fxp(m, u).saturations["input"]
    assert fast == lit["input"]
    return q[:, 0].tolist(), lit["input"]


@pytest.mark.parametrize("rounding, saturation", EDGE_FORMATS)
def test_input_at_the_representable_edge(edge_models, rounding, saturation):
    m = edge_models[rounding, saturation]
    lo, hi = signed_range(m.fmt.msg_bits, saturation)
    step = 2.0 ** -m.inp_exp
    assert _input_saturations(m, [hi * step]) == ([hi], 0)
    assert _input_saturations(m, [lo * step]) == ([lo], 0)
    assert _input_saturations(m, [(hi + 1) * step]) == ([hi], 1)
    assert _input_saturations(m, [(lo - 1) * step]) == ([lo], 1)
    # a quarter step past an edge rounds back onto it: above lo for floor and half up, below it toward zero
    lo_quarter = lo - 0.25 if rounding == "toward_zero" else lo + 0.25
    assert _input_saturations(m, [(hi + 0.25) * step, lo_quarter * step]) == ([hi, lo], 0)
    # half a step beyond: floor keeps hi but falls below lo; half up goes over hi but rounds back to lo; toward
    # zero keeps both
    over_hi, under_lo = {"floor": (0, 1), "half_up": (1, 0), "toward_zero": (0, 0)}[rounding]
    assert _input_saturations(m, [(hi + 0.5) * step]) == ([hi], over_hi)
    assert _input_saturations(m, [(lo - 0.5) * step]) == ([lo], under_lo)
    assert _input_saturations(m, [(hi + 0.5) * step, (lo - 0.5) * step, 0.0]) == ([hi, lo, 0], over_hi + under_lo)


@pytest.mark.parametrize("rounding, saturation", EDGE_FORMATS)
def test_far_out_of_range_input_saturates_and_is_counted(edge_models, rounding, saturation):
    """Inputs far beyond the inp_exp range are clamped and counted under "input", not raised; the run then
    equals the run of the clamped (largest representable) input, bit for bit."""
    m = edge_models[rounding, saturation]
    lo, hi = signed_range(m.fmt.msg_bits, saturation)
    step = 2.0 ** -m.inp_exp
    L = 20
    pattern = np.where(np.arange(L) % 3 == 0, 1.0, -1.0).reshape(1, L, 1)
    huge = pattern * 1e300
    clamped = np.where(pattern > 0, hi * step, lo * step)
    r_huge, r_clamped = run_fxp(m, huge), run_fxp(m, clamped)
    assert r_huge.saturations["input"] == L
    assert r_clamped.saturations["input"] == 0
    assert np.array_equal(r_huge.step_logits, r_clamped.step_logits)
    for a, b in zip(r_huge.layer_y, r_clamped.layer_y):
        assert np.array_equal(a, b)
    logits, _, counts = literal_run(m, huge)
    assert counts["input"] == L and np.array_equal(logits, r_huge.step_logits)


# ---------------------------------------------------------------- error against float64 falls with the widths


@pytest.fixture(scope="module")
def small_float():
    gs = GoldenSet()
    model = gs.model("small")
    u = gs.input("noise")
    return model, u, model.forward(u, "recurrent").step_logits


def _snr(model, u, ref, fmt):
    m = quantize(model, fmt=fmt)
    r = run_fxp(m, u)
    logits, _ = r.dequantised(m)
    return snr_db(logits, ref)


def test_error_falls_with_fractional_bits(small_float):
    """F = 8, 12, 16, 20 with coef_bits = F + 4 and 16-bit weights (so weights do not set the floor).

    msg/state are 28 bits, not 32: with coef_bits = 24 the state accumulator 2 * 2^23 * 2^31 would exceed the
    exact limit 2^53 (SPEC.md 14.5), and the format would be refused."""
    model, u, ref = small_float
    snrs = [_snr(model, u, ref, FxpFormat(msg_bits=28, state_bits=28, weight_bits=16, coef_bits=F + 4, frac_bits=F))
            for F in (8, 12, 16, 20)]
    for lo, hi in zip(snrs, snrs[1:]):
        assert hi >= lo - 1.0, snrs
    assert snrs[-1] > snrs[0] + 30.0, snrs


def test_output_converges_as_all_widths_grow(small_float):
    model, u, ref = small_float
    fmts = [FxpFormat(msg_bits=16, state_bits=16, weight_bits=6, frac_bits=8, coef_bits=12),
            FxpFormat(msg_bits=24, state_bits=24, weight_bits=8, frac_bits=12, coef_bits=16),
            FxpFormat(msg_bits=32, state_bits=32, weight_bits=12, frac_bits=16, coef_bits=20)]
    snrs = [_snr(model, u, ref, f) for f in fmts]
    for lo, hi in zip(snrs, snrs[1:]):
        assert hi >= lo - 1.0, snrs
    assert snrs[-1] > snrs[0] + 20.0, snrs


# ---------------------------------------------------------------- sigma-delta messaging


@FXP_SETTINGS
@given(case=fxp_cases(), vth=st.one_of(st.floats(1.0, 64.0), st.floats(1.0, 2.0**20)), small=st.floats(0.01, 0.99))
def test_sigma_delta(case, vth, small):
    """vth = 0 sends every change: the integers equal the dense path's. Messages are integers, so any vth < 1
    also sends every change. A threshold never sends more encoder messages (its input is the same in both
    runs; a message is due only if the value moved since the last one sent). Densities are fractions."""
    _, m, u = case
    dense = run_fxp(m, u)
    zero = run_fxp(m, u, vth=0.0)
    below_one = run_fxp(m, u, vth=small)
    for run in (zero, below_one):
        assert np.array_equal(run.step_logits, dense.step_logits)
        for a, b in zip(run.layer_y, dense.layer_y):
            assert np.array_equal(a, b)
        assert run.saturations == dense.saturations
    assert below_one.density == zero.density
    thr = run_fxp(m, u, vth=vth)
    for run in (dense, zero, thr):
        assert set(run.density) == set(dense.density) and "encoder" in run.density
        assert all(0.0 <= d <= 1.0 for d in run.density.values()), run.density
    assert thr.density["encoder"] <= zero.density["encoder"]
    # the input is quantised before messaging: the thresholded run saturates the input exactly as often
    assert thr.saturations["input"] == dense.saturations["input"]


def test_sigma_delta_threshold_thins_a_slow_signal():
    """A slowly varying input with a large threshold sends fewer encoder messages than one per change."""
    cfg = ModelConfig(name="sd", H=2, P=2, n_classes=2)
    m = quantize(S4DModel.create(cfg, 1))
    u = np.sin(np.linspace(0, 3, 200)).reshape(1, 200, 1)
    zero = run_fxp(m, u, vth=0.0).density["encoder"]
    thin = run_fxp(m, u, vth=2.0 ** (m.act_exp[0] - 4)).density["encoder"]
    assert 0.0 < thin < zero <= 1.0


# ---------------------------------------------------------------- streaming


@FXP_SETTINGS
@given(case=fxp_cases(), cuts=st.lists(st.integers(1, 20), min_size=1, max_size=6))
def test_streaming_equals_batch_bit_exact(case, cuts):
    _, m, u = case
    N, L, _ = u.shape
    want = run_fxp(m, u).step_logits * 2.0 ** -m.out_exp
    s = FxpSession(m, N)
    stepped = np.stack([s.step(u[:, k]) for k in range(L)], axis=1)
    assert np.array_equal(stepped, want)
    s.reset()
    parts, pos, i = [], 0, 0
    while pos < L:
        n = cuts[i % len(cuts)]
        parts.append(s.run(u[:, pos:pos + n]))
        pos, i = pos + n, i + 1
    assert np.array_equal(np.concatenate(parts, axis=1), want)
    # the session's integer states after L steps are the literal ones
    state, counts = zero_state(m, N), {}
    for k in range(L):
        state, _, _ = literal_step(m, state, quantize_input(m, u[:, k], counts), counts)
    x_int = s.get_state()["x_int"]
    for i, (xr, xi) in enumerate(state):
        assert np.array_equal(x_int[i].real, xr) and np.array_equal(x_int[i].imag, xi), f"layer{i} state"
    s.reset()
    assert s.get_state()["t"] == 0
    assert all(not x.any() for x in s.get_state()["x_int"])
    assert np.array_equal(s.run(u), want)


@FXP_SETTINGS
@given(case=fxp_cases(), vth=st.floats(0.0, 64.0), split=st.integers(0, 64))
def test_streaming_with_sigma_delta_equals_batch(case, vth, split):
    """The messaging memory (last value sent) is session state: it carries across chunks and reset() clears it."""
    _, m, u = case
    N, L, _ = u.shape
    want = run_fxp(m, u, vth=vth).step_logits * 2.0 ** -m.out_exp
    s = FxpSession(m, N, vth)
    k = min(split, L)
    got = [s.run(u[:, :k])] if k else []
    if k < L:
        got.append(s.run(u[:, k:]))
    assert np.array_equal(np.concatenate(got, axis=1), want)
    s.reset()
    assert np.array_equal(s.run(u), want)


# ---------------------------------------------------------------- model file round trip


@FXP_SETTINGS
@given(pair=fxp_models())
def test_fxp_model_file_round_trip(pair, tmp_path_factory):
    _, m = pair
    path = tmp_path_factory.mktemp("fxp") / "m.npz"
    save_fxp(m, path)
    back = load_fxp(path)
    assert back.config == m.config and back.fmt == m.fmt
    assert (back.inp_exp, tuple(back.act_exp), back.out_exp, back.w_exp) == (
        m.inp_exp, tuple(m.act_exp), m.out_exp, m.w_exp)
    assert back.provenance == m.provenance
    assert back.arrays.keys() == m.arrays.keys()
    for k, v in m.arrays.items():
        assert back.arrays[k].dtype == np.int64 and np.array_equal(back.arrays[k], v), k
    assert fxp_digest(back) == fxp_digest(m)
    # the digest sees every array element, exponent and format field
    poked = {k: v.copy() for k, v in m.arrays.items()}
    poked["decoder.W"][0, 0] = -poked["decoder.W"][0, 0] if poked["decoder.W"][0, 0] else 1
    assert fxp_digest(dataclasses.replace(m, arrays=poked)) != fxp_digest(m)
    assert fxp_digest(dataclasses.replace(m, out_exp=m.out_exp - 1)) != fxp_digest(m)
    other = "half_up" if m.fmt.rounding == "floor" else "floor"
    assert fxp_digest(dataclasses.replace(m, fmt=dataclasses.replace(m.fmt, rounding=other))) != fxp_digest(m)
    for name, modes in (("rescale", RESCALE_MODES), ("saturation", SATURATION_MODES)):
        other = next(v for v in modes if v != getattr(m.fmt, name))
        assert fxp_digest(dataclasses.replace(m, fmt=dataclasses.replace(m.fmt, **{name: other}))) != fxp_digest(m)


# ---------------------------------------------------------------- the tolerance table is derived


GOLDEN_FAMILY_LENGTHS = {"impulse": 256, "step": 256, "dc": 256, "noise": 256, "spikes": 256, "digits": 64,
                         "long": 16384}
DEPTH_DB = 10.0 * math.log10(4)  # 4 layers of independent errors
PROBE_DB = 6.0  # probes that sample only 4 channels
ROUNDING_SLACK_DB = 1.0  # the table rounds to whole dB


def test_golden_family_lengths():
    for fam, L in GOLDEN_FAMILY_LENGTHS.items():
        assert make_input(fam).shape[1] == L, fam


def test_fixed_point_tolerances_follow_from_the_error_model():
    table = load_tolerances()
    rows = {fam: row for (cls, fam), row in table.items() if cls == "fixed-point"}
    assert set(GOLDEN_FAMILY_LENGTHS) <= set(rows), "every golden family needs a fixed-point row"
    assert set(rows) <= set(GOLDEN_FAMILY_LENGTHS) | {"streaming", "state"}, sorted(rows)
    fmt = FxpFormat()
    limits = {}
    for fam, L in GOLDEN_FAMILY_LENGTHS.items():
        row = rows[fam]
        assert row.snr_db_min is not None, fam
        for name, cfg in NAMED_CONFIGS.items():
            bound = predicted_snr_db(fmt, L, cfg.P, cfg.n_layers) - DEPTH_DB - PROBE_DB + ROUNDING_SLACK_DB
            assert row.snr_db_min <= bound, (fam, name, row.snr_db_min, bound)
            limits[fam] = min(limits.get(fam, math.inf), bound)
    if "streaming" in rows:  # one row for every replayed family: no looser than the strictest of them allows
        assert rows["streaming"].snr_db_min <= min(limits.values())
    state = rows["state"]
    for name, cfg in NAMED_CONFIGS.items():
        bound = predicted_worst_channel_snr_db(fmt, 16384, cfg.P) - DEPTH_DB
        assert state.snr_db_min <= bound, (name, state.snr_db_min, bound)


def test_predicted_snr_falls_with_length_and_rises_with_frac_bits():
    """The error model itself behaves: longer memory costs SNR, more fractional bits buy it back."""
    for cfg in NAMED_CONFIGS.values():
        snr = [predicted_snr_db(FxpFormat(), L, cfg.P, cfg.n_layers) for L in (64, 256, 16384)]
        assert snr[0] >= snr[1] >= snr[2]
        lo = predicted_snr_db(FxpFormat(frac_bits=8, coef_bits=12), 256, cfg.P, cfg.n_layers)
        hi = predicted_snr_db(FxpFormat(frac_bits=14, coef_bits=18), 256, cfg.P, cfg.n_layers)
        assert hi > lo + 20.0


@pytest.mark.parametrize("vth", [None, 0.0, 3.0])
def test_set_state_resumes_sigma_delta_and_saturation_counters(vth):
    """A snapshot carries the integer states, the step count, the saturation counters and the sigma-delta
    memories: resuming from it reproduces the uninterrupted stream and its counters exactly."""
    m = quantize(S4DModel.create(NAMED_CONFIGS["small"], 2))
    u = 40.0 * make_input("noise", 1, 0)[:, :48]  # large enough to saturate somewhere
    s = FxpSession(m, u.shape[0], vth)
    s.run(u[:, :20])
    snap = s.get_state()
    rest, end = s.run(u[:, 20:]), s.get_state()
    s.reset()
    s.run(u[:, ::-1])
    s.set_state(snap)
    assert np.array_equal(s.run(u[:, 20:]), rest)
    again = s.get_state()
    assert again["saturations"] == end["saturations"] and sum(end["saturations"].values()) > 0
    assert all(np.array_equal(a, b) for a, b in zip(again["x_int"], end["x_int"]))
    with pytest.raises(S4DInputError, match="sigma-delta threshold"):
        FxpSession(m, u.shape[0], None if vth is not None else 1.0).set_state(snap)
