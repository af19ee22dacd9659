"""Training, QAFT and the shipped models (SPEC.md sections 17-18): smoke training, QAFT == numpy-fxp bit for bit,
the shipped models' accuracy, and the bad inputs of training (NaN loss, foreign checkpoints, CUDA without CUDA)."""
from __future__ import annotations

import dataclasses
import fractions
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: the torch backends and training need it")

from s4dconf.backends import get_backend  # noqa: E402
from s4dconf.fixedpoint.engine import run_fxp  # noqa: E402
from s4dconf.backends.torch_backends import choose_device  # noqa: E402
from s4dconf.backends.torch_model import TorchS4D  # noqa: E402
from s4dconf.reference.config import ModelConfig, get_config  # noqa: E402
from s4dconf.fixedpoint.formats import FxpFormat, fxp_digest, load_fxp  # noqa: E402
from s4dconf.reference.model import S4DModel  # noqa: E402
from s4dconf.reference.modelfile import load_model, load_record, params_digest  # noqa: E402
from s4dconf.fixedpoint.quantize import quantize  # noqa: E402
from s4dconf.reference.validate import S4DInputError  # noqa: E402
from s4dconf.training import train as train_mod  # noqa: E402
from s4dconf.fixedpoint.formats import read_model_file  # noqa: E402
from s4dconf.training.accuracy import measure, shipped_model  # noqa: E402
from s4dconf.training.datasets import DatasetNotFound, load_dataset  # noqa: E402
from s4dconf.training.qaft import QaftScales, export_fxp, qaft_forward  # noqa: E402
from s4dconf.training.recipes import get_recipe  # noqa: E402
from s4dconf.training.train import TrainingError, TrainSpec, train  # noqa: E402

TINY_DIGITS = ModelConfig(name="tiny-digits", H=8, P=4, n_layers=1)


def _smoke_spec(**kw) -> TrainSpec:
    return TrainSpec(dataset="sdigits", config=TINY_DIGITS, epochs=3, batch_size=64, lr=1e-2, warmup_steps=5,
                     val_fraction=0.1, **kw)


def test_training_smoke_loss_falls(tmp_path):
    """A few epochs of a tiny model on sdigits: the mean training loss falls epoch over epoch, files are written."""
    rec = train(_smoke_spec(), tmp_path / "m.npz", checkpoint=tmp_path / "m.ckpt", progress=False)
    losses = [h["train_loss"] for h in rec["history"]]
    assert losses[-1] < losses[0] - 0.05, losses
    model = load_model(tmp_path / "m.npz")
    assert load_record(tmp_path / "m.npz")["params_sha256"] == params_digest(model)
    assert rec["steps_done"] == 3 * int(np.ceil(rec["n_train"] / 64))


def _poison_after(monkeypatch, n_calls):
    """Make the float forward pass return NaN logits after n_calls training batches (an interrupted run)."""
    calls = {"n": 0}
    real = train_mod.conv_forward

    def poisoned(module, x):
        calls["n"] += 1
        out = real(module, x)
        return out * float("nan") if calls["n"] > n_calls and module.training else out

    monkeypatch.setattr(train_mod, "conv_forward", poisoned)


def test_resume_after_an_interruption_ends_where_one_run_ends(tmp_path, monkeypatch):
    """3 epochs in one go == 2 epochs, a failure, and a resume from the checkpoint (same batches and updates)."""
    whole = train(_smoke_spec(), tmp_path / "a.npz", progress=False)
    steps_per_epoch = whole["steps_done"] // 3
    ck = tmp_path / "b.ckpt"
    with monkeypatch.context() as m:
        _poison_after(m, 2 * steps_per_epoch)
        with pytest.raises(TrainingError):
            train(_smoke_spec(), tmp_path / "b.npz", checkpoint=ck, progress=False)
    resumed = train(_smoke_spec(), tmp_path / "b.npz", checkpoint=ck, resume=True, progress=False)
    assert resumed["epochs_done"] == 3 and resumed["steps_done"] == whole["steps_done"]
    a, b = load_model(tmp_path / "a.npz"), load_model(tmp_path / "b.npz")
    for k in a.params:
        np.testing.assert_allclose(b.params[k], a.params[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    ck = tmp_path / "m.ckpt"
    train(dataclasses.replace(_smoke_spec(), epochs=1), tmp_path / "m.npz", checkpoint=ck, progress=False)
    other = dataclasses.replace(_smoke_spec(), config=TINY_DIGITS.replace(H=16))
    with pytest.raises(TrainingError, match="tiny-digits.*sdigits|this config"):
        train(other, tmp_path / "o.npz", checkpoint=ck, resume=True, progress=False)


def test_checkpoint_with_code_objects_is_refused(tmp_path):
    """Checkpoints load with weights_only=True: a pickled object other than tensors/containers is refused."""
    ck = tmp_path / "evil.ckpt"
    torch.save({"schema": "s4dconf-checkpoint/1", "payload": fractions.Fraction(1, 3)}, ck)
    spec = _smoke_spec()
    with pytest.raises(TrainingError, match="weights-only"):
        train(spec, tmp_path / "o.npz", checkpoint=ck, resume=True, progress=False)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    ck = tmp_path / "m.ckpt"
    _poison_after(monkeypatch, int(np.ceil(1293 / 64)) + 1)  # NaN from the second batch of epoch 2
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 2.*checkpoint .*m\.ckpt \(epoch 1\)"):
        train(_smoke_spec(), tmp_path / "m.npz", checkpoint=ck, progress=False)
    saved = torch.load(ck, weights_only=True)
    assert json.loads(saved["state"])["epoch"] == 1
    assert not (tmp_path / "m.npz").exists()


def test_cuda_option_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error path is for machines without it")
    with pytest.raises(S4DInputError, match="no usable CUDA device"):
        choose_device("cuda")
    assert choose_device("auto") == "cpu"
    with pytest.raises(S4DInputError, match="not one of"):
        choose_device("tpu")


@pytest.mark.parametrize("rounding", ["floor", "half_up"])
@pytest.mark.parametrize("config", ["tiny", "small"])
def test_qaft_forward_equals_numpy_fxp_bit_for_bit(config, rounding):
    """The QAFT forward pass (float64 torch, STE) and numpy-fxp give the same integers on the exported model,
    also after a gradient step has moved the parameters (the export follows them)."""
    model = S4DModel.create(get_config(config), seed=3)
    scales = QaftScales.from_fxp(quantize(model, fmt=FxpFormat(rounding=rounding)))
    module = TorchS4D.from_reference(model, torch.float64)
    u = np.random.default_rng(1).uniform(-1, 1, (4, 48, 1))
    ut = torch.as_tensor(u)
    loss = qaft_forward(module, scales, ut).square().sum()
    loss.backward()
    grads = [p.grad for p in module.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0  # straight-through: gradients reach the parameters
    with torch.no_grad():
        for p in module.parameters():
            p -= 1e-3 * p.grad.sign()
        out = qaft_forward(module, scales, ut, all_steps=True).numpy()
    fxp = export_fxp(module, scales)
    ref = run_fxp(fxp, u)
    np.testing.assert_array_equal(out, ref.step_logits * 2.0 ** -fxp.out_exp)


# ------------------------------------------------------------------ shipped models

def _shipped(dataset):
    paths = {k: shipped_model(dataset, k) for k in ("float", "ptq", "qaft")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        pytest.fail(f"shipped model files missing: {missing}; rebuild with `s4dconf train {dataset} "
                    "--out-dir training/models`")
    return paths


SHIPPED = ("sdigits", "smnist", "psmnist", "scifar")  # the recipes whose float, PTQ and QAFT models training/models holds


def test_shipped_models_records_match_their_files():
    for dataset in SHIPPED:
        paths = _shipped(dataset)
        float_model = load_model(paths["float"])
        assert load_record(paths["float"])["params_sha256"] == params_digest(float_model)
        for kind in ("ptq", "qaft"):
            fxp = load_fxp(paths[kind])
            prov = fxp.provenance
            src = prov.get("source_params_sha256") or prov.get("start_params_sha256")
            assert src == params_digest(float_model), f"{kind} of {dataset} was not made from the shipped float model"
        assert fxp_digest(load_fxp(paths["qaft"])) != fxp_digest(load_fxp(paths["ptq"]))


def _accuracies(dataset, limit=None, stride=1):
    """float (reference), PTQ and QAFT (numpy-fxp) accuracy of the shipped models on the first `limit` test samples,
    or on every `stride`-th (a split ordered by class, sCIFAR's, needs the stride to see every class)."""
    paths = _shipped(dataset)
    ds = load_dataset(dataset, "test")
    if stride > 1:
        ds = dataclasses.replace(ds, x=ds.x[::stride], y=ds.y[::stride])
    out = {"float": measure(get_backend("reference"), read_model_file(paths["float"]).model, ds, limit).accuracy}
    for kind in ("ptq", "qaft"):
        out[kind] = measure(get_backend("numpy-fxp"), read_model_file(paths[kind]).model, ds, limit).accuracy
    return out


def test_shipped_sdigits_accuracy_on_the_full_test_split():
    """Issue targets: float >= 95 %, PTQ within 3 points of float, QAFT within 1 point (360 test digits)."""
    acc = _accuracies("sdigits")
    assert acc["float"] >= 0.95, acc
    assert acc["ptq"] >= acc["float"] - 0.03, acc
    assert acc["qaft"] >= acc["float"] - 0.01, acc


@pytest.mark.slow
@pytest.mark.parametrize("dataset, target", [("smnist", 0.97), ("psmnist", 0.92)])
def test_shipped_mnist_models_accuracy_on_a_test_subset(dataset, target):
    """The first 1,000 MNIST test digits (the full split is in reports/accuracy): float at least the recipe's target
    (smnist 97 %, psmnist 92 %: issue 12), PTQ within 3 points, QAFT within 1 point. Needs the MNIST files
    (S4DCONF_DATA or ../shared/data)."""
    try:
        acc = _accuracies(dataset, limit=1000)
    except DatasetNotFound as e:
        pytest.skip(f"MNIST not found: {str(e).splitlines()[0]}")
    assert acc["float"] >= target, acc
    assert acc["ptq"] >= acc["float"] - 0.03, acc
    assert acc["qaft"] >= acc["float"] - 0.01, acc


@pytest.mark.slow
def test_shipped_scifar_models_accuracy_on_a_stratified_test_subset():
    """Every 10th sCIFAR test image (1,000, 100 per class: the split is ordered by class, so its first 1,000 are all
    airplanes). Float at least 58 %: the recipe's target is 60 % on the full split (issue 12; measured 62.69 %),
    less 2 points for a 1,000-sample subset's spread (one standard error is 1.5 points at 60 %). PTQ within 3 points
    of float (the paper's "1 to 3 points"), QAFT no more than 1 point below PTQ (fine-tuning must not undo PTQ).
    Needs the CIFAR-10 files (S4DCONF_DATA or ../shared/data)."""
    try:
        acc = _accuracies("scifar", stride=10)
    except DatasetNotFound as e:
        pytest.skip(f"CIFAR-10 not found: {str(e).splitlines()[0]}")
    assert acc["float"] >= 0.58, acc
    assert acc["ptq"] >= acc["float"] - 0.03, acc
    assert acc["qaft"] >= acc["ptq"] - 0.01, acc


def test_recipes_name_their_datasets_and_configs():
    spec = get_recipe("smnist")
    assert spec.dataset == "smnist" and spec.config.d_input == 1
    with pytest.raises(S4DInputError, match="unknown recipe"):
        get_recipe("imagenet")
