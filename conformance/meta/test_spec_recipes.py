"""SPEC.md alone reproduces the goldens (issue 13, point 6): each recipe the spec pins is written again here from
the spec's text, with numpy and hashlib only, and compared with what s4dconf computes and with the stored goldens.

    section 7      params_sha256: canonical config JSON, then per array (name order) "<name>|<f8|<shape>" + bytes
    section 2.2    LegS: zheevd on the lower triangle of H = -iK, keep the w > 0 ascending, pin phases, B = V^H b
    section 9      spikes: (x >> 11)·2^-53 < 0.05 per PCG64 output x, C order; noise/long: standard_normal
    section 14.3   one integer step, identity activation included (step 3e without the max)
    section 14.8   the keys of w_exp, and fxp_sha256
    section 15.2   the default calibration set: one generator, normals first, then the spike draw

s4dconf is imported only to locate and read stored files and to get the value each recipe is compared with; the
helpers below never call the s4dconf function they check.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from s4dconf.fixedpoint.engine import run_fxp
from s4dconf.fixedpoint.formats import fxp_from_arrays, load_fxp
from s4dconf.fixedpoint.literal import literal_run
from s4dconf.fixedpoint.quantize import default_calibration
from s4dconf.goldens.store import GOLDEN_DIR
from s4dconf.reference.init import init_s4d_legs
from s4dconf.reference.inputs import make_input
from s4dconf.reference.modelfile import load_model, params_digest
from s4dconf.reference.validate import S4DInputError

ROOT = Path(__file__).resolve().parents[2]
STORED_FLOAT_MODELS = ("tiny", "small", "loihi-profile")  # the configs whose float model file is in goldens/data
CROSS_PLATFORM_REL = 1e-11  # SPEC.md section 10: regenerated float64 arrays on another platform


def _manifest() -> dict:
    return json.loads((GOLDEN_DIR / "manifest.json").read_text())


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _json_member(arrays: dict, key: str):
    return json.loads(str(arrays[key][()]))


# ---------------------------------------------------------------- section 7 and 14.8: the digests, from the text

def canonical_json(obj) -> str:
    """SPEC 7: keys sorted by code point, separators ", " and ": ", ASCII only, floats in their shortest form."""
    return json.dumps(obj, sort_keys=True, separators=(", ", ": "), ensure_ascii=True)


def shape_text(shape: tuple) -> str:
    """SPEC 7: "(4, 2)", "(4,)": decimal dimensions, ", " between them, a trailing comma for one dimension."""
    dims = [str(int(d)) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def spec_params_sha256(config: dict, params: dict[str, np.ndarray]) -> str:
    """SPEC 7: canonical config JSON, then per parameter in name order "<name>|<f8|<shape>" and its <f8 C bytes."""
    h = hashlib.sha256(canonical_json(config).encode("utf-8"))
    for name in sorted(params):
        a = np.asarray(params[name])
        h.update(f"{name}|<f8|{shape_text(a.shape)}".encode("utf-8"))
        h.update(a.astype("<f8").tobytes(order="C"))
    return h.hexdigest()


def spec_fxp_sha256(config: dict, fmt: dict, exps: dict, arrays: dict[str, np.ndarray]) -> str:
    """SPEC 14.8: config JSON, format JSON, [inp_exp, act_exp, out_exp, w_exp], then "<name>|<shape>" + <i8 bytes."""
    h = hashlib.sha256((canonical_json(config) + canonical_json(fmt)).encode("utf-8"))
    h.update(canonical_json([exps["inp_exp"], exps["act_exp"], exps["out_exp"], exps["w_exp"]]).encode("utf-8"))
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(f"{name}|{shape_text(a.shape)}".encode("utf-8"))
        h.update(a.astype("<i8").tobytes(order="C"))
    return h.hexdigest()


def _params_of(arrays: dict) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if not k.startswith("__")}


@pytest.mark.parametrize("cfg", STORED_FLOAT_MODELS)
def test_params_sha256_of_the_stored_golden_models(cfg):
    entry = _manifest()["models"][cfg]
    arrays = _npz(GOLDEN_DIR / entry["file"])
    config = _json_member(arrays, "__config__")
    assert str(arrays["__config__"][()]) == canonical_json(config), "a writer stores the canonical config JSON"
    assert spec_params_sha256(config, _params_of(arrays)) == entry["params_sha256"]


@pytest.mark.parametrize("float_file, fxp_file", [
    *[(f"goldens/data/model-{c}.npz", f"goldens/data/fxp-model-{c}.npz") for c in STORED_FLOAT_MODELS],
    ("training/models/sdigits-float.npz", "training/models/sdigits-ptq.npz"),  # has a __record__: not hashed
    ("training/models/smnist-float.npz", "training/models/smnist-ptq.npz"),
])
def test_params_sha256_matches_the_provenance_of_quantised_models(float_file, fxp_file):
    if not (ROOT / float_file).exists():
        pytest.skip(f"{float_file} is not in this checkout (shipped models are optional)")
    arrays = _npz(ROOT / float_file)
    prov = _json_member(_npz(ROOT / fxp_file), "__provenance__")
    assert spec_params_sha256(_json_member(arrays, "__config__"), _params_of(arrays)) == prov["source_params_sha256"]


def test_params_sha256_ignores_how_the_file_spaces_its_config(tmp_path):
    """SPEC 7: a reader re-serialises the config it parsed; the file's bytes and extra members do not count."""
    entry = _manifest()["models"]["tiny"]
    arrays = _npz(GOLDEN_DIR / entry["file"])
    config = _json_member(arrays, "__config__")
    compact = dict(arrays)
    compact["__config__"] = np.array(json.dumps(dict(reversed(sorted(config.items()))), separators=(",", ":")))
    compact["__record__"] = np.array(json.dumps({"note": "not hashed"}))
    path = tmp_path / "tiny-compact.npz"
    np.savez(path, **compact)
    assert params_digest(load_model(path)) == entry["params_sha256"]
    # the digest does see every parameter bit
    flipped = _params_of(arrays)
    flipped["layer0.log_dt"] = flipped["layer0.log_dt"].copy()
    flipped["layer0.log_dt"].view(np.uint64)[0] ^= np.uint64(1)
    assert spec_params_sha256(config, flipped) != entry["params_sha256"]


@pytest.mark.parametrize("name", sorted(_manifest()["fixed_point"]["models"]))
def test_fxp_sha256_of_the_stored_fixed_point_models(name):
    entry = _manifest()["fixed_point"]["models"][name]
    arrays = _npz(GOLDEN_DIR / entry["file"])
    digest = spec_fxp_sha256(_json_member(arrays, "__config__"), _json_member(arrays, "__format__"),
                             _json_member(arrays, "__exponents__"), _params_of(arrays))
    assert digest == entry["fxp_sha256"]


# ---------------------------------------------------------------- section 14.8: the keys of w_exp

def spec_w_exp_keys(n_layers: int) -> set[str]:
    return {"encoder", "decoder"} | {f"layer{i}" for i in range(n_layers)}


def _fxp_model_files() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("fxp-model-*.npz")) + sorted((ROOT / "training" / "models").glob("*-[pq]*.npz"))


@pytest.mark.parametrize("path", _fxp_model_files(), ids=lambda p: p.name)
def test_exponents_and_w_exp_keys_of_every_stored_fixed_point_model(path):
    arrays = _npz(path)
    n_layers = _json_member(arrays, "__config__")["n_layers"]
    exps = _json_member(arrays, "__exponents__")
    assert set(exps) == {"inp_exp", "act_exp", "out_exp", "w_exp"}
    assert len(exps["act_exp"]) == n_layers + 1
    assert set(exps["w_exp"]) == spec_w_exp_keys(n_layers)
    # every w_exp key names a stored dense matrix: "<key>.W"
    assert {f"{k}.W" for k in exps["w_exp"]} == {k for k in arrays if k.endswith(".W")}


@pytest.mark.parametrize("change", ["extra", "missing", "renamed"])
def test_w_exp_with_other_keys_is_refused(change):
    arrays = _npz(GOLDEN_DIR / "fxp-model-small.npz")
    exps = _json_member(arrays, "__exponents__")
    w = dict(exps["w_exp"])
    if change == "extra":
        w["layer2"] = 9
    elif change == "missing":
        del w["layer1"]
    else:
        w["mixer0"] = w.pop("layer0")
    arrays["__exponents__"] = np.array(json.dumps({**exps, "w_exp": w}))
    with pytest.raises(S4DInputError, match="w_exp"):
        fxp_from_arrays(arrays, "fxp-model-small.npz (edited)")


# ---------------------------------------------------------------- section 2.2: the LegS recipe

def spec_legs_modes(P: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-5 of SPEC 2.2: the kept eigenvalues w (P,), their phase-pinned eigenvectors V (2P, P) and b (2P,)."""
    N = 2 * P
    j = np.arange(N, dtype=np.float64)
    r, p = np.sqrt(2 * j + 1), np.sqrt(j + 0.5)
    H = np.zeros((N, N), dtype=np.complex128)
    lower = np.tril_indices(N, -1)
    H.imag[lower] = np.outer(r, r)[lower] - np.outer(p, p)[lower]  # i·fl(fl(r_n r_k) - fl(p_n p_k)), n > k
    w, V = np.linalg.eigh(H, UPLO="L")  # LAPACK zheevd, lower triangle, ascending eigenvalues
    w, V = w[P:], np.asfortranarray(V[:, P:])  # kept columns, each contiguous (SPEC 2.2 step 6)
    theta = np.arctan2(V[0].imag, V[0].real)
    rot = np.zeros(P, dtype=np.complex128)
    rot.imag = -theta
    return w, V * np.exp(rot)[None, :], r  # times e^{-i theta}, no renormalisation


def spec_legs(P: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a_re, a_im, B) of one channel: SPEC 2.2 steps 1-6, step 6 as one BLAS matrix-vector product."""
    w, V, b = spec_legs_modes(P)
    assert V.flags.f_contiguous  # column by column: the storage order picks the BLAS kernel (SPEC 2.2 step 6)
    return np.full(P, np.log(0.5)), w, np.conj(V).T @ (b + 0j)


def _legs_of_reference(P: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    A, B = init_s4d_legs(P)
    return np.log(-A.real), A.imag, B


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("P", [1, 2, 4, 8, 32])
def test_legs_recipe_is_bit_exact_with_reference_init_on_this_platform(P):
    ours, theirs = spec_legs(P), _legs_of_reference(P)
    for name, a, b in zip(("a_re", "a_im", "B"), ours, theirs):
        assert _same_bits(a, b), f"P={P}: {name} differs from reference/init.py"


@pytest.mark.parametrize("cfg", STORED_FLOAT_MODELS)
def test_legs_recipe_reproduces_the_stored_golden_models(cfg):
    """The golden models were made on another CPU: the last bits may move (SPEC 2.2), within section 10's 1e-11."""
    arrays = _npz(GOLDEN_DIR / _manifest()["models"][cfg]["file"])
    config = _json_member(arrays, "__config__")
    a_re, a_im, B = spec_legs(config["P"])
    for i in range(config["n_layers"]):
        assert _same_bits(arrays[f"layer{i}.a_re"], np.broadcast_to(a_re, arrays[f"layer{i}.a_re"].shape))
        for key, ours in (("a_im", a_im), ("B_re", B.real), ("B_im", B.imag)):
            stored = arrays[f"layer{i}.{key}"]
            assert (stored == stored[:1]).all(), f"{cfg} layer{i}.{key}: channels differ"
            rel = np.max(np.abs(stored - ours)) / np.max(np.abs(stored))
            assert rel <= CROSS_PLATFORM_REL, f"{cfg} layer{i}.{key}: relative difference {rel:.3g}"


def test_legs_recipe_needs_no_blas_within_tolerance():
    """Step 6's sum written as a plain loop (what a C implementation does) stays within section 10's tolerance."""
    P = 32
    _, V, b = spec_legs_modes(P)
    loop = np.array([sum(complex(np.conj(V[k, n])) * b[k] for k in range(2 * P)) for n in range(P)])
    B = spec_legs(P)[2]
    assert np.max(np.abs(loop - B)) / np.max(np.abs(B)) <= CROSS_PLATFORM_REL


# ---------------------------------------------------------------- section 9: the random families

def spec_uniform(seed: int, count: int) -> np.ndarray:
    """(x >> 11)·2^-53 for the first `count` outputs x of PCG64 seeded through SeedSequence(seed)."""
    raw = np.random.PCG64(np.random.SeedSequence(seed)).random_raw(count)
    return (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53


def spec_spikes(seed: int = 0, N: int = 2, L: int = 256, d_in: int = 1) -> np.ndarray:
    return (spec_uniform(seed + 2, N * L * d_in) < 0.05).astype(np.float64).reshape(N, L, d_in)


def test_spikes_regenerated_from_the_spec_equal_the_family_and_the_stored_input():
    ours = spec_spikes()
    assert _same_bits(ours, make_input("spikes"))
    assert _same_bits(ours, _npz(GOLDEN_DIR / "inputs-spikes.npz")["u"])
    assert 0 < ours.sum() < ours.size  # some events, not all


def test_spike_comparison_in_integers_equals_the_float_comparison():
    threshold = int(np.ceil(Fraction(0.05) * 2**53))  # 0.05 is the float64 nearest 0.05, exactly
    assert threshold == 450359962737050  # the number SPEC 9 prints
    raw = np.random.PCG64(np.random.SeedSequence(2)).random_raw(2 * 256)
    assert np.array_equal((raw >> np.uint64(11)) < np.uint64(threshold), spec_uniform(2, 2 * 256) < 0.05)


@pytest.mark.parametrize("family, offset, shape", [("noise", 1, (2, 256, 1)), ("long", 3, (1, 16384, 1))])
def test_gaussian_families_regenerated_from_the_spec_equal_the_stored_inputs(family, offset, shape):
    ours = np.random.Generator(np.random.PCG64(np.random.SeedSequence(0 + offset))).standard_normal(shape)
    assert _same_bits(ours, _npz(GOLDEN_DIR / f"inputs-{family}.npz")["u"])


# ---------------------------------------------------------------- section 15.2: the calibration set

def spec_calibration(d_in: int = 1) -> np.ndarray:
    u = np.zeros((8, 256, d_in))
    G = np.random.Generator(np.random.PCG64(np.random.SeedSequence(1000)))
    u[0:4] = G.standard_normal((4, 256, d_in))
    u[4] = 1.0
    u[5] = -1.0
    u[6, 16:] = 1.0
    x = G.bit_generator.random_raw(256 * d_in)  # the spike draw of SPEC 9, after the normals, same generator
    u[7] = (((x >> np.uint64(11)).astype(np.float64) * 2.0**-53) < 0.05).astype(np.float64).reshape(256, d_in)
    return u


@pytest.mark.parametrize("d_in", [1, 3])
def test_calibration_set_regenerated_from_the_spec_equals_quantize_default(d_in):
    assert _same_bits(spec_calibration(d_in), default_calibration(d_in))


@pytest.mark.parametrize("cfg", _manifest()["fixed_point"]["configs"])
def test_calibration_set_matches_the_sha256_recorded_by_the_golden_ptq_models(cfg):
    calib = spec_calibration()
    assert 0 < calib[7].sum() < 256
    prov = _json_member(_npz(GOLDEN_DIR / f"fxp-model-{cfg}.npz"), "__provenance__")["calibration"]
    assert prov["shape"] == list(calib.shape)
    assert prov["sha256"] == hashlib.sha256(calib.astype("<f8").tobytes(order="C")).hexdigest()


# ---------------------------------------------------------------- section 14.3: one integer step, from the text

@dataclasses.dataclass
class SpecFxpRun:
    u_q: np.ndarray  # (N, L, d_in)
    step_logits: np.ndarray  # (N, L, classes)
    ys: list[np.ndarray]  # per layer (N, L, H)
    states: dict[int, list[tuple[np.ndarray, np.ndarray]]]  # step -> per layer (x_re, x_im) (N, H, P)
    counts: dict[str, int]
    negative_mix: int  # how many mixing sums R(W r, s_i) were < 0 (step 3e's max at work, or not)


def spec_fxp_run(arrays: dict, config: dict, fmt: dict, exps: dict, u: np.ndarray, states_at=()) -> SpecFxpRun:
    """SPEC 14.1-14.3 in int64 (no D term: the stored models have none)."""
    assert not config["use_D"]
    M, S, F = fmt["msg_bits"], fmt["state_bits"], fmt["frac_bits"]
    half_up, relu = fmt["rounding"] == "half_up", config["activation"] == "relu"
    inp, act, out, w = exps["inp_exp"], exps["act_exp"], exps["out_exp"], exps["w_exp"]
    n_layers = config["n_layers"]
    counts: dict[str, int] = {}

    def R(a, s):
        a = np.asarray(a, dtype=np.int64)
        if s <= 0:
            return a * (1 << -s)
        return ((a + (1 << (s - 1))) if half_up else a) >> s

    def sat(a, bits, name):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        counts[name] = counts.get(name, 0) + int(np.count_nonzero((a < lo) | (a > hi)))
        return np.clip(a, lo, hi)

    s_enc = w["encoder"] + inp - act[0]
    s_mix = [w[f"layer{i}"] + act[i] - act[i + 1] for i in range(n_layers)]
    s_dec = w["decoder"] + act[n_layers] - out
    N, L, _ = u.shape
    H, P = config["H"], config["P"]
    x = [(np.zeros((N, H, P), np.int64), np.zeros((N, H, P), np.int64)) for _ in range(n_layers)]
    u_q = np.zeros(u.shape, np.int64)
    logits = np.zeros((N, L, config["n_classes"]), np.int64)
    ys = [np.zeros((N, L, H), np.int64) for _ in range(n_layers)]
    states, negative_mix = {}, 0
    lo_m, hi_m = -(1 << (M - 1)), (1 << (M - 1)) - 1
    for k in range(L):
        scaled = u[:, k] * 2.0**inp + (0.5 if half_up else 0.0)  # step 1, in float64
        q = np.floor(np.clip(scaled, lo_m - 1, hi_m + 1)).astype(np.int64)  # clip first: the int64 cast is safe
        u_q[:, k] = sat(q, M, "input")
        h = sat(R(u_q[:, k] @ arrays["encoder.W"].T, s_enc), M, "encoder")  # step 2
        for i in range(n_layers):
            a = {key: arrays[f"layer{i}.{key}"] for key in ("Abar_re", "Abar_im", "Bbar_re", "Bbar_im", "C_re",
                                                              "C_im", "W")}
            xr, xi = x[i]
            v = h[:, :, None]
            p_re = a["Abar_re"] * xr - a["Abar_im"] * xi + a["Bbar_re"] * v  # 3a
            p_im = a["Abar_re"] * xi + a["Abar_im"] * xr + a["Bbar_im"] * v
            xr, xi = sat(R(p_re, F), S, f"layer{i}.state"), sat(R(p_im, F), S, f"layer{i}.state")
            x[i] = (xr, xi)
            o = sat(R(a["C_re"] * xr - a["C_im"] * xi, F - 1), M, f"layer{i}.message")  # 3b
            y = o.sum(axis=2)  # 3c
            ys[i][:, k] = y
            r = sat(np.maximum(y, 0) if relu else y, M, f"layer{i}.relu")  # 3d
            mix = R(r @ a["W"].T, s_mix[i])  # 3e
            negative_mix += int(np.count_nonzero(mix < 0))
            h = sat(np.maximum(mix, 0) if relu else mix, M, f"layer{i}.block")
        logits[:, k] = sat(R(h @ arrays["decoder.W"].T, s_dec), M, "decoder")  # step 4
        if k in states_at:
            states[k] = list(x)
    return SpecFxpRun(u_q, logits, ys, states, counts, negative_mix)


def _fxp_file(name: str) -> tuple[dict, dict, dict, dict]:
    arrays = _npz(GOLDEN_DIR / f"fxp-model-{name}.npz")
    return (_params_of(arrays), _json_member(arrays, "__config__"), _json_member(arrays, "__format__"),
            _json_member(arrays, "__exponents__"))


@pytest.mark.parametrize("model, family", [("tiny", "noise"), ("sat-all-half-up", "noise")])
def test_integer_step_from_the_spec_reproduces_the_stored_integer_goldens(model, family):
    arrays, config, fmt, exps = _fxp_file(model)
    case = _npz(GOLDEN_DIR / f"fxp-case-{model}-{family}.npz")
    u = _npz(GOLDEN_DIR / f"inputs-{family}.npz")["u"]
    steps, channels = case["steps"], case["channels"]
    run = spec_fxp_run(arrays, config, fmt, exps, u, states_at=set(case["state_steps"].tolist()))
    assert np.array_equal(run.u_q, case["u_q"])
    assert np.array_equal(run.step_logits[:, steps], case["step_logits"])
    assert np.array_equal(run.step_logits[:, -1], case["logits"])
    for i in range(config["n_layers"]):
        assert np.array_equal(run.ys[i][:, steps][:, :, channels], case[f"layer{i}.y"])
        for part, j in (("state_re", 0), ("state_im", 1)):
            stored = np.stack([run.states[int(k)][i][j][0, channels] for k in case["state_steps"]])
            assert np.array_equal(stored, case[f"layer{i}.{part}"])
    assert run.counts == json.loads(str(case["saturations"][()]))


@pytest.mark.parametrize("model", ["tiny", "sat-all-half-up"])
def test_identity_activation_step_3e_from_the_spec_equals_numpy_fxp_and_the_literal_statement(model):
    arrays, config, fmt, exps = _fxp_file(model)
    u = _npz(GOLDEN_DIR / "inputs-noise.npz")["u"]
    identity = {**config, "activation": "identity"}
    ours = spec_fxp_run(arrays, identity, fmt, exps, u)
    with_relu = spec_fxp_run(arrays, config, fmt, exps, u)
    assert ours.negative_mix > 0, "no negative mixing sum: the case cannot tell step 3e's max from no max"
    assert not np.array_equal(ours.step_logits, with_relu.step_logits)
    m = load_fxp(GOLDEN_DIR / f"fxp-model-{model}.npz")
    m = dataclasses.replace(m, config=m.config.replace(activation="identity"))
    nonzero = lambda c: {k: n for k, n in c.items() if n}  # noqa: E731
    lit_logits, lit_ys, lit_counts = literal_run(m, u)
    fast = run_fxp(m, u)
    for logits, ys, counts in ((lit_logits, lit_ys, lit_counts), (fast.step_logits, fast.layer_y, fast.saturations)):
        assert np.array_equal(ours.step_logits, logits)
        for a, b in zip(ours.ys, ys):
            assert np.array_equal(a, b)
        assert nonzero(ours.counts) == nonzero(counts)
