"""The harness library: metrics, tolerance table, skip lists, delay compensation, and compare() catching
wrong backends."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from s4dconf.backends import Backend, BackendInfo, BackendRun, Delays, Session
from s4dconf.conformance import harness
from s4dconf.backends.aligned import aligned_run, aligned_stream, pad_for_delay
from s4dconf.conformance.harness import Tolerance, compare, failures_message, load_skiplist, load_tolerances, tolerance_for
from s4dconf.reference.metrics import argmax_agreement, max_abs_rel, rel_l2, snr_db
from s4dconf.reference.config import ModelConfig
from s4dconf.goldens.store import GoldenSet
from s4dconf.reference.inputs import FAMILIES
from s4dconf.reference.model import S4DModel
from s4dconf.reference.validate import S4DInputError

pytest_plugins = ["pytester"]


# ---------------------------------------------------------------- metrics on hand-derived examples


def test_rel_l2():
    ref = np.array([3.0, 4.0])  # norm 5
    assert rel_l2(ref + [0.3, 0.4], ref) == pytest.approx(0.1)  # error norm 0.5
    assert rel_l2([0.0, 0.0], ref) == pytest.approx(1.0)
    assert rel_l2(ref, ref) == 0.0
    assert rel_l2(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_l2([0.0, 1e-3], [0.0, 0.0]) == math.inf
    assert rel_l2(np.array([[1.0, 2.0], [2.0, 4.0]]), np.array([[1.0, 2.0], [2.0, 0.0]])) == pytest.approx(4.0 / 3.0)


def test_max_abs_rel():
    ref = np.array([1.0, -4.0, 2.0])  # peak 4
    assert max_abs_rel([1.5, -4.0, 2.0], ref) == pytest.approx(0.125)
    assert max_abs_rel([1.0, -3.0, 2.0], ref) == pytest.approx(0.25)
    assert max_abs_rel([1.1, -4.2, 2.0], ref) == pytest.approx(0.05)  # the worst error, not the sum
    assert max_abs_rel(ref, ref) == 0.0
    assert max_abs_rel(np.zeros(2), np.zeros(2)) == 0.0
    assert max_abs_rel([1.0, 0.0], [0.0, 0.0]) == math.inf


def test_snr_db():
    ref = np.array([3.0, 4.0])
    assert snr_db(ref + [0.3, 0.4], ref) == pytest.approx(20.0)  # rel L2 0.1 -> 10 log10(100)
    assert snr_db(ref + [0.03, 0.04], ref) == pytest.approx(40.0)
    assert snr_db(-ref, ref) == pytest.approx(-20.0 * math.log10(2.0))
    assert snr_db(ref, ref) == math.inf
    assert snr_db([1.0, 0.0], [0.0, 0.0]) == -math.inf


def test_argmax_agreement_with_tie_margin():
    ref = np.array([
        [3.0, 1.0, 0.0],   # top gap 2: decisive, ref argmax 0
        [1.0, 1.05, 0.0],  # top gap 0.05: a near tie, ref argmax 1
        [0.0, 0.0, 5.0],   # top gap 5: decisive, ref argmax 2
    ])
    out = np.array([
        [0.0, 2.0, 0.0],   # argmax 1: disagrees
        [2.0, 0.0, 0.0],   # argmax 0: disagrees, but only counts when the near tie is decisive
        [0.0, 0.0, 5.0],   # agrees
    ])
    assert argmax_agreement(out, ref, tie_margin=0.1) == (0.5, 2)
    agree, n = argmax_agreement(out, ref, tie_margin=0.0)
    assert n == 3 and agree == pytest.approx(1.0 / 3.0)
    assert argmax_agreement(out, ref, tie_margin=10.0) == (1.0, 0)
    assert argmax_agreement(ref, ref, tie_margin=0.0) == (1.0, 3)
    # the gap must exceed the margin: exactly equal is a tie
    assert argmax_agreement(out, ref, tie_margin=2.0) == (1.0, 1)


def test_argmax_agreement_over_steps():
    ref = np.zeros((2, 3, 4))
    ref[..., 1] = 1.0  # every sample decisive (gap 1), argmax 1
    out = ref.copy()
    out[0, 2, 3] = 5.0  # one of six flips
    agree, n = argmax_agreement(out, ref, tie_margin=0.5)
    assert n == 6 and agree == pytest.approx(5.0 / 6.0)


def _tol(**kw) -> Tolerance:
    base = dict(numeric_class="float64", family="noise", rel_l2_max=None, max_abs_rel_max=None, snr_db_min=None,
                argmax_min=None, reason="test")
    return Tolerance(**{**base, **kw})


def test_compare_checks_every_metric_of_the_row():
    ref = np.array([3.0, 4.0])
    out = ref + [0.3, 0.4]  # rel L2 0.1, max abs rel 0.1, SNR 20 dB
    tol = _tol(rel_l2_max=0.2, max_abs_rel_max=0.2, snr_db_min=15.0)
    recs = compare(out, ref, tol, backend="b", case="c", probe="p")
    assert [(r.metric, r.verdict) for r in recs] == [("rel_l2", "pass"), ("max_abs_rel", "pass"), ("snr_db", "pass")]
    assert recs[0].value == pytest.approx(0.1) and recs[2].value == pytest.approx(20.0)
    strict = _tol(rel_l2_max=0.05, max_abs_rel_max=0.2, snr_db_min=25.0)
    recs = compare(out, ref, strict, backend="b", case="c", probe="p")
    assert [r.verdict for r in recs] == ["fail", "pass", "fail"]
    msg = failures_message(recs)
    assert "b c p: rel_l2" in msg and "snr_db" in msg and "max_abs_rel" not in msg


def test_compare_nan_output_fails():
    ref = np.array([1.0, 2.0])
    recs = compare(np.array([1.0, np.nan]), ref, _tol(rel_l2_max=1.0, max_abs_rel_max=1.0, snr_db_min=0.0),
                   backend="b", case="c", probe="p")
    assert recs and all(r.verdict == "fail" for r in recs)


def test_compare_argmax_only_for_logits():
    ref = np.array([[3.0, 1.0], [0.0, 2.0]])
    out = np.array([[1.0, 3.0], [0.0, 2.0]])  # the first sample flips
    tol = _tol(argmax_min=1.0)
    assert compare(out, ref, tol, backend="b", case="c", probe="p") == []
    (rec,) = compare(out, ref, tol, backend="b", case="c", probe="p", logits=True)
    assert (rec.metric, rec.value, rec.verdict) == ("argmax", 0.5, "fail")


def test_compare_scale_ref_floors_a_zero_probe():
    ref = np.zeros(4)
    out = np.full(4, 1e-12)
    tol = _tol(rel_l2_max=1e-10)
    (alone,) = compare(out, ref, tol, backend="b", case="c", probe="p")
    assert alone.value == math.inf and alone.verdict == "fail"
    (scaled,) = compare(out, ref, tol, backend="b", case="c", probe="p", scale_ref=np.full(16, 2.0))
    # norm(scale_ref) * sqrt(4 / 16) = 8 * 0.5 = 4; error norm 2e-12
    assert scaled.value == pytest.approx(0.5e-12) and scaled.verdict == "pass"


def test_record_json_keeps_non_finite_values_readable():
    (rec,) = compare(np.ones(2), np.zeros(2), _tol(rel_l2_max=1.0), backend="b", case="c", probe="p")
    assert rec.as_json()["value"] == "inf"


# ---------------------------------------------------------------- the tolerance table


def test_real_tolerance_table():
    table = load_tolerances()
    assert table, "the tolerance table is empty"
    for key, row in table.items():
        assert row.reason.strip(), f"row {key} has no reason"
        bounds = [row.rel_l2_max, row.max_abs_rel_max, row.snr_db_min, row.argmax_min]
        assert any(b is not None for b in bounds), f"row {key} checks nothing"
    float64 = {family for (cls, family) in table if cls == "float64"}
    missing = (set(FAMILIES) | {"streaming", "state"}) - float64
    assert not missing, f"no float64 tolerance row for {sorted(missing)}"
    for family in list(FAMILIES) + ["streaming", "state"]:
        assert tolerance_for(table, "float64", family).family == family


def test_tolerance_for_missing_row():
    table = load_tolerances()
    with pytest.raises(S4DInputError, match=r"no tolerance row for \(float64, martian\).*Add a row"):
        tolerance_for(table, "float64", "martian")


HEADER = "numeric_class,family,rel_l2_max,max_abs_rel_max,snr_db_min,argmax_min,reason"
GOOD = 'float64,noise,1e-10,2e-10,,1.0,"rounding, with a comma"'


def _table(tmp_path, *rows, header=HEADER):
    """Two comment lines, the header (line 3), the good row (line 4), then `rows` from line 5."""
    path = tmp_path / "tol.csv"
    path.write_text("\n".join(["# a comment", "  # an indented comment", header, GOOD, *rows]) + "\n")
    return path


def test_good_table_parses(tmp_path):
    table = load_tolerances(_table(tmp_path, "float32,dc,1e-3,,40,0.99,quantisation"))
    assert table[("float64", "noise")] == Tolerance("float64", "noise", 1e-10, 2e-10, None, 1.0,
                                                    "rounding, with a comma")
    assert table[("float32", "dc")] == Tolerance("float32", "dc", 1e-3, None, 40.0, 0.99, "quantisation")


@pytest.mark.parametrize(
    "row, problem",
    [
        ("float64,dc,1e-10,1e-10,,1.0,", r"\(float64, dc\) has no reason"),
        ('float64,dc,1e-10,1e-10,,1.0,"   "', r"\(float64, dc\) has no reason"),
        ("float64,dc,1e-10,1e-10,,1.0", r"\(float64, dc\) has no reason"),
        ("float64,dc,1e-1O,1e-10,,1.0,typo", r"\(float64, dc\): rel_l2_max = '1e-1O' is not a number"),
        ("float64,dc,1e-10,1e-10,nan,1.0,nan", r"\(float64, dc\): snr_db_min = 'nan' is not a number"),
        ("float64,noise,1e-9,1e-9,,1.0,again", r"\(float64, noise\) duplicates the row on line 4"),
        ("float64,dc,1e-10,1e-10,,1.0,unquoted, comma", r"more than the 7 columns.*extra cells \[' comma'\]"),
        ("float64,dc,1e-10", r"lacks the cell\(s\) \['max_abs_rel_max', 'snr_db_min', 'argmax_min', 'reason'\]"),
    ],
    ids=["empty-reason", "blank-reason", "no-reason-cell", "not-a-number", "nan", "duplicate", "extra", "short"],
)
def test_bad_table_rows(tmp_path, row, problem):
    path = _table(tmp_path, row)
    with pytest.raises(S4DInputError, match=re.escape(f"{path}:5") + r"\b.*" + problem):
        load_tolerances(path)


def test_bad_row_line_counts_comments_and_blank_lines(tmp_path):
    path = tmp_path / "tol.csv"
    path.write_text("\n".join(["# c1", HEADER, "# c3", GOOD, "", "# c6", "float64,dc,x,,,,r"]) + "\n")
    with pytest.raises(S4DInputError, match=re.escape(f"{path}:7 (float64, dc): rel_l2_max = 'x'")):
        load_tolerances(path)


@pytest.mark.parametrize(
    "header",
    [HEADER.replace("reason", "why"), HEADER.replace("snr_db_min,", ""), "family,numeric_class" + HEADER[20:]],
    ids=["renamed", "dropped", "swapped"],
)
def test_bad_table_columns(tmp_path, header):
    path = _table(tmp_path, header=header)
    with pytest.raises(S4DInputError, match=re.escape(f"{path}: columns must be ")):
        load_tolerances(path)


def test_table_without_rows(tmp_path):
    path = tmp_path / "tol.csv"
    path.write_text("# only a header\n" + HEADER + "\n")
    with pytest.raises(S4DInputError, match=re.escape(f"{path}: the tolerance table has no rows")):
        load_tolerances(path)
    path.write_text("")
    with pytest.raises(S4DInputError, match=r"columns must be .* got None"):
        load_tolerances(path)


# ---------------------------------------------------------------- skip lists


def test_skiplist_parses_entries(tmp_path):
    path = tmp_path / "fake.txt"
    path.write_text(
        "# comment line\n"
        "\n"
        "skip test_golden.py::test_golden_case[fake:conv-paper/long]  # 40 min on the emulator\n"
        "   xfail tiny/noise #known bug #12, see issue\n"
    )
    entries = load_skiplist(path)
    assert [(e.action, e.pattern, e.reason, e.line, e.used) for e in entries] == [
        ("skip", "test_golden.py::test_golden_case[fake:conv-paper/long]", "40 min on the emulator", 3, False),
        ("xfail", "tiny/noise", "known bug #12, see issue", 4, False),
    ]


@pytest.mark.parametrize(
    "line",
    ["skip tiny/noise", "skip tiny/noise  #", "skip tiny/noise  #    ", "xfail  # no pattern", "ignore tiny # r",
     "skip a b  # two patterns"],
)
def test_skiplist_rejects_entries_without_reason_or_form(tmp_path, line):
    path = tmp_path / "fake.txt"
    path.write_text("# header\nskip ok  # fine\n" + line + "\n")
    with pytest.raises(S4DInputError, match=re.escape(f"{path}:3: expected '<skip|xfail> <node-id substring>  "
                                                      "# <reason>', got " + repr(line))):
        load_skiplist(path)


def test_skiplist_for_unknown_backend_is_empty():
    assert harness.skiplist_for("no-such-backend-here") == []


# ---------------------------------------------------------------- delay compensation


def test_pad_for_delay():
    u = np.arange(30, dtype=np.float64).reshape(2, 5, 3)
    padded = pad_for_delay(u, 2)
    assert padded.shape == (2, 7, 3)
    assert np.array_equal(padded[:, :5], u)
    assert not padded[:, 5:].any()
    assert pad_for_delay(u, 0) is u
    for bad in (-1, 1.5, True):
        with pytest.raises(S4DInputError, match=re.escape(f"delay must be an integer >= 0 steps, got {bad!r}")):
            pad_for_delay(u, bad)


def _delayed(a: np.ndarray, d: int) -> np.ndarray:
    """The backend's view of a: output index k + d holds the answer for input k (same length as the input)."""
    if d == 0:
        return a
    return np.concatenate([np.zeros((a.shape[0], d) + a.shape[2:]), a[:, :-d]], axis=1)


class _DelayedSession(Session):
    def __init__(self, model, batch, d):
        self._s, self._d, self._batch = model.session(batch), d, batch
        self._n_classes = model.config.n_classes
        self.reset()

    def reset(self):
        self._s.reset()
        self._queue = [np.zeros((self._batch, self._n_classes)) for _ in range(self._d)]

    def step(self, u_t):
        self._queue.append(self._s.step(u_t))
        return self._queue.pop(0)


class FakeBackend(Backend):
    """The float64 reference behind a configurable fault: a latency (emitted vs declared) or a changed model."""

    name = "fake"

    def __init__(self, emitted: Delays = Delays(), declared: Delays | None = None, transform=None):
        self.emitted = emitted
        self.declared = emitted if declared is None else declared
        self.transform = transform or (lambda model: model)

    def info(self):
        return BackendInfo(name=self.name, numeric_class="float64", version="meta-test", device="cpu",
                           paths=("conv", "recurrent"), delays=self.declared, exposes_state=False)

    def prepare(self, model):
        return self.transform(model)

    def run(self, handle, u, path):
        out = handle.forward(u, mode=path)
        return BackendRun(
            step_logits=_delayed(out.step_logits, self.emitted.logits),
            layer_y=[_delayed(layer.y, self.emitted.layer(i)) for i, layer in enumerate(out.layers)],
        )

    def open_session(self, handle, batch):
        return _DelayedSession(handle, batch, self.emitted.logits)


TWO_LAYERS = ModelConfig(name="two", d_input=2, H=3, P=2, n_layers=2, n_classes=5)


@pytest.fixture(scope="module")
def two_layer_model():
    return S4DModel.create(TWO_LAYERS, seed=7)


@pytest.fixture(scope="module")
def u_two():
    return np.random.default_rng(0).standard_normal((2, 20, 2))


@pytest.mark.parametrize("delays", [Delays(layers=2, logits=2), Delays(layers=(1, 3), logits=4), Delays()],
                         ids=["uniform", "per-layer", "none"])
def test_aligned_run_removes_declared_delay(two_layer_model, u_two, delays):
    backend = FakeBackend(delays)
    ref = two_layer_model.forward(u_two, mode="recurrent")
    logits, layer_y, run = aligned_run(backend, backend.prepare(two_layer_model), u_two, "recurrent", backend.info())
    assert run.step_logits.shape[1] == u_two.shape[1] + delays.max
    assert np.array_equal(logits, ref.step_logits)
    assert len(layer_y) == 2
    for got, want in zip(layer_y, ref.layers):
        assert np.array_equal(got, want.y)
    # the conv path pads to another FFT length: equal to rounding
    logits, layer_y, _ = aligned_run(backend, two_layer_model, u_two, "conv", backend.info())
    assert np.allclose(logits, ref.step_logits, rtol=0, atol=1e-12)


def test_aligned_run_detects_an_undeclared_delay(two_layer_model, u_two):
    backend = FakeBackend(emitted=Delays(layers=1, logits=1), declared=Delays())
    ref = two_layer_model.forward(u_two, mode="recurrent")
    logits, _, _ = aligned_run(backend, two_layer_model, u_two, "recurrent", backend.info())
    assert not np.allclose(logits, ref.step_logits)


@pytest.mark.parametrize("chunks", [None, [1], [3, 7]])
def test_aligned_stream_removes_declared_delay(two_layer_model, u_two, chunks):
    backend = FakeBackend(Delays(layers=3, logits=3))
    ref = two_layer_model.forward(u_two, mode="recurrent").step_logits
    session = backend.open_session(two_layer_model, u_two.shape[0])
    logits, _ = aligned_stream(session, u_two, backend.info(), chunk_sizes=chunks)
    assert logits.shape == ref.shape
    assert np.allclose(logits, ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- wrong backends fail against the goldens


def _bilinear(model):
    return S4DModel(model.config.replace(discretization="bilinear"), model.params)


def _no_factor_two(model):
    """y = Re(sum C x) instead of 2 Re(sum C x): the same as halving C."""
    params = dict(model.params)
    for i in range(model.config.n_layers):
        params[f"layer{i}.C_re"] = params[f"layer{i}.C_re"] * 0.5
        params[f"layer{i}.C_im"] = params[f"layer{i}.C_im"] * 0.5
    return S4DModel(model.config, params)


def _golden_records(backend, case, path):
    info = backend.info()
    tol = tolerance_for(load_tolerances(), info.numeric_class, case.family)
    step_logits, layer_y, _ = aligned_run(backend, backend.prepare(case.model), case.u, path, info)
    steps, channels = case.arrays["steps"], case.arrays["channels"]
    who = dict(backend=f"fake:{path}", case=case.id)
    recs = compare(step_logits[:, -1], case.arrays["logits"], tol, probe="logits", logits=True,
                   scale_ref=case.arrays["step_logits"], **who)
    recs += compare(step_logits[:, steps], case.arrays["step_logits"], tol, probe="step_logits", **who)
    for i, y in enumerate(layer_y):
        recs += compare(y[:, steps][:, :, channels], case.arrays[f"layer{i}.y"], tol, probe=f"layer{i}.y", **who)
    return recs


@pytest.fixture(scope="module")
def tiny_noise():
    return GoldenSet().case("tiny/noise")


@pytest.mark.parametrize("path", ["conv", "recurrent"])
@pytest.mark.parametrize("delays", [Delays(), Delays(layers=2, logits=2)], ids=["no-delay", "delay2"])
def test_honest_fake_passes_goldens(tiny_noise, path, delays):
    recs = _golden_records(FakeBackend(delays), tiny_noise, path)
    assert recs and all(r.verdict == "pass" for r in recs), failures_message(recs)


@pytest.mark.parametrize(
    "backend",
    [
        FakeBackend(transform=_bilinear),
        FakeBackend(transform=_no_factor_two),
        FakeBackend(emitted=Delays(layers=1, logits=1), declared=Delays()),
    ],
    ids=["bilinear-not-zoh", "no-factor-2", "undeclared-delay"],
)
@pytest.mark.parametrize("path", ["conv", "recurrent"])
def test_wrong_fake_fails_goldens(tiny_noise, backend, path):
    recs = _golden_records(backend, tiny_noise, path)
    bad = [r for r in recs if r.verdict == "fail"]
    assert bad, "a wrong backend passed the float64 goldens"
    assert any(r.probe == "layer0.y" for r in bad)
    assert "violates tolerance" in failures_message(recs)


# ---------------------------------------------------------------- the plugin, through pytester


def test_plugin_rejects_unknown_backend(pytester):
    pytester.makepyfile(test_nothing="def test_a():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "s4dconf.conformance.plugin", "--backend", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown backend 'nope'; known: reference*"])


def test_plugin_parametrizes_backend_paths(pytester):
    pytester.makepyfile(test_paths="def test_b(backend_name, path):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "s4dconf.conformance.plugin", "--backend", "reference", "-v")
    result.stdout.fnmatch_lines([
        "backend reference: float64*paths conv/recurrent*",
        "*test_b?reference:conv? PASSED*",
        "*test_b?reference:recurrent? PASSED*",
    ])
    assert result.ret == pytest.ExitCode.OK


def test_plugin_creates_the_benchmark_json_folder(tmp_path):
    """`tox -e bench` in a fresh clone writes reports/out/benchmark.json, a folder no clone has: pytest-benchmark
    (5.3) opens the file only after the whole run, so the plugin creates the folder at start; one it cannot create
    is a usage error at start, not a lost run at the end."""
    import types

    from s4dconf.conformance.plugin import _benchmark_json_folder

    def config(path):
        return types.SimpleNamespace(option=types.SimpleNamespace(benchmark_json=path))

    _benchmark_json_folder(config(tmp_path / "a" / "b" / "benchmark.json"))
    assert (tmp_path / "a" / "b").is_dir()
    _benchmark_json_folder(config(None))  # no --benchmark-json: nothing to do
    with open(tmp_path / "opened.json", "wb") as f:  # pytest-benchmark < 5.3 hands over the file, opened at parse
        _benchmark_json_folder(config(f))
    (tmp_path / "file").write_text("")
    with pytest.raises(pytest.UsageError, match=r"--benchmark-json .*cannot create its folder"):
        _benchmark_json_folder(config(tmp_path / "file" / "benchmark.json"))
