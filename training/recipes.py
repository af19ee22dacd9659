"""The shipped models' recipes (SPEC.md section 18): dataset, config and optimiser settings, one per model.

`s4dconf train RECIPE` retrains a shipped model from scratch; the README lists the commands and the times measured.
`paper-*` recipes are the paper's config, meant for a GPU.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from s4dconf.fixedpoint.formats import load_fxp, save_fxp
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.config import ModelConfig, get_config
from s4dconf.reference.modelfile import load_model
from s4dconf.reference.validate import S4DInputError

from .datasets import load_dataset
from .train import TrainSpec, train

RECIPES = {
    # 64 steps x 1; trains in about a minute on 2 CPU cores
    "sdigits": TrainSpec(dataset="sdigits", config=ModelConfig(name="sdigits", H=32, P=8, n_layers=2),
                         epochs=60, batch_size=32, lr=1e-2, ssm_lr=1e-3, warmup_steps=100, val_fraction=0.1),
    # 784 steps x 1; sized to train on 2 CPU cores in under an hour
    "smnist": TrainSpec(dataset="smnist", config=ModelConfig(name="smnist", H=64, P=16, n_layers=2),
                        epochs=10, batch_size=64, lr=4e-3, ssm_lr=1e-3, warmup_steps=300, val_fraction=1 / 12),
    # 784 permuted steps x 1; measured 240 samples/s on 2 CPU cores (training forward) before training; the 15
    # epochs then took 345-370 s each on a quiet machine (159 samples/s with the backward pass): ~90 min alone
    "psmnist": TrainSpec(dataset="psmnist", config=ModelConfig(name="psmnist", H=64, P=16, n_layers=2),
                         epochs=15, batch_size=64, lr=4e-3, ssm_lr=1e-3, warmup_steps=300, val_fraction=1 / 12),
    # 1024 steps x 3 (RGB, as the paper); measured 76 samples/s on 2 CPU cores: ~10 min an epoch alone
    "scifar": TrainSpec(dataset="scifar", config=ModelConfig(name="scifar", d_input=3, H=64, P=16, n_layers=3),
                        epochs=10, batch_size=64, lr=4e-3, ssm_lr=1e-3, warmup_steps=500, val_fraction=0.1),
    # the paper's config (H=128, P=32, 4 layers): for a GPU
    "paper-smnist": TrainSpec(dataset="smnist", config=get_config("paper").replace(name="paper-smnist"),
                              epochs=50, batch_size=64, lr=4e-3, ssm_lr=1e-3, warmup_steps=1000, val_fraction=1 / 12),
    "paper-psmnist": TrainSpec(dataset="psmnist", config=get_config("paper").replace(name="paper-psmnist"),
                               epochs=50, batch_size=64, lr=4e-3, ssm_lr=1e-3, warmup_steps=1000,
                               val_fraction=1 / 12),
    "paper-scifar": TrainSpec(dataset="scifar", config=get_config("paper").replace(name="paper-scifar", d_input=3),
                              epochs=100, batch_size=50, lr=4e-3, ssm_lr=1e-3, warmup_steps=1000, val_fraction=0.1),
}


def get_recipe(name: str) -> TrainSpec:
    try:
        return RECIPES[name]
    except KeyError:
        raise S4DInputError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None

# QAFT settings per recipe: a short fine-tuning from the float model, at a lower learning rate
QAFT_SETTINGS = {
    "sdigits": dict(epochs=5, lr=5e-4, ssm_lr=1e-4, warmup_steps=20),
    # batch 16: backpropagation through 784 integer steps keeps every step's float64 tensors (~5 GB at 16)
    "smnist": dict(epochs=1, max_steps=150, batch_size=16, lr=3e-4, ssm_lr=1e-4, warmup_steps=20),
    "psmnist": dict(epochs=1, max_steps=150, batch_size=16, lr=3e-4, ssm_lr=1e-4, warmup_steps=20),
    # 3 layers x 1024 steps: batch 12 keeps the float64 graph near 8 GB
    "scifar": dict(epochs=1, max_steps=200, batch_size=12, lr=3e-4, ssm_lr=1e-4, warmup_steps=20),
}
CALIBRATION_SAMPLES = 100  # PTQ calibration: this many training samples, drawn with PCG64(seed)


def qaft_spec(name: str) -> TrainSpec:
    return dataclasses.replace(get_recipe(name), **QAFT_SETTINGS.get(name, dict(epochs=1, max_steps=200, lr=3e-4,
                                                                                 ssm_lr=1e-4, warmup_steps=20)))


def calibration_inputs(spec: TrainSpec, data_dir=None):
    """PTQ calibration data: CALIBRATION_SAMPLES training sequences drawn with PCG64(seed), and their description."""
    ds = load_dataset(spec.dataset, "train", data_dir)
    idx = np.sort(np.random.default_rng(spec.seed).choice(len(ds.y), min(CALIBRATION_SAMPLES, len(ds.y)),
                                                          replace=False))
    return ds.inputs(idx), f"{len(idx)} {spec.dataset} training sequences drawn with PCG64({spec.seed})"


def make_models(name: str, out_dir, stages=("float", "ptq", "qaft"), data_dir=None, device: str = "cpu",
                resume: bool = False, progress: bool = True, **overrides) -> dict:
    """Train the float model, quantise it (PTQ) and fine-tune it (QAFT): `<out_dir>/<name>-<stage>.npz`, plus
    `<name>.log.json` with every stage's record. A later stage reads the earlier stages' files."""
    from .qaft import QaftScales  # deferred: qaft imports torch (the optional extra [torch])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {s: out / f"{name}-{s}.npz" for s in ("float", "ptq", "qaft")}
    log_path = out / f"{name}.log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    spec = dataclasses.replace(get_recipe(name), **overrides)
    if "float" in stages:
        log["float"] = train(spec, paths["float"], checkpoint=out / f"{name}-float.ckpt", resume=resume,
                             data_dir=data_dir, device=device, progress=progress)
    if "ptq" in stages:
        calib, what = calibration_inputs(spec, data_dir)
        fxp = quantize(load_model(paths["float"]), calib, calib_description=what)
        save_fxp(fxp, paths["ptq"])
        log["ptq"] = fxp.provenance
    if "qaft" in stages:
        qspec = dataclasses.replace(qaft_spec(name), **{k: v for k, v in overrides.items() if k != "epochs"})
        log["qaft"] = train(qspec, paths["qaft"], data_dir=data_dir, device=device, progress=progress,
                            start=load_model(paths["float"]), qaft=QaftScales.from_fxp(load_fxp(paths["ptq"])))
    log_path.write_text(json.dumps(log, indent=1, sort_keys=True, default=str) + "\n")
    return log
