"""S4D initialisations (SPEC.md section 2.2). Each returns (A, B) of shape (P,) complex for one channel.

    S4D-Lin:  A_n = -1/2 + i pi n,                          B_n = 1
    S4D-Inv:  A_n = -1/2 + i (N/pi) (N/(2n+1) - 1),         B_n = 1,   N = 2P
    S4D-LegS: eigenvalues of the normal part of HiPPO-LegS (N = 2P), the P with Im > 0, ascending Im;
              B = V^* b projected on their eigenvectors (b_n = sqrt(2n+1)),
              each eigenvector's phase pinned so that its first component is real and > 0.
"""
from __future__ import annotations

import numpy as np

from .validate import S4DInputError

INITS = ("legs", "lin", "inv")


def init_s4d_lin(P: int) -> tuple[np.ndarray, np.ndarray]:
    n = np.arange(P)
    return -0.5 + 1j * np.pi * n, np.ones(P, dtype=np.complex128)


def init_s4d_inv(P: int) -> tuple[np.ndarray, np.ndarray]:
    N = 2 * P
    n = np.arange(P)
    return -0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1), np.ones(P, dtype=np.complex128)


def hippo_legs_normal(N: int) -> tuple[np.ndarray, np.ndarray]:
    """The normal part S of HiPPO-LegS (A = S - p p^T) and its input vector b.

    LegS: A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 for n < k; b_n = sqrt(2n+1);
    p_n = sqrt(n + 1/2). S = A + p p^T = -1/2 I + (skew-symmetric).
    """
    q = np.arange(N, dtype=np.float64)
    r = np.sqrt(2 * q + 1)
    A = -np.tril(np.outer(r, r), -1) - np.diag(q + 1)
    p = np.sqrt(q + 0.5)
    return A + np.outer(p, p), r


def init_s4d_legs(P: int) -> tuple[np.ndarray, np.ndarray]:
    S, b = hippo_legs_normal(2 * P)
    # S = -1/2 I + K with K skew-symmetric: the eigenvectors of the Hermitian matrix -iK are exact and orthonormal.
    K = S + 0.5 * np.eye(2 * P)
    w, V = np.linalg.eigh(-1j * K)  # eigenvalues of K are i*w
    keep = np.argsort(w)[P:]  # the P eigenvalues with Im > 0 (they come in conjugate pairs)
    V = V[:, keep]
    # eigh fixes each eigenvector only up to a phase, which LAPACK builds choose differently:
    # pin it (first component real and positive) so B is the same on every platform.
    V = V * np.exp(-1j * np.angle(V[0]))[None, :]
    A = -0.5 + 1j * w[keep]
    B = V.conj().T @ b.astype(np.complex128)
    return A, B


_INIT_FUNCS = {"legs": init_s4d_legs, "lin": init_s4d_lin, "inv": init_s4d_inv}


def init_modes(name: str, P: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) for one channel by initialisation name."""
    try:
        fn = _INIT_FUNCS[name]
    except KeyError:
        raise S4DInputError(f"unknown initialisation {name!r}; known: {', '.join(INITS)}") from None
    return fn(P)
