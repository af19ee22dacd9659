"""Reading the raw dataset files (the formats of `training/datasets.py`'s module docstring): MNIST idx files (plain
or gzip), CIFAR-10's binary batches, image trees and tar archives of them, and the decoded-image cache. Every problem
raises S4DInputError naming the file and what to do; a dataset found nowhere raises DatasetNotFound."""
from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import hashlib
import io
import logging
import lzma
import math
import os
import struct
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from s4dconf.reference.npzio import atomic_write, read_npz, sha256_file
from s4dconf.reference.validate import S4DInputError

N_CLASSES = 10
ENV_VAR = "S4DCONF_DATA"
log = logging.getLogger(__name__)

SPLITS = ("train", "test")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions

IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

IDX_MAX_ITEMS = 70_000  # all of MNIST (60,000 train + 10,000 test) in one file: the most an idx header may claim

MNIST_SIDE = 28

CIFAR_SIDE = 32

CIFAR_RECORD_BYTES = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE  # label byte + R, G, B planes

_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

_CIFAR_BIN_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}

_IMAGE_SUFFIXES = {".png": False, ".jpg": True, ".jpeg": True}  # suffix -> lossy

CACHE_ENV_VAR = "S4DCONF_CACHE"

_CACHE_VERSION = 1

_HOW_TO = {
    "mnist": "<data dir>/mnist/ (or <data dir> itself) holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
             "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each plain or .gz",
    "cifar10": "<data dir>/cifar10/ holding cifar-10-batches-bin/ (data_batch_1..5.bin, test_batch.bin of the "
               "CIFAR-10 binary version), or an image tree train/<class>/*.png|jpg and test/<class>/*.png|jpg "
               f"with <class> in {', '.join(CIFAR10_CLASSES)}, or a .tar.gz of that tree",
}



class DatasetNotFound(S4DInputError):
    """The dataset's files are in none of the places looked in (``looked_in``, in order)."""

    def __init__(self, message: str, looked_in):
        super().__init__(message)
        self.looked_in = tuple(looked_in)



def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



def _place(p: Path) -> str:
    return str(p) if p.exists() else f"{p} (does not exist)"



def not_found(what: str, looked: list[Path], layout: str, extra: str = "") -> DatasetNotFound:
    places = "\n  ".join(_place(p) for p in looked)
    return DatasetNotFound(
        f"{what} not found. Looked in:\n  {places}\n{extra}Provide it: set {ENV_VAR}=<data dir> or pass "
        f"--data-dir <data dir> (data_dir= in Python), with {layout}. Nothing is downloaded.", looked)



def check_labels(y: np.ndarray, where) -> None:
    if y.size and int(y.max()) >= N_CLASSES:
        i = int(np.argmax(y >= N_CLASSES))
        raise S4DInputError(f"{where}: label {int(y[i])} at index {i} is out of range 0..{N_CLASSES - 1}; "
                            "the file is corrupt or not a 10-class dataset - replace it")



def _read_idx_bytes(path: Path, magic: int, header_only: bool = False) -> bytes:
    """The uncompressed bytes of an idx file (plain, or gzip when the name ends in .gz or the bytes start with the
    gzip magic); with header_only, its header alone (nothing past it is read or decompressed). The header is read
    first and checked (_idx_dims); no more than it needs plus one byte is read (decompressed), and a header claiming
    more than IDX_MAX_ITEMS items is refused before anything else is read - a damaged count or a gzip bomb never
    costs more memory than the largest MNIST file. The length is left to _parse_idx."""
    header = 4 + 4 * (magic & 0xFF)
    gz = path.suffix == ".gz"
    try:
        with open(path, "rb") as f:
            gz = gz or f.read(2) == b"\x1f\x8b"
            f.seek(0)
            stream = gzip.GzipFile(fileobj=f, mode="rb") if gz else f
            try:
                data = _read_up_to(stream, header)
                dims = _idx_dims(data, magic, path)
                n_bytes = math.prod(dims)
                most = IDX_MAX_ITEMS * (MNIST_SIDE * MNIST_SIDE if len(dims) == 3 else 1)
                if dims[0] > IDX_MAX_ITEMS or n_bytes > most:
                    raise S4DInputError(
                        f"{path}: its idx header claims dims {dims} ({n_bytes} bytes), more than any MNIST file "
                        f"holds (at most {IDX_MAX_ITEMS} items, {most} bytes); the file is corrupt or not an MNIST "
                        "file - replace it")
                if header_only:
                    return data
                return data + _read_up_to(stream, n_bytes + 1)  # + 1: trailing bytes are seen
            finally:
                if gz:
                    stream.close()
    except (OSError, EOFError, zlib.error) as e:
        if not gz:
            raise S4DInputError(f"{path}: cannot be read ({type(e).__name__}: {e}); check the file and its "
                                "permissions") from e
        raise S4DInputError(f"{path}: not a valid gzip file ({type(e).__name__}: {e}); it is corrupt or truncated - "
                            "replace it (an uncompressed copy without the .gz suffix also works)") from e


def _read_up_to(f, n: int) -> bytes:
    """Up to n bytes of a stream (fewer only at its end)."""
    parts, left = [], n
    while left > 0:
        chunk = f.read(min(left, 1 << 22))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)



def _idx_dims(data: bytes, magic: int, path: Path) -> tuple[int, ...]:
    """The dims of an idx header: big-endian uint32 magic (0x0000 08 ndim), then ndim uint32 dims."""
    kind = {IDX_IMAGES_MAGIC: "images (idx3)", IDX_LABELS_MAGIC: "labels (idx1)"}[magic]
    header = 4 + 4 * (magic & 0xFF)
    if len(data) >= 4 and int.from_bytes(data[:4], "big") != magic:
        got = int.from_bytes(data[:4], "big")
        hint = " (that is an idx labels file: images and labels swapped?)" if got == IDX_LABELS_MAGIC else \
            " (that is an idx images file: images and labels swapped?)" if got == IDX_IMAGES_MAGIC else ""
        raise S4DInputError(f"{path}: wrong magic number {got} (0x{got:08x}){hint}; an MNIST {kind} file starts "
                            f"with {magic} (0x{magic:08x}, big-endian) - check the file name and content")
    if len(data) < header:
        raise S4DInputError(f"{path}: {len(data)} bytes, too short for an idx {kind} header ({header} bytes); the "
                            "file is truncated - replace it")
    return tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(magic & 0xFF))


def _check_idx_length(n_bytes: int, dims: tuple[int, ...], magic: int, path: Path) -> None:
    expected = 4 + 4 * (magic & 0xFF) + math.prod(dims)
    if n_bytes != expected:
        raise S4DInputError(f"{path}: {n_bytes} bytes (uncompressed) but its header (dims {dims}) needs "
                            f"{expected}; the file is truncated or has trailing bytes - replace it")


def _parse_idx(data: bytes, magic: int, path: Path) -> np.ndarray:
    """uint8 array of an idx file: its header (_idx_dims), then the bytes."""
    dims = _idx_dims(data, magic, path)
    _check_idx_length(len(data), dims, magic, path)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)



def _find_mnist(split: str, dirs: list[Path]) -> tuple[Path, Path]:
    looked = []
    for d in dirs:
        for folder in (d / "mnist", d):
            looked.append(folder)
            found = [next((p for p in (folder / n, folder / f"{n}.gz") if p.is_file()), None)
                     for n in _MNIST_FILES[split]]
            if all(found):
                return found[0], found[1]
    names = " and ".join(f"{n}[.gz]" for n in _MNIST_FILES[split])
    raise not_found(f"MNIST {split} split ({names})", looked, _HOW_TO["mnist"])



def load_mnist_arrays(split: str, dirs: list[Path]):
    img_path, lab_path = _find_mnist(split, dirs)
    img_bytes, lab_bytes = _read_idx_bytes(img_path, IDX_IMAGES_MAGIC), _read_idx_bytes(lab_path, IDX_LABELS_MAGIC)
    images = _parse_idx(img_bytes, IDX_IMAGES_MAGIC, img_path)
    labels = _parse_idx(lab_bytes, IDX_LABELS_MAGIC, lab_path)
    _check_mnist_shapes(images.shape, labels.shape, img_path, lab_path)
    check_labels(labels, lab_path)
    meta = {**_mnist_meta(img_path, lab_path),
            # of the uncompressed bytes, comparable with the official files whatever the compression
            "sha256": {img_path.name.removesuffix(".gz"): sha256_bytes(img_bytes),
                       lab_path.name.removesuffix(".gz"): sha256_bytes(lab_bytes)}}
    # .copy(): an owned, writable array instead of a read-only view of the decompressed bytes
    return images.reshape(len(images), MNIST_SIDE * MNIST_SIDE, 1).copy(), labels.astype(np.int64), meta



def survey_mnist(split: str, dirs: list[Path]) -> tuple[int, dict]:
    """(number of images, meta) of an MNIST split from the two idx headers alone (for `s4dconf data list`): the
    checks of load_mnist_arrays that the headers allow (magic, dims, image and label counts; a plain file's size),
    nothing past a header is read or decompressed. Labels in range and a compressed file's length are checked by
    the full read."""
    img_path, lab_path = _find_mnist(split, dirs)
    shapes = []
    for path, magic in ((img_path, IDX_IMAGES_MAGIC), (lab_path, IDX_LABELS_MAGIC)):
        dims = _idx_dims(_read_idx_bytes(path, magic, header_only=True), magic, path)
        if not (path.suffix == ".gz" or _is_gzip(path)):  # a plain file's size is its length
            _check_idx_length(path.stat().st_size, dims, magic, path)
        shapes.append(dims)
    _check_mnist_shapes(shapes[0], shapes[1], img_path, lab_path)
    return shapes[0][0], _mnist_meta(img_path, lab_path)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _check_mnist_shapes(images: tuple, labels: tuple, img_path: Path, lab_path: Path) -> None:
    if tuple(images[1:]) != (MNIST_SIDE, MNIST_SIDE):
        raise S4DInputError(f"{img_path}: images are {images[1]}x{images[2]}, MNIST's are {MNIST_SIDE}x{MNIST_SIDE}")
    if images[0] != labels[0]:
        raise S4DInputError(f"{img_path} holds {images[0]} images but {lab_path} holds {labels[0]} labels; "
                            "the two files must belong to the same split - replace the wrong one")


def _mnist_meta(img_path: Path, lab_path: Path) -> dict:
    return {"format": "idx", "source": str(img_path.parent), "files": [img_path.name, lab_path.name], "lossy": False}



def load_cifar_rgb_arrays(split: str, dirs: list[Path]):
    """x uint8 (N, 1024, 3), y, meta from the first CIFAR-10 source found (see the module docstring)."""
    kind, path = _find_cifar(split, dirs)
    return {"bin": _load_cifar_bin, "tree": _load_image_tree, "tar": _load_image_tar}[kind](path, split)


def survey_cifar(split: str, dirs: list[Path]) -> tuple[int, dict]:
    """(number of images, meta) of a CIFAR-10 split from file names and sizes alone (for `s4dconf data list`):
    binary batches by their size (fixed 3073-byte records), an image tree by its file names, an archive by its
    member headers. Nothing is decoded, cached or written; the pixels' checks are left to the full read."""
    kind, path = _find_cifar(split, dirs)
    if kind == "bin":
        sizes = {p: p.stat().st_size for p in _cifar_bin_paths(path, split)}
        for p, n_bytes in sizes.items():
            _check_cifar_bin_size(n_bytes, p)
        return sum(sizes.values()) // CIFAR_RECORD_BYTES, {"format": "cifar10-bin", "source": str(path),
                                                           "files": [p.name for p in sizes], "lossy": False}
    if kind == "tree":
        files = _tree_files(path, split)
        if not files:
            raise _no_images(path / split, split)
        n, n_jpeg, fmt = len(files), sum(_IMAGE_SUFFIXES[p.suffix.lower()] for _, p in files), "image-tree"
    else:
        st = path.stat()
        counts = _survey_tar(str(path), st.st_size, st.st_mtime_ns)
        if split not in counts:
            raise _no_images(path, split)
        (n, n_jpeg), fmt = counts[split], "image-tar"
    meta = {"format": fmt, "source": str(path), "lossy": n_jpeg > 0, "n_jpeg": n_jpeg}
    return n, meta


def _find_cifar(split: str, dirs: list[Path]) -> tuple[str, Path]:
    """The first CIFAR-10 source found, in the module docstring's order: ("bin", cifar-10-batches-bin folder),
    ("tree", image tree root) or ("tar", archive); DatasetNotFound listing every place looked in otherwise."""
    looked, python_version = [], []
    for d in dirs:
        folder = d / "cifar10"
        for f in (folder, d):
            looked.append(f)
            if (f / "cifar-10-batches-bin").is_dir():
                return "bin", f / "cifar-10-batches-bin"
            if (f / "cifar-10-batches-py").is_dir():
                python_version.append(f / "cifar-10-batches-py")
        root = _image_tree_root(folder)
        if root is not None:
            return "tree", root
        tars = sorted(folder.glob("*.tar.gz")) + sorted(folder.glob("*.tgz")) if folder.is_dir() else []
        if tars:
            return "tar", tars[0]
    extra = "".join(f"Found {p}, the CIFAR-10 python version: not supported, because its batches are pickles of "
                    "numpy arrays and unpickling them can run arbitrary code; use the binary version "
                    "(cifar-10-binary.tar.gz, which unpacks to cifar-10-batches-bin/) or an image tree.\n"
                    for p in python_version)
    raise not_found(f"CIFAR-10 ({split} split)", looked, _HOW_TO["cifar10"], extra)



def _cifar_bin_paths(folder: Path, split: str) -> list[Path]:
    paths = [folder / n for n in _CIFAR_BIN_FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise S4DInputError(f"{folder}: missing {', '.join(missing)} of the CIFAR-10 binary version "
                            f"({split} needs {', '.join(_CIFAR_BIN_FILES[split])}); restore the missing files")
    return paths


def _check_cifar_bin_size(n_bytes: int, p: Path) -> None:
    if n_bytes == 0 or n_bytes % CIFAR_RECORD_BYTES:
        raise S4DInputError(f"{p}: {n_bytes} bytes is not a positive multiple of {CIFAR_RECORD_BYTES} "
                            f"(1 label byte + 3072 pixel bytes per image); truncated, or not the CIFAR-10 binary "
                            "version (CIFAR-100 records are 3074 bytes) - replace it")


def _load_cifar_bin(folder: Path, split: str):
    xs, ys, digests = [], [], {}
    for p in _cifar_bin_paths(folder, split):
        raw = p.read_bytes()
        _check_cifar_bin_size(len(raw), p)
        rec = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR_RECORD_BYTES)
        check_labels(rec[:, 0], p)
        # each record stores the R, G, B planes one after the other, each row-major 32x32
        xs.append(rec[:, 1:].reshape(-1, 3, CIFAR_SIDE * CIFAR_SIDE).transpose(0, 2, 1))
        ys.append(rec[:, 0].astype(np.int64))
        digests[p.name] = sha256_bytes(raw)
    meta = {"format": "cifar10-bin", "source": str(folder), "files": list(digests), "lossy": False,
            "sha256": digests}
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys), meta



def _image_tree_root(folder: Path) -> Path | None:
    """`folder` or its first subfolder (sorted) that holds {train,test}/<class>/, else None."""
    if not folder.is_dir():
        return None
    for root in (folder, *sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))):
        if any((root / s / c).is_dir() for s in SPLITS for c in CIFAR10_CLASSES):
            return root
    return None



def _tree_key(parts: tuple[str, ...], where) -> tuple[str, int] | None:
    """(split, class index) of an image path [top/]split/class/file, None for files that are not tree images."""
    if len(parts) not in (3, 4) or parts[-3] not in SPLITS or PurePosixPath(parts[-1]).suffix.lower() \
            not in _IMAGE_SUFFIXES:
        return None
    return parts[-3], _class_index(parts[-2], f"{where}: {'/'.join(parts[:-1])}")



def _class_index(folder_name: str, where) -> int:
    if folder_name not in CIFAR10_CLASSES:
        raise S4DInputError(f"{where}: unknown class folder {folder_name!r}; class folders must be named "
                            f"{', '.join(CIFAR10_CLASSES)}")
    return CIFAR10_CLASSES.index(folder_name)



def _decode_image(src, where) -> np.ndarray:
    """uint8 (32, 32, 3) RGB of an image file or file object."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:
        raise S4DInputError("reading CIFAR-10 image files needs Pillow: pip install pillow") from e
    try:
        with Image.open(src) as im:
            # the size comes from the header: checked before decoding, so a huge image costs no memory
            if im.size != (CIFAR_SIDE, CIFAR_SIDE):
                raise S4DInputError(f"{where}: image is {im.size[0]}x{im.size[1]}, CIFAR-10 images are 32x32")
            a = np.asarray(im.convert("RGB"), np.uint8)
    except S4DInputError:
        raise
    # what Pillow raises on damaged files: its own errors, OSError (truncated, decoder errors), and the parsing
    # errors of its plugins (SyntaxError "broken PNG file", struct.error, EOFError, ...)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, EOFError, SyntaxError,
            struct.error, IndexError, TypeError, KeyError, zlib.error) as e:
        raise S4DInputError(f"{where}: cannot decode the image ({type(e).__name__}: {e}); replace or remove the "
                            "file") from e
    return a



def _no_images(where, split: str) -> S4DInputError:
    return S4DInputError(f"{where}: no {split} images ([top folder/]{split}/<class>/*.png|jpg); add them, or use "
                         "a source that holds the full image tree")


def _stack(items: list, where, split: str):
    """items (class index, file name, is_jpeg, image) -> x (N, 1024, 3), y, number of JPEGs; class, name order."""
    if not items:
        raise _no_images(where, split)
    items.sort(key=lambda t: (t[0], t[1]))
    x = np.stack([t[3] for t in items]).reshape(len(items), CIFAR_SIDE * CIFAR_SIDE, 3)
    return x, np.array([t[0] for t in items], np.int64), sum(t[2] for t in items)



def _tree_meta(fmt: str, source, n_jpeg: int, cache: Path, hit: bool, **extra) -> dict:
    meta = {"format": fmt, "source": str(source), "lossy": n_jpeg > 0, "n_jpeg": n_jpeg, "cache": str(cache),
            "cache_hit": hit, "order": "class by class, file name within a class (not the original order)", **extra}
    if n_jpeg:
        meta["lossy_note"] = ("JPEG source: pixels differ from the original CIFAR-10; accuracies are not "
                              "bit-comparable with published sCIFAR numbers, and a report must say so")
    return meta



def _tree_files(root: Path, split: str) -> list[tuple[int, Path]]:
    """(class index, path) of every image file of an image tree's split, in class, name order."""
    folder = root / split
    if not folder.is_dir():
        raise S4DInputError(f"image tree {root} has no {split}/ folder; expected {split}/<class>/*.png|jpg")
    files = []
    for sub in sorted(folder.iterdir()):
        if sub.is_dir():
            c = _class_index(sub.name, sub)
            files += [(c, p) for p in sorted(sub.iterdir())
                      if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()]
    return files


def _load_image_tree(root: Path, split: str):
    folder = root / split
    files = _tree_files(root, split)
    # the cache key sees every file's path, size and mtime: an edited tree is decoded again
    h = hashlib.sha256(f"v{_CACHE_VERSION} {root.resolve()} {split}".encode())
    for _, p in files:
        st = p.stat()
        h.update(f"\n{p.relative_to(root)}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    key = h.hexdigest()
    cache = cache_dir() / f"cifar10-tree-{key[:16]}-{split}.npz"
    hit = _read_cache(cache, key)
    if hit is None:
        log.info("decoding %d CIFAR-10 %s images under %s once; cache: %s", len(files), split, folder, cache)
        items = [(c, p.name, _IMAGE_SUFFIXES[p.suffix.lower()], _decode_image(p, p)) for c, p in files]
        x, y, n_jpeg = _stack(items, folder, split)
        _write_cache(cache, key, x, y, n_jpeg)
    else:
        x, y, n_jpeg = hit
    return x, y, _tree_meta("image-tree", root, n_jpeg, cache, hit is not None)



def _check_member(m: tarfile.TarInfo, parts: tuple[str, ...], tar_path: Path) -> None:
    """Refuse absolute paths, '..' and anything but regular files and folders (links, devices); parts: the parts
    of PurePosixPath(m.name)."""
    if m.name.startswith(("/", "\\")) or ".." in parts:
        raise S4DInputError(f"{tar_path}: refusing the archive: member {m.name!r} has an absolute path or a '..' "
                            "component; an image-tree archive holds only relative paths like train/cat/0001.jpg")
    if not (m.isfile() or m.isdir()):
        raise S4DInputError(f"{tar_path}: refusing the archive: member {m.name!r} is a link or special file; an "
                            "image-tree archive holds only folders and image files")



TAR_MAX_MEMBERS = 100_000  # CIFAR-10 as an image tree: 60,000 images and a few folders and notes
TAR_MAX_IMAGE_BYTES = 1 << 20  # one 32x32 image file (a PNG or JPEG of CIFAR-10 is a few kB)
_TAR_MAX_READ = 16 << 20  # the largest single read tarfile may make (headers, pax/long-name records, one image)


class _BoundedReads(io.RawIOBase):
    """A read-only view of a (decompressing) stream that refuses any single read above `limit` bytes: tarfile
    reads a pax or GNU long-name record whole, so a header claiming gigabytes would otherwise be decompressed
    into memory. Seeks pass through (forward seeks of a decompressor stream in bounded chunks)."""

    def __init__(self, raw, limit: int, where):
        super().__init__()
        self._raw, self._limit, self._where = raw, limit, where

    def readable(self):
        return True

    def seekable(self):
        return True

    def read(self, n=-1):
        if n is None or n < 0 or n > self._limit:
            raise S4DInputError(f"{self._where}: refusing the archive: a tar record needs a read of "
                                f"{'all remaining' if n is None or n < 0 else n} bytes, more than the "
                                f"{self._limit} an image-tree archive can need; the archive is corrupt or not an "
                                "image tree - replace it")
        return self._raw.read(n)

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def seek(self, offset, whence=0):
        return self._raw.seek(offset, whence)

    def tell(self):
        return self._raw.tell()


def _open_tar_stream(f):
    """The uncompressed stream of a tar file: gzip, bzip2 and xz are recognised by their magic bytes."""
    magic = f.read(6)
    f.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if magic[:3] == b"BZh":
        return bz2.BZ2File(f)
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(f)
    return f


@contextlib.contextmanager
def _reading_tar(tar_path: Path):
    """Turns what a damaged archive raises (tarfile, gzip/bzip2/xz, I/O) into an S4DInputError naming it."""
    try:
        yield
    except S4DInputError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError, UnicodeError) as e:
        raise S4DInputError(f"{tar_path}: cannot read the archive ({type(e).__name__}: {e}); it is corrupt or "
                            "truncated - replace it") from e


def _tar_images(tar_path: Path):
    """(tarfile, member, split, class index, lossy) of every image member, in archive order, from one sequential
    pass; only the member headers are read here. Refused (S4DInputError): more than TAR_MAX_MEMBERS members, an
    unsafe member (_check_member), an image member over TAR_MAX_IMAGE_BYTES, any record read above 16 MiB. Use
    inside _reading_tar."""
    with open(tar_path, "rb") as f, tarfile.open(fileobj=_BoundedReads(_open_tar_stream(f), _TAR_MAX_READ,
                                                                       tar_path), mode="r:") as tf:
        for count, m in enumerate(tf, 1):
            if count > TAR_MAX_MEMBERS:
                raise S4DInputError(f"{tar_path}: refusing the archive: more than {TAR_MAX_MEMBERS} members, "
                                    "more than an image tree of CIFAR-10 holds")
            parts = PurePosixPath(m.name).parts  # parsed once: 60,000 members
            _check_member(m, parts, tar_path)
            key = _tree_key(parts, tar_path) if m.isfile() else None
            if key is None:
                continue
            if m.size > TAR_MAX_IMAGE_BYTES:
                raise S4DInputError(f"{tar_path}: refusing the archive: member {m.name!r} is {m.size} bytes, more "
                                    f"than {TAR_MAX_IMAGE_BYTES} for a 32x32 image; the archive is corrupt or not a "
                                    "CIFAR-10 image tree")
            yield tf, m, key[0], key[1], _IMAGE_SUFFIXES[PurePosixPath(parts[-1]).suffix.lower()]


def _decode_tar(tar_path: Path) -> dict:
    """{split: (x, y, n_jpeg)} for the splits present, from one sequential pass over the archive. Memory is bounded
    whatever the archive holds: at most TAR_MAX_MEMBERS members, an image member of at most TAR_MAX_IMAGE_BYTES
    (its size is checked before it is read, its pixel size before it is decoded), no record read above 16 MiB."""
    items = {s: [] for s in SPLITS}
    with _reading_tar(tar_path):
        for tf, m, split, c, lossy in _tar_images(tar_path):
            data = tf.extractfile(m).read()
            if len(data) != m.size:
                raise S4DInputError(f"{tar_path}: member {m.name!r} holds {len(data)} of its {m.size} bytes; the "
                                    "archive is truncated - replace it")
            items[split].append((c, m.name, lossy, _decode_image(io.BytesIO(data), f"{tar_path}:{m.name}")))
    return {s: _stack(v, tar_path, s) for s, v in items.items() if v}


@functools.lru_cache(maxsize=4)
def _survey_tar(tar_path: str, size: int, mtime_ns: int) -> dict:
    """{split: (number of images, number of JPEGs)} of an image-tree archive from its member headers (no member is
    read or decoded). Keyed by the file's size and mtime: `data list` asks for each split of scifar and scifar-gray,
    and one pass answers all four."""
    log.info("counting the images of %s from its member headers (seconds; nothing is decoded)", tar_path)
    counts = {}
    with _reading_tar(Path(tar_path)):
        for _, _, split, _, lossy in _tar_images(Path(tar_path)):
            n, n_jpeg = counts.get(split, (0, 0))
            counts[split] = (n + 1, n_jpeg + lossy)
    return counts



def _load_image_tar(tar_path: Path, split: str):
    digest = sha256_file(tar_path)
    key = f"v{_CACHE_VERSION} {digest}"
    caches = {s: cache_dir() / f"cifar10-tar-{digest[:16]}-{s}.npz" for s in SPLITS}
    hit = _read_cache(caches[split], key)
    if hit is None:
        log.info("decoding the CIFAR-10 images of %s once (both splits); cache: %s", tar_path, caches[split].parent)
        decoded = _decode_tar(tar_path)
        for s, (x, y, n_jpeg) in decoded.items():
            _write_cache(caches[s], key, x, y, n_jpeg)
        if split not in decoded:
            raise _no_images(tar_path, split)
        x, y, n_jpeg = decoded[split]
    else:
        x, y, n_jpeg = hit
    return x, y, _tree_meta("image-tar", tar_path, n_jpeg, caches[split], hit is not None, sha256={tar_path.name: digest})



def cache_dir() -> Path:
    """Where decoded images are cached: $S4DCONF_CACHE, else $XDG_CACHE_HOME/s4dconf, else ~/.cache/s4dconf (the
    user's cache folder). Never the data folder: it may be shared or mounted read-only."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "s4dconf"


def _read_cache(path: Path, key: str):
    """(x, y, n_jpeg) from a decoded cache whose key matches, else None (absent, stale or damaged: decode again)."""
    if not path.is_file():
        return None
    try:
        z = read_npz(path, "decoded-image cache")
        if str(z["key"]) != key:
            return None
        x, y, n_jpeg = z["x"], z["y"].astype(np.int64), int(z["n_jpeg"])
    except (S4DInputError, KeyError, ValueError):
        return None
    if x.dtype != np.uint8 or x.shape[1:] != (CIFAR_SIDE * CIFAR_SIDE, 3) or y.shape != x.shape[:1]:
        return None
    return x, y, n_jpeg



def _write_cache(path: Path, key: str, x: np.ndarray, y: np.ndarray, n_jpeg: int) -> None:
    """Write atomically; a cache that cannot be written is only a slower next load."""
    try:
        atomic_write(path, lambda f: np.savez(f, x=x, y=y.astype(np.uint8), n_jpeg=np.int64(n_jpeg),
                                              key=np.str_(key)), "decoded-image cache", make_dirs=True)
    except S4DInputError as e:
        log.warning("could not write the decoded-image cache (%s); the next load decodes again", e)
