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
``.npz`` in the user's cache folder: ``$S4DCONF_CACHE``, else ``$XDG_CACHE_HOME/s4dconf``, else
``~/.cache/s4dconf``; never in the data folder, which may be shared or read-only. A tar is read in memory member by member, never
extracted to disk; members with absolute paths, ``..`` or links are refused all the same. Its cache name
holds the tar's sha256. ``meta["cache"]`` and ``meta["cache_hit"]`` say what happened.

Every problem with the data raises ``S4DInputError`` (a ``ValueError``) naming the file, what is wrong and what
to do; a dataset that is not found raises its subclass ``DatasetNotFound`` listing every place looked in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
from s4dconf.reference.validate import S4DInputError

from .datafiles import (CIFAR10_CLASSES, CIFAR_SIDE, ENV_VAR, MNIST_SIDE, N_CLASSES, SPLITS,  # noqa: F401
                        DatasetNotFound, check_labels, load_cifar_rgb_arrays, load_mnist_arrays, not_found,
                        sha256_bytes, survey_cifar, survey_mnist)


DATASETS = ("sdigits", "smnist", "psmnist", "scifar", "scifar-gray")
SHAPES = {"sdigits": (64, 1), "smnist": (784, 1), "psmnist": (784, 1), "scifar": (1024, 3), "scifar-gray": (1024, 1)}

SDIGITS_SPLIT_SEED = 0
SDIGITS_N_TEST = 360
PSMNIST_SEED = 1234

LUMA_PERMILLE = (299, 587, 114)  # ITU-R BT.601; they sum to 1000, so integer arithmetic rounds exactly


_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIRS = (_REPO_ROOT.parent / "shared" / "data", _REPO_ROOT / "shared" / "data")


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
    _check_name_split(name, split)
    if name == "sdigits":
        x, y, meta = _load_sdigits(split)
        return SequenceDataset(name, split, x, y, 1.0 / 16.0, meta)
    dirs = resolve_data_dir(data_dir)
    if name in ("smnist", "psmnist"):
        x, y, meta = load_mnist_arrays(split, dirs)
        if name == "psmnist":
            x = np.ascontiguousarray(x[:, psmnist_permutation(), :])
            meta = {**meta, "permutation_seed": PSMNIST_SEED, "permutation_sha256": psmnist_permutation_sha256()}
    else:
        x, y, meta = load_cifar_rgb_arrays(split, dirs)
        if name == "scifar-gray":
            x = luma_u8(x)
            meta = {**meta, "gray": "(299 R + 587 G + 114 B + 500) // 1000 (BT.601 luma rounded half up, uint8)"}
    return SequenceDataset(name, split, x, y.astype(np.int64), 1.0 / 255.0, meta)


def survey_dataset(name: str, split: str, data_dir: str | Path | None = None) -> tuple[int, dict]:
    """(number of sequences, meta with "format", "source", "lossy") of one split, as `s4dconf data list` shows it:
    from file headers, names and sizes only. Nothing is decoded, cached or written, so it works on a read-only or
    shared data folder (an image archive's member headers take seconds to read; the rest, milliseconds); the
    checks that need the pixels (labels in range, images decodable, a compressed file's length) are
    load_dataset's. Same errors as load_dataset."""
    _check_name_split(name, split)
    if name == "sdigits":
        x, _, meta = _load_sdigits(split)  # embedded in scikit-learn: a few kB, nothing written
        return len(x), meta
    dirs = resolve_data_dir(data_dir)
    return survey_mnist(split, dirs) if name in ("smnist", "psmnist") else survey_cifar(split, dirs)


def _check_name_split(name: str, split: str) -> None:
    if name not in DATASETS:
        raise S4DInputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise S4DInputError(f"unknown split {split!r} of {name}; known: {', '.join(SPLITS)}")


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
        raise not_found("the CIFAR-10 exact subset", looked, "<data dir>/cifar10/exact-subset-4000/ holding "
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
    check_labels(y, folder / "labels_uint8.npy")
    meta = {"format": "png-rows", "source": str(folder), "lossy": False, "files": [p.name for p in pngs]}
    if gray:
        x = luma_u8(x)
    return SequenceDataset("scifar-gray" if gray else "scifar", "train", x, y, 1.0 / 255.0, meta)


# ------------------------------------------------------------------------------------------------------ helpers

def _holdout_split(n: int, n_holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(holdout, rest), each sorted: holdout = the first n_holdout of default_rng(seed).permutation(n)."""
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return np.sort(perm[:n_holdout]), np.sort(perm[n_holdout:])


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
            "x_sha256": sha256_bytes(x.tobytes())}
    return x, digits.target[idx].astype(np.int64), meta


# ----------------------------------------------------------------------------------------------------------- MNIST


# -------------------------------------------------------------------------------------------------------- CIFAR-10


# ----------------------------------------------------------------------------------------------------------- cache


