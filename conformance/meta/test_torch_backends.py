"""The torch backends up to the hardware boundary (SPEC.md section 17): device choice, the CUDA-graph path's
refusal on a CPU, what each backend declares, and bad input."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: the torch backends need it")

from s4dconf.backends import get_backend  # noqa: E402
from s4dconf.backends.torch_backends import DEVICE_ENV, TorchRecBackend, choose_device  # noqa: E402
from s4dconf.reference.config import get_config  # noqa: E402
from s4dconf.fixedpoint.formats import FxpModel  # noqa: E402
from s4dconf.reference.model import S4DModel  # noqa: E402
from s4dconf.fixedpoint.quantize import quantize  # noqa: E402
from s4dconf.reference.validate import S4DInputError  # noqa: E402

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny():
    return S4DModel.create(get_config("tiny"), 0)


def test_device_from_the_environment(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert choose_device() == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "gpu0")
    with pytest.raises(S4DInputError, match=f"from the option or \\${DEVICE_ENV}.*auto, cpu, cuda"):
        choose_device()


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA: the refusal is for machines without it")
def test_cuda_requested_without_cuda_makes_the_backend_unavailable(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    av = get_backend("torch-rec").availability()
    assert not av.available and "no usable CUDA device" in av.reason


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA: the CPU declarations differ there")
def test_declarations_on_the_cpu():
    rec, conv = get_backend("torch-rec").info(), get_backend("torch-conv").info()
    assert rec.paths == ("eager",) and rec.streaming and rec.numeric_class == "float32"
    assert conv.paths == ("fft",) and not conv.streaming and not conv.exposes_state
    assert get_backend("torch-rec-f64").info().numeric_class == "float64"


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA: there the graph is captured")
def test_cuda_graph_session_refuses_the_cpu(tiny):
    backend = TorchRecBackend()
    handle = backend.prepare(tiny)
    with pytest.raises(S4DInputError, match="needs the cuda device"):
        backend.open_session(handle, 1, graph=True)


@pytest.mark.parametrize("name", ["torch-rec", "torch-conv"])
def test_a_fixed_point_model_is_refused(tiny, name):
    with pytest.raises(S4DInputError, match="needs a float64 S4DModel"):
        get_backend(name).prepare(quantize(tiny))
    assert isinstance(quantize(tiny), FxpModel)


def test_session_step_checks_its_input(tiny):
    backend = TorchRecBackend()
    s = backend.open_session(backend.prepare(tiny), 2)
    with pytest.raises(S4DInputError, match=r"shape \(2, 1\)"):
        s.step(np.zeros((1, 1)))
    with pytest.raises(S4DInputError, match="non-finite"):
        s.step(np.array([[0.0], [np.nan]]))


def test_session_state_and_reset(tiny):
    """The state is carried across steps and reset to zero; the streaming logits equal the whole-batch run's."""
    backend = TorchRecBackend()
    handle = backend.prepare(tiny)
    u = np.random.default_rng(0).standard_normal((2, 20, 1))
    s = backend.open_session(handle, 2)
    first = s.run(u)
    assert s.get_state()["t"] == 20 and np.abs(s.get_state()["x"][0]).max() > 0
    s.reset()
    assert s.get_state()["t"] == 0 and not np.abs(s.get_state()["x"][0]).any()
    np.testing.assert_array_equal(s.run(u), first)
    np.testing.assert_allclose(backend.run(handle, u, "eager").step_logits, first, rtol=0, atol=0)


@pytest.mark.parametrize("changes", [dict(), dict(use_D=True), dict(activation="identity", n_layers=3, d_input=3),
                                     dict(readout="mean")])
def test_training_forward_equals_the_last_step_of_the_convolution(changes):
    # forward_last (training) skips the last layer's FFT and reorders the layout: it must be the same function
    from s4dconf.backends.torch_model import TorchS4D

    cfg = get_config("small").replace(**changes)
    m = TorchS4D.from_reference(S4DModel.create(cfg, 3), torch.float64)
    u = torch.as_tensor(np.random.default_rng(0).standard_normal((3, 50, cfg.d_input)))
    with torch.no_grad():
        np.testing.assert_allclose(m.forward_last(u).numpy(), m(u)[:, -1].numpy(), rtol=1e-12, atol=1e-13)
