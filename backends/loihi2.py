"""Backend `loihi2`: the fixed-point graph compiled for a Loihi 2 chip with Intel's lava-loihi (SPEC.md 16.4).

lava-loihi (the chip compiler and the S4D microcode) is available only to members of Intel's Neuromorphic Research
Community, and a Loihi 2 system is needed to run it. Without them this backend reports exactly what is missing.
Everything up to the hardware boundary is ordinary, tested code: the availability decision, the conversion of a
fixed-point model file to the chip processes' integer parameters, and the graph construction.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

import numpy as np

from s4dconf.fixedpoint.formats import DEFAULT_CONVENTIONS, FxpModel, require_format_choices
from s4dconf.fixedpoint.literal import quantize_input
from s4dconf.reference.validate import S4DInputError

from .base import Availability, Backend, BackendInfo, BackendRun
from .lava_graph import (GraphParts, GraphWeights, LavaGraph, batch_neurons, batched, build_graph, fan_out,
                         lava_delays, lava_nc_connection, run_graph, time_major)
from .lava_runtime import DEFAULT_TIMEOUT_S, lava_availability, run_isolated
from .numpy_fxp import NumpyFxpBackend

LAVA_LOIHI_COMPILER = "lava.magma.compiler.subcompilers.nc.ncproc_compiler"
NXCORE = "nxcore"
LOIHI2_GRADED_SPIKE_BITS = 24
LOIHI2_WEIGHT_BITS = 8


def hardware_availability(environ=None, module_exists=None, sinfo=None, lava=None) -> Availability:
    """Decide whether a Loihi 2 system can be used, and say exactly what is missing.

    Checks, in order: lava-nc; Intel's lava-loihi compiler; nxcore; a system configuration: NOSLURM=1 with BOARD
    set (a directly attached board), or SLURM=1 with a partition (PARTITION, or a Loihi partition listed by sinfo).
    environ / module_exists / sinfo / lava (the lava-nc check) are injectable for tests.
    """
    environ = os.environ if environ is None else environ
    module_exists = module_exists or _find
    ok, reason = (lava or lava_availability)()
    if not ok:
        return Availability(False, reason)
    if not module_exists(LAVA_LOIHI_COMPILER):
        return Availability(False, "Intel's lava-loihi is not installed (the Loihi 2 compiler "
                                   f"{LAVA_LOIHI_COMPILER} is missing); it is distributed to members of Intel's "
                                   "Neuromorphic Research Community: see README, 'Loihi 2 hardware'")
    if not module_exists(NXCORE):
        return Availability(False, "lava-loihi is installed but nxcore (its board runtime) does not import")
    if environ.get("NOSLURM") == "1":
        if not environ.get("BOARD"):
            return Availability(False, "NOSLURM=1 is set (direct board access) but BOARD is not: name the board")
        return Availability(True, "")
    if environ.get("SLURM") != "1":
        return Availability(False, "lava-loihi is installed but no Loihi 2 system is configured: set SLURM=1 and "
                                   "PARTITION=<loihi partition>, or NOSLURM=1 and BOARD=<board>")
    if environ.get("PARTITION"):
        return Availability(True, "")
    partitions = (sinfo or _sinfo_partitions)()
    if partitions is None:
        return Availability(False, "SLURM=1 is set but `sinfo` is not available to list partitions; set PARTITION")
    loihi = [p for p in partitions if "loihi" in p.lower() or "oheo" in p.lower() or "kapoho" in p.lower()]
    if not loihi:
        return Availability(False, f"SLURM=1 is set but sinfo lists no Loihi partition (partitions: {partitions}); "
                                   "set PARTITION")
    return Availability(True, "")


def _find(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _sinfo_partitions():
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [line.strip().rstrip("*") for line in out.splitlines() if line.strip()]


def chip_parameters(m: FxpModel, batch: int = 1) -> dict:
    """The integer parameters of the chip graph (SPEC.md 16.4), from a fixed-point model.

    Per dense connection: int8 weights and weight_exp = -shift (the chip scales weights by 2^weight_exp before
    its neuron sees them); per S4D layer (lava-nc's `S4d` process, nc models): a, b, c as integer-valued complex
    arrays over the batch x H x P neurons, s4_exp = F (their fractional bits), inp_exp = act_exp[i].
    Refuses what the chip cannot carry: graded spikes above 24 bits, weights above 8 bits, D terms.
    """
    cfg, fmt = m.config, m.fmt
    if fmt.msg_bits > LOIHI2_GRADED_SPIKE_BITS:
        raise S4DInputError(f"loihi2: msg_bits={fmt.msg_bits}, but Loihi 2 graded spikes carry "
                            f"{LOIHI2_GRADED_SPIKE_BITS} bits")
    if fmt.weight_bits > LOIHI2_WEIGHT_BITS:
        raise S4DInputError(f"loihi2: weight_bits={fmt.weight_bits}, but Loihi 2 dense weights are "
                            f"{LOIHI2_WEIGHT_BITS}-bit")
    if cfg.use_D:
        raise S4DInputError("loihi2: the chip graph has no D path; use a config with use_D = false")
    a = m.arrays
    params = {
        "encoder": {"weights": batched(a["encoder.W"], batch), "weight_exp": -m.shift_encoder},
        "decoder": {"weights": batched(a["decoder.W"], batch), "weight_exp": -m.shift_decoder},
        "layers": [],
        "msg_bits": fmt.msg_bits,
        "inp_exp": m.inp_exp,
        "out_exp": m.out_exp,
    }
    for i in range(cfg.n_layers):
        cplx = lambda k: batch_neurons(a[f"layer{i}.{k}_re"] + 1j * a[f"layer{i}.{k}_im"], batch)  # noqa: E731
        params["layers"].append({
            "fan_out": fan_out(batch * cfg.H, cfg.P, np.int64),
            "a": cplx("Abar"), "b": cplx("Bbar"), "c": cplx("C"),
            "s4_exp": fmt.frac_bits, "inp_exp": m.act_exp[i],
            "mixer": {"weights": batched(a[f"layer{i}.W"], batch), "weight_exp": -m.shift_mixer(i)},
        })
    return params


def build_chip_graph(m: FxpModel, u_q: np.ndarray) -> LavaGraph:
    """lava_graph's graph for the chip (needs lava-nc; its chip models come from lava-loihi), with the integers of
    chip_parameters(m, N). u_q: int (N, T, d_in), sent as int32.

        RingBuffer(u_q) (N d, T) -> Dense(W_enc, weight_exp -s_enc) (N H)
          -> [ Sparse(fan-out) (N H P) -> S4d(a, b, c, s4_exp, inp_exp) (N H P) -> Sparse(fan-in) (N H) [probe y_i]
               -> Dense(W_i, weight_exp -s_i) (N H) ] x n_layers
          -> Dense(W_dec, weight_exp -s_dec) (N C) -> RingBuffer sink (N C, T)

    Every connection sends graded spikes of msg_bits; no neurons besides the S4d: the rectification and the
    saturation are the chip neuron models' (lava-loihi's S4D/Sigma models). Delays as every lava_graph graph:
    y_i at 3 + 3i, logits at 3 n_layers + 2."""
    from lava.magma.core.run_configs import Loihi2HwCfg
    from lava.proc.s4d.process import S4d

    N = u_q.shape[0]
    p = chip_parameters(m, N)
    layers = p["layers"]

    def s4d(site):
        layer = layers[site.layer]
        return S4d(shape=(site.size,), a=layer["a"], b=layer["b"], c=layer["c"], s4_exp=layer["s4_exp"],
                   inp_exp=layer["inp_exp"])

    def weight_exp(site) -> int:  # Dense places only: encoder, mixer, decoder
        return (layers[site.layer]["mixer"] if site.name == "mixer" else p[site.name])["weight_exp"]

    weights = GraphWeights(batch=N, encoder=p["encoder"]["weights"], fan_out=layers[0]["fan_out"],
                           mixers=tuple(layer["mixer"]["weights"] for layer in layers),
                           decoder=p["decoder"]["weights"])
    parts = GraphParts(connection=lava_nc_connection(p["msg_bits"], weight_exp), s4d=s4d, run_cfg=Loihi2HwCfg)
    return build_graph(time_major(u_q, dtype=np.int32), weights, parts)


def _chip_job(m: FxpModel, u_q: np.ndarray):  # pragma: no cover - needs a Loihi 2 system
    logits, ys, _ = run_graph(build_chip_graph(m, u_q))
    return logits, ys


class Loihi2Backend(Backend):
    name = "loihi2"

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.timeout_s = timeout_s

    def availability(self) -> Availability:
        return hardware_availability()

    def info(self) -> BackendInfo:
        return BackendInfo(name=self.name, numeric_class="fixed-point", version="lava-loihi (Loihi2HwCfg)",
                           device=f"Loihi 2 ({os.environ.get('PARTITION') or os.environ.get('BOARD') or '?'})",
                           paths=("chip",), streaming=False, exposes_state=False)

    def prepare(self, model):
        m = NumpyFxpBackend().prepare(model)
        # the chip runs lava-fxp's neuron models: the same arithmetic choices
        require_format_choices(m.fmt, DEFAULT_CONVENTIONS, "loihi2", "run this format on numpy-fxp")
        chip_parameters(m)  # refuse early what the chip cannot carry
        return m

    def delays(self, handle):
        return lava_delays(handle.config.n_layers)

    def run(self, handle, u, path):  # pragma: no cover - needs a Loihi 2 system
        counts: dict = {}
        u_q = np.stack([quantize_input(handle, u[:, k], counts) for k in range(u.shape[1])], axis=1)
        logits, ys = run_isolated(_chip_job, (handle, u_q), self.timeout_s, what="loihi2 run")
        return BackendRun(step_logits=logits * 2.0 ** -handle.out_exp,
                          layer_y=[y * 2.0 ** -handle.act_exp[i] for i, y in enumerate(ys)], saturations=None)
