"""Reading the raw dataset files (the formats of `training/datasets.py`'s module docstring): MNIST idx files (plain
or gzip), CIFAR-10's binary batches, image trees and tar archives of them, and the decoded-image cache. Every problem
raises S4DInputError naming the file and what to do; a dataset found nowhere raises DatasetNotFound."""
from __future__ import annotations

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

N_CLASSES = 10
ENV_VAR = "S4DCONF_DATA"
log = logging.getLogger(__name__)

SPLITS = ("train", "test")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions

IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

MNIST_SIDE = 28

CIFAR_SIDE = 32

CIFAR_RECORD_BYTES = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE  # label byte + R, G, B planes

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
    raise not_found(f"MNIST {split} split ({names})", looked, _HOW_TO["mnist"])



def load_mnist_arrays(split: str, dirs: list[Path]):
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
    check_labels(labels, lab_path)
    meta = {"format": "idx", "source": str(img_path.parent), "files": [img_path.name, lab_path.name], "lossy": False,
            # of the uncompressed bytes, comparable with the official files whatever the compression
            "sha256": {img_path.name.removesuffix(".gz"): sha256_bytes(img_bytes),
                       lab_path.name.removesuffix(".gz"): sha256_bytes(lab_bytes)}}
    # .copy(): an owned, writable array instead of a read-only view of the decompressed bytes
    return images.reshape(len(images), MNIST_SIDE * MNIST_SIDE, 1).copy(), labels.astype(np.int64), meta



def load_cifar_rgb_arrays(split: str, dirs: list[Path]):
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
    raise not_found(f"CIFAR-10 ({split} split)", looked, _HOW_TO["cifar10"], extra)



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
