"""`s4dconf check` output for people (README "Command line"): the summary first (counts per backend, skip reasons
grouped in plain words), pytest's per-test lines only with -v, every line within 100 columns, every tolerance
with its direction; and the progress of check, run, eval and train as one plain line per step off a terminal."""
import io
import json
import re

from s4dconf import cli
from s4dconf.reports.tables import text_table
from s4dconf.training import accuracy, train

WIDTH = 100


def _rec(backend, case, family, metric, value, tol, verdict="pass"):
    return {"backend": backend, "case": case, "family": family, "probe": "logits", "metric": metric, "value": value,
            "tolerance": tol, "verdict": verdict, "saturations": None}


RECORDS = [_rec("reference:conv", "tiny/impulse", "impulse", "rel_l2", 1e-15, 1e-10),
           _rec("numpy-fxp:integer", "tiny/digits", "digits", "snr_db", 37.7, 17.0),
           _rec("numpy-fxp:integer", "tiny/long", "long", "snr_db", 6.5, 8.0, "fail")]
STREAMING = "lava-fxp no streaming session (BackendInfo.streaming = False)"
TESTS = ([{"nodeid": f"conformance/test_x.py::test_a[reference-c{i}]", "outcome": "passed", "backend": "reference",
           "when": "call", "reason": ""} for i in range(3)]
         + [{"nodeid": f"conformance/test_s.py::test_s[lava-fxp-c{i}]", "outcome": "skipped", "backend": "lava-fxp",
             "when": "setup", "reason": STREAMING} for i in range(24)]
         + [{"nodeid": "conformance/test_x.py::test_a[numpy-fxp-tiny/long]", "outcome": "failed",
             "backend": "numpy-fxp", "when": "call", "reason": "AssertionError: snr_db 6.5 < 8"}])


def _fake_conformance(backends, json_path, extra=(), quiet=False):
    json_path.write_text(json.dumps({"spec_version": "1.0", "s4dconf": "0.1.0", "platform": {}, "backends": {},
                                     "exitstatus": 1, "records": RECORDS}))
    outcomes, log = cli.side_files(json_path)
    outcomes.write_text(json.dumps({"exitstatus": 1, "tests": TESTS}))
    log.write_text("conformance/test_x.py::test_a[reference-c0] PASSED [  3%]\n")
    return 1


def test_summary_directions_and_skip_groups(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "run_conformance", _fake_conformance)
    out_json = tmp_path / "records.json"
    assert cli.main(["check", "--backend", "reference", "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("s4dconf check: 3 passed, 1 failed, 24 skipped")
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    assert "lava-fxp: 24 cases: no streaming session (BackendInfo.streaming = False)" in out
    assert out.count("no streaming session") == 1  # grouped, not one line per test
    assert re.search(r"snr_db >= 17\b", out) and re.search(r"rel_l2 <= 1e-10\b", out)
    assert "numpy-fxp:integer tiny/long (logits): snr_db 6.5, needs snr_db >= 8" in out  # the failing case, its value
    assert "PASSED" not in out  # pytest's per-test lines only with -v
    assert json.loads(out_json.read_text())["records"] == RECORDS  # --json unchanged

    assert cli.main(["check", "--backend", "reference", "-v"]) == 1
    out = capsys.readouterr().out
    assert out.index("s4dconf check:") < out.index("conformance matrix") < out.index("PASSED")


def test_real_narrow_check_fits_and_reports_progress_plainly(capsys):
    assert cli.main(["check", "--backend", "reference", "-v", "--", "-k", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert re.fullmatch(r"conformance: pytest ran \d+ tests in \d+ s \(exit code 0\)", lines[0])
    assert lines[1].startswith("s4dconf check: ") and "tests per backend:" in lines[2]
    details = out.index("details (pytest's output):")
    assert out.index("s4dconf check:") < out.index("conformance matrix") < details
    assert "PASSED" in out[details:] and "PASSED" not in out[:details]
    summary = out[:details].splitlines() + lines[-1:]
    assert all(len(line) <= WIDTH for line in summary), max(summary, key=len)
    assert re.search(r"reference:\w+ .* rel_l2 <= ", out)


def test_text_table_wraps_to_a_width():
    rows = [("name", "reason"), ("lava-fxp", "not available: " + "lava-nc is not installed " * 8)]
    assert text_table(rows) == text_table(rows, width=None)
    narrow = text_table(rows, width=60).splitlines()
    assert all(len(line) <= 60 for line in narrow) and len(narrow) > 3
    assert narrow[1].startswith("--------")
    assert " ".join(" ".join(line.split()[1:] if i == 2 else line.split()) for i, line in enumerate(narrow[2:], 2)
                    ).endswith("installed")


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_train_progress_plain_and_bar():
    plain = io.StringIO()
    for done in (1, 11, 21, 25):
        train._progress(0, 3, done, 25, 0.5, 0.0, stream=plain)
    assert "\r" not in plain.getvalue()
    [line] = plain.getvalue().splitlines()
    assert re.fullmatch(r"epoch 1/3: batch 25/25, loss 0\.5000, \d+ s \(.* batch/s\)", line)
    tty = _Tty()
    train._progress(1, 3, 10, 25, 0.25, 0.0, stream=tty)
    text = tty.getvalue()
    assert text.startswith("\repoch 2/3") and "10/25" in text and "loss 0.2500" in text and "<" in text  # time left


def test_eval_bar_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(accuracy.sys, "stderr", io.StringIO())
    assert accuracy._bar(100, "sdigits reference") is None
    tty = _Tty()
    monkeypatch.setattr(accuracy.sys, "stderr", tty)
    bar = accuracy._bar(100, "sdigits reference")
    bar.update(50)
    bar.refresh()  # tqdm redraws at most every 0.1 s on its own
    bar.close()
    assert "50/100" in tty.getvalue()


def test_run_prints_the_benchmark_step_as_a_100_column_summary_with_the_audit():
    """`s4dconf run`'s benchmark step: one row per benchmark of the run, percentiles and audit, in 100 columns
    (pytest-benchmark's own tables, 230 columns wide, only with -v)."""
    import json

    from s4dconf.cli import benchmark_summary
    from s4dconf.reports.claims import committed_benchmark_files

    path = next(p for p in committed_benchmark_files() if "lava" not in p.name)
    n = len(json.loads(path.read_text())["benchmarks"])
    text = benchmark_summary(path)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    assert len(lines) == 2 + n + 1 and lines[-1].startswith(f"{n} benchmarks in ")
    audited = sum("audit" in b.get("extra_info", {}) for b in json.loads(path.read_text())["benchmarks"])
    assert sum(line.rstrip().endswith("passed") for line in lines[2:-1]) == audited
