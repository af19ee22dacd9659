"""Bit-exact conformance of fixed-point backends with the integer goldens (SPEC.md 14.7): every integer equal,
saturation counts equal, in the whole-batch run and in a streaming session. The saturation cases (sat-*) clamp on
purpose at every stage of SPEC.md 14.4; their counts must match exactly, including the events in the zero steps
the harness appends for a delayed backend (stored per step as tail_saturations)."""
import json

import numpy as np
import pytest

from s4dconf.backends.aligned import aligned_run, aligned_stream

from .harness import Record

pytestmark = pytest.mark.conformance


def _exact(backend, case_id, family, probe, got, want) -> Record:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"{backend} {case_id} {probe}: shape {got.shape}, golden has {want.shape}")
    if not np.all(np.isfinite(got)) or not np.array_equal(got, np.round(got)):
        raise AssertionError(f"{backend} {case_id} {probe}: not integers after rescaling by the model's exponent")
    diff = float(np.max(np.abs(got - want), initial=0.0))
    return Record(backend, case_id, family, probe, "max_abs_int_diff", diff, 0.0, "pass" if diff == 0 else "fail")


def _check(records):
    bad = [r for r in records if r.verdict != "pass"]
    assert not bad, "\n".join(f"{r.backend} {r.case} {r.probe}: integers differ by up to {r.value:g}" for r in bad)


def _case(gs, case_id):
    """(model, golden arrays, input, family) of an integer case, by its manifest entry."""
    entry = gs.fxp_case_entry(case_id)
    return gs.fxp_case_model(case_id), gs.fxp_case(case_id), gs.input(entry["family"]), entry["family"]


def expected_saturations(gold, pad: int) -> dict:
    """The counts a run over the case's input plus `pad` zero steps must report: the stored counts over the input,
    plus, for a case that stores them, the events of the first `pad` zero steps after it. A case without
    tail_saturations (the PTQ cases) does not saturate in those steps (SPEC.md 14.7)."""
    counts = json.loads(str(gold["saturations"]))
    if pad == 0 or "tail_saturations" not in gold:
        return counts
    tail = json.loads(str(gold["tail_saturations"]))
    stored = min(len(v) for v in tail.values())
    if pad > stored:
        raise AssertionError(f"the backend's delay pads {pad} zero steps; the golden stores the saturations of "
                             f"{stored} (TAIL_STEPS in goldens/integer.py)")
    return {k: n + sum(tail[k][:pad]) for k, n in counts.items()}


def test_integer_golden_batch(backend, backend_name, fxp_case_id, suite, record):
    gs = suite.golden
    m, gold, u, family = _case(gs, fxp_case_id)
    info = backend.info()
    steps, ch = gold["steps"], gold["channels"]
    handle = backend.prepare(m)
    for path in info.paths:
        step_logits, layer_y, run = aligned_run(backend, handle, u, path, info)
        who = f"{backend_name}:{path}"
        recs = [_exact(who, fxp_case_id, family, "logits", step_logits[:, -1] * 2.0**m.out_exp, gold["logits"]),
                _exact(who, fxp_case_id, family, "step_logits", step_logits[:, steps] * 2.0**m.out_exp,
                       gold["step_logits"])]
        if info.exposes_layers:
            for i, y in enumerate(layer_y):
                recs.append(_exact(who, fxp_case_id, family, f"layer{i}.y", y[:, steps][:, :, ch] * 2.0**m.act_exp[i],
                                   gold[f"layer{i}.y"]))
        record(recs)
        _check(recs)
        if run.saturations is not None:  # a chip cannot count clamps; emulators and simulators must, exactly
            want = expected_saturations(gold, backend.delays(handle).max)
            assert run.saturations == want, (
                f"{who} {fxp_case_id}: saturation counts differ from the golden: got {run.saturations}, want {want}")


def test_integer_golden_stream(backend, backend_name, fxp_case_id, suite, record):
    gs = suite.golden
    m, gold, u, family = _case(gs, fxp_case_id)
    info = backend.info()
    if not info.streaming:
        pytest.skip(f"backend {backend_name} declares no streaming session")
    session = backend.open_session(backend.prepare(m), u.shape[0])
    state_steps = [int(k) for k in gold["state_steps"]]
    stops = sorted({k + info.delays.layer(i) for k in state_steps for i in range(m.config.n_layers)})
    step_logits, states = aligned_stream(session, u, info, stops=stops)
    who = f"{backend_name}:stream"
    recs = [_exact(who, fxp_case_id, family, "step_logits", step_logits[:, gold["steps"]] * 2.0**m.out_exp,
                   gold["step_logits"])]
    if info.exposes_state:
        ch = gold["channels"]
        for i in range(m.config.n_layers):
            x = np.stack([states[k + info.delays.layer(i)]["x"][i][0, ch] for k in state_steps]) * 2.0**m.act_exp[i]
            recs.append(_exact(who, fxp_case_id, family, f"layer{i}.state_re", x.real, gold[f"layer{i}.state_re"]))
            recs.append(_exact(who, fxp_case_id, family, f"layer{i}.state_im", x.imag, gold[f"layer{i}.state_im"]))
    record(recs)
    _check(recs)
