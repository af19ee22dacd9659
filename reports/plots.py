"""The report's figures (matplotlib, Agg canvas, no pyplot state), each saved as a PNG under img/ and returned as a
`ReportImage` with its alt text and caption: the error strip plots (section 3) and, per (config, L), the streaming
latency bars and the throughput-vs-batch lines (section 5). Only measured numbers are drawn; the Loihi 2 chip
step time quoted from the paper is a labelled reference line."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .page import ReportImage

QUOTED_CHIP = "quoted: Loihi 2, paper"


def _new_figure(w: float, h: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas is used for PNG

    fig = Figure(figsize=(w, h), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, img_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(img_dir / name, format="png")
    return name


# ---------------------------------------------------------------------------------------------------------------
# 3. Error distributions

def _strip_row(ax, y: float, points: list, metrics: list, colours: dict, edges: tuple, fail_right: bool,
               rng, labelled: set) -> float:
    """One backend's points at height y; the worst margin of the row."""
    good, bad = edges
    allx = np.array([x for _, x in points], dtype=float)
    allx = np.where(np.isnan(allx), math.inf if fail_right else -math.inf, allx)
    for m in metrics:
        xs = np.array([x for mm, x in points if mm == m], dtype=float)
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
    return allx.max() if fail_right else allx.min()


def strip_plot(img_dir: Path, name: str, by_backend: dict, xlabel: str, title: str, fail_right: bool) -> str:
    """Jittered points per backend (rows) and metric (colour); x = the margin to the tolerance, tolerance at x = 0,
    failing side shaded. Infinite margins are drawn at the edges: on the passing side "exact" (value 0, infinite SNR),
    on the failing side "non-finite" (inf or nan). Each row's label carries its worst margin."""
    backends = list(by_backend)
    finite = [x for pts in by_backend.values() for _, x in pts if math.isfinite(x)]
    lo, hi = min(finite + [0.0]), max(finite + [0.0])
    pad = max(1.0, 0.08 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    fig, ax = _new_figure(10, 1.5 + 0.6 * len(backends))
    rng = np.random.default_rng(0)
    metrics = list(dict.fromkeys(m for pts in by_backend.values() for m, _ in pts))
    colours = {m: ("tab:blue", "tab:orange", "tab:green", "tab:purple")[i % 4] for i, m in enumerate(metrics)}
    labelled, ticks = set(), []
    for y, b in enumerate(backends):
        worst = _strip_row(ax, y, by_backend[b], metrics, colours, (lo, hi) if fail_right else (hi, lo), fail_right,
                           rng, labelled)
        ticks.append(f"{b}\n(worst {worst:.1f})" if math.isfinite(worst) else
                     f"{b}\n(worst: {'non-finite' if (worst > 0) == fail_right else 'exact'})")
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


# ---------------------------------------------------------------------------------------------------------------
# 5. Benchmarks

def labeller(rows: list[dict]):
    """backend:path, plus device / node / file only where they differ within the rows."""
    vary = [k for k in ("device", "node", "file") if len({r.get(k) for r in rows}) > 1]

    def _label(r):
        extra = ", ".join(str(r.get(k)) for k in vary)
        return f"{r['backend']}:{r.get('path', '?')}" + (f" [{extra}]" if extra else "")
    return _label


def quoted_chip(rows) -> list[float]:
    """The Loihi 2 chip step times (us) quoted in the rows' extra_info."""
    return sorted({float(r["quoted_chip_step_us"]) for r in rows if r.get("quoted_chip_step_us") is not None})


def _backend_colours(rows: list[dict]) -> dict:
    """One colour per backend, the same in every benchmark plot of a group."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors + matplotlib.colormaps["Dark2"].colors
    return {b: palette[i % len(palette)] for i, b in enumerate(dict.fromkeys(r["backend"] for r in rows))}


def latency_plot(img_dir: Path, stem: str, title: str, rows: list[dict]) -> ReportImage | None:
    """Bars of the measured us per token of every streaming row, with the quoted chip step time as a dashed line;
    None without a streaming row."""
    stream = [r for r in rows if r["mode"] == "stream" and r.get("us_per_token") is not None]
    if not stream:
        return None
    label, colour = labeller(rows), _backend_colours(rows)
    names = [label(r) + (f" b={r['batch']}" if r.get("batch") != 1 else "") for r in stream]
    values = [float(r["us_per_token"]) for r in stream]
    fig, ax = _new_figure(max(6.0, 1.2 * len(stream) + 2), 4.2)
    bars = ax.bar(range(len(stream)), values, color=[colour[r["backend"]] for r in stream],
                  label="measured: streaming, us per token")
    ax.bar_label(bars, [f"{v:.3g}" for v in values], fontsize=8)
    quoted = quoted_chip(stream)
    for q in quoted:
        ax.axhline(q, color="tab:red", ls="--", lw=1.5, label=f"{QUOTED_CHIP}: {q:g} us per step (not measured)")
    ax.set_xticks(range(len(stream)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("us per token")
    ax.set_title(f"Streaming latency per token, {title}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    name = _save(fig, img_dir, f"bench-latency-{stem}.png")
    ref = "; dashed red line: the Loihi 2 chip step time quoted from the paper (quoted, not measured)" if quoted else ""
    return ReportImage(name, f"Bar chart: measured microseconds per token of each backend's streaming mode, "
                             f"{title}{ref}", f"Streaming latency per token (measured, lower is better), {title}{ref}.")


def _throughput_lines(ax, rows: list[dict], whole: list[dict]) -> None:
    label, colour = labeller(rows), _backend_colours(rows)
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


def throughput_plot(img_dir: Path, stem: str, title: str, rows: list[dict], crossovers: list[dict]) \
        -> ReportImage | None:
    """Tokens/s vs batch size of every whole-sample backend and path, the streaming (batch 1) figures as horizontal
    lines, and each crossover (dicts with where, batch, conv_tokens_per_s) marked; None without a whole-sample
    row."""
    whole = [r for r in rows if r["mode"] == "whole-sample" and r.get("tokens_per_s")]
    if not whole:
        return None
    fig, ax = _new_figure(10, 4.8)
    _throughput_lines(ax, rows, whole)
    for c in crossovers:
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
    return ReportImage(name, f"Line chart: measured tokens per second versus batch size, {title}: one solid line per "
                             "backend and path in whole-sample mode, one dotted horizontal line per backend streaming "
                             "at batch 1; a dashed vertical line and a star mark the smallest batch where torch-conv "
                             "whole-sample beats torch-rec streaming, where there is one",
                       f"Throughput (measured, higher is better), {title}. Lines of one colour are one backend.")
