"""Integer golden vectors (SPEC.md section 14.7): fixed-point models and their exact integer outputs, so a Lava
simulation or a chip can be compared bit for bit without running this code.

Files in goldens/data/ (listed in the same manifest, under "fixed_point"):
    fxp-model-<config>.npz          the PTQ fixed-point model file of the golden float model (default format,
                                    default calibration set)
    fxp-case-<config>-<family>.npz  u_q (N, L, d_in) the quantised input; logits (N, classes); step_logits
                                    (N, T, classes); layer<i>.y (N, T, c); layer<i>.state_re/_im (S, c, P) of the
                                    first sequence; steps, channels, state_steps as in the float goldens;
                                    saturations: JSON counts per signal
All integers are int64, in the fractional bits of the model's exponents.
"""
from __future__ import annotations

import json

import numpy as np

from s4dconf.fixedpoint.engine import run_fxp
from s4dconf.fixedpoint.formats import FxpModel, fxp_digest, load_fxp, save_fxp
from s4dconf.fixedpoint.literal import literal_run, literal_step, quantize_input
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.npzio import write_npz
from s4dconf.reference.validate import S4DInputError

from .select import select_channels, select_state_steps, select_steps

FXP_CONFIGS = ("tiny", "small", "loihi-profile")
FXP_FAMILIES = ("impulse", "step", "noise", "spikes", "digits")


def compute_fxp_case(m: FxpModel, u: np.ndarray, steps, channels, state_steps) -> dict[str, np.ndarray]:
    """Every stored integer array of one case, by the literal int64 statement of the arithmetic."""

    step_logits, ys, counts = literal_run(m, u)
    fast = run_fxp(m, u)
    if not (np.array_equal(fast.step_logits, step_logits) and all(
            np.array_equal(a, b) for a, b in zip(fast.layer_y, ys)) and fast.saturations == counts):
        raise S4DInputError("numpy-fxp differs from the literal integer arithmetic: no fixed-point golden written")
    states = _states_at(m, u[:1], state_steps)
    arrays = {
        "u_q": np.stack([quantize_input(m, u[:, k], {}) for k in range(u.shape[1])], axis=1),
        "steps": steps, "channels": channels, "state_steps": state_steps,
        "logits": step_logits[:, -1], "step_logits": step_logits[:, steps],
        "saturations": np.array(json.dumps(counts, sort_keys=True)),
    }
    for i, y in enumerate(ys):
        arrays[f"layer{i}.y"] = y[:, steps][:, :, channels]
        arrays[f"layer{i}.state_re"] = np.stack([states[int(k)][i][0][0, channels] for k in state_steps])
        arrays[f"layer{i}.state_im"] = np.stack([states[int(k)][i][1][0, channels] for k in state_steps])
    return arrays


def _states_at(m: FxpModel, u: np.ndarray, state_steps) -> dict:
    N = u.shape[0]
    state = [(np.zeros((N, m.config.H, m.config.P), np.int64),) * 2 for _ in range(m.config.n_layers)]
    wanted, out = {int(k) for k in state_steps}, {}
    for k in range(max(wanted) + 1):
        counts: dict = {}
        state, _, _ = literal_step(m, state, quantize_input(m, u[:, k], counts), counts)
        if k in wanted:
            out[k] = state
    return out


def generate_fxp(gs, out_dir, log=print) -> dict:
    """Write the fixed-point models and cases for the float goldens `gs`; returns the manifest section."""

    section = {"configs": list(FXP_CONFIGS), "families": list(FXP_FAMILIES), "models": {}, "cases": []}
    for cfg in FXP_CONFIGS:
        model = gs.model(cfg)
        m = quantize(model)
        fname = f"fxp-model-{cfg}.npz"
        save_fxp(m, out_dir / fname)
        section["models"][cfg] = {"file": fname, "fxp_sha256": fxp_digest(m), "format": json.loads(m.fmt.to_json())}
        for fam in FXP_FAMILIES:
            u = gs.input(fam)
            L = u.shape[1]
            arrays = compute_fxp_case(m, u, select_steps(L), select_channels(m.config.H), select_state_steps(L))
            arrays["__case__"] = np.array(f"{cfg}/{fam}")
            cname = f"fxp-case-{cfg}-{fam}.npz"
            write_npz(out_dir / cname, arrays)
            sat = json.loads(str(arrays["saturations"]))
            section["cases"].append({"id": f"{cfg}/{fam}", "config": cfg, "family": fam, "file": cname,
                                     "input": f"inputs-{fam}.npz", "saturations": sum(sat.values())})
            log(f"  fixed-point {cfg}/{fam}: {sum(sat.values())} saturation events")
    return section


def verify_fxp(gs, exact_platform: bool) -> tuple[list[str], int]:
    """Problems found; the stored fixed-point models must reproduce their stored integers exactly (any platform:
    integer arithmetic), and PTQ must reproduce the stored model on the generator's platform."""
    section = gs.manifest.get("fixed_point")
    if section is None:
        return ["golden manifest has no 'fixed_point' section; regenerate with `s4dconf golden generate`"], 0
    problems = []
    for cfg, entry in section["models"].items():
        gs.fxp_model(cfg)  # sha256 and digest checks
        if exact_platform and fxp_digest(quantize(gs.model(cfg))) != entry["fxp_sha256"]:
            problems.append(f"fixed-point model {cfg}: PTQ no longer reproduces {entry['file']} on the generator's "
                            "platform; regenerate with `s4dconf golden generate` after review")
    for c in section["cases"]:
        case = gs.fxp_case(c["id"])
        m = gs.fxp_model(c["config"])
        fresh = compute_fxp_case(m, gs.input(c["family"]), case["steps"], case["channels"], case["state_steps"])
        for key, stored in case.items():
            if key.startswith("__"):
                continue
            if not np.array_equal(fresh[key], stored):
                problems.append(f"fixed-point case {c['id']}: {key} differs from the stored integers")
    return problems, len(section["cases"])


def load_fxp_checked(gs, cfg: str) -> FxpModel:
    entry = gs.manifest["fixed_point"]["models"][cfg]
    gs._read(entry["file"])  # sha256 check against the manifest
    m = load_fxp(gs.dir / entry["file"])
    if fxp_digest(m) != entry["fxp_sha256"]:
        raise S4DInputError(f"fixed-point model {entry['file']} does not match its fxp_sha256 in the manifest")
    return m
