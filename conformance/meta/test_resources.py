"""The operation and resource model (SPEC.md section 19): hand-derived counts, scaling, densities, bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from s4dconf.reference.config import NAMED_CONFIGS, ModelConfig, get_config
from s4dconf.fixedpoint.formats import FxpFormat
from s4dconf.reference.model import S4DModel, param_shapes
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.validate import S4DInputError
from s4dconf.measure.resources import (
    ASSUMED_MEMORY_BITS_PER_CORE,
    QUOTED_PROFILE_CORES,
    MeasuredDensity,
    count_resources,
    dense_macs,
    density_signals,
    layer_counts,
    measure_density,
)

TINY_DENSITIES = {"encoder": 0.5, "layer0.message": 0.25, "layer0.relu": 0.75, "layer0.block": 0.1}


@pytest.fixture(scope="module")
def tiny_fxp():
    return quantize(S4DModel.create(get_config("tiny"), seed=0))


def test_tiny_counts_by_hand():
    # tiny: H=4, P=2, d_in=1, 1 layer, K=10; default format S=24, c=16, w=8. Written out from the formulas.
    r = count_resources(get_config("tiny"), seq_len=10)
    (lc,) = r.per_layer
    assert lc.s4d_neurons == 4 * 2 == 8
    assert lc.neuron_state_macs == 6 * 8 == 48  # Abar x (4) + Bbar v (2) per neuron
    assert lc.neuron_output_macs == 2 * 8 == 16  # cr xr - ci xi
    assert lc.neuron_macs == 64
    assert (lc.fan_out_synops, lc.fan_in_synops, lc.d_term_macs) == (8, 8, 0)
    assert lc.mixing_macs == 4 * 4 == 16
    assert lc.relu_compares == 2 * 4 == 8
    assert lc.state_bits == 8 * 2 * 24 == 384
    assert lc.coefficient_bits == 8 * 6 * 16 == 768
    assert lc.mixing_weight_bits == 16 * 8 == 128

    t = r.totals
    assert t["encoder_macs_per_token"] == 4 * 1
    assert t["decoder_macs_per_token_streaming"] == t["decoder_macs_per_sequence_last_step"] == 10 * 4 == 40
    assert t["macs_per_token_without_decoder"] == 4 + 64 + 8 + 8 + 16 == 100
    assert t["macs_per_token_streaming"] == 100 + 40 == 140
    assert t["synaptic_ops_per_token_streaming"] == 4 + 8 + 8 + 16 + 40 == 76
    assert t["macs_per_sequence_last_step"] == 10 * 100 + 40 == 1040
    assert t["macs_per_sequence_streaming"] == 10 * 140 == 1400
    assert t["macs_per_token_last_step_amortised"] == pytest.approx(104.0)
    assert t["parameters_float"] == 4 + (6 * 8 + 4 + 16) + 40 == 112  # SPEC.md section 4 table
    assert t["parameters_fixed_point"] == 4 + (6 * 8 + 16) + 40 == 108

    fx = r.memory_bits["fixed_point"]
    assert fx == {"state": 384, "encoder_weights": 4 * 8, "mixing_weights": 128, "decoder_weights": 40 * 8,
                  "coefficients": 768, "total": 384 + 32 + 128 + 320 + 768}
    assert r.memory_bits["float32"] == {"parameters": 112 * 32, "state": 8 * 64, "total": 112 * 32 + 512}

    lo = r.loihi
    assert lo["neurons"]["total"] == 4 + 8 + 2 * 4 + 10 == 30
    assert lo["synapses"]["total"] == 4 + 8 + 8 + 16 + 40 == 76
    assert lo["cores_one_population_per_core"] == 5  # encoder, S4D, fan-in ReLU, mixing ReLU, decoder
    assert lo["cores_packed_lower_bound"] == 1


def test_tiny_use_D_adds_d_term_and_its_coefficients():
    r = count_resources(get_config("tiny").replace(use_D=True))
    (lc,) = r.per_layer
    assert lc.d_term_macs == 4
    assert lc.coefficient_bits == 768 + 4 * 16
    assert r.totals["macs_per_token_streaming"] == 140 + 4
    assert r.loihi["synapses"]["total"] == 76 + 4
    assert any("no D path" in note for note in r.loihi["notes"])


def test_loihi_profile_core_estimate_by_hand():
    # H=128, P=4, 1 layer: populations and their memory (assumed: 24-bit accumulators, S4D neurons 24 + 48 + 96
    # bits, 8-bit synapses), each well under one core's assumed memory -> one core each, five in all.
    r = count_resources(get_config("loihi-profile"))
    mem = {p["name"]: p["memory_bits"] for p in r.loihi["populations"]}
    assert mem == {"encoder": 128 * 24 + 128 * 8, "layer0.s4d": 512 * (24 + 48 + 96) + 512 * 8,
                   "layer0.fan_in_relu": 128 * 24 + 512 * 8, "layer0.mixing_relu": 128 * 24 + 128 * 128 * 8,
                   "decoder": 10 * 24 + 1280 * 8}
    assert max(mem.values()) < ASSUMED_MEMORY_BITS_PER_CORE
    assert r.loihi["cores_one_population_per_core"] == 5
    assert r.loihi["quoted"]["profile_model_cores"] == QUOTED_PROFILE_CORES == 6
    assert any("6 cores (quoted)" in line for line in r.loihi["comparison"])
    assert r.totals["macs_per_token_streaming"] == 128 + 8 * 512 + 2 * 512 + 128 * 128 + 10 * 128


def test_doubling_H_quadruples_mixing_and_doubling_P_doubles_neurons_and_state():
    base = ModelConfig(H=8, P=4, n_layers=2)
    r = count_resources(base)
    rH = count_resources(base.replace(H=16))
    rP = count_resources(base.replace(P=8))
    for a, aH, aP in zip(r.per_layer, rH.per_layer, rP.per_layer):
        assert aH.mixing_macs == 4 * a.mixing_macs
        assert aP.mixing_macs == a.mixing_macs
        assert aP.neuron_macs == 2 * a.neuron_macs
        assert aP.s4d_neurons == 2 * a.s4d_neurons
        assert aP.state_bits == 2 * a.state_bits
        assert aP.fan_out_synops == 2 * a.fan_out_synops
    assert rP.memory_bits["fixed_point"]["state"] == 2 * r.memory_bits["fixed_point"]["state"]
    assert rP.totals["neuron_macs_per_token"] == 2 * r.totals["neuron_macs_per_token"]


def test_densities_scale_synaptic_ops_and_leave_neurons_alone():
    cfg = get_config("tiny")
    dense = count_resources(cfg)
    r = count_resources(cfg, densities=TINY_DENSITIES)
    (lc,) = r.per_layer
    assert lc.fan_out_synops_effective == 8 * 0.5  # fed by the encoder output
    assert lc.fan_in_synops_effective == 8 * 0.25  # fed by the S4D messages
    assert lc.mixing_macs_effective == 16 * 0.75  # fed by the ReLU
    assert r.totals["decoder_macs_per_token_streaming_effective"] == pytest.approx(40 * 0.1)  # the last block
    assert r.totals["synaptic_ops_per_token_streaming_effective"] == pytest.approx(4 + 4 + 2 + 12 + 4)
    assert r.totals["macs_per_token_streaming_effective"] == pytest.approx(64 + 26)
    assert r.totals["neuron_macs_per_token"] == dense.totals["neuron_macs_per_token"]  # not reduced
    assert r.densities == TINY_DENSITIES and r.assumptions["densities"] == "supplied by the caller"


@pytest.mark.parametrize("name", ["tiny", "small", "paper"])
def test_density_one_gives_dense_counts_and_scaling_is_proportional(name):
    cfg = get_config(name)
    dense = count_resources(cfg)
    ones = count_resources(cfg, densities=dict.fromkeys(density_signals(cfg.n_layers), 1.0))
    t, t1 = dense.totals, ones.totals
    assert t1["synaptic_ops_per_token_streaming_effective"] == t["synaptic_ops_per_token_streaming"]
    assert t1["macs_per_token_streaming_effective"] == t["macs_per_token_streaming"]
    assert t1["macs_per_token_without_decoder_effective"] == t["macs_per_token_without_decoder"]
    for rho in (0.0, 0.3):
        r = count_resources(cfg, densities=dict.fromkeys(density_signals(cfg.n_layers), rho))
        reducible = t["synaptic_ops_per_token_streaming"] - t["encoder_macs_per_token"]  # the input is dense
        assert r.totals["synaptic_ops_per_token_streaming_effective"] == pytest.approx(
            t["encoder_macs_per_token"] + rho * reducible)
        for lc, lc_dense in zip(r.per_layer, dense.per_layer):
            assert lc.synaptic_ops_effective == pytest.approx(rho * lc_dense.synaptic_ops)


@pytest.mark.parametrize("name", [*NAMED_CONFIGS, "tiny-D"])
def test_parameter_count_is_the_float_models(name):
    cfg = get_config("tiny").replace(use_D=True, d_input=3) if name == "tiny-D" else get_config(name)
    r = count_resources(cfg)
    n_params = sum(math.prod(shape) for shape in param_shapes(cfg).values())
    assert r.totals["parameters_float"] == n_params
    assert r.memory_bits["float32"]["parameters"] == 32 * n_params
    if name == "paper":
        assert n_params == 165_760


@pytest.mark.parametrize("vth", [None, 0.0])
def test_measure_density_of_zero_input_is_zero(tiny_fxp, vth):
    rho = measure_density(tiny_fxp, np.zeros((2, 6, 1)), vth=vth)
    assert isinstance(rho, MeasuredDensity) and rho.vth == vth and rho.shape == (2, 6, 1)
    assert sorted(rho) == sorted(density_signals(1))
    assert all(v == 0.0 for v in rho.values())
    r = count_resources(tiny_fxp.config, densities=rho)
    assert r.assumptions["densities"].startswith("measured")
    assert r.totals["synaptic_ops_per_token_streaming_effective"] == 4  # only the (dense) input synapses


def test_measured_densities_feed_the_report(tiny_fxp):
    u = np.random.default_rng(0).standard_normal((2, 16, 1))
    rho = measure_density(tiny_fxp, u)
    assert all(0.0 <= v <= 1.0 for v in rho.values()) and rho["encoder"] > 0
    r = count_resources(tiny_fxp.config, densities=rho)
    md = r.to_markdown()
    assert "measured" in md and "count x density" in md
    data = json.loads(json.dumps(r.to_json()))
    assert data["densities"] == dict(rho)
    assert data["labels"]["densities"].startswith("measured")


def test_report_labels_every_kind_of_number():
    r = count_resources(get_config("paper"))
    md = r.to_markdown()
    for label in ("| count |", "quoted", "assumed", "estimate"):
        assert label in md
    data = json.loads(json.dumps(r.to_json()))
    assert data["labels"]["loihi.quoted"].startswith("quoted")
    assert all(a["source"].startswith(("assumed", "quoted")) for a in data["assumptions"].values()
               if isinstance(a, dict))
    assert "measured time" in md  # says what the counts are not


@pytest.mark.parametrize("densities,match", [
    ({**TINY_DENSITIES, "layer0.relu": 1.5}, r"density of 'layer0.relu' must lie in \[0, 1\]"),
    ({**TINY_DENSITIES, "encoder": -0.1}, r"density of 'encoder' must lie in \[0, 1\]"),
    ({**TINY_DENSITIES, "encoder": float("nan")}, "must be a finite number"),
    ({**TINY_DENSITIES, "encoder": "half"}, "must be a finite number"),
    ({**TINY_DENSITIES, "encoder": True}, "must be a finite number"),
    ({**TINY_DENSITIES, "layer1.block": 0.5}, r"unknown signal name\(s\) \['layer1.block'\]"),
    ({**TINY_DENSITIES, "decoder": 0.5}, "unknown signal name"),
    ({"encoder": 0.5}, r"lacks signal\(s\) \['layer0.message'"),
    ([0.5, 0.5], "must be a dict"),
])
def test_bad_densities_are_refused(densities, match):
    with pytest.raises(S4DInputError, match=match):
        count_resources(get_config("tiny"), densities=densities)


def test_bad_sizes_and_arguments_are_refused(tiny_fxp):
    with pytest.raises(S4DInputError, match="H must be a positive integer"):
        layer_counts(0, -4, 2, FxpFormat())
    with pytest.raises(S4DInputError, match="P must be a positive integer"):
        layer_counts(0, 4, 0, FxpFormat())
    with pytest.raises(S4DInputError, match="layer index"):
        layer_counts(-1, 4, 2, FxpFormat())
    with pytest.raises(S4DInputError, match="n_in must be a positive integer"):
        dense_macs(4, -1)
    with pytest.raises(S4DInputError, match="seq_len must be a positive integer"):
        count_resources(get_config("tiny"), seq_len=-5)
    with pytest.raises(S4DInputError, match="H must be a positive integer"):
        ModelConfig(H=-4)
    with pytest.raises(S4DInputError, match="needs a ModelConfig"):
        count_resources("paper")
    with pytest.raises(S4DInputError, match="fmt must be an FxpFormat"):
        count_resources(get_config("tiny"), fmt={"msg_bits": 24})
    with pytest.raises(S4DInputError, match="needs a fixed-point model"):
        measure_density(get_config("tiny"), np.zeros((1, 2, 1)))
    with pytest.raises(S4DInputError, match="vth"):
        measure_density(tiny_fxp, np.zeros((1, 2, 1)), vth=-1.0)
