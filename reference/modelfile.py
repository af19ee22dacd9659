"""Float64 model files (SPEC.md section 7): .npz, schema tag, config JSON, float64 parameter arrays; the
discretised-coefficient variant (Abar, Bbar, C per layer; section 7.1) under its own schema tag."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .discrete import DISCRETE_SCHEMA, DiscreteS4DModel, discrete_param_shapes
from .model import S4DModel, param_shapes
from .npzio import DEFAULT_MAX_BYTES, check_entries, check_schema, read_npz, read_str, write_npz
from .validate import S4DInputError

MODEL_SCHEMA = "s4dconf-model-float64/1"
MODEL_ENTRIES = frozenset({"__schema__", "__config__", "__record__"})  # besides the parameter arrays (SPEC.md 7)


def save_model(model: S4DModel, path: str | Path, record: dict | None = None) -> None:
    """Write the model; `record` (JSON-able: how it was made, e.g. the training record) goes in "__record__"."""
    arrays = dict(model.params)
    arrays["__schema__"] = np.array(DISCRETE_SCHEMA if isinstance(model, DiscreteS4DModel) else MODEL_SCHEMA)
    arrays["__config__"] = np.array(model.config.to_json())
    if record is not None:
        arrays["__record__"] = np.array(json.dumps(record, sort_keys=True))
    write_npz(path, arrays)


def load_record(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """The "__record__" of a model file (float64 or fixed-point), {} when it has none."""
    return record_from_arrays(read_npz(path, "model file", max_bytes), path)


def record_from_arrays(arrays: dict, path) -> dict:
    """The record of a model file's arrays ("__record__", or a fixed-point file's "__provenance__"), {} if none."""
    for key in ("__record__", "__provenance__"):
        if key in arrays:
            try:
                record = json.loads(read_str(arrays, key, path, "model file"))
            except (ValueError, RecursionError) as e:  # JSONDecodeError, too many digits, too deep
                raise S4DInputError(f"model file {path}: {key} is not valid JSON: {e}") from None
            if not isinstance(record, dict):
                raise S4DInputError(f"model file {path}: {key} must be a JSON object, got {type(record).__name__}")
            return record
    return {}


def load_model(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> S4DModel:
    """Load and validate a float64 model file, either schema (a DiscreteS4DModel for the discretised-coefficient
    one); every failure names the file and the problem. `max_bytes` caps the arrays' total size (npzio.read_npz)."""
    return model_from_arrays(read_npz(path, "model file", max_bytes), path)


def model_from_arrays(arrays: dict, path) -> S4DModel:
    """The validated S4DModel (or DiscreteS4DModel) of a float64 model file's arrays; `path` names the file."""
    discrete = read_str(arrays, "__schema__", path, "model file") == DISCRETE_SCHEMA
    check_schema(arrays, path, "model file", DISCRETE_SCHEMA if discrete else MODEL_SCHEMA,
                 {"fixed": "a fixed-point model file: give it to a fixed-point backend",
                  "": f"the discretised-coefficient variant {DISCRETE_SCHEMA!r} is read too (SPEC.md 7.1)"})
    check_entries(arrays, MODEL_ENTRIES, path, "model file")
    try:
        cfg = ModelConfig.from_json(read_str(arrays, "__config__", path, "model file"))
    except S4DInputError as e:
        raise S4DInputError(f"model file {path}: {e}") from None
    except (ValueError, RecursionError) as e:  # JSON numbers with too many digits, nesting too deep
        raise S4DInputError(f"model file {path}: config JSON is not readable: {e}") from None
    params = {k: v for k, v in arrays.items() if not k.startswith("__")}
    cls, shapes = (DiscreteS4DModel, discrete_param_shapes) if discrete else (S4DModel, param_shapes)
    missing = [k for k in shapes(cfg) if k not in params]
    if missing:
        raise S4DInputError(f"model file {path} lacks array(s) {missing} required by its config")
    try:
        return cls(cfg, params)
    except S4DInputError as e:
        raise S4DInputError(f"model file {path}: {e}") from None


def params_digest(model: S4DModel) -> str:
    """sha256 over config JSON and every parameter's name, dtype, shape and bytes (independent of zip bytes); a
    discretised-coefficient model's stream starts with its schema tag (SPEC.md 7.1)."""
    h = hashlib.sha256(DISCRETE_SCHEMA.encode() if isinstance(model, DiscreteS4DModel) else b"")
    h.update(model.config.to_json().encode())
    for name in sorted(model.params):
        a = np.ascontiguousarray(model.params[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)  # little-endian bytes on every host (SPEC.md 7)
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
