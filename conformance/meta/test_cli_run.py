"""`s4dconf run` wires its seven steps through the real sub-commands (SPEC.md 21, README "Quick start"). The two
slow steps are replaced by stand-ins that write what they would (the golden check and the conformance suite have
their own tests; the benchmark smoke set runs in `tox -e bench-smoke`); everything else runs for real."""
import json
import re

from s4dconf import cli


def test_run_reaches_the_report_through_every_step(tmp_path, monkeypatch, capsys):
    def fake_conformance(backends, json_path, extra=(), quiet=False):
        record = {"backend": "reference:conv", "case": "tiny/impulse", "family": "impulse", "probe": "logits",
                  "metric": "rel_l2", "value": 1e-15, "tolerance": 1e-10, "verdict": "pass", "saturations": None}
        json_path.write_text(json.dumps({"spec_version": "1.0", "s4dconf": "0.1.0", "platform": {}, "backends": {},
                                         "exitstatus": 0, "records": [record]}))
        return 0

    def fake_bench(argv):  # the smoke set's JSON: one streaming benchmark
        out = argv[argv.index("--benchmark-json") + 1]
        bench = {"name": "s", "fullname": "s", "group": "g", "params": {}, "stats": {"mean": 1e-5, "median": 1e-5},
                 "extra_info": {"backend": "reference", "mode": "stream", "path": "default", "device": "cpu",
                                "batch": 1, "L": 784, "config": "loihi-profile", "us_per_token": 10.0,
                                "tokens_per_s": 1e5}}
        with open(out, "w") as f:
            json.dump({"machine_info": {"node": "n"}, "commit_info": {}, "benchmarks": [bench],
                       "datetime": "2026-11-29T00:00:00", "version": "5.1.0"}, f)
        return 0

    monkeypatch.setattr(cli, "cmd_golden", lambda args: 0)
    monkeypatch.setattr(cli, "run_conformance", fake_conformance)
    monkeypatch.setattr(cli.subprocess, "call", fake_bench)
    from s4dconf import check_output

    for module in (cli, check_output):  # a CI log: one plain line per step
        monkeypatch.setattr(module, "is_terminal", lambda stream=None: False)
    assert cli.main(["run", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for k in range(1, 8):
        assert re.search(rf"^\[{k}/7\] [^\n]*: ok \(\d+ s\)$", printed, re.M), f"step {k} did not report ok"
    assert len(re.findall(r"^\[\d/7\]", printed, re.M)) == 7 and "\r" not in printed  # no start lines, no bars
    assert "every step ok" in printed
    acc = json.loads((tmp_path / "accuracy" / "accuracy.json").read_text())
    assert {(r["dataset"], r["kind"]) for r in acc["rows"]} == {("sdigits", k) for k in ("float", "ptq", "qaft")}
    assert {v["id"] for v in json.loads((tmp_path / "claims.json").read_text())} >= {"accuracy-drop"}
    assert (tmp_path / "resources.md").is_file() and (tmp_path / "report.html").is_file()
    # run does not sweep; its report shows the committed sweep (reports/sweep/), or says "not run" without one
    from s4dconf.reports.report import default_inputs

    sweep = (tmp_path / "report.html").read_text().split('<section id="sweep">')[1].split("</section>")[0]
    committed = default_inputs(tmp_path)["sweep"]
    assert ("not run" not in sweep and "<table" in sweep) if committed else "not run" in sweep
