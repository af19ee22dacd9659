"""The claims registry (SPEC.md section 21): every claim gets a verdict from measurements, and each verdict can go
every way the measurements say (reproduced, direction reproduced, not measurable here, contradicted)."""
from __future__ import annotations

import json

import pytest

from s4dconf.reference.validate import S4DInputError
from s4dconf.reports.claims import CLAIMS_FILE, VERDICTS, evaluate, load_claims, verdicts_markdown


AUDIT = {"output_sha256": "a" * 64, "replay_sha256": "a" * 64, "hash_match": True, "passed": True}


def _bench(name, **info):
    info.setdefault("audit", AUDIT)
    return {"name": name, "fullname": name, "group": "g", "params": {}, "extra_info": info,
            "stats": {"mean": 1.0, "median": 1.0, "min": 1.0}}


def _write(tmp_path, benches, fname="b.json"):
    p = tmp_path / fname
    p.write_text(json.dumps({"machine_info": {"node": "n", "s4dconf": {"cpu": "c"}}, "commit_info": {},
                             "benchmarks": benches, "datetime": "2026-11-29T00:00:00", "version": "5.1.0"}))
    return p


def _modes(rec_tps, conv_tps: dict, device="cpu"):
    out = [_bench("rec", backend="torch-rec", mode="stream", path="default", batch=1, config="paper", L=784,
                  device=device, tokens_per_s=rec_tps, us_per_token=1e6 / rec_tps)]
    out += [_bench(f"conv{b}", backend="torch-conv", mode="whole-sample", path="fft", batch=b, config="paper",
                   L=784, device=device, tokens_per_s=t) for b, t in conv_tps.items()]
    return out


def _accuracy(tmp_path, float_acc, ptq, qaft):
    rows = [{"dataset": "smnist", "kind": k, "cells": {col: {"accuracy": a, "n": 10000}}}
            for k, col, a in (("float", "reference", float_acc), ("ptq", "numpy-fxp", ptq),
                              ("qaft", "numpy-fxp", qaft))]
    p = tmp_path / "acc.json"
    p.write_text(json.dumps({"rows": rows}))
    return p


def _by_id(verdicts):
    return {v.id: v for v in verdicts}


def test_registry_has_the_claims_the_issue_asks_for():
    ids = {c["id"] for c in load_claims()}
    assert {"batched-beats-streaming", "crossover-batch", "emulator-vs-lava", "accuracy-drop",
            "streaming-latency", "streaming-energy"} <= ids


def test_nothing_measured_gives_not_measurable_with_reasons(tmp_path):
    v = evaluate([], None)
    assert all(x.verdict in VERDICTS for x in v)
    hw = _by_id(v)
    for cid in ("streaming-latency", "streaming-throughput", "streaming-energy", "chip-step-time"):
        assert hw[cid].verdict == "not measurable here" and "Loihi 2 chip" in hw[cid].note
        assert hw[cid].measured.get("ratio") is None


def test_batched_and_crossover_follow_the_measurements(tmp_path):
    # whole-sample wins from batch 8 on: reproduced, crossover 8
    v = _by_id(evaluate([_write(tmp_path, _modes(1000.0, {1: 500.0, 8: 2000.0, 64: 9000.0}))], None))
    assert v["batched-beats-streaming"].verdict == "reproduced"
    (m,) = v["crossover-batch"].measured.values()
    assert v["crossover-batch"].verdict == "reproduced" and m["crossover_batch"] == 8
    # streaming faster than every batch: both contradicted
    v = _by_id(evaluate([_write(tmp_path, _modes(1e5, {1: 500.0, 8: 2000.0, 64: 9000.0}), "c.json")], None))
    assert v["batched-beats-streaming"].verdict == "contradicted"
    assert v["crossover-batch"].verdict == "contradicted"
    assert "not a Jetson" in v["batched-beats-streaming"].note


def test_chip_claims_with_both_sides_measured(tmp_path):
    benches = [_bench("chip", backend="loihi2", mode="stream", batch=1, config="loihi-profile", L=784,
                      device="Loihi 2", us_per_token=31.0, tokens_per_s=1e6 / 31.0),
               _bench("jet", backend="torch-rec", mode="stream", path="default", batch=1, config="loihi-profile",
                      L=784, device="cuda (Orin)", us_per_token=31.0 * 60, tokens_per_s=1e6 / (31.0 * 60))]
    v = _by_id(evaluate([_write(tmp_path, benches)], None))
    assert v["streaming-latency"].verdict == "reproduced"  # 60x vs quoted 75x: within the factor 3
    assert v["streaming-latency"].measured["ratio"] == pytest.approx(60.0)
    assert v["chip-step-time"].verdict == "reproduced"
    benches[1]["extra_info"]["us_per_token"] = 31.0 * 2  # only 2x: right sign, wrong size
    v = _by_id(evaluate([_write(tmp_path, benches, "d.json")], None))
    assert v["streaming-latency"].verdict == "direction reproduced"


def test_emulator_vs_lava(tmp_path):
    def run(speedup, fname):
        b = _bench("lava", config="small", speedup_numpy_over_lava=speedup, lava_us_per_step=2500.0,
                   numpy_fxp_us_per_step=2500.0 / speedup)
        return _by_id(evaluate([_write(tmp_path, [b], fname)], None))["emulator-vs-lava"].verdict

    assert run(128.0, "a.json") == "reproduced"
    assert run(93.0, "b.json") == "direction reproduced"
    assert run(0.5, "c.json") == "contradicted"


def test_accuracy_drop(tmp_path):
    def run(*acc):
        return _by_id(evaluate([], _accuracy(tmp_path, *acc)))["accuracy-drop"]

    v = run(0.98, 0.965, 0.975)
    assert v.verdict == "reproduced" and v.measured["smnist"]["ptq"] == pytest.approx(1.5)
    assert run(0.98, 0.90, 0.97).verdict == "direction reproduced"  # PTQ loses 8 points, QAFT recovers
    assert run(0.98, 0.90, 0.92).verdict == "direction reproduced"
    assert run(0.98, 0.90, 0.85).verdict == "contradicted"


def test_markdown_labels_quoted_and_measured(tmp_path):
    verdicts = evaluate([], None)
    text = verdicts_markdown(verdicts)
    header = text.splitlines()[0]
    assert all(h in header for h in ("| quoted |", "| source grade |", "| measured |"))
    # a row per claim, each with its grade; "here" is not claimed for figures that may come from committed runs
    assert len(text.splitlines()) == 2 + len(verdicts) and "measured here" not in text
    assert "| arXiv abstract v1, v2 |" in text and "| this project |" in text


def test_bad_benchmark_file_is_a_clear_error(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(S4DInputError, match="not a pytest-benchmark JSON"):
        evaluate([p], None)


def test_bad_claims_file_is_a_clear_error(tmp_path):
    p = tmp_path / "claims.toml"
    p.write_text(CLAIMS_FILE.read_text().replace('check = "accuracy_drop"', 'check = "guess"'))
    with pytest.raises(S4DInputError, match="unknown check 'guess'"):
        load_claims(p)


def _claims_file(tmp_path, text):
    p = tmp_path / "claims.toml"
    p.write_text(text)
    return p


_CHIP = ('[[claim]]\nid = "lat"\nsource = "s"\ngrade = "paper body"\nquoted = "q"\nmetric = "m"\n'
         'check = "chip_vs_jetson"\nquantity = "us_per_token"\n')


@pytest.mark.parametrize("text, match", [
    ('claim = "x"\n', r"'claim' must be a non-empty array of tables .*got str 'x'"),
    ('title = "no claims"\n', r"'claim' must be a non-empty array of tables .*got nothing"),
    ("claim = [1, 2]\n", r"claim 1 must be a table .*got int"),
    (_CHIP.replace('quantity = "us_per_token"\n', ""), r"claim 1 \(id 'lat'\): check 'chip_vs_jetson' needs "
                                                       r"'quantity'"),
    (_CHIP.replace('quantity = "us_per_token"', 'quantity = "joules"'), r"claim 1 \(id 'lat'\): 'quantity' must be "
                                                                         "one of"),
    (_CHIP.replace('id = "lat"\n', ""), r"claim 1 \(id None\) lacks id"),
    (_CHIP.replace('id = "lat"', "id = 3"), r"'id' must be a non-empty string, got 3"),
    (_CHIP + "quoted_ratio = \"75\"\n", r"'quoted_ratio' must be a number > 0, got '75'"),
    (_CHIP + "tolerance_factor = 0.5\n", r"'tolerance_factor' must be >= 1"),
    (_CHIP + _CHIP, r"claim 2 \(id 'lat'\): id 'lat' is also the id of claim 1"),
    ('[[claim]]\nid = "e"\nsource = "s"\ngrade = "this project"\nquoted = "q"\nmetric = "m"\n'
     'check = "emulator_vs_lava"\n',
     r"check 'emulator_vs_lava' needs 'quoted_ratio'"),
    ("[[claim]\n", r"TOMLDecodeError"),
])
def test_malformed_claims_files_name_the_file_and_the_claim(tmp_path, text, match):
    p = _claims_file(tmp_path, text)
    with pytest.raises(S4DInputError, match=match) as e:
        load_claims(p)
    assert str(p) in str(e.value)
    with pytest.raises(S4DInputError, match=match):
        evaluate([], None, claims_file=p)


def test_a_well_formed_small_claims_file_is_read(tmp_path):
    (c,) = load_claims(_claims_file(tmp_path, _CHIP + "quoted_ratio = 75\ntolerance_factor = 3\n"))
    assert c["quantity"] == "us_per_token"


def test_missing_accuracy_file_is_a_clear_error(tmp_path):
    with pytest.raises(S4DInputError, match=r"accuracy file .*missing.json does not exist"):
        evaluate([], tmp_path / "missing.json")


def test_accuracy_from_part_of_a_test_split_is_marked_partial(tmp_path):
    rows = [{"dataset": "smnist", "kind": k, "cells": {col: {"accuracy": a, "n": n, "note": note}}}
            for k, col, a, n, note in (("float", "reference", 0.98, 100, "first 100 of 10000 test samples"),
                                       ("ptq", "numpy-fxp", 0.97, 100, "first 100 of 10000 test samples"),
                                       ("qaft", "numpy-fxp", 0.975, 10000, ""))]
    p = tmp_path / "acc.json"
    p.write_text(json.dumps({"rows": rows}))
    v = _by_id(evaluate([], p))["accuracy-drop"]
    assert v.verdict == "reproduced (partial)" and v.partial
    assert v.note.startswith("partial:") and "smnist float 100, ptq 100 of 10000 test samples" in v.note
    assert v.measured["smnist"]["partial"] is True
    assert "(partial)" in verdicts_markdown([v])
    # every figure from the full split: not partial
    full = _by_id(evaluate([], _accuracy(tmp_path, 0.98, 0.97, 0.975)))["accuracy-drop"]
    assert full.verdict == "reproduced" and not full.partial and "partial" not in full.note


def test_unaudited_benchmarks_are_left_out_with_the_reason(tmp_path):
    benches = _modes(1000.0, {1: 500.0, 8: 4000.0, 64: 20000.0})
    for b in benches:
        b["extra_info"].pop("audit")
    v = _by_id(evaluate([_write(tmp_path, benches)], None))
    assert v["crossover-batch"].verdict == "not measurable here"
    assert "audited figures only: 4 benchmark(s) left out" in v["crossover-batch"].note
    assert "(no audit record)" in v["crossover-batch"].note
    ok = _by_id(evaluate([_write(tmp_path, _modes(1000.0, {1: 500.0, 8: 4000.0, 64: 20000.0}), "c.json")], None))
    assert ok["crossover-batch"].verdict == "reproduced"
    assert ok["crossover-batch"].note.startswith("audited figures only;")  # first: what `s4dconf claims` shows


def _measurable_by_every_bench_check() -> list:
    """Benchmarks from which every benchmark-based claim gets a verdict other than "not measurable here"."""
    L, step, whole = 784, 50e-6, 20e-3
    chip = [_bench("chip", backend="loihi2", mode="stream", path="default", batch=1, config="loihi-profile", L=784,
                   device="Loihi 2", us_per_token=31.0, tokens_per_s=1e6 / 31.0, energy_per_token_j=1e-6),
            _bench("jetson", backend="torch-rec", mode="stream", path="default", batch=1, config="loihi-profile",
                   L=784, device="Jetson Orin Nano", us_per_token=2000.0, tokens_per_s=500.0,
                   energy_per_token_j=1e-3)]
    lava = [_bench("lava", config="small", speedup_numpy_over_lava=128.0, lava_us_per_step=2500.0,
                   numpy_fxp_us_per_step=2500.0 / 128)]
    ttd = [_bench("s", backend="reference", mode="stream", path="default", batch=1, config="paper", L=L,
                  device="cpu", us_per_token=40.0, tokens_per_s=25000.0, latency_s={"p99": step}),
           _bench("w", backend="reference", mode="whole-sample", path="conv", batch=1, config="paper", L=L,
                  device="cpu", tokens_per_s=L / whole, us_per_sample=whole * 1e6, latency_s={"p50": whole})]
    return _modes(1000.0, {1: 500.0, 8: 4000.0, 64: 20000.0}) + chip + lava + ttd


@pytest.mark.parametrize("spoil", ["no audit record", "audit not passed", "hash mismatch"])
def test_no_benchmark_claim_uses_an_unaudited_record(tmp_path, spoil):
    from s4dconf.reports.claims import BENCH_CHECKS

    ids = [c["id"] for c in load_claims() if c["check"] in BENCH_CHECKS]
    good = _by_id(evaluate([_write(tmp_path, _measurable_by_every_bench_check())], None))
    for i in ids:
        assert good[i].verdict != "not measurable here" and good[i].evidence, i
        assert good[i].note.startswith("audited figures only") and "left out" not in good[i].note, i
    benches = _measurable_by_every_bench_check()
    for b in benches:
        if spoil == "no audit record":
            b["extra_info"].pop("audit")
        else:
            b["extra_info"]["audit"] = ({**AUDIT, "passed": False} if spoil == "audit not passed" else
                                        {**AUDIT, "replay_sha256": "b" * 64, "hash_match": False})
    bad = _by_id(evaluate([_write(tmp_path, benches, "spoilt.json")], None))
    why = "no audit record" if spoil == "no audit record" else "audit not passed"
    for i in ids:
        assert bad[i].verdict == "not measurable here" and bad[i].evidence == [], i
        assert bad[i].note.startswith(f"audited figures only: {len(benches)} benchmark(s) left out") and why in \
            bad[i].note, i


def test_an_unaudited_lava_figure_is_not_used_beside_an_audited_one(tmp_path):
    # the emulator-vs-lava claim reads test_bench_lava's records: an unaudited one with a contradicting speedup
    # must not make the verdict
    ok = _bench("lava-audited", config="small", speedup_numpy_over_lava=128.0, lava_us_per_step=2500.0,
                numpy_fxp_us_per_step=2500.0 / 128)
    unaudited = _bench("lava-unaudited", config="loihi-profile", speedup_numpy_over_lava=0.5,
                       lava_us_per_step=10.0, numpy_fxp_us_per_step=20.0)
    unaudited["extra_info"].pop("audit")
    v = _by_id(evaluate([_write(tmp_path, [ok, unaudited])], None))["emulator-vs-lava"]
    assert v.verdict == "reproduced" and set(v.measured) == {"small"}
    assert v.evidence == ["b.json: lava-audited [n (c)]"]
    assert "1 benchmark(s) left out: b.json: lava-unaudited (no audit record)" in v.note


def test_time_to_decision_crossover(tmp_path):
    from s4dconf.reports.claims import decision_crossover_rate, time_to_decision

    step, whole, L = 50e-6, 20e-3, 784  # streaming keeps up to 20k tokens/s
    slow = time_to_decision(1000.0, step, whole, L)
    assert slow["stream"] == step and slow["stream_keeps_up"] and slow["whole"] == whole
    r = decision_crossover_rate(step, whole, L)
    assert r > 1 / step  # past the keep-up rate the backlog grows until whole-sample answers sooner
    t = time_to_decision(r, step, whole, L)
    assert abs(t["stream"] - t["whole"]) < 1e-9 and not t["stream_keeps_up"]
    assert decision_crossover_rate(step, L * step * 2, L) is None  # whole-sample slower than L steps: never
    benches = [_bench("s", backend="reference", mode="stream", path="default", batch=1, config="paper", L=L,
                      device="cpu", us_per_token=40.0, tokens_per_s=25000.0,
                      latency_s={"p50": 40e-6, "p90": 45e-6, "p99": step, "max": 1e-3}),
               _bench("w", backend="reference", mode="whole-sample", path="conv", batch=1, config="paper", L=L,
                      device="cpu", tokens_per_s=L / whole, us_per_sample=whole * 1e6,
                      latency_s={"p50": whole, "p90": whole, "p99": whole, "max": whole})]
    v = _by_id(evaluate([_write(tmp_path, benches)], None))["time-to-decision-crossover"]
    assert v.verdict == "reproduced"
    (m,) = v.measured.values()
    assert abs(m["crossover_tokens_per_s"] - r) < 1e-6 * r
