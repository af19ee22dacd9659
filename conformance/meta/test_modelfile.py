"""Float64 model files: bit-exact round trip, reproducible bytes, a digest that sees every bit, plain npz."""
from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest

from s4dconf.reference.config import NAMED_CONFIGS, ModelConfig
from s4dconf.reference.model import S4DModel, param_shapes
from s4dconf.reference.modelfile import MODEL_SCHEMA, load_model, params_digest, save_model

VARIANTS = {
    "variant-lin": ModelConfig(name="variant-lin", d_input=3, H=5, P=3, n_layers=2, n_classes=4, init="lin",
                               discretization="bilinear", use_D=True, readout="mean", activation="identity",
                               dt_min=0.01, dt_max=0.5),
    "variant-inv": ModelConfig(name="variant-inv", d_input=2, H=3, P=4, n_layers=1, n_classes=3, init="inv",
                               discretization="bilinear", use_D=True, readout="mean", activation="identity"),
}
ALL_CONFIGS = {**NAMED_CONFIGS, **VARIANTS}


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_round_trip_is_bit_exact(tmp_path, name):
    cfg = ALL_CONFIGS[name]
    model = S4DModel.create(cfg, seed=3)
    path = tmp_path / f"{name}.npz"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.config == cfg
    assert sorted(loaded.params) == sorted(param_shapes(cfg))
    for key, a in model.params.items():
        assert _same_bits(loaded.params[key], a), key
    assert params_digest(loaded) == params_digest(model)
    u = np.random.default_rng(1).standard_normal((2, 12, cfg.d_input))
    assert np.array_equal(loaded.forward(u, mode="recurrent").step_logits, model.forward(u, mode="recurrent").step_logits)


def test_variants_really_differ_from_defaults():
    """The variant configs exercise the non-default branches that the round trip must preserve."""
    for cfg in VARIANTS.values():
        assert cfg.use_D and cfg.readout == "mean" and cfg.activation == "identity"
        assert cfg.discretization == "bilinear" and cfg.init in ("lin", "inv")
        assert any(k.endswith(".D") for k in param_shapes(cfg))


@pytest.mark.parametrize("name", ["tiny", "variant-lin"])
def test_same_model_gives_identical_bytes(tmp_path, monkeypatch, name):
    model = S4DModel.create(ALL_CONFIGS[name], seed=5)
    first, second, third = tmp_path / "a.npz", tmp_path / "b" / "a.npz", tmp_path / "c.npz"
    save_model(model, first)
    # a clock a year later: a writer that stamps the current time would change the bytes
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 366 * 86400)
    save_model(model, second)
    monkeypatch.undo()
    assert first.read_bytes() == second.read_bytes()
    save_model(load_model(first), third)  # a loaded model is saved to the same bytes too
    assert third.read_bytes() == first.read_bytes()


def test_different_models_give_different_bytes(tmp_path):
    save_model(S4DModel.create(NAMED_CONFIGS["tiny"], seed=0), tmp_path / "a.npz")
    save_model(S4DModel.create(NAMED_CONFIGS["tiny"], seed=1), tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() != (tmp_path / "b.npz").read_bytes()


def test_zip_members_are_sorted_with_fixed_times(tmp_path):
    path = tmp_path / "m.npz"
    save_model(S4DModel.create(NAMED_CONFIGS["tiny"]), path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert len({i.date_time for i in zf.infolist()}) == 1


def _flip_last_bit(a: np.ndarray, index) -> np.ndarray:
    b = a.copy()
    bits = b.view(np.uint64)
    bits[index] ^= np.uint64(1)
    return b


@pytest.mark.parametrize("name, index", [("layer0.log_dt", (2,)), ("layer0.C_im", (1, 1)), ("decoder.W", (0, 0))])
def test_digest_sees_one_bit(name, index):
    model = S4DModel.create(NAMED_CONFIGS["tiny"], seed=0)
    params = dict(model.params)
    params[name] = _flip_last_bit(params[name], index)
    assert params[name][index] != model.params[name][index]
    assert np.isclose(params[name][index], model.params[name][index], rtol=1e-15, atol=0)
    changed = S4DModel(model.config, params)
    assert params_digest(changed) != params_digest(model)
    assert params_digest(S4DModel.create(NAMED_CONFIGS["tiny"], seed=0)) == params_digest(model)


def test_digest_sees_the_config():
    cfg = NAMED_CONFIGS["tiny"]
    model = S4DModel.create(cfg, seed=0)
    other = S4DModel(cfg.replace(discretization="bilinear"), model.params)
    assert params_digest(other) != params_digest(model)


def test_plain_numpy_reads_the_file_without_pickle(tmp_path):
    cfg = VARIANTS["variant-lin"]
    model = S4DModel.create(cfg, seed=2)
    path = tmp_path / "m.npz"
    save_model(model, path)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(list(param_shapes(cfg)) + ["__schema__", "__config__"])
        assert str(data["__schema__"]) == MODEL_SCHEMA
        assert ModelConfig(**json.loads(str(data["__config__"]))) == cfg
        for key, a in model.params.items():
            assert _same_bits(data[key], a), key
