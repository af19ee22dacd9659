"""The report (reports/report.py, page.py, plots.py, templates/): built from small synthetic inputs (conformance,
accuracy, two benchmark runs, one of this machine and one of another, and claims JSON made here), every section
present, the summary first, every image referenced exists and is a PNG, figures of the other machine labelled with it
and never "here", diagnostics in report.log and not on the page, a report without inputs says "not run" with the
commands, and, in headless Chromium, every <img> loads (the page's inline script writes
`<div id="img-check" data-total data-loaded data-broken>` after onload; `--dump-dom` returns it) and, at a 1400 px
wide window, no table overflows its container and the summary is above the fold (a script injected into a copy of
the page writes `<div id="layout-check">`). The browser tests skip when Chromium is absent (Debian package
`chromium`). Also the pieces the report shares with the rest of the project: the conformance summary (`s4dconf
check` prints it too), the table formatter and the number decoding."""
from __future__ import annotations

import argparse
import html
import json
import math
import platform
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from s4dconf.reference.validate import S4DInputError
from s4dconf.reports.conformance_summary import check_matrix_rows, summarize_conformance
from s4dconf.reference.json_numbers import decode_number, encode_number
from s4dconf.reports.page import SECTIONS, markdown_to_html
from s4dconf.reports.report import build_report, register
from s4dconf.reports.report_inputs import COMMANDS, this_machine
from s4dconf.reports.sections_perf import benchmark_crossovers
from s4dconf.reports.tables import markdown_table, text_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<b>bold</b> & <script>alert(1)</script>"


# ---------------------------------------------------------------------------------------------------------------
# synthetic inputs

def _rec(backend, family, metric, value, tol, verdict="pass", probe="logits", case=None):
    return {"backend": backend, "case": case or f"tiny/{family}", "family": family, "probe": probe,
            "metric": metric, "value": value, "tolerance": tol, "verdict": verdict, "saturations": None}


def conformance_data() -> dict:
    recs = []
    for fam in ("impulse", "long"):
        recs += [_rec("torch-rec:eager", fam, "rel_l2", v, 3e-4, probe=f"p{i}") for i, v in enumerate((1e-6, 3e-5))]
        recs += [_rec("torch-rec:eager", fam, "max_abs_rel", 2e-6, 3e-4), _rec("torch-rec:eager", fam, "argmax",
                                                                                 1.0, 1.0)]
        recs += [_rec("reference:default", fam, "rel_l2", 0.0, 1e-10)]  # exact: drawn at the plot's edge
    recs += [_rec("numpy-fxp:default", "impulse", "snr_db", v, 15.0, probe=f"p{i}") for i, v in
             enumerate((27.0, 31.5, "inf"))]  # the harness writes an infinite SNR as "inf"
    recs += [_rec("numpy-fxp:default", "long", "snr_db", 6.5, 8.0, verdict="fail"),
             _rec("numpy-fxp:default", "long", "snr_db", 9.0, 8.0)]
    recs[-1]["saturations"] = {"layer0": 3}
    backends = {"torch-rec": {"name": "torch-rec", "numeric_class": "float32", "version": "t 1", "device": "cpu",
                              "paths": ["eager"], "streaming": True},
                "numpy-fxp": {"name": "numpy-fxp", "numeric_class": "fixed-point", "version": "n 1", "device": "cpu",
                              "paths": ["default"], "streaming": True},
                "lava-float": {"available": False, "reason": "lava-nc is not installed (`tox -e lava`)"},
                "lava-fxp": {"available": False, "reason": "lava-nc is not installed (`tox -e lava`)"}}
    return {"spec_version": "1.0", "s4dconf": "0.1.0", "exitstatus": 1, "backends": backends, "records": recs,
            "platform": {"python": "3.11.7", "numpy": "1.26.4", "scipy": "1.11", "machine": "x86_64",
                         "system": "Linux"}}


def accuracy_data() -> dict:
    row = {"dataset": "sdigits", "kind": "float", "model_file": "sdigits-float.npz", "model_sha256": "ab" * 32,
           "cells": {"reference": {"accuracy": 0.975, "n": 360, "note": "", "seconds": 0.1},
                     "lava-float": {"accuracy": None, "n": 0, "note": "not available: no lava", "seconds": None}}}
    return {"schema": "s4dconf-accuracy/1", "columns": ["reference", "lava-float"], "rows": [row],
            "quoted": [{"claim": "sCIFAR float 86.5 %", "source": "a secondary source"}]}


def _bench(name, backend, mode, path, batch, tokens_per_s, timed=True, **extra):
    info = {"backend": backend, "mode": mode, "path": path, "device": "cpu", "dtype": "float32", "batch": batch,
            "L": 64, "config": "tiny", "tokens_per_s": tokens_per_s, **extra}
    if mode == "stream":
        info["us_per_token"] = 1e6 / tokens_per_s
    else:
        info["samples_per_s"] = tokens_per_s / 64
    stats = {"mean": 64 * batch / tokens_per_s, "median": 64 * batch / tokens_per_s, "min": 1e-3} if timed else None
    return {"name": name, "fullname": f"conformance/benchmarks/test_bench_modes.py::{name}",
            "group": f"{mode} tiny L=64", "stats": stats, "extra_info": info}


def benchmark_data(here: bool = False) -> dict:
    """A run of another machine (node ci-node), or, with `here`, of the machine running the test."""
    chip = {"quoted_chip_step_us": 31.0, "quoted_source": "paper profiling run (quoted, not measured here)"}
    benches = [_bench("s-ref", "reference", "stream", "default", 1, 75_000.0, **chip),
               _bench("s-rec", "torch-rec", "stream", "default", 1, 16_000.0, **chip),
               _bench("s-untimed", "numpy-fxp", "stream", "default", 1, 1.0, timed=False),
               {"name": "old-style", "fullname": "old-style", "group": None, "stats": {"mean": 1.0},
                "extra_info": {}}]
    benches += [_bench(f"w-conv-{b}", "torch-conv", "whole-sample", "fft", b, t)
                for b, t in ((1, 9_000.0), (8, 15_000.0), (64, 90_000.0))]
    benches += [_bench(f"w-rec-{b}", "torch-rec", "whole-sample", "eager", b, t)
                for b, t in ((1, 5_000.0), (8, 30_000.0))]
    if here:  # other figures, so that a mix-up shows
        for b in benches:
            if b["extra_info"].get("tokens_per_s"):
                b["extra_info"]["tokens_per_s"] *= 2
                b["extra_info"].pop("us_per_token", None)
                if b["extra_info"]["mode"] == "stream":
                    b["extra_info"]["us_per_token"] = 1e6 / b["extra_info"]["tokens_per_s"]
    machine = {"node": "ci-node", "machine": "x86_64", "system": "Linux", "release": "6.1", "python_version": "3.11.7",
               "cpu": {"brand_raw": "Test CPU", "count": 2},
               "s4dconf": {"s4dconf": "0.1.0", "spec_version": "1.0", "numpy": "1.26.4", "scipy": "1.11",
                           "cpu": "Test CPU", "python": "3.11.7", "torch": "2.3.0+cpu", "lava-nc": "not installed",
                           "cuda": "none (CPU build)", "gpus": []}}
    if here:
        machine.update(this_machine())
    return {"machine_info": machine, "commit_info": {}, "benchmarks": benches,
            "datetime": "2026-02-02T00:00:00+00:00" if here else "2026-01-01T00:00:00+00:00", "version": "4.0.0"}


def claims_data() -> list:
    """As `s4dconf claims --json` writes them: figures of both runs, named by file, evidence with the machine."""
    return [{"id": "crossover-batch", "verdict": "reproduced",
             "measured": {
                 "tiny L=64 on cpu (benchmark.json)": {"crossover_batch": 64, "rec_stream_tokens_per_s": 16_000.0,
                                                       "conv_tokens_per_s": {"1": 9e3, "64": 9e4}},
                 "tiny L=64 on cpu (benchmark-here.json)": {"crossover_batch": 8, "rec_stream_tokens_per_s": 32_000.0,
                                                            "conv_tokens_per_s": {"1": 1.8e4, "8": 6e4}}},
             "evidence": ["benchmark.json: w-conv-64 [ci-node (Test CPU)]",
                          f"benchmark-here.json: w-conv-8 [{platform.node()} (Test CPU)]"],
             "note": "first measured batch where whole-sample wins",
             "quoted": "whole-sample processing wins when batched", "source": "paper abstract, claim 2"},
            {"id": "chip-step-time", "verdict": "not measurable here", "evidence": [], "note": "needs a chip",
             "measured": {"context_us_per_token_measured": {"reference:default on cpu": 1e6 / 75_000,
                                                            "torch-rec:default on cpu": 1e6 / 32_000,
                                                            "numpy-fxp:default on cpu": 99.0}},
             "quoted": "about 31 us per time step", "source": "paper, profiling run"},
            {"id": "emulator-vs-lava", "verdict": "reproduced",
             "measured": {"loihi-profile": {"speedup": 127.48, "lava_us_per_step": 3254.5}},
             "evidence": ["benchmark.json: lava-step [ci-node (Test CPU)]"], "note": "worst speedup 127x",
             "quoted": "at least 100x faster", "source": "this project's target"},
            {"id": "streaming-energy", "verdict": "not measurable here", "measured": {}, "evidence": [],
             "note": EVIL, "quoted": "about 1000x less energy per token", "source": "paper abstract, claim 3"}]


RESOURCES = {"markdown": "# Resources\n\n| op | count |\n|---|---|\n| MAC per token | 4242 |\n"}
# a precision sweep (s4dconf sweep): the paper's format and one point per dimension, accuracies made up for layout
SWEEP = {"schema": "s4dconf-sweep/1", "model_file": "m-float.npz", "dataset": "smnist", "split": "test", "n": 100,
         "n_split": 10000, "backend": "numpy-fxp", "float_backend": "reference", "calibration": "test",
         "within_points": 1.0, "mode": "one at a time", "grid": {"weight_bits": [4]}, "evaluation": "one process",
         "base_format": {"weight_bits": 8}, "float_accuracy": 0.98, "seconds": 1.0, "complete": True,
         "points": [{"label": "paper format", "varied": [], "format": {"weight_bits": 8}, "accuracy": 0.97,
                     "n": 100},
                    {"label": "weight_bits=4", "varied": ["weight_bits"], "format": {"weight_bits": 4},
                     "accuracy": 0.5, "n": 100}],
         "smallest_within": {"weight_bits": {"smallest": 8, "accuracy": 0.97}}}
EXPECTED_PNGS = {"errors-relative.png", "errors-snr.png", "bench-latency-benchmark.png",
                 "bench-throughput-benchmark.png", "bench-latency-benchmark-here.png",
                 "bench-throughput-benchmark-here.png", "sweep.png"}


def write_inputs(d: Path) -> dict:
    """The JSON inputs under d, at the names `s4dconf report` looks for by default; "bench": the two runs, the
    other machine's first."""
    files = {"conformance": d / "conformance.json", "accuracy": d / "accuracy" / "accuracy.json",
             "bench": [d / "benchmark.json", d / "benchmark-here.json"], "claims": d / "claims.json"}
    files["accuracy"].parent.mkdir(parents=True, exist_ok=True)
    for path, data in ((files["conformance"], conformance_data()), (files["accuracy"], accuracy_data()),
                       (files["bench"][0], benchmark_data()), (files["bench"][1], benchmark_data(here=True)),
                       (files["claims"], claims_data())):
        path.write_text(json.dumps(data))
    return files


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    f = write_inputs(d / "in")
    html_path, md_path = build_report(d / "out", f["conformance"], f["accuracy"], f["bench"], f["claims"], RESOURCES,
                                      SWEEP)
    return html_path, md_path


def _section(page: str, key: str) -> str:
    return page.split(f'<section id="{key}">')[1].split("</section>")[0]


# ---------------------------------------------------------------------------------------------------------------
# without a browser

class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.check = [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag == "div" and a.get("id") == "img-check":
            self.check = a


def _parse(text: str) -> _Imgs:
    p = _Imgs()
    p.feed(text)
    return p


def test_every_image_exists_as_png_with_alt_text(report):
    html_path, md_path = report
    imgs = _parse(html_path.read_text()).imgs
    srcs = [i["src"] for i in imgs]
    assert {Path(s).name for s in srcs} == EXPECTED_PNGS and all(s.startswith("img/") for s in srcs)
    assert {p.name for p in (html_path.parent / "img").glob("*.png")} == EXPECTED_PNGS
    for i in imgs:
        assert (html_path.parent / i["src"]).read_bytes()[:8] == PNG_MAGIC, i["src"]
        assert len(i.get("alt") or "") > 20, i
    md_srcs = re.findall(r"!\[[^\]]+\]\((img/[^)]+\.png)\)", md_path.read_text())
    assert sorted(md_srcs) == sorted(srcs)


def test_sections_and_content(report):
    html_path, md_path = report
    page, md = html_path.read_text(), md_path.read_text()
    for key, title in SECTIONS.items():
        assert f'<section id="{key}">\n<h2>{html.escape(title)}</h2>' in page
        assert f"## {title}\n" in md
    assert "not run" not in page and "not run" not in md
    assert "ci-node" in page and "Test CPU" in page and "2.3.0+cpu" in page and "3.11.7" in page
    assert "MAC per token" in page and "4242" in md  # resources Markdown, rendered as a table in the HTML
    assert "<td>MAC per token</td>" in page
    assert "97.50 %" in page and "97.50 %" in md  # accuracy, via training.accuracy.table_markdown
    assert '<div class="quoted">' in page and "sCIFAR float 86.5 %" in page
    assert "whole-sample processing wins when batched (paper abstract, claim 2)" in page
    assert "Loihi 2 chip step time 31 us" in page
    assert "from batch 64" in page and "from batch 64" in md  # the crossover of each run
    assert page.count("from batch 64") == 2  # one sentence per run
    assert "14 timed benchmarks in 2 runs" in page
    # self-contained: no external resources, all text escaped
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script>alert(1)" not in page and html.escape(EVIL, quote=False) in page


def test_the_summary_comes_first_and_answers(report):
    page, md = report[0].read_text(), report[1].read_text()
    body = page.split("<body>", 1)[1]
    assert body.index('<section id="summary">') < min(body.index(f'<section id="{k}">') for k in SECTIONS
                                                      if k != "summary")
    assert body.index('<section id="summary">') < body.index("<nav>")
    assert md.index("## Summary") < md.index("## Conformance matrix")
    summary = _section(page, "summary")
    assert "torch-rec (8 checks), reference (2 checks)" in summary
    assert "numpy-fxp: 1 of 5 checks fail (families: long)" in summary
    assert "lava-float, lava-fxp: lava-nc is not installed (<code>tox -e lava</code>)" in summary
    assert "2 reproduced: crossover-batch, emulator-vs-lava" in summary
    assert "2 not measurable here: chip-step-time, streaming-energy" in summary and "0 contradicted" in summary
    assert "sdigits: float 97.50 % (reference; 360 test samples)" in summary
    assert "here (" in summary and "<code>benchmark-here.json</code>" in summary
    assert "<code>benchmark.json</code> (ci-node (Test CPU, Linux 6.1), run of 2026-01-01)" in summary


def test_a_run_that_failed_outside_its_records_is_not_summarised_as_passing(tmp_path):
    data = conformance_data()
    data["records"] = [r for r in data["records"] if r["verdict"] == "pass"]  # exitstatus stays 1
    summary = _section(build_report(tmp_path, conformance_json=data)[0].read_text(), "summary")
    failing = summary.split("<td>Failing</td>")[1].split("</tr>")[0]
    assert 'class="fail"' in failing and "pytest exited with status 1" in failing
    assert "lava-float, lava-fxp: lava-nc is not installed" in summary
    assert "(not in this run; " in summary  # registered backends the run did not name: asked here, and said so


def test_other_machines_are_labelled_and_here_is_only_this_machine(report):
    page = report[0].read_text()
    bench = _section(page, "benchmarks")
    here_at, other_at = bench.index("<h3>Here (this machine"), bench.index("<h3>Another machine: ci-node")
    assert here_at < other_at  # this machine's run first
    here_part, other_part = bench[here_at:other_at], bench[other_at:]
    assert "bench-latency-benchmark-here.png" in here_part and "bench-latency-benchmark.png" not in here_part
    assert "bench-throughput-benchmark.png" in other_part and "-here.png" not in other_part
    assert other_part.count("ci-node (Test CPU, Linux 6.1), run of 2026-01-01") >= 4  # plots, captions, numbers
    # the claims: each figure names its run; "here" only for this machine's
    claims = _section(page, "claims")
    rows = re.findall(r"<tr><td>tiny L=64 on cpu</td><td>([^<]*)</td><td>(\d+)</td>", claims)
    assert sorted(rows) == [("ci-node (Test CPU, Linux 6.1), run of 2026-01-01", "64"), ("here", "8")]
    chip = claims.split("chip-step-time: ")[1].split("</table>")[0]  # figures the claim does not attribute
    assert "<td>reference:default on cpu</td><td>13.33</td><td>ci-node (Test CPU, Linux 6.1), run of 2026-01-01 " \
           "(found by its value)</td>" in chip
    assert "<td>torch-rec:default on cpu</td><td>31.25</td><td>here (found by its value)</td>" in chip
    assert "<td>numpy-fxp:default on cpu</td><td>99</td><td>not recorded (the claim names no run)</td>" in chip
    lava = claims.split("emulator-vs-lava: ")[1]
    assert "<td>ci-node (Test CPU, Linux 6.1), run of 2026-01-01</td>" in lava.split("</table>")[0]
    assert "measured (here)" not in page
    machines = _section(page, "machine")  # the column headed "here" is this machine's
    header = re.findall(r"<th>([^<]*)</th>", machines)
    node = re.search(r"<tr><td>node</td>(.*?)</tr>", machines)[1]
    nodes = dict(zip(header[1:], re.findall(r"<td>([^<]*)</td>", node)))
    assert nodes["here: benchmark-here.json"] == platform.node() and nodes["another machine: benchmark.json"] == \
        "ci-node"


def test_claims_show_figures_and_collapse_the_evidence(report):
    claims = _section(report[0].read_text(), "claims")
    assert "<th>measured</th><th>measured on</th><th>crossover batch</th>" in claims
    assert "<td>1: 9,000; 64: 90,000</td>" in claims  # figures, not JSON
    assert '{"' not in claims and "...</td>" not in claims
    details = re.findall(r"<details><summary>(.*?)</summary>(.*?)</details>", claims, re.S)
    assert [d[0] for d in details] == ["Evidence (2 measurements)", "Evidence (1 measurement)"]
    assert "w-conv-64 (ci-node (Test CPU, Linux 6.1), run of 2026-01-01: <code>benchmark.json</code>)" in details[0][1]
    assert "w-conv-8 (here: <code>benchmark-here.json</code>)" in details[0][1]


def test_diagnostics_go_to_the_log(report):
    html_path, md_path = report
    log = (html_path.parent / "report.log").read_text()
    assert "left out (no backend, mode or positive batch in extra_info): benchmark.json: old-style" in log
    assert "benchmark-here.json -> here" in log and "benchmark.json -> ci-node" in log
    for text in (html_path.read_text(), md_path.read_text()):
        assert "old-style" not in text and "Left out" not in text and "left out" not in text


def test_conformance_matrix_worst_values(report):
    backends, families, cells = summarize_conformance(conformance_data()["records"])
    assert backends == ["torch-rec:eager", "reference:default", "numpy-fxp:default"]
    assert families == ["impulse", "long"]
    assert cells[("torch-rec:eager", "impulse")].worst["rel_l2"]["value"] == 3e-5  # upper bound: max
    assert cells[("numpy-fxp:default", "impulse")].worst["snr_db"]["value"] == 27.0  # lower bound: min (inf is best)
    long = cells[("numpy-fxp:default", "long")]
    assert long.worst["snr_db"]["value"] == 6.5 and long.overall_verdict == "fail" and long.counts["fail"] == 1
    assert long.saturated == 1 and long.saturated_cases == {"tiny/long"}
    page = report[0].read_text()
    matrix = page.split('<table class="matrix">')[1].split("</table>")[0]  # families as rows, backends as columns
    assert "FAIL 1/2 (1 fail)<br>snr_db 6.5 dB (≥ 8.0 dB)<br>1 saturated" in matrix
    assert "PASS 4/4<br>rel_l2 3e-05 (≤ 0.0003)" in matrix and "FAIL 4/5 (1 fail)" in matrix
    assert re.findall(r"<th>(.*?)</th>", matrix) == ["case family", "torch-rec<br>eager", "reference<br>default",
                                                     "numpy-fxp<br>default"]
    assert [r.split("</td>")[0] for r in re.findall(r"<tr><td>(.*?)</tr>", matrix)] == ["impulse", "long",
                                                                                       "all families"]
    every = page.split("The worst value of every metric")[1].split("</details>")[0]  # every metric, collapsed
    assert "<tr><td>impulse</td><td>torch-rec:eager</td><td>max_abs_rel</td><td>2e-06</td><td>≤ 0.0003</td>" in every
    assert '<td>long</td><td>numpy-fxp:default</td><td>snr_db</td><td>6.5 dB</td><td>≥ 8.0 dB</td><td class="fail">' \
           in every


def test_the_worst_value_is_the_largest_for_upper_and_the_smallest_for_lower_bounds():
    recs = [_rec("b", "f", "rel_l2", 1e-3, 1e-2), _rec("b", "f", "rel_l2", 2e-3, 1.0),  # larger, though far in bound
            _rec("b", "f", "argmax", 0.9, 0.8), _rec("b", "f", "argmax", 0.95, 0.99, verdict="fail"),
            _rec("b", "f", "snr_db", "inf", 10.0), _rec("b", "f", "snr_db", "nan", 10.0, verdict="fail"),
            _rec("b", "f", "max_abs_int_diff", 0, 0), _rec("b", "f", "max_abs_int_diff", 2, 0, verdict="fail")]
    [cell] = summarize_conformance(recs)[2].values()
    assert cell.worst["rel_l2"]["value"] == 2e-3 and cell.worst["argmax"]["value"] == 0.9
    assert math.isnan(cell.worst["snr_db"]["value"])  # NaN is worse than any number
    assert cell.worst["max_abs_int_diff"]["value"] == 2
    assert cell.metrics() == ["rel_l2", "snr_db", "argmax", "max_abs_int_diff"]


def test_check_prints_the_same_summary():
    rows = check_matrix_rows(conformance_data()["records"])
    assert rows[0][0] == "backend:path" and [r[:2] for r in rows[1:]] == sorted(r[:2] for r in rows[1:])
    by = {r[:2]: r for r in rows[1:]}
    assert by[("numpy-fxp:default", "impulse")][5:] == ("snr_db 27", "15", "PASS")  # "inf" is the best SNR
    assert by[("numpy-fxp:default", "long")][2:] == (1, 1, 1, "snr_db 6.5", "8", "FAIL")
    assert by[("torch-rec:eager", "long")][5:] == ("rel_l2 3e-05", "0.0003", "PASS")
    text = text_table(rows).splitlines()
    assert text[0].split() == ["backend:path", "family", "cases", "failed", "checks", "saturated", "cases", "worst",
                               "tolerance", "verdict"] and set(text[1]) == {"-", " "}


def test_crossovers_come_from_the_claims():
    rows = [{**b["extra_info"], "file": "benchmark.json", "name": b["name"], "node": "n"}
            for b in benchmark_data()["benchmarks"] if b["extra_info"]]
    [c] = benchmark_crossovers(rows)
    assert c["batch"] == 64 and c["stream_tokens_per_s"] == 16_000.0 and c["batches"] == [1, 8, 64]
    assert c["where"] == "cpu" and c["conv_tokens_per_s"] == 90_000.0
    slow = [r for r in rows if not (r["backend"] == "torch-conv" and r["batch"] == 64)]
    assert benchmark_crossovers(slow)[0]["batch"] is None
    assert benchmark_crossovers([r for r in rows if r["backend"] != "torch-conv"]) == []


def test_numbers_and_tables():
    for x in (1.5, 0, None, math.inf, -math.inf):
        assert decode_number(json.loads(json.dumps(encode_number(x)))) == x
    assert math.isnan(decode_number(encode_number(math.nan)))
    for bad in ("0.5", "Infinity", True, [1]):
        with pytest.raises(ValueError, match="not a number"):
            decode_number(bad)
    assert markdown_table(["a", "b"], [["x|y", "1\n2"], [None, 3]]) == \
        "| a | b |\n|---|---|\n| x\\|y | 1<br>2 |\n| - | 3 |"
    assert text_table([("a", "bb"), ("ccc", None)]) == "a    bb\n---  --\nccc  -"


def test_no_inputs_says_not_run_with_commands(tmp_path):
    html_path, md_path = build_report(tmp_path)
    page, md = html_path.read_text(), md_path.read_text()
    assert "<img" not in page and not list((tmp_path / "img").glob("*.png"))
    assert _parse(page).imgs == []
    commands = [c for cmds in COMMANDS.values() for c in cmds]
    assert all(f"<code>{c}</code>" in html.unescape(page) for c in commands)  # quotes escaped as &#39;
    assert all(f"`{c}`" in md for c in commands)
    assert md.count("**not run**") >= len(SECTIONS) - 1
    for key in SECTIONS:  # every section, on its own, says "not run"
        section = page.split(f'<section id="{key}">')[1].split("</section>")[0]
        assert ("not run" if key == "summary" else "<strong>not run</strong>") in section, key


def test_missing_file_is_not_run_and_bad_file_raises(tmp_path):
    page = build_report(tmp_path / "a", conformance_json=tmp_path / "nope.json")[0].read_text()
    assert "nope.json does not exist" in page
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"records": [{"backend": "x"}]}))
    with pytest.raises(S4DInputError, match="lacks"):
        build_report(tmp_path / "b", conformance_json=bad)
    bad.write_text("{not json")
    with pytest.raises(S4DInputError, match="bad.json"):
        build_report(tmp_path / "c", claims_json=bad)
    bad.write_text(json.dumps({"records": [_rec("b", "f", "rel_l2", "0.5", 1.0)]}))  # a number as a string
    with pytest.raises(S4DInputError, match="not a number"):
        build_report(tmp_path / "d", conformance_json=bad)
    bad.write_text(json.dumps({"benchmarks": []}))  # read by compare.load_run, the one pytest-benchmark reader
    with pytest.raises(S4DInputError, match="not a pytest-benchmark file"):
        build_report(tmp_path / "e", benchmark_jsons=[bad])


def test_parsed_inputs_give_the_same_page(tmp_path):
    page = build_report(tmp_path, conformance_data(), accuracy_data(), [benchmark_data(), benchmark_data(here=True)],
                        claims_data(), RESOURCES, SWEEP)[0].read_text()
    assert "not run" not in page and "from batch 64" in page and "(in memory, run 1)" in page
    assert {p.name for p in (tmp_path / "img").glob("*.png")} == {
        "errors-relative.png", "errors-snr.png", "bench-latency-in-memory-run-1.png",
        "bench-throughput-in-memory-run-1.png", "bench-latency-in-memory-run-2.png",
        "bench-throughput-in-memory-run-2.png", "sweep.png"}


def test_markdown_to_html_escapes_and_converts():
    out = markdown_to_html("# T <x>\n\ntext `a|b` & more\nnext <b>line</b>\n\n| a | b |\n|---|---|\n"
                           "| 1 \\| 2 | <i> |\n\n- one\n- two\n\n<div>raw</div>", shift=2)
    assert "<h3>T &lt;x&gt;</h3>" in out and "<code>a|b</code> &amp; more<br>" in out
    assert "next &lt;b&gt;line&lt;/b&gt;" in out and "<p>&lt;div&gt;raw&lt;/div&gt;</p>" in out
    assert re.search(r"<td>1 \| 2</td>\s*<td>&lt;i&gt;</td>", out)
    assert re.search(r"<ul>\s*<li>one</li>\s*<li>two</li>\s*</ul>", out)


def test_cli_finds_default_inputs(tmp_path, capsys):
    write_inputs(tmp_path)
    (tmp_path / "resources.md").write_text(RESOURCES["markdown"])
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps(SWEEP))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--out", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'report.html'}" in out
    page = (tmp_path / "report.html").read_text()
    assert "not run" not in page and "4242" in page
    assert {p.name for p in (tmp_path / "img").glob("*.png")} == EXPECTED_PNGS
    with pytest.raises(S4DInputError, match="no such file"):
        args.func(parser.parse_args(["report", "--out", str(tmp_path), "--bench", str(tmp_path / "nope.json")]))


# ---------------------------------------------------------------------------------------------------------------
# in headless Chromium

def _chromium() -> str | None:
    found = shutil.which("chromium")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)


def dump_dom(html_path: Path, tmp: Path, window: str = "1400,900") -> str:
    """The DOM of the page after onload, in headless Chromium with a window of that size."""
    exe = _chromium()
    if exe is None:
        pytest.skip("Chromium not installed (/usr/bin/chromium or `chromium` on PATH; Debian package `chromium`)")
    profile = tmp / "chromium-profile"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--window-size={window}", "--hide-scrollbars", "--virtual-time-budget=5000",
           "--dump-dom", html_path.resolve().as_uri()]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=90)
    assert r.stdout, f"no DOM dumped (exit {r.returncode}): {r.stderr[-2000:]}"
    return r.stdout


def browser_img_check(html_path: Path, tmp: Path) -> dict:
    """Load the page in headless Chromium; the attributes of the img-check div its script wrote after onload."""
    check = _parse(dump_dom(html_path, tmp)).check
    assert check is not None, "no img-check div in the dumped DOM"
    return check


# After onload: the summary's top (before anything moves), then, with every <details> open, each table that is
# wider than its container or runs past the page's right edge, and whether the page itself scrolls sideways.
LAYOUT_CHECK = """<script>
window.addEventListener("load", function () {
  var summary = document.getElementById("summary");
  var top = summary ? summary.getBoundingClientRect().top : -1;
  Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  var tables = Array.prototype.slice.call(document.querySelectorAll("table"));
  var over = tables.filter(function (t) {
    var c = t.parentElement;
    return t.scrollWidth > c.clientWidth + 1 || t.getBoundingClientRect().right > c.getBoundingClientRect().right + 1;
  }).map(function (t) {
    var s = t.closest("section");
    var h = t.querySelector("th, td");
    return (s ? s.id : "?") + ":" + (h ? h.textContent.trim().slice(0, 40) : "");
  });
  var d = document.createElement("div");
  d.id = "layout-check"; d.hidden = true;
  d.setAttribute("data-tables", String(tables.length));
  d.setAttribute("data-overflow", over.join(" | "));
  d.setAttribute("data-page-width", String(document.documentElement.scrollWidth));
  d.setAttribute("data-window-width", String(window.innerWidth));
  d.setAttribute("data-summary-top", String(top));
  document.body.appendChild(d);
});
</script>"""


def browser_layout_check(html_path: Path, tmp: Path) -> dict:
    """A copy of the report (beside its img/) with LAYOUT_CHECK injected, loaded at a 1400 x 900 window: the
    attributes of the layout-check div."""
    copy = tmp / "layout"
    shutil.copytree(html_path.parent, copy)
    page = (copy / "report.html").read_text()
    (copy / "report.html").write_text(page.replace("</body>", LAYOUT_CHECK + "\n</body>"))
    found = {}

    class _Div(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "div" and dict(attrs).get("id") == "layout-check":
                found.update(dict(attrs))

    _Div().feed(dump_dom(copy / "report.html", tmp, "1400,900"))
    assert found, "no layout-check div in the dumped DOM"
    return found


def wide_conformance_data() -> dict:
    """Nine backends and seven families, with long names and every metric: a matrix that must still fit."""
    d = conformance_data()
    names = ["reference:conv", "reference:recurrent", "numpy-fxp:integer", "torch-rec:eager", "torch-rec:cuda-graph",
             "torch-conv:fft", "torch-rec-f64:eager", "torch-conv-f64:fft", "lava-float:simulator-default"]
    for b in names:
        for f in ("impulse", "step", "noise-long-name", "long", "paper-size", "saturation-edge", "streaming"):
            d["records"] += [_rec(b, f, "rel_l2", 1.234e-7, 3e-4), _rec(b, f, "max_abs_rel", 2.5e-6, 3e-4),
                             _rec(b, f, "argmax", 1.0, 1.0), _rec(b, f, "snr_db", 61.25, 40.0)]
    return d


def test_browser_no_table_overflows_and_the_summary_is_above_the_fold(tmp_path):
    f = write_inputs(tmp_path / "in")
    f["conformance"].write_text(json.dumps(wide_conformance_data()))
    html_path = build_report(tmp_path / "out", f["conformance"], f["accuracy"], f["bench"], f["claims"],
                             RESOURCES)[0]
    check = browser_layout_check(html_path, tmp_path)
    assert int(check["data-window-width"]) == 1400, check
    assert int(check["data-tables"]) >= 8, check  # summary, matrix, backends, accuracy, numbers, claims, machines
    assert check["data-overflow"] == "", f"tables wider than their container at 1400 px: {check['data-overflow']}"
    assert int(check["data-page-width"]) <= 1400, check
    assert 0 <= float(check["data-summary-top"]) < 900, check


def test_browser_loads_every_image(report, tmp_path):
    html_path = report[0]
    check = browser_img_check(html_path, tmp_path)
    n_png = len(list((html_path.parent / "img").glob("*.png")))
    assert int(check["data-total"]) == n_png == len(EXPECTED_PNGS)
    assert int(check["data-loaded"]) == n_png, f"broken: {check['data-broken']}"
    assert check["data-broken"] == ""


def test_browser_detects_a_broken_image(report, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(report[0].parent, copy)
    (copy / "img" / "errors-snr.png").unlink()
    check = browser_img_check(copy / "report.html", tmp_path)
    assert int(check["data-total"]) == len(EXPECTED_PNGS)
    assert int(check["data-loaded"]) == len(EXPECTED_PNGS) - 1
    assert check["data-broken"] == "img/errors-snr.png"
