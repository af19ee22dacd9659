"""The report's sections about correctness: machine, conformance matrix, error distributions, accuracy (SPEC.md
sections 10-13 and 18); each returns a ReportSection built from measured files only."""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

from s4dconf.reference.validate import S4DInputError
from s4dconf.training.accuracy import row_label
from s4dconf.training.accuracy import table_markdown as accuracy_markdown
from s4dconf.training.jpeg_check import NAME as JPEG_CHECK_NAME
from s4dconf.training.jpeg_check import jpeg_check_markdown, load_jpeg_check

from . import plots
from .conformance_summary import (CHECK_WORST, LOWER, UPPER, ConformanceCellSummary, decode_record,
                                  summarize_conformance)
from .page import (Details, MarkdownFragment, NotRunNotice, Paragraph, ReportImage, ReportSection, SubHeading, TableBlock, TableCell)
from .report_inputs import COMMANDS, COMMITTED_ACCURACY_DIR, LoadedInput, expect_input, fmt_number, in_folder, not_run


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
    rows = [[k] + [fmt_number(d.get(k)) for _, d in cols] for k in fields if any(d.get(k) is not None for _, d in cols)]
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
                         ", ".join(b.get("paths") or []), fmt_number(b.get("streaming"))])
    return TableBlock(["backend", "numeric class", "version", "device", "paths", "streaming"], rows)


def conformance_records(conf: LoadedInput) -> list[dict]:
    """The conformance records, checked, with value and tolerance decoded (`json_numbers.decode_number`)."""
    d = conf.data
    expect_input(isinstance(d, dict) and isinstance(d.get("records"), list), "conformance", conf.path,
            "expected an object with a list 'records' (s4dconf check --json)")
    need = ("backend", "family", "metric", "value", "tolerance", "verdict")
    out = []
    for r in d["records"]:
        expect_input(isinstance(r, dict) and all(k in r for k in need), "conformance", conf.path,
                f"a record lacks one of {need}: {str(r)[:200]}")
        try:
            out.append(decode_record(r))
        except ValueError as e:
            expect_input(False, "conformance", conf.path, str(e))
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
        return ReportSection("conformance", not_run("conformance", "no conformance JSON", conf.missing))
    records = conformance_records(conf)
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
        return ReportSection("errors", not_run("conformance", "no conformance JSON", conf.missing))
    records = conformance_records(conf)
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

def accuracy_source(acc: LoadedInput) -> str:
    name = Path(acc.path).name
    if in_folder(acc.path, COMMITTED_ACCURACY_DIR):
        return f"the committed table `reports/accuracy/{name}` (this project's `s4dconf eval`, not this run's)"
    return f"`{name}`"


def accuracy_table_of(acc: LoadedInput) -> dict:
    expect_input(isinstance(acc.data, dict) and isinstance(acc.data.get("rows"), list)
            and isinstance(acc.data.get("columns"), list), "accuracy", acc.path,
            "expected an object with 'columns' and 'rows' (s4dconf eval)")
    try:
        return {**acc.data, "quoted": acc.data.get("quoted") or [],  # cells written by hand may lack a note
                "rows": [{**r, "cells": {c: {"note": "", **v} for c, v in (r.get("cells") or {}).items()}}
                         for r in acc.data["rows"]]}
    except (TypeError, AttributeError) as e:
        raise S4DInputError(f"accuracy file {acc.path}: malformed row: {type(e).__name__}: {e}") from None


def accuracy_headline(table: dict) -> list[str]:
    """Per model (a dataset's own, or a paper-size recipe's: `row_label`) one line: the float model on the float64
    reference, the fixed-point models (PTQ, QAFT) on numpy-fxp (else the first column with a figure), with the test
    split's size."""
    out = {}
    for r in table["rows"]:
        cells = r.get("cells") or {}
        prefer = ("reference",) if r.get("kind") == "float" else ("numpy-fxp",)
        col = next((c for c in (*prefer, *table["columns"]) if (cells.get(c) or {}).get("accuracy") is not None), None)
        if col is None:
            continue
        cell = cells[col]
        kind = str(r.get("kind", "?"))
        out.setdefault(row_label({**r, "dataset": str(r.get("dataset", "?"))}), []).append(
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
        return ReportSection("accuracy", not_run("accuracy", "no accuracy table (accuracy.json)", acc.missing))
    table = accuracy_table_of(acc)
    try:
        text = accuracy_markdown(table)
    except (KeyError, TypeError, AttributeError) as e:
        raise S4DInputError(f"accuracy file {acc.path}: malformed row: {type(e).__name__}: {e}") from None
    measured, sep, quoted = text.partition("## Quoted")
    blocks = [Paragraph(f"From {accuracy_source(acc)}."), MarkdownFragment(measured)]
    blocks += jpeg_check_blocks(acc)
    if sep:
        blocks.append(MarkdownFragment(sep + quoted, cls="quoted"))
    return ReportSection("accuracy", blocks)


def jpeg_check_blocks(acc: LoadedInput) -> list:
    """The JPEG-versus-lossless check (`s4dconf eval --jpeg-check`) next to the accuracy table: the jpeg_check.json
    beside the accuracy.json read, else the committed one; nothing when neither exists."""
    for folder in (Path(acc.path).parent, COMMITTED_ACCURACY_DIR):
        path = folder / f"{JPEG_CHECK_NAME}.json"
        if path.is_file():
            where = (f"the committed `reports/accuracy/{path.name}`" if in_folder(path, COMMITTED_ACCURACY_DIR)
                     else f"`{path.name}`")
            return [Paragraph(f"From {where} (`s4dconf eval --jpeg-check`)."),
                    MarkdownFragment(jpeg_check_markdown(load_jpeg_check(path)))]
    return []
