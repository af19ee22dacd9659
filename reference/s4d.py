"""The S4D layer in float64: discretisation, kernel, convolution, recurrence (SPEC.md sections 2-3).

Shapes: H channels, P complex modes per channel, L time steps, batch N.
All parameters are per (channel, mode) arrays of shape (H, P); dt is per channel, shape (H,).

Continuous system, per channel h and mode n:
    x'(t) = A x(t) + B u(t),     y(t) = 2 Re(sum_n C_n x_n(t)) + D u(t)
Discrete system (ZOH by default), per time step k = 0 .. L-1, initial state x_{-1} = 0:
    x_k = Abar * x_{k-1} + Bbar * u_k      (state update first ...)
    y_k = 2 Re(sum_n C_n x_k[n]) + D u_k   (... then output; no extra delay)
Convolution form of the same system:
    K_l = 2 Re(sum_n C_n Bbar_n Abar_n^l),  y_k = sum_{l=0..k} K_l u_{k-l} + D u_k
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from .validate import S4DInputError, check_finite, check_shape

DISCRETIZATIONS = ("zoh", "bilinear")


def discretize_zoh(A: np.ndarray, B: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-order hold: Abar = exp(dt A), Bbar = (Abar - 1) / A * B.

    A, B: complex (H, P); dt: float (H,) in the sequence's time unit (one step = dt).
    """
    A, B, dt = _check_discretize_args(A, B, dt)
    dtA = dt[:, None] * A
    Abar = np.exp(dtA)
    # expm1 keeps (Abar - 1) accurate when |dt A| is tiny (dt near 1e-4).
    Bbar = np.expm1(dtA) / A * B
    return Abar, Bbar


def discretize_bilinear(A: np.ndarray, B: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear (Tustin): Abar = (1 + dt A / 2) / (1 - dt A / 2), Bbar = dt B / (1 - dt A / 2)."""
    A, B, dt = _check_discretize_args(A, B, dt)
    half = dt[:, None] * A / 2.0
    denom = 1.0 - half
    return (1.0 + half) / denom, dt[:, None] * B / denom


def discretize(A: np.ndarray, B: np.ndarray, dt: np.ndarray, method: str = "zoh") -> tuple[np.ndarray, np.ndarray]:
    """Dispatch on the discretisation name ("zoh" or "bilinear")."""
    if method == "zoh":
        return discretize_zoh(A, B, dt)
    if method == "bilinear":
        return discretize_bilinear(A, B, dt)
    raise S4DInputError(f"unknown discretization {method!r}; known: {', '.join(DISCRETIZATIONS)}")


def _check_discretize_args(A, B, dt):
    A = np.asarray(A)
    B = np.asarray(B)
    dt = np.asarray(dt)
    if A.ndim != 2:
        raise S4DInputError(f"A must have shape (H, P), got shape {A.shape}")
    check_shape("B", B, A.shape)
    check_shape("dt", dt, A.shape[:1])
    A = A.astype(np.complex128)
    B = B.astype(np.complex128)
    dt = dt.astype(np.float64)
    check_finite("A", A)
    check_finite("B", B)
    check_finite("dt", dt)
    if np.any(dt <= 0):
        h = int(np.argmax(dt <= 0))
        raise S4DInputError(f"dt must be > 0 for every channel; dt[{h}] = {dt[h]!r}")
    if np.any(A.real >= 0):
        h, n = np.argwhere(A.real >= 0)[0]
        raise S4DInputError(
            f"Re(A) must be < 0 (a stable system); A[{h}, {n}] = {A[h, n]!r}. "
            "With the a_re parametrisation Re(A) = -exp(a_re); a_re = -inf gives Re(A) = 0."
        )
    return A, B, dt


def ssm_kernel(Abar: np.ndarray, Bbar: np.ndarray, C: np.ndarray, L: int) -> np.ndarray:
    """Convolution kernel K of shape (H, L): K[h, l] = 2 Re(sum_n C[h,n] Bbar[h,n] Abar[h,n]^l).

    Abar^l is exp(l log Abar) of the discretised Abar, so kernel and recurrence use the same Abar.
    Channels are processed in blocks to keep the (H, P, L) Vandermonde product below ~64 MB.
    """
    H, P = Abar.shape
    with np.errstate(divide="ignore"):  # Abar may underflow to 0 for very negative dt*Re(A): log 0 = -inf
        log_abar = np.log(Abar)
    CB = C * Bbar
    steps = np.arange(L, dtype=np.float64)
    K = np.empty((H, L), dtype=np.float64)
    block = max(1, (1 << 22) // max(1, P * L))
    for h0 in range(0, H, block):
        sl = slice(h0, h0 + block)
        with np.errstate(invalid="ignore"):
            vander = np.exp(log_abar[sl, :, None] * steps)  # (h, P, L)
        vander[Abar[sl] == 0] = 0.0  # Abar^l = 0 for l >= 1 where Abar underflowed to 0 ...
        vander[:, :, 0] = 1.0  # ... and Abar^0 = 1 (-inf * 0 would be NaN)
        K[sl] = 2.0 * np.einsum("hn,hnl->hl", CB[sl], vander).real
    return K


def causal_conv(u: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Causal convolution y[b, k, h] = sum_{l<=k} K[h, l] u[b, k-l, h] by FFT of length >= 2L (no wrap-around).

    u: (N, L, H) float64; K: (H, L). Returns (N, L, H).
    """
    L = u.shape[1]
    n = scipy.fft.next_fast_len(2 * L, real=True)
    Uf = scipy.fft.rfft(u, n=n, axis=1)
    Kf = scipy.fft.rfft(K.T, n=n, axis=0)
    return scipy.fft.irfft(Uf * Kf[None], n=n, axis=1)[:, :L]


def s4d_convolution(u: np.ndarray, Abar, Bbar, C, D=None) -> np.ndarray:
    """S4D layer output by the convolution path. u: (N, L, H) -> y: (N, L, H); zero initial state."""
    y = causal_conv(u, ssm_kernel(Abar, Bbar, C, u.shape[1]))
    if D is not None:
        y = y + D * u
    return y


def s4d_recurrence(u: np.ndarray, Abar, Bbar, C, D=None, x0=None, return_states_at=(), on_state=None):
    """S4D layer output by the recurrence (update, then output). u: (N, L, H) -> y: (N, L, H).

    x0: complex (N, H, P) initial state (default zeros). Returns (y, x_last, {k: x_k}) with the states
    after step k for each k in return_states_at. on_state(k, x_k), if given, sees every state (read only):
    calibration uses it to find ranges without storing (N, L, H, P) states.
    """
    N, L, H = u.shape
    x = np.zeros((N,) + Abar.shape, dtype=np.complex128) if x0 is None else np.array(x0, dtype=np.complex128)
    y = np.empty((N, L, H), dtype=np.float64)
    C2 = 2.0 * C
    wanted = set(int(k) for k in return_states_at)
    states = {}
    for k in range(L):
        x = Abar * x + Bbar * u[:, k, :, None]
        y[:, k] = np.einsum("nhp,hp->nh", x, C2).real
        if k in wanted:
            states[k] = x.copy()
        if on_state is not None:
            on_state(k, x)
    if D is not None:
        y = y + D * u
    return y, x, states
