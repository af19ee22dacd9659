"""The paper's S4D classifier in PyTorch (SPEC.md section 17): the same parameters and equations as
`reference/model.py`, as a differentiable module, in float32 (default, as on a Jetson) or float64.

Shapes: u (N, L, d_input); per layer y, z (N, L, H); step logits (N, L, n_classes).

Two evaluation modes of the same model:
    forward(u)          whole sequences, each S4D layer as a causal FFT convolution of length >= 2L with
                        K_l = 2 Re(sum_n C_n Bbar_n Abar_n^l)                   (torch-conv, training)
    step(u_t, state)    one token: x <- Abar x + Bbar h, y = 2 Re(sum_n C_n x_n) + D h   (torch-rec)
Parameters are stored under the names of the float64 model file (SPEC.md section 7) so that a trained module
exports to, and loads from, that file without renaming. A discretised-coefficient model (SPEC.md 7.1) keeps its
Abar, Bbar, C as parameters and both forms use them as given (log Abar for the kernel), with no discretisation.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from s4dconf.reference.config import ModelConfig
from s4dconf.reference.discrete import DiscreteS4DModel, discrete_param_shapes
from s4dconf.reference.model import S4DModel, param_shapes
from s4dconf.reference.validate import S4DInputError

DTYPES = {"float32": torch.float32, "float64": torch.float64}
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not contain "."


class TorchS4D(nn.Module):
    """S4D classifier: encoder -> n_layers x [S4D -> act -> Linear(H, H) -> act] -> decoder (no biases)."""

    def __init__(self, config: ModelConfig, params: dict[str, np.ndarray], dtype: torch.dtype = torch.float32,
                 given_coefficients: bool = False):
        """given_coefficients: `params` are a discretised-coefficient model's (Abar, Bbar, C; SPEC.md 7.1)."""
        super().__init__()
        self.config = config
        self.given_coefficients = given_coefficients
        shapes = self._shapes()
        if set(params) != set(shapes):
            raise S4DInputError(f"parameters do not match config {config.name!r}: missing "
                                f"{sorted(set(shapes) - set(params))}, unexpected {sorted(set(params) - set(shapes))}")
        self.p = nn.ParameterDict({_key(k): nn.Parameter(torch.as_tensor(np.asarray(params[k]), dtype=dtype).clone())
                                   for k in shapes})

    def _shapes(self) -> dict[str, tuple]:
        return (discrete_param_shapes if self.given_coefficients else param_shapes)(self.config)

    @classmethod
    def from_reference(cls, model: S4DModel, dtype: torch.dtype = torch.float32) -> "TorchS4D":
        return cls(model.config, model.params, dtype, given_coefficients=isinstance(model, DiscreteS4DModel))

    def to_reference(self) -> S4DModel:
        """The float64 reference model with these parameters (validated by S4DModel or DiscreteS4DModel)."""
        params = {k: self.p[_key(k)].detach().cpu().to(torch.float64).numpy().copy() for k in self._shapes()}
        return (DiscreteS4DModel if self.given_coefficients else S4DModel)(self.config, params)

    def param(self, name: str) -> torch.Tensor:
        return self.p[_key(name)]

    def ssm_parameter_names(self) -> list[str]:
        """The S4D parameters (A, B, dt, or Abar, Bbar when given; not C), which training gives their own
        optimiser group."""
        keys = ("Abar_re", "Abar_im", "Bbar_re", "Bbar_im") if self.given_coefficients else (
            "a_re", "a_im", "B_re", "B_im", "log_dt")
        return [_key(f"layer{i}.{k}") for i in range(self.config.n_layers) for k in keys]

    # ------------------------------------------------------------- the S4D layer

    def discrete(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log Abar, Abar, Bbar, C) of layer i, complex (H, P). ZOH: Abar = exp(dt A), log Abar = dt A,
        Bbar = (Abar - 1) / A B; bilinear: Abar = (1 + dt A / 2) / (1 - dt A / 2), Bbar = dt B / (1 - dt A / 2);
        given coefficients (SPEC.md 7.1): Abar, Bbar as stored, log Abar = log|Abar| + i arg Abar."""
        g = lambda k: self.param(f"layer{i}.{k}")  # noqa: E731
        C = torch.complex(g("C_re"), g("C_im"))
        if self.given_coefficients:
            Abar = torch.complex(g("Abar_re"), g("Abar_im"))
            return torch.log(Abar), Abar, torch.complex(g("Bbar_re"), g("Bbar_im")), C
        A = torch.complex(-torch.exp(g("a_re")), g("a_im"))
        B = torch.complex(g("B_re"), g("B_im"))
        dt = torch.exp(g("log_dt"))[:, None]
        dtA = dt * A
        if self.config.discretization == "zoh":
            Abar = torch.exp(dtA)
            Bbar = torch.expm1(dtA) / A * B  # expm1 keeps Abar - 1 accurate for tiny |dt A|
            return dtA, Abar, Bbar, C
        half = dtA / 2
        Abar = (1 + half) / (1 - half)
        return torch.log(Abar), Abar, dt * B / (1 - half), C

    def kernel(self, i: int, L: int) -> torch.Tensor:
        """K (H, L): K[h, l] = 2 Re(sum_n C Bbar Abar^l), Abar^l = exp(l log Abar) (log Abar = dt A for ZOH)."""
        log_abar, _, Bbar, C = self.discrete(i)
        steps = torch.arange(L, device=log_abar.device, dtype=log_abar.real.dtype)
        vander = torch.exp(log_abar[:, :, None] * steps)  # (H, P, L)
        return 2 * torch.einsum("hn,hnl->hl", C * Bbar, vander).real

    def act(self, v: torch.Tensor) -> torch.Tensor:
        return torch.relu(v) if self.config.activation == "relu" else v

    # ------------------------------------------------------------- whole sequences (convolution)

    def forward(self, u: torch.Tensor, return_layers: bool = False):
        """u (N, L, d_input) -> step logits (N, L, n_classes) [, per-layer y (N, L, H)] by FFT convolution."""
        L = u.shape[1]
        n = 2 * L  # FFT length >= 2L: the circular convolution equals the causal one on 0..L-1
        h = u @ self.param("encoder.W").T
        ys = []
        for i in range(self.config.n_layers):
            K = self.kernel(i, L)
            y = torch.fft.irfft(torch.fft.rfft(h, n=n, dim=1) * torch.fft.rfft(K.T, n=n, dim=0), n=n, dim=1)[:, :L]
            if self.config.use_D:
                y = y + self.param(f"layer{i}.D") * h
            ys.append(y)
            h = self.act(self.act(y) @ self.param(f"layer{i}.W").T)
        logits = self.readout(h)
        return (logits, ys) if return_layers else logits

    def forward_last(self, u: torch.Tensor) -> torch.Tensor:
        """u (N, L, d_input) -> last-step logits (N, n_classes), readout "last" only (training's forward).

        The same causal convolution as forward(), laid out (N, H, L) so that every FFT runs over contiguous memory,
        and the last layer evaluated at its last step only: y_{L-1} = sum_k K[k] h_{L-1-k}, no FFT.
        """
        if self.config.readout != "last":
            return self.forward(u)[:, -1]
        L = u.shape[1]
        n = 2 * L
        h = (u @ self.param("encoder.W").T).transpose(1, 2)  # (N, H, L)
        last = self.config.n_layers - 1
        for i in range(self.config.n_layers):
            K = self.kernel(i, L)
            if i == last:
                y = (h * K.flip(-1)).sum(-1)  # (N, H)
                if self.config.use_D:
                    y = y + self.param(f"layer{i}.D") * h[..., -1]
                return self.act(self.act(y) @ self.param(f"layer{i}.W").T) @ self.param("decoder.W").T
            y = torch.fft.irfft(torch.fft.rfft(h, n=n) * torch.fft.rfft(K, n=n), n=n)[..., :L]
            if self.config.use_D:
                y = y + self.param(f"layer{i}.D")[:, None] * h
            h = self.act(self.act(y).transpose(1, 2) @ self.param(f"layer{i}.W").T).transpose(1, 2)
        raise AssertionError("unreachable: n_layers >= 1")

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        if self.config.readout == "mean":
            steps = torch.arange(1, h.shape[1] + 1, device=h.device, dtype=h.dtype)
            h = torch.cumsum(h, dim=1) / steps[None, :, None]
        return h @ self.param("decoder.W").T

    # ------------------------------------------------------------- one token (recurrence)

    def recurrent_constants(self) -> dict:
        """Everything the recurrent step reads, computed once per model (detached)."""
        with torch.no_grad():
            layers = []
            for i in range(self.config.n_layers):
                _, Abar, Bbar, C = self.discrete(i)
                D = self.param(f"layer{i}.D") if self.config.use_D else None
                layers.append((Abar, Bbar, 2 * C, D, self.param(f"layer{i}.W").T.contiguous()))
            return {"enc_T": self.param("encoder.W").T.contiguous(), "dec_T": self.param("decoder.W").T.contiguous(),
                    "layers": layers}

    def zero_state(self, batch: int, device=None) -> dict:
        w = self.param("encoder.W")
        cdtype = _COMPLEX[w.dtype]
        return {"x": [torch.zeros(batch, self.config.H, self.config.P, dtype=cdtype, device=device or w.device)
                      for _ in range(self.config.n_layers)],
                "sum": torch.zeros(batch, self.config.H, dtype=w.dtype, device=device or w.device),
                "t": torch.zeros((), dtype=w.dtype, device=device or w.device)}


def recurrent_step(consts: dict, relu: bool, mean: bool, u_t: torch.Tensor, state: dict):
    """One token for a batch: u_t (N, d_input) -> (logits (N, n_classes), [y_i (N, H)]); updates `state` in place.

    In-place updates keep every tensor's storage fixed, which a captured CUDA graph requires.
    """
    h = u_t @ consts["enc_T"]
    ys = []
    for (Abar, Bbar, C2, D, W_T), x in zip(consts["layers"], state["x"]):
        x.mul_(Abar).add_(Bbar * h[:, :, None])
        y = (x * C2).real.sum(dim=2)
        if D is not None:
            y = y + D * h
        ys.append(y)
        h = torch.relu(torch.relu(y) @ W_T) if relu else y @ W_T
    if mean:
        state["t"].add_(1)
        state["sum"].add_(h)
        h = state["sum"] / state["t"]
    return h @ consts["dec_T"], ys
