"""Operation and resource model of the S4D classifier (SPEC.md section 19): counts, never measured time or energy.

Every number here is one of:
  count            derived from the configuration by the formulas below (exact for the model as specified);
  count x density  a count scaled by an activation density rho (measured with `measure_density`, or supplied);
  assumed          a hardware limit this project assumes (named constants below, each with its source);
  quoted           a figure quoted from the paper (never measured here).

Symbols: H channels, P modes per channel, d_in input width, n = n_layers, K = n_classes, L sequence length,
S = state_bits, c = coef_bits, w = weight_bits, M = msg_bits (SPEC.md 14.1).

What counts as one operation. The unit is the MAC: one real multiply plus one real add (accumulate). A dot product
of length k counts k MACs (the first add, onto zero, is counted too: the usual convention). A complex x complex
product (Abar x) counts 4 real MACs (Re: ar xr - ai xi, Im: ar xi + ai xr); a complex x real product (Bbar v)
counts 2. A synaptic operation (synop) is one message delivered over one synapse: the receiver multiplies the
payload by the synapse's weight and accumulates it, i.e. one MAC (fan-out and fan-in synapses have weight 1 but
still cost a delivery and an accumulate on the chip). Rescaling shifts, rounding and saturation clamps are not
counted; ReLU comparisons are counted apart (one per value, not MACs). "ops" in other papers often means 2 per MAC.

Per token (one time step, SPEC.md 14.3), per layer i (all counts):

    S4D neurons           N_s4d   = H P
    neuron state update   6 H P     (Abar x: 4, Bbar v: 2 MACs per neuron; exactly 6 multiplies + 4 adds)
    neuron output         2 H P     (2 Re(C x) = 2 (cr xr - ci xi): 2 MACs; the factor 2 is a shift)
    fan-out synops        H P       (kron(I_H, ones(P)): each channel's message to its P neurons)
    fan-in synops         H P       (the transpose: P outputs summed per channel)
    D term MACs           H         (only with use_D)
    mixing MACs           H^2
    ReLU comparisons      2 H       (after the fan-in and after the mixing; 0 with the identity activation)

    encoder MACs          H d_in
    decoder MACs          K H       per step with the streaming readout (the chip's Dense(W_dec) runs every step),
                                    or once per sequence when only the last step's answer is wanted (readout "last")

    MACs per token (streaming)            = H d_in + n (10 H P + H^2 [+ H]) + K H
    MACs per token (decoder excluded)     = H d_in + n (10 H P + H^2 [+ H])
    MACs per sequence (last-step readout) = L (H d_in + n (10 H P + H^2 [+ H])) + K H

Effective synaptic operations: a synop happens only for a message that is sent (non-zero in the dense path, over
the threshold with sigma-delta, SPEC.md 14.4), so effective synops = dense synops x rho of the signal feeding the
connection: fan-out and D of layer i by rho("encoder") for i = 0, else rho("layer{i-1}.block"); fan-in by
rho("layer{i}.message"); mixing by rho("layer{i}.relu"); decoder by rho("layer{n-1}.block"). The encoder's input
is not measured by `run_fxp`: it counts as dense (rho = 1). Neuron updates (and ReLU comparisons) are not reduced:
every neuron updates every step, whether or not a message arrived.

Memory (bits, counts): state 2 S per S4D neuron (H P n neurons); weights w per dense weight (encoder H d_in,
mixing n H^2, decoder K H); coefficients 2 c for each of Abar, Bbar, C per neuron (6 c H P per layer) plus c H
for D. The float32 GPU model for comparison: 32 bits per float parameter, 64 bits (complex64) per state.

Loihi 2 (counts, then an estimate under assumed limits): one neuron population per message signal of SPEC.md 14.3
(h_0: H encoder neurons; per layer o: H P S4D neurons, r: H fan-in/ReLU neurons, h_{i+1}: H mixing/ReLU neurons;
logits: K decoder neurons); synapses live with their receiving population. Cores per population =
max(1, ceil(neurons / N_core), ceil(synapses / Syn_core), ceil(memory bits / Mem_core)), summed (one population per
core, as a Lava process is placed); a packed lower bound ignores the one-population-per-core rule.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from s4dconf.reference.config import ModelConfig
from s4dconf.fixedpoint.engine import run_fxp
from s4dconf.fixedpoint.formats import FxpFormat, FxpModel
from s4dconf.reference.validate import S4DInputError

# --- the unit and conventions ----------------------------------------------------------------------------------------
MACS_PER_COMPLEX_PRODUCT = 4  # Abar x: (ar + i ai)(xr + i xi) -> ar xr - ai xi, ar xi + ai xr
MACS_PER_COMPLEX_REAL_PRODUCT = 2  # Bbar v with real v: br v, bi v
MACS_PER_NEURON_STATE = MACS_PER_COMPLEX_PRODUCT + MACS_PER_COMPLEX_REAL_PRODUCT  # 6
MACS_PER_NEURON_OUTPUT = 2  # 2 Re(C x) = 2 (cr xr - ci xi); the 2 is the shift by F - 1, not a multiply
COMPLEX_COEFFICIENTS_PER_NEURON = 3  # Abar, Bbar, C

# --- Loihi 2 limits: assumed, each with its source (SPEC.md 19.4) ----------------------------------------------------
LOIHI2_CORES_PER_CHIP = 128
LOIHI2_CORES_PER_CHIP_SOURCE = "quoted: the paper ('one Loihi 2 chip (128 cores)'); also Intel's public Loihi 2 brief"
ASSUMED_NEURONS_PER_CORE = 8_192
ASSUMED_NEURONS_PER_CORE_SOURCE = ("assumed: Intel's public 'up to 1 million neurons' per Loihi 2 chip / 128 cores; "
                                   "the real capacity depends on each neuron model's state size")
ASSUMED_SYNAPSES_PER_CORE = 120_000_000 // 128  # 937,500
ASSUMED_SYNAPSES_PER_CORE_SOURCE = ("assumed: Intel's public 'up to 120 million synapses' per Loihi 2 chip / 128 "
                                    "cores (a ceiling for the narrowest synapses)")
ASSUMED_MEMORY_BITS_PER_CORE = 128 * 1024 * 8  # 128 KiB
ASSUMED_MEMORY_BITS_PER_CORE_SOURCE = (
    "assumed: 128 KiB per core for synaptic weights and neuron state together (Loihi 1's public synaptic memory "
    "per core; this project holds no source for Loihi 2's per-core memory split)")
ASSUMED_SYNAPSE_BITS_SOURCE = "assumed: weight_bits per synapse, no index or routing overhead"
ASSUMED_NEURON_BITS_SOURCE = ("assumed: every neuron holds one msg_bits input accumulator; an S4D neuron also holds "
                              "its state (2 state_bits) and Abar, Bbar, C (6 coef_bits), as chip_parameters lays "
                              "them out per neuron; sigma-delta 'last sent' values are not counted")

# --- figures quoted from the paper (../shared/docs/paper.md), never measured here -----------------------------------
QUOTED_PROFILE_CORES = 6  # "a profiling run of the small 1-layer model on 6 cores" (H=128, P=4, 1 layer)
QUOTED_PROFILE_SHAPE = {"H": 128, "P": 4, "n_layers": 1}
QUOTED_MAX_PARAMETERS_ONE_CHIP = 275_000  # "up to 275,000 parameters", fits one Loihi 2 chip (128 cores)


# --- input checks ----------------------------------------------------------------------------------------------------
def _size(name: str, v) -> int:
    """A positive integer size, or S4DInputError naming it."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise S4DInputError(f"resource model: {name} must be a positive integer, got {v!r}")
    return int(v)


def _density(name: str, v) -> float:
    """A density in [0, 1], or S4DInputError naming the signal."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise S4DInputError(f"density of {name!r} must be a finite number in [0, 1], got {v!r}")
    if not 0.0 <= float(v) <= 1.0:
        raise S4DInputError(f"density of {name!r} must lie in [0, 1] (a fraction of messages sent), got {v!r}")
    return float(v)


def density_signals(n_layers: int) -> list[str]:
    """The message signals whose densities `run_fxp` reports (SPEC.md 14.4), in graph order."""
    n = _size("n_layers", n_layers)
    names = ["encoder"]
    for i in range(n):
        names += [f"layer{i}.message", f"layer{i}.relu", f"layer{i}.block"]
    return names


def check_densities(densities, n_layers: int) -> dict[str, float]:
    """Validate a density dict against the signals of a model with n_layers layers; returns plain floats.

    Every signal of `density_signals(n_layers)` must be present (a missing one would silently count as dense or
    as silent), no other name is allowed, and every value lies in [0, 1]."""
    if not isinstance(densities, dict):
        raise S4DInputError(f"densities must be a dict signal -> fraction (as FxpRun.density), got "
                            f"{type(densities).__name__}")
    known = density_signals(n_layers)
    unknown = sorted(set(densities) - set(known))
    if unknown:
        raise S4DInputError(f"densities has unknown signal name(s) {unknown}; this {n_layers}-layer model's signals "
                            f"are {known}")
    missing = [k for k in known if k not in densities]
    if missing:
        raise S4DInputError(f"densities lacks signal(s) {missing}; give every signal of {known} "
                            "(1.0 for a dense one)")
    return {k: _density(k, densities[k]) for k in known}


def layer_input_signal(i: int) -> str:
    """The signal feeding layer i's fan-out (and D): the encoder output for layer 0, else the previous block."""
    return "encoder" if i == 0 else f"layer{i - 1}.block"


# --- pure formulas ---------------------------------------------------------------------------------------------------
def dense_macs(n_out: int, n_in: int) -> int:
    """MACs of one dense (n_out x n_in) matrix-vector product: n_out n_in."""
    return _size("n_out", n_out) * _size("n_in", n_in)


def effective_ops(dense_count: int, density: float | None) -> float | None:
    """Effective synaptic operations: dense count x rho (None when no density is known)."""
    return None if density is None else dense_count * density


@dataclasses.dataclass
class LayerCounts:
    """Counts of one S4D block (layer `index`) per token; the *_effective fields are count x density (None when no
    densities were given). Units: MACs, synops (1 MAC each), comparisons, neurons, synapses, bits."""

    index: int
    input_signal: str  # the signal feeding fan-out and D (its density scales them)
    s4d_neurons: int  # H P
    activation_neurons: int  # 2 H: fan-in/ReLU and mixing/ReLU neurons
    neuron_state_macs: int  # 6 H P
    neuron_output_macs: int  # 2 H P
    fan_out_synops: int  # H P
    fan_in_synops: int  # H P
    d_term_macs: int  # H with use_D, else 0
    mixing_macs: int  # H^2
    relu_compares: int  # 2 H with ReLU, else 0
    state_bits: int  # 2 S H P
    coefficient_bits: int  # 6 c H P (+ c H with D)
    mixing_weight_bits: int  # w H^2
    density_in: float | None = None
    density_message: float | None = None
    density_relu: float | None = None
    fan_out_synops_effective: float | None = None
    fan_in_synops_effective: float | None = None
    d_term_macs_effective: float | None = None
    mixing_macs_effective: float | None = None

    @property
    def neuron_macs(self) -> int:
        """8 H P: every neuron updates every step (not reduced by sparsity)."""
        return self.neuron_state_macs + self.neuron_output_macs

    @property
    def synaptic_ops(self) -> int:
        """Dense synaptic operations: fan-out + fan-in + D + mixing."""
        return self.fan_out_synops + self.fan_in_synops + self.d_term_macs + self.mixing_macs

    @property
    def synaptic_ops_effective(self) -> float | None:
        if self.density_in is None:
            return None
        return (self.fan_out_synops_effective + self.fan_in_synops_effective + self.d_term_macs_effective
                + self.mixing_macs_effective)

    @property
    def macs(self) -> int:
        """All MACs of the layer per token: neuron updates + synaptic operations."""
        return self.neuron_macs + self.synaptic_ops

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(neuron_macs=self.neuron_macs, synaptic_ops=self.synaptic_ops,
                 synaptic_ops_effective=self.synaptic_ops_effective, macs=self.macs)
        return d


def layer_counts(index: int, H: int, P: int, fmt: FxpFormat, use_D: bool = False, relu: bool = True,
                 densities: dict[str, float] | None = None) -> LayerCounts:
    """Counts of layer `index` (formulas of the module docstring); densities, if given, must be checked already."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise S4DInputError(f"resource model: layer index must be a non-negative integer, got {index!r}")
    H, P = _size("H", H), _size("P", P)
    neurons = H * P
    c = fmt.coef_bits
    lc = LayerCounts(
        index=int(index),
        input_signal=layer_input_signal(index),
        s4d_neurons=neurons,
        activation_neurons=2 * H,
        neuron_state_macs=MACS_PER_NEURON_STATE * neurons,
        neuron_output_macs=MACS_PER_NEURON_OUTPUT * neurons,
        fan_out_synops=neurons,
        fan_in_synops=neurons,
        d_term_macs=H if use_D else 0,
        mixing_macs=dense_macs(H, H),
        relu_compares=2 * H if relu else 0,
        state_bits=2 * fmt.state_bits * neurons,
        coefficient_bits=2 * COMPLEX_COEFFICIENTS_PER_NEURON * c * neurons + (c * H if use_D else 0),
        mixing_weight_bits=fmt.weight_bits * H * H,
    )
    if densities is not None:
        lc.density_in = densities[lc.input_signal]
        lc.density_message = densities[f"layer{index}.message"]
        lc.density_relu = densities[f"layer{index}.relu"]
        lc.fan_out_synops_effective = effective_ops(lc.fan_out_synops, lc.density_in)
        lc.fan_in_synops_effective = effective_ops(lc.fan_in_synops, lc.density_message)
        lc.d_term_macs_effective = effective_ops(lc.d_term_macs, lc.density_in)
        lc.mixing_macs_effective = effective_ops(lc.mixing_macs, lc.density_relu)
    return lc


def float_parameter_count(cfg: ModelConfig) -> int:
    """Real numbers of the float model (SPEC.md 4): H d_in + n (6 H P + H + H^2 [+ H]) + K H.
    Per layer: a_re, a_im, B_re, B_im, C_re, C_im (H P each), log_dt (H), W (H^2), D (H) with use_D."""
    H, P = cfg.H, cfg.P
    per_layer = 6 * H * P + H + H * H + (H if cfg.use_D else 0)
    return H * cfg.d_input + cfg.n_layers * per_layer + cfg.n_classes * H


def fixed_point_parameter_count(cfg: ModelConfig) -> int:
    """Integers of the fixed-point model (SPEC.md 14.8): H d_in + n (6 H P + H^2 [+ H]) + K H (no log_dt: Abar and
    Bbar are stored discretised)."""
    H, P = cfg.H, cfg.P
    per_layer = 6 * H * P + H * H + (H if cfg.use_D else 0)
    return H * cfg.d_input + cfg.n_layers * per_layer + cfg.n_classes * H


def loihi_populations(cfg: ModelConfig, fmt: FxpFormat) -> list[dict]:
    """Neuron populations of the chip graph (one per message signal of SPEC.md 14.3), each with its neurons, the
    synapses it receives, and its memory under the assumed per-neuron and per-synapse sizes."""
    H, P, M, w = cfg.H, cfg.P, fmt.msg_bits, fmt.weight_bits
    s4d_neuron_bits = M + 2 * fmt.state_bits + 2 * COMPLEX_COEFFICIENTS_PER_NEURON * fmt.coef_bits

    def pop(name, neurons, synapses, neuron_bits):
        return {"name": name, "neurons": neurons, "in_synapses": synapses,
                "memory_bits": neurons * neuron_bits + synapses * w}

    pops = [pop("encoder", H, H * cfg.d_input, M)]
    for i in range(cfg.n_layers):
        pops += [pop(f"layer{i}.s4d", H * P, H * P, s4d_neuron_bits),
                 pop(f"layer{i}.fan_in_relu", H, H * P + (H if cfg.use_D else 0), M),
                 pop(f"layer{i}.mixing_relu", H, H * H, M)]
    pops.append(pop("decoder", cfg.n_classes, cfg.n_classes * H, M))
    for p in pops:
        p["cores"] = max(1, math.ceil(p["neurons"] / ASSUMED_NEURONS_PER_CORE),
                         math.ceil(p["in_synapses"] / ASSUMED_SYNAPSES_PER_CORE),
                         math.ceil(p["memory_bits"] / ASSUMED_MEMORY_BITS_PER_CORE))
    return pops


# --- the report ------------------------------------------------------------------------------------------------------
class MeasuredDensity(dict):
    """Densities measured by a numpy-fxp run (a dict signal -> fraction), with how they were measured."""

    def __init__(self, values: dict, vth: float | None, shape: tuple):
        super().__init__(values)
        self.vth, self.shape = vth, tuple(shape)

    def describe(self) -> str:
        how = "non-zero messages (dense path)" if self.vth is None else f"sigma-delta messages sent, vth={self.vth}"
        return f"measured: numpy-fxp run on input of shape {self.shape}, fraction of {how}"


@dataclasses.dataclass
class ResourceReport:
    """Operation, memory and Loihi 2 resource counts of one configuration (SPEC.md section 19).

    config: the model config, the fixed-point format and seq_len; per_layer: LayerCounts; totals: per-token and
    per-sequence counts; memory_bits: fixed-point and float32 memory; loihi: neurons, synapses, populations, core
    estimates (under `assumptions`) and the paper's quoted figures; assumptions: every assumed limit and convention
    with its source; densities: the densities used (None: dense counts only)."""

    config: dict
    per_layer: list[LayerCounts]
    totals: dict
    memory_bits: dict
    loihi: dict
    assumptions: dict
    densities: dict | None

    def to_json(self) -> dict:
        """A JSON-serialisable dict; `labels` says which parts are counts, estimates, assumed or quoted."""
        return {
            "schema": "s4dconf-resources/1",
            "labels": {
                "per_layer": "count (the *_effective fields: count x density)",
                "totals": "count (the *_effective entries: count x density)",
                "memory_bits": "count",
                "loihi.neurons, loihi.synapses": "count",
                "loihi.populations, loihi.cores_*": "estimate under assumed limits (see assumptions)",
                "loihi.quoted": "quoted from the paper, not measured",
                "densities": self.assumptions["densities"],
            },
            "config": self.config,
            "per_layer": [lc.to_json() for lc in self.per_layer],
            "totals": self.totals,
            "memory_bits": self.memory_bits,
            "loihi": self.loihi,
            "assumptions": self.assumptions,
            "densities": self.densities,
        }

    def to_markdown(self) -> str:
        """Markdown tables; every number's row or column says count, count x density, estimate, assumed or quoted."""
        cfg = self.config["model"]
        t, mem, lo = self.totals, self.memory_bits, self.loihi
        out = [f"# Operation and resource model: `{cfg['name']}`", "",
               (f"H={cfg['H']}, P={cfg['P']}, n_layers={cfg['n_layers']}, d_input={cfg['d_input']}, "
                f"n_classes={cfg['n_classes']}, use_D={cfg['use_D']}; format: {self.config['format']}. "
                "Counts follow from the configuration (SPEC.md section 19); they are not measured time or energy. "
                "Unit: MAC = one real multiply + one real add; a synop (one message over one synapse) is one MAC."),
               ""]

        out += ["## Per layer, per token (count)", "",
                ("| layer | S4D neurons | neuron MACs (state + output) | fan-out synops | fan-in synops | D MACs "
                 "| mixing MACs | ReLU compares | state bits | coefficient bits | mixing weight bits |"),
                "| --- | " + "--- | " * 10]
        for lc in self.per_layer:
            out.append(f"| {lc.index} | {_n(lc.s4d_neurons)} | {_n(lc.neuron_macs)} ({_n(lc.neuron_state_macs)} + "
                       f"{_n(lc.neuron_output_macs)}) | {_n(lc.fan_out_synops)} | {_n(lc.fan_in_synops)} | "
                       f"{_n(lc.d_term_macs)} | {_n(lc.mixing_macs)} | {_n(lc.relu_compares)} | {_n(lc.state_bits)} | "
                       f"{_n(lc.coefficient_bits)} | {_n(lc.mixing_weight_bits)} |")
        out.append("")

        if self.densities is not None:
            out += [f"## Effective synaptic operations per token (count x density; densities {self.assumptions['densities']})",
                    "", "| layer | rho in | rho message | rho relu | fan-out | fan-in | D | mixing | all synops |",
                    "| --- | " + "--- | " * 8]
            for lc in self.per_layer:
                out.append(f"| {lc.index} | {_f(lc.density_in)} | {_f(lc.density_message)} | {_f(lc.density_relu)} | "
                           f"{_f(lc.fan_out_synops_effective)} | {_f(lc.fan_in_synops_effective)} | "
                           f"{_f(lc.d_term_macs_effective)} | {_f(lc.mixing_macs_effective)} | "
                           f"{_f(lc.synaptic_ops_effective)} |")
            out += ["", "| signal | density (" + self.assumptions["densities"].split(":")[0] + ") |", "| --- | --- |"]
            out += [f"| `{k}` | {_f(v)} |" for k, v in self.densities.items()]
            out.append("")

        out += ["## Totals", "", "| quantity | value | label |", "| --- | --- | --- |"]
        for key, value in t.items():
            label = "count x density" if key.endswith("_effective") else "given" if key == "seq_len" else "count"
            out.append(f"| {key} | {_n(value) if isinstance(value, int) else _f(value)} | {label} |")
        out.append("")

        out += ["## Memory (bits, count)", "", "| quantity | bits | KiB |", "| --- | --- | --- |"]
        for group in ("fixed_point", "float32"):
            for key, bits in mem[group].items():
                out.append(f"| {group}.{key} | {_n(bits)} | {bits / 8192:.1f} |")
        out.append("")

        out += ["## Loihi 2", "",
                ("| population | neurons (count) | in-synapses (count) | memory bits (estimate) "
                 "| cores (estimate, assumed limits) |"),
                "| --- | --- | --- | --- | --- |"]
        for p in lo["populations"]:
            out.append(f"| {p['name']} | {_n(p['neurons'])} | {_n(p['in_synapses'])} | {_n(p['memory_bits'])} | "
                       f"{p['cores']} |")
        q = lo["quoted"]
        out += ["", "| quantity | value | label |", "| --- | --- | --- |",
                f"| neurons | {_n(lo['neurons']['total'])} | count |",
                f"| synapses | {_n(lo['synapses']['total'])} | count |",
                f"| cores, one population per core | {lo['cores_one_population_per_core']} | estimate (assumed limits) |",
                f"| cores, packed lower bound | {lo['cores_packed_lower_bound']} | estimate (assumed limits) |",
                f"| cores per chip | {lo['cores_per_chip']} | quoted |",
                f"| fits one chip | {lo['fits_one_chip']} | estimate (assumed limits) |",
                f"| cores used by the 1-layer H=128 P=4 profiling model | {q['profile_model_cores']} | quoted |",
                f"| parameters that fit one chip | up to {_n(q['max_parameters_one_chip'])} | quoted |",
                ""]
        out += [f"- {line}" for line in lo["comparison"] + lo["notes"]]
        out.append("")

        out += ["## Assumptions and conventions", "", "| name | value | label and source |", "| --- | --- | --- |"]
        for key, a in self.assumptions.items():
            if isinstance(a, dict):
                out.append(f"| {key} | {_n(a['value']) if isinstance(a['value'], int) else a['value']} | "
                           f"{a['source']} |")
            else:
                out.append(f"| {key} | | {a} |")
        out.append("")
        return "\n".join(out)


def _n(v: int) -> str:
    return f"{v:,}"


def _f(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.1f}"


def _memory_bits(cfg: ModelConfig, fmt: FxpFormat, layers: list, parameters_float: int) -> dict:
    """Bits of state and parameters: fixed point (per SPEC.md 14.1 widths) and float32 (complex64 states)."""
    H, P, n, K, d_in = cfg.H, cfg.P, cfg.n_layers, cfg.n_classes, cfg.d_input
    w = fmt.weight_bits
    state = sum(lc.state_bits for lc in layers)
    coefficients = sum(lc.coefficient_bits for lc in layers)
    weights = {"encoder_weights": w * H * d_in, "mixing_weights": sum(lc.mixing_weight_bits for lc in layers),
               "decoder_weights": w * K * H}
    fixed = {"state": state, **weights, "coefficients": coefficients}
    fixed["total"] = sum(fixed.values())
    f32 = {"parameters": 32 * parameters_float, "state": 64 * H * P * n}  # complex64 states
    f32["total"] = f32["parameters"] + f32["state"]
    return {"fixed_point": fixed, "float32": f32}


def count_resources(cfg: ModelConfig, fmt: FxpFormat | None = None, densities: dict | None = None, *,
                    seq_len: int | None = None) -> ResourceReport:
    """Counts of SPEC.md section 19 for a configuration, a fixed-point format (default: Loihi 2's, 14.1) and
    optionally the activation densities of every message signal (e.g. from `measure_density`) and a sequence
    length L (for the per-sequence totals). Pure: no I/O, nothing measured here."""
    if not isinstance(cfg, ModelConfig):
        raise S4DInputError(f"count_resources needs a ModelConfig (e.g. get_config('paper')), got "
                            f"{type(cfg).__name__}")
    fmt = FxpFormat() if fmt is None else fmt
    if not isinstance(fmt, FxpFormat):
        raise S4DInputError(f"fmt must be an FxpFormat or None, got {type(fmt).__name__}")
    L = None if seq_len is None else _size("seq_len", seq_len)
    rho = None if densities is None else check_densities(densities, cfg.n_layers)
    H, P, n, K, d_in = cfg.H, cfg.P, cfg.n_layers, cfg.n_classes, cfg.d_input
    last_block = f"layer{n - 1}.block"

    layers = [layer_counts(i, H, P, fmt, cfg.use_D, cfg.activation == "relu", rho) for i in range(n)]
    encoder_macs = dense_macs(H, d_in)  # the input is not measured: dense (rho = 1)
    decoder_macs = dense_macs(K, H)
    neuron_macs = sum(lc.neuron_macs for lc in layers)
    layer_synops = sum(lc.synaptic_ops for lc in layers)
    without_decoder = encoder_macs + neuron_macs + layer_synops
    totals = {
        "macs_per_token_streaming": without_decoder + decoder_macs,
        "macs_per_token_without_decoder": without_decoder,
        "encoder_macs_per_token": encoder_macs,
        "neuron_macs_per_token": neuron_macs,
        "synaptic_ops_per_token_streaming": encoder_macs + layer_synops + decoder_macs,
        "decoder_macs_per_token_streaming": decoder_macs,
        "decoder_macs_per_sequence_last_step": decoder_macs,
        "relu_compares_per_token": sum(lc.relu_compares for lc in layers),
        "parameters_float": float_parameter_count(cfg),
        "parameters_fixed_point": fixed_point_parameter_count(cfg),
    }
    if L is not None:
        totals["seq_len"] = L
        totals["macs_per_sequence_last_step"] = L * without_decoder + decoder_macs
        totals["macs_per_sequence_streaming"] = L * (without_decoder + decoder_macs)
        totals["macs_per_token_last_step_amortised"] = (L * without_decoder + decoder_macs) / L
    if rho is not None:
        decoder_eff = decoder_macs * rho[last_block]
        layer_synops_eff = sum(lc.synaptic_ops_effective for lc in layers)
        totals["synaptic_ops_per_token_streaming_effective"] = encoder_macs + layer_synops_eff + decoder_eff
        totals["macs_per_token_streaming_effective"] = encoder_macs + neuron_macs + layer_synops_eff + decoder_eff
        totals["macs_per_token_without_decoder_effective"] = encoder_macs + neuron_macs + layer_synops_eff
        totals["decoder_macs_per_token_streaming_effective"] = decoder_eff

    memory_bits = _memory_bits(cfg, fmt, layers, totals["parameters_float"])
    loihi = _loihi(cfg, fmt, layers)
    assumptions = {
        "unit": "MAC = one real multiply + one real add; a dot product of length k = k MACs; complex x complex = 4 "
                "MACs, complex x real = 2; a synop = one MAC; shifts, rounding and clamps not counted; ReLU "
                "comparisons counted apart",
        "decoder": "streaming readout: K H MACs every step (as the chip runs it); last-step readout: K H once per "
                   "sequence",
        "encoder_density": "the input u is not measured: encoder synops count as dense (rho = 1)",
        "neuron_updates": "not reduced by sparsity: every neuron updates every step",
        "densities": ("none: dense counts only" if rho is None else
                      densities.describe() if isinstance(densities, MeasuredDensity) else "supplied by the caller"),
        "cores_per_chip": {"value": LOIHI2_CORES_PER_CHIP, "source": LOIHI2_CORES_PER_CHIP_SOURCE},
        "neurons_per_core": {"value": ASSUMED_NEURONS_PER_CORE, "source": ASSUMED_NEURONS_PER_CORE_SOURCE},
        "synapses_per_core": {"value": ASSUMED_SYNAPSES_PER_CORE, "source": ASSUMED_SYNAPSES_PER_CORE_SOURCE},
        "memory_bits_per_core": {"value": ASSUMED_MEMORY_BITS_PER_CORE, "source": ASSUMED_MEMORY_BITS_PER_CORE_SOURCE},
        "synapse_bits": {"value": fmt.weight_bits, "source": ASSUMED_SYNAPSE_BITS_SOURCE},
        "neuron_bits": {"value": f"S4D {fmt.msg_bits + 2 * fmt.state_bits + 6 * fmt.coef_bits}, other "
                                 f"{fmt.msg_bits}", "source": ASSUMED_NEURON_BITS_SOURCE},
        "one_population_per_core": "assumed: each neuron population (Lava process) gets cores of its own",
    }
    config = {"model": dataclasses.asdict(cfg), "format": dataclasses.asdict(fmt), "seq_len": L}
    return ResourceReport(config=config, per_layer=layers, totals=totals, memory_bits=memory_bits, loihi=loihi,
                          assumptions=assumptions, densities=rho)


def _loihi(cfg: ModelConfig, fmt: FxpFormat, layers: list[LayerCounts]) -> dict:
    """Neurons and synapses (counts), populations and core estimates (assumed limits), quoted comparisons."""
    H, P, n, K = cfg.H, cfg.P, cfg.n_layers, cfg.n_classes
    neurons = {"encoder": H, "s4d_per_layer": H * P, "activation_per_layer": 2 * H, "decoder": K}
    neurons["total"] = H + n * (H * P + 2 * H) + K
    synapses = {"encoder": H * cfg.d_input, "fan_out_per_layer": H * P, "fan_in_per_layer": H * P,
                "d_term_per_layer": H if cfg.use_D else 0, "mixing_per_layer": H * H, "decoder": K * H}
    synapses["total"] = synapses["encoder"] + n * (2 * H * P + synapses["d_term_per_layer"] + H * H) + K * H
    pops = loihi_populations(cfg, fmt)
    total_memory = sum(p["memory_bits"] for p in pops)
    cores_separate = sum(p["cores"] for p in pops)
    cores_packed = max(1, math.ceil(neurons["total"] / ASSUMED_NEURONS_PER_CORE),
                       math.ceil(synapses["total"] / ASSUMED_SYNAPSES_PER_CORE),
                       math.ceil(total_memory / ASSUMED_MEMORY_BITS_PER_CORE))
    params = float_parameter_count(cfg)
    comparison = [
        (f"parameters (float model, count): {params:,} vs quoted 'up to {QUOTED_MAX_PARAMETERS_ONE_CHIP:,} "
         f"parameters' on one chip: {params / QUOTED_MAX_PARAMETERS_ONE_CHIP:.0%} of the quoted figure"),
        (f"estimated cores {cores_separate} (one population per core) of {LOIHI2_CORES_PER_CHIP} per chip "
         "(estimate under assumed limits)"),
        ("the assumed limits are not what bounds the quoted 275,000 parameters: under them a model of that size "
         "needs far fewer than 128 cores, so the chip's real limit (e.g. the S4D microcode's per-core neuron "
         "capacity, the compiler's placement) is not captured here"),
    ]
    if {"H": H, "P": P, "n_layers": n} == QUOTED_PROFILE_SHAPE:
        comparison.append(
            f"the paper's profiling model (this shape) used {QUOTED_PROFILE_CORES} cores (quoted); this estimate "
            f"gives {cores_separate} with one population per core and {cores_packed} packed (the input source, "
            "on the host or an embedded CPU, is not counted; the compiler's real placement is unknown)")
    notes = ["the input source (d_in values per step) is not counted: it runs on the host or an embedded CPU"]
    if cfg.use_D:
        notes.append("use_D: the chip graph of SPEC.md 16.4 has no D path; its H synapses per layer are counted as if "
                     "it had one")
    return {
        "neurons": neurons,
        "synapses": synapses,
        "populations": pops,
        "memory_bits_estimate": total_memory,
        "cores_one_population_per_core": cores_separate,
        "cores_packed_lower_bound": cores_packed,
        "cores_per_chip": LOIHI2_CORES_PER_CHIP,
        "fits_one_chip": cores_separate <= LOIHI2_CORES_PER_CHIP,
        "quoted": {"profile_model_cores": QUOTED_PROFILE_CORES, "profile_model": dict(QUOTED_PROFILE_SHAPE),
                   "max_parameters_one_chip": QUOTED_MAX_PARAMETERS_ONE_CHIP,
                   "source": "../shared/docs/paper.md (quoted, not measured)"},
        "comparison": comparison,
        "notes": notes,
    }


def measure_density(m: FxpModel, u: np.ndarray, vth: float | None = None) -> MeasuredDensity:
    """Measure the activation density of every message signal with a numpy-fxp run (SPEC.md 14.4): the fraction of
    non-zero messages (vth None) or of sigma-delta messages sent (vth >= 0), over batch, steps and neurons.

    A measurement on the given input, not a count: the result (a dict signal -> fraction, also carrying vth and the
    input shape) is labelled "measured" when passed to `count_resources`."""
    if not isinstance(m, FxpModel):
        raise S4DInputError(f"measure_density needs a fixed-point model (FxpModel), got {type(m).__name__}")
    run = run_fxp(m, u, vth=vth)
    return MeasuredDensity({k: float(v) for k, v in run.density.items()}, vth, np.shape(u))
