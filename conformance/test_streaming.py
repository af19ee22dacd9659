"""Streaming conformance (SPEC.md section 3.3): session vs goldens, states, chunking, reset."""
import zlib

import numpy as np
import pytest

from s4dconf.backends.aligned import aligned_stream

from .harness import compare, failures_message, load_tolerances, tolerance_for

pytestmark = pytest.mark.conformance


def _open(backend, case):
    info = backend.info()
    if not info.streaming:
        pytest.skip(f"backend {info.name} declares no streaming session (BackendInfo.streaming = False)")
    handle = backend.prepare(case.model)
    return info, backend.open_session(handle, case.u.shape[0])


def test_stream_matches_golden(backend, backend_name, golden_case_id, suite, record):
    case = suite.golden.case(golden_case_id)
    info, session = _open(backend, case)
    table = load_tolerances()
    state_steps = [int(k) for k in case.arrays["state_steps"]]
    stops = sorted({k + info.delays.layer(i) for k in state_steps for i in range(case.n_layers)})
    step_logits, states = aligned_stream(session, case.u, info, stops=stops)
    who = dict(backend=f"{backend_name}:stream", case=golden_case_id)
    tol = tolerance_for(table, info.numeric_class, "streaming")
    recs = compare(step_logits[:, -1], case.arrays["logits"], tol, probe="logits", logits=True,
                   scale_ref=case.arrays["step_logits"], **who)
    recs += compare(step_logits[:, case.arrays["steps"]], case.arrays["step_logits"], tol, probe="step_logits", **who)
    if info.exposes_state:
        stol = tolerance_for(table, info.numeric_class, "state")
        ch = case.arrays["channels"]
        for i in range(case.n_layers):
            got = np.stack([states[k + info.delays.layer(i)]["x"][i][0, ch] for k in state_steps])
            ref = case.arrays[f"layer{i}.state_re"] + 1j * case.arrays[f"layer{i}.state_im"]
            recs += compare(got.real, ref.real, stol, probe=f"layer{i}.state_re", **who)
            recs += compare(got.imag, ref.imag, stol, probe=f"layer{i}.state_im", **who)
    record(recs)
    assert all(r.verdict == "pass" for r in recs), failures_message(recs)


def test_any_chunking_gives_identical_outputs(backend, golden_case_id, suite):
    """SPEC.md 3.3: the outputs of a session do not depend on how the stream is cut (bit-identical)."""
    case = suite.golden.case(golden_case_id)
    info, session = _open(backend, case)
    whole, _ = aligned_stream(session, case.u, info)
    rng = np.random.default_rng(zlib.crc32(golden_case_id.encode()))
    for sizes in ([1], list(rng.integers(1, 40, size=16)), [case.u.shape[1] // 3 + 1]):
        session.reset()
        chunked, _ = aligned_stream(session, case.u, info, chunk_sizes=sizes)
        assert np.array_equal(chunked, whole), f"chunk sizes {sizes[:8]}... changed the outputs"


def test_reset_restores_the_initial_state(backend, suite):
    case = suite.golden.case("small/noise")
    info, session = _open(backend, case)
    first, _ = aligned_stream(session, case.u, info)
    session.reset()
    again, _ = aligned_stream(session, case.u, info)
    assert np.array_equal(first, again), "outputs after reset() differ from a fresh session's"


@pytest.mark.parametrize("case_id", ["small/noise", "tiny/spikes"])
def test_set_state_resumes_a_stream(backend, suite, case_id):
    """SPEC.md 3.3: set_state(get_state() at step k) followed by the rest of the stream gives, bit for bit, the
    outputs the uninterrupted stream gave after step k, whatever ran on the session in between."""
    case = suite.golden.case(case_id)
    info, session = _open(backend, case)
    if not info.restores_state:
        pytest.skip(f"backend {info.name} declares no set_state (BackendInfo.restores_state = False)")
    u = case.u
    k = u.shape[1] // 3
    session.run(u[:, :k])
    snapshot = session.get_state()
    rest = session.run(u[:, k:])
    session.reset()
    session.run(u[:, ::-1])  # something else, so a set_state that restores too little is seen
    session.set_state(snapshot)
    assert np.array_equal(session.run(u[:, k:]), rest), "the stream resumed from set_state() gave other outputs"
    assert session.get_state()["t"] == u.shape[1]
