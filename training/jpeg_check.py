"""How much the JPEG loss matters (SPEC.md 18.6, `s4dconf eval --jpeg-check`): sCIFAR models run on the lossless
and on the JPEG copies of the same CIFAR-10 training images.

    lossless   <data>/cifar10/exact-subset-4000: data_batch_1[0:4000], bit-exact (datasets.load_cifar10_exact_subset)
    JPEG       the same pictures among the JPEG training files: image k of class c in the lossless subset is the
               r-th image of class c in the JPEG split, r = #{j < k : y_j = c} (the JPEG tree keeps the original
               order within a class; pair_jpeg_copies)
    per model  agreement = mean(pred_lossless == pred_jpeg), accuracy on each copy = mean(pred == y),
               pred = argmax of the last-step logits, float models on `reference`, fixed-point ones on `numpy-fxp`

The pairing is verified before anything runs: equal labels, and every pair at least MIN_PAIR_PSNR_DB apart in PSNR.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from s4dconf.backends import get_backend
from s4dconf.reference.npzio import read_text_file
from s4dconf.reference.validate import S4DInputError, json_object

from .accuracy import COLUMNS, KINDS, MODELS_DIR, check_limit, missing_model_note, predict, read_row_model
from .datasets import SequenceDataset, load_cifar10_exact_subset, load_dataset

SCHEMA = "s4dconf-jpeg-check/1"
NAME = "jpeg_check"  # <out>/jpeg_check.json and .md, next to accuracy.json
# Measured on the data folder's 4,000 pairs: the JPEG copy (quality 75) of the same picture is 23.1 to 39.6 dB PSNR
# from the original (median 30.5); the next picture of the same class is 3.3 to 18.3 dB. 20 dB separates them.
MIN_PAIR_PSNR_DB = 20.0


def pair_jpeg_copies(y_lossless: np.ndarray, y_jpeg: np.ndarray) -> np.ndarray:
    """int64 (n,): the index in the JPEG split of each lossless image: the r-th image of its class c there, where
    r counts the lossless images of class c before it. S4DInputError when a class has too few JPEG images."""
    idx = np.empty(len(y_lossless), np.int64)
    for c in np.unique(y_lossless):
        where_lossless = np.flatnonzero(y_lossless == c)
        where_jpeg = np.flatnonzero(y_jpeg == c)
        if len(where_jpeg) < len(where_lossless):
            raise S4DInputError(f"the JPEG training split has {len(where_jpeg)} images of class {c}, the lossless "
                                f"subset {len(where_lossless)}: not copies of the same pictures; use the data "
                                "folder's CIFAR-10 (README of the data folder)")
        idx[where_lossless] = where_jpeg[:len(where_lossless)]
    return idx


def psnr_db(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 (n,): per image 10 log10(255^2 / mean((a - b)^2)) of uint8 (n, L, C) arrays; inf where equal."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0 ** 2 / mse)


def check_pairing(lossless: SequenceDataset, jpeg: SequenceDataset) -> dict:
    """Verify that two datasets hold the same pictures in the same order: labels equal, every pair's PSNR at least
    MIN_PAIR_PSNR_DB. Returns the statistics; S4DInputError naming the first bad pair otherwise."""
    if lossless.x.shape != jpeg.x.shape:
        raise S4DInputError(f"the lossless and JPEG copies differ in shape: {lossless.x.shape} vs {jpeg.x.shape}")
    bad = np.flatnonzero(lossless.y != jpeg.y)
    if len(bad):
        raise S4DInputError(f"the lossless and JPEG copies are not the same pictures: {len(bad)} labels differ (first "
                            f"at image {bad[0]}: {lossless.y[bad[0]]} vs {jpeg.y[bad[0]]}); the data folder's JPEG "
                            "files are not in the original order within a class")
    p = psnr_db(lossless.x, jpeg.x)
    low = np.flatnonzero(p < MIN_PAIR_PSNR_DB)
    if len(low):
        raise S4DInputError(f"the lossless and JPEG copies are not the same pictures: {len(low)} of {len(p)} pairs are "
                            f"below {MIN_PAIR_PSNR_DB} dB PSNR (first: image {low[0]}, {p[low[0]]:.1f} dB; a JPEG copy "
                            "of the same picture is above 23 dB); the data folder's JPEG files are not in the original "
                            "order within a class")
    mad = np.abs(lossless.x.astype(np.int16) - jpeg.x.astype(np.int16)).reshape(len(p), -1).mean(axis=1)
    finite = p[np.isfinite(p)]
    return {"labels_equal": True, "min_pair_psnr_db_required": MIN_PAIR_PSNR_DB, "identical_pairs": int(len(p) -
            len(finite)), "psnr_db": {k: (round(float(f(finite)), 2) if len(finite) else None)
                                      for k, f in (("min", np.min), ("median", np.median), ("max", np.max))},
            "mean_abs_diff_levels": {"median": round(float(np.median(mad)), 3), "max": round(float(mad.max()), 3)}}


def load_pair(data_dir=None, limit: int | None = None) -> tuple[SequenceDataset, SequenceDataset]:
    """(lossless, JPEG): the first `limit` (default all 4,000) images of the exact subset and their JPEG copies."""
    lossless = load_cifar10_exact_subset(data_dir)
    n = len(lossless.y) if limit is None else min(limit, len(lossless.y))
    lossless = SequenceDataset("scifar", "train", lossless.x[:n], lossless.y[:n], lossless.scale, lossless.meta)
    train = load_dataset("scifar", "train", data_dir)
    idx = pair_jpeg_copies(lossless.y, train.y)
    meta = {k: v for k, v in train.meta.items() if k in ("format", "source", "lossy", "lossy_note", "order")}
    jpeg = SequenceDataset("scifar", "train", train.x[idx], train.y[idx], train.scale, {**meta, "index": "class, rank"})
    return lossless, jpeg


def compare_predictions(pred_lossless: np.ndarray, pred_jpeg: np.ndarray, y: np.ndarray) -> dict:
    """agreement (fraction of equal predictions) and the accuracy on each copy."""
    return {"agreement": float(np.mean(pred_lossless == pred_jpeg)),
            "accuracy_lossless": float(np.mean(pred_lossless == y)), "accuracy_jpeg": float(np.mean(pred_jpeg == y))}


def jpeg_check(models=("scifar",), models_dir=MODELS_DIR, data_dir=None, limit: int | None = None,
               progress=print) -> dict:
    """Run each `<model>-<kind>.npz` of models_dir on both copies; the report (JSON-ready). Every model file is read
    and the pairing verified before the first model runs."""
    limit = check_limit(limit)
    if isinstance(models, str) or not models:
        raise S4DInputError(f"models must be a non-empty list of model names (e.g. scifar), got {models!r}")
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise S4DInputError(f"models folder {models_dir} is not a folder; pass the folder of <model>-<kind>.npz "
                            "(--models)")
    paths = {(m, k): models_dir / f"{m}-{k}.npz" for m in dict.fromkeys(models) for k in KINDS}
    if not any(p.is_file() for p in paths.values()):
        raise S4DInputError(f"models folder {models_dir} has no model file of {', '.join(dict.fromkeys(models))} "
                            f"(looked for <model>-{{{','.join(KINDS)}}}.npz); train one (`s4dconf train scifar`)")
    lossless, jpeg = load_pair(data_dir, limit)
    files = {key: read_row_model(p, key[1], lossless) for key, p in paths.items() if p.is_file()}
    pairing = check_pairing(lossless, jpeg)
    n = len(lossless.y)
    rows = []
    for (model, kind), path in paths.items():
        row = {"model": model, "kind": kind, "model_file": path.name, "backend": COLUMNS[kind][0], "n": n}
        if (model, kind) not in files:
            rows.append({**row, "note": missing_model_note(model, path)})
            continue
        backend = get_backend(row["backend"])
        av = backend.availability()
        if not av.available:
            rows.append({**row, "note": f"not available: {av.reason}"})
            continue
        t0 = time.perf_counter()
        preds = [predict(backend, files[model, kind].model, d, n) for d in (lossless, jpeg)]
        row.update(model_sha256=files[model, kind].sha256, **compare_predictions(*preds, lossless.y),
                   seconds=round(time.perf_counter() - t0, 1))
        progress(f"{model} {kind:5s} {row['backend']:9s} agreement {row['agreement']:.4f}, accuracy lossless "
                 f"{row['accuracy_lossless']:.4f}, JPEG {row['accuracy_jpeg']:.4f} ({n} images, {row['seconds']} s)")
        rows.append(row)
    return {"schema": SCHEMA, "n": n, "pairing": pairing, "rows": rows,
            "lossless": {"source": lossless.meta["source"], "lossy": False, "images": f"data_batch_1[0:{n}]"},
            "jpeg": {k: jpeg.meta.get(k) for k in ("source", "format", "lossy")}}


def jpeg_check_markdown(doc: dict) -> str:
    p = doc["pairing"]
    psnr = p["psnr_db"]
    lines = [f"## JPEG versus lossless: sCIFAR models on the same {doc['n']:,} CIFAR-10 training images", "",
             f"Lossless: `{doc['lossless']['images']}` (the data folder's exact subset); JPEG: their copies among "
             f"the JPEG training files (lossy: {doc['jpeg'].get('lossy')}), paired by class and order within the "
             f"class and verified: labels equal, PSNR {psnr['min']} / {psnr['median']} / {psnr['max']} dB "
             f"(min / median / max; every pair must be at least {p['min_pair_psnr_db_required']} dB). These are "
             "training images: the accuracies say how much the JPEG loss moves a prediction, not test accuracy. "
             "Float models on `reference`, fixed-point models on `numpy-fxp`.", "",
             "| model | kind | backend | sha256 | agreement | accuracy lossless | accuracy JPEG | JPEG - lossless |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        if "agreement" not in r:
            lines.append(f"| {r['model']} | {r['kind']} | {r['backend']} | missing | n/m: {r.get('note', '')} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['kind']} | {r['backend']} | {r['model_sha256'][:12]} | "
                     f"{100 * r['agreement']:.2f} % | {100 * r['accuracy_lossless']:.2f} % | "
                     f"{100 * r['accuracy_jpeg']:.2f} % | "
                     f"{100 * (r['accuracy_jpeg'] - r['accuracy_lossless']):+.2f} points |")
    return "\n".join(lines) + "\n"


def write_jpeg_check(doc: dict, out_dir) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    j, m = out_dir / f"{NAME}.json", out_dir / f"{NAME}.md"
    j.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    m.write_text(jpeg_check_markdown(doc))
    return j, m


def load_jpeg_check(path) -> dict:
    """Read a jpeg_check.json and check its shape (what jpeg_check_markdown reads); S4DInputError naming the file."""
    doc = json_object(read_text_file(Path(path), "JPEG check file"), f"JPEG check file {path}")
    if doc.get("schema") != SCHEMA:
        raise S4DInputError(f"JPEG check file {path} has schema {doc.get('schema')!r}, this reader needs {SCHEMA!r}")
    try:
        jpeg_check_markdown(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise S4DInputError(f"JPEG check file {path} is malformed ({type(e).__name__}: {e}); write it again with "
                            "`s4dconf eval --jpeg-check`") from None
    return doc
