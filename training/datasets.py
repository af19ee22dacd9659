"""Sequence-classification datasets for the S4D model: raw pixels as sequences x (N, L, d_input), labels y (N,).

Datasets (``DATASETS``; shapes per sequence in ``SHAPES``):

- ``sdigits``: scikit-learn's ``load_digits()`` (1,797 8x8 images, values 0..16), 64 steps x 1, row-major,
  model inputs = pixels / 16. Embedded, needs no data directory. There is no official split; ours: the
  permutation ``numpy.random.default_rng(SDIGITS_SPLIT_SEED).permutation(1797)``, test = its first
  ``SDIGITS_N_TEST`` (360) indices, train = the other 1,437; both sorted ascending (original order).
- ``smnist``: MNIST from the four standard idx files, 784 steps x 1, row-major, inputs = pixels / 255.
- ``psmnist``: ``smnist`` with the time steps permuted: step t is pixel ``perm[t]`` of the row-major image, with
  ``perm = numpy.random.default_rng(PSMNIST_SEED).permutation(784)``; its sha256 (over the int64 little-endian
  bytes) is ``psmnist_permutation_sha256()`` and is recorded in ``meta["permutation_sha256"]``.
- ``scifar``: CIFAR-10, 1024 steps (pixels, row-major) x 3 (R, G, B), inputs = pixels / 255.
- ``scifar-gray``: CIFAR-10, 1024 x 1: ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B rounded half up to uint8,
  computed exactly in integers as ``(299 R + 587 G + 114 B + 500) // 1000``; inputs = that / 255.

Where the data comes from (nothing is downloaded): the data directory is ``data_dir`` (CLI ``--data-dir``), else
the environment variable ``S4DCONF_DATA``, else the first of ``DEFAULT_DATA_DIRS`` that holds the files
(``<repository root>/../shared/data``, ``<repository root>/shared/data``). Under it:

- ``mnist/`` (or the data directory itself): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or ``.gz``.
- ``cifar10/``, tried in this order: (a) ``cifar-10-batches-bin/`` (the CIFAR-10 binary version,
  ``data_batch_1..5.bin``, ``test_batch.bin``; also accepted directly in the data directory), exact;
  (b) an image tree ``{train,test}/<class>/*.png|jpg`` (in ``cifar10/`` or one folder below it);
  (c) a ``*.tar.gz`` / ``*.tgz`` of such a tree. Class index = position in ``CIFAR10_CLASSES``; images are
  ordered class by class, by file name within a class (the original interleaving is not recoverable).
  The python version ``cifar-10-batches-py/`` is refused: its batches are pickles of numpy arrays, and
  unpickling them could run arbitrary code. JPEG sources are lossy: ``meta["lossy"]`` is then True.

Decoding 60,000 images is slow, so trees and tars are decoded once and the uint8 arrays cached as uncompressed
``.npz`` in ``.s4dconf-cache/`` in the tree's folder or next to the tar if that folder is writable (by its permission bits), else in
``$XDG_CACHE_HOME/s4dconf`` (``~/.cache/s4dconf``). A tar is read in memory member by member, never
extracted to disk; members with absolute paths, ``..`` or links are refused all the same. Its cache name
holds the tar's sha256. ``meta["cache"]`` and ``meta["cache_hit"]`` say what happened.

Every problem with the data raises ``S4DInputError`` (a ``ValueError``) naming the file, what is wrong and what
to do; a dataset that is not found raises its subclass ``DatasetNotFound`` listing every place looked in.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import math
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from s4dconf.reference.npzio import sha256_file
from s4dconf.reference.validate import S4DInputError

log = logging.getLogger(__name__)

DATASETS = ("sdigits", "smnist", "psmnist", "scifar", "scifar-gray")
SPLITS = ("train", "test")
SHAPES = {"sdigits": (64, 1), "smnist": (784, 1), "psmnist": (784, 1), "scifar": (1024, 3), "scifar-gray": (1024, 1)}
N_CLASSES = 10
ENV_VAR = "S4DCONF_DATA"

SDIGITS_SPLIT_SEED = 0
SDIGITS_N_TEST = 360
PSMNIST_SEED = 1234

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
LUMA_PERMILLE = (299, 587, 114)  # ITU-R BT.601; they sum to 1000, so integer arithmetic rounds exactly

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
MNIST_SIDE = 28
CIFAR_SIDE = 32
CIFAR_RECORD_BYTES = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE  # label byte + R, G, B planes

_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIRS = (_REPO_ROOT.parent / "shared" / "data", _REPO_ROOT / "shared" / "data")

_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR_BIN_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
_IMAGE_SUFFIXES = {".png": False, ".jpg": True, ".jpeg": True}  # suffix -> lossy
_CACHE_FOLDER = ".s4dconf-cache"
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


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceDataset:
    """One split of a dataset.

    x: uint8 (N, L, d_input), the raw pixels (uint8 keeps 60000 x 784 at 47 MB); y: int64 (N,) in 0..9;
    scale: x * scale are the model inputs in [0, 1]; meta: provenance (format, source, sha256 of the source
    files where cheap, lossy flag, permutation hash, cache, ...).
    """

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray
    scale: float
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.x.dtype != np.uint8 or self.x.ndim != 3:
            raise S4DInputError(f"{self.name}/{self.split}: x must be uint8 (N, L, d_input), got {self.x.dtype} "
                                f"{self.x.shape}")
        if self.y.dtype != np.int64 or self.y.shape != self.x.shape[:1]:
            raise S4DInputError(f"{self.name}/{self.split}: y must be int64 ({self.x.shape[0]},), got {self.y.dtype} "
                                f"{self.y.shape}")

    def __len__(self) -> int:
        return self.x.shape[0]

    def inputs(self, idx=slice(None)) -> np.ndarray:
        """float64 (n, L, d_input) model inputs x[idx] * scale; an integer idx keeps the batch axis (n = 1).

        Converting all of a large split at once costs 8 bytes per pixel (376 MB for MNIST train): use batches."""
        if isinstance(idx, (int, np.integer)):
            idx = [idx]
        return self.x[idx].astype(np.float64) * self.scale

    @property
    def length(self) -> int:
        return self.x.shape[1]

    @property
    def d_input(self) -> int:
        return self.x.shape[2]

    @property
    def n_classes(self) -> int:
        return N_CLASSES


# ----------------------------------------------------------------------------------------------- public functions

def load_dataset(name: str, split: str, data_dir: str | Path | None = None) -> SequenceDataset:
    """Load one split ("train" | "test") of dataset `name` (one of DATASETS); see the module docstring.

    data_dir: the data directory; None: $S4DCONF_DATA, else DEFAULT_DATA_DIRS. Unused by sdigits."""
    if name not in DATASETS:
        raise S4DInputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise S4DInputError(f"unknown split {split!r} of {name}; known: {', '.join(SPLITS)}")
    if name == "sdigits":
        x, y, meta = _load_sdigits(split)
        return SequenceDataset(name, split, x, y, 1.0 / 16.0, meta)
    dirs = resolve_data_dir(data_dir)
    if name in ("smnist", "psmnist"):
        x, y, meta = _load_mnist(split, dirs)
        if name == "psmnist":
            x = np.ascontiguousarray(x[:, psmnist_permutation(), :])
            meta = {**meta, "permutation_seed": PSMNIST_SEED, "permutation_sha256": psmnist_permutation_sha256()}
    else:
        x, y, meta = _load_cifar_rgb(split, dirs)
        if name == "scifar-gray":
            x = luma_u8(x)
            meta = {**meta, "gray": "(299 R + 587 G + 114 B + 500) // 1000 (BT.601 luma rounded half up, uint8)"}
    return SequenceDataset(name, split, x, y.astype(np.int64), 1.0 / 255.0, meta)


def resolve_data_dir(data_dir: str | Path | None = None) -> list[Path]:
    """The candidate data directories, in the order they are searched.

    An explicit data_dir, else $S4DCONF_DATA, is the only candidate and must be an existing directory;
    otherwise DEFAULT_DATA_DIRS (which need not exist)."""
    for value, what in ((data_dir, "data directory (--data-dir / data_dir)"), (os.environ.get(ENV_VAR), ENV_VAR)):
        if value is None or str(value) == "":
            continue
        path = Path(value).expanduser()
        if not path.exists():
            raise S4DInputError(f"{what} {path} does not exist; pass an existing folder that holds mnist/ and/or "
                                "cifar10/ (see `s4dconf data list`)")
        if not path.is_dir():
            raise S4DInputError(f"{what} {path} is not a directory; pass the folder that holds mnist/ and/or "
                                "cifar10/, not a file")
        return [path]
    return list(DEFAULT_DATA_DIRS)


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train_idx, val_idx): val = the first round(n * val_fraction) of
    default_rng(seed).permutation(n); both int64, sorted ascending, disjoint, together 0..n-1."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise S4DInputError(f"train_val_split: n must be a non-negative integer, got {n!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise S4DInputError(f"train_val_split: val_fraction must be in [0, 1), got {val_fraction!r}")
    val, train = _holdout_split(int(n), round(n * val_fraction), seed)
    return train, val


def psmnist_permutation() -> np.ndarray:
    """int64 (784,): psmnist step t is pixel perm[t] of the row-major 28x28 image."""
    return np.random.default_rng(PSMNIST_SEED).permutation(MNIST_SIDE * MNIST_SIDE).astype(np.int64)


def psmnist_permutation_sha256() -> str:
    """sha256 hex of psmnist_permutation() as little-endian int64 bytes."""
    return hashlib.sha256(psmnist_permutation().astype("<i8").tobytes()).hexdigest()


def luma_u8(rgb: np.ndarray) -> np.ndarray:
    """uint8 (N, L, 3) RGB -> uint8 (N, L, 1): (299 R + 587 G + 114 B + 500) // 1000, in blocks to bound memory."""
    out = np.empty(rgb.shape[:-1] + (1,), np.uint8)
    wr, wg, wb = LUMA_PERMILLE
    for i in range(0, rgb.shape[0], 4096):
        b = rgb[i:i + 4096].astype(np.uint32)
        out[i:i + 4096, :, 0] = (wr * b[..., 0] + wg * b[..., 1] + wb * b[..., 2] + 500) // 1000
    return out


def load_cifar10_exact_subset(data_dir: str | Path | None = None, gray: bool = False) -> SequenceDataset:
    """The exact (lossless) first 4,000 images of CIFAR-10 data_batch_1 from <data dir>/cifar10/exact-subset-4000/
    (cifar10_batch_{0..3}.png, 1024 x 1000 RGB, one image per row; labels_uint8.npy), as split "train" of
    scifar (N, 1024, 3) or scifar-gray (N, 1024, 1). For measuring what the JPEG loss changes."""
    from PIL import Image

    looked = []
    for d in resolve_data_dir(data_dir):
        folder = d / "cifar10" / "exact-subset-4000"
        looked.append(folder)
        pngs = sorted(folder.glob("cifar10_batch_*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        if pngs and (folder / "labels_uint8.npy").is_file():
            break
    else:
        raise _not_found("the CIFAR-10 exact subset", looked, "<data dir>/cifar10/exact-subset-4000/ holding "
                         "cifar10_batch_0.png ... and labels_uint8.npy")
    rows = []
    for p in pngs:
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"), np.uint8)
        if a.shape[1] != CIFAR_SIDE * CIFAR_SIDE:
            raise S4DInputError(f"{p}: expected rows of {CIFAR_SIDE * CIFAR_SIDE} RGB pixels, got shape {a.shape}")
        rows.append(a)
    x = np.concatenate(rows)
    y = np.load(folder / "labels_uint8.npy", allow_pickle=False).astype(np.int64)
    if y.shape != (len(x),):
        raise S4DInputError(f"{folder}: {len(x)} images but labels_uint8.npy has shape {y.shape}")
    _check_labels(y, folder / "labels_uint8.npy")
    meta = {"format": "png-rows", "source": str(folder), "lossy": False, "files": [p.name for p in pngs]}
    if gray:
        x = luma_u8(x)
    return SequenceDataset("scifar-gray" if gray else "scifar", "train", x, y, 1.0 / 255.0, meta)


# ------------------------------------------------------------------------------------------------------ helpers

def _holdout_split(n: int, n_holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(holdout, rest), each sorted: holdout = the first n_holdout of default_rng(seed).permutation(n)."""
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return np.sort(perm[:n_holdout]), np.sort(perm[n_holdout:])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _place(p: Path) -> str:
    return str(p) if p.exists() else f"{p} (does not exist)"


def _not_found(what: str, looked: list[Path], layout: str, extra: str = "") -> DatasetNotFound:
    places = "\n  ".join(_place(p) for p in looked)
    return DatasetNotFound(
        f"{what} not found. Looked in:\n  {places}\n{extra}Provide it: set {ENV_VAR}=<data dir> or pass "
        f"--data-dir <data dir> (data_dir= in Python), with {layout}. Nothing is downloaded.", looked)


def _check_labels(y: np.ndarray, where) -> None:
    if y.size and int(y.max()) >= N_CLASSES:
        i = int(np.argmax(y >= N_CLASSES))
        raise S4DInputError(f"{where}: label {int(y[i])} at index {i} is out of range 0..{N_CLASSES - 1}; "
                            "the file is corrupt or not a 10-class dataset - replace it")


# --------------------------------------------------------------------------------------------------------- sdigits

def _load_sdigits(split: str):
    import sklearn
    from sklearn.datasets import load_digits

    digits = load_digits()
    test_idx, train_idx = _holdout_split(len(digits.target), SDIGITS_N_TEST, SDIGITS_SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    x = digits.data[idx].astype(np.uint8).reshape(len(idx), 64, 1)  # values are the integers 0..16
    meta = {"format": "sklearn", "source": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
            "lossy": False, "split_seed": SDIGITS_SPLIT_SEED, "n_test": SDIGITS_N_TEST,
            "x_sha256": _sha256(x.tobytes())}
    return x, digits.target[idx].astype(np.int64), meta


# ----------------------------------------------------------------------------------------------------------- MNIST

def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz or the bytes start with the gzip magic."""
    raw = path.read_bytes()
    if path.suffix != ".gz" and raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise S4DInputError(f"{path}: not a valid gzip file ({type(e).__name__}: {e}); it is corrupt or truncated - "
                            "replace it (an uncompressed copy without the .gz suffix also works)") from e


def _parse_idx(data: bytes, magic: int, path: Path) -> np.ndarray:
    """uint8 array of an idx file: big-endian uint32 magic (0x0000 08 ndim), ndim uint32 dims, then the bytes."""
    kind = {IDX_IMAGES_MAGIC: "images (idx3)", IDX_LABELS_MAGIC: "labels (idx1)"}[magic]
    if len(data) < 4:
        raise S4DInputError(f"{path}: {len(data)} bytes, too short for an idx header; the file is truncated - "
                            "replace it")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        hint = " (that is an idx labels file: images and labels swapped?)" if got == IDX_LABELS_MAGIC else \
            " (that is an idx images file: images and labels swapped?)" if got == IDX_IMAGES_MAGIC else ""
        raise S4DInputError(f"{path}: wrong magic number {got} (0x{got:08x}){hint}; an MNIST {kind} file starts "
                            f"with {magic} (0x{magic:08x}, big-endian) - check the file name and content")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)) if len(data) >= header else ()
    expected = header + math.prod(dims) if dims else header
    if len(data) != expected:
        raise S4DInputError(f"{path}: {len(data)} bytes (uncompressed) but its header (dims {dims}) needs "
                            f"{expected}; the file is truncated or has trailing bytes - replace it")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


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
    raise _not_found(f"MNIST {split} split ({names})", looked, _HOW_TO["mnist"])


def _load_mnist(split: str, dirs: list[Path]):
    img_path, lab_path = _find_mnist(split, dirs)
    img_bytes, lab_bytes = _read_maybe_gzip(img_path), _read_maybe_gzip(lab_path)
    images = _parse_idx(img_bytes, IDX_IMAGES_MAGIC, img_path)
    labels = _parse_idx(lab_bytes, IDX_LABELS_MAGIC, lab_path)
    if images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise S4DInputError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, MNIST's are "
                            f"{MNIST_SIDE}x{MNIST_SIDE}")
    if len(images) != len(labels):
        raise S4DInputError(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels; "
                            "the two files must belong to the same split - replace the wrong one")
    _check_labels(labels, lab_path)
    meta = {"format": "idx", "source": str(img_path.parent), "files": [img_path.name, lab_path.name], "lossy": False,
            # of the uncompressed bytes, comparable with the official files whatever the compression
            "sha256": {img_path.name.removesuffix(".gz"): _sha256(img_bytes),
                       lab_path.name.removesuffix(".gz"): _sha256(lab_bytes)}}
    # .copy(): an owned, writable array instead of a read-only view of the decompressed bytes
    return images.reshape(len(images), MNIST_SIDE * MNIST_SIDE, 1).copy(), labels.astype(np.int64), meta


# -------------------------------------------------------------------------------------------------------- CIFAR-10

def _load_cifar_rgb(split: str, dirs: list[Path]):
    """x uint8 (N, 1024, 3), y, meta from the first CIFAR-10 source found (see the module docstring)."""
    looked, python_version = [], []
    for d in dirs:
        folder = d / "cifar10"
        for f in (folder, d):
            looked.append(f)
            if (f / "cifar-10-batches-bin").is_dir():
                return _load_cifar_bin(f / "cifar-10-batches-bin", split)
            if (f / "cifar-10-batches-py").is_dir():
                python_version.append(f / "cifar-10-batches-py")
        root = _image_tree_root(folder)
        if root is not None:
            return _load_image_tree(root, split)
        tars = sorted(folder.glob("*.tar.gz")) + sorted(folder.glob("*.tgz")) if folder.is_dir() else []
        if tars:
            return _load_image_tar(tars[0], split)
    extra = "".join(f"Found {p}, the CIFAR-10 python version: not supported, because its batches are pickles of "
                    "numpy arrays and unpickling them can run arbitrary code; use the binary version "
                    "(cifar-10-binary.tar.gz, which unpacks to cifar-10-batches-bin/) or an image tree.\n"
                    for p in python_version)
    raise _not_found(f"CIFAR-10 ({split} split)", looked, _HOW_TO["cifar10"], extra)


def _load_cifar_bin(folder: Path, split: str):
    paths = [folder / n for n in _CIFAR_BIN_FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise S4DInputError(f"{folder}: missing {', '.join(missing)} of the CIFAR-10 binary version "
                            f"({split} needs {', '.join(_CIFAR_BIN_FILES[split])}); restore the missing files")
    xs, ys, digests = [], [], {}
    for p in paths:
        raw = p.read_bytes()
        if len(raw) == 0 or len(raw) % CIFAR_RECORD_BYTES:
            raise S4DInputError(f"{p}: {len(raw)} bytes is not a positive multiple of {CIFAR_RECORD_BYTES} "
                                f"(1 label byte + 3072 pixel bytes per image); truncated, or not the CIFAR-10 binary "
                                "version (CIFAR-100 records are 3074 bytes) - replace it")
        rec = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR_RECORD_BYTES)
        _check_labels(rec[:, 0], p)
        # each record stores the R, G, B planes one after the other, each row-major 32x32
        xs.append(rec[:, 1:].reshape(-1, 3, CIFAR_SIDE * CIFAR_SIDE).transpose(0, 2, 1))
        ys.append(rec[:, 0].astype(np.int64))
        digests[p.name] = _sha256(raw)
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
            a = np.asarray(im.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise S4DInputError(f"{where}: cannot decode the image ({e}); replace or remove the file") from e
    if a.shape != (CIFAR_SIDE, CIFAR_SIDE, 3):
        raise S4DInputError(f"{where}: image is {a.shape[1]}x{a.shape[0]}, CIFAR-10 images are 32x32")
    return a


def _stack(items: list, where, split: str):
    """items (class index, file name, is_jpeg, image) -> x (N, 1024, 3), y, number of JPEGs; class, name order."""
    if not items:
        raise S4DInputError(f"{where}: no {split} images ({split}/<class>/*.png|jpg); add them or use another source")
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


def _load_image_tree(root: Path, split: str):
    folder = root / split
    if not folder.is_dir():
        raise S4DInputError(f"image tree {root} has no {split}/ folder; expected {split}/<class>/*.png|jpg")
    files = []
    for sub in sorted(folder.iterdir()):
        if sub.is_dir():
            c = _class_index(sub.name, sub)
            files += [(c, p) for p in sorted(sub.iterdir())
                      if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()]
    # the cache key sees every file's path, size and mtime: an edited tree is decoded again
    h = hashlib.sha256(f"v{_CACHE_VERSION} {root.resolve()} {split}".encode())
    for _, p in files:
        st = p.stat()
        h.update(f"\n{p.relative_to(root)}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    key = h.hexdigest()
    cache = _cache_dir(root) / f"cifar10-tree-{key[:16]}-{split}.npz"
    hit = _read_cache(cache, key)
    if hit is None:
        log.info("decoding %d CIFAR-10 %s images under %s once; cache: %s", len(files), split, folder, cache)
        items = [(c, p.name, _IMAGE_SUFFIXES[p.suffix.lower()], _decode_image(p, p)) for c, p in files]
        x, y, n_jpeg = _stack(items, folder, split)
        _write_cache(cache, key, x, y, n_jpeg)
    else:
        x, y, n_jpeg = hit
    return x, y, _tree_meta("image-tree", root, n_jpeg, cache, hit is not None)


def _check_member(m: tarfile.TarInfo, tar_path: Path) -> None:
    """Refuse absolute paths, '..' and anything but regular files and folders (links, devices)."""
    p = PurePosixPath(m.name)
    if p.is_absolute() or m.name.startswith(("/", "\\")) or ".." in p.parts:
        raise S4DInputError(f"{tar_path}: refusing the archive: member {m.name!r} has an absolute path or a '..' "
                            "component; an image-tree archive holds only relative paths like train/cat/0001.jpg")
    if not (m.isfile() or m.isdir()):
        raise S4DInputError(f"{tar_path}: refusing the archive: member {m.name!r} is a link or special file; an "
                            "image-tree archive holds only folders and image files")


def _decode_tar(tar_path: Path) -> dict:
    """{split: (x, y, n_jpeg)} for the splits present, from one sequential pass over the archive."""
    items = {s: [] for s in SPLITS}
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            for m in tf:
                _check_member(m, tar_path)
                key = _tree_key(PurePosixPath(m.name).parts, tar_path) if m.isfile() else None
                if key is not None:
                    data = tf.extractfile(m).read()
                    lossy = _IMAGE_SUFFIXES[PurePosixPath(m.name).suffix.lower()]
                    items[key[0]].append((key[1], m.name, lossy, _decode_image(io.BytesIO(data),
                                                                               f"{tar_path}:{m.name}")))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise S4DInputError(f"{tar_path}: cannot read the archive ({type(e).__name__}: {e}); it is corrupt or "
                            "truncated - replace it") from e
    return {s: _stack(v, tar_path, s) for s, v in items.items() if v}


def _load_image_tar(tar_path: Path, split: str):
    digest = sha256_file(tar_path)
    key = f"v{_CACHE_VERSION} {digest}"
    caches = {s: _cache_dir(tar_path.parent) / f"cifar10-tar-{digest[:16]}-{s}.npz" for s in SPLITS}
    hit = _read_cache(caches[split], key)
    if hit is None:
        log.info("decoding the CIFAR-10 images of %s once (both splits); cache: %s", tar_path, caches[split].parent)
        decoded = _decode_tar(tar_path)
        for s, (x, y, n_jpeg) in decoded.items():
            _write_cache(caches[s], key, x, y, n_jpeg)
        if split not in decoded:
            raise S4DInputError(f"{tar_path}: no {split} images ([top folder/]{split}/<class>/*.png|jpg) in the "
                                "archive; use an archive of the full image tree")
        x, y, n_jpeg = decoded[split]
    else:
        x, y, n_jpeg = hit
    return x, y, _tree_meta("image-tar", tar_path, n_jpeg, caches[split], hit is not None, sha256={tar_path.name: digest})


# ----------------------------------------------------------------------------------------------------------- cache

def _writable(folder: Path) -> bool:
    """True when the folder's permission bits allow writing (root ignores the bits; a read-only share should not
    get a cache written into it all the same)."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return os.access(folder, os.W_OK) and bool(mode & stat.S_IWUSR)


def _cache_dir(near: Path) -> Path:
    if _writable(near):
        return near / _CACHE_FOLDER
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "s4dconf"


def _read_cache(path: Path, key: str):
    """(x, y, n_jpeg) from a decoded cache whose key matches, else None (absent, stale or damaged: decode again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            x, y, n_jpeg = z["x"], z["y"].astype(np.int64), int(z["n_jpeg"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if x.dtype != np.uint8 or x.shape[1:] != (CIFAR_SIDE * CIFAR_SIDE, 3) or y.shape != x.shape[:1]:
        return None
    return x, y, n_jpeg


def _write_cache(path: Path, key: str, x: np.ndarray, y: np.ndarray, n_jpeg: int) -> None:
    """Write atomically (temporary file, then rename); a cache that cannot be written is only a slower next load."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, x=x, y=y.astype(np.uint8), n_jpeg=np.int64(n_jpeg), key=np.str_(key))
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not write the decoded-image cache %s (%s); the next load decodes again", path, e)
        tmp.unlink(missing_ok=True)
