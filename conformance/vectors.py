"""Language-neutral test vectors and their offline verifier (SPEC.md section 10.1): `s4dconf vectors export` writes
the golden cases as raw little-endian binary files with a JSON index, so that a C, C++, Verilog or MATLAB testbench
can run them without Python; `s4dconf vectors verify` reads the outputs such an implementation wrote and judges them
with the records, metrics and tolerance table of `s4dconf check`.

Layout of an export folder DIR (index.json describes every file: dtype, shape, axes, byte order, meaning, sha256):
    index.json                         schema, spec version, numeric class, tolerance rows, models, cases
    cases.txt                          fixed point only: the flat manifest the C99 implementation reads
    models/<model>/<name>.bin          parameters: float64 (SPEC.md 7) or int64 integers (SPEC.md 14.8)
    cases/<case id>/u.bin              the input, float64 (N, L, d_input)
    cases/<case id>/{steps,channels,state_steps}.bin   the stored selection (SPEC.md 10), int64
    cases/<case id>/expected/<name>.bin                the expected outputs
An implementation writes OUT/<case id>/<name>.bin for each expected file, same dtype, shape and byte order.
Floor 4: reads goldens/ (2) and fixedpoint/ (1), judges with harness.py.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path, PurePosixPath

import numpy as np

import s4dconf
from s4dconf.goldens.integer import SATURATION_BY_NAME, expected_fxp_cases, saturation_names
from s4dconf.goldens.store import GOLDEN_DIR, GoldenSet, expected_cases
from s4dconf.reference.config import NAMED_CONFIGS
from s4dconf.reference.npzio import read_text_file
from s4dconf.reference.validate import S4DInputError

from .harness import Record, Tolerance, compare, load_tolerances, tolerance_for

VECTORS_SCHEMA = "s4dconf-vectors/1"
INDEX_FILE = "index.json"
C_MANIFEST_FILE = "cases.txt"
NUMERIC_CLASSES = ("float64", "fixed-point")
REQUIRED_OUTPUTS = ("logits", "step_logits")  # what every implementation must write; the rest is checked if present
DTYPES = {"float64": "<f8", "int64": "<i8"}  # every .bin is one of these, little-endian
SELECTIONS = ("steps", "channels", "state_steps")
RE_EXPORT = "export the vectors again with `s4dconf vectors export`"
C_SOURCE = Path(__file__).resolve().parent / "c" / "s4d_fxp.c"  # the worked C99 implementation of SPEC.md 14.3


# ---------------------------------------------------------------- what each array is

def _meanings(n_layers: int, fixed: bool) -> dict[str, tuple[list[str], str, str]]:
    """Expected array name -> (axes, stage of SPEC.md 14.3, meaning), in the order of the stages, so that the first
    failing record is the earliest stage that differs. An axis named after a selection indexes that selection's
    array (steps, channels, state_steps)."""
    unit = "integers" if fixed else "float64"
    out = {}
    if fixed:
        out["u_q"] = (["sequence", "step", "input"], "1 input", "the quantised input sat_M(Q(u 2^inp_exp)), every step")
    for i in range(n_layers):
        for part in ("re", "im"):
            out[f"layer{i}.state_{part}"] = (
                ["state_steps", "channels", "mode"], f"3a layer{i} state",
                f"{'real' if part == 're' else 'imaginary'} part of the state of layer {i} after the update of the "
                f"step, first sequence only, every mode, {unit}")
        out[f"layer{i}.y"] = (["sequence", "steps", "channels"], f"3c layer{i} fan-in",
                              f"S4D output y_{i} of layer {i} (before the activation), {unit}")
    out["step_logits"] = (["sequence", "steps", "class"], "4 decoder", f"logits after each stored step, {unit}")
    out["logits"] = (["sequence", "class"], "4 decoder", f"logits after the last step L-1 (readout 'last'), {unit}")
    if fixed:
        out["saturations"] = (["counter"], "14.4 saturation", "clamped elements per counter over the L input steps, "
                              "in the order of the case's saturation_counters")
    return out


# ---------------------------------------------------------------- export

def select_cases(numeric_class: str, configs=(), case_ids=()) -> dict[str, dict]:
    """The golden cases of a numeric class (float64: SPEC.md 10, fixed-point: 14.7), narrowed to `configs` (named
    configs; a fixed-point saturation case counts under its base config) and to `case_ids`; unknown names are
    refused with the known ones."""
    if numeric_class not in NUMERIC_CLASSES:
        raise S4DInputError(f"unknown numeric class {numeric_class!r}; vectors exist for {', '.join(NUMERIC_CLASSES)}")
    cases = expected_cases() if numeric_class == "float64" else expected_fxp_cases()
    have = sorted({c["config"] for c in cases.values()})
    for name in configs:
        if name not in NAMED_CONFIGS:
            raise S4DInputError(f"unknown config {name!r}; known: {', '.join(NAMED_CONFIGS)}")
        if name not in have:
            raise S4DInputError(f"config {name!r} has no {numeric_class} golden case; configs with one: "
                                f"{', '.join(have)}")
    for cid in case_ids:
        if cid not in cases:
            raise S4DInputError(f"no {numeric_class} golden case {cid!r}; known: {', '.join(cases)}")
    chosen = {cid: c for cid, c in cases.items()
              if (not configs or c["config"] in configs) and (not case_ids or cid in case_ids)}
    if not chosen:
        raise S4DInputError(f"no {numeric_class} golden case is both of config {', '.join(configs)} and among the "
                            f"cases {', '.join(case_ids)}; give one of the two")
    return chosen


def _write_bin(root: Path, rel: str, array: np.ndarray, meaning: str, **extra) -> dict:
    """Write one array as raw little-endian bytes (C order); returns its index entry."""
    kind = "int64" if np.asarray(array).dtype.kind in "iu" else "float64"
    data = np.ascontiguousarray(array, dtype=DTYPES[kind]).tobytes()
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"file": rel, "dtype": kind, "shape": list(np.shape(array)), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "meaning": meaning, **extra}


def _check_export_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise S4DInputError(f"vectors folder {out} is a file; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise S4DInputError(f"vectors folder {out} is not empty; give a new or empty folder (an export never mixes "
                            "its files with others)")


def export_vectors(out_dir, numeric_class: str = "fixed-point", configs=(), case_ids=(),
                   golden_dir=GOLDEN_DIR) -> dict:
    """Write the selected golden cases to `out_dir` (new or empty) as .bin files, index.json last (a folder without
    it is an interrupted export), and for fixed point the C manifest. Returns the index."""
    cases = select_cases(numeric_class, configs, case_ids)
    out = Path(out_dir)
    _check_export_folder(out)
    gs = GoldenSet(golden_dir)
    fixed = numeric_class == "fixed-point"
    table = load_tolerances()
    rows = {} if fixed else {f: tolerance_for(table, numeric_class, f) for f in
                             sorted({c["family"] for c in cases.values()} | {"state"})}
    index = {
        "schema": VECTORS_SCHEMA, "spec_version": s4dconf.SPEC_VERSION, "s4dconf": s4dconf.__version__,
        "numeric_class": numeric_class, "byte_order": "little",
        "array_order": "C (row-major): the last index varies fastest",
        "files": "raw numbers without a header, dtype int64 or float64; bytes = product(shape) * 8",
        "outputs": "write OUT/<case id>/<name>.bin for each entry of a case's expected (its `output`), same dtype, "
                   f"shape and byte order; {' and '.join(REQUIRED_OUTPUTS)} are required, the others are checked "
                   "when present (all of them with --require-all)",
        "verdict": ("bit-exact: every integer and every saturation count equal (max_abs_int_diff 0, SPEC.md 14.7)"
                    if fixed else "the metrics of SPEC.md 11.2 against the tolerance rows below (11.1)"),
        "tolerances": [dataclasses.asdict(t) for t in rows.values()],
        "models": {}, "cases": [],
    }
    for cid, c in cases.items():
        key = c.get("model", c["config"])
        if key not in index["models"]:
            model = gs.fxp_model(key) if fixed else gs.model(key)
            index["models"][key] = (_fxp_model_entry if fixed else _float_model_entry)(out, key, model)
        index["cases"].append(_case_entry(out, gs, cid, c, key, numeric_class))
    if fixed:
        (out / C_MANIFEST_FILE).write_text(c_manifest(index))
    (out / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    return index


def _float_model_entry(out: Path, key: str, model) -> dict:
    cfg = model.config
    params = {name: _write_bin(out, f"models/{key}/{name}.bin", a, f"parameter {name} of SPEC.md 7")
              for name, a in sorted(model.params.items())}
    return {"config": json.loads(cfg.to_json()), "params": params}


def _fxp_model_entry(out: Path, key: str, m) -> dict:
    cfg = m.config
    shifts = {"encoder": m.shift_encoder, "decoder": m.shift_decoder,
              **{f"layer{i}": m.shift_mixer(i) for i in range(cfg.n_layers)}}
    params = {name: _write_bin(out, f"models/{key}/{name}.bin", a,
                               "dense weights, weight_bits" if name.endswith(".W") else
                               f"coefficient, frac_bits = {m.fmt.frac_bits} fractional bits (SPEC.md 14.2)")
              for name, a in sorted(m.arrays.items())}
    return {"config": json.loads(cfg.to_json()), "format": dataclasses.asdict(m.fmt),
            "exponents": {"inp_exp": m.inp_exp, "act_exp": list(m.act_exp), "out_exp": m.out_exp,
                          "w_exp": dict(m.w_exp)},
            "shifts": shifts, "params": params}


def _case_entry(out: Path, gs: GoldenSet, cid: str, c: dict, key: str, numeric_class: str) -> dict:
    """Write one case's input, selection and expected files; returns its index entry."""
    fixed = numeric_class == "fixed-point"
    if fixed:
        arrays, n_layers = gs.fxp_case(cid), gs.fxp_model(key).config.n_layers
    else:
        case = gs.case(cid)
        arrays, n_layers = case.arrays, case.n_layers
    u = gs.input(c["family"])
    base = f"cases/{cid}"
    entry = {"id": cid, "model": key, "config": c["config"], "family": c["family"],
             "N": int(u.shape[0]), "L": int(u.shape[1]), "d_input": int(u.shape[2]),
             "inputs": {"u": _write_bin(out, f"{base}/u.bin", u, "the input u (SPEC.md 9), float64",
                                        axes=["sequence", "step", "input"])},
             "selection": {s: _write_bin(out, f"{base}/{s}.bin", arrays[s], f"the stored {s} (SPEC.md 10)")
                           for s in SELECTIONS},
             "expected": {}}
    for name, (axes, stage, meaning) in _meanings(n_layers, fixed).items():
        tol = "exact" if fixed else [numeric_class, "state" if ".state_" in name else c["family"]]
        value = arrays[name] if name != "saturations" else _counts(arrays[name], n_layers)
        entry["expected"][name] = _write_bin(
            out, f"{base}/expected/{name}.bin", value, meaning, axes=axes, stage=stage, tolerance=tol,
            required=name in REQUIRED_OUTPUTS, output=f"{cid}/{name}.bin")
    if fixed:
        entry["saturation_counters"] = saturation_names(n_layers)
        if key in SATURATION_BY_NAME:
            entry["tail_saturations"] = json.loads(str(arrays["tail_saturations"]))
            entry["tail_note"] = ("events at each zero step after the input: a design that runs d extra zero steps "
                                  "(its delay) counts the stored saturations plus the first d entries; write the "
                                  "counts of the L input steps")
    return entry


def _counts(saturations_json: np.ndarray, n_layers: int) -> np.ndarray:
    counts = json.loads(str(saturations_json))
    return np.array([counts[k] for k in saturation_names(n_layers)], dtype=np.int64)


def c_manifest(index: dict) -> str:
    """The flat text the C99 implementation reads: one block per case, "<key> <value>" lines, integers only apart
    from the id and the two folders; everything 14.3 needs, nothing it does not."""
    lines = ["# s4dconf fixed-point vectors for C (SPEC.md 14.3 and 10.1); index.json describes the same files.",
             "# One block per case: `case <id>`, then `<key> <value>` lines, then `end`. Folders are relative to this",
             "# one. Model integers: <model_dir>/<name>.bin; the case's u.bin, steps.bin, channels.bin,",
             "# state_steps.bin in <case_dir>. Saturation counters, in this order: input, encoder, decoder, then per",
             "# layer state, message, relu, block."]
    for case in index["cases"]:
        m = index["models"][case["model"]]
        cfg, fmt, sh = m["config"], m["format"], m["shifts"]
        sel = case["selection"]
        fields = [("case", case["id"]), ("case_dir", f"cases/{case['id']}"), ("model_dir", f"models/{case['model']}"),
                  ("N", case["N"]), ("L", case["L"]), ("d_input", cfg["d_input"]), ("H", cfg["H"]), ("P", cfg["P"]),
                  ("n_layers", cfg["n_layers"]), ("n_classes", cfg["n_classes"]), ("use_D", int(cfg["use_D"])),
                  ("relu", int(cfg["activation"] == "relu")), ("msg_bits", fmt["msg_bits"]),
                  ("state_bits", fmt["state_bits"]), ("frac_bits", fmt["frac_bits"]),
                  ("half_up", int(fmt["rounding"] == "half_up")), ("inp_exp", m["exponents"]["inp_exp"]),
                  ("shift_encoder", sh["encoder"]), *((f"shift_mixer{i}", sh[f"layer{i}"])
                                                      for i in range(cfg["n_layers"])),
                  ("shift_decoder", sh["decoder"]), *((f"n_{s}", sel[s]["shape"][0]) for s in SELECTIONS)]
        lines += [f"{k} {v}" for k, v in fields] + ["end"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- reading an export and an implementation's outputs

def _field(d, key: str, where: str, kind=None):
    if not isinstance(d, dict) or key not in d:
        raise S4DInputError(f"{where}: no field {key!r}; {RE_EXPORT}")
    if kind is not None and not isinstance(d[key], kind):
        raise S4DInputError(f"{where}: field {key!r} is not a {getattr(kind, '__name__', kind)}; {RE_EXPORT}")
    return d[key]


def load_index(vec_dir) -> dict:
    """index.json of an export, its schema, spec version and structure checked (S4DInputError naming the field)."""
    path = Path(vec_dir) / INDEX_FILE
    if not Path(vec_dir).is_dir():
        raise S4DInputError(f"vectors folder {vec_dir} does not exist; {RE_EXPORT}")
    try:
        index = json.loads(read_text_file(path, "vectors index"))
    except json.JSONDecodeError as e:
        raise S4DInputError(f"vectors index {path} is not JSON ({e}); {RE_EXPORT}") from None
    if _field(index, "schema", str(path)) != VECTORS_SCHEMA:
        raise S4DInputError(f"vectors index {path} has schema {index['schema']!r}, not {VECTORS_SCHEMA!r}")
    if index.get("spec_version") != s4dconf.SPEC_VERSION:
        raise S4DInputError(f"vectors index {path} was written for SPEC.md version {index.get('spec_version')!r}, "
                            f"this suite is {s4dconf.SPEC_VERSION}; {RE_EXPORT}")
    if _field(index, "numeric_class", str(path)) not in NUMERIC_CLASSES:
        raise S4DInputError(f"vectors index {path}: unknown numeric class {index['numeric_class']!r}")
    for case in _field(index, "cases", str(path), list):
        where = f"{path} case {case.get('id') if isinstance(case, dict) else case!r}"
        for key, kind in (("id", str), ("family", str), ("L", int), ("expected", dict), ("selection", dict)):
            _field(case, key, where, kind)
        if index["numeric_class"] == "fixed-point":
            _field(case, "saturation_counters", where, list)
        for name, entry in case["expected"].items():
            for key, kind in (("file", str), ("dtype", str), ("shape", list), ("axes", list), ("stage", str),
                              ("output", str)):
                _field(entry, key, f"{where} expected {name}", kind)
            _inside(Path(vec_dir), entry["file"], f"{where} expected {name}: file")
            _inside(Path("OUT"), entry["output"], f"{where} expected {name}: output")
    return index


def _inside(root: Path, rel: str, what: str) -> Path:
    """root/rel, refused unless rel is a relative path that stays inside root."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or "\\" in rel or not p.parts:
        raise S4DInputError(f"{what} {rel!r} is not a plain relative path inside {root}")
    return root / p


def read_bin(path: Path, entry: dict, what: str) -> np.ndarray:
    """A .bin file as its index entry describes it; a missing file or another size is an S4DInputError that says
    the size it must have."""
    if entry["dtype"] not in DTYPES:
        raise S4DInputError(f"{what} {path}: dtype {entry['dtype']!r} is not one of {', '.join(DTYPES)}")
    if not all(isinstance(n, int) and n >= 0 for n in entry["shape"]):
        raise S4DInputError(f"{what} {path}: shape {entry['shape']!r} is not a list of sizes; {RE_EXPORT}")
    shape = tuple(entry["shape"])
    want = int(np.prod(shape, dtype=np.int64)) * 8
    if not path.is_file():
        raise S4DInputError(f"{what} {path} is missing; it must hold {entry['dtype']} {list(shape)} little-endian "
                            f"({want} bytes)")
    size = path.stat().st_size
    if size != want:
        raise S4DInputError(f"{what} {path} has {size} bytes; {entry['dtype']} {list(shape)} little-endian is "
                            f"{want} bytes")
    return np.frombuffer(path.read_bytes(), dtype=DTYPES[entry["dtype"]]).reshape(shape)


def _expected(root: Path, entry: dict, what: str) -> np.ndarray:
    a = read_bin(_inside(root, entry["file"], what), entry, what)
    if "sha256" in entry and hashlib.sha256(a.tobytes()).hexdigest() != entry["sha256"]:
        raise S4DInputError(f"{what} {root / entry['file']} does not match its sha256 in index.json; {RE_EXPORT}")
    return a


def write_output(out_dir, case: dict, name: str, array) -> Path:
    """Write one output the way verify reads it (for implementations in Python; the C program does the same)."""
    entry = case["expected"][name]
    a = np.asarray(array)
    if list(a.shape) != entry["shape"]:
        raise S4DInputError(f"output {name} of case {case['id']}: shape {list(a.shape)}, must be {entry['shape']}")
    path = _inside(Path(out_dir), entry["output"], "output")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.ascontiguousarray(a, dtype=DTYPES[entry["dtype"]]).tobytes())
    return path


# ---------------------------------------------------------------- verify

@dataclasses.dataclass
class VectorsVerdict:
    """What verify found: one record per probe and metric (the format of `s4dconf check --json`), the optional
    outputs that were not provided, and the number of cases."""

    records: list[dict]
    not_provided: list[str]
    cases: int
    numeric_class: str

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["verdict"] != "pass"]


def verify_vectors(vec_dir, out_dir, name: str = "outside", require_all: bool = False) -> VectorsVerdict:
    """Judge the outputs in `out_dir` against the export in `vec_dir`: float64 with harness.compare and the rows of
    the suite's tolerance table (the index's copies must equal them), fixed point bit for bit with every saturation
    counter. Bad input (missing or mis-sized file, a damaged export) is an S4DInputError before any verdict."""
    root, out = Path(vec_dir), Path(out_dir)
    index = load_index(root)
    if not out.is_dir():
        raise S4DInputError(f"outputs folder {out} does not exist; it must hold <case id>/<name>.bin per expected "
                            f"file of {root / INDEX_FILE}")
    fixed = index["numeric_class"] == "fixed-point"
    rows = _check_rows(index)
    records, not_provided = [], []
    for case in index["cases"]:
        where = f"case {case['id']}"
        sel = {s: _expected(root, _field(case["selection"], s, where), f"{where} selection {s}") for s in SELECTIONS}
        got, want = {}, {}
        for probe, entry in case["expected"].items():
            path = _inside(out, entry["output"], "output")
            if not path.exists() and not (require_all or entry.get("required")):
                not_provided.append(f"{case['id']}/{probe}")
                continue
            want[probe] = _expected(root, entry, f"{where} expected {probe}")
            got[probe] = read_bin(path, entry, f"{where} output {probe}")
        judge = _judge_exact if fixed else _judge_float
        records += judge(name, case, got, want, sel, rows)
    return VectorsVerdict(records, not_provided, len(index["cases"]), index["numeric_class"])


def _check_rows(index: dict) -> dict[tuple[str, str], Tolerance]:
    """The suite's tolerance rows for the index's copies; a copy that differs is refused (the table is the
    authority, SPEC.md 11.1)."""
    table = load_tolerances()
    rows = {}
    for row in _field(index, "tolerances", INDEX_FILE, list):
        key = (_field(row, "numeric_class", "tolerance row"), _field(row, "family", "tolerance row"))
        if key not in table or dataclasses.asdict(table[key]) != row:
            raise S4DInputError(f"tolerance row {key} of {INDEX_FILE} is not the suite's row in conformance/"
                                f"tolerances.csv (the vectors are older or edited); {RE_EXPORT}")
        rows[key] = table[key]
    return rows


def _judge_float(name: str, case: dict, got: dict, want: dict, sel: dict, rows: dict) -> list[dict]:
    """The records of test_golden.py and test_streaming.py's states: harness.compare per probe."""
    recs = []
    for probe in want:
        row = rows.get(tuple(case["expected"][probe]["tolerance"]))
        if row is None:
            raise S4DInputError(f"case {case['id']} {probe}: its tolerance row {case['expected'][probe]['tolerance']} "
                                f"is not in {INDEX_FILE}; {RE_EXPORT}")
        extra = dict(logits=True, scale_ref=want.get("step_logits")) if probe == "logits" else {}
        recs += compare(got[probe], want[probe], row, backend=name, case=case["id"], probe=probe, **extra)
    return [r.as_json() for r in recs]


def _judge_exact(name: str, case: dict, got: dict, want: dict, sel: dict, rows: dict) -> list[dict]:
    """Bit-exact records (metric max_abs_int_diff, tolerance 0): one per array, one per saturation counter; a
    failing record says where the first difference is (stage, step, sequence, channel)."""
    total = int(got["saturations"].sum()) if "saturations" in got else None
    recs = []

    def add(probe, stage, diff, where=None):
        rec = Record(name, case["id"], case["family"], probe, "max_abs_int_diff", float(diff), 0.0,
                     "pass" if diff == 0 else "fail", total).as_json()
        rec["stage"] = stage
        if where:
            rec["first_difference"] = where
        recs.append(rec)

    for probe, w in want.items():
        entry, g = case["expected"][probe], got[probe]
        if probe == "saturations":
            for counter, a, b in zip(case["saturation_counters"], g, w):
                add(f"saturations.{counter}", counter, abs(int(a) - int(b)),
                    None if a == b else {"got": int(a), "want": int(b)})
            continue
        diff = np.abs(g - w)
        where = None
        if diff.any():
            idx = tuple(int(i) for i in np.argwhere(diff)[0])
            where = _locate(idx, entry["axes"], sel, case["L"])
            where.update(got=int(g[idx]), want=int(w[idx]))
        add(probe, entry["stage"], int(diff.max(initial=0)), where)
    return recs


def _locate(idx: tuple, axes: list[str], sel: dict, L: int) -> dict:
    """An element's position with selections resolved: {"step": k, "sequence": n, "channel": c, ...}."""
    names = {"steps": "step", "channels": "channel", "state_steps": "step"}
    out = {names.get(ax, ax): int(sel[ax][i]) if ax in sel else i for ax, i in zip(axes, idx)}
    if "step" not in out:
        out["step"] = L - 1  # the last-step logits
    return out


def describe_difference(rec: dict) -> str:
    """One line for a failing bit-exact record: case, stage and where the first difference is."""
    w = rec.get("first_difference") or {}
    at = ", ".join(f"{k} {v}" for k, v in w.items() if k not in ("got", "want"))
    return (f"{rec['case']} {rec['probe']} (stage {rec.get('stage', '-')}): first difference"
            + (f" at {at}" if at else "") + f": got {w.get('got')}, want {w.get('want')}")
