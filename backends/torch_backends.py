"""Backends `torch-rec` and `torch-conv` (the paper's Jetson baselines, SPEC.md section 17), float32 by default,
and their float64 variants `torch-rec-f64`, `torch-conv-f64`.

torch-rec   token by token with a carried state (the streaming mode). Paths of the whole-batch run: "eager", and
            on CUDA also "cuda-graph" (the step captured once as a CUDA graph and replayed per token).
torch-conv  whole samples through the FFT convolution (the batched mode); no streaming session.
Device: S4DCONF_TORCH_DEVICE = auto (CUDA when present, as on a Jetson) | cpu | cuda; asking for cuda on a machine
without CUDA is an error, not a silent fallback.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

import s4dconf
from s4dconf.reference.model import S4DModel
from s4dconf.reference.validate import S4DInputError, as_input_sequence

from .base import (Availability, Backend, BackendInfo, BackendRun, Session, check_session_batch, check_session_chunk,
                   check_step_input)

DEVICE_ENV = "S4DCONF_TORCH_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def torch_availability() -> Availability:
    if importlib.util.find_spec("torch") is None:
        return Availability(False, "torch is not installed (pip install torch; the py311 tox env has it)")
    return Availability(True)


def choose_device(request: str | None = None) -> str:
    """The torch device for a request ("auto", "cpu", "cuda"; default from $S4DCONF_TORCH_DEVICE, else auto)."""
    import torch

    request = (request or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if request not in DEVICE_CHOICES:
        raise S4DInputError(f"torch device {request!r} (from the option or ${DEVICE_ENV}) is not one of "
                            f"{', '.join(DEVICE_CHOICES)}")
    if request == "cuda" and not torch.cuda.is_available():
        raise S4DInputError(f"torch device 'cuda' was asked for (option or ${DEVICE_ENV}) but this machine has no "
                            f"usable CUDA device (torch {torch.__version__}, built with CUDA "
                            f"{torch.version.cuda or 'none'}); use 'cpu' or 'auto'")
    if request == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return request


def device_description(device: str) -> str:
    import torch

    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda})"
    return "cpu"


class _TorchHandle:
    """A prepared model: the module on its device and dtype, and the recurrent step's constants."""

    def __init__(self, model: S4DModel, dtype_name: str, device: str):
        import torch

        from .torch_model import DTYPES, TorchS4D  # deferred: torch is the optional extra [torch]

        self.model, self.device, self.dtype = model, device, DTYPES[dtype_name]
        self.module = TorchS4D.from_reference(model, self.dtype).to(device).eval()
        self.consts = self.module.recurrent_constants()
        self.relu = model.config.activation == "relu"
        self.mean = model.config.readout == "mean"
        self.torch = torch

    def tensor(self, a: np.ndarray):
        return self.torch.as_tensor(a, dtype=self.dtype, device=self.device)

    def numpy(self, t) -> np.ndarray:
        """A device tensor as a float64 numpy array on the host (what the harness compares)."""
        return t.detach().cpu().to(self.torch.float64).numpy()


class TorchSession(Session):
    """Streaming over N streams with the state on the device; `graph=True` replays a captured CUDA graph."""

    def __init__(self, handle: _TorchHandle, batch: int, graph: bool = False):
        from .torch_model import recurrent_step  # deferred: torch is optional

        self.h, self.N = handle, check_session_batch(batch)
        self.d_in = handle.model.config.d_input
        self._step_fn = lambda u, st: recurrent_step(handle.consts, handle.relu, handle.mean, u, st)  # noqa: E731
        self.state = handle.module.zero_state(self.N)
        self.t = 0
        self.graph = None
        if graph:
            self._capture()

    def _capture(self):
        """Capture one step as a CUDA graph over static input/output buffers (warm-up on a side stream first)."""
        torch = self.h.torch
        if self.h.device != "cuda":
            raise S4DInputError("a CUDA-graph step needs the cuda device")
        self._u_static = torch.zeros(self.N, self.d_in, dtype=self.h.dtype, device="cuda")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(3):
                self._step_fn(self._u_static, self.state)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self._out_static = self._step_fn(self._u_static, self.state)
        self.reset()

    def step_tensor(self, u):
        """One token from a device tensor (N, d_in) -> device (logits (N, classes), [y_i (N, H)]); the tensors
        of a CUDA-graph step are its static outputs, overwritten by the next step (clone to keep them)."""
        if self.graph is not None:
            self._u_static.copy_(u)
            self.graph.replay()
            out = self._out_static
        else:
            with self.h.torch.no_grad():
                out = self._step_fn(u, self.state)
        self.t += 1
        return out

    def step(self, u_t):
        u_t = check_step_input(u_t, self.N, self.d_in, self.t)
        return self.h.numpy(self.step_tensor(self.h.tensor(u_t))[0]).copy()

    def run(self, chunk):
        """T steps: chunk (N, T, d_input) -> (N, T, n_classes); the chunk is checked once, as a whole."""
        chunk = check_session_chunk(chunk, self.N, self.d_in)
        ut = self.h.tensor(chunk)
        return np.stack([self.h.numpy(self.step_tensor(ut[:, k])[0]).copy() for k in range(chunk.shape[1])], axis=1)

    def reset(self):
        for x in self.state["x"]:
            x.zero_()
        self.state["sum"].zero_()
        self.state["t"].zero_()
        self.t = 0

    def get_state(self):
        return {"t": self.t, "x": [x.detach().cpu().to(self.h.torch.complex128).numpy().copy()
                                   for x in self.state["x"]],
                "readout_sum": self.h.numpy(self.state["sum"]).copy()}

    def set_state(self, state):
        """Copy a get_state() snapshot into the session's tensors (in place: a captured CUDA graph keeps them)."""
        xs = list(state["x"])
        if len(xs) != len(self.state["x"]) or any(np.shape(a) != tuple(x.shape) for a, x in zip(xs, self.state["x"])):
            raise S4DInputError(f"state x must hold {len(self.state['x'])} arrays of shape "
                                f"{tuple(self.state['x'][0].shape)}")
        torch = self.h.torch
        for x, a in zip(self.state["x"], xs):
            x.copy_(torch.as_tensor(np.asarray(a), device=x.device).to(x.dtype))
        self.state["sum"].copy_(self.h.tensor(np.asarray(state["readout_sum"], dtype=np.float64)))
        self.t = int(state["t"])
        self.state["t"].fill_(self.t)


class _TorchBackend(Backend):
    dtype_name = "float32"

    def __init__(self, device: str | None = None):
        self._device_request = device

    def availability(self) -> Availability:
        av = torch_availability()
        if not av.available:
            return av
        try:
            choose_device(self._device_request)
        except S4DInputError as e:
            return Availability(False, str(e))
        return Availability(True)

    @property
    def device(self) -> str:
        return choose_device(self._device_request)

    def _info(self, **kw) -> BackendInfo:
        import torch

        return BackendInfo(name=self.name, numeric_class=self.dtype_name,
                           version=f"s4dconf {s4dconf.__version__} (torch {torch.__version__})",
                           device=device_description(self.device), **kw)

    def prepare(self, model):
        if not isinstance(model, S4DModel):
            raise S4DInputError(f"{self.name} needs a float64 S4DModel (a model file), got {type(model).__name__}")
        return _TorchHandle(model, self.dtype_name, self.device)


class TorchRecBackend(_TorchBackend):
    """Recurrent S4D in PyTorch: one token at a time, state carried (the paper's streaming GPU baseline)."""

    name = "torch-rec"

    def info(self) -> BackendInfo:
        return self._info(paths=("eager", "cuda-graph") if self.device == "cuda" else ("eager",), restores_state=True)

    def run(self, handle, u, path):
        u = as_input_sequence(u, handle.model.config.d_input)
        s = self.open_session(handle, u.shape[0], graph=path == "cuda-graph")
        ut, torch = handle.tensor(u), handle.torch
        logits, ys = [], []
        for k in range(u.shape[1]):
            lg, y = s.step_tensor(ut[:, k])
            logits.append(lg.clone())
            ys.append(torch.stack(y))  # (n_layers, N, H): a copy, also of a graph's static outputs
        ys = torch.stack(ys, dim=2)  # (n_layers, N, L, H)
        return BackendRun(step_logits=handle.numpy(torch.stack(logits, dim=1)), layer_y=[handle.numpy(y) for y in ys])

    def open_session(self, handle, batch, graph: bool = False):
        return TorchSession(handle, batch, graph=graph)


class TorchConvBackend(_TorchBackend):
    """Convolutional S4D in PyTorch: whole samples through the FFT convolution (the paper's batched GPU mode)."""

    name = "torch-conv"

    def info(self) -> BackendInfo:
        return self._info(paths=("fft",), exposes_state=False, streaming=False)

    def run(self, handle, u, path):
        u = as_input_sequence(u, handle.model.config.d_input)
        with handle.torch.no_grad():
            logits, ys = handle.module(handle.tensor(u), return_layers=True)
        return BackendRun(step_logits=handle.numpy(logits), layer_y=[handle.numpy(y) for y in ys])


class TorchRecF64Backend(TorchRecBackend):
    name, dtype_name = "torch-rec-f64", "float64"


class TorchConvF64Backend(TorchConvBackend):
    name, dtype_name = "torch-conv-f64", "float64"
