"""Precision sweep (SPEC.md 18.8): a float model, a dataset and a grid of fixed-point format fields -> PTQ at each
point -> accuracy on the test split with `numpy-fxp` -> a JSON document, a Markdown table, and per dimension the
smallest value within WITHIN_POINTS of the float accuracy. The plot is drawn by reports/sweep_report.py.

Grid rules. A grid is {field: [values]} over the fields of `FxpFormat`, named as the dataclass names them (an
unknown name or a value the format refuses is an S4DInputError before any work). The points are

    base                         the paper's format (FxpFormat(), SPEC.md 14.1)
    one at a time                for each field f and value v: base with f = v             (always)
    product (product=True)       every combination of the grid's values, the other fields at base

each point once (a format reached twice is one point). A dimension's line is the base plus the one-at-a-time points
of its field. On that line, the smallest value within WITHIN_POINTS is the least v with
accuracy(v) >= float accuracy - WITHIN_POINTS / 100 (numbers: the least; text fields, e.g. rounding: every value that
qualifies, in grid order).

Every point is PTQ'd (fixedpoint/quantize.py) here, once, with the same calibration set (by default the recipe's: the
base point reproduces the shipped `<recipe>-ptq.npz`); the models are evaluated as one Dask job, points x shards
(distributed.py). A format that cannot hold the model (a coefficient or weight that does not fit its bits:
quantize's S4DInputError) is a point "refused", with that message and no accuracy, and the sweep goes on.

QAFT at named points (`--qaft-at`, QaftPlan): each named point's PTQ model is fine-tuned with the recipe's QAFT
settings (recipes.QAFT_SETTINGS, SPEC.md 18.3) starting from the float model, here, one point after the other (torch
already uses every core); the fine-tuned models are then evaluated with `numpy-fxp` on the same samples as one job.
QAFT's integer forward pass is bit-exact with numpy-fxp, so its own test accuracy (on the whole split) is recorded
next to it as a cross-check.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import importlib.util
import json
import re
import time
import warnings
from pathlib import Path

import numpy as np

import s4dconf
from s4dconf.fixedpoint.formats import DEFAULT_CONVENTIONS, FxpFormat, fxp_digest, load_fxp, require_format_choices
from s4dconf.fixedpoint.quantize import SaturationWarning, quantize
from s4dconf.reference.npzio import read_text_file
from s4dconf.reference.validate import S4DInputError, json_object

from .accuracy import MODELS_DIR, check_limit, read_row_model
from .datasets import load_dataset
from .recipes import calibration_inputs, get_recipe, qaft_spec
from .distributed import EvalPool

SCHEMA = "s4dconf-sweep/1"
WITHIN_POINTS = 1.0  # percentage points of accuracy below float that still count as "as good as float"
FXP_BACKEND, FLOAT_BACKEND = "numpy-fxp", "reference"
BATCH = 500  # the accuracy table's batch (accuracy.measure): the same batches, the same numbers


def format_fields() -> dict[str, type]:
    """{field: type} of the format dataclass, read from it: fields added to FxpFormat join the grid by name."""
    base = FxpFormat()
    return {f.name: type(getattr(base, f.name)) for f in dataclasses.fields(FxpFormat)}


def _value(field: str, text, kind: type, where: str):
    if kind is int:
        if isinstance(text, bool):
            raise S4DInputError(f"{where}: {field} takes integers, got {text!r}")
        try:
            return int(text) if isinstance(text, int) else int(str(text).strip())
        except ValueError:
            raise S4DInputError(f"{where}: {field} takes integers, got {text!r}") from None
    if not isinstance(text, str) or not text.strip():
        raise S4DInputError(f"{where}: {field} takes a name, got {text!r}")
    return text.strip()


def parse_grid_args(items) -> dict[str, list]:
    """`--grid FIELD=V1,V2,...` (repeatable) -> {field: [values as text]}; a field given twice is refused."""
    grid = {}
    for item in items:
        field, sep, values = item.partition("=")
        field = field.strip()
        if not sep or not field or not values.strip():
            raise S4DInputError(f"--grid {item!r}: expected FIELD=V1,V2,... e.g. --grid weight_bits=4,5,6,8")
        if field in grid:
            raise S4DInputError(f"--grid: {field} given twice; give all its values once: --grid {field}=V1,V2,...")
        grid[field] = [v for v in values.split(",")]
    return grid


def read_grid_file(path) -> tuple[dict[str, list], bool]:
    """A TOML grid file: a table [grid] of FIELD = [values] and optionally product = true (top level)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise S4DInputError(f"grid file (--grid-file) {path} does not exist; write a TOML file with a table [grid], "
                            "e.g. weight_bits = [4, 6, 8]")
    try:
        doc = tomllib.loads(read_text_file(path, "grid file"))
    except tomllib.TOMLDecodeError as e:
        raise S4DInputError(f"grid file {path}: not TOML: {e}") from None
    unknown = set(doc) - {"grid", "product"}
    grid, product = doc.get("grid"), doc.get("product", False)
    if unknown or not isinstance(grid, dict) or not isinstance(product, bool):
        raise S4DInputError(f"grid file {path}: expected a table [grid] of FIELD = [values] and optionally "
                            f"product = true/false at the top" + (f"; unknown keys: {', '.join(sorted(unknown))}"
                                                                  if unknown else ""))
    for field, values in grid.items():
        if not isinstance(values, list) or not values:
            raise S4DInputError(f"grid file {path}: grid.{field} must be a non-empty list of values, got {values!r}")
    return grid, product


def check_grid(grid: dict, base: FxpFormat | None = None) -> dict[str, tuple]:
    """{field: values} checked: known fields (FxpFormat's), values of the field's type, each value a valid format
    with the base's other fields; duplicates dropped, order kept."""
    base = base or FxpFormat()
    if not grid:
        raise S4DInputError("the grid is empty: give at least one --grid FIELD=V1,V2,... (or --grid-file)")
    fields = format_fields()
    out = {}
    for field, values in grid.items():
        if field not in fields:
            raise S4DInputError(f"grid: unknown format field {field!r}; the fields of FxpFormat (SPEC.md 14.1): "
                                f"{', '.join(fields)}")
        vals = tuple(dict.fromkeys(_value(field, v, fields[field], f"grid {field}") for v in values))
        for v in vals:
            try:
                dataclasses.replace(base, **{field: v})
            except S4DInputError as e:
                raise S4DInputError(f"grid {field}={v!r}: {e}") from None
        out[field] = vals
    return out


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    fmt: FxpFormat
    varied: tuple[str, ...]  # the fields that differ from the base format (empty: the base)

    @property
    def label(self) -> str:
        return "paper format" if not self.varied else ", ".join(f"{f}={getattr(self.fmt, f)}" for f in self.varied)


def grid_points(grid: dict, base: FxpFormat | None = None, product: bool = False) -> list[SweepPoint]:
    """The points of a checked grid (module docstring): base, then one at a time, then the product; each once."""
    base = base or FxpFormat()
    fmts = [base] + [dataclasses.replace(base, **{f: v}) for f, vals in grid.items() for v in vals]
    if product:
        for combo in itertools.product(*grid.values()):
            try:
                fmts.append(dataclasses.replace(base, **dict(zip(grid, combo))))
            except S4DInputError as e:
                raise S4DInputError(f"grid product point {dict(zip(grid, combo))}: {e}") from None
    fields = list(format_fields())
    return [SweepPoint(f, tuple(n for n in fields if getattr(f, n) != getattr(base, n)))
            for f in dict.fromkeys(fmts)]


@dataclasses.dataclass(frozen=True)
class QaftPlan:
    """`--qaft-at`: the points to fine-tune (by label), whose QAFT settings (a recipe), where the models are written
    (`<out_dir>/<label as a file name>-qaft.npz`), and optionally fewer optimiser steps than the recipe's."""

    labels: tuple[str, ...]
    recipe: str
    out_dir: Path
    data_dir: str | None = None
    max_steps: int | None = None


def _label_key(label: str) -> str:
    return "".join(label.split()).lower()


def qaft_points(labels, points: list[SweepPoint]) -> list[SweepPoint]:
    """The points named by --qaft-at, in the order named (spaces and case ignored; "paper" names the paper format),
    each checked before any work: a label of this grid, a format QAFT's forward pass computes (its conventions)."""
    by_key = {_label_key(p.label): p for p in points}
    by_key.setdefault("paper", points[0])
    out = []
    for label in labels:
        p = by_key.get(_label_key(label))
        if p is None:
            raise S4DInputError(f"--qaft-at {label!r} is not a point of this sweep; its points: "
                                + "; ".join(repr(q.label) for q in points))
        require_format_choices(p.fmt, DEFAULT_CONVENTIONS, f"--qaft-at {p.label!r}: QAFT's forward pass",
                               "fine-tune only points with the default conventions (floor or half_up)")
        if p not in out:
            out.append(p)
    if importlib.util.find_spec("torch") is None:
        raise S4DInputError("--qaft-at fine-tunes with torch, which is not installed here: pip install -e '.[torch]' "
                            "(the Lava environment has none; run the sweep from the main environment)")
    return out


def fine_tune_at(point: SweepPoint, model, calib, calib_description: str, plan: QaftPlan, progress: bool = False):
    """QAFT of the point's PTQ model (training/train.py with the recipe's QAFT settings, the float model's config)
    -> (the fine-tuned fixed-point model, its training record, its file)."""
    from .qaft import QaftScales  # deferred: torch is the optional extra [torch]
    from .train import train

    spec = dataclasses.replace(qaft_spec(plan.recipe), config=model.config)
    if plan.max_steps is not None:
        spec = dataclasses.replace(spec, max_steps=plan.max_steps)
    path = Path(plan.out_dir) / (re.sub(r"[^A-Za-z0-9_.=-]+", "_", point.label) + "-qaft.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    ptq = ptq_at(point.fmt, model, calib, calib_description)
    record = train(spec, path, data_dir=plan.data_dir, progress=progress, start=model,
                   qaft=QaftScales.from_fxp(ptq))
    return load_fxp(path), record, path


def ptq_at(fmt: FxpFormat, model, calib, calib_description: str):
    """The PTQ of `model` in format fmt (run where the point is evaluated). A model that saturates on its own
    calibration set is kept (its counts are in the provenance): the sweep measures what that costs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)
        return quantize(model, calib, fmt, calib_description=calib_description)


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((np.argmax(logits, axis=1) == y).mean())


def smallest_within(points: list[dict], float_accuracy: float, base: dict, fields) -> dict:
    """Per dimension (field), from its line (the base + the points varying that field alone): numbers -> the least
    value within WITHIN_POINTS of float; text -> every value that is (module docstring). None: no value is."""
    floor = float_accuracy - WITHIN_POINTS / 100
    out = {}
    for field in fields:
        line = [p for p in points if p["varied"] in ([], [field])]
        ok = [p["format"][field] for p in line if p["accuracy"] is not None and p["accuracy"] >= floor]
        if isinstance(base[field], str):
            out[field] = {"within": list(dict.fromkeys(ok))}
        else:
            v = min(ok) if ok else None
            acc = next((p["accuracy"] for p in line if p["format"][field] == v), None)
            out[field] = {"smallest": v, "accuracy": acc}
    return out


def sweep_inputs(model_path, dataset: str, grid: dict, recipe: str | None = None, data_dir=None):
    """Everything `sweep` needs, read and checked (the grid first: a bad field fails before any data is read):
    (model file, its sha256, the float model, the test split, the grid, the calibration set and its description
    (recipe: whose PTQ calibration, default the dataset's recipe), the fxp digest of the recipe's shipped PTQ model
    or None)."""
    grid = check_grid(grid)
    split = load_dataset(dataset, "test", data_dir)
    mf = read_row_model(Path(model_path), "float", split)
    calib, what = calibration_inputs(get_recipe(recipe or dataset), data_dir)
    shipped = MODELS_DIR / f"{recipe or dataset}-ptq.npz"
    digest = fxp_digest(load_fxp(shipped)) if shipped.is_file() else None
    return str(model_path), mf.sha256, mf.model, split, grid, calib, what, digest


def sweep(model_file: str, model_sha256: str, model, ds, grid: dict, calib, calib_description: str,
          shipped_ptq_digest: str | None, pool: EvalPool, product: bool = False, limit: int | None = None,
          on_point=None, qaft: QaftPlan | None = None, previous: dict | None = None) -> dict:
    """The sweep document: float accuracy, one record per point (format, fields varied, accuracy, fxp digest,
    calibration saturations, and "qaft" where fine-tuned), and the smallest formats (smallest_within). on_point(doc)
    after each point. model_file, model_sha256: the float model's file and its sha256 (recorded);
    shipped_ptq_digest: fxp_digest of the shipped PTQ model, to record whether the base point reproduces it.
    previous: an earlier document of the same sweep (`--resume`: same model, data, samples and calibration, else an
    S4DInputError): its float accuracy and the points it measured are kept, only the others are evaluated."""
    limit = check_limit(limit)
    n = len(ds.y) if limit is None else min(limit, len(ds.y))
    base = FxpFormat()
    grid = check_grid(grid, base)
    points = grid_points(grid, base, product)
    tuned = qaft_points(qaft.labels, points) if qaft is not None else []
    t0 = time.perf_counter()
    doc = {"schema": SCHEMA, "s4dconf": s4dconf.__version__, "model_file": str(model_file),
           "model_sha256": model_sha256,
           "dataset": ds.name, "split": ds.split, "n": n, "n_split": len(ds.y), "backend": FXP_BACKEND,
           "float_backend": FLOAT_BACKEND, "calibration": calib_description, "within_points": WITHIN_POINTS,
           "mode": "one at a time + product" if product else "one at a time",
           "grid": {k: list(v) for k, v in grid.items()}, "base_format": dataclasses.asdict(base),
           "evaluation": pool.description, "n_points": len(points), "points": [], "complete": False}
    kept = resumable_points(previous, doc, points) if previous is not None else {}
    if previous is not None:
        doc["float_accuracy"] = previous["float_accuracy"]
        doc["resumed"] = {"points_kept": len(kept), "seconds_before": previous.get("seconds", 0.0),
                          "runs": previous.get("resumed", {}).get("runs", 1) + 1}
        t0 -= doc["resumed"]["seconds_before"]  # "seconds": the sweep's time in all its runs
    else:
        logits = pool.evaluate({"float": model}, FLOAT_BACKEND, ds, n, BATCH, what=f"{ds.name} float")["float"]
        doc["float_accuracy"] = _accuracy(logits, ds.y[:n])
    doc["points"] = list(kept.values())
    by_label = {p.label: p for p in points}
    make = functools.partial(ptq_at, model=model, calib=calib, calib_description=calib_description)

    def record(p, accuracy, **more) -> dict:
        return {"label": p.label, "varied": list(p.varied), "format": dataclasses.asdict(p.fmt),
                "accuracy": accuracy, "n": n, **more}

    def done(label, logits):
        doc["points"].append(record(by_label[label], _accuracy(logits, ds.y[:n])))
        doc["seconds"] = round(time.perf_counter() - t0, 1)
        if on_point is not None:
            on_point(doc)

    built = {}
    for p in (p for p in points if p.label not in kept):  # ~4 s a PTQ on smnist: less than one shard
        try:
            built[p.label] = make(p.fmt)
        except S4DInputError as e:  # this format cannot hold the model: a finding of the sweep, not its end
            print(f"sweep: {p.label}: refused: {e}", flush=True)
            doc["points"].append(record(p, None, refused=str(e)))
    if built:
        pool.evaluate(built, FXP_BACKEND, ds, n, BATCH, on_done=done,
                      what=f"{ds.name} sweep ({len(built)} of {len(points)} formats)")
    order = [p.label for p in points]
    doc["points"].sort(key=lambda r: order.index(r["label"]))
    for r in doc["points"]:  # which integers each accuracy belongs to (a kept point's model is built again)
        if r["accuracy"] is not None:
            fxp = built[r["label"]] if r["label"] in built else make(by_label[r["label"]].fmt)
            r["fxp_sha256"] = fxp_digest(fxp)
            r["calibration_saturations"] = fxp.provenance.get("calibration_saturations", {})
    untunable = sorted({r["label"] for r in doc["points"] if r["accuracy"] is None} & {p.label for p in tuned})
    if untunable:
        print(f"sweep: no QAFT at {', '.join(untunable)}: the format is refused", flush=True)
        tuned = [p for p in tuned if p.label not in untunable]
    if tuned:
        _fine_tune(doc, tuned, model, calib, calib_description, qaft, pool, ds, n, on_point)
    base_row = doc["points"][0]
    if shipped_ptq_digest is not None:
        doc["base_is_shipped_ptq"] = base_row.get("fxp_sha256") == shipped_ptq_digest
    doc["smallest_within"] = smallest_within(doc["points"], doc["float_accuracy"], base_row["format"], grid)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    doc["evaluation"] = pool.description  # now that it ran: the workers it had
    doc["complete"] = True
    return doc


RESUME_KEYS = ("model_sha256", "dataset", "split", "n", "backend", "float_backend", "calibration")


def resumable_points(previous: dict, doc: dict, points) -> dict:
    """{label: record} of the points an earlier run of the same sweep measured (the keys of RESUME_KEYS equal; each
    record's format the point's); its QAFT results are not kept, nor its refused points (refusing again is cheap).
    An earlier run of another sweep is an S4DInputError."""
    for key in RESUME_KEYS:
        if previous.get(key) != doc[key]:
            raise S4DInputError(f"--resume: the sweep in the output folder is another sweep ({key} {previous.get(key)!r}, "
                                f"here {doc[key]!r}); use another --out, or drop --resume to start again")
    fmts = {p.label: dataclasses.asdict(p.fmt) for p in points}
    return {r["label"]: {k: r[k] for k in ("label", "varied", "format", "accuracy", "n")}
            for r in previous["points"]
            if fmts.get(r.get("label")) == r["format"] and r.get("n") == doc["n"] and r["accuracy"] is not None}


def _fine_tune(doc, tuned, model, calib, calib_description, plan: QaftPlan, pool: EvalPool, ds, n, on_point):
    """QAFT at the named points (module docstring), then their accuracy with numpy-fxp: each record gains "qaft"."""
    models, records = {}, {}
    doc["qaft_settings"] = {"recipe": plan.recipe, "max_steps": plan.max_steps, "points": [p.label for p in tuned]}
    for p in tuned:
        print(f"QAFT at {p.label!r} ({plan.recipe}'s settings)", flush=True)
        models[p.label], records[p.label], path = fine_tune_at(p, model, calib, calib_description, plan)
        records[p.label]["file"] = str(path)
    logits = pool.evaluate(models, FXP_BACKEND, ds, n, BATCH, what=f"{ds.name} sweep, {len(models)} QAFT models")
    for r in doc["points"]:
        if r["label"] in models:
            rec = records[r["label"]]
            r["qaft"] = {"accuracy": _accuracy(logits[r["label"]], ds.y[:n]), "n": n,
                         "fxp_sha256": fxp_digest(models[r["label"]]), "file": rec["file"],
                         "steps": rec["steps_done"], "seconds": rec["seconds"],
                         "training_forward_test_accuracy": rec["test_accuracy_training_forward"],
                         "training_forward_n": rec["n_test"]}
    if on_point is not None:
        on_point(doc)


def sweep_markdown(doc: dict) -> str:
    """The sweep as Markdown: float accuracy, one row per point, the smallest formats per dimension."""
    fa = doc["float_accuracy"]
    tuned = any("qaft" in p for p in doc["points"])
    lines = ["# Precision sweep (measured)", "",
             f"Model `{Path(doc['model_file']).name}` on {doc['dataset']} ({doc['split']}, {doc['n']} of "
             f"{doc['n_split']} samples); every point a PTQ (calibration: {doc['calibration']}) evaluated with "
             f"`{doc['backend']}`; grid {doc['mode']} around the paper's format (SPEC.md 18.8). Float accuracy "
             f"(`{doc['float_backend']}`): **{100 * fa:.2f} %**. Wall time {doc.get('seconds', '?')} s on "
             f"{doc['evaluation']}" + (f" (in {doc['resumed']['runs']} runs, `--resume`)" if "resumed" in doc
                                       else "") + ".", "",
             "| format (fields that differ from the paper's) | accuracy | vs float | calibration saturations |"
             + (" after QAFT |" if tuned else ""), "|---|---|---|---|" + ("---|" if tuned else "")]
    if not doc.get("complete"):
        lines[2] += (f" **Incomplete: {len(doc['points'])} of {doc.get('n_points', '?')} points so far** (the sweep "
                     "is running, or stopped).")
    for p in doc["points"]:
        if p["accuracy"] is None:
            why = p["refused"].replace("|", "\\|")  # PTQ's message says "max |value|": not a column break
            lines.append(f"| {p['label']} | refused | - | {why} |" + (" - |" if tuned else ""))
            continue
        sat = p.get("calibration_saturations") or {}
        q = p.get("qaft")
        lines.append(f"| {p['label']} | {100 * p['accuracy']:.2f} % | {100 * (p['accuracy'] - fa):+.2f} | "
                     + (", ".join(f"{k} {v}" for k, v in sat.items()) or "none") + " |"
                     + ((f" {100 * q['accuracy']:.2f} % ({q['steps']} steps) |" if q else " - |") if tuned else ""))
    lines += ["", f"## Smallest format within {doc['within_points']:g} point of float, per dimension", "",
              "| field | paper's value | smallest within | its accuracy |", "|---|---|---|---|"]
    for field, r in doc.get("smallest_within", {}).items():
        paper = doc["base_format"][field]
        if "within" in r:
            lines.append(f"| {field} | {paper} | {', '.join(map(str, r['within'])) or 'none'} | - |")
        else:
            lines.append(f"| {field} | {paper} | {r['smallest'] if r['smallest'] is not None else 'none'} | "
                         + (f"{100 * r['accuracy']:.2f} %" if r["accuracy"] is not None else "-") + " |")
    if "base_is_shipped_ptq" in doc:
        lines += ["", "The paper-format point is " + ("" if doc["base_is_shipped_ptq"] else "NOT ")
                  + "the shipped PTQ model (same integers, fxp sha256)."]
    return "\n".join(lines) + "\n"


def check_sweep(doc, what: str = "sweep file") -> dict:
    """The shape a reader needs: schema, float_accuracy, points with format and accuracy."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise S4DInputError(f"{what}: not a sweep document (schema {SCHEMA!r}); write one with `s4dconf sweep`")
    if not isinstance(doc.get("float_accuracy"), float) or not isinstance(doc.get("points"), list):
        raise S4DInputError(f"{what}: needs 'float_accuracy' (a number) and 'points' (a list)")
    for i, p in enumerate(doc["points"]):
        if not (isinstance(p, dict) and isinstance(p.get("format"), dict) and isinstance(p.get("varied"), list)
                and isinstance(p.get("label"), str) and type(p.get("n")) is int and p["n"] > 0
                and (isinstance(p.get("accuracy"), float) or "accuracy" in p and p["accuracy"] is None
                     and isinstance(p.get("refused"), str))):
            raise S4DInputError(f"{what}: points[{i}] needs 'label' (a string), 'format' (an object), 'varied' (a "
                                "list), 'accuracy' (a number, or null with 'refused': why the format cannot hold the "
                                "model) and 'n' (the samples it was measured on, > 0)")
    return doc


def load_sweep(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise S4DInputError(f"sweep file {path} does not exist; write it with `s4dconf sweep`")
    return check_sweep(json_object(read_text_file(path, "sweep file"), f"sweep file {path}"), f"sweep file {path}")


def write_sweep(doc: dict, out_dir) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    j, m = out_dir / "sweep.json", out_dir / "sweep.md"
    j.write_text(json.dumps(doc, indent=1) + "\n")
    if "float_accuracy" in doc:
        m.write_text(sweep_markdown(doc))
    return j, m
