"""The report's time-to-decision table and plot (reports/sections_perf.py, plots.py; SPEC.md 20), built from a small
synthetic benchmark run: the crossover in the table is the one derived here by hand from the time-to-decision
formula, the mode that answers sooner at each listed rate follows it, the plot is a PNG with the quoted chip step
named in its caption, and a run without audited figures says so instead of plotting."""
from __future__ import annotations

import copy
import json
import re

from s4dconf.reports.claims import CLAIMS_FILE
from s4dconf.reports.report import build_report

try:
    import tomllib
except ImportError:  # Python 3.10 (the Lava env)
    import tomli as tomllib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
L = 64
AUDIT = {"output_sha256": "a" * 64, "replay_sha256": "a" * 64, "hash_match": True, "passed": True,
         "anti_caching": {"fixed_over_varied": 1.0, "passed": True}}
# the reference: step p99 100 us, whole-sample 3.25 ms = 100 us + 63 x 50 us (chosen so the crossover is round)
REF_STEP, REF_WHOLE = 100e-6, 100e-6 + (L - 1) * 50e-6
# torch-rec streaming against torch-conv: whole-sample (1 ms) slower than L steps (640 us): streaming always sooner
REC_STEP, CONV_WHOLE = 10e-6, 1e-3


def _bench(name, backend, mode, path, seconds, **extra):
    """A timed, audited benchmark of config tiny, L = 64, batch 1; `seconds`: its p99 (stream) or p50 (whole)."""
    info = {"backend": backend, "mode": mode, "path": path, "device": "cpu", "dtype": "float64", "batch": 1, "L": L,
            "config": "tiny", "audit": AUDIT, "latency_s": {"p50": seconds, "p90": seconds, "p99": seconds,
                                                            "max": seconds}, **extra}
    if mode == "stream":
        info.update(us_per_token=seconds * 1e6, tokens_per_s=1 / seconds)
    else:
        info.update(us_per_sample=seconds * 1e6, tokens_per_s=L / seconds, samples_per_s=1 / seconds)
    return {"name": name, "fullname": f"conformance/benchmarks/test_bench_modes.py::{name}", "group": mode,
            "stats": {"mean": seconds, "median": seconds, "min": seconds}, "extra_info": info}


def run_data(audited: bool = True) -> dict:
    benches = [_bench("s-ref", "reference", "stream", "default", REF_STEP, quoted_chip_step_us=31.0),
               _bench("w-ref", "reference", "whole-sample", "conv", REF_WHOLE),
               _bench("s-rec", "torch-rec", "stream", "default", REC_STEP),
               _bench("w-conv", "torch-conv", "whole-sample", "fft", CONV_WHOLE)]
    if not audited:
        benches = copy.deepcopy(benches)
        for b in benches:
            del b["extra_info"]["audit"]
    machine = {"node": "ci-node", "machine": "x86_64", "system": "Linux", "release": "6.1",
               "s4dconf": {"cpu": "Test CPU"}}
    return {"machine_info": machine, "commit_info": {}, "benchmarks": benches,
            "datetime": "2026-01-01T00:00:00+00:00", "version": "4.0.0"}


def _benchmarks_section(tmp_path, data) -> str:
    f = tmp_path / "benchmark.json"
    f.write_text(json.dumps(data))
    page = build_report(tmp_path / "out", benchmark_jsons=[f])[0].read_text()
    return page.split('<section id="benchmarks">')[1].split("</section>")[0]


def _decision_rows(section: str) -> dict:
    """The time-to-decision table: {streaming backend: [cell texts]} (line breaks as "|")."""
    table = next(t for t in re.findall(r"<table.*?</table>", section, re.S) if "crossover (tokens/s)" in t)
    rows = {}
    for tr in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]:
        cells = [c.replace("<br>", "|") for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
        rows[cells[2].split("|")[0]] = cells
    return rows


def test_the_table_gives_the_crossover_derived_by_hand(tmp_path):
    section = _benchmarks_section(tmp_path, run_data())
    rows = _decision_rows(section)
    ref, rec = rows["reference"], rows["torch-rec"]
    # Falling behind (step > T), streaming answers step + (L - 1)(step - T) after the last token; it equals the
    # whole-sample time W at T = step - (W - step) / (L - 1) = 100 us - 3150 us / 63 = 50 us: 20,000 tokens/s.
    T = REF_STEP - (REF_WHOLE - REF_STEP) / (L - 1)
    assert abs(T - 50e-6) < 1e-12
    assert ref[5] == "20,000"
    # streaming keeps up while step <= T: up to 1 / 100 us = 10,000 tokens/s; whole-sample up to L / W
    assert ref[4] == f"streaming 10,000|whole-sample {L / REF_WHOLE:,.0f}"
    # at 100, 1,000 and 10,000 tokens/s streaming answers one step after the last token; at 100,000 (T = 10 us)
    # it is 100 + 63 x 90 us = 5.77 ms behind, whole-sample 3.25 ms (and it cannot keep up either: L T = 640 us)
    assert ref[6:] == ["streaming|100 us"] * 3 + ["whole-sample|3.25 ms, falls behind"]
    # whole-sample (1 ms) is slower than L steps (64 x 10 us): no crossover, streaming sooner at every rate
    assert rec[3] == "torch-conv:fft|1 ms" and rec[5] == "none: streaming sooner at every rate"
    assert rec[6:8] == ["streaming|10 us"] * 2 and rec[-1].startswith("streaming|")


def test_the_plot_is_drawn_per_run_with_the_quoted_chip_step(tmp_path):
    section = _benchmarks_section(tmp_path, run_data())
    png = tmp_path / "out" / "img" / "bench-decision-benchmark.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    img = re.search(r'<img src="img/bench-decision-benchmark.png" alt="([^"]*)"', section)
    source = next(c["source"] for c in tomllib.loads(CLAIMS_FILE.read_text())["claim"]
                  if c["check"] == "chip_step_time")
    assert img and "ci-node" in img[1] and "quoted, not measured" in img[1]
    caption = section.split("bench-decision-benchmark.png", 1)[1].split("</figure>")[0]
    assert source in caption and "ci-node" in caption


def test_a_run_without_audited_figures_says_so_instead_of_plotting(tmp_path):
    section = _benchmarks_section(tmp_path, run_data(audited=False))
    assert "Time to decision: not shown for this run, none of its 4 timed benchmarks carries a passed audit " \
           "record" in section
    assert "crossover (tokens/s)" not in section
    assert not (tmp_path / "out" / "img" / "bench-decision-benchmark.png").exists()
