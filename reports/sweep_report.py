"""The precision sweep (`s4dconf sweep`, SPEC.md 18.8) in the report and as a PNG: accuracy against each swept
format field, one panel per field, with the float accuracy, the WITHIN_POINTS band below it and the paper's format
marked. A refused format (one that cannot hold the model) is a cross on the panel's floor, its reason in the table."""
from __future__ import annotations

from pathlib import Path

from s4dconf.training.sweep import check_sweep, sweep_markdown

from .page import MarkdownFragment, Paragraph, ReportImage, ReportSection
from .plots import _panels, _save
from .report_inputs import LoadedInput, not_run


def _line(doc: dict, field: str, qaft: bool = False) -> list[tuple]:
    """(value, accuracy %) of a dimension's line: the paper's format and the points varying `field` alone (qaft: the
    accuracy after QAFT, at the points fine-tuned)."""
    pts = [(p["format"][field], 100 * (p["qaft"]["accuracy"] if qaft else p["accuracy"])) for p in doc["points"]
           if p["varied"] in ([], [field]) and p["accuracy"] is not None and (not qaft or "qaft" in p)]
    return sorted(pts, key=lambda v: (isinstance(v[0], str), v[0]))


def _refused(doc: dict, field: str) -> list:
    """The values of `field` whose format (the others at the paper's) PTQ refused: no accuracy to draw."""
    return [p["format"][field] for p in doc["points"] if p["varied"] == [field] and p.get("refused")]


def sweep_plot(doc: dict, img_dir, name: str = "sweep.png") -> ReportImage:
    """One panel per grid field: accuracy (%) against the field's value (numbers on a numeric axis, names as
    categories); a horizontal line at the float accuracy, a shaded band WITHIN_POINTS below it, the paper's value
    starred."""
    doc = check_sweep(doc, "sweep")
    fields = list(doc["grid"])
    fa = 100 * doc["float_accuracy"]
    fig, axes = _panels(len(fields), 11, 3.4)
    for ax, field in zip(axes, fields):
        line, refused = _line(doc, field), _refused(doc, field)
        xs = [v for v, _ in line]
        categorical = any(isinstance(v, str) for v in xs + refused)
        ticks = xs + [v for v in refused if v not in xs] if categorical else xs
        pos = list(range(len(xs))) if categorical else xs
        ax.plot(pos, [a for _, a in line], "o-", color="tab:blue", label="numpy-fxp, PTQ")
        tuned = _line(doc, field, qaft=True)
        if tuned:
            ax.plot([pos[xs.index(v)] for v, _ in tuned], [a for _, a in tuned], "s", ms=7, mfc="none",
                    color="tab:red", label="numpy-fxp, after QAFT")
        paper = doc["base_format"][field]
        if paper in xs:  # a sweep still running may not have it yet
            i = xs.index(paper)
            ax.plot([pos[i]], [line[i][1]], "*", ms=14, color="tab:orange", label=f"paper's format ({field}={paper})")
        ax.axhline(fa, color="tab:green", lw=1.2, label=f"float ({fa:.2f} %)")
        ax.axhspan(fa - doc["within_points"], fa, color="tab:green", alpha=0.1,
                   label=f"within {doc['within_points']:g} point of float")
        if categorical:
            ax.set_xticks(range(len(ticks)), [str(v) for v in ticks])
        ax.set_xlabel(field)
        ax.set_ylabel("accuracy (%)")
        lo = min((a for _, a in line), default=fa)
        floor = max(0.0, min(lo, fa - 2 * doc["within_points"]) - 1)
        ax.set_ylim(floor, min(100.0, fa + 1))
        if refused:
            ax.plot([ticks.index(v) for v in refused] if categorical else refused, [floor] * len(refused), "x",
                    ms=9, mew=2, color="tab:red", clip_on=False, label="refused: cannot hold the model (table)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Precision sweep: {doc['dataset']} ({doc['n']} test samples), one format field at a time",
                 fontsize=10)
    img_dir = Path(img_dir)
    img_dir.mkdir(parents=True, exist_ok=True)
    saved = _save(fig, img_dir, name)
    return ReportImage(saved, f"Line charts, one per format field ({', '.join(fields)}): measured accuracy of the "
                              f"PTQ model with numpy-fxp against the field's value, the other fields at the paper's "
                              f"format; open squares the accuracy after QAFT where the sweep fine-tuned; a star marks the paper's value, a horizontal line the float accuracy, a "
                              f"shaded band the {doc['within_points']:g} point below it; a cross on the floor a "
                              f"format that cannot hold the model (refused, no accuracy)",
                       f"Accuracy against bits per dimension (measured), {doc['dataset']}, {doc['n']} samples.")


def sweep_section(sweep: LoadedInput, img_dir) -> ReportSection:
    """The sweep's table and plot; "not run" with the command when there is no sweep.json."""
    if sweep.data is None:
        return ReportSection("sweep", not_run("sweep", "no precision sweep (sweep.json)", sweep.missing))
    doc = check_sweep(sweep.data, f"sweep file {sweep.path}")
    return ReportSection("sweep", [Paragraph(f"From `{Path(sweep.path).name}` (`s4dconf sweep`)."),
                                   MarkdownFragment(sweep_markdown(doc)), sweep_plot(doc, img_dir)])
