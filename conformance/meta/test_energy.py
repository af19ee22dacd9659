"""reports/energy.py: the wrap and trapezoid arithmetic, every meter's "not available" reason with the meters
forced absent, and recorded counter sequences through a fake RAPL sysfs tree, a fake pynvml and a fake jtop."""
from __future__ import annotations

import itertools
import os
import sys
import time
import types
from typing import ClassVar

import pytest
from s4dconf.measure import energy as en


@pytest.fixture
def no_meters(monkeypatch, tmp_path):
    """No pynvml, no jtop, no powercap tree, whatever this machine has (None in sys.modules fails the import)."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setitem(sys.modules, "jtop", None)
    monkeypatch.setattr(en, "RAPL_ROOT", tmp_path / "powercap")
    return tmp_path / "powercap"


class FixedMeter(en.EnergyMeter):
    name = "fixed"

    def _probe(self):
        return True, ""

    def read_joules(self):
        return 0.0

    def describe(self):
        return {"meter": self.name, "measures": "a recorded value"}


# ------------------------------------------------------------------------------------------- pure arithmetic

def test_counter_delta_plain_wrapped_and_backwards():
    assert en.counter_delta(10.0, 12.5, None) == 2.5
    assert en.counter_delta(900_000, 50_000, 1_000_000) == 150_000  # 100_000 to the wrap, 50_000 after
    with pytest.raises(ValueError, match="backwards"):
        en.counter_delta(5.0, 4.0, None)


def test_integrate_power_is_the_trapezoid():
    # by hand: 0.05*(10+12)/2 + 0.05*(12+11)/2 + 0.1*(11+15)/2 = 0.55 + 0.575 + 1.3
    assert en.integrate_power([0.0, 0.05, 0.1, 0.2], [10.0, 12.0, 11.0, 15.0]) == pytest.approx(2.425)
    assert en.integrate_power([3.0], [99.0]) == 0.0
    with pytest.raises(ValueError, match="2 times but 3"):
        en.integrate_power([0.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="backwards"):
        en.integrate_power([0.0, 1.0, 0.5], [1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------- meters absent

def test_each_meter_says_why_it_is_unavailable(no_meters):
    expected = {en.NvmlMeter(): "NVML: pynvml not importable", en.JetsonMeter(): "jetson-stats: jtop not importable",
                en.RaplMeter(): f"RAPL: {no_meters} does not exist"}
    for meter, reason in expected.items():
        ok, why = meter.available()
        assert not ok and why.startswith(reason), (meter.name, why)
        with pytest.raises(en.MeterUnavailable, match=reason.split(":")[0]):
            meter.read_joules()
    assert en.detect_meters() == []


def test_meter_for_falls_back_to_no_meter_listing_what_it_looked_for(no_meters):
    cpu, cuda, loihi = en.meter_for("cpu"), en.meter_for("cuda"), en.meter_for("loihi2")
    assert [m.name for m in (cpu, cuda, loihi)] == ["none"] * 3
    assert cpu.available() == (False, (f"no energy meter for 'cpu' on this machine (looked for: RAPL: {no_meters} "
                                       "does not exist (no powercap driver, or not Linux))"))
    assert "NVML: pynvml not importable" in cuda.reason and "jetson-stats: jtop not importable" in cuda.reason
    assert "no meter is known for device 'loihi2'" in loihi.reason


def test_unmeasured_extra_info_has_a_reason_and_no_numbers(no_meters):
    meter = en.meter_for("cpu")
    span = en.EnergySpan(meter).start()
    assert span.stop() is None and span.seconds >= 0 and span.reason == meter.reason
    info = en.energy_extra_info(span.joules, span.seconds, tokens=784, samples=1, meter=meter)
    assert info == {"energy_meter": "none", "energy": f"not measured: {meter.reason}"}
    assert en.energy_extra_info(None, 1.0, 784, 1, FixedMeter(), reason="read failed")["energy"] == \
        "not measured: read failed"


# ------------------------------------------------------------------------------------------- RAPL, fake sysfs

def _domain(root, name, label, uj, max_uj=None):
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    if max_uj is not None:
        (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


@pytest.fixture
def rapl_tree(tmp_path):
    root = tmp_path / "powercap"
    pkg0 = _domain(root, "intel-rapl:0", "package-0", 900_000, max_uj=1_000_000)
    pkg1 = _domain(root, "intel-rapl:1", "package-1", 10, max_uj=2_000_000)
    core = _domain(root, "intel-rapl:0:0", "core", 7_000_000, max_uj=10**9)  # inside package-0: not summed
    psys = _domain(root, "intel-rapl:2", "psys", 8_000_000, max_uj=10**9)  # the whole platform: not summed
    return root, pkg0, pkg1, core, psys


def _write(domain, uj):
    (domain / "energy_uj").write_text(f"{uj}\n")


def test_rapl_sums_packages_only_and_unwraps(rapl_tree):
    root, pkg0, pkg1, core, psys = rapl_tree
    meter = en.RaplMeter(root)
    assert meter.available() == (True, "")
    assert "intel-rapl:0, intel-rapl:1" in meter.describe()["measures"]
    readings = [meter.read_joules()]
    for p0, p1, junk in [(950_000, 20, 1), (50_000, 30, 9_999_999), (150_000, 40, 3)]:  # p0 wraps at the 2nd
        _write(pkg0, p0), _write(pkg1, p1), _write(core, junk), _write(psys, junk)
        readings.append(meter.read_joules())
    assert readings[0] == pytest.approx(0.900_010)
    steps = [b - a for a, b in itertools.pairwise(readings)]
    assert steps == pytest.approx([0.050_010, 0.100_010, 0.100_010])


def test_rapl_span_across_a_wrap(rapl_tree):
    root, pkg0, pkg1, *_ = rapl_tree
    meter = en.RaplMeter(root)
    _write(pkg0, 990_000)
    with en.EnergySpan(meter) as span:
        _write(pkg0, 40_000), _write(pkg1, 510)
    assert span.joules == pytest.approx(0.050 + 0.000_500) and span.reason is None


def test_rapl_unreadable_counter_names_path_and_error(rapl_tree):
    root, pkg0, *_ = rapl_tree
    counter = pkg0 / "energy_uj"
    counter.chmod(0)
    try:
        counter.read_text()  # root reads through mode 000: make it unreadable another way
        counter.unlink()
        counter.mkdir()
        error = "IsADirectoryError"
    except PermissionError:
        error = "PermissionError"
    ok, why = en.RaplMeter(root).available()
    assert not ok and why.startswith(f"RAPL: cannot read {counter}: {error}")


def test_rapl_without_package_domains(tmp_path):
    _domain(tmp_path, "intel-rapl:0:0", "core", 5, max_uj=100)
    _domain(tmp_path, "intel-rapl-mmio:0", "package-0", 5, max_uj=100)
    why = f"RAPL: no package domain (intel-rapl:N named package-N) under {tmp_path}"
    assert en.RaplMeter(tmp_path).available() == (False, why)


# ------------------------------------------------------------------------------------------- NVML, fake pynvml

def _fake_pynvml(energies_mj=(), init_error=None, unsupported=False):
    nv = types.ModuleType("pynvml")
    nv.NVMLError = type("NVMLError", (Exception,), {})
    nv.NVMLError_NotSupported = type("NVMLError_NotSupported", (nv.NVMLError,), {})
    nv.handles, values = [], iter(energies_mj)

    def init():
        if init_error:
            raise nv.NVMLError(init_error)

    def energy(handle):
        if unsupported:
            raise nv.NVMLError_NotSupported("Not Supported")
        return next(values)

    nv.nvmlInit, nv.nvmlDeviceGetTotalEnergyConsumption = init, energy
    nv.nvmlDeviceGetHandleByIndex = lambda i: nv.handles.append(i) or f"handle{i}"
    return nv


def test_nvml_recorded_counter(monkeypatch):
    fake = _fake_pynvml([1_000_000, 1_000_250, 1_003_250])  # the probe reads the first
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = en.meter_for("cuda:1")
    assert meter.name == "nvml" and fake.handles == [1] and "NVML total energy" in meter.describe()["measures"]
    result, joules, seconds = en.measure(meter, sum, [1, 2])
    assert (result, joules) == (3, pytest.approx(3.0)) and seconds >= 0


def test_nvml_counter_reset_is_not_a_measurement(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml([5_000, 9_000, 2_000]))
    span = en.EnergySpan(en.NvmlMeter()).start()
    assert span.stop() is None and "backwards" in span.reason


@pytest.mark.parametrize("kwargs, reason", [
    ({"unsupported": True}, "NVML: GPU 0 does not support the total energy counter"),
    ({"init_error": "Driver Not Loaded"}, "NVML: GPU 0 not usable (NVMLError: Driver Not Loaded)"),
])
def test_nvml_unavailable(monkeypatch, kwargs, reason):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(**kwargs))
    ok, why = en.NvmlMeter().available()
    assert not ok and why.startswith(reason)


# ------------------------------------------------------------------------------------------- Jetson

def test_jetson_integrates_injected_samples():
    times, watts = iter([0.0, 0.05, 0.1, 0.2]), iter([10.0, 12.0, 11.0, 15.0])
    meter = en.JetsonMeter(read_watts=watts.__next__, clock=times.__next__, background=False)
    assert meter.read_joules() == 0.0
    meter.sample(), meter.sample()
    assert meter.read_joules() == pytest.approx(2.425)


def _fake_jtop(monkeypatch, start_error=None):
    class FakeJtop:
        power: ClassVar[dict] = {"tot": {"power": 5000.0}, "rail": {"VDD_GPU_SOC": {"power": 2500.0}}}

        def __init__(self, interval):
            self.interval = interval

        def start(self):
            if start_error:
                raise RuntimeError(start_error)

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=FakeJtop))
    return FakeJtop


def test_jetson_reads_jtop_milliwatts_fresh_each_sample(monkeypatch):
    fake = _fake_jtop(monkeypatch)
    meter = en.JetsonMeter(clock=iter([0.0, 1.0, 0.0, 2.0]).__next__, background=False)
    assert meter.read_joules() == 0.0
    fake.power = {"tot": {"power": 7000.0}}  # jtop renews the dict on each update
    assert meter.read_joules() == pytest.approx(6.0)  # 1 s at (5 W + 7 W) / 2
    rail = en.JetsonMeter(rail="VDD_GPU_SOC", clock=iter([0.0, 2.0]).__next__, background=False)
    fake.power = {"tot": {"power": 1.0}, "rail": {"VDD_GPU_SOC": {"power": 2500.0}}}
    rail.read_joules()
    assert rail.read_joules() == pytest.approx(5.0) and rail._jtop.interval == 0.05


def test_jetson_service_down(monkeypatch):
    _fake_jtop(monkeypatch, start_error="The jtop.service is not active")
    ok, why = en.JetsonMeter().available()
    assert not ok and why == ("jetson-stats: cannot reach the jtop service (RuntimeError: The jtop.service is "
                              "not active)")


def test_jetson_background_sampler():
    seen = []

    def clock():
        seen.append(time.monotonic())
        return seen[-1]

    meter = en.JetsonMeter(period_s=0.002, read_watts=lambda: 4.0, clock=clock)
    meter.read_joules()  # two samples, then the thread
    deadline = time.monotonic() + 2.0
    while len(seen) < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    meter.close()  # stop the thread first: a tick between a read and close() would extend seen past the read
    joules = meter.read_joules()
    assert len(seen) >= 8 and not meter._thread.is_alive()
    assert joules == pytest.approx(4.0 * (seen[-1] - seen[0]))  # constant power: every trapezoid counted once


# ------------------------------------------------------------------------------------------- extra_info

def test_extra_info_divides_a_recorded_energy():
    info = en.energy_extra_info(3.0, 1.5, tokens=8 * 784, samples=8, meter=FixedMeter())
    assert info == {"energy_meter": "fixed", "energy_measures": "a recorded value", "energy_j": 3.0,
                    "energy_per_token_j": pytest.approx(3.0 / 6272), "energy_per_sample_j": 0.375,
                    "mean_power_w": 2.0}
    assert "energy_per_token_j" not in en.energy_extra_info(3.0, 1.5, tokens=0, samples=8, meter=FixedMeter())
    with pytest.raises(ValueError, match="negative"):
        en.energy_extra_info(-1.0, 1.5, 1, 1, FixedMeter())


def test_this_machine_reports_reasons_not_numbers():
    """Whatever this machine has, a meter is either available or says why not, in words."""
    for device in ("cpu", "cuda"):
        ok, why = en.meter_for(device).available()
        assert ok or (why.startswith(f"no energy meter for '{device}'") and "looked for" in why)
    if not os.path.isdir(en.RAPL_ROOT):
        assert "rapl" not in [m.name for m in en.detect_meters("cpu")]
