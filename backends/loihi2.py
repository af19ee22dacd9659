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

from s4dconf.fixedpoint.formats import FxpModel
from s4dconf.reference.validate import S4DInputError

from .base import Availability, Backend, BackendInfo, BackendRun
from .lava_float import fan_out
from .lava_runtime import DEFAULT_TIMEOUT_S, lava_availability, lava_delays, run_isolated

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
    eye = np.eye(batch, dtype=np.int64)
    a = m.arrays
    params = {
        "encoder": {"weights": np.kron(eye, a["encoder.W"]), "weight_exp": -m.shift_encoder},
        "decoder": {"weights": np.kron(eye, a["decoder.W"]), "weight_exp": -m.shift_decoder},
        "layers": [],
        "msg_bits": fmt.msg_bits,
        "inp_exp": m.inp_exp,
        "out_exp": m.out_exp,
    }
    for i in range(cfg.n_layers):
        cplx = lambda k: np.tile((a[f"layer{i}.{k}_re"] + 1j * a[f"layer{i}.{k}_im"]).ravel(), batch)  # noqa: E731
        params["layers"].append({
            "fan_out": fan_out(batch * cfg.H, cfg.P).astype(np.int64),
            "a": cplx("Abar"), "b": cplx("Bbar"), "c": cplx("C"),
            "s4_exp": fmt.frac_bits, "inp_exp": m.act_exp[i],
            "mixer": {"weights": np.kron(eye, a[f"layer{i}.W"]), "weight_exp": -m.shift_mixer(i)},
        })
    return params


def build_chip_graph(m: FxpModel, u_q: np.ndarray):
    """The Lava process graph for the chip (needs lava-nc; its chip models come from lava-loihi).
    u_q: int (N, T, d_in). Returns (source, sink, per-layer probes)."""
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.s4d.process import S4d
    from lava.proc.sparse.process import Sparse
    from scipy.sparse import csr_matrix

    N, T, d = u_q.shape
    p = chip_parameters(m, N)
    bits = p["msg_bits"]
    src = Source(data=np.ascontiguousarray(u_q.transpose(0, 2, 1).reshape(N * d, T)).astype(np.int32))
    enc = Dense(weights=p["encoder"]["weights"], weight_exp=p["encoder"]["weight_exp"], num_message_bits=bits)
    src.s_out.connect(enc.s_in)
    out, probes = enc.a_out, []
    for layer in p["layers"]:
        fo = Sparse(weights=csr_matrix(layer["fan_out"]), num_message_bits=bits)
        s4 = S4d(shape=(layer["a"].size,), a=layer["a"], b=layer["b"], c=layer["c"],
                 s4_exp=layer["s4_exp"], inp_exp=layer["inp_exp"])
        fi = Sparse(weights=csr_matrix(layer["fan_out"].T), num_message_bits=bits)
        mix = Dense(weights=layer["mixer"]["weights"], weight_exp=layer["mixer"]["weight_exp"],
                    num_message_bits=bits)
        probe = Sink(shape=(fi.a_out.shape[0],), buffer=T)
        out.connect(fo.s_in)
        fo.a_out.connect(s4.a_in)
        s4.s_out.connect(fi.s_in)
        fi.a_out.connect(probe.a_in)
        fi.a_out.connect(mix.s_in)  # the ReLU is the chip neuron's activation in lava-loihi's S4D/Sigma models
        out = mix.a_out
        probes.append(probe)
    dec = Dense(weights=p["decoder"]["weights"], weight_exp=p["decoder"]["weight_exp"], num_message_bits=bits)
    sink = Sink(shape=(dec.a_out.shape[0],), buffer=T)
    out.connect(dec.s_in)
    dec.a_out.connect(sink.a_in)
    return src, sink, probes


def _chip_job(m: FxpModel, u_q: np.ndarray):  # pragma: no cover - needs a Loihi 2 system
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2HwCfg

    N, T, _ = u_q.shape
    _, sink, probes = build_chip_graph(m, u_q)
    try:
        sink.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2HwCfg())
        logits = sink.data.get().reshape(N, m.config.n_classes, T).transpose(0, 2, 1)
        ys = [pr.data.get().reshape(N, m.config.H, T).transpose(0, 2, 1) for pr in probes]
    finally:
        sink.stop()
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
        from .numpy_fxp import NumpyFxpBackend

        m = NumpyFxpBackend().prepare(model)
        chip_parameters(m)  # refuse early what the chip cannot carry
        return m

    def delays(self, handle):
        return lava_delays(handle.config.n_layers)

    def run(self, handle, u, path):  # pragma: no cover - needs a Loihi 2 system
        from s4dconf.fixedpoint.literal import quantize_input

        counts: dict = {}
        u_q = np.stack([quantize_input(handle, u[:, k], counts) for k in range(u.shape[1])], axis=1)
        logits, ys = run_isolated(_chip_job, (handle, u_q), self.timeout_s, what="loihi2 run")
        return BackendRun(step_logits=logits * 2.0 ** -handle.out_exp,
                          layer_y=[y * 2.0 ** -handle.act_exp[i] for i, y in enumerate(ys)], saturations=None)
