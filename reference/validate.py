"""Input checks shared by the reference, the model files and the harness: every message says what, where, what to do."""
from __future__ import annotations

import json

import numpy as np


class S4DInputError(ValueError):
    """Bad input to the S4D reference: a parameter, an input sequence, a config or a file."""


def check_finite(name: str, a: np.ndarray) -> None:
    """Raise if `a` holds NaN or Inf, naming the first bad index."""
    a = np.asarray(a)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise S4DInputError(
            f"{name} contains {bad.sum()} non-finite value(s) (NaN or Inf); first at index {idx}: {a[idx]!r}"
        )


def check_shape(name: str, a: np.ndarray, shape: tuple) -> None:
    """Raise unless a.shape == shape (None in `shape` matches any size)."""
    a = np.asarray(a)
    ok = a.ndim == len(shape) and all(want is None or got == want for got, want in zip(a.shape, shape))
    if not ok:
        pretty = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise S4DInputError(f"{name} must have shape {pretty}, got {a.shape}")


def as_input_sequence(u, d_input: int, name: str = "input") -> np.ndarray:
    """Check and convert an input batch to float64 of shape (N, L, d_input).

    Accepts real integer or floating arrays; rejects complex, bool, object, wrong rank or width, NaN/Inf.
    """
    u = np.asarray(u)
    if u.dtype.kind not in "iuf":
        raise S4DInputError(f"{name} must be a real numeric array, got dtype {u.dtype}")
    if u.ndim != 3:
        raise S4DInputError(
            f"{name} must have shape (batch, length, d_input={d_input}), got rank {u.ndim} shape {u.shape}; "
            "add axes with u[None] or u[..., None] for a single sequence"
        )
    if u.shape[2] != d_input:
        raise S4DInputError(f"{name} has d_input={u.shape[2]} in its last axis, the model expects {d_input}")
    if u.shape[0] < 1 or u.shape[1] < 1:
        raise S4DInputError(f"{name} must hold at least one sequence of at least one step, got shape {u.shape}")
    u = u.astype(np.float64)
    check_finite(name, u)
    return u


def json_object(text: str, what: str) -> dict:
    """Parse JSON text that must be one object; S4DInputError naming `what` otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise S4DInputError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise S4DInputError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def check_float64_arrays(params: dict, shapes: dict[str, tuple], what: str) -> dict[str, np.ndarray]:
    """Exactly the names of `shapes`, each float64 of its shape and finite. A missing or extra name is an error
    naming `what` (the model); a bad array, one naming the array (the caller adds the file)."""
    missing = [k for k in shapes if k not in params]
    if missing:
        raise S4DInputError(f"{what}: parameters missing: {missing}")
    extra = sorted(set(params) - set(shapes))
    if extra:
        raise S4DInputError(f"{what}: unexpected parameters {extra}; expected exactly {sorted(shapes)}")
    out = {}
    for name, shape in shapes.items():
        a = np.asarray(params[name])
        if a.dtype != np.float64:
            raise S4DInputError(f"parameter {name} must be float64, got {a.dtype} (store complex values as "
                                "float64 _re/_im pairs)")
        check_shape(f"parameter {name}", a, shape)
        check_finite(f"parameter {name}", a)
        out[name] = a
    return out
