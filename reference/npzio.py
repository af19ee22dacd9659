"""Reproducible .npz writing and pickle-free reading, shared by model files and goldens.

numpy's savez does not promise reproducible bytes (member timestamps and order are its own business); here every
member has a fixed timestamp and members are sorted, so the same arrays give the same file (and sha256).
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from .validate import S4DInputError

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to `path` as a deflated .npz with reproducible bytes. Object arrays are refused."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            a = np.asarray(arrays[name])
            if a.dtype.hasobject:
                raise S4DInputError(f"array {name!r} has object dtype; only plain numeric/str arrays are stored")
            buf = io.BytesIO()
            # not np.ascontiguousarray: it turns 0-d arrays (the string entries) into shape (1,)
            np.lib.format.write_array(buf, a if a.flags.c_contiguous else a.copy(order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    tmp.replace(path)


def read_npz(path: str | Path, what: str = "file") -> dict[str, np.ndarray]:
    """Read every array of an .npz without pickle; a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise S4DInputError(f"{what} not found: {path}")
    return read_npz_bytes(path.read_bytes(), path, what)


def read_npz_bytes(data: bytes, path, what: str = "file") -> dict[str, np.ndarray]:
    """read_npz of a file's bytes already in memory (so that one read serves its hash and its arrays); `path`
    names it in errors."""
    buf = io.BytesIO(data)
    # np.load takes any non-zip file for a .npy or a pickle: refuse it here, with the right reason
    if not zipfile.is_zipfile(buf):
        raise S4DInputError(f"{what} {path} is not a .npz archive (not a zip file)")
    buf.seek(0)
    try:
        with np.load(buf, allow_pickle=False) as data:
            out = {}
            for k in data.files:
                try:
                    a = data[k]
                except ValueError as e:
                    if "pickle" in str(e):  # numpy's refusal of object arrays when allow_pickle=False
                        raise S4DInputError(
                            f"{what} {path}: array {k!r} holds data that needs pickle, which is refused: {e}"
                        ) from None
                    raise S4DInputError(f"{what} {path}: array {k!r} is not a readable .npy member: {e}") from None
                if not isinstance(a, np.ndarray):  # a zip member that is not a .npy file comes back as bytes
                    raise S4DInputError(f"{what} {path}: member {k!r} is not a .npy array")
                out[k] = a
            return out
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise S4DInputError(f"{what} {path} is not a readable .npz archive: {e}") from None


def read_str(arrays: dict, key: str, path, what: str) -> str:
    """A 0-d string entry of an .npz (schema tags, JSON)."""
    if key not in arrays:
        raise S4DInputError(f"{what} {path} has no {key!r} entry; is it an s4dconf file?")
    a = arrays[key]
    if a.dtype.kind != "U" or a.ndim != 0:
        raise S4DInputError(f"{what} {path}: entry {key!r} must be a string, got dtype {a.dtype} shape {a.shape}")
    return str(a)


def check_schema(arrays: dict, path, what: str, expected: str, hints: dict[str, str] | None = None) -> None:
    """The file's "__schema__" tag must be `expected`; the error names the file and both tags, plus the hint of
    `hints` (schema substring -> advice) that matches the tag found."""
    schema = read_str(arrays, "__schema__", path, what)
    if schema != expected:
        hint = next((f" ({h})" for sub, h in (hints or {}).items() if sub in schema), "")
        raise S4DInputError(f"model file {path} has schema {schema!r}, this reader needs {expected!r}{hint}")


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 4 MiB chunks (model files, goldens, dataset archives of any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
