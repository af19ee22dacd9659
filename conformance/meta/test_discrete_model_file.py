"""Discretised-coefficient models and their files (SPEC.md 7.1): round trip, the params_sha256 rule rebuilt from the
spec's text, bit-identical evaluation, validation with clear errors, PTQ from the given Abar/Bbar/C (15), torch."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from s4dconf.backends.reference import ReferenceBackend
from s4dconf.conformance.harness import golden_case_records
from s4dconf.fixedpoint.formats import FxpFormat, load_fxp
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.goldens.store import GoldenSet
from s4dconf.reference.config import NAMED_CONFIGS, ModelConfig
from s4dconf.reference.discrete import DISCRETE_SCHEMA, DiscreteS4DModel, discrete_param_shapes
from s4dconf.reference.model import S4DModel
from s4dconf.reference.modelfile import MODEL_SCHEMA, load_model, params_digest, save_model
from s4dconf.reference.npzio import read_npz, write_npz
from s4dconf.reference.validate import S4DInputError

VARIANT = ModelConfig(name="variant", d_input=3, H=5, P=3, n_layers=2, n_classes=4, init="lin",
                      discretization="bilinear", use_D=True, readout="mean", activation="identity")
CONFIGS = {"tiny": NAMED_CONFIGS["tiny"], "small": NAMED_CONFIGS["small"], "variant": VARIANT}


def _u(cfg, L=20, seed=1):
    return np.random.default_rng(seed).standard_normal((2, L, cfg.d_input))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip_and_bit_identical_evaluation(tmp_path, name):
    source = S4DModel.create(CONFIGS[name], seed=3)
    model = DiscreteS4DModel.from_model(source)
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert isinstance(loaded, DiscreteS4DModel) and loaded.config == source.config
    assert sorted(loaded.params) == sorted(discrete_param_shapes(source.config))
    assert all(loaded.params[k].tobytes() == a.tobytes() for k, a in model.params.items())
    assert params_digest(loaded) == params_digest(model)
    assert read_npz(tmp_path / "m.npz")["__schema__"][()] == DISCRETE_SCHEMA
    u = _u(source.config)
    for mode in ("conv", "recurrent"):  # the given coefficients are the source's Abar, Bbar, C to the bit
        assert np.array_equal(loaded.forward(u, mode=mode).step_logits, source.forward(u, mode=mode).step_logits)
    s_new, s_old = loaded.session(2), source.session(2)
    assert np.array_equal(s_new.run(u), s_old.run(u))
    save_model(loaded, tmp_path / "again.npz")  # the same model gives the same bytes
    assert (tmp_path / "again.npz").read_bytes() == (tmp_path / "m.npz").read_bytes()


def test_params_sha256_follows_the_spec_text():
    """SPEC.md 7.1: the UTF-8 schema tag, then the stream of the float64 rule (config JSON, then per array in
    code-point order of its name `<name>|<f8|<shape>` and its little-endian bytes)."""
    model = DiscreteS4DModel.create(NAMED_CONFIGS["tiny"], seed=0)
    stream = DISCRETE_SCHEMA.encode() + json.dumps(json.loads(model.config.to_json()), sort_keys=True).encode()
    for name in sorted(model.params):
        a = model.params[name]
        shape = "(" + ", ".join(str(d) for d in a.shape) + ("," if a.ndim == 1 else "") + ")"
        stream += f"{name}|<f8|{shape}".encode() + a.astype("<f8").tobytes(order="C")
    assert params_digest(model) == hashlib.sha256(stream).hexdigest()
    assert params_digest(model) != params_digest(S4DModel.create(NAMED_CONFIGS["tiny"], seed=0))
    one_bit = dict(model.params)
    one_bit["layer0.Abar_im"] = one_bit["layer0.Abar_im"].copy()
    one_bit["layer0.Abar_im"].view(np.uint64)[0, 0] ^= np.uint64(1)  # numpy 1.26: uint64 ^ int is float
    assert params_digest(DiscreteS4DModel(model.config, one_bit)) != params_digest(model)


def _file_with(tmp_path, change, schema=DISCRETE_SCHEMA):
    model = DiscreteS4DModel.create(NAMED_CONFIGS["tiny"], seed=0)
    arrays = dict(model.params, __schema__=np.array(schema), __config__=np.array(model.config.to_json()))
    change(arrays)
    write_npz(tmp_path / "bad.npz", arrays)
    return tmp_path / "bad.npz"


def _set(key, index, value):
    def change(arrays):
        arrays[key] = arrays[key].copy()
        arrays[key][index] = value
    return change


BAD = {
    "|Abar| = 1": (_set("layer0.Abar_re", (1, 0), 1.0), [_set("layer0.Abar_im", (1, 0), 0.0)],
                   r"layer0\.Abar\[1, 0\] = 1\.0 \+ 0\.0i has \|Abar\| = 1\.0 .*0 < \|Abar\| < 1 strictly"),
    "|Abar| > 1": (_set("layer0.Abar_im", (0, 1), 1.5), [_set("layer0.Abar_re", (0, 1), 0.0)], r"layer0\.Abar\[0, 1\].*\|Abar\| = 1\.5"),
    "Abar = 0": (_set("layer0.Abar_re", (2, 1), 0.0), [_set("layer0.Abar_im", (2, 1), 0.0)],
                 r"layer0\.Abar\[2, 1\].*\|Abar\| = 0\.0"),
    "NaN": (_set("layer0.Bbar_im", (0, 0), np.nan), [], r"layer0\.Bbar_im.*non-finite"),
    "Inf in Abar": (_set("layer0.Abar_re", (3, 1), np.inf), [], r"layer0\.Abar_re.*non-finite"),
    "complex dtype": (lambda a: a.update({"layer0.C_re": a["layer0.C_re"].astype(np.complex128)}), [],
                      r"layer0\.C_re must be float64, got complex128 \(store complex values as float64 _re/_im"),
    "float32": (lambda a: a.update({"layer0.Bbar_re": a["layer0.Bbar_re"].astype(np.float32)}), [],
                r"layer0\.Bbar_re must be float64, got float32"),
    "shape": (lambda a: a.update({"layer0.Bbar_re": np.zeros((4, 3))}), [], r"layer0\.Bbar_re must have shape \(4, 2\)"),
    "missing": (lambda a: a.pop("layer0.C_im"), [], r"lacks array\(s\) \['layer0\.C_im'\]"),
    "continuous array": (lambda a: a.update({"layer0.a_re": np.zeros((4, 2))}), [],
                         r"unexpected parameters \['layer0\.a_re'\]"),
}


@pytest.mark.parametrize("what", list(BAD))
def test_bad_discrete_file_is_refused_with_a_clear_error(tmp_path, what):
    first, more, message = BAD[what]

    def change(arrays):
        for c in [first, *more]:
            c(arrays)

    with pytest.raises(S4DInputError, match=message) as e:
        load_model(_file_with(tmp_path, change))
    assert "bad.npz" in str(e.value), "the error names the file"


def test_largest_magnitude_below_one_is_accepted():
    model = DiscreteS4DModel.create(NAMED_CONFIGS["tiny"], seed=0)
    params = dict(model.params, **{"layer0.Abar_re": model.params["layer0.Abar_re"].copy(),
                                   "layer0.Abar_im": model.params["layer0.Abar_im"].copy()})
    params["layer0.Abar_re"][0, 0], params["layer0.Abar_im"][0, 0] = np.nextafter(1.0, 0.0), 0.0
    assert DiscreteS4DModel(model.config, params).layers[0].Abar[0, 0] == np.nextafter(1.0, 0.0)


def test_schemas_are_not_mixed_up(tmp_path):
    """Continuous arrays under the discrete tag (and the reverse) are refused naming what is missing; an unknown
    tag names both float64 schemas; the fixed-point reader refuses a discretised file naming its schema."""
    continuous = S4DModel.create(NAMED_CONFIGS["tiny"], seed=0)
    arrays = dict(continuous.params, __schema__=np.array(DISCRETE_SCHEMA),
                  __config__=np.array(continuous.config.to_json()))
    write_npz(tmp_path / "a.npz", arrays)
    with pytest.raises(S4DInputError, match=r"lacks array\(s\) \['layer0\.Abar_re'"):
        load_model(tmp_path / "a.npz")
    with pytest.raises(S4DInputError, match=r"lacks array\(s\) \['layer0\.a_re'"):
        load_model(_file_with(tmp_path, lambda a: None, schema=MODEL_SCHEMA))
    with pytest.raises(S4DInputError, match=rf"'s4dconf-model-x/1', this reader needs '{MODEL_SCHEMA}'.*"
                                            rf"'{DISCRETE_SCHEMA}' is read too"):
        load_model(_file_with(tmp_path, lambda a: None, schema="s4dconf-model-x/1"))
    with pytest.raises(S4DInputError, match=DISCRETE_SCHEMA):
        load_fxp(_file_with(tmp_path, lambda a: None))


def test_from_coefficients_takes_complex64_exactly_and_checks_the_layer_count():
    cfg = ModelConfig(name="lava-like", d_input=3, H=3, P=2, n_layers=1, n_classes=3, activation="identity")
    rng = np.random.default_rng(0)
    Abar = (0.9 * np.exp(1j * rng.uniform(-1, 1, (3, 2)))).astype(np.complex64)
    Bbar, C = (rng.standard_normal((2, 3, 2)) + 0j).astype(np.complex64)
    eye = np.eye(3)
    m = DiscreteS4DModel.from_coefficients(cfg, [Abar], [Bbar], [C], encoder=eye, mixers=[eye], decoder=eye)
    assert np.array_equal(m.layers[0].Abar, Abar.astype(np.complex128))
    assert m.params["layer0.Abar_im"].dtype == np.float64
    with pytest.raises(S4DInputError, match=r"Abar: 2 array\(s\) given, config 'lava-like' has 1 layer"):
        DiscreteS4DModel.from_coefficients(cfg, [Abar, Abar], [Bbar], [C], encoder=eye, mixers=[eye], decoder=eye)


def test_ptq_quantises_the_given_coefficients():
    """SPEC.md 15: Abar, Bbar, C are quantised as given. The discretised golden model gives the integers and exponents
    of its source to the bit; coefficients that are no ZOH of anything quantise to round(. 2^F) all the same."""
    source = GoldenSet().model("small")
    fxp_d, fxp_s = quantize(DiscreteS4DModel.from_model(source)), quantize(source)
    assert sorted(fxp_d.arrays) == sorted(fxp_s.arrays)
    assert all(np.array_equal(fxp_d.arrays[k], fxp_s.arrays[k]) for k in fxp_s.arrays)
    assert (fxp_d.inp_exp, fxp_d.act_exp, fxp_d.out_exp, fxp_d.w_exp) == (
        fxp_s.inp_exp, fxp_s.act_exp, fxp_s.out_exp, fxp_s.w_exp)
    assert fxp_d.provenance["source_schema"] == DISCRETE_SCHEMA and "source_schema" not in fxp_s.provenance
    assert fxp_d.provenance["source_params_sha256"] == params_digest(DiscreteS4DModel.from_model(source))

    cfg = ModelConfig(name="given", d_input=2, H=2, P=2, n_layers=1, n_classes=2, activation="identity")
    Abar = np.array([[0.5 + 0.25j, -0.7 + 0.1j], [0.001 - 0.9j, 0.3]])
    Bbar, C = np.array([[0.2 - 0.1j, 0.05j], [1.0, -0.3 + 0.3j]]), np.array([[1 + 1j, -0.5], [0.25j, 2.0]])
    m = DiscreteS4DModel.from_coefficients(cfg, [Abar], [Bbar], [C], encoder=np.eye(2), mixers=[np.eye(2)],
                                           decoder=np.eye(2))
    F = FxpFormat().frac_bits
    q = quantize(m).arrays
    for key, z in (("Abar", Abar), ("Bbar", Bbar), ("C", C)):
        assert np.array_equal(q[f"layer0.{key}_re"], np.floor(z.real * 2**F + 0.5)), key
        assert np.array_equal(q[f"layer0.{key}_im"], np.floor(z.imag * 2**F + 0.5)), key


def test_conformance_of_a_discretised_model_can_fail():
    """The conformance check of 7.1 is a real one: the golden model's bilinear discretisation, written as a
    discretised model, must fail the ZOH goldens by far more than the float64 rows allow."""
    golden = GoldenSet()
    case = golden.case("tiny/dc")
    source = golden.model("tiny")
    bilinear = DiscreteS4DModel.from_model(S4DModel(source.config.replace(discretization="bilinear"), source.params))
    recs = golden_case_records(ReferenceBackend(), "reference", "recurrent", case, bilinear, "discrete:tiny/dc")
    worst = max(r.value / r.tolerance for r in recs if r.metric == "rel_l2")
    assert worst > 1000, f"a convention error must fail by > 1000x the tolerance, got {worst:.3g}x"


def test_torch_module_keeps_the_given_coefficients():
    torch = pytest.importorskip("torch", reason="torch is not installed (the py311 tox env has it)")
    from s4dconf.backends.torch_model import TorchS4D

    model = DiscreteS4DModel.create(NAMED_CONFIGS["tiny"], seed=2)
    module = TorchS4D.from_reference(model, torch.float64)
    back = module.to_reference()
    assert isinstance(back, DiscreteS4DModel)
    assert all(np.array_equal(back.params[k], a) for k, a in model.params.items())
    assert "layer0__Abar_re" in module.ssm_parameter_names() and "layer0__log_dt" not in module.ssm_parameter_names()
    u = _u(model.config, L=40)
    logits = module(torch.as_tensor(u)).detach().numpy()
    ref = model.forward(u, mode="recurrent").step_logits
    assert np.linalg.norm(logits - ref) <= 1e-12 * np.linalg.norm(ref)
