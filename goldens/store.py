"""Golden outputs (SPEC.md section 10): generate, load, verify.

Layout of goldens/data/:
    manifest.json                 schema, spec version, generator versions and seed, sha256 per file, cases
    inputs-<family>.npz           u (N, L, d_input): the input of every case of that family
    model-<config>.npz            float64 model file (configs whose file fits the size budget; others are
                                  rebuilt from (config, seed) and checked against params_sha256)
    case-<config>-<family>.npz    outputs at selected steps and channels (below)

A case file holds, for the model of <config> on the input of <family>:
    steps (T,), channels (c,)     the stored time indices and channel indices
    logits (N, classes)           readout at the last step (all of it)
    step_logits (N, T, classes)   readout at each stored step
    layer<i>.y (N, T, c)          S4D output of layer i (before the activation)
    state_steps (S,)              steps k whose states x_k are stored
    layer<i>.state_re/_im (S, c, P)  states x_k of the first sequence of the batch
Outputs are those of the recurrence (the defining form, SPEC.md section 3); generation fails if the
convolution path differs from it by more than the float64 tolerance.
"""
from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

import numpy as np
import scipy
import threadpoolctl

import s4dconf

from s4dconf.reference.config import NAMED_CONFIGS, get_config
from s4dconf.reference.inputs import FAMILIES, make_input
from s4dconf.reference.metrics import rel_l2
from s4dconf.reference.model import S4DModel
from s4dconf.reference.modelfile import load_model, params_digest, save_model
from s4dconf.reference.npzio import read_npz, sha256_file, write_npz
from s4dconf.reference.validate import S4DInputError

from .integer import generate_fxp, load_fxp_checked, verify_fxp
from .select import MAX_CHANNELS, MAX_STEPS, select_channels, select_state_steps, select_steps

GOLDEN_SCHEMA = "s4dconf-golden/1"
GOLDEN_DIR = Path(__file__).resolve().parent / "data"
GENERATOR_SEED = 0
MODEL_FILE_BUDGET = 256 * 1024  # bytes of float64 parameters above which a model is rebuilt, not stored
CONV_VS_RECURRENCE_MAX = 1e-10  # the float64 tolerance of SPEC.md section 11
CROSS_PLATFORM_RTOL = 1e-11  # SPEC.md 10: measured worst 4.5e-12 between two CPUs
try:  # numpy >= 2
    from numpy._core._multiarray_umath import __cpu_dispatch__ as _NUMPY_DISPATCH
    from numpy._core._multiarray_umath import __cpu_features__ as _NUMPY_FEATURES
except ImportError:  # numpy 1.26 (the Lava environment)
    from numpy.core._multiarray_umath import __cpu_dispatch__ as _NUMPY_DISPATCH
    from numpy.core._multiarray_umath import __cpu_features__ as _NUMPY_FEATURES
REGENERATE_HINT = "regenerate with `s4dconf golden generate` (and review the diff) or restore it with git"


class GoldenError(S4DInputError):
    """A golden file is missing, corrupt or does not match its manifest or its regeneration."""


def platform_fingerprint() -> dict:
    """What decides the last bits of a float64 result: versions, OS, machine, and the CPU kernels that numpy's SIMD
    dispatch and OpenBLAS picked at run time (the same wheels pick other kernels on another CPU)."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_kernels": cpu_kernels(),
    }


def cpu_kernels() -> str:
    """e.g. "numpy X86_V3; openblas Haswell": numpy's enabled SIMD dispatch targets and the BLAS core types."""
    simd = sorted(k for k in _NUMPY_DISPATCH if _NUMPY_FEATURES.get(k))
    blas = sorted(f"{i.get('internal_api')} {i.get('architecture')}" for i in threadpoolctl.threadpool_info()
                  if i.get("user_api") == "blas")
    return "; ".join([f"numpy {','.join(simd) or 'baseline'}", *blas])


def platform_differences(generator: dict) -> list[str]:
    """The fingerprint fields in which this platform differs from the manifest's generator (absent counts)."""
    return [f"{k}: {generator.get(k, 'not recorded')!s} here {v}" for k, v in platform_fingerprint().items()
            if generator.get(k) != v]


def compute_case(model: S4DModel, u: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """The stored arrays of one case, and the worst relative L2 error of convolution against recurrence."""
    L = u.shape[1]
    steps, channels, state_steps = select_steps(L), select_channels(model.config.H), select_state_steps(L)
    rec = model.forward(u, mode="recurrent", states_at=state_steps)
    states = model.last_states
    conv = model.forward(u, mode="conv")
    worst = max(
        [rel_l2(c.y, r.y) for c, r in zip(conv.layers, rec.layers)] + [rel_l2(conv.step_logits, rec.step_logits)]
    )
    arrays = {
        "steps": steps,
        "channels": channels,
        "state_steps": state_steps,
        "logits": rec.logits,
        "step_logits": rec.step_logits[:, steps],
    }
    for i, layer in enumerate(rec.layers):
        arrays[f"layer{i}.y"] = layer.y[:, steps][:, :, channels]
        x = np.stack([states[int(k)][i][0, channels] for k in state_steps])  # first sequence only
        arrays[f"layer{i}.state_re"] = x.real.copy()
        arrays[f"layer{i}.state_im"] = x.imag.copy()
    return arrays, worst


def model_for(config_name: str, seed: int = GENERATOR_SEED) -> S4DModel:
    return S4DModel.create(get_config(config_name), seed)


def generate(out_dir: Path = GOLDEN_DIR, configs=None, families=None, log=print) -> dict:
    """Write every golden file and the manifest. Returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = list(configs or NAMED_CONFIGS)
    families = list(families or FAMILIES)
    for old in out_dir.glob("*.npz"):
        old.unlink()
    manifest = {
        "schema": GOLDEN_SCHEMA,
        "spec_version": s4dconf.SPEC_VERSION,
        "generator": {"s4dconf": s4dconf.__version__, "seed": GENERATOR_SEED, **platform_fingerprint()},
        "selection": {"max_steps": MAX_STEPS, "max_channels": MAX_CHANNELS},
        "inputs": {},
        "models": {},
        "cases": [],
        "files": {},
    }
    for fam in families:
        name = f"inputs-{fam}.npz"
        write_npz(out_dir / name, {"u": make_input(fam), "__family__": np.array(fam)})
        manifest["inputs"][fam] = {"file": name, "description": " ".join(FAMILIES[fam].description.split())}
    for cfg_name in configs:
        model = model_for(cfg_name)
        n_bytes = sum(a.nbytes for a in model.params.values())
        entry = {"seed": GENERATOR_SEED, "params_sha256": params_digest(model), "config": json.loads(
            model.config.to_json()), "file": None}
        if n_bytes <= MODEL_FILE_BUDGET:
            entry["file"] = f"model-{cfg_name}.npz"
            save_model(model, out_dir / entry["file"])
        manifest["models"][cfg_name] = entry
        for fam in families:
            u = make_input(fam, model.config.d_input)
            arrays, worst = compute_case(model, u)
            if worst > CONV_VS_RECURRENCE_MAX:
                raise GoldenError(
                    f"case {cfg_name}/{fam}: convolution and recurrence differ by relative L2 {worst:.3e} "
                    f"> {CONV_VS_RECURRENCE_MAX:g}; the reference itself is broken, no golden written"
                )
            arrays["__schema__"] = np.array(GOLDEN_SCHEMA)
            arrays["__case__"] = np.array(f"{cfg_name}/{fam}")
            fname = f"case-{cfg_name}-{fam}.npz"
            write_npz(out_dir / fname, arrays)
            manifest["cases"].append({
                "id": f"{cfg_name}/{fam}",
                "config": cfg_name,
                "family": fam,
                "file": fname,
                "input": f"inputs-{fam}.npz",
                "shape": list(u.shape),
                "conv_vs_recurrence_rel_l2": worst,
            })
            log(f"  {cfg_name}/{fam}: L={u.shape[1]} N={u.shape[0]} conv-vs-recurrence rel L2 {worst:.2e}")
    _write_manifest(out_dir, manifest)
    manifest["fixed_point"] = generate_fxp(GoldenSet(out_dir), out_dir, log=log)
    _write_manifest(out_dir, manifest)
    return manifest


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    manifest["files"] = {f.name: sha256_file(f) for f in sorted(out_dir.glob("*.npz"))}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


@dataclasses.dataclass
class GoldenCase:
    id: str
    config: str
    family: str
    u: np.ndarray
    arrays: dict[str, np.ndarray]
    _golden: "GoldenSet"

    @property
    def model(self) -> S4DModel:
        return self._golden.model(self.config)

    @property
    def n_layers(self) -> int:
        return sum(1 for k in self.arrays if k.endswith(".y"))


class GoldenSet:
    """The goldens of one directory, with every file checked against the manifest's sha256 on load."""

    def __init__(self, directory: Path = GOLDEN_DIR):
        self.dir = Path(directory)
        mpath = self.dir / "manifest.json"
        if not mpath.is_file():
            raise GoldenError(f"golden manifest not found: {mpath}; {REGENERATE_HINT}")
        try:
            self.manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise GoldenError(f"golden manifest {mpath} is not valid JSON ({e}); {REGENERATE_HINT}") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("schema") != GOLDEN_SCHEMA:
            raise GoldenError(
                f"golden manifest {mpath} has schema {self.manifest.get('schema')!r}, this code reads "
                f"{GOLDEN_SCHEMA!r}; {REGENERATE_HINT}"
            )
        lacking = [k for k in ("generator", "inputs", "models", "cases", "files") if k not in self.manifest]
        if lacking:
            raise GoldenError(f"golden manifest {mpath} lacks the entries {lacking}; {REGENERATE_HINT}")
        self._models: dict[str, S4DModel] = {}
        self._inputs: dict[str, np.ndarray] = {}

    def check_hashes(self) -> list[str]:
        """Problems found: files missing, altered (sha256 differs) or not in the manifest."""
        problems = []
        listed = self.manifest["files"]
        for name, digest in sorted(listed.items()):
            path = self.dir / name
            if not path.is_file():
                problems.append(f"golden file missing: {path}; {REGENERATE_HINT}")
            elif sha256_file(path) != digest:
                problems.append(
                    f"golden file {path} does not match its sha256 in manifest.json (altered or corrupt); "
                    f"{REGENERATE_HINT}"
                )
        for path in sorted(self.dir.glob("*.npz")):
            if path.name not in listed:
                problems.append(
                    f"golden file {path} is not listed in manifest.json; delete it or regenerate with "
                    "`s4dconf golden generate`"
                )
        return problems

    def _read(self, name: str) -> dict[str, np.ndarray]:
        path = self.dir / name
        digest = self.manifest["files"].get(name)
        if digest is None or not path.is_file() or sha256_file(path) != digest:
            raise GoldenError(f"golden file {path} is missing or does not match manifest.json; {REGENERATE_HINT}")
        return read_npz(path, "golden file")

    def model(self, config: str) -> S4DModel:
        if config not in self._models:
            entry = self.manifest["models"].get(config)
            if entry is None:
                raise GoldenError(f"no golden model for config {config!r}; known: {', '.join(self.manifest['models'])}")
            if entry["file"]:
                self._read(entry["file"])  # hash check
                model = load_model(self.dir / entry["file"])
            else:
                model = model_for(config, entry["seed"])
            # A model rebuilt from (config, seed) on another CPU may differ in its last bits (the LegS eigenvectors
            # come from LAPACK); there the regenerated outputs, within CROSS_PLATFORM_RTOL, are the check.
            rebuilt_elsewhere = not entry["file"] and platform_differences(self.manifest["generator"])
            if params_digest(model) != entry["params_sha256"] and not rebuilt_elsewhere:
                raise GoldenError(
                    f"model of config {config!r} (seed {entry['seed']}) does not reproduce the parameters the "
                    f"goldens were made with (params_sha256 differs); {REGENERATE_HINT}"
                )
            self._models[config] = model
        return self._models[config]

    def input(self, family: str) -> np.ndarray:
        if family not in self._inputs:
            self._inputs[family] = self._read(self.manifest["inputs"][family]["file"])["u"]
        return self._inputs[family]

    def fxp_model(self, config: str):
        """The fixed-point golden model of a config (sha256 and digest checked)."""
        key = ("fxp", config)
        if key not in self._models:
            if config not in self.manifest.get("fixed_point", {}).get("models", {}):
                raise GoldenError(f"no fixed-point golden model for config {config!r}")
            self._models[key] = load_fxp_checked(self, config)
        return self._models[key]

    def fxp_case_ids(self) -> list[str]:
        return [c["id"] for c in self.manifest.get("fixed_point", {}).get("cases", [])]

    def fxp_case(self, case_id: str) -> dict[str, np.ndarray]:
        for c in self.manifest.get("fixed_point", {}).get("cases", []):
            if c["id"] == case_id:
                return self._read(c["file"])
        raise GoldenError(f"no fixed-point golden case {case_id!r}; known: {', '.join(self.fxp_case_ids())}")

    def case_ids(self) -> list[str]:
        return [c["id"] for c in self.manifest["cases"]]

    def case(self, case_id: str) -> GoldenCase:
        for c in self.manifest["cases"]:
            if c["id"] == case_id:
                arrays = {k: v for k, v in self._read(c["file"]).items() if not k.startswith("__")}
                return GoldenCase(c["id"], c["config"], c["family"], self.input(c["family"]), arrays, self)
        raise GoldenError(f"no golden case {case_id!r}; known: {', '.join(self.case_ids())}")


@dataclasses.dataclass
class VerifyReport:
    problems: list[str]
    cases: int
    exact: bool  # same platform as the generator: bit-identical required
    worst_rel: float  # largest relative difference between stored and regenerated arrays
    worst_conv_vs_rec: float

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(directory: Path = GOLDEN_DIR, log=print) -> VerifyReport:
    """Check hashes, then regenerate every case and compare (bit-identical on the generator's platform)."""
    gs = GoldenSet(directory)
    problems = gs.check_hashes()
    if problems:
        return VerifyReport(problems, 0, False, float("nan"), float("nan"))
    gen = gs.manifest["generator"]
    differs = platform_differences(gen)
    exact = not differs
    log("  platform: the generator's: bit-identical required" if exact else
        f"  platform differs from the generator's ({'; '.join(differs)}): relative {CROSS_PLATFORM_RTOL:g} allowed")
    worst_rel = 0.0
    worst_cvr = 0.0
    for c in gs.manifest["cases"]:
        case = gs.case(c["id"])
        try:
            fresh_u = make_input(c["family"], case.model.config.d_input, gen["seed"])
        except S4DInputError as e:
            problems.append(f"case {c['id']}: cannot rebuild its input: {e}")
            continue
        if not np.array_equal(fresh_u, case.u):
            problems.append(f"case {c['id']}: input family {c['family']!r} no longer reproduces inputs file")
        fresh, cvr = compute_case(case.model, case.u)
        worst_cvr = max(worst_cvr, cvr)
        for key, stored in case.arrays.items():
            new = fresh.get(key)
            if new is None or new.shape != stored.shape:
                problems.append(f"case {c['id']}: array {key} missing or reshaped in regeneration")
                continue
            scale = float(np.max(np.abs(stored))) if stored.size else 0.0
            diff = float(np.max(np.abs(new - stored))) if stored.size else 0.0
            rel = diff / scale if scale > 0 else diff
            worst_rel = max(worst_rel, rel)
            if exact and not np.array_equal(new, stored):
                problems.append(
                    f"case {c['id']}: array {key} is not bit-identical to its regeneration on the generator's "
                    f"platform (max relative difference {rel:.3e})"
                )
            elif rel > CROSS_PLATFORM_RTOL:
                problems.append(
                    f"case {c['id']}: array {key} differs from its regeneration by relative {rel:.3e} "
                    f"> {CROSS_PLATFORM_RTOL:g}"
                )
        log(f"  {c['id']}: regenerated, max relative difference {worst_rel:.1e}")
    fxp_problems, n_fxp = verify_fxp(gs, exact)
    problems += fxp_problems
    log(f"  {n_fxp} fixed-point cases: integers reproduced exactly" if not fxp_problems else "")
    return VerifyReport(problems, len(gs.manifest["cases"]) + n_fxp, exact, worst_rel, worst_cvr)
