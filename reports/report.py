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
3b. Precision sweep           `sweep.json` (`s4dconf sweep`): its table and the accuracy-vs-bits plot
                              (`sweep_report.py`)
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

import datetime
import json
from pathlib import Path

import s4dconf
from s4dconf.reference.validate import S4DInputError

from .page import SECTIONS  # noqa: F401 - re-exported: the section names are part of this module's API
from .page import render_html, render_markdown
from .report_inputs import load_benchmark_input, load_input, run_origin, this_machine
from .sections import accuracy_section, conformance_section, errors_section, machine_section
from .sweep_report import sweep_section
from .sections_perf import bench_values, benchmarks_section, claims_section, resources_section, summary_section


# ---------------------------------------------------------------------------------------------------------------
# The report

def build_report(out_dir, conformance_json=None, accuracy_json=None, benchmark_jsons=(), claims_json=None,
                 resources=None, sweep_json=None) -> tuple[Path, Path]:
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
    conf = load_input(conformance_json, "conformance")
    acc = load_input(accuracy_json, "accuracy")
    claims = load_input(claims_json, "claims")
    sweep = load_input(sweep_json, "sweep")
    benches = [load_benchmark_input(p) for p in benchmark_jsons or ()]
    missing = [b.missing for b in benches if b.data is None]
    benches = [b for b in benches if b.data is not None]
    for i, b in enumerate(benches):  # runs given as parsed JSON: one name each
        if b.path == "(in memory)":
            b.path = f"(in memory, run {i + 1})"
    host = this_machine()
    origins = {b.path: run_origin(b, host) for b in benches}
    log.append(f"this machine: {json.dumps(host)}")
    for what, x in (("conformance", conf), ("accuracy", acc), ("claims", claims), ("sweep", sweep)):
        log.append(f"input {what}: {x.path or 'none'}" + (f" (missing: {x.missing})" if x.missing else ""))
    for b in benches:
        log.append(f"input benchmark: {b.path} -> {origins[b.path].label}")
    sections = [summary_section(conf, acc, claims, benches, origins), conformance_section(conf),
                errors_section(conf, img_dir), accuracy_section(acc), sweep_section(sweep, img_dir),
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
            "bench": benches, "claims": _first(out / "claims.json"), "resources": _first(out / "resources.md"),
            "sweep": _first(out / "sweep" / "sweep.json", committed / "sweep" / "sweep.json")}


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
                                      {"markdown": res.read_text()} if res else None, pick["sweep"])
    for k in ("conformance", "accuracy", "bench", "claims", "resources", "sweep"):
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
    p.add_argument("--sweep", default=None, metavar="PATH", help="sweep.json of s4dconf sweep")
    p.set_defaults(func=cmd_report)
