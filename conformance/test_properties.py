"""Properties of the S4D math itself (SPEC.md section 3), checked with hypothesis on the float64 reference.

Valid parameters (SPEC.md 3.4): dt in [1e-4, 1]; -Re(A) in [1e-3, 1e3]; |Im(A)| <= 1e3; |B|, |C| <= 10.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s4dconf.reference.config import ModelConfig
from s4dconf.reference.init import INITS, init_modes
from s4dconf.reference.model import S4DModel
from s4dconf.reference.modelfile import load_model, save_model
from s4dconf.reference.s4d import (
    DISCRETIZATIONS,
    discretize,
    s4d_convolution,
    s4d_recurrence,
    ssm_kernel,
)

from s4dconf.reference.metrics import rel_l2

pytestmark = pytest.mark.conformance

FLOAT64_AGREEMENT = 1e-10  # SPEC.md 11.1: conv == recurrence == streaming in float64


@st.composite
def layers(draw, max_h=3, max_p=6):
    """Random valid S4D layers: (Abar, Bbar, C, D, dt, A, B, method)."""
    H = draw(st.integers(1, max_h))
    P = draw(st.integers(1, max_p))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dt_edge = draw(st.sampled_from(["low", "high", "any"]))
    log_dt = {"low": np.log(1e-4), "high": 0.0}.get(dt_edge)
    dt = np.exp(rng.uniform(np.log(1e-4), 0.0, H)) if log_dt is None else np.full(H, np.exp(log_dt))
    init = draw(st.sampled_from(INITS + ("random",)))
    if init == "random":
        A = -np.exp(rng.uniform(np.log(1e-3), np.log(1e3), (H, P))) + 1j * rng.uniform(-1e3, 1e3, (H, P))
        B = rng.uniform(-10, 10, (H, P)) + 1j * rng.uniform(-10, 10, (H, P))
    else:
        A1, B1 = init_modes(init, P)
        A, B = np.tile(A1, (H, 1)), np.tile(B1, (H, 1))
    C = rng.standard_normal((H, P)) + 1j * rng.standard_normal((H, P))
    D = rng.standard_normal(H) if draw(st.booleans()) else None
    method = draw(st.sampled_from(DISCRETIZATIONS))
    Abar, Bbar = discretize(A, B, dt, method)
    return Abar, Bbar, C, D, dt, A, B, method


def _inputs(seed, N, L, H):
    return np.random.default_rng(seed).standard_normal((N, L, H))


@given(layer=layers(), L=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_convolution_equals_recurrence(layer, L, seed):
    Abar, Bbar, C, D, *_ = layer
    u = _inputs(seed, 2, L, Abar.shape[0])
    y_conv = s4d_convolution(u, Abar, Bbar, C, D)
    y_rec, _, _ = s4d_recurrence(u, Abar, Bbar, C, D)
    assert rel_l2(y_conv, y_rec) <= FLOAT64_AGREEMENT


@pytest.mark.slow
@settings(max_examples=6)
@given(layer=layers(max_h=2, max_p=4), seed=st.integers(0, 2**16))
def test_convolution_equals_recurrence_long(layer, seed):
    """L = 16384: FFT length 32768, rounding accumulates over the longest golden sequence."""
    Abar, Bbar, C, D, *_ = layer
    u = _inputs(seed, 1, 16384, Abar.shape[0])
    y_conv = s4d_convolution(u, Abar, Bbar, C, D)
    y_rec, _, _ = s4d_recurrence(u, Abar, Bbar, C, D)
    assert rel_l2(y_conv, y_rec) <= FLOAT64_AGREEMENT


@given(layer=layers(), L=st.integers(2, 200), k=st.integers(0, 199), seed=st.integers(0, 2**16))
def test_causality(layer, L, k, seed):
    """Changing inputs after step k leaves outputs up to step k bit-identical."""
    Abar, Bbar, C, D, *_ = layer
    k = k % (L - 1)
    u = _inputs(seed, 1, L, Abar.shape[0])
    v = u.copy()
    v[:, k + 1:] = _inputs(seed + 1, 1, L - k - 1, Abar.shape[0])
    yu, _, _ = s4d_recurrence(u, Abar, Bbar, C, D)
    yv, _, _ = s4d_recurrence(v, Abar, Bbar, C, D)
    assert np.array_equal(yu[:, : k + 1], yv[:, : k + 1])
    yu_c = s4d_convolution(u, Abar, Bbar, C, D)
    yv_c = s4d_convolution(v, Abar, Bbar, C, D)
    scale = np.abs(yu_c).max() + 1.0
    assert np.abs(yu_c[:, : k + 1] - yv_c[:, : k + 1]).max() <= FLOAT64_AGREEMENT * scale


@given(layer=layers(), L=st.integers(1, 200), a=st.floats(-3, 3), b=st.floats(-3, 3), seed=st.integers(0, 2**16))
def test_linearity(layer, L, a, b, seed):
    Abar, Bbar, C, D, *_ = layer
    H = Abar.shape[0]
    u1, u2 = _inputs(seed, 1, L, H), _inputs(seed + 7, 1, L, H)
    y = lambda u: s4d_recurrence(u, Abar, Bbar, C, D)[0]  # noqa: E731
    lhs, rhs = y(a * u1 + b * u2), a * y(u1) + b * y(u2)
    assert np.abs(lhs - rhs).max() <= FLOAT64_AGREEMENT * (np.abs(y(u1)).max() + np.abs(y(u2)).max() + 1e-300) * 4


@given(layer=layers(), L=st.integers(1, 200), shift=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_time_invariance(layer, L, shift, seed):
    """Delaying the input by s zero steps delays the output by s steps (zero initial state)."""
    Abar, Bbar, C, D, *_ = layer
    u = _inputs(seed, 1, L, Abar.shape[0])
    shifted = np.concatenate([np.zeros((1, shift, u.shape[2])), u], axis=1)
    y, _, _ = s4d_recurrence(u, Abar, Bbar, C, D)
    ys, _, _ = s4d_recurrence(shifted, Abar, Bbar, C, D)
    assert np.all(ys[:, :shift] == 0.0)
    assert rel_l2(ys[:, shift:], y) <= FLOAT64_AGREEMENT


@given(layer=layers(), L=st.integers(1, 300))
def test_impulse_response_is_the_kernel(layer, L):
    """y for u = delta_0 equals K (plus D at k = 0), per channel."""
    Abar, Bbar, C, D, *_ = layer
    H = Abar.shape[0]
    u = np.zeros((1, L, H))
    u[0, 0] = 1.0
    y, _, _ = s4d_recurrence(u, Abar, Bbar, C, D)
    K = ssm_kernel(Abar, Bbar, C, L).T.copy()
    if D is not None:
        K[0] += D
    assert rel_l2(y[0], K) <= FLOAT64_AGREEMENT


@given(layer=layers())
def test_discrete_poles_inside_unit_circle(layer):
    Abar, *_ = layer
    assert np.all(np.abs(Abar) < 1.0)


@given(layer=layers())
def test_zoh_matches_matrix_exponential(layer):
    """ZOH from its definition: [[A, B], [0, 0]] augmented exponential, per mode (scipy.linalg.expm)."""
    from scipy.linalg import expm

    Abar, Bbar, C, D, dt, A, B, method = layer
    if method != "zoh":
        return
    h, n = 0, A.shape[1] - 1
    M = expm(np.array([[A[h, n], B[h, n]], [0.0, 0.0]], dtype=np.complex128) * dt[h])
    assert abs(M[0, 0] - Abar[h, n]) <= 1e-12 * max(1.0, abs(Abar[h, n]))
    assert abs(M[0, 1] - Bbar[h, n]) <= 1e-9 * max(1e-12, abs(Bbar[h, n]))


@st.composite
def configs(draw):
    return ModelConfig(
        name="property",
        d_input=draw(st.integers(1, 3)),
        H=draw(st.integers(1, 6)),
        P=draw(st.integers(1, 4)),
        n_layers=draw(st.integers(1, 3)),
        n_classes=draw(st.integers(2, 5)),
        init=draw(st.sampled_from(INITS)),
        discretization=draw(st.sampled_from(DISCRETIZATIONS)),
        use_D=draw(st.booleans()),
        activation=draw(st.sampled_from(["relu", "identity"])),
        readout=draw(st.sampled_from(["last", "mean"])),
    )


@given(cfg=configs(), seed=st.integers(0, 2**16), L=st.integers(1, 120), N=st.integers(1, 3))
def test_model_paths_agree(cfg, seed, L, N):
    """Whole model: convolution, recurrence and streaming give the same per-step logits.

    A ReLU can zero a whole deeper layer in one path while the other keeps 1e-17 of rounding noise, so the
    relative error is taken against the larger of the probe's norm and the first layer's (the signal scale).
    """
    model = S4DModel.create(cfg, seed)
    u = _inputs(seed, N, L, cfg.d_input)
    conv, rec = model.forward(u, "conv"), model.forward(u, "recurrent")
    stream = model.session(N).run(u)
    scale = np.linalg.norm(rec.layers[0].y)

    def close(a, b):
        return np.linalg.norm(a - b) <= FLOAT64_AGREEMENT * max(np.linalg.norm(b), scale)

    assert close(conv.step_logits, rec.step_logits)
    assert close(stream, rec.step_logits)
    for c, r in zip(conv.layers, rec.layers):
        assert close(c.y, r.y)


@given(cfg=configs(), seed=st.integers(0, 2**16), L=st.integers(1, 120), cuts=st.lists(st.integers(1, 30), min_size=1))
def test_stream_chunking_is_bit_exact(cfg, seed, L, cuts):
    model = S4DModel.create(cfg, seed)
    u = _inputs(seed, 1, L, cfg.d_input)
    whole = model.session(1).run(u)
    s = model.session(1)
    parts, pos, i = [], 0, 0
    while pos < L:
        n = cuts[i % len(cuts)]
        parts.append(s.run(u[:, pos:pos + n]))
        pos, i = pos + n, i + 1
    assert np.array_equal(np.concatenate(parts, axis=1), whole)


@given(cfg=configs(), seed=st.integers(0, 2**32 - 1))
def test_model_file_round_trip_is_bit_exact(cfg, seed, tmp_path_factory):
    model = S4DModel.create(cfg, seed)
    path = tmp_path_factory.mktemp("rt") / "m.npz"
    save_model(model, path)
    back = load_model(path)
    assert back.config == model.config
    assert back.params.keys() == model.params.keys()
    for k, v in model.params.items():
        assert back.params[k].dtype == np.float64 and back.params[k].tobytes() == v.tobytes(), k


@given(cfg=configs(), seed=st.integers(0, 2**16))
def test_construction_is_deterministic(cfg, seed):
    a, b = S4DModel.create(cfg, seed), S4DModel.create(cfg, seed)
    assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)
