"""Reproducible, atomic .npz writing and bounded, pickle-free reading, shared by model files and goldens.

numpy's savez does not promise reproducible bytes (member timestamps and order are its own business); here every
member has a fixed timestamp and members are sorted, so the same arrays give the same file (and sha256).

Every write goes through `atomic_write`: a temporary file created exclusively next to the target (never a
predictable name, never through a planted link), renamed into place, removed on any failure.

Reading does not trust the file (SPEC.md sections 7 and 13): the zip directory is read with `zipfile`, every member
is checked (a plain `<name>.npy`, no path separators, no duplicates, stored or deflated, not encrypted) and its
`.npy` header parsed from the first bytes of the member *before* the body is decompressed: the dtype must be plain
numeric or unicode, shape x itemsize must agree with the size the zip directory states, and the sum over the file
must stay within `max_bytes`. The body is then decompressed with a bounded read of exactly that size (CRC checked).
Whatever is wrong - damaged bytes, truncation, a deflate bomb, a header claiming 10^12 elements - the answer is an
S4DInputError naming the file, never another exception and never more memory than the stated bound.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from .validate import S4DInputError

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""Default cap of `read_npz`: the sum of the members' uncompressed sizes (arrays and their .npy headers) in one file,
256 MiB (the paper model's file is 1.3 MB, the largest golden 0.2 MB). Callers that know their schema pass less."""

MAX_MEMBERS = 10_000  # zip directory entries per file (a model with n_layers layers has ~9 n_layers + 5)
MAX_NAME_CHARS = 255  # characters of a member name
MAX_NPY_HEADER = 10_000  # bytes of a .npy header dict (numpy's own default limit)
MAX_NDIM = 32
_PLAIN_KINDS = "biufcU"  # bool, integers, floats, complex, unicode
_CHUNK = 1 << 20
_CD_SIGNATURE = b"PK\x01\x02"  # starts every zip central-directory entry
_FLAG_ENCRYPTED, _FLAG_PATCHED, _FLAG_STRONG_ENCRYPTION = 0x1, 0x20, 0x40

# what zipfile, zlib and numpy's header parser raise on damaged input
_DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, struct.error,
            NotImplementedError, RuntimeError, OverflowError, IndexError, KeyError, TypeError, SyntaxError,
            RecursionError)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask has no read-only form


# ---------------------------------------------------------------- writing


def atomic_write(path: str | Path, write_fn: Callable, what: str = "output file", make_dirs: bool = False) -> Path:
    """Write a file atomically: `write_fn(f)` writes to `f`, a binary file object of a new temporary file in the
    target's folder (created exclusively with a random name, so it never follows a planted link), which then
    replaces `path` with os.replace (a link at `path` itself is replaced, not followed). On any failure the
    temporary file is removed and `path` is untouched. A directory at `path`, a missing folder (unless
    `make_dirs`: then it is created) or an unwritable one raise S4DInputError naming `what` and `path`.
    Returns `path`. A new file gets mode 0666 minus the umask; a replaced file keeps its mode."""
    path = Path(path)
    if path.is_dir():
        raise S4DInputError(f"{what} {path} is a directory; give a file name (e.g. {path / 'out.npz'})")
    folder = path.parent
    if make_dirs:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise S4DInputError(f"{what} {path}: cannot create its folder {folder} ({e.strerror or e}); "
                                "choose another path") from None
    if not folder.is_dir():
        raise S4DInputError(f"{what} {path}: folder {folder} does not exist (or is not a folder); create it or "
                            "choose another path")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise S4DInputError(f"{what} {path}: cannot create a file in {folder} ({e.strerror or e}); choose a "
                            "writable folder") from None
    try:
        try:
            st = os.lstat(path)
            mode = st.st_mode & 0o777 if stat.S_ISREG(st.st_mode) else 0o666 & ~_UMASK
        except OSError:
            mode = 0o666 & ~_UMASK
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise S4DInputError(f"{what} {path}: writing failed ({e.strerror or e}); nothing was written - check "
                                "the free space and permissions of the folder") from None
        raise
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a link loop
        pass
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(out: str | Path, *inputs, what: str = "output file", make_dirs: bool = True) -> Path:
    """Check before long work starts that `out` can be written by `atomic_write`: refuse (S4DInputError) an output
    that is one of `inputs` (same resolved path or the same file; None entries are skipped), a directory, a folder
    that is missing (when `make_dirs`: one that cannot be created, because the nearest existing ancestor is not a
    writable folder) or not writable. Returns `out` as a Path."""
    out = Path(out)
    for inp in inputs:
        if inp is not None and _same_file(out, Path(inp)):
            raise S4DInputError(f"{what} {out} is the input file {inp}: writing it would replace the input; "
                                "choose another output path")
    if out.is_dir():
        raise S4DInputError(f"{what} {out} is a directory; give a file name (e.g. {out / 'out.npz'})")
    folder = out.parent
    if not folder.is_dir():
        if not make_dirs:
            raise S4DInputError(f"{what} {out}: folder {folder} does not exist; create it or choose another path")
        ancestor = folder
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise S4DInputError(f"{what} {out}: folder {folder} cannot be created, {ancestor} is not a folder; "
                                "choose another path")
        folder = ancestor
    if not os.access(folder, os.W_OK | os.X_OK):
        raise S4DInputError(f"{what} {out}: folder {folder} is not writable; choose a writable folder")
    return out


def _check_member_name(name, where: str) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS - 4 or "/" in name or "\\" in name \
            or any(ord(c) < 32 or ord(c) == 127 for c in name) or name in (".", ".."):
        raise S4DInputError(f"{where}: array name {name!r} is not storable: a non-empty name of at most "
                            f"{MAX_NAME_CHARS - 4} characters without path separators or control characters")


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to `path` as a deflated .npz with reproducible bytes, atomically (see `atomic_write`; missing
    folders are created). Object arrays and names `read_npz` would refuse are refused before anything is written."""
    members = []
    for name in sorted(arrays):
        _check_member_name(name, f"output file {path}")
        a = np.asarray(arrays[name])
        if a.dtype.hasobject:
            raise S4DInputError(f"array {name!r} has object dtype; only plain numeric/str arrays are stored")
        if a.dtype.kind not in _PLAIN_KINDS:
            raise S4DInputError(f"array {name!r} has dtype {a.dtype}; only plain numeric/str arrays are stored")
        members.append((name, a))

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, a in members:
                buf = io.BytesIO()
                # not np.ascontiguousarray: it turns 0-d arrays (the string entries) into shape (1,)
                np.lib.format.write_array(buf, a if a.flags.c_contiguous else a.copy(order="C"), allow_pickle=False)
                info = zipfile.ZipInfo(name + ".npy", date_time=_FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())

    atomic_write(path, write, what="output file", make_dirs=True)


# ---------------------------------------------------------------- reading


def max_file_bytes(max_bytes: int) -> int:
    """The largest .npz file accepted for a cap of `max_bytes` uncompressed: the data plus zip overhead (headers of
    up to MAX_MEMBERS members, deflate's worst-case expansion, a comment)."""
    return max_bytes + max_bytes // 100 + (8 << 20)


def read_file_bytes(path: str | Path, what: str = "file", max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of an .npz file, refused (S4DInputError) when missing, unreadable or larger than
    `max_file_bytes(max_bytes)`, before it is read into memory."""
    path = Path(path)
    if not path.is_file():
        raise S4DInputError(f"{what} not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    limit = max_file_bytes(max_bytes)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise S4DInputError(f"{what} {path} is {size} bytes, more than the {limit} accepted for at most "
                                    f"{max_bytes} bytes of arrays; it is not an s4dconf file, or give a larger "
                                    "max_bytes")
            data = f.read(size + 1)  # not f.read(limit + 1): that allocates the limit up front
    except OSError as e:
        raise S4DInputError(f"{what} {path} cannot be read ({e.strerror or e}); check its permissions") from None
    if len(data) > size:
        raise S4DInputError(f"{what} {path} grew while it was read; read it again when it is complete")
    return data


TEXT_MAX_BYTES = 16 * 2**20  # JSON/TOML inputs (claims, accuracy tables, manifests, sweeps): far above any real one
# a fresh `tox -e bench` run keeps every round's timing (stats.data): 18 MB measured for the full set; a reader
# holds the file once as bytes and once parsed, so the cap stays well below the 64 MiB a read may peak at
BENCH_MAX_BYTES = 48 * 2**20


def read_text_file(path: str | Path, what: str = "file", max_bytes: int = TEXT_MAX_BYTES) -> str:
    """A UTF-8 text file (JSON, TOML), refused before it is read when larger than `max_bytes`; a missing,
    unreadable or non-UTF-8 file is an S4DInputError naming `what` and the path."""
    path = Path(path)
    if not path.is_file():
        raise S4DInputError(f"{what} not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise S4DInputError(f"{what} {path} is {size} bytes, more than the {max_bytes} accepted for a text "
                                "input; it is not the file you meant")
        with open(path, "rb") as f:  # read(n) allocates n bytes up front: bound it by the size, not the cap
            data = f.read(min(size, max_bytes) + 1)
    except OSError as e:
        raise S4DInputError(f"{what} {path} cannot be read ({e.strerror or e}); check its permissions") from None
    if len(data) > max_bytes or len(data) > size:
        raise S4DInputError(f"{what} {path} grew while it was read ({size} bytes before); read it again when it is "
                            "complete")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise S4DInputError(f"{what} {path} is not UTF-8 text ({e})") from None


def read_npz(path: str | Path, what: str = "file", max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """Read every array of an .npz without pickle and within `max_bytes` (the sum of the members' uncompressed
    sizes); S4DInputError naming the file for anything missing, unreadable, damaged or too large."""
    return read_npz_bytes(read_file_bytes(path, what, max_bytes), Path(path), what, max_bytes)


def read_npz_bytes(data: bytes, path, what: str = "file",
                   max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """read_npz of a file's bytes already in memory (so that one read serves its hash and its arrays); `path`
    names it in errors."""
    buf = io.BytesIO(data)
    try:
        # np.load takes any non-zip file for a .npy or a pickle: refuse it here, with the right reason
        if not zipfile.is_zipfile(buf):
            raise S4DInputError(f"{what} {path} is not a .npz archive (not a zip file)")
        # zipfile makes one object per directory entry, each starting with the signature: bound them first
        if data.count(_CD_SIGNATURE) > MAX_MEMBERS:
            raise S4DInputError(f"{what} {path} has more than {MAX_MEMBERS} zip directory entries; it is not an "
                                "s4dconf file")
        buf.seek(0)
        with zipfile.ZipFile(buf) as zf:
            infos = zf.infolist()
            listed = _end_record_count(data)
            if listed is not None and listed != len(infos):  # a damaged entry swallowed others (or the count)
                raise S4DInputError(f"{what} {path}: its zip directory holds {len(infos)} readable entries, its end "
                                    f"record lists {listed}; the file is damaged - replace it")
            keys = _check_directory(infos, path, what, max_bytes)
            return {key: _read_member(zf, info, key, path, what) for key, info in zip(keys, infos)}
    except S4DInputError:
        raise
    except _DAMAGED as e:
        raise S4DInputError(f"{what} {path} is not a readable .npz archive (damaged or truncated: "
                            f"{type(e).__name__}: {e}); replace it") from None


def _end_record_count(data: bytes) -> int | None:
    """The number of entries the zip end record states, found where zipfile finds it (the record at the very end,
    else the last signature in the final 64 KiB + 22 bytes; the zip64 record when its locator precedes it)."""
    n = len(data)
    if n >= 22 and data[n - 22:n - 18] == b"PK\x05\x06" and data[-2:] == b"\0\0":
        start = n - 22
    else:
        start = data.rfind(b"PK\x05\x06", max(n - (1 << 16) - 22, 0))
        if start < 0 or start + 22 > n:
            return None
    count = int.from_bytes(data[start + 10:start + 12], "little")
    loc = start - 20
    if loc >= 56 and data[loc:loc + 4] == b"PK\x06\x07" and data[loc - 56:loc - 52] == b"PK\x06\x06":
        count = int.from_bytes(data[loc - 24:loc - 16], "little")  # the zip64 record's total entry count
    return count


def _check_directory(infos: list, path, what: str, max_bytes: int) -> list[str]:
    """The array names of the members, after checking names, methods, flags and the total size."""
    keys, seen, total = [], set(), 0
    for info in infos:
        name = info.filename
        where = f"{what} {path}: member {name!r}"
        if not name.endswith(".npy"):
            raise S4DInputError(f"{where} is not a .npy array (an .npz holds only <name>.npy members)")
        key = name[:-4]
        raw = info.orig_filename
        if not key or len(name) > MAX_NAME_CHARS or "/" in raw or "\\" in raw or key in (".", "..") \
                or any(ord(c) < 32 or ord(c) == 127 for c in raw):
            raise S4DInputError(f"{where} is not a plain <name>.npy (empty, too long, a path or control "
                                "characters); the file is damaged or not an s4dconf file")
        if key in seen:
            raise S4DInputError(f"{where} appears twice; the file is damaged or not an s4dconf file")
        seen.add(key)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise S4DInputError(f"{where} uses zip compression method {info.compress_type}; only stored (0) and "
                                "deflated (8) members are read - rewrite the file with numpy.savez or s4dconf")
        if info.flag_bits & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION | _FLAG_PATCHED):
            raise S4DInputError(f"{where} is encrypted or patched (zip flags 0x{info.flag_bits:04x}); only plain "
                                "members are read - rewrite the file without encryption")
        total += info.file_size
        if total > max_bytes:
            raise S4DInputError(f"{what} {path}: its members hold more than {max_bytes} bytes uncompressed (by the "
                                f"zip directory, at member {name!r}); it is not a file of this kind, or damaged")
        keys.append(key)
    return keys


def _read_exact(f, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path, what: str) -> np.ndarray:
    where = f"{what} {path}: array {key!r}"
    with zf.open(info) as f:
        head = _read_exact(f, 10)
        if len(head) < 10 or head[:6] != b"\x93NUMPY":
            raise S4DInputError(f"{where} is not a .npy array (no .npy magic); the file is damaged")
        version = (head[6], head[7])
        if version == (1, 0):
            hlen, parse = int.from_bytes(head[8:10], "little"), np.lib.format.read_array_header_1_0
        elif version == (2, 0):
            head += _read_exact(f, 2)
            hlen, parse = int.from_bytes(head[8:12], "little"), np.lib.format.read_array_header_2_0
        else:
            raise S4DInputError(f"{where}: .npy format version {version[0]}.{version[1]} is not read (1.0 and 2.0 "
                                "are); rewrite the file with numpy.savez or s4dconf")
        if hlen > MAX_NPY_HEADER:
            raise S4DInputError(f"{where}: .npy header of {hlen} bytes, more than {MAX_NPY_HEADER}; the file is "
                                "damaged")
        header = head + _read_exact(f, hlen)
        if len(header) < len(head) + hlen:
            raise S4DInputError(f"{where}: the .npy header is truncated; the file is damaged")
        hdr = io.BytesIO(header)
        try:
            np.lib.format.read_magic(hdr)
            shape, fortran, dtype = parse(hdr, max_header_size=MAX_NPY_HEADER)
        except Exception as e:  # noqa: BLE001 - a pure parse of at most MAX_NPY_HEADER untrusted bytes: numpy
            # raises ValueError mostly, but its Python-2 header filter lets tokenize.TokenError and others through
            raise S4DInputError(f"{where} is not a readable .npy member (bad header: {e}); the file is "
                                "damaged") from None
        if dtype.hasobject:
            raise S4DInputError(f"{where} holds data that needs pickle, which is refused: dtype {dtype}")
        if dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise S4DInputError(f"{where} has dtype {dtype}; only plain numeric and unicode arrays are read")
        if len(shape) > MAX_NDIM or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
            raise S4DInputError(f"{where} has an invalid shape {shape}; the file is damaged")
        nbytes = math.prod(shape) * dtype.itemsize
        if len(header) + nbytes != info.file_size:
            raise S4DInputError(f"{where}: its .npy header (shape {shape}, dtype {dtype}) needs "
                                f"{len(header) + nbytes} bytes, the zip directory says {info.file_size}; the file "
                                "is damaged")
        a = np.empty(shape[::-1] if fortran else shape, dtype)
        if nbytes:
            view = memoryview(a.reshape(-1).view(np.uint8))
            pos = 0
            while pos < nbytes:
                chunk = f.read(min(_CHUNK, nbytes - pos))
                if not chunk:
                    raise S4DInputError(f"{where}: data ends after {pos} of {nbytes} bytes; the file is truncated "
                                        "or damaged")
                view[pos:pos + len(chunk)] = chunk
                pos += len(chunk)
        if f.read(1):  # cannot happen (the size was checked); reaching the end verifies the CRC
            raise S4DInputError(f"{where}: data beyond its stated size; the file is damaged")
    return a.T if fortran else a


def read_str(arrays: dict, key: str, path, what: str) -> str:
    """A 0-d string entry of an .npz (schema tags, JSON)."""
    if key not in arrays:
        raise S4DInputError(f"{what} {path} has no {key!r} entry; is it an s4dconf file?")
    a = arrays[key]
    if a.dtype.kind != "U" or a.ndim != 0:
        raise S4DInputError(f"{what} {path}: entry {key!r} must be a string, got dtype {a.dtype} shape {a.shape}")
    try:
        return str(a)
    except (ValueError, UnicodeError) as e:  # code points outside Unicode
        raise S4DInputError(f"{what} {path}: entry {key!r} is not valid text ({e}); the file is damaged") from None


def check_schema(arrays: dict, path, what: str, expected: str, hints: dict[str, str] | None = None) -> None:
    """The file's "__schema__" tag must be `expected`; the error names the file and both tags, plus the hint of
    `hints` (schema substring -> advice) that matches the tag found."""
    schema = read_str(arrays, "__schema__", path, what)
    if schema != expected:
        hint = next((f" ({h})" for sub, h in (hints or {}).items() if sub in schema), "")
        raise S4DInputError(f"model file {path} has schema {schema!r}, this reader needs {expected!r}{hint}")


def check_entries(arrays: dict, allowed: set[str] | frozenset[str], path, what: str) -> None:
    """Refuse "__...__" entries other than `allowed` (the parameter arrays are checked against the config)."""
    extra = sorted(k for k in arrays if k.startswith("__") and k not in allowed)
    if extra:
        raise S4DInputError(f"{what} {path} has unexpected entr{'y' if len(extra) == 1 else 'ies'} {extra}; this "
                            f"schema defines {sorted(allowed)} besides the parameter arrays - the file is not a "
                            "valid s4dconf file")


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 4 MiB chunks (model files, goldens, dataset archives of any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
