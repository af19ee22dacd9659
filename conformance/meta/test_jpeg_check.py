"""The JPEG-versus-lossless check (SPEC.md 18.6, `s4dconf eval --jpeg-check`): pairing the two copies, refusing
copies that are not the same pictures, and the report's numbers against a computation by hand on a tiny data folder
with an untrained model of the scifar config."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from s4dconf.cli import main
from s4dconf.fixedpoint.engine import run_fxp
from s4dconf.fixedpoint.formats import load_fxp, save_fxp
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.config import ModelConfig
from s4dconf.reference.model import S4DModel, init_params
from s4dconf.reference.modelfile import load_model, save_model
from s4dconf.reference.validate import S4DInputError
from s4dconf.reports.report_inputs import LoadedInput
from s4dconf.reports.sections import jpeg_check_blocks
from s4dconf.training import datafiles
from s4dconf.training.datasets import SequenceDataset
from s4dconf.training.jpeg_check import check_pairing, load_jpeg_check, pair_jpeg_copies, psnr_db

CLASSES = datafiles.CIFAR10_CLASSES
# the lossless subset's labels, interleaved as in data_batch_1 (classes 0..3 only)
LABELS = [3, 0, 3, 1, 0, 2, 2, 3, 1, 0, 3, 3, 1, 2, 0, 0, 1, 3, 2, 1, 0, 3]
EXTRA = 2  # further JPEG images per class after the subset's (the rest of the training set)


def _picture(rng) -> np.ndarray:
    """A smooth 32x32 RGB picture, one hue in 4x4 blocks of 8x8 pixels: its JPEG copy is above 30 dB PSNR, and
    pictures of different hues get different classes from an untrained model."""
    hue = rng.integers(0, 256, 3)
    return (np.kron(rng.uniform(0.6, 1.0, (4, 4, 1)), np.ones((8, 8, 1))) * hue).astype(np.uint8)


def _write_data(folder, swap_in_class: int | None = None, short_class: int | None = None) -> dict:
    """data folder: cifar10/exact-subset-4000 (PNG rows + labels) and cifar10/train/<class>/NNNN.jpg holding, per
    class, the subset's pictures of that class in order, then EXTRA others. Returns {jpeg path of image k}."""
    rng = np.random.default_rng(0)
    pics = [_picture(rng) for _ in LABELS]
    exact = folder / "cifar10" / "exact-subset-4000"
    exact.mkdir(parents=True)
    Image.fromarray(np.stack([p.reshape(1024, 3) for p in pics])).save(exact / "cifar10_batch_0.png")
    np.save(exact / "labels_uint8.npy", np.array(LABELS, np.uint8))
    where = {}
    for c in sorted(set(LABELS)):
        mine = [k for k, y in enumerate(LABELS) if y == c]
        if c == swap_in_class:
            mine[0], mine[1] = mine[1], mine[0]
        if c == short_class:
            mine = mine[:-1]
        files = [pics[k] for k in mine] + [_picture(rng) for _ in range(EXTRA)]
        d = folder / "cifar10" / "train" / CLASSES[c]
        d.mkdir(parents=True)
        for i, pic in enumerate(files):
            Image.fromarray(pic).save(d / f"{i:04d}.jpg", quality=75)
            if i < len(mine):
                where[mine[i]] = d / f"{i:04d}.jpg"
    return where


def _models(folder, data_images) -> dict:
    """An untrained float model of the scifar config's shape (d_input 3), its PTQ, and a second fixed-point model
    (as "qaft") quantised with another calibration: three files, as the shipped scifar models."""
    cfg = ModelConfig(name="scifar-tiny", d_input=3, H=8, P=4, n_layers=1)
    model = S4DModel(cfg, init_params(cfg, 2))  # a seed whose predictions differ between pictures
    folder.mkdir()
    save_model(model, folder / "scifar-float.npz", {"dataset": "scifar"})
    save_fxp(quantize(model, data_images[:4]), folder / "scifar-ptq.npz")
    save_fxp(quantize(model, data_images[4:12], headroom_bits=2), folder / "scifar-qaft.npz")
    return {k: folder / f"scifar-{k}.npz" for k in ("float", "ptq", "qaft")}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv(datafiles.ENV_VAR, raising=False)
    monkeypatch.setenv(datafiles.CACHE_ENV_VAR, str(tmp_path / "cache"))
    return tmp_path


def _decode(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")).reshape(1024, 3) for p in paths]) / 255.0


def test_the_report_equals_a_computation_by_hand(env, capsys):
    data = env / "data"
    jpeg_of = _write_data(data)
    n = 20  # --limit: the first 20 of the 22 subset images
    lossless_u = np.asarray(Image.open(data / "cifar10/exact-subset-4000/cifar10_batch_0.png").convert("RGB"),
                            np.float64)[:n] / 255.0
    jpeg_u = _decode([jpeg_of[k] for k in range(n)])
    paths = _models(env / "models", lossless_u)
    rc = main(["eval", "--jpeg-check", "--models", str(env / "models"), "--data-dir", str(data), "--limit", str(n),
               "--out", str(env / "out")])
    assert rc == 0, capsys.readouterr()
    doc = json.loads((env / "out" / "jpeg_check.json").read_text())
    y = np.array(LABELS[:n])
    by_hand = {"float": lambda u: load_model(paths["float"]).forward(u).logits.argmax(axis=1)}
    for kind in ("ptq", "qaft"):
        by_hand[kind] = lambda u, k=kind: run_fxp(load_fxp(paths[k]), u).step_logits[:, -1].argmax(axis=1)
    assert doc["n"] == n and len(doc["rows"]) == 3
    spread, agreements = set(), []
    for row in doc["rows"]:
        a, b = by_hand[row["kind"]](lossless_u), by_hand[row["kind"]](jpeg_u)
        assert row["backend"] == ("reference" if row["kind"] == "float" else "numpy-fxp")
        assert row["agreement"] == pytest.approx(np.mean(a == b), abs=0)
        assert row["accuracy_lossless"] == pytest.approx(np.mean(a == y), abs=0)
        assert row["accuracy_jpeg"] == pytest.approx(np.mean(b == y), abs=0)
        spread |= set(a)
        agreements.append(np.mean(a == b))
    # the fixture is not degenerate: several classes are predicted, and the JPEG loss flips some prediction
    assert len(spread) > 2 and min(agreements) < 1
    md = (env / "out" / "jpeg_check.md").read_text()
    assert "same 20 CIFAR-10 training images" in md and md.count("| scifar |") == 3
    assert doc["pairing"]["labels_equal"] and doc["pairing"]["psnr_db"]["min"] >= 20
    # the report's accuracy section shows it next to the accuracy table it sits beside
    blocks = jpeg_check_blocks(LoadedInput(data={}, path=str(env / "out" / "accuracy.json")))
    assert any("JPEG versus lossless" in getattr(b, "text", "") for b in blocks)


def test_copies_out_of_order_are_refused(env, capsys):
    data = env / "data"
    _write_data(data, swap_in_class=3)  # two class-3 pictures swapped among the JPEG files
    _models(env / "models", np.random.default_rng(1).random((12, 1024, 3)))
    rc = main(["eval", "--jpeg-check", "--models", str(env / "models"), "--data-dir", str(data), "--out",
               str(env / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "not the same pictures" in err and "dB PSNR" in err and "image 0" in err
    assert not (env / "out" / "jpeg_check.json").exists()


def test_a_class_with_too_few_jpeg_images_is_refused():
    with pytest.raises(S4DInputError, match="2 images of class 1, the lossless subset 3"):
        pair_jpeg_copies(np.array([1, 0, 1, 1]), np.array([0, 0, 1, 1, 2]))
    assert pair_jpeg_copies(np.array([1, 0, 1]), np.array([0, 0, 1, 1, 2])).tolist() == [2, 0, 3]


def test_pairing_statistics_and_label_mismatch():
    x = np.random.default_rng(0).integers(0, 256, (3, 1024, 3), dtype=np.uint8)
    y = np.array([0, 1, 2])
    same = SequenceDataset("scifar", "train", x, y, 1 / 255)
    assert check_pairing(same, same)["identical_pairs"] == 3
    off = x.astype(np.int16)
    off[0, 0, 0] += 1 if off[0, 0, 0] < 255 else -1  # one level at one pixel: MSE 1/3072
    assert psnr_db(x, off.astype(np.uint8))[0] == pytest.approx(10 * np.log10(255 ** 2 * 3072))
    with pytest.raises(S4DInputError, match="1 labels differ"):
        check_pairing(same, SequenceDataset("scifar", "train", x, np.array([0, 1, 3]), 1 / 255))


def test_jpeg_check_flags_and_files_are_checked(env, capsys):
    rc = main(["eval", "--jpeg-check", "--merge", str(env / "a.json"), "--out", str(env / "out")])
    assert rc == 2 and "no --merge or --backend" in capsys.readouterr().err
    (env / "models").mkdir()
    rc = main(["eval", "--jpeg-check", "--models", str(env / "models"), "--out", str(env / "out")])
    assert rc == 2 and "no model file of scifar" in capsys.readouterr().err
    bad = env / "jpeg_check.json"
    bad.write_text(json.dumps({"schema": "s4dconf-jpeg-check/1", "rows": []}))
    with pytest.raises(S4DInputError, match="malformed"):
        load_jpeg_check(bad)
