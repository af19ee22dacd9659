"""`s4dconf bench compare` (reports/compare.py): ratios and verdicts of two pytest-benchmark JSON files, machine
identity, bad files, CLI exit codes, and one end-to-end run of pytest-benchmark twice."""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from s4dconf.reference.validate import S4DInputError
from s4dconf.reports.compare import (
    FORCED_NOTE,
    BenchRun,
    compare,
    load_run,
    machine_differences,
    machine_key,
    register,
    verdict,
)

MACHINE = {"node": "ci-1", "processor": "x86_64", "machine": "x86_64", "release": "6.1.0", "system": "Linux",
           "python_version": "3.11.7", "cpu": {"brand_raw": "Intel(R) Xeon(R) Processor", "count": 2}}


def bench(fullname, median=None, mean=None, mn=None, stats_key=True, **extra):
    """One pytest-benchmark entry; median None: not timed (stats None, or absent when stats_key is False)."""
    b = {"group": None, "name": fullname.split("::")[-1], "fullname": fullname, "params": None, "param": None,
         "extra_info": extra, "options": {"timer": "perf_counter"}}
    if median is not None:
        b["stats"] = {"min": mn if mn is not None else 0.9 * median, "max": 2 * median,
                      "mean": mean if mean is not None else median, "median": median, "stddev": 0.1 * median,
                      "rounds": 5, "iterations": 1}
    elif stats_key:
        b["stats"] = None
    return b


def write_run(path, benches, machine=MACHINE, **drop):
    doc = {"machine_info": machine, "commit_info": {"id": "abc123", "dirty": False}, "benchmarks": benches,
           "datetime": "2026-01-01T00:00:00+00:00", "version": "5.2.3"}
    for k in drop:
        doc.pop(k)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def runs(tmp_path):
    a = [bench("t.py::test_fast", 1e-3, backend="reference", mode="stream", batch=1, L=784, threads=1),
         bench("t.py::test_slow", 4e-3, mean=5e-3, mn=3e-3),
         bench("t.py::test_same", 2e-3),
         bench("t.py::test_gone", 1e-3),
         bench("t.py::test_untimed", None)]
    b = [bench("t.py::test_fast", 3e-3, backend="reference", mode="stream", batch=1, L=784, threads=1),
         bench("t.py::test_slow", 1e-3, mean=6e-3, mn=2.9e-3),
         bench("t.py::test_same", 2.2e-3),
         bench("t.py::test_new", 1e-3),
         bench("t.py::test_untimed", None, stats_key=False)]
    return load_run(write_run(tmp_path / "a.json", a)), load_run(write_run(tmp_path / "b.json", b))


def rows_by_name(c):
    return {r.fullname.split("::")[-1]: r for r in c.rows}


def test_ratios_and_verdicts(runs):
    c = compare(*runs)
    rows = rows_by_name(c)
    assert rows["test_fast"].ratio == pytest.approx(3e-3 / 1e-3) and rows["test_fast"].verdict == "regression"
    assert rows["test_slow"].ratio == pytest.approx(1e-3 / 4e-3) and rows["test_slow"].verdict == "improvement"
    assert rows["test_same"].ratio == pytest.approx(2.2e-3 / 2e-3) and rows["test_same"].verdict == "same"
    assert rows["test_gone"].verdict == "only in A" and rows["test_gone"].ratio is None
    assert rows["test_new"].verdict == "only in B" and rows["test_new"].a is None
    assert rows["test_untimed"].verdict == "not timed" and rows["test_untimed"].ratio is None
    assert rows["test_fast"].info == {"backend": "reference", "mode": "stream", "batch": 1, "L": 784}
    assert not c.forced and c.counts() == {"regression": 1, "improvement": 1, "same": 1, "only in A": 1,
                                           "only in B": 1, "not timed": 1}


def test_stat_choice(runs):
    slow = {s: rows_by_name(compare(*runs, stat=s))["test_slow"] for s in ("mean", "min")}
    assert slow["mean"].ratio == pytest.approx(6e-3 / 5e-3) and slow["mean"].verdict == "same"
    assert slow["min"].ratio == pytest.approx(2.9e-3 / 3e-3) and slow["min"].verdict == "same"
    with pytest.raises(S4DInputError, match="stat must be one of"):
        compare(*runs, stat="p75")
    for bad in (0, -0.1, float("inf"), float("nan")):
        with pytest.raises(S4DInputError, match="threshold"):
            compare(*runs, threshold=bad)


@pytest.mark.parametrize("t", [0.25, 1.0, 0.1])
def test_threshold_edges(t):
    hi, lo = 1.0 + t, 1.0 / (1.0 + t)
    assert verdict(hi, t) == "same" and verdict(hi * (1 + 1e-9), t) == "regression"
    assert verdict(lo, t) == "same" and verdict(lo * (1 - 1e-9), t) == "improvement"
    assert verdict(1.0, t) == "same"


def test_threshold_edge_from_files(tmp_path):
    a = load_run(write_run(tmp_path / "a.json", [bench("t::x", 1.0), bench("t::y", 1.25)]))
    b = load_run(write_run(tmp_path / "b.json", [bench("t::x", 1.25), bench("t::y", 1.0)]))
    rows = rows_by_name(compare(a, b, threshold=0.25))
    assert rows["x"].ratio == 1.25 and rows["x"].verdict == "same"  # exactly 1 + t: not a regression
    assert rows["y"].ratio == 0.8 and rows["y"].verdict == "same"  # exactly 1 / (1 + t): not an improvement
    rows = rows_by_name(compare(a, b, threshold=0.2))
    assert rows["x"].verdict == "regression" and rows["y"].verdict == "improvement"


def test_machine_key_and_differences():
    key = machine_key(MACHINE)
    assert key == {"node": "ci-1", "machine": "x86_64", "processor": "x86_64", "system": "Linux",
                   "release": "6.1.0", "cpu.brand_raw": "Intel(R) Xeon(R) Processor"}
    no_cpu = {k: v for k, v in MACHINE.items() if k != "cpu"}
    assert machine_key(no_cpu)["cpu.brand_raw"] is None
    assert machine_differences(no_cpu, dict(no_cpu)) == []
    gpu = dict(MACHINE, gpus=["NVIDIA H200"], cuda="12.4")
    assert machine_key(gpu)["gpus"] == ["NVIDIA H200"] and machine_differences(gpu, copy.deepcopy(gpu)) == []
    assert [d.split(":")[0] for d in machine_differences(gpu, dict(gpu, cuda="12.1"))] == ["cuda"]
    assert machine_differences(MACHINE, gpu) == ["gpus: not recorded in A, ['NVIDIA H200'] in B",
                                                 "cuda: not recorded in A, '12.4' in B"]
    nested = dict(MACHINE, s4dconf={"numpy": "2.0", "gpus": ["A100"]})
    assert machine_key(nested)["gpus"] == ["A100"]


def test_different_machines_refused_then_forced(tmp_path):
    other = dict(MACHINE, node="ci-2", cpu={"brand_raw": "AMD EPYC"})
    a = load_run(write_run(tmp_path / "a.json", [bench("t::x", 1.0)]))
    b = load_run(write_run(tmp_path / "b.json", [bench("t::x", 1.1)], machine=other))
    with pytest.raises(S4DInputError, match="different machines") as e:
        compare(a, b)
    assert "node: 'ci-1' in A, 'ci-2' in B" in str(e.value) and "cpu.brand_raw" in str(e.value)
    assert "release" not in str(e.value) and "They share 1 benchmark (A = " in str(e.value)
    assert "add --force to compare anyway" in str(e.value) and "force=True" not in str(e.value)
    c = compare(a, b, force=True)
    assert c.forced and len(c.machine_differences) == 2 and FORCED_NOTE in c.to_text()
    assert json.loads(c.to_json())["note"] == FORCED_NOTE


def test_report_text_and_json(runs):
    c = compare(*runs)
    text = c.to_text()
    for word in ("test_fast", "regression", "improvement", "only in A", "only in B", "not timed", "3.000", "1 ms",
                 "3 ms", "regression > 1.25, improvement < 0.8"):
        assert word in text, word
    assert "FORCED" not in text and "same file" not in text
    doc = json.loads(c.to_json())
    assert {r["fullname"]: r["info"] for r in doc["rows"]}["t.py::test_fast"]["backend"] == "reference"
    assert doc["stat"] == "median" and doc["threshold"] == 0.25 and not doc["forced"]
    assert {r["fullname"]: r["verdict"] for r in doc["rows"]}["t.py::test_fast"] == "regression"
    assert c.exit_code(True) == 1 and c.exit_code(False) == 0
    assert compare(*runs, threshold=5.0).exit_code(True) == 0


@pytest.mark.parametrize("content, match", [
    (None, "does not exist"),
    ("", "is empty"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must be a JSON object, got list"),
    ("machine_info", "missing key"),
    ("benchmarks", "missing key"),
    ("no-benchmarks", "has no benchmarks"),
    ("no-fullname", "missing key 'fullname'"),
    ("bad-median", "median=0"),
])
def test_bad_files(tmp_path, content, match):
    p = tmp_path / "run.json"
    if content in ("machine_info", "benchmarks"):
        write_run(p, [bench("t::x", 1.0)], **{content: True})
    elif content == "no-benchmarks":
        write_run(p, [])
    elif content == "no-fullname":
        write_run(p, [{"name": "x", "stats": None}])
    elif content == "bad-median":
        write_run(p, [bench("t::x", 0.0)])
    elif content is not None:
        p.write_text(content)
    with pytest.raises(S4DInputError, match=match) as e:
        compare(load_run(p), load_run(p))
    if content in ("machine_info", "benchmarks"):
        assert content in str(e.value)


def test_load_run_fields(tmp_path):
    run = load_run(write_run(tmp_path / "a.json", [bench("t::x", 1.0, config="paper")]))
    assert isinstance(run, BenchRun) and run.version == "5.2.3" and run.commit_info["id"] == "abc123"
    assert run.benchmarks["t::x"].stats["median"] == 1.0 and run.benchmarks["t::x"].extra_info == {"config": "paper"}


def test_a_full_run_with_every_rounds_timings_loads(tmp_path, monkeypatch):
    """`tox -e bench` keeps each round's timing in stats.data: 18 MB for the full set here, above the 16 MiB cap of
    other text inputs. A benchmark file has its own cap (BENCH_MAX_BYTES), and a file above it is refused by size."""
    from s4dconf.reference.npzio import TEXT_MAX_BYTES
    from s4dconf.reports import compare as compare_module

    b = bench("t::x", 1.0)
    b["stats"]["data"] = [1.0 + 1e-9 * i for i in range(TEXT_MAX_BYTES // 12 + 1)]  # ~13 bytes per timing
    path = write_run(tmp_path / "full.json", [b])
    assert path.stat().st_size > TEXT_MAX_BYTES
    assert load_run(path).benchmarks["t::x"].stats["median"] == 1.0
    monkeypatch.setattr(compare_module, "BENCH_MAX_BYTES", TEXT_MAX_BYTES)
    with pytest.raises(S4DInputError, match="more than the 16777216 accepted"):
        load_run(path)


@pytest.fixture
def cli_main(monkeypatch):
    """s4dconf.cli.main with `bench` registered as cli.build_parser will (a no-op once it does)."""
    from s4dconf import cli

    original = cli.build_parser

    def build_parser():
        p = original()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        if "bench" not in sub.choices:
            register(sub)
        return p

    monkeypatch.setattr(cli, "build_parser", build_parser)
    return cli.main


def test_register_parses():
    p = argparse.ArgumentParser(prog="s4dconf")
    register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["bench", "compare", "a.json", "b.json", "--threshold", "1.0", "--stat", "min", "--force",
                         "--json", "o.json", "--fail-on-regression"])
    assert (args.command, args.action, args.a, args.b, args.threshold, args.stat) == (
        "bench", "compare", "a.json", "b.json", 1.0, "min")
    assert args.force and args.fail_on_regression and args.json == "o.json" and callable(args.func)
    with pytest.raises(SystemExit):
        p.parse_args(["bench", "compare", "a.json", "b.json", "--stat", "p75"])
    assert p.parse_args(["bench", "compare", "a.json", "b.json", "--stat", "p99"]).stat == "p99"


def test_cli_exit_codes(runs, tmp_path, cli_main, capsys):
    a, b = runs[0].path, runs[1].path
    assert cli_main(["bench", "compare", a, b]) == 0
    assert "regression" in capsys.readouterr().out
    out = tmp_path / "out" / "cmp.json"
    assert cli_main(["bench", "compare", a, b, "--fail-on-regression", "--json", str(out)]) == 1
    assert json.loads(out.read_text())["counts"]["regression"] == 1
    assert cli_main(["bench", "compare", a, b, "--fail-on-regression", "--threshold", "5"]) == 0
    capsys.readouterr()
    assert cli_main(["bench", "compare", a, str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = write_run(tmp_path / "other.json", [bench("t.py::test_fast", 1e-3)], machine=dict(MACHINE, node="x"))
    assert cli_main(["bench", "compare", a, str(other)]) == 2
    err = capsys.readouterr().err
    assert "s4dconf bench: error:" in err and "node" in err and "--force" in err
    assert cli_main(["bench", "compare", a, str(other), "--force"]) == 0
    assert FORCED_NOTE in capsys.readouterr().out


def test_end_to_end_two_pytest_benchmark_runs(tmp_path, cli_main, capsys):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # stops pytest from finding any config above tmp_path
    (tmp_path / "test_b.py").write_text("def test_sum(benchmark):\n    benchmark(sum, range(100))\n\n\n"
                                        "def test_sorted(benchmark):\n    benchmark(sorted, range(100, 0, -1))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    for name in ("a.json", "b.json"):
        cmd = [sys.executable, "-m", "pytest", "test_b.py", "--rootdir", str(tmp_path), "-p", "no:cacheprovider",
               "-q", "--benchmark-json", name, "--benchmark-max-time", "0.05", "--benchmark-min-rounds", "5"]
        proc = subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = load_run(tmp_path / "a.json"), load_run(tmp_path / "b.json")
    assert machine_differences(a.machine_info, b.machine_info) == []
    c = compare(a, b)
    assert sorted(r.fullname for r in c.rows) == ["test_b.py::test_sorted", "test_b.py::test_sum"]
    assert all(r.verdict in ("regression", "improvement", "same") and r.ratio > 0 for r in c.rows)
    assert c.exit_code(False) == 0
    assert cli_main(["bench", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "in common: 2 benchmarks" in out and re.search(r"^test_sum +\S+ \w?s +\S+ \w?s +\d\.\d{3} ", out, re.M)


@pytest.mark.parametrize("change, match", [
    (dict(extra_info="backend=reference"), r"benchmark 't::x' \(benchmarks\[0\]\): 'extra_info' must be an object"),
    (dict(fullname=["t", "x"]), r"benchmarks\[0\]: 'fullname' must be a non-empty string, got list"),
    (dict(fullname=""), r"benchmarks\[0\]: 'fullname' must be a non-empty string"),
    (dict(name=None), r"benchmarks\[0\]: 'name' must be a non-empty string, got NoneType"),
    (dict(group=3), r"'group' must be a string or null, got int"),
    (dict(params=[1]), r"'params' must be an object or null, got list"),
])
def test_entries_of_the_wrong_type_are_named(tmp_path, change, match):
    b = bench("t::x", 1e-3)
    b.update(change)
    p = write_run(tmp_path / "run.json", [b])
    with pytest.raises(S4DInputError, match=match) as e:
        load_run(p)
    assert str(p) in str(e.value)


def test_commit_info_of_the_wrong_type(tmp_path):
    p = write_run(tmp_path / "run.json", [bench("t::x", 1e-3)])
    doc = json.loads(p.read_text())
    doc["commit_info"] = "abc123"
    p.write_text(json.dumps(doc))
    with pytest.raises(S4DInputError, match="commit_info must be an object or null, got str"):
        load_run(p)


def test_cli_json_output_is_checked_before_reading(runs, tmp_path, cli_main, capsys):
    a = runs[0].path
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert cli_main(["bench", "compare", a, str(tmp_path / "missing.json"), "--json", str(blocker / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "comparison JSON (--json)" in err and "missing.json" not in err, "the output is checked first"
    assert cli_main(["bench", "compare", a, a, "--json", a]) == 2
    assert "is the input file" in capsys.readouterr().err


def test_percentile_stats_from_data_or_extra_info(tmp_path):
    """p50/p90/p99/max: from stats.data when the file keeps it, else from extra_info latency_s (committed runs
    strip stats.data); neither is a clear error."""
    a = bench("t.py::test_p", 1e-3)
    a["stats"]["data"] = [1e-3] * 98 + [5e-3, 9e-3]
    b = bench("t.py::test_p", 1e-3, latency_s={"p50": 1e-3, "p90": 1e-3, "p99": 2e-2, "max": 3e-2})
    ra, rb = load_run(write_run(tmp_path / "a.json", [a])), load_run(write_run(tmp_path / "b.json", [b]))
    row = rows_by_name(compare(ra, rb, stat="p99", threshold=1.0))["test_p"]
    import numpy as np

    assert row.a == pytest.approx(float(np.percentile(a["stats"]["data"], 99))) and row.b == 2e-2
    assert row.verdict == "regression"
    assert rows_by_name(compare(ra, rb, stat="max"))["test_p"].a == 9e-3
    assert rows_by_name(compare(ra, rb, stat="p50"))["test_p"].verdict == "same"
    bare = load_run(write_run(tmp_path / "c.json", [bench("t.py::test_p", 1e-3)]))
    with pytest.raises(S4DInputError, match="neither stats.data nor"):
        compare(ra, bare, stat="p90")


# ------------------------------------------------------------------------ refusals in words, what two runs share

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "reports" / "benchmarks"


def grouped(fullname, median, group):
    b = bench(fullname, median)
    b["group"] = group
    return b


def test_nothing_in_common_is_refused_with_what_each_run_holds(tmp_path, cli_main, capsys):
    """Forced or not, two runs without a common benchmark are refused (exit 2): the message says so in words,
    lists each run's groups with counts and says what to compare instead; never a Python argument."""
    a = write_run(tmp_path / "a.json", [grouped("s.py::test_s[1]", 1e-3, "stream"),
                                        grouped("s.py::test_s[2]", 1e-3, "stream"),
                                        grouped("w.py::test_w[1]", 1e-3, "whole-sample")])
    b = write_run(tmp_path / "b.json", [bench("l.py::test_lava[x]", 1e-3)], machine=dict(MACHINE, node="other"))
    for force in ([], ["--force"]):
        assert cli_main(["bench", "compare", str(a), str(b), *force]) == 2
        captured = capsys.readouterr()
        err = " ".join(captured.err.split())  # the message wraps at 100 columns
        assert captured.out == "" and "nothing to compare: A and B have no benchmark in common" in err
        assert f"A = {a}: 3 benchmarks: stream (2), whole-sample (1)" in err
        assert f"B = {b}: 1 benchmark: test_lava (1)" in err  # no group: the test function
        assert "Compare two runs of the same benchmark set" in err and "--force does not help" in err
        assert "force=True" not in err and "recorded on different machines" not in err


def test_different_machines_refusal_in_words(tmp_path, cli_main, capsys):
    """A field recorded in one run only is named as such; the refusal counts what the runs share and names the
    command-line flag."""
    gpu = dict(MACHINE, gpus=["NVIDIA H200"])
    a = write_run(tmp_path / "a.json", [bench("t::x", 1e-3), bench("t::y", 1e-3)], machine=gpu)
    b = write_run(tmp_path / "b.json", [bench("t::x", 1e-3), bench("t::z", 1e-3), bench("t::w", 1e-3)])
    assert cli_main(["bench", "compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "recorded on different machines" in err and "gpus: ['NVIDIA H200'] in A, not recorded in B" in err
    flat = " ".join(err.split())
    assert f"They share 1 benchmark (A = {a} has 2, B = {b} has 3)" in flat
    assert "add --force to compare anyway" in flat and "force=True" not in err
    assert all(len(line) <= 100 for line in err.splitlines()[1:])


def test_common_benchmarks_first_the_rest_counted(tmp_path):
    a = load_run(write_run(tmp_path / "a.json", [grouped("t.py::test_gone[1]", 1e-3, "old"),
                                                  grouped("t.py::test_both[1]", 1e-3, "g"),
                                                  grouped("t.py::test_gone[2]", 1e-3, "old"),
                                                  grouped("t.py::test_both[2]", 2e-3, "g")]))
    b = load_run(write_run(tmp_path / "b.json", [grouped("t.py::test_new[1]", 1e-3, "new"),
                                                  grouped("t.py::test_both[2]", 2e-3, "g"),
                                                  grouped("t.py::test_both[1]", 3e-3, "g")]))
    c = compare(a, b)
    assert [r.fullname for r in c.rows] == ["t.py::test_both[1]", "t.py::test_both[2]", "t.py::test_gone[1]",
                                            "t.py::test_gone[2]", "t.py::test_new[1]"]
    text = c.to_text()
    assert "in common: 2 benchmarks: 1 regression, 1 same; 2 only in A; 1 only in B" in text
    table = text.split("\n\n")[1].splitlines()
    assert [line.split()[0] for line in table[2:]] == ["test_both[1]", "test_both[2]"]  # one run only: counted
    assert "test_gone" not in text and "test_new" not in text
    assert text.rstrip().splitlines()[-2:] == ["only in A (2): old (2)", "only in B (1): new (1)"]


def test_a_run_against_itself(tmp_path, cli_main, capsys):
    a = write_run(tmp_path / "a.json", [bench("t.py::test_x", 1e-3), bench("t.py::test_y", 5e-3)])
    assert cli_main(["bench", "compare", str(a), str(a)]) == 0
    out = capsys.readouterr().out
    assert "A and B are the same file: every ratio is 1 by construction" in out
    assert "in common: 2 benchmarks: 2 same; 0 only in A; 0 only in B" in out
    assert [line.split()[-2:] for line in out.splitlines() if line.startswith("test_")] == [["1.000", "same"]] * 2


@pytest.mark.skipif(not COMMITTED.is_dir(), reason=f"no committed runs beside the package ({COMMITTED})")
def test_the_committed_full_and_lava_runs_share_nothing_and_say_so(cli_main, capsys):
    """The pair the issue tried: refused in words with and without --force, each run's groups listed."""
    lava = sorted(COMMITTED.glob("*-lava.json"))[0]
    full = lava.with_name(lava.name.replace("-lava", ""))
    for force in ([], ["--force"]):
        assert cli_main(["bench", "compare", str(full), str(lava), *force]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "no benchmark in common" in err and "lava-vs-numpy-fxp-step (2)" in err
        assert f"{len(load_run(full).benchmarks)} benchmarks: " in err and "force=True" not in err


def _readme_example() -> list[str]:
    lines = [line.split() for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("s4dconf bench compare reports/benchmarks/")]
    assert len(lines) == 1, "README's one `bench compare` example against a committed run"
    return lines[0]


@pytest.mark.skipif(not (ROOT / "README.md").is_file(), reason=f"no README.md beside the package ({ROOT})")
def test_readme_example_shows_a_comparison(tmp_path, cli_main, capsys):
    """README's example compares a committed full run (A) with a user's `tox -e bench` (B): B is where tox writes
    it, A exists, and on this machine a fresh run of the same set (here: A's benchmarks 10 % slower, one backend
    missing) gives a table of the benchmarks in common, not a refusal."""
    argv = _readme_example()
    assert argv[:3] == ["s4dconf", "bench", "compare"] and len(argv) == 5
    committed, fresh = ROOT / argv[3], argv[4]
    assert committed.is_file(), f"README's example names {committed}, which is not committed"
    assert f"--benchmark-json {fresh}" in (ROOT / "tox.ini").read_text().split("[testenv:bench]", 1)[1]
    doc = json.loads(committed.read_text())
    doc["benchmarks"] = doc["benchmarks"][1:]
    for b in doc["benchmarks"]:
        b["stats"] = {k: v * 1.1 if k in ("min", "max", "mean", "median") else v for k, v in b["stats"].items()}
    (tmp_path / fresh).parent.mkdir(parents=True)
    (tmp_path / fresh).write_text(json.dumps(doc))
    assert cli_main(["bench", "compare", str(committed), str(tmp_path / fresh)]) == 0
    out = capsys.readouterr().out
    n = len(doc["benchmarks"])
    assert f"in common: {n} benchmarks: {n} same; 1 only in A; 0 only in B" in out
    assert sum(line.endswith(" 1.100  same") for line in out.splitlines()) == n
