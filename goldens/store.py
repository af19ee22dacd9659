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

The spec, not the manifest, says which cases and arrays exist (expected_cases, case_array_names and their integer
counterparts): verify fails on a case, model, input, file or array that is missing, extra or malformed. The
manifest is data to check; a manifest that is not the structure below is a GoldenError naming the key, and every
file it names must be a plain name inside the golden folder.
"""
from __future__ import annotations

import dataclasses
import json
import ntpath
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
from s4dconf.reference.npzio import atomic_write, read_npz, read_text_file, sha256_file, write_npz
from s4dconf.reference.validate import S4DInputError

from .integer import (SATURATION_BY_NAME, check_fxp_case_arrays, check_fxp_expected, expected_fxp_files,
                      generate_fxp, load_fxp_checked, verify_fxp)
from .integer import expected_fxp_case_ids  # noqa: F401  (with expected_case_ids: the ids the plugin runs)
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


def expected_cases() -> dict[str, dict]:
    """Case id -> its manifest entry as the spec defines it (SPEC.md 10): every named config on every family."""
    return {f"{cfg}/{fam}": {"id": f"{cfg}/{fam}", "config": cfg, "family": fam, "file": f"case-{cfg}-{fam}.npz",
                             "input": f"inputs-{fam}.npz"} for cfg in NAMED_CONFIGS for fam in FAMILIES}


def expected_case_ids() -> list[str]:
    return list(expected_cases())


def case_array_names(n_layers: int) -> set[str]:
    """The arrays of a float golden case file (SPEC.md 10), dunder entries included."""
    names = {"steps", "channels", "state_steps", "logits", "step_logits", "__schema__", "__case__"}
    for i in range(n_layers):
        names |= {f"layer{i}.y", f"layer{i}.state_re", f"layer{i}.state_im"}
    return names


def check_case_arrays(case_id: str, arrays: dict, n_layers: int) -> list[str]:
    """Problems of a float golden case file's arrays: missing or unexpected names, another case's file."""
    want = case_array_names(n_layers)
    problems = [f"case {case_id}: array {k} is missing from its file" for k in sorted(want - set(arrays))]
    problems += [f"case {case_id}: its file has an unexpected array {k}" for k in sorted(set(arrays) - want)]
    if "__case__" in arrays and str(arrays["__case__"]) != case_id:
        problems.append(f"case {case_id}: its file holds case {str(arrays['__case__'])!r}")
    if "__schema__" in arrays and str(arrays["__schema__"]) != GOLDEN_SCHEMA:
        problems.append(f"case {case_id}: its file has schema {str(arrays['__schema__'])!r}, not {GOLDEN_SCHEMA!r}")
    return problems


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
    text = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    atomic_write(out_dir / "manifest.json", lambda f: f.write(text), "golden manifest")


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
            self.manifest = json.loads(read_text_file(mpath, "golden manifest"))
        except json.JSONDecodeError as e:
            raise GoldenError(f"golden manifest {mpath} is not valid JSON ({e}); {REGENERATE_HINT}") from None
        if not isinstance(self.manifest, dict):
            raise GoldenError(f"golden manifest {mpath} must be a JSON object, got {_json_kind(self.manifest)}; "
                              f"{REGENERATE_HINT}")
        if self.manifest.get("schema") != GOLDEN_SCHEMA:
            raise GoldenError(
                f"golden manifest {mpath} has schema {self.manifest.get('schema')!r}, this code reads "
                f"{GOLDEN_SCHEMA!r}; {REGENERATE_HINT}"
            )
        lacking = [k for k in ("generator", "inputs", "models", "cases", "files") if k not in self.manifest]
        if lacking:
            raise GoldenError(f"golden manifest {mpath} lacks the entries {lacking}; {REGENERATE_HINT}")
        _check_manifest_structure(self.manifest, mpath)
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
        if not _plain_name(name):
            raise GoldenError(f"golden file name {name!r} is not a plain file name inside {self.dir}")
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
            entry = self.manifest["inputs"].get(family)
            if entry is None:
                raise GoldenError(f"no golden input for family {family!r}; known: {', '.join(self.manifest['inputs'])}")
            arrays = self._read(entry["file"])
            if "u" not in arrays:
                raise GoldenError(f"golden input file {self.dir / entry['file']} has no array 'u'; {REGENERATE_HINT}")
            self._inputs[family] = arrays["u"]
        return self._inputs[family]

    def fxp_model(self, key: str):
        """The fixed-point golden model of a config or of a saturation case (sha256 and digest checked)."""
        cache = ("fxp", key)
        if cache not in self._models:
            if key not in self.manifest.get("fixed_point", {}).get("models", {}):
                raise GoldenError(f"no fixed-point golden model {key!r}")
            self._models[cache] = load_fxp_checked(self, key)
        return self._models[cache]

    def fxp_case_ids(self) -> list[str]:
        """The integer case ids the manifest lists (the spec's are `expected_fxp_case_ids()`)."""
        return [c["id"] for c in self.manifest.get("fixed_point", {}).get("cases", [])]

    def fxp_case_entry(self, case_id: str) -> dict:
        """The manifest entry of an integer case, with "model" (the key of its fixed-point model) filled in."""
        for c in self.manifest.get("fixed_point", {}).get("cases", []):
            if c["id"] == case_id:
                return {"model": c["config"], **c}
        raise GoldenError(f"no fixed-point golden case {case_id!r}; known: {', '.join(self.fxp_case_ids())}")

    def fxp_case_model(self, case_id: str):
        """The fixed-point model an integer case runs (its config's PTQ model, or a saturation case's model)."""
        return self.fxp_model(self.fxp_case_entry(case_id)["model"])

    def fxp_case(self, case_id: str) -> dict[str, np.ndarray]:
        """The arrays of an integer case; a file without the arrays the spec lists (or with others) is an error."""
        entry = self.fxp_case_entry(case_id)
        arrays = self._read(entry["file"])
        problems = check_fxp_case_arrays(case_id, arrays, get_config(entry["config"]).n_layers,
                                         entry["model"] in SATURATION_BY_NAME)
        if problems:
            raise GoldenError(f"golden file {self.dir / entry['file']}: {'; '.join(problems)}; {REGENERATE_HINT}")
        return arrays

    def case_ids(self) -> list[str]:
        """The float case ids the manifest lists (the spec's are `expected_case_ids()`)."""
        return [c["id"] for c in self.manifest["cases"]]

    def case(self, case_id: str) -> GoldenCase:
        """A float case; a file without the arrays the spec lists (or with others) is an error."""
        for c in self.manifest["cases"]:
            if c["id"] == case_id:
                raw = self._read(c["file"])
                problems = check_case_arrays(case_id, raw, get_config(c["config"]).n_layers)
                if problems:
                    raise GoldenError(f"golden file {self.dir / c['file']}: {'; '.join(problems)}; {REGENERATE_HINT}")
                arrays = {k: v for k, v in raw.items() if not k.startswith("__")}
                return GoldenCase(c["id"], c["config"], c["family"], self.input(c["family"]), arrays, self)
        raise GoldenError(f"no golden case {case_id!r}; known: {', '.join(self.case_ids())}")


def _json_kind(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _plain_name(name) -> bool:
    """A file name that stays inside the golden folder: no separator of either kind, not . or .., not absolute."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name and not ntpath.isabs(name) and ntpath.splitdrive(name)[0] == "")


def _check_manifest_structure(m: dict, mpath: Path) -> None:
    """The manifest's structure (SPEC.md 10): types of every entry the code reads and plain file names. Raises
    GoldenError naming the key."""

    def fail(key: str, what: str):
        raise GoldenError(f"golden manifest {mpath}: {key} {what}; {REGENERATE_HINT}")

    def obj(v, key: str) -> dict:
        if not isinstance(v, dict):
            fail(key, f"must be an object, got {_json_kind(v)}")
        return v

    def field(entry: dict, name: str, key: str, kinds=(str,), null=False):
        if name not in entry:
            fail(key, f"lacks the key {name!r}")
        v = entry[name]
        if (v is None and null) or (isinstance(v, kinds) and not isinstance(v, bool)):
            return v
        want = " or ".join({str: "a string", int: "an integer"}[k] for k in kinds) + (" or null" if null else "")
        fail(f"{key}.{name}", f"must be {want}, got {_json_kind(v)}")

    def file_name(entry: dict, name: str, key: str, null=False):
        v = field(entry, name, key, null=null)
        if v is not None and not _plain_name(v):
            fail(f"{key}.{name}", f"= {v!r} is not a plain file name inside the golden folder (no path separator, "
                                  "no '..', not absolute)")

    def case_entries(v, where: str):
        """(key, entry) of a list of cases, each an object with string id, config, family and a plain file."""
        if not isinstance(v, list):
            fail(where, f"must be an array, got {_json_kind(v)}")
        for i, entry in enumerate(v):
            key = f"{where}[{i}]"
            obj(entry, key)
            for name in ("id", "config", "family"):
                field(entry, name, key)
            file_name(entry, "file", key)
            yield key, entry

    obj(m["generator"], "generator")
    for name, digest in obj(m["files"], "files").items():
        if not _plain_name(name):
            fail(f"files[{name!r}]", "is not a plain file name inside the golden folder (no path separator, no "
                                     "'..', not absolute)")
        if not isinstance(digest, str):
            fail(f"files[{name!r}]", f"must be a sha256 string, got {_json_kind(digest)}")
    for fam, entry in obj(m["inputs"], "inputs").items():
        file_name(obj(entry, f"inputs[{fam!r}]"), "file", f"inputs[{fam!r}]")
    for cfg, entry in obj(m["models"], "models").items():
        key = f"models[{cfg!r}]"
        obj(entry, key)
        file_name(entry, "file", key, null=True)
        field(entry, "seed", key, (int,))
        field(entry, "params_sha256", key)
    for key, entry in case_entries(m["cases"], "cases"):
        file_name(entry, "input", key)
    if "fixed_point" not in m:
        return
    fxp = obj(m["fixed_point"], "fixed_point")
    for name in ("models", "cases"):
        if name not in fxp:
            fail("fixed_point", f"lacks the key {name!r}")
    for k, entry in obj(fxp["models"], "fixed_point.models").items():
        key = f"fixed_point.models[{k!r}]"
        obj(entry, key)
        file_name(entry, "file", key)
        field(entry, "fxp_sha256", key)
    for key, entry in case_entries(fxp["cases"], "fixed_point.cases"):
        if "model" in entry:
            field(entry, "model", key)
        file_name(entry, "input", key)


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


def check_expected(gs: GoldenSet) -> list[str]:
    """Problems of the golden set against the spec's sets (SPEC.md 10 and 14.7): input families, models, float and
    integer cases and the files list, each missing, extra or named otherwise, and the arrays of every case file.
    Run after check_hashes found nothing (the files it reads are then those the manifest lists)."""
    m = gs.manifest
    problems = []

    def compare(what: str, want: dict, have: dict):
        problems.extend(f"{what} {k} is missing from manifest.json; {REGENERATE_HINT}" for k in want if k not in have)
        problems.extend(f"{what} {k!r} in manifest.json is not one the spec defines; {REGENERATE_HINT}"
                        for k in have if k not in want)

    want_inputs = {fam: f"inputs-{fam}.npz" for fam in FAMILIES}
    compare("input family", want_inputs, m["inputs"])
    problems += [f"input family {fam}: manifest.json names the file {m['inputs'][fam]['file']!r}, the spec {f!r}"
                 for fam, f in want_inputs.items() if fam in m["inputs"] and m["inputs"][fam]["file"] != f]
    compare("model of config", dict.fromkeys(NAMED_CONFIGS), m["models"])
    for cfg, entry in m["models"].items():
        if cfg in NAMED_CONFIGS and entry["file"] not in (None, f"model-{cfg}.npz"):
            problems.append(f"model of config {cfg}: manifest.json names the file {entry['file']!r}, the spec "
                            f"'model-{cfg}.npz' (or null)")
    want_cases = expected_cases()
    seen: dict[str, int] = {}
    for entry in m["cases"]:
        seen[entry["id"]] = seen.get(entry["id"], 0) + 1
    compare("case", want_cases, seen)
    problems += [f"case {cid} is listed {n} times in manifest.json; {REGENERATE_HINT}" for cid, n in seen.items()
                 if n > 1]
    for entry in m["cases"]:
        want = want_cases.get(entry["id"])
        if want is not None:
            wrong = [f"case {entry['id']}: manifest.json has {k} = {entry[k]!r}, the spec {v!r}"
                     for k, v in want.items() if entry[k] != v]
            if not wrong and want["file"] in m["files"]:  # an unlisted file is reported below
                wrong = check_case_arrays(entry["id"], gs._read(want["file"]), get_config(want["config"]).n_layers)
            problems += wrong
    want_files = set(want_inputs.values()) | {c["file"] for c in want_cases.values()}
    want_files |= {e["file"] for cfg, e in m["models"].items() if cfg in NAMED_CONFIGS and e["file"]}
    want_files |= set(expected_fxp_files())
    problems += [f"golden file {gs.dir / f} is not listed in manifest.json (files); {REGENERATE_HINT}"
                 for f in sorted(want_files - set(m["files"]))]
    problems += [f"golden file {f!r} is listed in manifest.json (files) but is no file the spec defines; "
                 f"{REGENERATE_HINT}" for f in sorted(set(m["files"]) - want_files)]
    return problems + check_fxp_expected(gs)


def verify(directory: Path = GOLDEN_DIR, log=print) -> VerifyReport:
    """Check the manifest against the spec's sets of cases, models and files, the hashes, the arrays of every
    case, then regenerate every case and compare (bit-identical on the generator's platform)."""
    gs = GoldenSet(directory)
    problems = gs.check_hashes()
    if problems:
        return VerifyReport(problems, 0, False, float("nan"), float("nan"))
    problems = check_expected(gs)
    if problems:  # regenerating a set that is not the spec's would compare the wrong things
        return VerifyReport(problems, 0, False, float("nan"), float("nan"))
    gen = gs.manifest["generator"]
    differs = platform_differences(gen)
    exact = not differs
    log("  platform: the generator's: bit-identical required" if exact else
        f"  platform differs from the generator's ({'; '.join(differs)}): relative {CROSS_PLATFORM_RTOL:g} allowed")
    worst_rel = 0.0
    worst_cvr = 0.0
    n_float = 0
    for cid in expected_cases():
        try:
            case = gs.case(cid)
            model = case.model
        except S4DInputError as e:  # e.g. a model that no longer reproduces its params_sha256
            problems.append(f"case {cid}: {e}")
            continue
        try:
            fresh_u = make_input(case.family, model.config.d_input, gen.get("seed", GENERATOR_SEED))
        except S4DInputError as e:
            problems.append(f"case {cid}: cannot rebuild its input: {e}")
            continue
        if fresh_u.shape != case.u.shape or not np.array_equal(fresh_u, case.u):
            problems.append(f"case {cid}: input family {case.family!r} no longer reproduces its inputs file")
            continue
        fresh, cvr = compute_case(model, case.u)
        worst_cvr = max(worst_cvr, cvr)
        for key in sorted(fresh):
            stored, new = case.arrays[key], fresh[key]
            if new.shape != stored.shape or stored.dtype.kind != new.dtype.kind:
                problems.append(f"case {cid}: array {key} is {stored.dtype} {stored.shape}, its regeneration "
                                f"{new.dtype} {new.shape}")
                continue
            scale = float(np.max(np.abs(stored))) if stored.size else 0.0
            diff = float(np.max(np.abs(new - stored))) if stored.size else 0.0
            rel = diff / scale if scale > 0 else diff
            worst_rel = max(worst_rel, rel)
            if exact and not np.array_equal(new, stored):
                problems.append(
                    f"case {cid}: array {key} is not bit-identical to its regeneration on the generator's "
                    f"platform (max relative difference {rel:.3e})"
                )
            elif not rel <= CROSS_PLATFORM_RTOL:
                problems.append(
                    f"case {cid}: array {key} differs from its regeneration by relative {rel:.3e} "
                    f"> {CROSS_PLATFORM_RTOL:g}"
                )
        n_float += 1
        log(f"  {cid}: regenerated, max relative difference {worst_rel:.1e}")
    fxp_problems, n_fxp = verify_fxp(gs, exact)
    problems += fxp_problems
    log(f"  {n_fxp} fixed-point cases: integers reproduced exactly" if not fxp_problems else "")
    return VerifyReport(problems, n_float + n_fxp, exact, worst_rel, worst_cvr)
