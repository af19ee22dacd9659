"""training/datasets.py: formats on tiny synthetic files, every bad-input message, the data-dir precedence, the
image cache, tar safety, the `s4dconf data` command (`data list` reads headers and names only: nothing decoded or
written), and sanity values of the real data (skipped when absent)."""
from __future__ import annotations

import gzip
import hashlib
import io
import re
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from s4dconf.reference.validate import S4DInputError
from s4dconf.training import datafiles
from s4dconf.training import datasets as ds

from s4dconf.cli import main

CLASSES = datafiles.CIFAR10_CLASSES


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    """Tests name their data directory; a user's S4DCONF_DATA must not leak in, and caches go to a temporary
    user cache folder."""
    monkeypatch.delenv(ds.ENV_VAR, raising=False)
    monkeypatch.setenv(datafiles.CACHE_ENV_VAR, str(tmp_path / "user-cache"))


# ------------------------------------------------------------------------------------------- synthetic writers

def idx_bytes(a: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in a.shape)
    return header + a.astype(np.uint8).tobytes()


def write_file(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_mnist(folder: Path, n: dict | None = None, gz: bool = False, seed: int = 0) -> dict:
    """Both splits of a tiny MNIST in `folder`; returns {split: (images (n, 28, 28), labels (n,))}."""
    rng, out = np.random.default_rng(seed), {}
    for split, count in (n or {"train": 6, "test": 4}).items():
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        img_name, lab_name = datafiles._MNIST_FILES[split]
        write_file(folder / img_name, idx_bytes(images, datafiles.IDX_IMAGES_MAGIC), gz)
        write_file(folder / lab_name, idx_bytes(labels, datafiles.IDX_LABELS_MAGIC), gz)
        out[split] = images, labels
    return out


def write_cifar_bin(folder: Path, per_file: int = 3, seed: int = 0) -> dict:
    """The CIFAR-10 binary version in folder/cifar-10-batches-bin; returns {split: (planes (n, 3, 1024), labels)}."""
    rng, out = np.random.default_rng(seed), {}
    for split, names in datafiles._CIFAR_BIN_FILES.items():
        planes = rng.integers(0, 256, (per_file * len(names), 3, 1024), dtype=np.uint8)
        labels = rng.integers(0, 10, per_file * len(names), dtype=np.uint8)
        records = np.concatenate([labels[:, None], planes.reshape(len(labels), 3072)], axis=1)
        for i, name in enumerate(names):
            write_file(folder / "cifar-10-batches-bin" / name, records[i * per_file:(i + 1) * per_file].tobytes())
        out[split] = planes, labels
    return out


def write_tree(root: Path, per_class: int = 2, fmt: str = "png", seed: int = 0, classes=CLASSES) -> dict:
    """{train,test}/<class>/NNNN.<fmt> under root; returns {split: (x (n, 1024, 3), y)} in the loader's order."""
    rng, out = np.random.default_rng(seed), {}
    for split in ds.SPLITS:
        xs, ys = [], []
        for c in classes:
            for k in range(per_class):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                path = root / split / c / f"{k:04d}.{fmt}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path)
                xs.append(img.reshape(1024, 3))
                ys.append(CLASSES.index(c))
        out[split] = np.stack(xs), np.array(ys)
    return out


def write_tar(path: Path, tree: Path | None = None, top: str = "", extra: list | None = None) -> Path:
    """A .tar.gz of the tree (under folder `top` if given), plus extra TarInfo members (name, type, data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        if tree is not None:
            for split in ds.SPLITS:
                tf.add(tree / split, arcname=f"{top}/{split}" if top else split)
        for name, kind, data in extra or []:
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, len(data)
            if kind == tarfile.SYMTYPE:
                info.linkname, info.size = "/etc/passwd", 0
            tf.addfile(info, io.BytesIO(data) if info.size else None)
    return path


def png_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def raises(match_all: list[str], fn, *args, exc=S4DInputError, **kw) -> str:
    """Call fn, expect exc; every string of match_all must be in the message. Returns the message."""
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    msg = str(info.value)
    for s in match_all:
        assert s in msg, f"{s!r} not in message:\n{msg}"
    return msg


# ----------------------------------------------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sub", ["mnist", ""])
def test_smnist_reads_idx_plain_or_gz_in_mnist_or_data_dir(tmp_path, gz, sub):
    written = write_mnist(tmp_path / sub if sub else tmp_path, gz=gz)
    for split, (images, labels) in written.items():
        d = ds.load_dataset("smnist", split, tmp_path)
        assert d.x.dtype == np.uint8 and d.x.shape == (len(images), 784, 1)
        assert np.array_equal(d.x[:, :, 0], images.reshape(len(images), -1))  # row-major pixel order
        assert d.y.dtype == np.int64 and np.array_equal(d.y, labels)
        assert d.x.flags.writeable and d.x.flags.c_contiguous
        assert (d.length, d.d_input, d.n_classes, len(d)) == (784, 1, 10, len(images))
        assert d.scale == 1 / 255 and d.meta["lossy"] is False
        name = datafiles._MNIST_FILES[split][0]
        assert d.meta["sha256"][name] == hashlib.sha256(idx_bytes(images, datafiles.IDX_IMAGES_MAGIC)).hexdigest()


def test_inputs_are_float64_scaled_and_keep_the_batch_axis(tmp_path):
    images, _ = write_mnist(tmp_path)["test"]
    d = ds.load_dataset("smnist", "test", tmp_path)
    u = d.inputs()
    assert u.dtype == np.float64 and u.shape == (4, 784, 1)
    assert np.array_equal(u, images.reshape(4, 784, 1) * (1 / 255)) and 0 <= u.min() and u.max() <= 1
    assert np.allclose(u, images.reshape(4, 784, 1) / 255, rtol=1e-15, atol=0)
    assert d.inputs(2).shape == (1, 784, 1) and np.array_equal(d.inputs(2)[0], u[2])
    assert np.array_equal(d.inputs(slice(1, 3)), u[1:3])


def test_psmnist_permutes_the_steps_of_smnist(tmp_path):
    write_mnist(tmp_path)
    s, p = ds.load_dataset("smnist", "train", tmp_path), ds.load_dataset("psmnist", "train", tmp_path)
    perm = ds.psmnist_permutation()
    assert np.array_equal(p.x, s.x[:, perm, :]) and not np.array_equal(p.x, s.x)
    assert np.array_equal(p.y, s.y)
    assert p.meta["permutation_sha256"] == ds.psmnist_permutation_sha256()
    assert p.meta["permutation_seed"] == ds.PSMNIST_SEED


def test_psmnist_permutation_is_a_permutation_with_a_stable_hash():
    perm = ds.psmnist_permutation()
    assert perm.dtype == np.int64 and np.array_equal(np.sort(perm), np.arange(784))
    assert not np.array_equal(perm, np.arange(784))
    assert ds.psmnist_permutation_sha256() == hashlib.sha256(perm.astype("<i8").tobytes()).hexdigest()
    # recorded value: a change of numpy's generator stream or of the seed would change every psmnist result
    assert ds.psmnist_permutation_sha256() == "1f50dd7d95ae958203cf7cb028d634cb5f5f1981220af8796066de33eb6b82be"


def _images_path(folder: Path, split: str = "train") -> Path:
    return folder / datafiles._MNIST_FILES[split][0]


def test_idx_truncated_or_trailing_bytes(tmp_path):
    write_mnist(tmp_path)
    path = _images_path(tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[:-1])
    raises([str(path), "truncated", str(len(good) - 1), str(len(good))], ds.load_dataset, "smnist", "train", tmp_path)
    path.write_bytes(good + b"\0")
    raises([str(path), "trailing bytes"], ds.load_dataset, "smnist", "train", tmp_path)
    path.write_bytes(good[:2])
    raises([str(path), "too short"], ds.load_dataset, "smnist", "train", tmp_path)


def test_idx_wrong_magic(tmp_path):
    write_mnist(tmp_path)
    path = _images_path(tmp_path)
    data = bytearray(path.read_bytes())
    data[:4] = (1234).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    raises([str(path), "wrong magic number 1234", "2051"], ds.load_dataset, "smnist", "train", tmp_path)
    # the labels file where the images belong
    path.write_bytes((tmp_path / datafiles._MNIST_FILES["train"][1]).read_bytes())
    raises([str(path), "2049", "swapped"], ds.load_dataset, "smnist", "train", tmp_path)


def test_idx_corrupt_gzip(tmp_path):
    write_mnist(tmp_path, gz=True)
    path = tmp_path / (datafiles._MNIST_FILES["test"][0] + ".gz")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    raises([str(path), "not a valid gzip file"], ds.load_dataset, "smnist", "test", tmp_path)
    path.write_bytes(b"this is not gzip data")
    raises([str(path), "not a valid gzip file"], ds.load_dataset, "smnist", "test", tmp_path)


def test_idx_image_and_label_counts_differ(tmp_path):
    write_mnist(tmp_path)
    lab = tmp_path / datafiles._MNIST_FILES["train"][1]
    lab.write_bytes(idx_bytes(np.zeros(5, np.uint8), datafiles.IDX_LABELS_MAGIC))
    raises([str(_images_path(tmp_path)), str(lab), "6 images", "5 labels"], ds.load_dataset, "smnist", "train",
           tmp_path)


def test_idx_label_out_of_range(tmp_path):
    write_mnist(tmp_path)
    lab = tmp_path / datafiles._MNIST_FILES["train"][1]
    lab.write_bytes(idx_bytes(np.array([1, 2, 3, 10, 4, 5], np.uint8), datafiles.IDX_LABELS_MAGIC))
    raises([str(lab), "label 10 at index 3", "out of range"], ds.load_dataset, "smnist", "train", tmp_path)


def test_idx_images_not_28x28(tmp_path):
    write_mnist(tmp_path)
    path = _images_path(tmp_path)
    path.write_bytes(idx_bytes(np.zeros((6, 27, 29), np.uint8), datafiles.IDX_IMAGES_MAGIC))
    raises([str(path), "27x29", "28x28"], ds.load_dataset, "smnist", "train", tmp_path)


# ----------------------------------------------------------------------------------- data directory, names

def test_missing_mnist_lists_every_place_and_how_to_provide_it(tmp_path, monkeypatch):
    default = tmp_path / "nowhere"
    monkeypatch.setattr(ds, "DEFAULT_DATA_DIRS", (default, tmp_path))
    msg = raises([f"{default / 'mnist'} (does not exist)", f"{default} (does not exist)", str(tmp_path / "mnist"),
                  "S4DCONF_DATA", "--data-dir", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", ".gz"],
                 ds.load_dataset, "psmnist", "train", exc=ds.DatasetNotFound)
    assert msg.index(str(default)) < msg.index(str(tmp_path / "mnist"))  # in search order
    with pytest.raises(ds.DatasetNotFound) as info:
        ds.load_dataset("smnist", "test", tmp_path)
    assert info.value.looked_in == (tmp_path / "mnist", tmp_path)
    assert isinstance(info.value, ValueError)


def test_bad_data_dir(tmp_path, monkeypatch):
    raises([str(tmp_path / "absent"), "does not exist"], ds.load_dataset, "smnist", "train", tmp_path / "absent")
    a_file = write_file(tmp_path / "file.txt", b"x")
    raises([str(a_file), "not a directory"], ds.load_dataset, "scifar", "train", a_file)
    monkeypatch.setenv(ds.ENV_VAR, str(tmp_path / "absent"))
    raises(["S4DCONF_DATA", str(tmp_path / "absent"), "does not exist"], ds.resolve_data_dir)


def test_data_dir_precedence_explicit_then_env_then_defaults(tmp_path, monkeypatch):
    for name, n in (("explicit", 5), ("env", 3), ("default", 7)):
        write_mnist(tmp_path / name / "mnist", n={"train": n})
    monkeypatch.setattr(ds, "DEFAULT_DATA_DIRS", (tmp_path / "missing", tmp_path / "default"))
    assert ds.resolve_data_dir() == [tmp_path / "missing", tmp_path / "default"]
    assert len(ds.load_dataset("smnist", "train")) == 7  # the first default that holds the files
    monkeypatch.setenv(ds.ENV_VAR, str(tmp_path / "env"))
    assert ds.resolve_data_dir() == [tmp_path / "env"]
    assert len(ds.load_dataset("smnist", "train")) == 3
    assert ds.resolve_data_dir(tmp_path / "explicit") == [tmp_path / "explicit"]
    assert len(ds.load_dataset("smnist", "train", str(tmp_path / "explicit"))) == 5
    monkeypatch.setenv(ds.ENV_VAR, "")  # empty: unset
    assert len(ds.load_dataset("smnist", "train")) == 7


def test_unknown_dataset_or_split():
    raises(["'mnist'", *ds.DATASETS], ds.load_dataset, "mnist", "train")
    raises(["'val'", "train", "test"], ds.load_dataset, "smnist", "val")


# ---------------------------------------------------------------------------------------------------- sdigits

def test_sdigits_split_sizes_deterministic_and_documented():
    from sklearn.datasets import load_digits

    train, test = ds.load_dataset("sdigits", "train"), ds.load_dataset("sdigits", "test")
    assert train.x.shape == (1437, 64, 1) and test.x.shape == (360, 64, 1)
    assert train.scale == 1 / 16 and train.x.max() == 16 and 0 <= train.inputs().min() and train.inputs().max() == 1
    digits = load_digits()
    test_idx = np.sort(np.random.default_rng(ds.SDIGITS_SPLIT_SEED).permutation(1797)[:360])
    train_idx = np.setdiff1d(np.arange(1797), test_idx)
    assert np.array_equal(test.x[:, :, 0], digits.data[test_idx]) and np.array_equal(test.y, digits.target[test_idx])
    assert np.array_equal(train.x[:, :, 0], digits.data[train_idx])
    assert np.array_equal(train.y, digits.target[train_idx])
    again = ds.load_dataset("sdigits", "test", data_dir="/this/is/unused")
    assert np.array_equal(again.x, test.x)
    # recorded value: the split must not drift between versions
    assert test.meta["x_sha256"] == "e2442f640805bc5983eff496526684b03bd225807fd8a425ea364b972f2bb29f"


def test_train_val_split():
    tr, va = ds.train_val_split(100, 0.2, seed=3)
    assert len(va) == 20 and len(tr) == 80 and tr.dtype == va.dtype == np.int64
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(100))
    assert all(np.array_equal(a, b) for a, b in zip((tr, va), ds.train_val_split(100, 0.2, seed=3)))
    assert not np.array_equal(va, ds.train_val_split(100, 0.2, seed=4)[1])
    assert len(ds.train_val_split(10, 0.0, 0)[1]) == 0
    raises(["val_fraction", "[0, 1)"], ds.train_val_split, 10, 1.0, 0)
    raises(["n must be"], ds.train_val_split, -1, 0.1, 0)


# ---------------------------------------------------------------------------------------------------- CIFAR-10

def test_cifar_binary_layout_and_gray(tmp_path):
    written = write_cifar_bin(tmp_path / "cifar10")
    for split, (planes, labels) in written.items():
        d = ds.load_dataset("scifar", split, tmp_path)
        assert d.x.shape == (len(labels), 1024, 3) and d.x.dtype == np.uint8
        assert np.array_equal(d.x, planes.transpose(0, 2, 1)) and np.array_equal(d.y, labels)
        assert d.meta["format"] == "cifar10-bin" and d.meta["lossy"] is False
        gray = ds.load_dataset("scifar-gray", split, tmp_path)
        assert gray.x.shape == (len(labels), 1024, 1)
        r, g, b = planes.astype(np.int64).transpose(1, 0, 2)
        assert np.array_equal(gray.x[:, :, 0], (299 * r + 587 * g + 114 * b + 500) // 1000)
    assert len(ds.load_dataset("scifar", "train", tmp_path)) == 15  # five batch files of 3


def test_luma_values_round_half_up():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [7, 7, 7], [0, 0, 250], [255, 255, 255]]], np.uint8)
    # 76.245, 149.685, 29.07, 7, 28.5 (half: up, where float rint would give 28), 255
    assert ds.luma_u8(rgb)[0, :, 0].tolist() == [76, 150, 29, 7, 29, 255]


def test_cifar_binary_bad_files(tmp_path):
    write_cifar_bin(tmp_path)  # directly in the data directory is accepted too
    folder = tmp_path / "cifar-10-batches-bin"
    test_batch = folder / "test_batch.bin"
    good = test_batch.read_bytes()
    test_batch.write_bytes(good[:-1])
    raises([str(test_batch), str(len(good) - 1), "3073"], ds.load_dataset, "scifar", "test", tmp_path)
    bad = bytearray(good)
    bad[3073] = 10  # label byte of the second record
    test_batch.write_bytes(bytes(bad))
    raises([str(test_batch), "label 10 at index 1"], ds.load_dataset, "scifar-gray", "test", tmp_path)
    (folder / "data_batch_3.bin").unlink()
    raises([str(folder), "data_batch_3.bin", "missing"], ds.load_dataset, "scifar", "train", tmp_path)


@pytest.mark.parametrize("top", ["", "CIFAR-10-images"])
def test_cifar_png_tree_exact_and_cached(tmp_path, top):
    root = tmp_path / "cifar10" / top if top else tmp_path / "cifar10"
    written = write_tree(root, per_class=2)
    first = ds.load_dataset("scifar", "test", tmp_path)
    x, y = written["test"]
    assert np.array_equal(first.x, x) and np.array_equal(first.y, y)
    assert first.meta["format"] == "image-tree" and first.meta["lossy"] is False and not first.meta["cache_hit"]
    assert Path(first.meta["cache"]).is_file() and Path(first.meta["cache"]).parent == tmp_path / "user-cache"
    assert not list(tmp_path.glob("cifar10/**/*.npz"))  # nothing written into the data folder
    second = ds.load_dataset("scifar", "test", tmp_path)
    assert second.meta["cache_hit"] and np.array_equal(second.x, x) and np.array_equal(second.y, y)
    # an edited image changes the tree's fingerprint: decoded again, not served stale from the cache
    new = np.full((32, 32, 3), 9, np.uint8)
    Image.fromarray(new).save(root / "test" / "bird" / "0001.png")
    third = ds.load_dataset("scifar", "test", tmp_path)
    assert not third.meta["cache_hit"] and np.array_equal(third.x[5], new.reshape(1024, 3))


def test_cifar_jpeg_tree_is_marked_lossy(tmp_path):
    written = write_tree(tmp_path / "cifar10", per_class=1, fmt="jpg", classes=CLASSES[:3])
    d = ds.load_dataset("scifar", "train", tmp_path)
    assert d.meta["lossy"] is True and d.meta["n_jpeg"] == 3 and "not bit-comparable" in d.meta["lossy_note"]
    assert d.y.tolist() == [0, 1, 2]
    assert np.abs(d.x.astype(int) - written["train"][0]).mean() < 60  # decoded, not garbage (noise JPEGs are poor)


def test_cifar_tree_bad_class_folder_and_bad_image(tmp_path):
    root = tmp_path / "cifar10"
    write_tree(root, per_class=1, classes=CLASSES[:2])
    (root / "train" / "automobiles").mkdir()
    raises([str(root / "train" / "automobiles"), "'automobiles'", "airplane"], ds.load_dataset, "scifar", "train",
           tmp_path)
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(root / "test" / "bird.png")  # not in a class folder: ignored
    bad = root / "test" / "bird"
    bad.mkdir()
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(bad / "0000.png")
    raises([str(bad / "0000.png"), "32x16", "32x32"], ds.load_dataset, "scifar", "test", tmp_path)
    (bad / "0000.png").write_bytes(b"not an image")
    raises([str(bad / "0000.png"), "cannot decode"], ds.load_dataset, "scifar", "test", tmp_path)


def test_cifar_tar_decoded_once_then_from_cache(tmp_path, monkeypatch):
    written = write_tree(tmp_path / "tree", per_class=1)
    tar = write_tar(tmp_path / "data" / "cifar10" / "images.tar.gz", tmp_path / "tree", top="CIFAR-10-images-main",
                    extra=[("CIFAR-10-images-main/README.md", tarfile.REGTYPE, b"readme")])
    digest = hashlib.sha256(tar.read_bytes()).hexdigest()
    first = ds.load_dataset("scifar", "train", tmp_path / "data")
    assert np.array_equal(first.x, written["train"][0]) and np.array_equal(first.y, written["train"][1])
    assert first.meta["format"] == "image-tar" and first.meta["sha256"] == {"images.tar.gz": digest}
    assert not first.meta["cache_hit"] and digest[:16] in Path(first.meta["cache"]).name

    def no_decoding(path):
        raise AssertionError("the archive was decoded again despite the cache")

    monkeypatch.setattr(datafiles, "_decode_tar", no_decoding)
    for split in ds.SPLITS:  # one pass decoded and cached both splits
        again = ds.load_dataset("scifar", split, tmp_path / "data")
        assert again.meta["cache_hit"] and np.array_equal(again.x, written[split][0])
    assert np.array_equal(ds.load_dataset("scifar-gray", "test", tmp_path / "data").x, ds.luma_u8(written["test"][0]))


@pytest.mark.parametrize("name,kind,what", [("../evil.png", tarfile.REGTYPE, "'..'"),
                                            ("train/../../evil.png", tarfile.REGTYPE, "'..'"),
                                            ("/tmp/evil.png", tarfile.REGTYPE, "absolute path"),
                                            ("train/cat/link.png", tarfile.SYMTYPE, "link")])
def test_cifar_tar_with_unsafe_member_is_refused(tmp_path, name, kind, what):
    write_tree(tmp_path / "tree", per_class=1, classes=CLASSES[:1])
    tar = write_tar(tmp_path / "data" / "cifar10" / "x.tar.gz", tmp_path / "tree", extra=[(name, kind, png_bytes())])
    raises([str(tar), "refusing", repr(name), what], ds.load_dataset, "scifar", "train", tmp_path / "data")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "data" / "evil.png").exists()
    assert not list((tmp_path / "data" / "cifar10").glob(".s4dconf-cache/*.npz"))  # nothing cached


def test_cifar_corrupt_tar(tmp_path):
    tar = write_tar(tmp_path / "cifar10" / "x.tar.gz", extra=[("train/cat/0.png", tarfile.REGTYPE, png_bytes())])
    tar.write_bytes(tar.read_bytes()[:40])
    raises([str(tar), "cannot read the archive"], ds.load_dataset, "scifar", "train", tmp_path)


def test_cifar_cache_goes_to_the_user_cache_folder_never_the_data_folder(tmp_path, monkeypatch):
    write_tree(tmp_path / "tree", per_class=1, classes=CLASSES[:1])
    folder = tmp_path / "data" / "cifar10"
    write_tar(folder / "x.tar.gz", tmp_path / "tree")
    monkeypatch.delenv(datafiles.CACHE_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = ds.load_dataset("scifar", "test", tmp_path / "data")
    assert Path(d.meta["cache"]).parent == tmp_path / "xdg" / "s4dconf" and Path(d.meta["cache"]).is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["x.tar.gz"]  # the data folder is read, never written


def test_cifar_python_version_is_never_unpickled(tmp_path):
    class Trap:
        def __reduce__(self):  # unpickling this would create the marker file
            return open, (str(tmp_path / "unpickled"), "w")

    write_file(tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1", pickle.dumps(Trap(), protocol=2))
    raises([str(tmp_path / "cifar10" / "cifar-10-batches-py"), "python version", "not supported", "arbitrary code",
            "cifar-10-batches-bin"], ds.load_dataset, "scifar", "train", tmp_path, exc=ds.DatasetNotFound)
    assert not (tmp_path / "unpickled").exists()


def test_missing_cifar_lists_places_and_layout(tmp_path):
    raises([str(tmp_path / "cifar10"), str(tmp_path), "cifar-10-batches-bin", "train/<class>", ".tar.gz",
            "S4DCONF_DATA", "--data-dir"], ds.load_dataset, "scifar-gray", "test", tmp_path, exc=ds.DatasetNotFound)


# ------------------------------------------------------------------------------------------------------- CLI

def test_cli_data_list_and_show(tmp_path, capsys):
    written = write_mnist(tmp_path / "mnist")
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert rows["smnist"].split()[1:6] == ["784", "x", "1", "6", "4"]
    assert rows["sdigits"].split()[4:6] == ["1437", "360"]
    # the table wraps long cells at 100 columns: compare without the line breaks
    assert "not found; looked in" in rows["scifar"] and str(tmp_path / "cifar10") in re.sub(r"\s+", "", out)
    assert main(["data", "show", "psmnist", "--split", "test", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    hist = " ".join(map(str, np.bincount(written["test"][1], minlength=10)))
    assert [line.split()[2:] for line in out.splitlines() if line.startswith("label histogram")] == [hist.split()]
    assert f"{written['test'][0].mean() / 255:.4f}" in out and ds.psmnist_permutation_sha256() in out


def test_cli_data_errors(tmp_path, capsys):
    assert main(["data", "show", "cifar"]) == 2
    assert "unknown dataset 'cifar'" in capsys.readouterr().err
    assert main(["data", "show", "smnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(tmp_path / "mnist") in err
    write_mnist(tmp_path)
    (tmp_path / datafiles._MNIST_FILES["test"][0]).write_bytes(b"\0\0\x08\x03")
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 2  # a broken file is an error, not "not found"
    assert "error:" in capsys.readouterr().out


def _tree_state(root: Path) -> dict:
    """Every path under root with its size, mtime and sha256: what a command that only reads leaves unchanged."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns,
                                       hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def _write_cifar_source(data: Path, tmp_path: Path, source: str) -> None:
    if source == "bin":
        write_cifar_bin(data / "cifar10", per_file=2)
    elif source == "png-tree":
        write_tree(data / "cifar10" / "CIFAR-10-images", per_class=1, classes=CLASSES[:3])
    else:
        write_tree(tmp_path / "tree", per_class=1, fmt="jpg", classes=CLASSES[:3])
        write_tar(data / "cifar10" / "images.tar.gz", tmp_path / "tree", top="CIFAR-10-images-main")


@pytest.mark.parametrize("source,train,test,lossy", [("bin", 10, 2, False), ("png-tree", 3, 3, False),
                                                     ("jpeg-tar", 3, 3, True)])
def test_survey_counts_what_a_full_read_loads(tmp_path, source, train, test, lossy):
    write_mnist(tmp_path / "mnist", n={"train": 7, "test": 3}, gz=True)
    _write_cifar_source(tmp_path, tmp_path, source)
    for name in ds.DATASETS:
        for split in ds.SPLITS:
            n, meta = ds.survey_dataset(name, split, tmp_path)
            full = ds.load_dataset(name, split, tmp_path)
            assert n == len(full) and meta["lossy"] is full.meta["lossy"] and meta["source"] == full.meta["source"]
            assert meta["format"] == full.meta["format"]
    assert [ds.survey_dataset("scifar", s, tmp_path)[0] for s in ds.SPLITS] == [train, test]
    assert ds.survey_dataset("scifar-gray", "test", tmp_path)[1]["lossy"] is lossy


@pytest.mark.parametrize("source", ["bin", "png-tree", "jpeg-tar"])
def test_cli_data_list_only_reads(tmp_path, monkeypatch, capsys, source):
    """`data list` reports sizes, source and the lossy flag from headers, names and sizes: no image is decoded, no
    idx file parsed whole, no cache read or written, nothing changes under the data folder or the cache folder
    (the data folder may be shared or mounted read-only; the autouse fixture points the cache into tmp_path)."""
    data = tmp_path / "data"
    write_mnist(data / "mnist", n={"train": 7, "test": 3}, gz=True)
    _write_cifar_source(data, tmp_path, source)
    before = _tree_state(tmp_path)

    def full_read(*args, **kw):
        raise AssertionError("`data list` did a full read (decoded, parsed whole or used the cache)")

    for name in ("_decode_image", "_decode_tar", "_parse_idx", "_load_cifar_bin", "_load_image_tree",
                 "_load_image_tar", "_read_cache", "_write_cache", "atomic_write", "sha256_file"):
        monkeypatch.setattr(datafiles, name, full_read)
    for name in ("load_mnist_arrays", "load_cifar_rgb_arrays"):
        monkeypatch.setattr(ds, name, full_read)
    assert main(["data", "list", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert rows["smnist"].split()[4:6] == ["7", "3"] and rows["psmnist"].split()[4:6] == ["7", "3"]
    train, test = {"bin": ("10", "2")}.get(source, ("3", "3"))
    assert rows["scifar"].split()[4:6] == rows["scifar-gray"].split()[4:6] == [train, test]
    assert ("(lossy: JPEG)" in out) is (source == "jpeg-tar")
    assert _tree_state(tmp_path) == before and not (tmp_path / "user-cache").exists()


@pytest.mark.parametrize("damage,expected", [
    ("magic", ["wrong magic number", "2051"]),
    ("short", ["too short for an idx images (idx3) header"]),
    ("plain-truncated", ["truncated or has trailing bytes"]),
    ("count", ["6 images", "5 labels"]),
])
def test_survey_sees_what_the_headers_show(tmp_path, damage, expected):
    write_mnist(tmp_path)
    img = _images_path(tmp_path)
    good = img.read_bytes()
    if damage == "magic":
        img.write_bytes((1234).to_bytes(4, "big") + good[4:])
    elif damage == "short":
        img.write_bytes(good[:10])
    elif damage == "plain-truncated":
        img.write_bytes(good[:-1])
    else:
        (tmp_path / datafiles._MNIST_FILES["train"][1]).write_bytes(idx_bytes(np.zeros(5, np.uint8),
                                                                              datafiles.IDX_LABELS_MAGIC))
    raises([str(img), *expected], ds.survey_dataset, "smnist", "train", tmp_path)


def test_survey_of_cifar_bin_checks_record_sizes(tmp_path):
    write_cifar_bin(tmp_path)
    batch = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    batch.write_bytes(batch.read_bytes()[:-1])
    raises([str(batch), "3073"], ds.survey_dataset, "scifar", "test", tmp_path)


@pytest.mark.slow  # the CIFAR archive's 60,023 member headers: about 6 s of CPU
def test_real_data_list_reads_only(tmp_path, capsys):
    """The shared data folder (read-only on these machines): sizes from its README, and no cache written."""
    dirs = [d for d in ds.DEFAULT_DATA_DIRS if (d / "mnist").is_dir() and (d / "cifar10").is_dir()]
    if not dirs:
        pytest.skip(f"real data not found (looked in {', '.join(map(str, ds.DEFAULT_DATA_DIRS))}); set "
                    f"{ds.ENV_VAR} to the data directory to run this check")
    before = _tree_state(dirs[0])
    assert main(["data", "list", "--data-dir", str(dirs[0])]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.split()}
    assert rows["smnist"][4:6] == ["60000", "10000"] and rows["scifar"][4:6] == ["50000", "10000"]
    assert _tree_state(dirs[0]) == before and not (tmp_path / "user-cache").exists()


# -------------------------------------------------------------------------------- real data (skip when absent)

def _real(load, *args) -> ds.SequenceDataset:
    try:
        return load(*args)
    except ds.DatasetNotFound as e:
        pytest.skip(f"real data not found (looked in {', '.join(map(str, e.looked_in))}); set {ds.ENV_VAR} to the "
                    "data directory to run this check")


# from the data README (equal to the official MNIST files)
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def test_real_mnist_sanity_values():
    train, test = _real(ds.load_dataset, "smnist", "train"), _real(ds.load_dataset, "smnist", "test")
    assert train.x.shape == (60000, 784, 1) and test.x.shape == (10000, 784, 1) and train.x.dtype == np.uint8
    assert np.bincount(train.y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert round(float(test.x.mean()) * test.scale, 4) == 0.1325
    assert round(float(train.x.mean()) * train.scale, 4) == 0.1307
    assert {**train.meta["sha256"], **test.meta["sha256"]} == MNIST_SHA256


def test_real_psmnist_is_permuted_smnist():
    s, p = _real(ds.load_dataset, "smnist", "test"), _real(ds.load_dataset, "psmnist", "test")
    assert np.array_equal(p.x, s.x[:, ds.psmnist_permutation()]) and np.array_equal(p.y, s.y)
    assert p.meta["permutation_sha256"] == ds.psmnist_permutation_sha256()


def test_real_cifar_exact_subset():
    d = _real(ds.load_cifar10_exact_subset)
    assert d.x.shape == (4000, 1024, 3) and d.meta["lossy"] is False
    assert np.bincount(d.y).tolist() == [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]
    gray = ds.load_cifar10_exact_subset(gray=True)
    assert gray.x.shape == (4000, 1024, 1) and np.array_equal(gray.x, ds.luma_u8(d.x))
