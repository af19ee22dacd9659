"""The report: one self-contained HTML page (`report.html`), its Markdown mirror (`report.md`) and PNG plots
(`img/*.png`), built from measured JSON files only. Numbers quoted from the paper are labelled "quoted".

Sections and their inputs (every input is optional; a missing one gives a section that says "not run" and the
command that produces it, never an empty or made-up table):

1. Machine                    benchmark JSON `machine_info` (+ `machine_info["s4dconf"]`), conformance `platform`;
                              the date of generation, s4dconf version and SPEC.md version
2. Conformance matrix         conformance JSON (`s4dconf check --json`, `pytest --conformance-json`): backend x case
                              family, the worst value of each metric vs its tolerance, pass/fail counts, verdict
3. Error distributions        the same records: per backend, log10(value / tolerance) of the relative metrics and
                              SNR - tolerance (dB) of the fixed-point ones (one PNG per metric kind)
4. Accuracy                   `accuracy.json` (`s4dconf eval`), rendered by `s4dconf.training.accuracy.to_markdown`;
                              the quoted part kept apart
5. Benchmarks                 pytest-benchmark JSON files (`tox -e bench`): per (config, L) streaming latency per token
                              (with the quoted Loihi 2 chip step time as a reference line), throughput vs batch size
                              (with the torch-conv vs torch-rec crossover), and a table of the numbers
6. Claims                     the JSON of `s4dconf claims --json`: quoted vs measured, with verdicts
7. Resources                  a dict with key "markdown" (the operation and resource model), included as is

The page carries a small inline script that, after `window.onload`, writes
`<div id="img-check" data-total=N data-loaded=M data-broken="img/a.png ...">` into the DOM, so a headless browser's
`--dump-dom` tells whether every image loaded (conformance/meta/test_report.py).
"""
from __future__ import annotations

import dataclasses
import datetime
import html
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

import s4dconf
from s4dconf.reference.validate import S4DInputError
from s4dconf.reports.claims import _short, first_winning_batch

SECTIONS = {"machine": "Machine", "conformance": "Conformance matrix", "errors": "Error distributions per backend",
            "accuracy": "Accuracy", "benchmarks": "Benchmarks", "claims": "Claims", "resources": "Resources"}
UPPER = ("rel_l2", "max_abs_rel")  # upper bounds: the worst value is the largest
LOWER = ("snr_db", "argmax")  # lower bounds: the worst value is the smallest
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
QUOTED_CHIP = "quoted: Loihi 2, paper"
NUMERIC_EXTRA = ("us_per_token", "tokens_per_s", "samples_per_s", "quoted_chip_step_us")


# ---------------------------------------------------------------------------------------------------------------
# Blocks: what a section is made of, rendered once to HTML and once to Markdown.

@dataclasses.dataclass
class Para:
    text: str  # plain text; `code` spans allowed
    cls: str = ""


@dataclasses.dataclass
class Cell:
    text: str  # "\n" = line break
    cls: str = ""


@dataclasses.dataclass
class Table:
    header: list
    rows: list  # of lists of str | Cell
    cls: str = ""


@dataclasses.dataclass
class Image:
    name: str  # file name under img/
    alt: str
    caption: str


@dataclasses.dataclass
class NotRun:
    what: str
    commands: list


@dataclasses.dataclass
class Markdown:
    text: str
    cls: str = ""


@dataclasses.dataclass
class Heading:
    text: str


@dataclasses.dataclass
class Section:
    id: str
    blocks: list

    @property
    def title(self) -> str:
        return SECTIONS[self.id]


def _inline(text: str) -> str:
    """HTML of one line of text: escaped, with `code` spans and **bold**."""
    out = html.escape(str(text), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cell(c) -> Cell:
    return c if isinstance(c, Cell) else Cell("-" if c is None else str(c))


def _cls(name: str) -> str:
    return f' class="{html.escape(name)}"' if name else ""


def _html_block(b) -> str:
    if isinstance(b, Para):
        return f"<p{_cls(b.cls)}>{_inline(b.text)}</p>"
    if isinstance(b, Heading):
        return f"<h3>{_inline(b.text)}</h3>"
    if isinstance(b, Table):
        def row(cells, tag):
            return "<tr>" + "".join(f"<{tag}{_cls(c.cls)}>" + "<br>".join(map(_inline, c.text.split("\n")))
                                    + f"</{tag}>" for c in map(_cell, cells)) + "</tr>"
        body = "\n".join(row(r, "td") for r in b.rows)
        return (f'<div class="scroll"><table{_cls(b.cls)}>\n<thead>{row(b.header, "th")}</thead>\n<tbody>\n{body}\n'
                "</tbody></table></div>")
    if isinstance(b, Image):
        return (f'<figure><img src="img/{html.escape(b.name)}" alt="{html.escape(b.alt)}">'
                f"<figcaption>{_inline(b.caption)}</figcaption></figure>")
    if isinstance(b, NotRun):
        cmds = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in b.commands)
        return (f'<div class="notrun"><p><strong>not run</strong>: {_inline(b.what)}</p>'
                + (f"<p>To produce it:</p><ul>{cmds}</ul>" if cmds else "") + "</div>")
    if isinstance(b, Markdown):
        inner = markdown_to_html(b.text, shift=2)
        return f"<div{_cls(b.cls)}>{inner}</div>" if b.cls else inner
    raise TypeError(b)


def _md_cell(c) -> str:
    return _cell(c).text.replace("|", "\\|").replace("\n", "<br>")


def _md_block(b) -> str:
    if isinstance(b, Para):
        return b.text
    if isinstance(b, Heading):
        return f"### {b.text}"
    if isinstance(b, Table):
        lines = ["| " + " | ".join(map(_md_cell, b.header)) + " |", "|" + "---|" * len(b.header)]
        return "\n".join(lines + ["| " + " | ".join(map(_md_cell, r)) + " |" for r in b.rows])
    if isinstance(b, Image):
        return f"![{b.alt}](img/{b.name})\n\n*{b.caption}*"
    if isinstance(b, NotRun):
        return f"**not run**: {b.what}" + ("\n\nTo produce it:\n\n" + "\n".join(f"- `{c}`" for c in b.commands)
                                           if b.commands else "")
    if isinstance(b, Markdown):
        return re.sub(r"^(#{1,4}) ", r"\1## ", b.text.strip(), flags=re.MULTILINE)
    raise TypeError(b)


# ---------------------------------------------------------------------------------------------------------------
# A small Markdown-to-HTML converter for the Markdown this project writes itself (accuracy table, resources):
# ATX headings, pipe tables, bullet and numbered lists, fenced code, paragraphs; every text escaped.

def _split_row(line: str) -> list[str]:
    s = line.strip()
    s = s.removeprefix("|")
    s = s[:-1] if s.endswith("|") and not s.endswith("\\|") else s
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", s)]


def _is_table_sep(line: str) -> bool:
    return bool(re.fullmatch(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*", line))


_LIST = re.compile(r"\s*(?:[-*+]|\d+\.)\s+(.*)")


def markdown_to_html(text: str, shift: int = 0) -> str:
    """HTML of Markdown text; headings moved `shift` levels down (h1 -> h3 for shift 2)."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.lstrip().startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            n = min(6, len(m.group(1)) + shift)
            out.append(f"<h{n}>{_inline(m.group(2).strip())}</h{n}>")
            i += 1
        elif "|" in line and i + 1 < len(lines) and _is_table_sep(lines[i + 1]):
            rows, i = [], i + 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(_split_row(lines[i]))
                i += 1
            out.append(_html_block(Table(_split_row(line), rows)))
        elif _LIST.match(line):
            ordered = bool(re.match(r"\s*\d+\.", line))
            items = []
            while i < len(lines) and (m := _LIST.match(lines[i])):
                items.append(f"<li>{_inline(m.group(1))}</li>")
                i += 1
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>" + "".join(items) + f"</{tag}>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"#{1,6}\s|```", lines[i]) \
                    and not _LIST.match(lines[i]) and not (i + 1 < len(lines) and _is_table_sep(lines[i + 1])):
                para.append(_inline(lines[i].strip()))
                i += 1
            out.append("<p>" + "<br>\n".join(para) + "</p>")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------------
# Inputs

@dataclasses.dataclass
class Loaded:
    data: object = None  # the parsed JSON; None when not given or not found
    path: str = ""
    missing: str = ""  # why it is absent, when a path was given


def _load(src, what: str) -> Loaded:
    """A JSON input: None, a path (absent file: missing, with the reason), or already-parsed data."""
    if src is None:
        return Loaded()
    if not isinstance(src, (str, Path)):
        return Loaded(src, "(in memory)")
    p = Path(src)
    if not p.is_file():
        return Loaded(None, str(p), f"{what} file {p} does not exist")
    try:
        return Loaded(json.loads(p.read_text()), str(p))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise S4DInputError(f"{what} file {p}: {type(e).__name__}: {e}") from None


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
    return [NotRun(what + (f" ({missing})" if missing else ""), COMMANDS[key])]


# ---------------------------------------------------------------------------------------------------------------
# 1. Machine

def _gpus(g) -> str:
    if not g:
        return "none"
    if isinstance(g, list):
        return ", ".join(x.get("name", json.dumps(x)) if isinstance(x, dict) else str(x) for x in g)
    return str(g)


def _bench_machine(data: dict) -> dict:
    mi = data.get("machine_info") or {}
    s = mi.get("s4dconf") or {}
    cpu = mi.get("cpu") if isinstance(mi.get("cpu"), dict) else {}
    return {"node": mi.get("node"), "cpu": s.get("cpu") or cpu.get("brand_raw") or mi.get("processor"),
            "cpu count": cpu.get("count"),
            "system": " ".join(str(mi[k]) for k in ("system", "release", "machine") if mi.get(k)) or None,
            "python": s.get("python") or mi.get("python_version"), "numpy": s.get("numpy"), "scipy": s.get("scipy"),
            "torch": s.get("torch"), "cuda": s.get("cuda"), "gpus": _gpus(s.get("gpus")) if "gpus" in s else None,
            "lava-nc": s.get("lava-nc"), "s4dconf": s.get("s4dconf"), "spec version": s.get("spec_version"),
            "measured at": data.get("datetime")}


def _conformance_machine(data: dict) -> dict:
    row = {k: v for k, v in (data.get("platform") or {}).items()}
    row.update({"s4dconf": data.get("s4dconf"), "spec version": data.get("spec_version")})
    return row


def machine_section(conf: Loaded, benches: list[Loaded], now: str) -> Section:
    blocks = [Para(f"Generated {now} by s4dconf {s4dconf.__version__} (SPEC.md version {s4dconf.SPEC_VERSION}).")]
    cols = [(f"benchmark: {Path(b.path).name}", _bench_machine(b.data)) for b in benches]
    if conf.data is not None:
        cols.append((f"conformance: {Path(conf.path).name}", _conformance_machine(conf.data)))
    if not cols:
        return Section("machine", blocks + [NotRun("no benchmark or conformance JSON, so nothing records the "
                                                   "machine the measurements ran on",
                                                   COMMANDS["benchmarks"] + COMMANDS["conformance"][:1])])
    fields = list(dict.fromkeys(k for _, d in cols for k in d))
    rows = [[k] + [_fmt(d.get(k)) for _, d in cols] for k in fields if any(d.get(k) is not None for _, d in cols)]
    blocks.append(Para("The machines the measurements ran on, as each input file records them."))
    blocks.append(Table(["field"] + [c for c, _ in cols], rows))
    return Section("machine", blocks)


# ---------------------------------------------------------------------------------------------------------------
# 2. Conformance matrix

def _badness(metric: str, value, tol) -> float:
    """How bad a record is, larger = worse: value/tolerance for upper bounds, tolerance - value for lower ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.inf
    if metric in LOWER:
        return (tol - value) if tol is not None else -value
    return value / tol if tol else value


@dataclasses.dataclass
class CellSummary:
    counts: Counter
    worst: dict  # metric -> the record with the worst value vs its tolerance
    saturated: int = 0

    @property
    def verdict(self) -> str:
        if self.counts.get("fail"):
            return "fail"
        return "pass" if self.counts.get("pass") else (self.counts.most_common(1)[0][0] if self.counts else "-")


def summarize_conformance(records: list[dict]) -> tuple[list[str], list[str], dict]:
    """(backends, families, {(backend, family): CellSummary}) in the order the records first name them."""
    records = [_numbers(dict(r)) for r in records]
    cells: dict = {}
    for r in records:
        key = (r["backend"], r["family"])
        c = cells.setdefault(key, CellSummary(Counter(), {}))
        c.counts[r["verdict"]] += 1
        c.saturated += bool(r.get("saturations"))
        m, w = r["metric"], c.worst.get(r["metric"])
        if w is None or _badness(m, r["value"], r["tolerance"]) > _badness(m, w["value"], w["tolerance"]):
            c.worst[m] = r
    backends = list(dict.fromkeys(r["backend"] for r in records))
    families = list(dict.fromkeys(r["family"] for r in records))
    return backends, families, cells


def _metric_value(metric: str, v) -> str:
    if v is None:
        return "none"
    return f"{v:.1f} dB" if metric == "snr_db" else (f"{v:.3g}" if metric == "argmax" else f"{v:.2g}")


def _cell_text(c: CellSummary) -> Cell:
    n = sum(c.counts.values())
    lines = [f"{c.verdict.upper()} {c.counts.get('pass', 0)}/{n} pass"
             + (f", {c.counts['fail']} fail" if c.counts.get("fail") else "")]
    for m in UPPER + LOWER + tuple(sorted(set(c.worst) - set(UPPER + LOWER))):
        if m in c.worst:
            r = c.worst[m]
            bound = "≥" if m in LOWER else "≤"
            lines.append(f"{m} {_metric_value(m, r['value'])} ({bound} {_metric_value(m, r['tolerance'])})")
    if c.saturated:
        lines.append(f"{c.saturated} record(s) with saturations")
    return Cell("\n".join(lines), c.verdict if c.verdict in ("pass", "fail") else "")


def _backends_table(backends: dict) -> Table:
    rows = [[name, b.get("numeric_class"), b.get("version"), b.get("device"), ", ".join(b.get("paths") or []),
             _fmt(b.get("streaming"))] for name, b in backends.items()]
    return Table(["backend", "numeric class", "version", "device", "paths", "streaming"], rows)


def _records(conf: Loaded) -> list[dict]:
    d = conf.data
    _expect(isinstance(d, dict) and isinstance(d.get("records"), list), "conformance", conf.path,
            "expected an object with a list 'records' (s4dconf check --json)")
    need = ("backend", "family", "metric", "value", "tolerance", "verdict")
    for r in d["records"]:
        _expect(isinstance(r, dict) and all(k in r for k in need), "conformance", conf.path,
                f"a record lacks one of {need}: {str(r)[:200]}")
        try:
            _numbers(r)
        except ValueError as e:
            _expect(False, "conformance", conf.path, str(e))
    return d["records"]


def _numbers(r: dict) -> dict:
    """JSON has no inf/nan: the harness writes them as "inf", "-inf", "nan"; read them back as floats, in place."""
    for k in ("value", "tolerance"):
        if isinstance(r.get(k), str):
            try:
                r[k] = float(r[k])
            except ValueError:
                raise ValueError(f"record {k} {r[k]!r} is not a number") from None
    return r


def conformance_section(conf: Loaded) -> Section:
    if conf.data is None:
        return Section("conformance", _not_run("conformance", "no conformance JSON", conf.missing))
    records = _records(conf)
    d = conf.data
    blocks = [Para(f"From `{Path(conf.path).name}`: spec version {d.get('spec_version', '?')}, s4dconf "
                   f"{d.get('s4dconf', '?')}, pytest exit status {d.get('exitstatus', '?')}, {len(records)} records.")]
    if d.get("backends"):
        blocks.append(_backends_table(d["backends"]))
    if not records:
        return Section("conformance", blocks + [Para("The file holds no records (no backend was checked).")])
    backends, families, cells = summarize_conformance(records)
    rows = []
    for b in backends:
        row = [b] + [_cell_text(cells[(b, f)]) if (b, f) in cells else Cell("not checked") for f in families]
        total = Counter()
        for f in families:
            total.update(cells[(b, f)].counts if (b, f) in cells else {})
        verdict = "fail" if total.get("fail") else "pass"
        rows.append(row + [Cell(f"{verdict.upper()} {total.get('pass', 0)}/{sum(total.values())} pass", verdict)])
    blocks.append(Para("Each cell: the verdict with pass/fail counts of every record (case x probe x metric) of "
                       "that backend and case family, then per metric the worst measured value and, in brackets, "
                       "its tolerance (≤: an upper bound, the worst value is the largest; ≥: a lower bound, the "
                       "worst value is the smallest)."))
    blocks.append(Table(["backend"] + families + ["all families"], rows, cls="matrix"))
    return Section("conformance", blocks)


# ---------------------------------------------------------------------------------------------------------------
# 3. Error distributions (plots)

def _new_figure(w: float, h: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas is used for PNG

    fig = Figure(figsize=(w, h), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, img_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(img_dir / name, format="png")
    return name


def _strip_plot(img_dir: Path, name: str, by_backend: dict, xlabel: str, title: str, fail_right: bool) -> str:
    """Jittered points per backend (rows) and metric (colour); x = the margin to the tolerance, tolerance at x = 0,
    failing side shaded. Infinite margins are drawn at the edges: on the passing side "exact" (value 0, infinite SNR),
    on the failing side "non-finite" (inf or nan). Each row's label carries its worst margin."""
    backends = list(by_backend)
    finite = [x for pts in by_backend.values() for _, x in pts if math.isfinite(x)]
    lo, hi = min(finite + [0.0]), max(finite + [0.0])
    pad = max(1.0, 0.08 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    good, bad = (lo, hi) if fail_right else (hi, lo)
    fig, ax = _new_figure(10, 1.5 + 0.6 * len(backends))
    rng = np.random.default_rng(0)
    metrics = list(dict.fromkeys(m for pts in by_backend.values() for m, _ in pts))
    colours = {m: ("tab:blue", "tab:orange", "tab:green", "tab:purple")[i % 4] for i, m in enumerate(metrics)}
    labelled, ticks = set(), []
    for y, b in enumerate(backends):
        allx = np.array([x for _, x in by_backend[b]], dtype=float)
        allx = np.where(np.isnan(allx), math.inf if fail_right else -math.inf, allx)
        worst = allx.max() if fail_right else allx.min()
        ticks.append(f"{b}\n(worst {worst:.1f})" if math.isfinite(worst) else
                     f"{b}\n(worst: {'non-finite' if (worst > 0) == fail_right else 'exact'})")
        for m in metrics:
            xs = np.array([x for mm, x in by_backend[b] if mm == m], dtype=float)
            if not xs.size:
                continue
            xs = np.where(np.isnan(xs), math.inf if fail_right else -math.inf, xs)
            ys = y + (metrics.index(m) - (len(metrics) - 1) / 2) * 0.22 + rng.uniform(-0.07, 0.07, xs.size)
            is_good = (xs == -math.inf) if fail_right else (xs == math.inf)
            is_bad = ~np.isfinite(xs) & ~is_good
            for sel, x, style, what in ((np.isfinite(xs), xs, {"s": 12, "alpha": 0.6}, m),
                                        (is_good, good, {"s": 30, "marker": "x"}, f"{m}: exact (at the edge)"),
                                        (is_bad, bad, {"s": 40, "marker": "X", "edgecolor": "tab:red"},
                                         f"{m}: non-finite (at the edge)")):
                if sel.any():
                    ax.scatter(np.broadcast_to(x, xs.shape)[sel], ys[sel], color=colours[m], **style,
                               label=what if what not in labelled else None)
                    labelled.add(what)
    ax.axvline(0.0, color="tab:red", lw=1.5, label="tolerance")
    ax.axvspan(*((0.0, hi) if fail_right else (lo, 0.0)), color="tab:red", alpha=0.07, label="fails")
    ax.set_xlim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
    ax.set_yticks(range(len(backends)), ticks, fontsize=8)
    ax.set_ylim(len(backends) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, img_dir, name)


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


def errors_section(conf: Loaded, img_dir: Path) -> Section:
    if conf.data is None:
        return Section("errors", _not_run("conformance", "no conformance JSON", conf.missing))
    records = _records(conf)
    blocks = []
    rel = _margins(records, UPPER, _log_ratio)
    if rel:
        name = _strip_plot(img_dir, "errors-relative.png", rel, "log10(value / tolerance)   (0 = the tolerance; "
                           "right of it = fail)", "Relative errors (rel_l2, max_abs_rel) vs their tolerance, "
                           "every record", fail_right=True)
        blocks.append(Image(name, "Strip plot, one row per backend: log10(value / tolerance) of every rel_l2 and "
                                  "max_abs_rel record; the red line at 0 is the tolerance, points right of it fail.",
                            "Relative metrics: distance to the tolerance in decades (-3 = a thousand times below "
                            "it). Exact results (value 0) are drawn as x at the left edge."))
    snr = _margins(records, ("snr_db",), lambda v, t: v - t)
    if snr:
        name = _strip_plot(img_dir, "errors-snr.png", snr, "SNR - its tolerance (dB)   (0 = the tolerance; left "
                           "of it = fail)", "Fixed-point SNR vs its tolerance, every record", fail_right=False)
        blocks.append(Image(name, "Strip plot, one row per backend: SNR in dB minus its tolerance for every snr_db "
                                  "record; the red line at 0 is the tolerance, points left of it fail.",
                            "SNR margin in dB (fixed-point backends); an infinite SNR (bit-exact) is drawn as x at "
                            "the right edge."))
    if not blocks:
        blocks.append(Para("No record has a relative or SNR metric to plot."))
    blocks.append(Para("argmax agreement is in the matrix above only (it is a fraction, mostly exactly 1)."))
    return Section("errors", blocks)


# ---------------------------------------------------------------------------------------------------------------
# 4. Accuracy

def accuracy_section(acc: Loaded) -> Section:
    from s4dconf.training.accuracy import to_markdown

    if acc.data is None:
        return Section("accuracy", _not_run("accuracy", "no accuracy table (accuracy.json)", acc.missing))
    _expect(isinstance(acc.data, dict) and isinstance(acc.data.get("rows"), list)
            and isinstance(acc.data.get("columns"), list), "accuracy", acc.path,
            "expected an object with 'columns' and 'rows' (s4dconf eval)")
    try:
        table = {**acc.data, "quoted": acc.data.get("quoted") or [],  # cells written by hand may lack a note
                 "rows": [{**r, "cells": {c: {"note": "", **v} for c, v in (r.get("cells") or {}).items()}}
                          for r in acc.data["rows"]]}
        text = to_markdown(table)
    except (KeyError, TypeError, AttributeError) as e:
        raise S4DInputError(f"accuracy file {acc.path}: malformed row: {type(e).__name__}: {e}") from None
    measured, sep, quoted = text.partition("## Quoted")
    blocks = [Para(f"From `{Path(acc.path).name}`."), Markdown(measured)]
    if sep:
        blocks.append(Markdown(sep + quoted, cls="quoted"))
    return Section("accuracy", blocks)


# ---------------------------------------------------------------------------------------------------------------
# 5. Benchmarks

def load_bench_rows(benches: list[Loaded]) -> tuple[list[dict], list[str]]:
    """One dict per timed benchmark (its extra_info, plus file, node, mean_s), and the names of those left out:
    untimed ones (stats None) silently, those without backend, mode and a positive integer batch by name."""
    rows, skipped = [], []
    for b in benches:
        _expect(isinstance(b.data, dict) and isinstance(b.data.get("benchmarks"), list), "benchmark", b.path,
                "expected a pytest-benchmark JSON object with a list 'benchmarks'")
        node = (b.data.get("machine_info") or {}).get("node", "?")
        for e in b.data["benchmarks"]:
            info = e.get("extra_info") or {}
            if not e.get("stats"):
                continue
            if "backend" not in info or "mode" not in info or _int_or(info.get("batch"), 0) < 1:
                skipped.append(f"{Path(b.path).name}: {e.get('name')}")
                continue
            numbers = {k: info[k] if isinstance(info[k], (int, float)) and info[k] > 0 else None
                       for k in NUMERIC_EXTRA if k in info}  # a figure that is not a positive number is not drawn
            rows.append({**info, **numbers, "file": Path(b.path).name, "node": node, "name": e.get("name"),
                         "mean_s": e["stats"].get("mean")})
    return rows, skipped


def _int_or(x, default: int) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else default


def _labeller(rows: list[dict]):
    """backend:path, plus device / file only where they differ within the rows."""
    vary = [k for k in ("device", "node", "file") if len({r.get(k) for r in rows}) > 1]

    def label(r):
        extra = ", ".join(str(r.get(k)) for k in vary)
        return f"{r['backend']}:{r.get('path', '?')}" + (f" [{extra}]" if extra else "")
    return label


def crossover_batch(rows: list[dict]) -> list[dict]:
    """Per device and file (one run: figures of different runs are never set against each other, as in
    `reports/claims.py`) with both: the smallest batch where torch-conv whole-sample tokens/s exceeds torch-rec
    streaming (batch 1) tokens/s (`first_winning_batch`); None when no measured batch does. Several measurements of
    one point in one file: the best one counts. "where" names the device, and the file when there are several."""
    out = []
    rec = [r for r in rows if r["backend"] == "torch-rec" and r["mode"] == "stream" and r.get("batch") == 1
           and r.get("tokens_per_s")]
    conv = [r for r in rows if r["backend"] == "torch-conv" and r["mode"] == "whole-sample" and r.get("tokens_per_s")]
    run = lambda r: (r.get("device"), r.get("file"))  # noqa: E731
    several_files = len({r.get("file") for r in rec + conv}) > 1
    for key in sorted({run(r) for r in rec} & {run(r) for r in conv}, key=str):
        stream = max(r["tokens_per_s"] for r in rec if run(r) == key)
        by_batch = defaultdict(float)
        for r in conv:
            if run(r) == key:
                by_batch[r["batch"]] = max(by_batch[r["batch"]], r["tokens_per_s"])
        batch = first_winning_batch(stream, by_batch)
        out.append({"device": key[0], "where": f"{key[0]}, {key[1]}" if several_files else str(key[0]),
                    "batch": batch, "stream_tokens_per_s": stream, "batches": sorted(by_batch),
                    "conv_tokens_per_s": by_batch[batch] if batch is not None else None})
    return out


def _quoted_chip(rows) -> list[float]:
    return sorted({float(r["quoted_chip_step_us"]) for r in rows if r.get("quoted_chip_step_us") is not None})


def _backend_colours(rows: list[dict]) -> dict:
    """One colour per backend, the same in every benchmark plot of a group."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors + matplotlib.colormaps["Dark2"].colors
    return {b: palette[i % len(palette)] for i, b in enumerate(dict.fromkeys(r["backend"] for r in rows))}


def _latency_plot(img_dir: Path, stem: str, title: str, rows: list[dict]) -> Image | None:
    stream = [r for r in rows if r["mode"] == "stream" and r.get("us_per_token") is not None]
    if not stream:
        return None
    label, colour = _labeller(rows), _backend_colours(rows)
    names = [label(r) + (f" b={r['batch']}" if r.get("batch") != 1 else "") for r in stream]
    values = [float(r["us_per_token"]) for r in stream]
    fig, ax = _new_figure(max(6.0, 1.2 * len(stream) + 2), 4.2)
    bars = ax.bar(range(len(stream)), values, color=[colour[r["backend"]] for r in stream],
                  label="measured: streaming, us per token")
    ax.bar_label(bars, [f"{v:.3g}" for v in values], fontsize=8)
    quoted = _quoted_chip(stream)
    for q in quoted:
        ax.axhline(q, color="tab:red", ls="--", lw=1.5, label=f"{QUOTED_CHIP}: {q:g} us per step (not measured)")
    ax.set_xticks(range(len(stream)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("us per token")
    ax.set_title(f"Streaming latency per token, {title}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    name = _save(fig, img_dir, f"bench-latency-{stem}.png")
    ref = "; dashed red line: the Loihi 2 chip step time quoted from the paper (quoted, not measured)" if quoted else ""
    return Image(name, f"Bar chart: measured microseconds per token of each backend's streaming mode, {title}{ref}",
                 f"Streaming latency per token (measured, lower is better), {title}{ref}.")


def _throughput_plot(img_dir: Path, stem: str, title: str, rows: list[dict]) -> Image | None:
    whole = [r for r in rows if r["mode"] == "whole-sample" and r.get("tokens_per_s")]
    if not whole:
        return None
    label, colour = _labeller(rows), _backend_colours(rows)
    fig, ax = _new_figure(10, 4.8)
    lines = defaultdict(dict)  # label -> batch -> best tokens/s
    backend_of = {}
    for r in whole:
        lines[label(r)][r["batch"]] = max(lines[label(r)].get(r["batch"], 0.0), float(r["tokens_per_s"]))
        backend_of[label(r)] = r["backend"]
    styles = defaultdict(lambda: iter([("o", "-"), ("s", "--"), ("^", "-."), ("D", "-")] * 4))
    for name, pts in lines.items():
        b = sorted(pts)
        marker, ls = next(styles[backend_of[name]])
        ax.plot(b, [pts[x] for x in b], marker=marker, ls=ls, color=colour[backend_of[name]],
                label=f"{name} whole-sample")
    for r in rows:
        if r["mode"] == "stream" and r.get("batch") == 1 and r.get("tokens_per_s"):
            ax.axhline(r["tokens_per_s"], ls=":", lw=2, color=colour[r["backend"]],
                       label=f"{label(r)} streaming (batch 1)")
    for c in crossover_batch(rows):
        if c["batch"] is not None:
            ax.axvline(c["batch"], color="k", ls="--", lw=1, label=f"crossover ({c['where']}): batch {c['batch']}")
            ax.plot([c["batch"]], [c["conv_tokens_per_s"]], marker="*", ms=14, color="k", ls="none")
    batches = sorted({r["batch"] for r in whole})
    if len(batches) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("tokens per second")
    ax.set_title(f"Throughput vs batch size, {title}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    name = _save(fig, img_dir, f"bench-throughput-{stem}.png")
    return Image(name, f"Line chart: measured tokens per second versus batch size, {title}: one solid line per "
                       "backend and path in whole-sample mode, one dotted horizontal line per backend streaming at "
                       "batch 1; a dashed vertical line and a star mark the smallest batch where torch-conv "
                       "whole-sample beats torch-rec streaming, where there is one",
                 f"Throughput (measured, higher is better), {title}. Lines of one colour are one backend.")


def _crossover_text(rows) -> list[Para]:
    out = []
    for c in crossover_batch(rows):
        head = (f"Crossover on {c['where']}: torch-conv whole-sample tokens/s exceeds torch-rec streaming "
                f"({c['stream_tokens_per_s']:,.0f} tokens/s at batch 1)")
        out.append(Para(f"{head} from batch {c['batch']} (batches measured: {c['batches']})." if c["batch"] is not None
                        else f"{head.replace('exceeds', 'does not exceed')} at any measured batch ({c['batches']})."))
    return out


def _bench_table(rows: list[dict]) -> Table:
    hdr = ["backend", "path", "mode", "device", "dtype", "batch", "us per token", "tokens/s", "samples/s",
           "pytest-benchmark mean (s)", "file"]
    return Table(hdr, [[r["backend"], r.get("path"), r["mode"], r.get("device"), r.get("dtype"), r.get("batch"),
                        _fmt(r.get("us_per_token")), _fmt(r.get("tokens_per_s"), ",.0f"), _fmt(r.get("samples_per_s")),
                        _fmt(r.get("mean_s")), r["file"]] for r in rows])


def benchmarks_section(benches: list[Loaded], missing: list[str], img_dir: Path) -> Section:
    miss = "; ".join(missing)
    if not benches:
        return Section("benchmarks", _not_run("benchmarks", "no pytest-benchmark JSON", miss))
    rows, skipped = load_bench_rows(benches)
    blocks = [Para("From " + ", ".join(f"`{Path(b.path).name}`" for b in benches) + f": {len(rows)} timed "
                   "benchmarks (untimed ones skipped)." + (f" Not found: {miss}." if miss else "")
                   + (f" Left out, no backend/mode/batch in extra_info: {', '.join(skipped)}." if skipped else ""))]
    groups = defaultdict(list)
    for r in rows:
        groups[(str(r.get("config", "?")), r.get("L", "?"))].append(r)
    for (config, L), grp in sorted(groups.items(), key=lambda kv: (kv[0][0], _int_or(kv[0][1], -1), str(kv[0][1]))):
        title, stem = f"{config}, L={L}", _safe_name(f"{config}-L{L}")
        blocks.append(Heading(title))
        plots = (_latency_plot(img_dir, stem, title, grp), _throughput_plot(img_dir, stem, title, grp))
        blocks += [img for img in plots if img is not None]
        blocks += _crossover_text(grp)
        for q in _quoted_chip(grp):
            src = next((r.get("quoted_source") for r in grp if r.get("quoted_chip_step_us") == q), None)
            blocks.append(Para(f"**quoted** (not measured here): Loihi 2 chip step time {q:g} us"
                               + (f" ({src})" if src else "") + ".", cls="quoted"))
        blocks.append(_bench_table(grp))
    return Section("benchmarks", blocks)


# ---------------------------------------------------------------------------------------------------------------
# 6. Claims

def _claims_list(cl: Loaded) -> list[dict]:
    d = cl.data
    d = d.get("verdicts", d.get("claims")) if isinstance(d, dict) else d
    _expect(isinstance(d, list) and all(isinstance(c, dict) and "id" in c and "verdict" in c for c in d), "claims",
            cl.path, "expected a list of {id, verdict, measured, evidence, note, quoted, source} (s4dconf claims "
                     "--json)")
    return d


def claims_section(cl: Loaded) -> Section:

    if cl.data is None:
        return Section("claims", _not_run("claims", "no claims JSON", cl.missing))
    colour = {"reproduced": "pass", "contradicted": "fail"}
    rows = []
    for c in _claims_list(cl):
        measured = f"measured: {_short(c['measured'])}" if c.get("measured") else "measured: nothing"
        ev = c.get("evidence") or []
        rows.append([c["id"], Cell(c["verdict"], colour.get(c["verdict"], "")),
                     Cell(f"quoted: {c.get('quoted', '')}\n({c.get('source', '')})", "quoted"), measured,
                     c.get("note", ""), "\n".join(ev) if ev else "-"])
    return Section("claims", [Para(f"From `{Path(cl.path).name}`. The paper's claims, quoted, next to what was "
                                   "measured here and the verdict computed from the measurements (SPEC.md 21)."),
                              Table(["claim", "verdict", "quoted (paper)", "measured (here)", "note", "evidence"],
                                    rows)])


# ---------------------------------------------------------------------------------------------------------------
# 7. Resources

def resources_section(resources) -> Section:
    if isinstance(resources, dict) and isinstance(resources.get("markdown"), str):
        return Section("resources", [Markdown(resources["markdown"])])
    return Section("resources", _not_run("resources", "no operation and resource counts (s4dconf.measure.resources)"))


# ---------------------------------------------------------------------------------------------------------------
# The page

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;
color:#222;line-height:1.4}
h1{border-bottom:2px solid #333}h2{border-bottom:1px solid #aaa;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.85em}th,td{border:1px solid #bbb;padding:.3em .5em;
vertical-align:top;text-align:left}th{background:#eee}.scroll{overflow-x:auto}
table.matrix td{white-space:nowrap}
td.pass{background:#e6f4e6}td.fail{background:#f9dddd}td.quoted,.quoted{font-style:italic;color:#555}
div.quoted{border-left:4px solid #c90;padding-left:1em}p.quoted{border-left:4px solid #c90;padding-left:.6em}
.notrun{background:#fff6e0;border:1px solid #e0c080;padding:.2em 1em}
code{background:#f3f3f3;padding:0 .2em}figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}nav li{display:inline;margin-right:1em}
"""

IMG_CHECK = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var d = document.createElement("div");
  d.id = "img-check"; d.hidden = true;
  d.setAttribute("data-total", String(imgs.length));
  d.setAttribute("data-loaded", String(imgs.length - broken.length));
  d.setAttribute("data-broken", broken.map(function (i) { return i.getAttribute("src"); }).join(" "));
  document.body.appendChild(d);
});
"""


def render_html(sections: list[Section], title: str) -> str:
    nav = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(f'<section id="{s.id}">\n<h2>{html.escape(s.title)}</h2>\n'
                     + "\n".join(_html_block(b) for b in s.blocks) + "\n</section>" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n<nav><ul>{nav}</ul></nav>\n"
            f"{body}\n<script>{IMG_CHECK}</script>\n</body>\n</html>\n")


def _slug(title: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def render_markdown(sections: list[Section], title: str) -> str:
    parts = [f"# {title}", "\n".join(f"- [{s.title}](#{_slug(s.title)})" for s in sections)]
    for s in sections:
        parts.append(f"## {s.title}")
        parts += [_md_block(b) for b in s.blocks]
    return "\n\n".join(parts) + "\n"


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
    benches = [_load(p, "benchmark") for p in benchmark_jsons or ()]
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
    import s4dconf.reports

    return Path(s4dconf.reports.__file__).resolve().parent


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
