"""Training in convolution mode (SPEC.md section 18): AdamW with a separate S4D parameter group, linear warm-up then
cosine decay, a validation split from the training set, per-epoch checkpoints with resume, export to the float64
model file with the training record.

    loss = cross_entropy(logits at the last step, label)        (readout "last", the paper's streaming readout)
    lr(step) = lr * min(1, step / warmup) * (1 + cos(pi * step / total)) / 2

Checkpoints are plain dicts of tensors, numbers and strings, loaded with torch.load(weights_only=True).
"""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from s4dconf.fixedpoint.formats import save_fxp
from s4dconf.reference.config import ModelConfig
from s4dconf.reference.model import init_params
from s4dconf.reference.modelfile import params_digest, save_model
from s4dconf.reference.npzio import atomic_write
from s4dconf.reference.validate import S4DInputError

from .datasets import SequenceDataset, load_dataset, train_val_split

CHECKPOINT_SCHEMA = "s4dconf-checkpoint/1"


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, a checkpoint of another config); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    dataset: str
    config: ModelConfig
    epochs: int = 10
    batch_size: int = 64
    lr: float = 4e-3  # encoder, C, mixing and decoder weights (AdamW, weight decay)
    ssm_lr: float = 1e-3  # a_re, a_im, B, log_dt: no weight decay (as in S4D)
    weight_decay: float = 0.01
    warmup_steps: int = 200
    val_fraction: float = 0.1
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimiser steps (smoke tests)
    eval_batch: int = 500

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["config"] = json.loads(self.config.to_json())
        return d


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def conv_forward(module, x):
    """Last-step logits by the convolution mode (float training)."""
    return module.forward_last(x)


def accuracy_torch(module, ds: SequenceDataset, idx: np.ndarray, batch: int, forward=conv_forward) -> float:
    """Argmax accuracy of the last-step logits over ds[idx] (no gradient)."""
    import torch

    if len(idx) == 0:
        return float("nan")
    correct = 0
    p = next(module.parameters())  # the module's dtype and device (CUDA when training there)
    with torch.no_grad():
        for a in range(0, len(idx), batch):
            sel = idx[a:a + batch]
            logits = forward(module, torch.as_tensor(ds.inputs(sel), dtype=p.dtype, device=p.device))
            correct += int((logits.argmax(dim=1).cpu().numpy() == ds.y[sel]).sum())
    return correct / len(idx)


def _progress(epoch: int, epochs: int, done: int, total: int, loss: float, t0: float, stream=sys.stderr) -> None:
    """The training progress: on a terminal one bar line redrawn in place (tqdm's meter: batch of total, rate, time
    left); elsewhere (CI logs) one plain line when the epoch's last batch is done."""
    elapsed = time.perf_counter() - t0
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if terminal:
        from tqdm import tqdm

        stream.write("\r" + tqdm.format_meter(done, total, elapsed, ncols=100, prefix=f"epoch {epoch + 1}/{epochs}",
                                              unit="batch", postfix=f"loss {loss:.4f}"))
    elif done >= total:
        stream.write(f"epoch {epoch + 1}/{epochs}: batch {done}/{total}, loss {loss:.4f}, {elapsed:.0f} s "
                     f"({done / max(elapsed, 1e-9):.1f} batch/s)\n")
    stream.flush()


def train(spec: TrainSpec, out: str | Path, checkpoint: str | Path | None = None, resume: bool = False,
          data_dir=None, device: str = "cpu", progress: bool = True, start=None, qaft=None) -> dict:
    """Train, write the model file `out`, return the training record.

    checkpoint: path written after every epoch (the last good state); resume=True continues from it.
    start: an S4DModel to start from (default: init_params(config, seed)).
    qaft: QaftScales for quantisation-aware fine-tuning (training/qaft.py): float64 module, integer forward pass,
          and `out` is a fixed-point model file. None: float training in float32, `out` a float64 model file.
    """
    import torch  # deferred: torch is the optional extra [torch]

    from s4dconf.backends.torch_model import TorchS4D

    train_ds = _training_data(spec, data_dir)
    tr_idx, val_idx = train_val_split(len(train_ds.y), spec.val_fraction, spec.seed)
    torch.manual_seed(spec.seed)
    if start is not None and start.config != spec.config:
        raise TrainingError(f"the starting model has config {start.config.to_json()}, the recipe "
                            f"{spec.config.to_json()}")
    params = start.params if start is not None else init_params(spec.config, spec.seed)
    module = TorchS4D(spec.config, params, torch.float64 if qaft else torch.float32).to(device)
    forward = _qaft_forward(qaft) if qaft is not None else conv_forward
    opt, sched, steps_per_epoch, total = _optimizer(module, spec, len(tr_idx))
    state = {"epoch": 0, "step": 0, "history": []}
    if resume:
        if checkpoint is None or not Path(checkpoint).is_file():
            raise TrainingError(f"--resume needs an existing checkpoint, {checkpoint} not found")
        state = load_checkpoint(checkpoint, spec, module, opt, sched)
    rng = np.random.default_rng([spec.seed, 1])
    for _ in range(state["epoch"]):  # the shuffles of the epochs already done, so a resumed run sees the same order
        rng.permutation(len(tr_idx))
    t_start = time.perf_counter()
    while state["epoch"] < spec.epochs and state["step"] < total:
        t0 = time.perf_counter()
        epoch = _Epoch(module, forward, opt, sched, spec, state, total, checkpoint, progress)
        losses = epoch.run(train_ds, tr_idx[rng.permutation(len(tr_idx))], steps_per_epoch, device)
        module.eval()
        val_acc = accuracy_torch(module, train_ds, val_idx, spec.eval_batch, forward)
        state["history"].append({"epoch": state["epoch"] + 1, "steps": state["step"],
                                 "train_loss": float(np.mean(losses)) if losses else float("nan"),
                                 "val_accuracy": val_acc, "seconds": round(time.perf_counter() - t0, 1)})
        state["epoch"] += 1
        if progress:
            sys.stderr.write(f"\nepoch {state['epoch']}: train loss {state['history'][-1]['train_loss']:.4f}, "
                             f"val accuracy {val_acc:.4f}\n")
        if checkpoint is not None:
            save_checkpoint(checkpoint, spec, module, opt, sched, state)
    test_ds = load_dataset(spec.dataset, "test", data_dir)
    test_acc = accuracy_torch(module, test_ds, np.arange(len(test_ds.y)), spec.eval_batch, forward)
    record = {
        "kind": ("quantisation-aware fine-tuning (integer forward, float64, straight-through gradients)" if qaft
                 else "float training (convolution mode, float32)"),
        "dataset": spec.dataset, "dataset_meta": _jsonable(train_ds.meta),
        "spec": spec.to_json(), "epochs_done": state["epoch"], "steps_done": state["step"],
        "history": state["history"], "test_accuracy_training_forward": test_acc,
        "n_train": int(len(tr_idx)), "n_val": int(len(val_idx)), "n_test": int(len(test_ds.y)),
        "seconds": round(time.perf_counter() - t_start, 1), "device": device,
        "torch": torch.__version__, "git_commit": git_commit(),
    }
    return _export(module, out, record, start, qaft)


def _training_data(spec: TrainSpec, data_dir) -> SequenceDataset:
    cfg = spec.config
    ds = load_dataset(spec.dataset, "train", data_dir)
    if ds.d_input != cfg.d_input:
        raise S4DInputError(f"dataset {spec.dataset} has d_input={ds.d_input}, config {cfg.name!r} has "
                            f"d_input={cfg.d_input}")
    if ds.n_classes > cfg.n_classes:
        raise S4DInputError(f"dataset {spec.dataset} has {ds.n_classes} classes, config has {cfg.n_classes}")
    return ds


def _qaft_forward(qaft):
    from .qaft import qaft_forward  # deferred: qaft imports torch (optional extra)

    return lambda m, x: qaft_forward(m, qaft, x)


def _optimizer(module, spec: TrainSpec, n_train: int):
    """AdamW with two groups (S4D parameters: ssm_lr, no weight decay), warm-up + cosine; (opt, sched, steps per
    epoch, total steps)."""
    import torch

    ssm = set(module.ssm_parameter_names())
    groups = [
        {"params": [p for k, p in module.p.items() if k not in ssm], "lr": spec.lr, "weight_decay": spec.weight_decay},
        {"params": [p for k, p in module.p.items() if k in ssm], "lr": spec.ssm_lr, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups)
    steps_per_epoch = math.ceil(n_train / spec.batch_size)
    total = spec.epochs * steps_per_epoch
    if spec.max_steps is not None:
        total = min(spec.max_steps, total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, spec.warmup_steps, total))
    return opt, sched, steps_per_epoch, total


@dataclasses.dataclass
class _Epoch:
    """One pass over the shuffled training indices; stops early at `total` optimiser steps."""

    module: object
    forward: object
    opt: object
    sched: object
    spec: TrainSpec
    state: dict
    total: int
    checkpoint: object
    progress: bool

    def run(self, ds: SequenceDataset, order: np.ndarray, steps_per_epoch: int, device) -> list[float]:
        import torch
        import torch.nn.functional as F

        self.module.train()
        dtype = next(self.module.parameters()).dtype
        t0, losses, bs = time.perf_counter(), [], self.spec.batch_size
        for b in range(steps_per_epoch):
            if self.state["step"] >= self.total:
                break
            sel = order[b * bs:(b + 1) * bs]
            x = torch.as_tensor(ds.inputs(sel), dtype=dtype, device=device)
            loss = F.cross_entropy(self.forward(self.module, x), torch.as_tensor(ds.y[sel], device=device))
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss is {loss.item()} at epoch {self.state['epoch'] + 1}, step {self.state['step']} (lr "
                    f"{self.sched.get_last_lr()}); the last good state is the checkpoint {self.checkpoint} (epoch "
                    f"{self.state['epoch']}). Lower --lr/--ssm-lr and resume, or restart with another seed.")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            self.state["step"] += 1
            losses.append(loss.item())
            if self.progress and (b % 10 == 0 or b == steps_per_epoch - 1):
                _progress(self.state["epoch"], self.spec.epochs, b + 1, steps_per_epoch,
                          float(np.mean(losses[-50:])), t0)
        return losses


def _export(module, out, record: dict, start, qaft) -> dict:
    """Write the float64 model file (float training) or the fixed-point file (QAFT); the record gains the hashes."""
    model = module.to_reference()
    record["params_sha256"] = params_digest(model)
    if start is not None:
        record["start_params_sha256"] = params_digest(start)
    if qaft is not None:
        from .qaft import export_fxp  # deferred: qaft imports torch (optional extra)

        record["method"] = record["kind"]
        save_fxp(export_fxp(module, qaft, provenance=_jsonable(record)), out)
    else:
        save_model(model, out, record)
    return record


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def save_checkpoint(path, spec: TrainSpec, module, opt, sched, state: dict) -> None:
    import torch

    ck = {"schema": CHECKPOINT_SCHEMA, "config": spec.config.to_json(), "dataset": spec.dataset,
          "model": module.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
          "state": json.dumps(state)}
    # atomic: a crash while writing leaves the previous good checkpoint
    atomic_write(path, lambda f: torch.save(ck, f), "checkpoint", make_dirs=True)


def load_checkpoint(path, spec: TrainSpec, module, opt, sched) -> dict:
    """Restore module, optimiser and schedule; refuse a checkpoint of another config or dataset."""
    import torch

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file; all mean the same here
        raise TrainingError(f"checkpoint {path} cannot be read as a weights-only torch file: {e}") from None
    if not isinstance(ck, dict) or ck.get("schema") != CHECKPOINT_SCHEMA:
        raise TrainingError(f"{path} is not an s4dconf checkpoint (schema {CHECKPOINT_SCHEMA})")
    if ck["config"] != spec.config.to_json() or ck["dataset"] != spec.dataset:
        raise TrainingError(
            f"checkpoint {path} is of config {json.loads(ck['config']).get('name')!r} on {ck['dataset']!r} "
            f"({ck['config']}), this run is config {spec.config.name!r} on {spec.dataset!r}; use a checkpoint of "
            "this config or start without --resume")
    module.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    return json.loads(ck["state"])
