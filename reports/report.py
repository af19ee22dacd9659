"""The report: one self-contained HTML page (`report.html`), its Markdown mirror (`report.md`) and PNG plots
(`img/*.png`), built from measured JSON files only. Numbers quoted from the paper are labelled "quoted".

Sections and their inputs (every input is optional; a missing one gives a section that says "not run" and the
command that produces it, never an empty or made-up table):

1. Machine                    benchmark JSON `machine_info` (+ `machine_info["s4dconf"]`), conformance `platform`;
                              the date of generation, s4dconf version and SPEC.md version
2. Conformance matrix         conformance JSON (`s4dconf check --json`, `pytest --conformance-json`): backend x case
                              family, the worst value of each metric vs its tolerance, pass/fail counts, verdict
                              (`conformance_summary.py`, the summary `s4dconf check` prints too)
3. Error distributions        the same records: per backend, log10(value / tolerance) of the relative metrics and
                              SNR - tolerance (dB) of the fixed-point ones (one PNG per metric kind)
4. Accuracy                   `accuracy.json` (`s4dconf eval`), rendered by `s4dconf.training.accuracy.table_markdown`;
                              the quoted part kept apart
5. Benchmarks                 pytest-benchmark JSON files (`tox -e bench`), read by `compare.load_run`: per (config,
                              L) streaming latency per token (with the quoted Loihi 2 chip step time as a reference
                              line), throughput vs batch size (with the torch-conv vs torch-rec crossover of
                              `claims.crossover_points`), and a table of the numbers
6. Claims                     the JSON of `s4dconf claims --json`: quoted vs measured, with verdicts
7. Resources                  a dict with key "markdown" (the operation and resource model), included as is

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
import re
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import s4dconf
from s4dconf.reference.validate import S4DInputError
from s4dconf.training.accuracy import table_markdown as accuracy_markdown

from . import plots
from .claims import BenchFigure, crossover_points, measured_text
from .compare import load_run
from .conformance_summary import LOWER, UPPER, ConformanceCellSummary, decode_record, summarize_conformance
from .page import SECTIONS  # noqa: F401 - re-exported: the section names are part of this module's API
from .page import (MarkdownFragment, NotRunNotice, Paragraph, ReportImage, ReportSection, SubHeading, TableBlock,
                   TableCell, render_html, render_markdown)

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
# 1. Machine

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


def machine_section(conf: LoadedInput, benches: list[LoadedInput], now: str) -> ReportSection:
    """The date of generation and versions, then one column per input file with the machine it records."""
    blocks = [Paragraph(f"Generated {now} by s4dconf {s4dconf.__version__} (SPEC.md version "
                        f"{s4dconf.SPEC_VERSION}).")]
    cols = [(f"benchmark: {Path(b.path).name}", _bench_machine(b.data)) for b in benches]
    if conf.data is not None:
        cols.append((f"conformance: {Path(conf.path).name}", _conformance_machine(conf.data)))
    if not cols:
        return ReportSection("machine", blocks + [NotRunNotice(
            "no benchmark or conformance JSON, so nothing records the machine the measurements ran on",
            COMMANDS["benchmarks"] + COMMANDS["conformance"][:1])])
    fields = list(dict.fromkeys(k for _, d in cols for k in d))
    rows = [[k] + [_fmt(d.get(k)) for _, d in cols] for k in fields if any(d.get(k) is not None for _, d in cols)]
    blocks.append(Paragraph("The machines the measurements ran on, as each input file records them."))
    blocks.append(TableBlock(["field"] + [c for c, _ in cols], rows))
    return ReportSection("machine", blocks)


# ---------------------------------------------------------------------------------------------------------------
# 2. Conformance matrix

def _metric_value(metric: str, v) -> str:
    if v is None:
        return "none"
    return f"{v:.1f} dB" if metric == "snr_db" else (f"{v:.3g}" if metric == "argmax" else f"{v:.2g}")


def _summary_cell(c: ConformanceCellSummary) -> TableCell:
    n, verdict = sum(c.counts.values()), c.overall_verdict
    lines = [f"{verdict.upper()} {c.counts.get('pass', 0)}/{n} pass"
             + (f", {c.counts['fail']} fail" if c.counts.get("fail") else "")]
    for m in c.metrics():
        r = c.worst[m]
        bound = "≥" if m in LOWER else "≤"
        lines.append(f"{m} {_metric_value(m, r['value'])} ({bound} {_metric_value(m, r['tolerance'])})")
    if c.saturated:
        lines.append(f"{c.saturated} record(s) with saturations")
    return TableCell("\n".join(lines), verdict if verdict in ("pass", "fail") else "")


def _backends_table(backends: dict) -> TableBlock:
    rows = [[name, b.get("numeric_class"), b.get("version"), b.get("device"), ", ".join(b.get("paths") or []),
             _fmt(b.get("streaming"))] for name, b in backends.items()]
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


def _matrix_rows(records: list[dict]) -> tuple[list[str], list]:
    backends, families, cells = summarize_conformance(records)
    rows = []
    for b in backends:
        row = [b] + [_summary_cell(cells[(b, f)]) if (b, f) in cells else TableCell("not checked") for f in families]
        total = Counter()
        for f in families:
            total.update(cells[(b, f)].counts if (b, f) in cells else {})
        verdict = "fail" if total.get("fail") else "pass"
        rows.append(row + [TableCell(f"{verdict.upper()} {total.get('pass', 0)}/{sum(total.values())} pass",
                                     verdict)])
    return families, rows


def conformance_section(conf: LoadedInput) -> ReportSection:
    """The backends checked, then the matrix backend x case family: per cell the verdict with pass/fail counts and
    the worst value of each metric next to its tolerance; a last column over all families."""
    if conf.data is None:
        return ReportSection("conformance", _not_run("conformance", "no conformance JSON", conf.missing))
    records = _records(conf)
    d = conf.data
    blocks = [Paragraph(f"From `{Path(conf.path).name}`: spec version {d.get('spec_version', '?')}, s4dconf "
                        f"{d.get('s4dconf', '?')}, pytest exit status {d.get('exitstatus', '?')}, {len(records)} "
                        "records.")]
    if d.get("backends"):
        blocks.append(_backends_table(d["backends"]))
    if not records:
        return ReportSection("conformance", blocks + [Paragraph("The file holds no records (no backend was checked).")])
    families, rows = _matrix_rows(records)
    blocks.append(Paragraph("Each cell: the verdict with pass/fail counts of every record (case x probe x metric) of "
                            "that backend and case family, then per metric the worst measured value and, in "
                            "brackets, its tolerance (≤: an upper bound, the worst value is the largest; ≥: a lower "
                            "bound, the worst value is the smallest)."))
    blocks.append(TableBlock(["backend"] + families + ["all families"], rows, cls="matrix"))
    return ReportSection("conformance", blocks)


# ---------------------------------------------------------------------------------------------------------------
# 3. Error distributions (plots)

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
# 4. Accuracy

def accuracy_section(acc: LoadedInput) -> ReportSection:
    """The measured accuracy table of `s4dconf eval`; the figures quoted from the paper apart, marked quoted."""
    if acc.data is None:
        return ReportSection("accuracy", _not_run("accuracy", "no accuracy table (accuracy.json)", acc.missing))
    _expect(isinstance(acc.data, dict) and isinstance(acc.data.get("rows"), list)
            and isinstance(acc.data.get("columns"), list), "accuracy", acc.path,
            "expected an object with 'columns' and 'rows' (s4dconf eval)")
    try:
        table = {**acc.data, "quoted": acc.data.get("quoted") or [],  # cells written by hand may lack a note
                 "rows": [{**r, "cells": {c: {"note": "", **v} for c, v in (r.get("cells") or {}).items()}}
                          for r in acc.data["rows"]]}
        text = accuracy_markdown(table)
    except (KeyError, TypeError, AttributeError) as e:
        raise S4DInputError(f"accuracy file {acc.path}: malformed row: {type(e).__name__}: {e}") from None
    measured, sep, quoted = text.partition("## Quoted")
    blocks = [Paragraph(f"From `{Path(acc.path).name}`."), MarkdownFragment(measured)]
    if sep:
        blocks.append(MarkdownFragment(sep + quoted, cls="quoted"))
    return ReportSection("accuracy", blocks)


# ---------------------------------------------------------------------------------------------------------------
# 5. Benchmarks

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
            rows.append({**info, **numbers, "file": Path(b.path).name, "node": node, "name": e.name,
                         "mean_s": e.stats.get("mean")})
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


def _crossover_text(crossovers: list[dict]) -> list[Paragraph]:
    out = []
    for c in crossovers:
        head = (f"Crossover on {c['where']}: torch-conv whole-sample tokens/s exceeds torch-rec streaming "
                f"({c['stream_tokens_per_s']:,.0f} tokens/s at batch 1)")
        out.append(Paragraph(f"{head} from batch {c['batch']} (batches measured: {c['batches']})."
                             if c["batch"] is not None else
                             f"{head.replace('exceeds', 'does not exceed')} at any measured batch ({c['batches']})."))
    return out


def _bench_table(rows: list[dict]) -> TableBlock:
    hdr = ["backend", "path", "mode", "device", "dtype", "batch", "us per token", "tokens/s", "samples/s",
           "pytest-benchmark mean (s)", "file"]
    return TableBlock(hdr, [[r["backend"], r.get("path"), r["mode"], r.get("device"), r.get("dtype"), r.get("batch"),
                             _fmt(r.get("us_per_token")), _fmt(r.get("tokens_per_s"), ",.0f"),
                             _fmt(r.get("samples_per_s")), _fmt(r.get("mean_s")), r["file"]] for r in rows])


def _bench_group(config: str, L, grp: list[dict], img_dir: Path) -> list:
    """The blocks of one (config, L): the two plots, the crossover, the quoted chip step time, the numbers."""
    title, stem = f"{config}, L={L}", _safe_name(f"{config}-L{L}")
    crossovers = benchmark_crossovers(grp)
    blocks = [SubHeading(title)]
    blocks += [img for img in (plots.latency_plot(img_dir, stem, title, grp),
                               plots.throughput_plot(img_dir, stem, title, grp, crossovers)) if img is not None]
    blocks += _crossover_text(crossovers)
    for q in plots.quoted_chip(grp):
        src = next((r.get("quoted_source") for r in grp if r.get("quoted_chip_step_us") == q), None)
        blocks.append(Paragraph(f"**quoted** (not measured here): Loihi 2 chip step time {q:g} us"
                                + (f" ({src})" if src else "") + ".", cls="quoted"))
    return blocks + [_bench_table(grp)]


def benchmarks_section(benches: list[LoadedInput], missing: list[str], img_dir: Path) -> ReportSection:
    """Per (config, L): streaming latency per token, throughput vs batch size with the crossover, the quoted chip
    step time, and the table of the numbers."""
    miss = "; ".join(missing)
    if not benches:
        return ReportSection("benchmarks", _not_run("benchmarks", "no pytest-benchmark JSON", miss))
    rows, skipped = load_bench_rows(benches)
    blocks = [Paragraph("From " + ", ".join(f"`{Path(b.path).name}`" for b in benches) + f": {len(rows)} timed "
                        "benchmarks (untimed ones skipped)." + (f" Not found: {miss}." if miss else "")
                        + (f" Left out, no backend/mode/batch in extra_info: {', '.join(skipped)}." if skipped
                           else ""))]
    groups = defaultdict(list)
    for r in rows:
        groups[(str(r.get("config", "?")), r.get("L", "?"))].append(r)
    for (config, L), grp in sorted(groups.items(), key=lambda kv: (kv[0][0], _int_or(kv[0][1], -1), str(kv[0][1]))):
        blocks += _bench_group(config, L, grp, img_dir)
    return ReportSection("benchmarks", blocks)


# ---------------------------------------------------------------------------------------------------------------
# 6. Claims

def _claims_list(cl: LoadedInput) -> list[dict]:
    d = cl.data
    d = d.get("verdicts", d.get("claims")) if isinstance(d, dict) else d
    _expect(isinstance(d, list) and all(isinstance(c, dict) and "id" in c and "verdict" in c for c in d), "claims",
            cl.path, "expected a list of {id, verdict, measured, evidence, note, quoted, source} (s4dconf claims "
                     "--json)")
    return d


def claims_section(cl: LoadedInput) -> ReportSection:
    """Every claim: the verdict, the quoted value with its source, what was measured here, the note, the
    evidence."""
    if cl.data is None:
        return ReportSection("claims", _not_run("claims", "no claims JSON", cl.missing))
    colour = {"reproduced": "pass", "contradicted": "fail"}
    rows = []
    for c in _claims_list(cl):
        measured = f"measured: {measured_text(c['measured'])}" if c.get("measured") else "measured: nothing"
        ev = c.get("evidence") or []
        rows.append([c["id"], TableCell(c["verdict"], colour.get(c["verdict"], "")),
                     TableCell(f"quoted: {c.get('quoted', '')}\n({c.get('source', '')})", "quoted"), measured,
                     c.get("note", ""), "\n".join(ev) if ev else "-"])
    return ReportSection("claims", [
        Paragraph(f"From `{Path(cl.path).name}`. The paper's claims, quoted, next to what was measured here and the "
                  "verdict computed from the measurements (SPEC.md 21)."),
        TableBlock(["claim", "verdict", "quoted (paper)", "measured (here)", "note", "evidence"], rows)])


# ---------------------------------------------------------------------------------------------------------------
# 7. Resources

def resources_section(resources) -> ReportSection:
    """The operation and resource model (counts, SPEC.md 19), its Markdown included as is."""
    if isinstance(resources, dict) and isinstance(resources.get("markdown"), str):
        return ReportSection("resources", [MarkdownFragment(resources["markdown"])])
    return ReportSection("resources", _not_run("resources", "no operation and resource counts "
                                                            "(s4dconf.measure.resources)"))


# ---------------------------------------------------------------------------------------------------------------
# The report

def build_report(out_dir, conformance_json=None, accuracy_json=None, benchmark_jsons=(), claims_json=None,
                 resources=None) -> tuple[Path, Path]:
    """Write out_dir/report.html, out_dir/report.md and out_dir/img/*.png (stale PNGs there are removed).
    Inputs: paths (a path that does not exist gives a "not run" section naming it) or already-parsed JSON."""
    out_dir = Path(out_dir)
    img_dir = out_dir / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    for old in img_dir.glob("*.png"):
        old.unlink()
    conf = _load(conformance_json, "conformance")
    benches = [_load_benchmark(p) for p in benchmark_jsons or ()]
    missing = [b.missing for b in benches if b.data is None]
    benches = [b for b in benches if b.data is not None]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [machine_section(conf, benches, now), conformance_section(conf), errors_section(conf, img_dir),
                accuracy_section(_load(accuracy_json, "accuracy")), benchmarks_section(benches, missing, img_dir),
                claims_section(_load(claims_json, "claims")), resources_section(resources)]
    title = f"s4dconf report ({now})"
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(render_html(sections, title), encoding="utf-8")
    md_path.write_text(render_markdown(sections, title), encoding="utf-8")
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
    print(f"report: {html_path}\nmarkdown: {md_path}\nimages: {n_img} in {out / 'img'}")
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
