"""Integer golden vectors (SPEC.md section 14.7): fixed-point models and their exact integer outputs, so a Lava
simulation or a chip can be compared bit for bit without running this code.

Files in goldens/data/ (listed in the same manifest, under "fixed_point"):
    fxp-model-<config>.npz          the PTQ fixed-point model file of the golden float model (default format,
                                    default calibration set)
    fxp-case-<config>-<family>.npz  u_q (N, L, d_in) the quantised input; logits (N, classes); step_logits
                                    (N, T, classes); layer<i>.y (N, T, c); layer<i>.state_re/_im (S, c, P) of the
                                    first sequence; steps, channels, state_steps as in the float goldens;
                                    saturations: JSON counts per signal
    fxp-model-sat-<stage>.npz       a model derived from one of the PTQ models by narrowed widths or moved
                                    exponents (SATURATION_CASES), so that it saturates on purpose
    fxp-case-sat-<stage>-<family>.npz  its case: the arrays above plus tail_saturations (JSON: per signal, the
                                    events at each of TAIL_STEPS zero steps appended to the input)
All integers are int64, in the fractional bits of the model's exponents.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from s4dconf.fixedpoint.engine import run_fxp
from s4dconf.fixedpoint.formats import FxpModel, fxp_digest, load_fxp, save_fxp
from s4dconf.fixedpoint.literal import literal_run, literal_step, quantize_input
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.reference.config import get_config
from s4dconf.reference.npzio import write_npz
from s4dconf.reference.validate import S4DInputError

from .select import select_channels, select_state_steps, select_steps

FXP_CONFIGS = ("tiny", "small", "loihi-profile")
FXP_FAMILIES = ("impulse", "step", "noise", "spikes", "digits")
TAIL_STEPS = 32  # zero steps after the input whose saturations a saturation case stores (a delayed backend's padding)


def saturation_names(n_layers: int) -> list[str]:
    """The counter names of SPEC.md 14.4 (the engine's `saturations` keys)."""
    names = ["input", "encoder", "decoder"]
    for i in range(n_layers):
        names += [f"layer{i}.state", f"layer{i}.message", f"layer{i}.relu", f"layer{i}.block"]
    return names


@dataclasses.dataclass(frozen=True)
class SaturationCase:
    """An integer golden that saturates on purpose (SPEC.md 14.7): the PTQ golden model of `base` with format
    fields replaced (`fmt`) and exponents moved (`exponents`: deltas of inp_exp, out_exp, act_exp[i], w_exp.<k>),
    run on the golden input `family`. Generation fails unless every stage of `stages` saturates and, when
    `only`, no other stage does ("*" stands for every stage of the model)."""

    name: str
    base: str
    family: str
    stages: tuple[str, ...]
    only: bool
    fmt: tuple = ()
    exponents: tuple = ()
    why: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}/{self.family}"

    @property
    def model_file(self) -> str:
        return f"fxp-model-{self.name}.npz"

    @property
    def case_file(self) -> str:
        return f"fxp-case-{self.name}-{self.family}.npz"


SATURATION_CASES = (
    SaturationCase("sat-input", "tiny", "noise", ("input",), True, exponents=(("inp_exp", 2),),
                   why="inp_exp + 2 (s_enc + 2 keeps the scale of h_0): |u| > 2 clamps; the noise reaches 3.1"),
    SaturationCase("sat-encoder", "tiny", "spikes", ("encoder",), True, exponents=(("w_exp.encoder", -5),),
                   why="w_exp[encoder] - 5: encoder sums 32 times larger; a spike of 1 clamps h_0, and the state's "
                       "response to a single clamped step stays in range"),
    SaturationCase("sat-state", "tiny", "step", ("layer0.state",), True, fmt=(("state_bits", 20),),
                   why="state_bits 24 -> 20: the steady state of the unit step (1.36 at 2^19) passes 2^19"),
    SaturationCase("sat-message", "loihi-profile", "noise", ("layer0.message",), True,
                   exponents=(("act_exp[0]", 1),),
                   why="act_exp[0] + 1 (h_0, x, o, y_0 doubled; s_enc - 1, s_0 + 1): the largest 2 Re(C_n x_n) "
                       "of the noise passes 2^23 while their sums y_0 do not"),
    SaturationCase("sat-relu", "small", "digits", ("layer0.relu",), True, exponents=(("act_exp[0]", 3),),
                   why="act_exp[0] + 3 (h_0, x, o, y_0 times 8): on the digits the sums y_0 pass 2^23 while no "
                       "single message does"),
    SaturationCase("sat-block", "tiny", "step", ("layer0.block",), True, exponents=(("act_exp[1]", 2),),
                   why="act_exp[1] + 2 (s_0 - 2, s_dec + 2): the block output of the unit step passes 2^23"),
    SaturationCase("sat-decoder", "tiny", "step", ("decoder",), True, exponents=(("out_exp", 2),),
                   why="out_exp + 2 (s_dec - 2): the logits of the unit step pass 2^23"),
    SaturationCase("sat-all-half-up", "small", "noise", ("*",), False,
                   fmt=(("msg_bits", 20), ("state_bits", 19), ("rounding", "half_up")),
                   exponents=(("w_exp.encoder", -1),),
                   why="msg_bits 20, state_bits 19 with the exponents of 24 bits (3 to 4 bits short), encoder "
                       "doubled, round half up: every stage of both layers clamps"),
)
SATURATION_BY_NAME = {c.name: c for c in SATURATION_CASES}


def expected_fxp_models() -> dict[str, str]:
    """Model key -> file name of every fixed-point golden model the spec defines (SPEC.md 14.7)."""
    out = {cfg: f"fxp-model-{cfg}.npz" for cfg in FXP_CONFIGS}
    out.update({c.name: c.model_file for c in SATURATION_CASES})
    return out


def expected_fxp_cases() -> dict[str, dict]:
    """Case id -> its manifest entry as the spec defines it (id, model, config, family, file, input)."""
    out = {}
    for cfg in FXP_CONFIGS:
        for fam in FXP_FAMILIES:
            out[f"{cfg}/{fam}"] = {"id": f"{cfg}/{fam}", "model": cfg, "config": cfg, "family": fam,
                                   "file": f"fxp-case-{cfg}-{fam}.npz", "input": f"inputs-{fam}.npz"}
    for c in SATURATION_CASES:
        out[c.id] = {"id": c.id, "model": c.name, "config": c.base, "family": c.family, "file": c.case_file,
                     "input": f"inputs-{c.family}.npz"}
    return out


def expected_fxp_case_ids() -> list[str]:
    return list(expected_fxp_cases())


def expected_fxp_files() -> list[str]:
    """Every integer golden file the spec defines (models and cases)."""
    return list(expected_fxp_models().values()) + [c["file"] for c in expected_fxp_cases().values()]


def fxp_case_array_names(n_layers: int, saturation_case: bool) -> set[str]:
    """The arrays of an integer golden case file (SPEC.md 14.7), dunder entries included."""
    names = {"u_q", "steps", "channels", "state_steps", "logits", "step_logits", "saturations", "__case__"}
    for i in range(n_layers):
        names |= {f"layer{i}.y", f"layer{i}.state_re", f"layer{i}.state_im"}
    if saturation_case:
        names.add("tail_saturations")
    return names


def derive_saturation_model(base: FxpModel, case: SaturationCase, base_file: str = "") -> FxpModel:
    """The model of a saturation case: the base model's integers, with the case's format and exponent changes."""
    fmt = dataclasses.replace(base.fmt, **dict(case.fmt))
    inp_exp, out_exp, act_exp, w_exp = base.inp_exp, base.out_exp, list(base.act_exp), dict(base.w_exp)
    for key, delta in case.exponents:
        if key == "inp_exp":
            inp_exp += delta
        elif key == "out_exp":
            out_exp += delta
        elif key.startswith("act_exp[") and key.endswith("]"):
            act_exp[int(key[8:-1])] += delta
        elif key.startswith("w_exp.") and key[6:] in w_exp:
            w_exp[key[6:]] += delta
        else:  # pragma: no cover - a typo in SATURATION_CASES
            raise S4DInputError(f"saturation case {case.name}: unknown exponent {key!r}")
    provenance = {
        "method": "derived for an integer golden that saturates on purpose (SPEC.md 14.7)",
        "derived_from": {"model": case.base, "file": base_file, "fxp_sha256": fxp_digest(base)},
        "format_changes": dict(case.fmt), "exponent_changes": dict(case.exponents), "why": case.why,
    }
    return FxpModel(config=base.config, fmt=fmt, inp_exp=inp_exp, act_exp=tuple(act_exp), out_exp=out_exp,
                    arrays={k: v.copy() for k, v in base.arrays.items()}, w_exp=w_exp, provenance=provenance)


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


def compute_saturation_case(m: FxpModel, u: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of a saturation case: those of compute_fxp_case (selection by SPEC.md 10) and the saturations at
    each of TAIL_STEPS zero steps after the input, by the literal statement (numpy-fxp must agree on the total)."""
    L = u.shape[1]
    arrays = compute_fxp_case(m, u, select_steps(L), select_channels(m.config.H), select_state_steps(L))
    padded = np.concatenate([u, np.zeros((u.shape[0], TAIL_STEPS, u.shape[2]))], axis=1)
    N = u.shape[0]
    state = [(np.zeros((N, m.config.H, m.config.P), np.int64),) * 2 for _ in range(m.config.n_layers)]
    counts: dict = {}
    tail = {k: [] for k in saturation_names(m.config.n_layers)}
    for k in range(padded.shape[1]):
        before = dict(counts)
        state, _, _ = literal_step(m, state, quantize_input(m, padded[:, k], counts), counts)
        if k >= L:
            for name in tail:
                tail[name].append(counts[name] - before[name])
    total = {k: counts[k] for k in tail}
    if run_fxp(m, padded).saturations != total:
        raise S4DInputError("numpy-fxp differs from the literal integer arithmetic in the zero steps after the input: "
                            "no fixed-point golden written")
    arrays["tail_saturations"] = np.array(json.dumps(tail, sort_keys=True))
    return arrays


def check_saturates_on_purpose(case: SaturationCase, counts: dict) -> None:
    """Generation refuses a saturation case that does not saturate where it is meant to."""
    stages = list(counts) if case.stages == ("*",) else list(case.stages)
    silent = [s for s in stages if not counts.get(s)]
    others = [s for s, n in counts.items() if n and s not in stages] if case.only else []
    if silent or others:
        what = f"{', '.join(stages)} only" if case.only else ", ".join(stages)
        raise S4DInputError(f"saturation case {case.id}: meant to saturate {what}, but counts {counts} have no "
                            f"event at {silent} and events at {others}; no fixed-point golden written")


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
    base_models = {}
    for cfg in FXP_CONFIGS:
        model = gs.model(cfg)
        m = quantize(model)
        base_models[cfg] = m
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
    models, cases = generate_saturation(base_models, gs.input, out_dir, log=log)
    section["models"].update(models)
    section["cases"] += cases
    section["tail_steps"] = TAIL_STEPS
    return section


def generate_saturation(base_models: dict, input_of, out_dir, log=print) -> tuple[dict, list]:
    """Write the model and case files of SATURATION_CASES; returns their manifest entries (models, cases).
    base_models: config -> its PTQ golden model; input_of(family) -> the golden input."""
    models, cases = {}, []
    for c in SATURATION_CASES:
        m = derive_saturation_model(base_models[c.base], c, f"fxp-model-{c.base}.npz")
        save_fxp(m, out_dir / c.model_file)
        models[c.name] = {"file": c.model_file, "fxp_sha256": fxp_digest(m), "format": json.loads(m.fmt.to_json()),
                          "derived_from": c.base, "format_changes": dict(c.fmt),
                          "exponent_changes": dict(c.exponents)}
        arrays = compute_saturation_case(m, input_of(c.family))
        counts = json.loads(str(arrays["saturations"]))
        check_saturates_on_purpose(c, counts)
        arrays["__case__"] = np.array(c.id)
        write_npz(out_dir / c.case_file, arrays)
        cases.append({"id": c.id, "model": c.name, "config": c.base, "family": c.family, "file": c.case_file,
                      "input": f"inputs-{c.family}.npz", "saturations": sum(counts.values()),
                      "saturates": {k: n for k, n in counts.items() if n}})
        log(f"  fixed-point {c.id}: saturates {', '.join(f'{k} {n}' for k, n in counts.items() if n)}")
    return models, cases


def check_fxp_case_arrays(case_id: str, arrays: dict, n_layers: int, saturation_case: bool) -> list[str]:
    """Problems of an integer golden case file's arrays: missing or unexpected names, another case's file."""
    want = fxp_case_array_names(n_layers, saturation_case)
    problems = [f"fixed-point case {case_id}: array {k} is missing from its file" for k in sorted(want - set(arrays))]
    problems += [f"fixed-point case {case_id}: its file has an unexpected array {k}"
                 for k in sorted(set(arrays) - want)]
    if "__case__" in arrays and str(arrays["__case__"]) != case_id:
        problems.append(f"fixed-point case {case_id}: its file holds case {str(arrays['__case__'])!r}")
    return problems


def check_fxp_expected(gs) -> list[str]:
    """Problems of the manifest's "fixed_point" section and files against the spec's sets (expected_fxp_models,
    expected_fxp_cases, fxp_case_array_names): missing, extra, listed twice, named otherwise, arrays missing or
    extra, a file holding another case."""
    hint = "regenerate with `s4dconf golden generate` (and review the diff) or restore it with git"
    section = gs.manifest.get("fixed_point")
    if section is None:
        return ["golden manifest has no 'fixed_point' section; regenerate with `s4dconf golden generate`"]
    problems = []
    want_models, have_models = expected_fxp_models(), section["models"]
    for key, fname in want_models.items():
        if key not in have_models:
            problems.append(f"fixed-point model {key} ({fname}) is missing from manifest.json; {hint}")
        elif have_models[key]["file"] != fname:
            problems.append(f"fixed-point model {key}: manifest.json names the file {have_models[key]['file']!r}, "
                            f"the spec {fname!r}; {hint}")
    problems += [f"fixed-point model {key!r} in manifest.json is not one the spec defines (SPEC.md 14.7); {hint}"
                 for key in have_models if key not in want_models]
    want_cases = expected_fxp_cases()
    seen: dict[str, int] = {}
    for entry in section["cases"]:
        seen[entry["id"]] = seen.get(entry["id"], 0) + 1
    problems += [f"fixed-point case {cid} is missing from manifest.json; {hint}" for cid in want_cases
                 if cid not in seen]
    problems += [f"fixed-point case {cid!r} in manifest.json is not one the spec defines (SPEC.md 14.7); {hint}"
                 for cid in seen if cid not in want_cases]
    problems += [f"fixed-point case {cid} is listed {n} times in manifest.json; {hint}"
                 for cid, n in seen.items() if n > 1]
    for entry in section["cases"]:
        cid = entry["id"]
        want = want_cases.get(cid)
        if want is None:
            continue
        wrong = [k for k, v in want.items() if entry.get(k, entry["config"] if k == "model" else None) != v]
        problems += [f"fixed-point case {cid}: manifest.json has {k} = {entry.get(k)!r}, the spec {want[k]!r}"
                     for k in wrong]
        if not wrong and want["file"] in gs.manifest["files"]:  # an unlisted file is reported by check_expected
            problems += check_fxp_case_arrays(cid, gs._read(want["file"]), get_config(want["config"]).n_layers,
                                              want["model"] in SATURATION_BY_NAME)
    return problems


def verify_fxp(gs, exact_platform: bool) -> tuple[list[str], int]:
    """Regenerate the integer goldens and compare; returns (problems, cases checked). Run after check_fxp_expected
    found nothing: the stored fixed-point models must reproduce their stored integers exactly (any platform: integer
    arithmetic); PTQ must reproduce the stored PTQ models on the generator's platform, and the derivation of
    SATURATION_CASES the stored saturation models on every platform."""
    section = gs.manifest["fixed_point"]
    problems = []
    bad = set()
    for key in expected_fxp_models():
        try:
            gs.fxp_model(key)  # sha256, validation and digest checks
        except S4DInputError as e:
            problems.append(f"fixed-point model {key}: {e}")
            bad.add(key)
    for cfg in FXP_CONFIGS:
        if cfg in bad:
            continue
        if exact_platform and fxp_digest(quantize(gs.model(cfg))) != section["models"][cfg]["fxp_sha256"]:
            problems.append(f"fixed-point model {cfg}: PTQ no longer reproduces {section['models'][cfg]['file']} on "
                            "the generator's platform; regenerate with `s4dconf golden generate` after review")
    for c in SATURATION_CASES:
        if c.name in bad or c.base in bad:
            continue
        if fxp_digest(derive_saturation_model(gs.fxp_model(c.base), c)) != fxp_digest(gs.fxp_model(c.name)):
            problems.append(f"fixed-point model {c.name}: {c.model_file} is not the model of {c.base} with the "
                            f"changes {dict(c.fmt)} {dict(c.exponents)} (SPEC.md 14.7); regenerate with `s4dconf "
                            "golden generate` after review")
    sat_ids = {c.id for c in SATURATION_CASES}
    checked = 0
    for cid, want in expected_fxp_cases().items():
        if want["model"] in bad:
            problems.append(f"fixed-point case {cid}: not regenerated, its model {want['model']} is unusable")
            continue
        case = gs.fxp_case(cid)
        m = gs.fxp_model(want["model"])
        u = gs.input(want["family"])
        if cid in sat_ids:
            fresh = compute_saturation_case(m, u)
        else:
            L = u.shape[1]
            fresh = compute_fxp_case(m, u, select_steps(L), select_channels(m.config.H), select_state_steps(L))
        for key in sorted(fxp_case_array_names(m.config.n_layers, cid in sat_ids) - {"__case__"}):
            stored, new = case[key], fresh[key]
            if stored.shape != new.shape or stored.dtype.kind != new.dtype.kind or not np.array_equal(new, stored):
                problems.append(f"fixed-point case {cid}: {key} differs from the stored integers")
        checked += 1
    return problems, checked


def load_fxp_checked(gs, key: str) -> FxpModel:
    """The fixed-point golden model `key` (a config or a saturation case's model), sha256 and digest checked."""
    entry = gs.manifest["fixed_point"]["models"][key]
    gs._read(entry["file"])  # sha256 check against the manifest
    m = load_fxp(gs.dir / entry["file"])
    if fxp_digest(m) != entry["fxp_sha256"]:
        raise S4DInputError(f"fixed-point model {entry['file']} does not match its fxp_sha256 in the manifest")
    return m
