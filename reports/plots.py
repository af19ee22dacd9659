"""The report's figures (matplotlib, Agg canvas, no pyplot state), each saved as a PNG under img/ and returned as a
`ReportImage` with its alt text and caption: the error strip plots and, per benchmark run (one machine per
figure), the streaming latency bars and the throughput-vs-batch lines, one panel per (config, L), each series
labelled on the plot rather than in a legend, and the time to decision vs token rate. Only measured numbers are
drawn; the Loihi 2 chip step time quoted from the paper is a labelled reference (a bar, a point), marked quoted."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .page import ReportImage


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
                                    (is_good, good, {"s": 30, "marker": "x"}, "exact (drawn at the edge)"),
                                    (is_bad, bad, {"s": 40, "marker": "X", "edgecolor": "tab:red"},
                                     "non-finite (drawn at the edge)")):
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
# 5. Benchmarks: one run (one machine) per figure, one panel per (config, L), series labelled where they end

def quoted_chip(rows) -> list[float]:
    """The Loihi 2 chip step times (us) quoted in the rows' extra_info."""
    return sorted({float(r["quoted_chip_step_us"]) for r in rows if r.get("quoted_chip_step_us") is not None})


def backend_colours(rows: list[dict]) -> dict:
    """One colour per backend, the same in every benchmark plot of the report."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors + matplotlib.colormaps["Dark2"].colors
    return {b: palette[i % len(palette)] for i, b in enumerate(dict.fromkeys(r["backend"] for r in rows))}


def _series_name(r: dict) -> str:
    return f"{r['backend']}:{r.get('path', '?')}"


def _panels(n: int, w: float, h: float):
    """A figure with n panels, two per row; the unused ones hidden."""
    from matplotlib.figure import Figure

    cols = 1 if n == 1 else 2
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(w, h * rows), dpi=100)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _spread(ys: list[float], gap: float) -> list[float]:
    """Label heights at least `gap` apart, as near the given ones as an upward sweep allows (ys in plot units)."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    out = list(ys)
    for prev, i in zip(order, order[1:]):
        out[i] = max(out[i], out[prev] + gap)
    return out


def _end_labels(ax, labels: list, x: float) -> None:
    """Direct labels instead of a legend: each (y, text, colour) of `labels` at x, right of where the lines end, on
    a log y axis, spread at least 5.5 % of the axis apart; the y range grown to hold them."""
    lo, hi = ax.get_ylim()
    ys = _spread([math.log10(y) for y, _, _ in labels], 0.055 * (math.log10(hi) - math.log10(lo)))
    for (_, text, colour), y in zip(labels, ys):
        ax.annotate(text, (x, 10 ** y), fontsize=7, color=colour, va="center")
    ax.set_ylim(lo, max(hi, 10 ** max(ys) * 1.15) if ys else hi)


def latency_plot(img_dir: Path, stem: str, run_label: str, panels: dict, colours: dict) -> ReportImage | None:
    """Horizontal bars of the measured us per token of every streaming row, one panel per (config, L) of one run,
    each bar labelled with its backend:path and value; the quoted chip step time is a hatched red bar of its own,
    named as quoted. None without a streaming row."""
    streams = {t: sorted((r for r in rows if r["mode"] == "stream" and r.get("us_per_token") is not None),
                         key=lambda r: float(r["us_per_token"])) for t, rows in panels.items()}
    streams = {t: s for t, s in streams.items() if s}
    if not streams:
        return None
    most = max(len(s) + len(quoted_chip(s)) for s in streams.values())
    fig, axes = _panels(len(streams), 11, 0.9 + 0.42 * most)
    quoted_any = False
    for ax, (title, stream) in zip(axes, streams.items()):
        names = [_series_name(r) + (f" b={r['batch']}" if r.get("batch") != 1 else "") for r in stream]
        values = [float(r["us_per_token"]) for r in stream]
        ax.barh(range(len(stream)), values, color=[colours[r["backend"]] for r in stream], height=0.6)
        labels = [f"{v:.3g}" for v in values]
        for q in quoted_chip(stream):  # the quoted figure: a hatched, unfilled bar of its own, named as quoted
            quoted_any = True
            ax.barh([len(names)], [q], height=0.6, color="none", edgecolor="tab:red", hatch="///")
            ax.axvline(q, color="tab:red", ls="--", lw=0.8, alpha=0.6)
            names.append("Loihi 2 chip: quoted\n(paper, not measured)")
            values.append(q)
            labels.append(f"{q:g} (quoted)")
        for y, (v, text) in enumerate(zip(values, labels)):
            ax.annotate(text, (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8,
                        color="tab:red" if y >= len(stream) else "black")
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for tick in ax.get_yticklabels()[len(stream):]:
            tick.set_color("tab:red")
        ax.set_ylim(len(names) - 0.4, -0.6)
        ax.set_xlim(0, max(values) * 1.3)
        ax.set_xlabel("us per token (lower is better)", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Streaming latency per token (batch 1), {run_label}", fontsize=10)
    name = _save(fig, img_dir, f"bench-latency-{stem}.png")
    ref = "; a hatched red bar: the Loihi 2 chip step time quoted from the paper (quoted, not measured)" if quoted_any \
        else ""
    return ReportImage(name, f"Bar charts, one per config and sequence length: measured microseconds per token of "
                             f"each backend's streaming mode, {run_label}{ref}",
                       f"Streaming latency per token (measured, lower is better), {run_label}{ref}.")


def _throughput_panel(ax, title: str, rows: list[dict], crossovers: list[dict], colours: dict) -> None:
    whole = [r for r in rows if r["mode"] == "whole-sample" and r.get("tokens_per_s")]
    lines = defaultdict(dict)  # series -> batch -> best tokens/s
    backend_of = {}
    for r in whole:
        n = _series_name(r)
        lines[n][r["batch"]] = max(lines[n].get(r["batch"], 0.0), float(r["tokens_per_s"]))
        backend_of[n] = r["backend"]
    styles = defaultdict(lambda: iter(["-", "--", "-.", ":"] * 4))
    labels = []  # (y at the right end, text, colour)
    for n, pts in lines.items():
        b = sorted(pts)
        ax.plot(b, [pts[x] for x in b], marker="o", ms=4, ls=next(styles[backend_of[n]]), color=colours[backend_of[n]])
        labels.append((pts[b[-1]], n, colours[backend_of[n]]))
    batches = sorted({r["batch"] for r in whole})
    for r in rows:  # the streaming reference of the crossover: torch-rec at batch 1, up to where the labels start
        if r["mode"] == "stream" and r["backend"] == "torch-rec" and r.get("batch") == 1 and r.get("tokens_per_s"):
            ax.plot([batches[0] / 1.4, batches[-1] * 1.15], [r["tokens_per_s"]] * 2, ls=":", lw=2,
                    color=colours[r["backend"]])
            labels.append((float(r["tokens_per_s"]), f"{_series_name(r)} streaming, batch 1", colours[r["backend"]]))
    for c in crossovers:
        if c["batch"] is not None:
            ax.plot([c["batch"]], [c["conv_tokens_per_s"]], marker="*", ms=14, color="k", ls="none")
            ax.annotate(f"crossover: batch {c['batch']}", (c["batch"], c["conv_tokens_per_s"]), xytext=(0, 9),
                        textcoords="offset points", ha="center", fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(batches, [str(b) for b in batches], fontsize=8)
    ax.set_xlim(batches[0] / 1.4, batches[-1] * (10 if len(batches) > 1 else 12))  # room for the labels
    ax.tick_params(axis="y", labelsize=8)
    _end_labels(ax, labels, batches[-1] * 1.25)
    ax.set_xlabel("batch size", fontsize=8)
    ax.set_ylabel("tokens per second", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")


def throughput_plot(img_dir: Path, stem: str, run_label: str, panels: dict, crossovers: dict, colours: dict) \
        -> ReportImage | None:
    """Tokens/s vs batch size of every whole-sample backend and path, one panel per (config, L) of one run, each
    line labelled where it ends; torch-rec streaming at batch 1 as a dotted horizontal line, and the crossover
    (`crossovers[title]`: dicts with batch and conv_tokens_per_s) starred. None without a whole-sample row."""
    shown = {t: rows for t, rows in panels.items()
             if any(r["mode"] == "whole-sample" and r.get("tokens_per_s") for r in rows)}
    if not shown:
        return None
    fig, axes = _panels(len(shown), 11, 3.6)
    for ax, (title, rows) in zip(axes, shown.items()):
        _throughput_panel(ax, title, rows, crossovers.get(title, []), colours)
    fig.suptitle(f"Throughput vs batch size, {run_label}", fontsize=10)
    name = _save(fig, img_dir, f"bench-throughput-{stem}.png")
    return ReportImage(name, f"Line charts, one per config and sequence length: measured tokens per second versus "
                             f"batch size, {run_label}: one line per backend and path in whole-sample mode, labelled "
                             "at its right end; a dotted horizontal line for torch-rec streaming at batch 1; a star marks "
                             "the smallest batch where torch-conv whole-sample beats it, where there is one",
                       f"Throughput (measured, higher is better), {run_label}. The other backends' streaming figures "
                       "are in the latency plot above.")


def _decision_panel(ax, title: str, points: list[dict], quoted_us: float | None, colours: dict) -> None:
    """Time to decision vs token rate (both log) of one (config, L): a solid line per streaming backend (flat at
    its step while it keeps up, an open circle where it stops keeping up, then growing with the backlog towards
    L steps), a dashed flat line per whole-sample backend:path, a star at each crossover, the quoted chip step a
    red diamond at the rate it keeps up to; every line labelled at its right end."""
    from .claims import time_to_decision

    top = max([p["stream_max_rate"] for p in points] + [p["crossover_rate"] or 0.0 for p in points]
              + ([1e6 / quoted_us] if quoted_us else []))
    rates = np.geomspace(10.0, 10.0 * top, 300)
    several = len({p["device"] for p in points}) > 1
    series = {}  # label -> (ys, colour, style, point): one line per backend and mode, however many points share it
    for p in points:
        on = f" ({p['device']})" if several else ""
        times = [time_to_decision(r, p["step_s"], p["whole_s"], p["L"]) for r in rates]
        series[f"{p['stream_backend']} streaming{on}"] = ([t["stream"] for t in times],
                                                          colours.get(p["stream_backend"], "k"), "-", p)
        series[f"{p['whole_backend']}:{p['whole_path']} whole-sample{on}"] = (
            [t["whole"] for t in times], colours.get(p["whole_backend"], "k"), "--", None)
    labels = []
    for text, (ys, colour, style, p) in series.items():
        ax.plot(rates, ys, ls=style, lw=1.5, color=colour)
        if p is not None:  # where streaming stops keeping up (step = T)
            ax.plot([p["stream_max_rate"]], [p["step_s"]], marker="o", mfc="none", ms=6, color=colour, ls="none")
        labels.append((ys[-1], text, colour))
    for p in points:
        if p["crossover_rate"]:
            ax.plot([p["crossover_rate"]], [p["whole_s"]], marker="*", ms=12, color="k", ls="none")
    if quoted_us:
        q = quoted_us * 1e-6
        ax.plot([1.0 / q], [q], marker="D", ms=7, color="tab:red", ls="none")
        ax.annotate(f"Loihi 2 chip, {quoted_us:g} us step\n(quoted, not measured)", (1.0 / q, q), xytext=(8, 0),
                    textcoords="offset points", ha="left", va="center", fontsize=7, color="tab:red")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(rates[0], rates[-1] * 40)  # room for the labels
    _end_labels(ax, labels, rates[-1] * 1.3)
    ax.set_xlabel("token rate (tokens per second)", fontsize=8)
    ax.set_ylabel("time to decision after the last token (s)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="major")


def decision_plot(img_dir: Path, stem: str, run_label: str, panels: dict, quoted: dict, quoted_source: str,
                  colours: dict) -> ReportImage:
    """Time to decision vs token rate of one run (`_decision_panel`), one panel per (config, L): `panels[title]`
    the `claims.decision_points` of that panel, `quoted[title]` the chip step (us) quoted for it, if any."""
    fig, axes = _panels(len(panels), 11, 4.0)
    for ax, (title, points) in zip(axes, panels.items()):
        _decision_panel(ax, title, points, quoted.get(title), colours)
    fig.suptitle(f"Time to decision, {run_label}", fontsize=10)
    name = _save(fig, img_dir, f"bench-decision-{stem}.png")
    ref = (f"; a red diamond: the Loihi 2 chip's step time quoted from the paper ({quoted_source}), quoted, not "
           "measured, at the token rate it keeps up to") if quoted else ""
    return ReportImage(name, f"Line charts, one per config and sequence length, both axes logarithmic: time from a "
                             f"sequence's last token to its answer versus the token rate, {run_label}: a solid line "
                             "per backend streaming (an open circle where it stops keeping up), a dashed line per "
                             f"backend whole-sample, a star at each crossover{ref}",
                       f"Time to decision (measured, audited; lower is better), {run_label}: above a star, "
                       f"whole-sample answers sooner{ref}.")
