"""The report: one self-contained HTML page (`report.html`), its Markdown mirror (`report.md`), PNG plots
(`img/*.png`) and a log (`report.log`), built from measured JSON files only. Numbers quoted from the paper are
labelled "quoted".

The page answers first, then gives the details. Sections and their inputs (every input is optional; a missing one
gives a section that says "not run" and the command that produces it, never an empty or made-up table):

0. Summary                    the backends conformant / failing / not available (with the reasons; a registered
                              backend the conformance run did not name is asked on the machine building the report,
                              and said so), the claims counted by verdict, the accuracy headline, and which runs are
                              this machine's
1. Conformance matrix         conformance JSON (`s4dconf check --json`, `pytest --conformance-json`): case family
                              (rows) x backend (columns), the worst value of each metric vs its tolerance, pass/fail
                              counts, verdict (`conformance_summary.py`, the summary `s4dconf check` prints too)
2. Error distributions        the same records: per backend, log10(value / tolerance) of the relative metrics and
                              SNR - tolerance (dB) of the fixed-point ones (one PNG per metric kind)
3. Accuracy                   `accuracy.json` (`s4dconf eval`), rendered by `s4dconf.training.accuracy.table_markdown`;
                              the quoted part kept apart
4. Benchmarks                 pytest-benchmark JSON files (`tox -e bench`), read by `compare.load_run`, one run
                              (machine) at a time, this machine's first: streaming latency per token (with the quoted
                              Loihi 2 chip step time as a reference line) and throughput vs batch size (with the
                              torch-conv vs torch-rec crossover of `claims.crossover_points`), one panel per (config,
                              L), then the numbers, collapsed
5. Claims                     the JSON of `s4dconf claims --json`: per claim the verdict, the quoted value, a small
                              table of the measured figures with the run (machine) each comes from, the evidence
                              collapsed
6. Resources                  a dict with key "markdown" (the operation and resource model), included as is
7. Machines                   benchmark JSON `machine_info` (+ `machine_info["s4dconf"]`), conformance `platform`

"Here" is this machine: a benchmark run that is not one of the committed runs (`reports/benchmarks/`) and whose
machine (node, machine, processor, system, release) is the one building the report. Every other run's figures are
labelled with its machine wherever they appear. Internal diagnostics (inputs used, benchmarks left out and why)
go to `report.log`, not to the page.

This module gathers the inputs and assembles the sections; `page.py` holds the blocks and renders them through the
Jinja2 templates in `templates/`, `plots.py` draws the figures. The page carries a small inline script that, after
`window.onload`, writes `<div id="img-check" data-total=N data-loaded=M data-broken="img/a.png ...">` into the DOM,
so a headless browser's `--dump-dom` tells whether every image loaded (conformance/meta/test_report.py).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import platform
import re
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import s4dconf
from s4dconf.backends import backend_names, get_backend
from s4dconf.reference.validate import S4DInputError
from s4dconf.training.accuracy import table_markdown as accuracy_markdown

from . import plots
from .claims import REPORTS_DIR, VERDICTS, BenchFigure, crossover_points
from .compare import MACHINE_FIELDS, load_run
from .conformance_summary import (CHECK_WORST, LOWER, UPPER, ConformanceCellSummary, decode_record,
                                  summarize_conformance)
from .page import SECTIONS  # noqa: F401 - re-exported: the section names are part of this module's API
from .page import (Details, MarkdownFragment, NotRunNotice, Paragraph, ReportImage, ReportSection, SubHeading,
                   TableBlock, TableCell, render_html, render_markdown)

COMMANDS = {
    "conformance": ["s4dconf run --out reports/out", "s4dconf check --json reports/out/conformance.json",
                    "pytest --conformance-json reports/out/conformance.json"],
    "accuracy": ["s4dconf eval --out reports/out/accuracy"],
    "benchmarks": ["tox -e bench  # writes reports/out/benchmark.json",
                   "pytest -m benchmark conformance/benchmarks --benchmark-json reports/out/benchmark.json"],
    "claims": ["s4dconf claims --json reports/out/claims.json"],
    "resources": ["s4dconf run --out reports/out  # its step 'operation and resource counts' writes resources.md",
                  "s4dconf report --resources reports/out/resources.md"],
}
NUMERIC_EXTRA = ("us_per_token", "tokens_per_s", "samples_per_s", "quoted_chip_step_us")


# ---------------------------------------------------------------------------------------------------------------
# Inputs

@dataclasses.dataclass
class LoadedInput:
    data: object = None  # the parsed JSON (a compare.BenchRun for benchmarks); None when not given or not found
    path: str = ""
    missing: str = ""  # why it is absent, when a path was given


def _load(src, what: str, read=None) -> LoadedInput:
    """An input: None, a path (absent file: missing, with the reason), or already-parsed data. `read` reads an
    existing file (default: JSON)."""
    if src is None:
        return LoadedInput()
    if not isinstance(src, (str, Path)):
        return LoadedInput(src, "(in memory)")
    p = Path(src)
    if not p.is_file():
        return LoadedInput(None, str(p), f"{what} file {p} does not exist")
    if read is not None:
        return LoadedInput(read(p), str(p))
    try:
        return LoadedInput(json.loads(p.read_text()), str(p))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise S4DInputError(f"{what} file {p}: {type(e).__name__}: {e}") from None


def _load_benchmark(src) -> LoadedInput:
    """A pytest-benchmark file read by the one reader, `compare.load_run` (data: its BenchRun); already-parsed
    JSON goes through the same reader."""
    if src is None or isinstance(src, (str, Path)):
        return _load(src, "benchmark", load_run)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "benchmark.json"
        p.write_text(json.dumps(src))
        return LoadedInput(load_run(p), "(in memory)")


def _expect(cond: bool, what: str, path: str, msg: str) -> None:
    if not cond:
        raise S4DInputError(f"{what} file {path}: {msg}")


def _fmt(x, spec: str = ".4g") -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return format(x, spec)
    return str(x)


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")


def _not_run(key: str, what: str, missing: str = "") -> list:
    return [NotRunNotice(what + (f" ({missing})" if missing else ""), COMMANDS[key])]


# ---------------------------------------------------------------------------------------------------------------
# Where each run comes from: here (this machine) or another machine, labelled with it

COMMITTED_BENCH_DIR = REPORTS_DIR / "benchmarks"
COMMITTED_ACCURACY_DIR = REPORTS_DIR / "accuracy"


def this_machine() -> dict:
    """The machine building the report, in the fields pytest-benchmark records (`compare.MACHINE_FIELDS`)."""
    return {f: getattr(platform, f)() for f in MACHINE_FIELDS}


def _in_dir(path: str, folder: Path) -> bool:
    try:
        return Path(path).resolve().parent == folder.resolve()
    except (OSError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class RunOrigin:
    """One benchmark run (file): whether it was measured here, and the machine it names."""

    file: str  # the file name
    here: bool
    committed: bool  # one of the runs committed under reports/benchmarks/
    machine: str  # node (CPU, system release)
    date: str  # the day it was measured

    @property
    def label(self) -> str:
        """"here", or the machine and the day: the label of every figure of this run."""
        if self.here:
            return "here"
        return f"{self.machine}, {'committed run' if self.committed else 'run'} of {self.date}"

    @property
    def heading(self) -> str:
        if self.here:
            return f"Here (this machine, {self.machine}): `{self.file}`, {self.date}"
        return f"Another machine: {self.label} (`{self.file}`)"


def run_origin(b: LoadedInput, host: dict) -> RunOrigin:
    mi = b.data.machine_info
    ours = mi.get("s4dconf") if isinstance(mi.get("s4dconf"), dict) else {}
    cpu = mi.get("cpu") if isinstance(mi.get("cpu"), dict) else {}
    brand = str(ours.get("cpu") or cpu.get("brand_raw") or mi.get("processor") or mi.get("machine") or "?")
    brand = re.sub(r"\s+", " ", re.sub(r"\((R|TM)\)|\bProcessor\b", "", brand)).strip() or brand
    release = " ".join(str(mi[k]) for k in ("system", "release") if mi.get(k))
    machine = f"{mi.get('node', '?')} ({brand}" + (f", {release})" if release else ")")
    committed = _in_dir(b.path, COMMITTED_BENCH_DIR)
    here = not committed and all(mi.get(f) == host.get(f) for f in MACHINE_FIELDS)
    return RunOrigin(Path(b.path).name, here, committed, machine, str(b.data.datetime)[:10])


# ---------------------------------------------------------------------------------------------------------------
# Machines (the last section: the details of every run's machine)

def _gpus(g) -> str:
    if not g:
        return "none"
    if isinstance(g, list):
        return ", ".join(x.get("name", json.dumps(x)) if isinstance(x, dict) else str(x) for x in g)
    return str(g)


def _bench_machine(run) -> dict:
    mi = run.machine_info
    s = mi.get("s4dconf") or {}
    cpu = mi.get("cpu") if isinstance(mi.get("cpu"), dict) else {}
    return {"node": mi.get("node"), "cpu": s.get("cpu") or cpu.get("brand_raw") or mi.get("processor"),
            "cpu count": cpu.get("count"),
            "system": " ".join(str(mi[k]) for k in ("system", "release", "machine") if mi.get(k)) or None,
            "python": s.get("python") or mi.get("python_version"), "numpy": s.get("numpy"), "scipy": s.get("scipy"),
            "torch": s.get("torch"), "cuda": s.get("cuda"), "gpus": _gpus(s.get("gpus")) if "gpus" in s else None,
            "lava-nc": s.get("lava-nc"), "s4dconf": s.get("s4dconf"), "spec version": s.get("spec_version"),
            "measured at": run.datetime}


def _conformance_machine(data: dict) -> dict:
    row = dict(data.get("platform") or {})
    row.update({"s4dconf": data.get("s4dconf"), "spec version": data.get("spec_version")})
    return row


def machine_section(conf: LoadedInput, benches: list[LoadedInput], origins: dict) -> ReportSection:
    """One column per input file with the machine it records, headed by its origin (here / which machine)."""
    cols = [(f"{'here' if origins[b.path].here else 'another machine'}: {Path(b.path).name}",
             _bench_machine(b.data)) for b in benches]
    if conf.data is not None:
        cols.append((f"conformance: {Path(conf.path).name}", _conformance_machine(conf.data)))
    if not cols:
        return ReportSection("machine", [NotRunNotice(
            "no benchmark or conformance JSON, so nothing records the machine the measurements ran on",
            COMMANDS["benchmarks"] + COMMANDS["conformance"][:1])])
    fields = list(dict.fromkeys(k for _, d in cols for k in d))
    rows = [[k] + [_fmt(d.get(k)) for _, d in cols] for k in fields if any(d.get(k) is not None for _, d in cols)]
    return ReportSection("machine", [Paragraph("The machines the measurements ran on, as each input file records "
                                               "them."),
                                     TableBlock(["field"] + [c for c, _ in cols], rows)])


# ---------------------------------------------------------------------------------------------------------------
# Conformance matrix

def _metric_value(metric: str, v) -> str:
    if v is None:
        return "none"
    return f"{v:.1f} dB" if metric == "snr_db" else (f"{v:.3g}" if metric == "argmax" else f"{v:.2g}")


def _summary_cell(c: ConformanceCellSummary) -> TableCell:
    """A matrix cell: the verdict with the counts, then the worst value of one metric next to its tolerance (a
    failing metric first, else the first of `CHECK_WORST` the cell has, as `s4dconf check` prints); every metric
    is in the table under the matrix."""
    n, verdict = sum(c.counts.values()), c.overall_verdict
    lines = [f"{verdict.upper()} {c.counts.get('pass', 0)}/{n}" + (f" ({c.counts['fail']} fail)"
                                                                     if c.counts.get("fail") else "")]
    metrics = c.metrics()
    failing = [m for m in metrics if c.worst[m].get("verdict") == "fail"]
    shown = (failing or [m for m in CHECK_WORST if m in metrics] or metrics)[:1]
    lines += [_metric_text(m, c.worst[m]) for m in shown]
    if c.saturated:
        lines.append(f"{c.saturated} saturated")
    return TableCell("\n".join(lines), verdict if verdict in ("pass", "fail") else "")


def _metric_text(m: str, r: dict) -> str:
    bound = "≥" if m in LOWER else "≤"
    return f"{m} {_metric_value(m, r['value'])} ({bound} {_metric_value(m, r['tolerance'])})"


def _backends_table(backends: dict) -> TableBlock:
    rows = []
    for name, b in backends.items():
        if b.get("available") is False:
            rows.append([name, TableCell(f"not available: {b.get('reason', '?')}", "na"), "-", "-", "-", "-"])
        else:
            rows.append([name, b.get("numeric_class"), b.get("version"), b.get("device"),
                         ", ".join(b.get("paths") or []), _fmt(b.get("streaming"))])
    return TableBlock(["backend", "numeric class", "version", "device", "paths", "streaming"], rows)


def _records(conf: LoadedInput) -> list[dict]:
    """The conformance records, checked, with value and tolerance decoded (`json_numbers.decode_number`)."""
    d = conf.data
    _expect(isinstance(d, dict) and isinstance(d.get("records"), list), "conformance", conf.path,
            "expected an object with a list 'records' (s4dconf check --json)")
    need = ("backend", "family", "metric", "value", "tolerance", "verdict")
    out = []
    for r in d["records"]:
        _expect(isinstance(r, dict) and all(k in r for k in need), "conformance", conf.path,
                f"a record lacks one of {need}: {str(r)[:200]}")
        try:
            out.append(decode_record(r))
        except ValueError as e:
            _expect(False, "conformance", conf.path, str(e))
    return out


def _matrix(records: list[dict]) -> tuple[TableBlock, TableBlock]:
    """Case families as rows, backends (backend, path) as columns, a last row over all families: the page's width
    holds a column per backend, where it never held a column per family. Then the worst value of every metric of
    every cell, one row each (shown collapsed)."""
    backends, families, cells = summarize_conformance(records)
    rows = [[TableCell(f)] + [_summary_cell(cells[(b, f)]) if (b, f) in cells else TableCell("not checked", "na")
                              for b in backends] for f in families]
    total_row = [TableCell("all families")]
    for b in backends:
        total = Counter()
        for f in families:
            total.update(cells[(b, f)].counts if (b, f) in cells else {})
        verdict = "fail" if total.get("fail") else "pass"
        total_row.append(TableCell(f"{verdict.upper()} {total.get('pass', 0)}/{sum(total.values())}"
                                   + (f" ({total['fail']} fail)" if total.get("fail") else ""), verdict))
    header = ["case family"] + [b.replace(":", "\n", 1) for b in backends]
    worst = [[f, b, m, _metric_value(m, c.worst[m]["value"]),
              ("≥ " if m in LOWER else "≤ ") + _metric_value(m, c.worst[m]["tolerance"]),
              TableCell(c.worst[m].get("verdict", "-"), "fail" if c.worst[m].get("verdict") == "fail" else "")]
             for (b, f), c in sorted(cells.items(), key=lambda kv: (families.index(kv[0][1]),
                                                                   backends.index(kv[0][0])))
             for m in c.metrics()]
    return (TableBlock(header, rows + [total_row], cls="matrix"),
            TableBlock(["case family", "backend:path", "metric", "worst value", "tolerance", "verdict"], worst))


def conformance_section(conf: LoadedInput) -> ReportSection:
    """The matrix case family x backend: per cell the verdict with pass/fail counts and the worst value of each
    metric next to its tolerance; a last row over all families. Then the backends checked."""
    if conf.data is None:
        return ReportSection("conformance", _not_run("conformance", "no conformance JSON", conf.missing))
    records = _records(conf)
    d = conf.data
    blocks = [Paragraph(f"From `{Path(conf.path).name}`: spec version {d.get('spec_version', '?')}, s4dconf "
                        f"{d.get('s4dconf', '?')}, pytest exit status {d.get('exitstatus', '?')}, {len(records)} "
                        "records.")]
    if records:
        matrix, worst = _matrix(records)
        blocks.append(Paragraph("Each cell: the verdict with the records (case x probe x metric) that pass / all "
                                "records of that case family and backend (backend, then path), then the worst value "
                                "of its first metric next to the tolerance (≤: an upper bound; ≥: a lower bound); a "
                                "failing metric comes first. Green: every record passes; red: one fails; grey: not "
                                "checked."))
        blocks += [matrix, Details(f"The worst value of every metric, per case family and backend ({len(worst.rows)} "
                                   "rows)", [worst])]
    else:
        blocks.append(Paragraph("The file holds no records (no backend was checked)."))
    if d.get("backends"):
        blocks += [SubHeading("Backends"), _backends_table(d["backends"])]
    return ReportSection("conformance", blocks)


# ---------------------------------------------------------------------------------------------------------------
# Error distributions (plots)

def _margins(records, metrics, margin) -> dict:
    out = defaultdict(list)
    for r in records:
        if r["metric"] in metrics and r["tolerance"] is not None and r["value"] is not None:
            out[r["backend"]].append((r["metric"], margin(float(r["value"]), float(r["tolerance"]))))
    return dict(out)


def _log_ratio(v: float, t: float) -> float:
    if t <= 0 or math.isnan(v):
        return math.inf
    return math.log10(v / t) if v > 0 else -math.inf


def errors_section(conf: LoadedInput, img_dir: Path) -> ReportSection:
    """Per backend, every record's distance to its tolerance: relative metrics in decades, SNR in dB."""
    if conf.data is None:
        return ReportSection("errors", _not_run("conformance", "no conformance JSON", conf.missing))
    records = _records(conf)
    blocks = []
    rel = _margins(records, UPPER, _log_ratio)
    if rel:
        name = plots.strip_plot(img_dir, "errors-relative.png", rel, "log10(value / tolerance)   (0 = the tolerance; "
                                "right of it = fail)", "Relative errors (rel_l2, max_abs_rel) vs their tolerance, "
                                "every record", fail_right=True)
        blocks.append(ReportImage(name, "Strip plot, one row per backend: log10(value / tolerance) of every rel_l2 "
                                        "and max_abs_rel record; the red line at 0 is the tolerance, points right of "
                                        "it fail.",
                                  "Relative metrics: distance to the tolerance in decades (-3 = a thousand times "
                                  "below it). Exact results (value 0) are drawn as x at the left edge."))
    snr = _margins(records, ("snr_db",), lambda v, t: v - t)
    if snr:
        name = plots.strip_plot(img_dir, "errors-snr.png", snr, "SNR - its tolerance (dB)   (0 = the tolerance; left "
                                "of it = fail)", "Fixed-point SNR vs its tolerance, every record", fail_right=False)
        blocks.append(ReportImage(name, "Strip plot, one row per backend: SNR in dB minus its tolerance for every "
                                        "snr_db record; the red line at 0 is the tolerance, points left of it fail.",
                                  "SNR margin in dB (fixed-point backends); an infinite SNR (bit-exact) is drawn as "
                                  "x at the right edge."))
    if not blocks:
        blocks.append(Paragraph("No record has a relative or SNR metric to plot."))
    blocks.append(Paragraph("argmax agreement is in the matrix above only (it is a fraction, mostly exactly 1)."))
    return ReportSection("errors", blocks)


# ---------------------------------------------------------------------------------------------------------------
# Accuracy

def _accuracy_source(acc: LoadedInput) -> str:
    name = Path(acc.path).name
    if _in_dir(acc.path, COMMITTED_ACCURACY_DIR):
        return f"the committed table `reports/accuracy/{name}` (this project's `s4dconf eval`, not this run's)"
    return f"`{name}`"


def _accuracy_table(acc: LoadedInput) -> dict:
    _expect(isinstance(acc.data, dict) and isinstance(acc.data.get("rows"), list)
            and isinstance(acc.data.get("columns"), list), "accuracy", acc.path,
            "expected an object with 'columns' and 'rows' (s4dconf eval)")
    try:
        return {**acc.data, "quoted": acc.data.get("quoted") or [],  # cells written by hand may lack a note
                "rows": [{**r, "cells": {c: {"note": "", **v} for c, v in (r.get("cells") or {}).items()}}
                         for r in acc.data["rows"]]}
    except (TypeError, AttributeError) as e:
        raise S4DInputError(f"accuracy file {acc.path}: malformed row: {type(e).__name__}: {e}") from None


def accuracy_headline(table: dict) -> list[str]:
    """Per dataset one line: the float model on the float64 reference, the fixed-point models (PTQ, QAFT) on
    numpy-fxp (else the first column with a figure), with the test split's size."""
    out = {}
    for r in table["rows"]:
        cells = r.get("cells") or {}
        prefer = ("reference",) if r.get("kind") == "float" else ("numpy-fxp",)
        col = next((c for c in (*prefer, *table["columns"]) if (cells.get(c) or {}).get("accuracy") is not None), None)
        if col is None:
            continue
        cell = cells[col]
        kind = str(r.get("kind", "?"))
        out.setdefault(str(r.get("dataset", "?")), []).append(
            (f"{kind.upper() if kind in ('ptq', 'qaft') else kind} {100 * cell['accuracy']:.2f} %", col, cell.get("n")))
    lines = []
    for ds, figs in out.items():
        cols = ", ".join(dict.fromkeys(c for _, c, _ in figs))
        ns = {n for _, _, n in figs if n}
        lines.append(f"{ds}: " + ", ".join(f for f, _, _ in figs) + f" ({cols}"
                     + (f"; {ns.pop():,} test samples" if len(ns) == 1 else "") + ")")
    return lines


def accuracy_section(acc: LoadedInput) -> ReportSection:
    """The measured accuracy table of `s4dconf eval`; the figures quoted from the paper apart, marked quoted."""
    if acc.data is None:
        return ReportSection("accuracy", _not_run("accuracy", "no accuracy table (accuracy.json)", acc.missing))
    table = _accuracy_table(acc)
    try:
        text = accuracy_markdown(table)
    except (KeyError, TypeError, AttributeError) as e:
        raise S4DInputError(f"accuracy file {acc.path}: malformed row: {type(e).__name__}: {e}") from None
    measured, sep, quoted = text.partition("## Quoted")
    blocks = [Paragraph(f"From {_accuracy_source(acc)}."), MarkdownFragment(measured)]
    if sep:
        blocks.append(MarkdownFragment(sep + quoted, cls="quoted"))
    return ReportSection("accuracy", blocks)


# ---------------------------------------------------------------------------------------------------------------
# Benchmarks

def _int_or(x, default: int) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else default


def load_bench_rows(benches: list[LoadedInput]) -> tuple[list[dict], list[str]]:
    """One dict per timed benchmark (its extra_info, plus file, node, name, mean_s), and the names of those left
    out: untimed ones (stats None) silently, those without backend, mode and a positive integer batch by name.
    `benches` hold the BenchRun of `compare.load_run`."""
    rows, skipped = [], []
    for b in benches:
        node = b.data.machine_info.get("node", "?")
        for e in b.data.benchmarks.values():
            info = e.extra_info
            if not e.stats:
                continue
            if "backend" not in info or "mode" not in info or _int_or(info.get("batch"), 0) < 1:
                skipped.append(f"{Path(b.path).name}: {e.name}")
                continue
            numbers = {k: info[k] if isinstance(info[k], (int, float)) and info[k] > 0 else None
                       for k in NUMERIC_EXTRA if k in info}  # a figure that is not a positive number is not drawn
            rows.append({**info, **numbers, "file": Path(b.path).name, "path_of_run": b.path, "node": node,
                         "name": e.name, "mean_s": e.stats.get("mean")})
    return rows, skipped


def benchmark_crossovers(rows: list[dict]) -> list[dict]:
    """The crossovers of `claims.crossover_points` (one run, config, L and device with both torch-rec streaming at
    batch 1 and torch-conv whole-sample) among the rows: dicts with device, where (the device, and the file when
    there are several), batch (None: no measured batch wins), stream_tokens_per_s, batches, conv_tokens_per_s."""
    points = crossover_points([BenchFigure(r["file"], r["name"], r, r["node"]) for r in rows])
    several_files = len({p["file"] for p in points}) > 1
    out = []
    for p in points:
        conv = {b: c.get("tokens_per_s") for b, c in p["convs"].items()}
        out.append({"device": p["device"], "where": f"{p['device']}, {p['file']}" if several_files else str(p["device"]),
                    "batch": p["batch"], "stream_tokens_per_s": p["stream"].get("tokens_per_s"),
                    "batches": sorted(conv), "conv_tokens_per_s": conv.get(p["batch"])})
    return out


def _crossover_text(title: str, crossovers: list[dict]) -> list[Paragraph]:
    out = []
    for c in crossovers:
        head = (f"{title}, on {c['where']}: torch-conv whole-sample tokens/s exceeds torch-rec streaming "
                f"({c['stream_tokens_per_s']:,.0f} tokens/s at batch 1)")
        out.append(Paragraph(f"{head} from batch {c['batch']} (batches measured: {c['batches']})."
                             if c["batch"] is not None else
                             f"{head.replace('exceeds', 'does not exceed')} at any measured batch ({c['batches']})."))
    return out


def _bench_table(rows: list[dict]) -> TableBlock:
    hdr = ["config", "L", "backend", "path", "mode", "device", "dtype", "batch", "us per token", "tokens/s",
           "samples/s", "mean (s)"]
    return TableBlock(hdr, [[r.get("config"), r.get("L"), r["backend"], r.get("path"), r["mode"], r.get("device"),
                             r.get("dtype"), r.get("batch"), _fmt(r.get("us_per_token")),
                             _fmt(r.get("tokens_per_s"), ",.0f"), _fmt(r.get("samples_per_s")), _fmt(r.get("mean_s"))]
                            for r in rows])


def _group_key(kv) -> tuple:
    (config, L), _ = kv
    return config, _int_or(L, -1), str(L)


def _bench_run(origin: RunOrigin, stem: str, rows: list[dict], img_dir: Path, colours: dict) -> list:
    """The blocks of one run (one machine): its plots, one panel per (config, L), the crossovers, the quoted chip
    step time, then its numbers, collapsed."""
    groups = defaultdict(list)
    for r in rows:
        groups[(str(r.get("config", "?")), r.get("L", "?"))].append(r)
    groups = dict(sorted(groups.items(), key=_group_key))
    panels = {f"{config}, L={L}": grp for (config, L), grp in groups.items()}
    crossovers = {title: benchmark_crossovers(grp) for title, grp in panels.items()}
    blocks = [SubHeading(origin.heading)]
    blocks += [img for img in (plots.latency_plot(img_dir, stem, origin.label, panels, colours),
                               plots.throughput_plot(img_dir, stem, origin.label, panels, crossovers, colours))
               if img is not None]
    for title, cs in crossovers.items():
        blocks += _crossover_text(title, cs)
    for q in plots.quoted_chip(rows):
        src = next((r.get("quoted_source") for r in rows if r.get("quoted_chip_step_us") == q), None)
        blocks.append(Paragraph(f"**quoted** (not measured here): Loihi 2 chip step time {q:g} us"
                                + (f" ({src})" if src else "") + ".", cls="quoted"))
    blocks.append(Details(f"The numbers of this run ({len(rows)} timed benchmarks"
                          + ("" if origin.here else f", {origin.label}") + ")", [_bench_table(rows)]))
    return blocks


def benchmarks_section(benches: list[LoadedInput], missing: list[str], img_dir: Path, origins: dict,
                       log: list) -> ReportSection:
    """One run (machine) at a time, this machine's first: streaming latency per token and throughput vs batch size
    with the crossover, one panel per (config, L), the quoted chip step time, and the numbers."""
    miss = "; ".join(missing)
    if miss:
        log.append(f"benchmarks: not found: {miss}")
    if not benches:
        return ReportSection("benchmarks", _not_run("benchmarks", "no pytest-benchmark JSON", miss))
    rows, skipped = load_bench_rows(benches)
    for s in skipped:
        log.append(f"benchmarks: left out (no backend, mode or positive batch in extra_info): {s}")
    runs = sorted(benches, key=lambda b: not origins[b.path].here)
    n_other = sum(not origins[b.path].here for b in benches)
    blocks = [Paragraph(f"{len(rows)} timed benchmarks in {len(benches)} runs"
                        + (f" ({n_other} of another machine: each such plot and table names its machine)"
                           if n_other else "") + ". Every plot shows one run.")]
    colours = plots.backend_colours(rows)
    stems = set()
    for b in runs:
        origin = origins[b.path]
        run_rows = [r for r in rows if r["path_of_run"] == b.path]
        stem = base = _safe_name(Path(origin.file).stem) or "run"
        k = 1
        while stem in stems:  # two runs of one file name: image names apart
            k += 1
            stem = f"{base}-{k}"
        stems.add(stem)
        if run_rows:
            blocks += _bench_run(origin, stem, run_rows, img_dir, colours)
        else:
            blocks += [SubHeading(origin.heading),
                       Paragraph(f"No streaming or whole-sample figures: its {len(b.data.benchmarks)} benchmark(s) "
                                 "feed the claims only (such as the Lava cost per step).")]
    return ReportSection("benchmarks", blocks)


# ---------------------------------------------------------------------------------------------------------------
# Claims

def _claims_list(cl: LoadedInput) -> list[dict]:
    d = cl.data
    d = d.get("verdicts", d.get("claims")) if isinstance(d, dict) else d
    _expect(isinstance(d, list) and all(isinstance(c, dict) and "id" in c and "verdict" in c for c in d), "claims",
            cl.path, "expected a list of {id, verdict, measured, evidence, note, quoted, source} (s4dconf claims "
                     "--json)")
    return d


PARTIAL = " (partial)"  # a verdict from part of a test split (claims.py) ends so


def _base_verdict(verdict: str) -> str:
    return verdict[:-len(PARTIAL)] if verdict.endswith(PARTIAL) else verdict


EVIDENCE = re.compile(r"^(?P<file>[^:\[\]]+?\.json): (?P<name>.*?)(?: \[(?P<machine>[^\]]*)\])?$")
SUBJECT_FILE = re.compile(r"\s*\((?P<file>[^()]+\.json)\)$")


def _figure(x) -> str:
    """A measured figure for a table: 4 significant digits, thousands separated; lists and dicts inline."""
    if isinstance(x, bool) or x is None:
        return _fmt(x)
    if isinstance(x, (int, float)):
        return f"{x:,.0f}" if abs(x) >= 1e3 else f"{x:.4g}"
    if isinstance(x, list):
        return ", ".join(map(_figure, x))
    if isinstance(x, dict):
        return "; ".join(f"{k}: {_figure(v)}" for k, v in x.items())
    return str(x)


def _pretty(key: str) -> str:
    return str(key).replace("_", " ")


class _ClaimRuns:
    """The run label of a claim's figures: from the file a figure names, else from the claim's evidence
    ("file: benchmark [machine]"), else from the one benchmark run whose extra_info holds that very value:
    "here", or the machine (never "here" for a run that is not this machine's)."""

    NOT_RECORDED = "not recorded (the claim names no run)"

    def __init__(self, claim: dict, origins_by_file: dict, values_by_origin: dict):
        self.by_file = origins_by_file
        self.values = values_by_origin  # RunOrigin -> the numbers of its benchmarks' extra_info (4 digits)
        self.raw = [str(e) for e in claim.get("evidence") or []]
        self.evidence = [EVIDENCE.match(e) for e in self.raw]
        self.machines = {m["file"]: m["machine"] for m in self.evidence if m and m["machine"]}

    def of_file(self, file: str) -> str:
        if file in self.by_file:
            return self.by_file[file].label
        return f"{self.machines[file]} ({file})" if file in self.machines else f"run {file} (machine not recorded)"

    def of_claim(self) -> str:
        if not self.raw:
            return self.NOT_RECORDED
        labels = {self.of_file(m["file"]) if m else raw for raw, m in zip(self.raw, self.evidence)}
        return labels.pop() if len(labels) == 1 else "several runs: " + "; ".join(sorted(labels))

    def of_value(self, x) -> str:
        """The run of a figure the claim does not attribute, when exactly one run holds that number."""
        if isinstance(x, float) and math.isfinite(x):
            found = {o.label for o, vals in self.values.items() if _digits(x) in vals}
            if len(found) == 1:
                return f"{found.pop()} (found by its value)"
        return self.NOT_RECORDED

    def evidence_items(self) -> list[str]:
        return [f"{m['name']} ({self.of_file(m['file'])}: `{m['file']}`)" if m else raw
                for raw, m in zip(self.raw, self.evidence)]


def _digits(x: float) -> float:
    return float(f"{x:.4g}")


def bench_values(benches: list[LoadedInput], origins: dict) -> dict:
    """RunOrigin -> every float of its benchmarks' extra_info, to 4 significant digits (`_ClaimRuns.of_value`)."""
    out = defaultdict(set)
    for b in benches:
        for e in b.data.benchmarks.values():
            out[origins[b.path]].update(_digits(v) for v in e.extra_info.values()
                                        if isinstance(v, float) and math.isfinite(v))
    return dict(out)


def _claim_figures(claim: dict, runs: _ClaimRuns) -> TableBlock | None:
    """The numbers behind a verdict as a small table: one row per measured subject (a config, a run) with its run,
    pivoted when the subjects share their figures, else one row per figure."""
    measured = claim.get("measured") or {}
    if not isinstance(measured, dict) or not measured:
        return None
    scalars = {k: v for k, v in measured.items() if not isinstance(v, dict)}
    subjects = [("", scalars)] if scalars else []
    subjects += [(k, v) for k, v in measured.items() if isinstance(v, dict)]
    labelled = []
    for subject, figs in subjects:
        m = SUBJECT_FILE.search(subject)
        run = runs.of_file(m["file"]) if m else runs.of_claim()
        labelled.append((SUBJECT_FILE.sub("", subject), figs, run))
    keys = [list(f) for _, f, _ in labelled]
    if len(labelled) > 1 and all(k == keys[0] for k in keys):
        return TableBlock(["measured", "measured on"] + [_pretty(k) for k in keys[0]],
                          [[_pretty(s), run] + [_figure(f[k]) for k in keys[0]] for s, f, run in labelled],
                          cls="figures")
    rows = [[_pretty(s), _pretty(k), _figure(v), run if run != runs.NOT_RECORDED else runs.of_value(v)]
            for s, f, run in labelled for k, v in f.items()]
    if all(not s for s, _, _ in labelled):
        return TableBlock(["figure", "value", "measured on"], [r[1:] for r in rows], cls="figures")
    return TableBlock(["measured", "figure", "value", "measured on"], rows, cls="figures")


def claims_section(cl: LoadedInput, origins_by_file: dict, values_by_origin: dict) -> ReportSection:
    """Every claim: the verdict, the quoted value with its source, the note, the measured figures as a small table
    with the run (machine) of each, and the evidence, collapsed."""
    if cl.data is None:
        return ReportSection("claims", _not_run("claims", "no claims JSON", cl.missing))
    claims = _claims_list(cl)
    colour = {"reproduced": "pass", "contradicted": "fail"}
    blocks = [Paragraph(f"From `{Path(cl.path).name}`. The paper's claims, quoted, next to the verdict computed from "
                        "the measurements (SPEC.md 21). Each figure names the run it comes from: \"here\" (this "
                        "machine) or another machine."),
              TableBlock(["claim", "verdict", "quoted (paper)"],
                         [[c["id"], TableCell(c["verdict"], colour.get(_base_verdict(c["verdict"]), "")),
                           TableCell(f"{c.get('quoted', '')} ({c.get('source', '')})", "quoted")] for c in claims])]
    for c in claims:
        runs = _ClaimRuns(c, origins_by_file, values_by_origin)
        blocks.append(SubHeading(f"{c['id']}: **{c['verdict']}**"))
        if c.get("note"):
            blocks.append(Paragraph(str(c["note"])))
        table = _claim_figures(c, runs)
        blocks.append(table if table is not None else Paragraph("Measured: nothing."))
        ev = runs.evidence_items()
        if ev:
            blocks.append(Details(f"Evidence ({len(ev)} measurement{'s' if len(ev) > 1 else ''})", items=ev))
    return ReportSection("claims", blocks)


# ---------------------------------------------------------------------------------------------------------------
# Resources

def resources_section(resources) -> ReportSection:
    """The operation and resource model (counts, SPEC.md 19), its Markdown included as is."""
    if isinstance(resources, dict) and isinstance(resources.get("markdown"), str):
        return ReportSection("resources", [MarkdownFragment(resources["markdown"])])
    return ReportSection("resources", _not_run("resources", "no operation and resource counts "
                                                            "(s4dconf.measure.resources)"))


# ---------------------------------------------------------------------------------------------------------------
# Summary: the answer, first

def _availability_here(name: str) -> tuple[bool, str]:
    """Whether a registered backend is available on the machine building the report, and why not; never raises."""
    try:
        a = get_backend(name).availability()
        return bool(a.available), str(a.reason or "")
    except Exception as e:  # noqa: BLE001 - a broken backend must not break the report
        return False, f"its availability check failed: {type(e).__name__}: {e}"


def _backend_status(conf: LoadedInput) -> tuple[list, list, dict, list]:
    """(conformant, failing, not available {reason: [names]}, not checked) from the conformance JSON; a backend is
    conformant when every record of every path passes, failing when one fails. Registered backends the run did not
    name are asked here, on the machine building the report, and said so."""
    records = _records(conf)
    by = defaultdict(Counter)
    fams = defaultdict(set)
    for r in records:
        name = str(r["backend"]).split(":", 1)[0]
        by[name][r["verdict"]] += 1
        if r["verdict"] != "pass":
            fams[name].add(r["family"])
    declared = conf.data.get("backends") or {}
    conformant, failing, unavailable, unchecked = [], [], defaultdict(list), []
    for name in dict.fromkeys([*declared, *by]):
        c, d = by.get(name, Counter()), declared.get(name) or {}
        if d.get("available") is False:
            unavailable[str(d.get("reason", "no reason given"))].append(name)
        elif c.get("fail"):
            failing.append(f"{name}: {c['fail']} of {sum(c.values())} checks fail (families: "
                           f"{', '.join(sorted(fams[name]))})")
        elif c.get("pass"):
            conformant.append(f"{name} ({c['pass']} checks)")
        else:
            unchecked.append(f"{name} (available, no records)")
    for name in backend_names():
        if name in declared or name in by:
            continue
        ok, reason = _availability_here(name)
        if ok:
            unchecked.append(f"{name} (not in this run; available on the machine building the report)")
        else:
            unavailable[f"{reason} (not in this run; asked on the machine building the report)"].append(name)
    return conformant, failing, dict(unavailable), unchecked


def summary_section(conf: LoadedInput, acc: LoadedInput, cl: LoadedInput, benches: list[LoadedInput],
                    origins: dict) -> ReportSection:
    """The answer: backends conformant / failing / not available (with the reasons), the claims counted by verdict,
    the accuracy headline, and which runs are this machine's."""
    rows = []
    if conf.data is not None:
        conformant, failing, unavailable, unchecked = _backend_status(conf)
        status = conf.data.get("exitstatus")
        if not failing and status not in (0, None):  # a test failed that wrote no record: not a clean pass
            failing.append(f"no failing record, but pytest exited with status {status}: a test without a record "
                           "failed or errored (`s4dconf check` prints which)")
        rows.append(["Conformant", TableCell(", ".join(conformant) or "none", "pass" if conformant else "")])
        rows.append(["Failing", TableCell("\n".join(failing) or "none", "fail" if failing else "pass")])
        rows.append(["Not available", TableCell("\n".join(f"{', '.join(names)}: {reason}"
                                                          for reason, names in unavailable.items()) or "none",
                                                "na" if unavailable else "")])
        if unchecked:
            rows.append(["Not checked", TableCell("\n".join(unchecked), "na")])
    else:
        rows.append(["Conformance", TableCell("not run: no conformance JSON (`s4dconf run`, `s4dconf check --json`)",
                                              "na")])
    if cl.data is not None:
        claims = _claims_list(cl)
        base = {c["id"]: _base_verdict(c["verdict"]) for c in claims}
        counts = Counter(base.values())
        lines = [f"{counts.get(v, 0)} {v}" + (": " + ", ".join(c["id"] + (PARTIAL if c["verdict"] != v else "")
                                                                for c in claims if base[c["id"]] == v)
                                             if counts.get(v) else "") for v in VERDICTS]
        lines += [f"{n} {v}" for v, n in counts.items() if v not in VERDICTS]
        rows.append(["Claims", TableCell("\n".join(lines), "fail" if counts.get("contradicted") else "")])
    else:
        rows.append(["Claims", TableCell("not run: no claims JSON (`s4dconf claims --json`)", "na")])
    if acc.data is not None:
        head = accuracy_headline(_accuracy_table(acc))
        rows.append(["Accuracy", "\n".join(head or ["no figure in the table"]) + f"\nfrom {_accuracy_source(acc)}"])
    else:
        rows.append(["Accuracy", TableCell("not run: no accuracy table (`s4dconf eval`)", "na")])
    here = [origins[b.path] for b in benches if origins[b.path].here]
    other = [origins[b.path] for b in benches if not origins[b.path].here]
    where = []
    if here:
        where.append(f"here ({here[0].machine}): " + ", ".join(f"`{o.file}`" for o in here))
    elif benches:
        where.append("here: none (this machine's: `s4dconf run`, or `tox -e bench`)")
    if other:
        where.append("another machine, labelled so wherever shown: "
                     + "; ".join(f"`{o.file}` ({o.label})" for o in other))
    rows.append(["Benchmark runs", "\n".join(where) or "none"])
    return ReportSection("summary", [TableBlock(["", ""], rows, cls="summary")])


# ---------------------------------------------------------------------------------------------------------------
# The report

def build_report(out_dir, conformance_json=None, accuracy_json=None, benchmark_jsons=(), claims_json=None,
                 resources=None) -> tuple[Path, Path]:
    """Write out_dir/report.html, out_dir/report.md, out_dir/img/*.png (stale PNGs there are removed) and
    out_dir/report.log (the inputs and the diagnostics). Inputs: paths (a path that does not exist gives a "not run"
    section naming it) or already-parsed JSON."""
    out_dir = Path(out_dir)
    img_dir = out_dir / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    for old in img_dir.glob("*.png"):
        old.unlink()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log = [f"s4dconf report, generated {now} by s4dconf {s4dconf.__version__}"]
    conf = _load(conformance_json, "conformance")
    acc = _load(accuracy_json, "accuracy")
    claims = _load(claims_json, "claims")
    benches = [_load_benchmark(p) for p in benchmark_jsons or ()]
    missing = [b.missing for b in benches if b.data is None]
    benches = [b for b in benches if b.data is not None]
    for i, b in enumerate(benches):  # runs given as parsed JSON: one name each
        if b.path == "(in memory)":
            b.path = f"(in memory, run {i + 1})"
    host = this_machine()
    origins = {b.path: run_origin(b, host) for b in benches}
    log.append(f"this machine: {json.dumps(host)}")
    for what, x in (("conformance", conf), ("accuracy", acc), ("claims", claims)):
        log.append(f"input {what}: {x.path or 'none'}" + (f" (missing: {x.missing})" if x.missing else ""))
    for b in benches:
        log.append(f"input benchmark: {b.path} -> {origins[b.path].label}")
    sections = [summary_section(conf, acc, claims, benches, origins), conformance_section(conf),
                errors_section(conf, img_dir), accuracy_section(acc),
                benchmarks_section(benches, missing, img_dir, origins, log),
                claims_section(claims, {o.file: o for o in origins.values()}, bench_values(benches, origins)),
                resources_section(resources),
                machine_section(conf, benches, origins)]
    title = "s4dconf report"
    lead = (f"Generated {now} by s4dconf {s4dconf.__version__} (SPEC.md version {s4dconf.SPEC_VERSION}). "
            "\"Here\" is this machine; figures of other machines name their machine.")
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(render_html(sections, title, lead), encoding="utf-8")
    md_path.write_text(render_markdown(sections, title, lead), encoding="utf-8")
    (out_dir / "report.log").write_text("\n".join(log) + "\n", encoding="utf-8")
    return html_path, md_path


# ---------------------------------------------------------------------------------------------------------------
# CLI: s4dconf report

def _reports_dir() -> Path:
    return Path(__file__).resolve().parent


def _first(*paths) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def default_inputs(out: Path) -> dict:
    """The inputs `s4dconf report` uses when not told: fresh runs in `out`, else the committed ones."""
    committed = _reports_dir()
    benches = sorted(out.glob("benchmark*.json")) or sorted((committed / "benchmarks").glob("*.json"))
    return {"conformance": _first(out / "conformance.json"),
            "accuracy": _first(out / "accuracy" / "accuracy.json", committed / "accuracy" / "accuracy.json"),
            "bench": benches, "claims": _first(out / "claims.json"), "resources": _first(out / "resources.md")}


def cmd_report(args) -> int:
    out = Path(args.out)
    found = default_inputs(out)
    given = {k: getattr(args, k) for k in found if getattr(args, k) not in (None, [])}
    absent = [str(p) for v in given.values() for p in (v if isinstance(v, list) else [v]) if not Path(p).is_file()]
    if absent:
        raise S4DInputError(f"no such file: {', '.join(absent)}")
    pick = {**found, **given}
    res = Path(pick["resources"]) if pick["resources"] else None
    html_path, md_path = build_report(out, pick["conformance"], pick["accuracy"], pick["bench"], pick["claims"],
                                      {"markdown": res.read_text()} if res else None)
    for k in ("conformance", "accuracy", "bench", "claims", "resources"):
        v = pick[k]
        shown = ", ".join(map(str, v)) if isinstance(v, list) else v
        print(f"  {k:12s} {shown or 'not run (no file found)'}")
    n_img = len(list((out / "img").glob("*.png")))
    print(f"report: {html_path}\nmarkdown: {md_path}\nimages: {n_img} in {out / 'img'}\nlog: {out / 'report.log'}")
    return 0


def register(subparsers) -> None:
    """Add `report` to the CLI's subparsers (dest 'command'); the CLI maps S4DInputError to exit 2."""
    p = subparsers.add_parser("report", help="the HTML + Markdown report with plots, from the measured JSON files",
                              description="Build report.html, report.md and img/*.png in --out. Defaults: the files "
                                          "in --out (conformance.json, accuracy/accuracy.json, benchmark*.json, "
                                          "claims.json, resources.md), else the committed reports/accuracy/ and "
                                          "reports/benchmarks/. A missing input gives a 'not run' section.")
    p.add_argument("--out", default="reports/out", help="output folder, also searched for inputs (default: "
                                                        "reports/out)")
    p.add_argument("--conformance", default=None, metavar="PATH", help="s4dconf check --json output")
    p.add_argument("--accuracy", default=None, metavar="PATH", help="accuracy.json of s4dconf eval")
    p.add_argument("--bench", nargs="+", default=[], metavar="PATH", help="pytest-benchmark JSON files")
    p.add_argument("--claims", default=None, metavar="PATH", help="s4dconf claims --json output")
    p.add_argument("--resources", default=None, metavar="PATH", help="Markdown of the resource counts")
    p.set_defaults(func=cmd_report)
