"""Every claim and quoted figure carries its source and grade (SPEC.md 21.1); the quantisation-recovery claim's
verdict is computed from the accuracy table. Expected verdicts are derived by hand in each test from the rule of
SPEC.md 21 (ratio within [q / 3, 3 q]; recovery = (QAFT - PTQ) / (float - PTQ), "most" = at least 0.5)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from s4dconf import cli
from s4dconf.reference.provenance import GRADES, check_grades, grade_text
from s4dconf.reference.validate import S4DInputError
from s4dconf.reports.claims import CLAIMS_FILE, evaluate, load_claims, versions_note
from s4dconf.training.accuracy import FULL_TEST_SIZES, QUOTED, check_table, table_markdown


def test_every_claim_has_a_known_grade_and_the_speed_claims_carry_both_versions():
    claims = {c["id"]: c for c in load_claims()}
    assert all(c["grade"] and set(c["grade"]) <= set(GRADES) for c in claims.values())
    for cid in ("streaming-latency", "streaming-throughput"):
        c = claims[cid]
        assert c["quoted_ratio"] == 75.0 and {"arXiv abstract v1", "arXiv abstract v2"} <= set(c["grade"])
        (alt,) = c["also_quoted"]
        assert alt["quoted_ratio"] == 29.0 and alt["grade"] == ("workshop abstract",)
    # claim 4 is in no abstract: its claims may not be graded as one
    for cid in ("accuracy-drop", "quantisation-recovery"):
        assert claims[cid]["grade"] == ("secondary source",)


@pytest.mark.parametrize("value, match", [
    ("abstract", "unknown grade 'abstract'"), ([], "non-empty list"), (3, "got 3"), (None, "got None"),
    (["paper body", 1], "non-empty list of grades"),
])
def test_a_bad_grade_is_a_clear_error(value, match):
    with pytest.raises(S4DInputError, match=match) as e:
        check_grades(value, "claims file x: claim 1")
    assert "claims file x: claim 1" in str(e.value)


def test_grades_are_ordered_strongest_first_and_both_arxiv_versions_read_as_one():
    assert check_grades(["this project", "paper body"], "w") == ("paper body", "this project")
    assert grade_text(("arXiv abstract v1", "arXiv abstract v2", "workshop abstract")) == \
        "arXiv abstract v1, v2 + workshop abstract"


_CLAIM = ('[[claim]]\nid = "lat"\nsource = "s"\nquoted = "q"\nmetric = "m"\ncheck = "chip_vs_jetson"\n'
          'quantity = "us_per_token"\nquoted_ratio = 75\n')


@pytest.mark.parametrize("extra, match", [
    ("", r"claim 1 \(id 'lat'\): 'grade' must be a grade"),
    ('grade = "paper body"\nalso_quoted = 3\n', "'also_quoted' must be an array of tables"),
    ('grade = "paper body"\n[[claim.also_quoted]]\nsource = "w"\nquoted = "29x"\n', r"also_quoted 1: 'grade'"),
    ('grade = "paper body"\n[[claim.also_quoted]]\nsource = "w"\ngrade = "workshop abstract"\nquoted = "x"\n'
     'quoted_ratio = -29\n', r"also_quoted 1: 'quoted_ratio' must be a number > 0"),
])
def test_claims_without_grade_or_with_a_bad_version_are_refused(tmp_path, extra, match):
    p = tmp_path / "claims.toml"
    p.write_text(_CLAIM + extra)
    with pytest.raises(S4DInputError, match=match) as e:
        load_claims(p)
    assert str(p) in str(e.value)


def test_a_verdict_names_the_version_it_tested_and_judges_the_others():
    claim = {"quoted_ratio": 75.0, "grade": ("arXiv abstract v1", "arXiv abstract v2"), "tolerance_factor": 3.0,
             "also_quoted": [{"quoted_ratio": 29.0, "grade": ("workshop abstract",), "quoted": "29 times faster"}]}
    # 100x: within [25, 225] of 75 (reproduced) but above 3 x 29 = 87 (direction reproduced)
    note = versions_note(claim, {"ratio": 100.0})
    assert note == ("tested against 75 (arXiv abstract v1, v2); against 29 (workshop abstract): direction "
                    "reproduced")
    assert versions_note(claim, {"ratio": 50.0}).endswith("against 29 (workshop abstract): reproduced")
    assert versions_note(claim, {}) == "tested against 75 (arXiv abstract v1, v2); also quoted: 29 (workshop abstract)"
    assert versions_note({**claim, "also_quoted": []}, {"ratio": 100.0}) == ""


def _table(tmp_path, accs: dict) -> str:
    """accs: {dataset: (float, ptq, qaft or None)} as fractions, each on its full test split."""
    rows = []
    for ds, (f, p, q) in accs.items():
        for kind, col, a in (("float", "reference", f), ("ptq", "numpy-fxp", p), ("qaft", "numpy-fxp", q)):
            if a is not None:
                rows.append({"dataset": ds, "kind": kind, "cells": {col: {"accuracy": a, "n": FULL_TEST_SIZES[ds]}}})
    path = tmp_path / "acc.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def _recovery(tmp_path, accs):
    return {v.id: v for v in evaluate([], _table(tmp_path, accs))}["quantisation-recovery"]


def test_quantisation_recovery_verdicts(tmp_path):
    mnist = {"smnist": (0.98, 0.975, 0.978), "psmnist": (0.95, 0.94, 0.945)}  # PTQ losses 0.5 and 1 point
    # scifar loses 10 points, QAFT wins back 8 of them: 0.8 >= 0.5
    v = _recovery(tmp_path, {**mnist, "scifar": (0.70, 0.60, 0.68)})
    assert v.verdict == "reproduced"
    assert v.measured["ptq_loss_points"] == {"scifar": 10.0, "smnist": 0.5, "psmnist": 1.0}
    assert v.measured["scifar_recovery"] == pytest.approx(0.8)
    assert "tested against 0.5 (secondary source)" in v.note and "0.84" in v.note
    # wins back 2 of 10: some, not most
    assert _recovery(tmp_path, {**mnist, "scifar": (0.70, 0.60, 0.62)}).verdict == "direction reproduced"
    # QAFT below PTQ: nothing won back
    assert _recovery(tmp_path, {**mnist, "scifar": (0.70, 0.60, 0.59)}).verdict == "contradicted"
    # scifar loses 0.5 points, psmnist 1: PTQ does not lose more on sCIFAR
    assert _recovery(tmp_path, {**mnist, "scifar": (0.70, 0.695, 0.70)}).verdict == "contradicted"


def test_quantisation_recovery_needs_scifar_and_an_mnist_family_pair(tmp_path):
    v = _recovery(tmp_path, {"smnist": (0.98, 0.975, 0.978)})
    assert v.verdict == "not measurable here" and "scifar has: nothing" in v.note
    v = _recovery(tmp_path, {"sdigits": (0.9, 0.8, 0.85), "scifar": (0.70, 0.60, 0.68)})
    assert v.verdict == "not measurable here" and "MNIST family: nothing" in v.note


def test_quantisation_recovery_from_a_subset_is_partial(tmp_path):
    path = _table(tmp_path, {"smnist": (0.98, 0.975, 0.978), "scifar": (0.70, 0.60, 0.68)})
    t = json.loads(path.read_text())
    t["rows"][-1]["cells"]["numpy-fxp"]["n"] = 500
    path.write_text(json.dumps(t))
    v = {v.id: v for v in evaluate([], path)}["quantisation-recovery"]
    assert v.verdict == "reproduced (partial)" and v.note.startswith("partial:") and "scifar qaft 500" in v.note


def test_the_accuracy_tables_quoted_figures_carry_grades():
    assert all(q["grade"] for q in QUOTED)
    table = check_table({"rows": [], "columns": [], "quoted": QUOTED})
    md = table_markdown(table)
    assert md.count("grade: secondary source") == len(QUOTED) and "abstract" not in md.split("## Quoted")[1]
    with pytest.raises(S4DInputError, match=r"quoted\[0\]: unknown grade"):
        check_table({"rows": [], "quoted": [{"claim": "c", "source": "s", "grade": "a blog"}]})


def test_cli_claims_prints_every_grade_and_the_other_versions(capsys):
    assert cli.main(["claims", "--bench"]) == 0
    out = capsys.readouterr().out
    assert "source grade" in out and "29 times faster" in out and "workshop abstract" in out
    assert all(g in out for g in GRADES)
    assert len(load_claims(CLAIMS_FILE)) == sum(1 for line in out.splitlines()
                                                if line.split(" ")[0] in {c["id"] for c in load_claims()})


def test_the_report_shows_every_claims_grade_and_its_other_versions():
    from s4dconf.reports.page import render_markdown
    from s4dconf.reports.report_inputs import LoadedInput
    from s4dconf.reports.sections_perf import claims_section

    verdicts = [dataclasses.asdict(v) for v in evaluate([], None)]
    md = render_markdown([claims_section(LoadedInput(json.loads(json.dumps(verdicts)), "claims.json"), {}, {})], "t")
    assert "source grade" in md
    for v in verdicts:
        assert grade_text(v["grade"]) in md
    assert md.count("29 times faster") == 2  # the two speed claims' other version, each labelled quoted
    assert "(workshop abstract: NeurIPS 2024 workshop" in md and "ungraded" not in md
