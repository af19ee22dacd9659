"""lava-nc's own S4D test vectors as discretised-coefficient models (SPEC.md 7.1), run through every backend of the
Lava environment and compared with lava-nc's own `S4d` process on the same coefficients and inputs.

The vectors ship in the lava-nc 0.10.0 wheel, in its top-level `tests` package (tests/lava/proc/s4d/): complex
dA, dB, dC of 100 x 100 (complex64; dC with a leading axis of 1) and real s4d_A, s4d_B, s4d_C of 1,280 values
(float32). lava-nc's utils.get_coefficients flattens them and its tests give channel h the modes h P .. h P + P - 1
(kron(I, ones(P)) expansion), so they are one S4D layer of H channels x P modes, channel-major:

    complex  H = 100, P = 100        real  H = 256, P = 5 (lava-nc's own tests use P = 5 and 1)

The surrounding model is the identity: d_in = n_classes = H, W_enc = W_1 = W_dec = I, activation identity, readout
last, so the block input is u itself, and the layer output y^1 and the step logits both equal the S4D output
2 Re(sum_n C_n x_n) per channel (I is exact in every numeric class: 8-bit weights hold 1 as 2^6). Both probes are
compared. lava-nc's side is its tests' graph (tests/lava/proc/s4d/test_models.py: RingBuffer -> Sparse(kron(I_H,
ones(P, 1))) -> S4d, one step dropped for the Sparse), with the modes summed per channel by a second lava-nc Sparse,
kron(I_H, ones(1, P)), instead of a RingBuffer per mode (20,000 values a step cost minutes in the simulator); two
steps are dropped for the two Sparse connections. Input: the `noise` family (section 9) at d_in = H. Tolerance: the
row of the backend's numeric class for `noise` (section 11).
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

from s4dconf.backends.lava_runtime import lava_availability, run_isolated

VECTOR_REASON = "lava-nc's test vectors ship in the lava-nc wheel; Lava env only"


def vector_dir() -> Path | None:
    """tests/lava/proc/s4d of the installed lava-nc wheel, or None (not installed, or a wheel without them)."""
    try:
        where = Path(importlib.metadata.distribution("lava-nc").locate_file("tests/lava/proc/s4d"))
    except importlib.metadata.PackageNotFoundError:
        return None
    return where if (where / "dA_complex.npy").is_file() else None


if vector_dir() is None or not lava_availability()[0]:
    pytest.skip(VECTOR_REASON, allow_module_level=True)

from s4dconf.backends.aligned import aligned_run  # noqa: E402
from s4dconf.backends.lava_graph import (batch_neurons, fan_out, per_sequence, ring_buffer_sink,  # noqa: E402
                                         ring_buffer_source, sim_run_cfg, time_major)
from s4dconf.conformance.harness import compare, failures_message, load_tolerances, tolerance_for  # noqa: E402
from s4dconf.reference.config import ModelConfig  # noqa: E402
from s4dconf.reference.discrete import DiscreteS4DModel  # noqa: E402
from s4dconf.reference.inputs import make_input  # noqa: E402

# name -> (files A, B, C; dtype, element count as shipped; H, P)
VECTORS = {
    "complex": (("dA_complex.npy", "dB_complex.npy", "dC_complex.npy"), np.complex64, 10_000, (100, 100)),
    "real": (("s4d_A.dat.npy", "s4d_B.dat.npy", "s4d_C.dat.npy"), np.float32, 1_280, (256, 5)),
}
FAMILY = "noise"


def lava_coefficients(kind: str) -> list[np.ndarray]:
    """Abar, Bbar, C of one vector set as (H, P) arrays of the dtype shipped (checked: a changed wheel fails here)."""
    files, dtype, count, (H, P) = VECTORS[kind]
    out = []
    for name in files:
        a = np.load(vector_dir() / name, allow_pickle=False)
        assert a.dtype == dtype and a.size == count, f"{name}: {a.dtype} {a.shape}, expected {dtype} of {count}"
        out.append(a.ravel().reshape(H, P))  # utils.get_coefficients' flatten, channel-major
    return out


def vector_model(kind: str) -> DiscreteS4DModel:
    """One S4D layer with lava-nc's coefficients inside the identity model of the module docstring."""
    Abar, Bbar, C = lava_coefficients(kind)
    H = Abar.shape[0]
    cfg = ModelConfig(name=f"lava-nc-{kind}", d_input=H, H=H, P=Abar.shape[1], n_layers=1, n_classes=H,
                      activation="identity")
    eye = np.eye(H)
    return DiscreteS4DModel.from_coefficients(cfg, [Abar], [Bbar], [C], encoder=eye, mixers=[eye], decoder=eye)


def lava_s4d_job(Abar: np.ndarray, Bbar: np.ndarray, C: np.ndarray, u: np.ndarray) -> np.ndarray:
    """lava-nc's S4d process (floating_pt) on u (N, L, H) between two lava-nc Sparse connections -> y (N, L, H)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.s4d.process import S4d
    from lava.proc.sparse.process import Sparse
    from scipy.sparse import csr_matrix

    N, L, H = u.shape
    P = Abar.shape[1]
    steps = L + 2  # each Sparse sends one step late
    expand = fan_out(N * H, P)
    source = ring_buffer_source(time_major(u, steps))
    fan = [Sparse(weights=csr_matrix(W), num_message_bits=24) for W in (expand, expand.T)]
    neuron = S4d(shape=(N * H * P,), a=batch_neurons(Abar, N), b=batch_neurons(Bbar, N), c=batch_neurons(C, N))
    sink = ring_buffer_sink(N * H, steps)
    source.s_out.connect(fan[0].s_in)
    fan[0].a_out.connect(neuron.a_in)
    neuron.s_out.connect(fan[1].s_in)
    fan[1].a_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=steps), run_cfg=sim_run_cfg("floating_pt")())
        return per_sequence(sink.data.get(), N)[:, 2:]
    finally:
        sink.stop()


@pytest.fixture(scope="module", params=list(VECTORS))
def vector_case(request):
    """(kind, model, u, lava-nc's S4d output y (N, L, H))."""
    model = vector_model(request.param)
    u = make_input(FAMILY, model.config.d_input)
    layer = model.layers[0]
    y = run_isolated(lava_s4d_job, (layer.Abar, layer.Bbar, layer.C, u), 600, what="lava-nc S4d run")
    return request.param, model, u, y


def test_vectors_are_stable_discretised_modes(vector_case):
    """What the file variant requires of them holds: every |Abar| < 1 (SPEC.md 7.1), real ones with Im = 0."""
    kind, model, _, _ = vector_case
    Abar = model.layers[0].Abar
    assert np.all(np.abs(Abar) < 1.0)
    assert (kind == "real") == bool(np.all(Abar.imag == 0))


def test_backend_matches_lava_s4d(vector_case, backend, backend_name, path, record):
    """Every selected backend x path (the suite's --backend selection; by default every available one: reference,
    numpy-fxp, lava-float, lava-fxp here) against lava-nc's S4d; a fixed-point run must not saturate."""
    kind, model, u, lava_y = vector_case
    info = backend.info()
    tol = tolerance_for(load_tolerances(), info.numeric_class, FAMILY)
    step_logits, layer_y, run = aligned_run(backend, backend.prepare(model), u, path, info)
    if run.saturations is not None:
        assert not any(run.saturations.values()), f"{backend_name} saturated: {run.saturations}"
    who = dict(backend=f"{backend_name}:{path}", case=f"lava-nc-{kind}/{FAMILY}")
    recs = compare(step_logits, lava_y, tol, probe="step_logits", **who)
    if info.exposes_layers:
        recs += compare(layer_y[0], lava_y, tol, probe="layer0.y", **who)
    record(recs)  # into --conformance-json: the agreement figures
    assert all(r.verdict == "pass" for r in recs), failures_message(recs)
