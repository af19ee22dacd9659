"""The Lava backends beyond the golden cases (SPEC.md 16.2, 16.3): lava-fxp is bit-exact with numpy-fxp on a case
that saturates (every integer and every saturation count), refuses what its graph cannot run, and no Lava process
outlives a run, whether it succeeds, fails or times out."""
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from s4dconf.backends.lava_runtime import LavaRunError, lava_availability, run_isolated

_LAVA_OK, _LAVA_REASON = lava_availability()
if not _LAVA_OK:
    pytest.skip(f"lava-nc not available: {_LAVA_REASON}", allow_module_level=True)

from s4dconf.backends import REGISTRY  # noqa: E402
from s4dconf.backends.lava_graph import lava_delays, recorder_port  # noqa: E402
from s4dconf.backends.lava_fxp import LavaFxpBackend, saturation_names  # noqa: E402
from s4dconf.fixedpoint.engine import run_fxp  # noqa: E402
from s4dconf.backends.aligned import pad_for_delay  # noqa: E402
from s4dconf.reference.config import ModelConfig  # noqa: E402
from s4dconf.fixedpoint.formats import FxpFormat  # noqa: E402
from s4dconf.reference.model import S4DModel  # noqa: E402
from s4dconf.fixedpoint.quantize import quantize  # noqa: E402
from s4dconf.reference.validate import S4DInputError  # noqa: E402

CFG = ModelConfig(name="lava-meta", H=4, P=3, n_layers=2, n_classes=3)


@pytest.fixture(scope="module")
def float_model():
    return S4DModel.create(CFG, 1)


@pytest.fixture(scope="module")
def loud_input():
    """Far beyond the calibrated range (a constant and a square wave of amplitude 1000), then quiet: inputs,
    states and messages clamp, then recover."""
    k = np.arange(40)
    u = np.stack([np.full(40, 1e3), 1e3 * np.sign(np.sin(k / 2.0))]).reshape(2, 40, 1)
    u[:, 30:] = 0.0
    return u


# ---------------------------------------------------------------- bit-exact with numpy-fxp


@pytest.mark.parametrize("rounding", ["floor", "half_up"])
def test_lava_fxp_is_bit_exact_with_numpy_fxp_when_saturating(float_model, loud_input, rounding):
    m = quantize(float_model, fmt=FxpFormat(msg_bits=12, state_bits=12, rounding=rounding))
    backend = LavaFxpBackend(timeout_s=120)
    handle = backend.prepare(m)
    d = backend.delays(handle)
    assert d == lava_delays(CFG.n_layers)
    u = pad_for_delay(loud_input, d.max)  # the same input for both: counts cover the same steps
    got, want = backend.run_integers(handle, u), run_fxp(m, u)
    T = u.shape[1]
    assert got.step_logits.shape == want.step_logits.shape and got.step_logits.dtype == np.int64
    assert np.array_equal(got.step_logits[:, d.logits:], want.step_logits[:, :T - d.logits])
    assert not got.step_logits[:, :d.logits].any(), "nothing reaches the logits before the pipeline fills"
    for i, (y, y_ref) in enumerate(zip(got.layer_y, want.layer_y)):
        assert np.array_equal(y[:, d.layer(i):], y_ref[:, :T - d.layer(i)]), f"layer{i}.y differs"
    assert list(got.saturations) == saturation_names(CFG.n_layers)
    assert got.saturations == want.saturations
    clamped = {k for k, v in got.saturations.items() if v}
    assert {"input", "layer0.state"} <= clamped and len(clamped) >= 3, (
        f"the case must saturate in several places, got {got.saturations}")


def _smnist_sample() -> tuple[np.ndarray, str]:
    """MNIST test digit 0 as 784 steps when the data is found; else a fixed synthetic 784-step input in [0, 1]."""
    from s4dconf.training.datasets import DatasetNotFound, load_dataset

    try:
        return load_dataset("smnist", "test").inputs(slice(0, 1)), "MNIST test digit 0"
    except DatasetNotFound:
        u = np.random.default_rng(7).uniform(0.0, 1.0, (1, 784, 1)) * (np.arange(784) % 28 > 14)[None, :, None]
        return u, "synthetic 784-step input (MNIST not found)"


def test_lava_fxp_is_bit_exact_on_a_full_smnist_sample_of_the_shipped_model():
    """The shipped QAFT sMNIST model, one whole 784-step sample: every integer and saturation count as numpy-fxp."""
    from s4dconf.fixedpoint.formats import load_fxp
    from s4dconf.training.accuracy import shipped_model

    m = load_fxp(shipped_model("smnist", "qaft"))
    u, source = _smnist_sample()
    backend = LavaFxpBackend(timeout_s=300)
    handle = backend.prepare(m)
    d = backend.delays(handle)
    u = pad_for_delay(u, d.max)
    got, want = backend.run_integers(handle, u), run_fxp(m, u)
    T = u.shape[1]
    assert np.array_equal(got.step_logits[:, d.logits:], want.step_logits[:, :T - d.logits]), source
    for i, (y, y_ref) in enumerate(zip(got.layer_y, want.layer_y)):
        assert np.array_equal(y[:, d.layer(i):], y_ref[:, :T - d.layer(i)]), f"layer{i}.y differs ({source})"
    assert got.saturations == want.saturations, source


# ---------------------------------------------------------------- one graph, one set of delays


def test_every_lava_backend_builds_the_graph_with_the_delays_it_declares(float_model):
    """lava-float, lava-fxp and loihi2 build lava_graph's graph (built here, not run): as built, its probes and
    sink sit at the delays each backend declares, and lava-fxp has a counter for every saturation name."""
    from s4dconf.backends.lava_float import LavaFloatBackend, float_graph
    from s4dconf.backends.lava_fxp import fxp_graph
    from s4dconf.backends.loihi2 import Loihi2Backend, build_chip_graph

    N, L, n = 2, 5, CFG.n_layers
    m = quantize(float_model)
    u_q = np.zeros((N, L, CFG.d_input), dtype=np.int64)
    counters: list = []
    graphs = {"lava-float": (float_graph(float_model, np.zeros((N, L, CFG.d_input))), LavaFloatBackend(), float_model),
              "lava-fxp": (fxp_graph(m, u_q, counters), LavaFxpBackend(), m),
              "loihi2": (build_chip_graph(m, u_q), Loihi2Backend(), m)}
    for name, (graph, backend, handle) in graphs.items():
        assert graph.delays == backend.delays(handle) == lava_delays(n), name
        assert recorder_port(graph.sink).shape == (N * CFG.n_classes,), name
        assert [recorder_port(p).shape for p in graph.probes] == [(N * CFG.H,)] * n, name
    assert graphs["lava-fxp"][0].steps == L + lava_delays(n).max, "lava-fxp runs until every process saw every step"
    assert graphs["lava-float"][0].steps == graphs["loihi2"][0].steps == L
    assert sorted(k for k, _ in counters) == sorted(saturation_names(n)[1:]), "one counter per name but 'input'"


# ---------------------------------------------------------------- refusals


def test_lava_fxp_is_registered_after_numpy_fxp():
    names = list(REGISTRY)
    assert names.index("lava-fxp") == names.index("numpy-fxp") + 1 and "lava-float" in names
    info = LavaFxpBackend().info()
    assert (info.numeric_class, info.paths, info.streaming, info.exposes_state) == (
        "fixed-point", ("lava",), False, False)


@pytest.mark.parametrize("change,message", [
    (dict(use_D=True), "no D path"),
    (dict(readout="mean"), "readout 'last'"),
])
def test_lava_fxp_refuses_graphs_it_cannot_build(change, message):
    model = S4DModel.create(CFG.replace(**change), 0)
    with pytest.raises(S4DInputError, match=message):
        LavaFxpBackend().prepare(model)


def test_lava_fxp_refuses_messages_wider_than_a_graded_spike(float_model):
    m = quantize(float_model, fmt=FxpFormat(msg_bits=32))
    with pytest.raises(S4DInputError, match="Loihi 2 graded spikes carry 24 bits"):
        LavaFxpBackend().prepare(m)
    assert LavaFxpBackend().prepare(quantize(float_model, fmt=FxpFormat(msg_bits=24))).fmt.msg_bits == 24


def test_lava_fxp_refuses_other_objects():
    with pytest.raises(S4DInputError, match="FxpModel"):
        LavaFxpBackend().prepare(np.zeros(3))


# ---------------------------------------------------------------- runtime hygiene (SPEC.md 16.3)


def _processes() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgrp, state) of every process visible in /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out.append((int(entry), int(fields[1]), int(fields[2]), fields[0]))
    return out


def _is_resource_tracker(pid: int) -> bool:
    """Python's multiprocessing resource tracker: started once by the first spawn-context process of the
    interpreter (a Dask LocalCluster of an earlier test, for one) and alive as long as the interpreter, by design."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"multiprocessing.resource_tracker" in f.read()
    except OSError:
        return False


def _leftovers(pgid: int | None) -> list:
    """Children of this process (live or unreaped), and live processes of the job's process group. A killed
    worker that is already a zombie under init has exited: reaping it is init's business, not a leak."""
    me = os.getpid()
    return [p for p in _processes()
            if (p[1] == me or (pgid is not None and p[2] == pgid and p[3] not in ("Z", "X")))
            and not _is_resource_tracker(p[0])]


def _assert_no_leftovers(pgid: int | None, within_s: float = 5.0) -> None:
    """Nothing left after at most within_s (SIGKILL and reaping take a moment)."""
    deadline = time.monotonic() + within_s
    while (left := _leftovers(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind (pid, ppid, pgrp, state): {left}"


def _start_lava(num_steps: int, blocking: bool):
    """A small fixed-point Lava graph (source -> connection -> neuron -> sink), started; returns its sink."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from s4dconf.backends.lava_procs.process import FxpConnection, FxpNeuron

    src = Source(data=np.arange(8, dtype=np.int64).reshape(2, 4))
    conn = FxpConnection(weights=np.array([[1, 2], [3, -4]]))
    neuron = FxpNeuron(shape=(2,), shift=1, relu=False, msg_bits=8, rounding="floor")
    sink = Sink(shape=(2,), buffer=num_steps)
    src.s_out.connect(conn.s_in)
    conn.a_out.connect(neuron.a_in)
    neuron.s_out.connect(sink.a_in)
    sink.run(condition=RunSteps(num_steps=num_steps, blocking=blocking), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    return sink


def _group_size() -> int:
    return sum(1 for p in _processes() if p[2] == os.getpgid(0))


def _job_ok():
    sink = _start_lava(6, blocking=True)
    try:
        return os.getpid(), _group_size(), sink.data.get()
    finally:
        sink.stop()


def _job_raises(pid_file):
    _start_lava(10**6, blocking=False)
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()} {_group_size()}")
    raise ValueError("boom inside the Lava job")


def _job_hangs(pid_file):
    _start_lava(10**6, blocking=False)
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()} {_group_size()}")
    time.sleep(120)


def _read_pid_file(path) -> tuple[int, int]:
    pgid, size = (int(v) for v in path.read_text().split())
    return pgid, size


def test_no_process_outlives_a_successful_run():
    pgid, size, data = run_isolated(_job_ok, (), timeout_s=120, what="hygiene run")
    assert size > 1, "the job should have started Lava workers in its process group"
    # the integer graph ran: step t records clip(floor(W s(t - 1) / 2)), 0 at the first step
    src, W = np.arange(8).reshape(2, 4), np.array([[1, 2], [3, -4]])
    want = np.zeros((2, 6), dtype=np.int64)
    for t in range(1, 6):
        want[:, t] = np.clip((W @ src[:, (t - 1) % 4]) >> 1, -128, 127)
    assert np.array_equal(data, want)
    _assert_no_leftovers(pgid)


def test_no_process_outlives_a_failing_run(tmp_path):
    pid_file = tmp_path / "pid"
    with pytest.raises(LavaRunError, match="ValueError: boom inside the Lava job"):
        run_isolated(_job_raises, (str(pid_file),), timeout_s=120, what="failing run")
    pgid, size = _read_pid_file(pid_file)
    assert size > 1, "the job should have started Lava workers in its process group"
    _assert_no_leftovers(pgid)


def test_a_hung_run_times_out_and_leaves_nothing(tmp_path):
    """The timeout leaves Lava time to start its workers (2 s did not always, on 2 loaded cores) before it kills
    them; the job then hangs for 120 s, far past it."""
    pid_file = tmp_path / "pid"
    t0 = time.monotonic()
    with pytest.raises(LavaRunError, match=r"did not finish within 10 s"):
        run_isolated(_job_hangs, (str(pid_file),), timeout_s=10, what="hung run")
    assert time.monotonic() - t0 < 40
    pgid, size = _read_pid_file(pid_file)
    assert size > 1, "the job should have started Lava workers in its process group"
    _assert_no_leftovers(pgid)


def test_the_leftover_check_sees_a_job_that_is_not_killed(tmp_path, monkeypatch):
    """Negative control: without the group kill, a failed job's Lava workers stay alive, and the check says so."""
    from s4dconf.backends import lava_runtime

    monkeypatch.setattr(lava_runtime, "_kill_group", lambda pgid: None)
    pid_file = tmp_path / "pid"
    with pytest.raises(LavaRunError, match="boom"):
        run_isolated(_job_raises, (str(pid_file),), timeout_s=120, what="unkilled run")
    pgid, _ = _read_pid_file(pid_file)
    try:
        assert _leftovers(pgid), "the job's workers should still be running"
        with pytest.raises(AssertionError, match="processes left behind"):
            _assert_no_leftovers(pgid, within_s=0.5)
    finally:
        os.killpg(pgid, signal.SIGKILL)
        os.waitpid(pgid, 0)  # the job's own process is this process's child
    _assert_no_leftovers(pgid)


# ---------------------------------------------------------------- the parent dies mid-run (SPEC.md 16.3)

MARK_VAR = "S4DCONF_TEST_RUN_MARKER"  # set for the run's first process; every process it forks inherits it

# A real lava-fxp run, long enough to be killed in the middle: 100,000 steps at ~2-8 ms each.
_LAVA_FXP_RUN = """
import numpy as np
from s4dconf.backends.lava_fxp import LavaFxpBackend
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.config import ModelConfig
from s4dconf.reference.model import S4DModel

backend = LavaFxpBackend(timeout_s=600)
handle = backend.prepare(quantize(S4DModel.create(ModelConfig(name="kill", H=4, P=3, n_layers=2, n_classes=3), 1)))
backend.run(handle, np.random.default_rng(0).uniform(-1.0, 1.0, (1, 100_000, 1)), "lava")
"""


def _marked(marker: str) -> list[int]:
    """Live processes whose environment holds MARK_VAR=marker (a zombie's environment reads empty: it has exited)."""
    needle = f"{MARK_VAR}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_the_parent_mid_run_leaves_no_process_of_the_run(sig, tmp_path):
    """What `timeout`, a cancelled CI job (SIGTERM) or the OOM killer (SIGKILL) does to a process running lava-fxp:
    the forked runner and Lava's workers must go with it, within seconds."""
    marker = uuid.uuid4().hex
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _LAVA_FXP_RUN], env=dict(os.environ, **{MARK_VAR: marker}),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        # mid-run: the parent, the forked runner and Lava's workers are up (and stay up for minutes)
        deadline = time.monotonic() + 180
        while len(_marked(marker)) < 4:
            assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"Lava's workers did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        time.sleep(1.0)
        running = _marked(marker)
        assert proc.poll() is None and len(running) >= 4, running
        proc.send_signal(sig)
        assert proc.wait(30) == -sig, "the parent ends by the signal (a handler re-raises SIGTERM after cleanup)"
        deadline = time.monotonic() + 10
        while (left := _marked(marker)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"processes of the run left behind after {signal.Signals(sig).name} to the parent: {left} " \
                         f"(of {running})"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _marked(marker):  # a failed test leaves nothing running either
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_the_marker_finds_a_run_that_is_left_behind():
    """Negative control of the check above: a forked grandchild that outlives its parent is found by the marker."""
    marker = uuid.uuid4().hex
    script = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nelse:\n    os._exit(0)\n"
    subprocess.run([sys.executable, "-c", script], env=dict(os.environ, **{MARK_VAR: marker}), check=True,
                   timeout=30)
    left = _marked(marker)
    try:
        assert len(left) == 1, left
    finally:
        for pid in left:
            os.kill(pid, signal.SIGKILL)
