"""Energy meters: measured joules per benchmark span, per token and per sample, or the reason there are none.

Every meter exposes a cumulative counter C(t) in joules (`read_joules`). Over a span [t0, t1]:

    E = (C(t1) - C(t0)) mod W     W: the counter's wrap value (`wrap_j`); no modulo when it never wraps
    per token = E / tokens,  per sample = E / samples,  mean power = E / (t1 - t0)

- NVML (`nvidia-ml-py`): C = nvmlDeviceGetTotalEnergyConsumption [mJ since driver load] * 1e-3; 64-bit, no wrap.
- RAPL (Linux powercap): C = sum over package domains d of unwrapped energy_uj_d * 1e-6; each domain wraps at its
  own max_energy_range_uj, so it is unwrapped per domain, at every read (one wrap at most between two reads).
- Jetson (`jetson-stats`): jtop reports power P [mW], not energy, so C(t) = integral of P dt, by the trapezoid rule
  over samples taken every `period_s` by a background thread: sum_i (t_i - t_{i-1}) * (P_i + P_{i-1}) / 2.

Meters measure a whole device (every process on it, idle power included), never the benchmark alone; `describe()`
says what. Numbers are measured only: when no meter exists the result is "not measured: <reason>", never a model.
"""
from __future__ import annotations

import abc
import re
import threading
import time
from pathlib import Path

RAPL_ROOT = Path("/sys/class/powercap")


class MeterUnavailable(RuntimeError):
    """read_joules() on a meter that is not available; the message is the reason."""


def counter_delta(before: float, after: float, wrap: float | None) -> float:
    """after - before of a counter that restarts from 0 at `wrap` (None: never wraps, so a decrease is an error)."""
    if after >= before:
        return after - before
    if wrap is None:
        raise ValueError(f"counter went backwards ({before} -> {after}) and does not wrap (driver reloaded?)")
    return after - before + wrap  # one wrap; two or more between the reads cannot be seen


def integrate_power(times_s, watts) -> float:
    """Trapezoid integral of power samples (t_i [s], P_i [W]) -> joules; fewer than two samples give 0."""
    if len(times_s) != len(watts):
        raise ValueError(f"{len(times_s)} times but {len(watts)} power samples")
    joules = 0.0
    for t0, t1, p0, p1 in zip(times_s, times_s[1:], watts, watts[1:]):
        if t1 < t0:
            raise ValueError(f"sample times go backwards ({t0} -> {t1})")
        joules += (t1 - t0) * (p0 + p1) / 2
    return joules


class EnergyMeter(abc.ABC):
    """A cumulative energy counter: read_joules() is monotone (up to wrap_j); available() says why not, if not."""

    name = "?"
    wrap_j: float | None = None  # where read_joules() restarts from 0; None: it never does
    _status: tuple[bool, str] | None = None

    def available(self) -> tuple[bool, str]:
        """(True, "") or (False, why not); probed once, then cached."""
        if self._status is None:
            self._status = self._probe()
        return self._status

    def _check(self) -> None:
        ok, why = self.available()
        if not ok:
            raise MeterUnavailable(why)

    @abc.abstractmethod
    def _probe(self) -> tuple[bool, str]: ...

    @abc.abstractmethod
    def read_joules(self) -> float: ...

    @abc.abstractmethod
    def describe(self) -> dict: ...

    def close(self) -> None:
        pass


class NvmlMeter(EnergyMeter):
    name = "nvml"
    wrap_j = None  # unsigned 64-bit mJ is never reached: a decrease means the driver reloaded, not a wrap

    def __init__(self, index: int = 0):
        self.index = index

    def _probe(self):
        try:
            import pynvml
        except ImportError as e:
            return False, f"NVML: pynvml not importable ({e}; pip install nvidia-ml-py)"
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except pynvml.NVMLError as e:
            if isinstance(e, getattr(pynvml, "NVMLError_NotSupported", ())):
                return False, f"NVML: GPU {self.index} does not support the total energy counter (pre-Volta?): {e}"
            return False, f"NVML: GPU {self.index} not usable ({type(e).__name__}: {e})"
        return True, ""

    def read_joules(self):
        self._check()
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) * 1e-3

    def describe(self):
        return {"meter": self.name, "measures": f"GPU {self.index} board power (NVML total energy)",
                "source": "nvmlDeviceGetTotalEnergyConsumption, mJ since driver load",
                "scope": "the whole GPU: every process on it and its idle power; the counter advances in the "
                         "driver's power-sampling steps, so spans should last well over a second"}


class RaplMeter(EnergyMeter):
    name = "rapl"

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else RAPL_ROOT
        self.domains: list[Path] = []
        self._last: dict[Path, int] = {}  # raw energy_uj per domain at the previous read
        self._total_uj = 0

    def _probe(self):
        if not self.root.is_dir():
            return False, f"RAPL: {self.root} does not exist (no powercap driver, or not Linux)"
        # intel-rapl:N are the packages; intel-rapl:N:M (core, uncore, dram) lie inside them and would count twice,
        # and a "psys" domain covers the whole platform, packages included
        self.domains = sorted(d for d in self.root.glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", d.name))
        try:
            self.domains = [d for d in self.domains if (d / "name").read_text().strip().startswith("package")]
            self.wraps = {d: int((d / "max_energy_range_uj").read_text()) for d in self.domains}
            if not self.domains:
                return False, f"RAPL: no package domain (intel-rapl:N named package-N) under {self.root}"
            self.read_joules(check=False)
        except OSError as e:  # energy_uj is root-only since Linux 5.10 (CVE-2020-8694)
            return False, f"RAPL: cannot read {e.filename}: {type(e).__name__}: {e.strerror}"
        return True, ""

    def read_joules(self, check: bool = True):
        if check:
            self._check()
        for d in self.domains:
            raw = int((d / "energy_uj").read_text())
            prev = self._last.get(d)
            # max_energy_range_uj taken as the modulus; +1 or not differs by 1 uJ, below the counter's step
            self._total_uj += raw if prev is None else counter_delta(prev, raw, self.wraps[d])
            self._last[d] = raw
        return self._total_uj * 1e-6

    def describe(self):
        return {"meter": self.name, "measures": "CPU package (RAPL), " + ", ".join(d.name for d in self.domains),
                "source": f"{self.root}/intel-rapl:N/energy_uj", "scope": "whole CPU packages, all processes"}


class JetsonMeter(EnergyMeter):
    name = "jetson"

    def __init__(self, period_s: float = 0.05, rail: str | None = None, *, read_watts=None,
                 clock=time.monotonic, background: bool = True):
        """rail: a jtop power rail (e.g. "VDD_GPU_SOC"), None for the module total; read_watts/clock: injected
        sources (tests); background False: sample only at read_joules()/sample() calls."""
        self.period_s, self.rail, self.background = period_s, rail, background
        self._read_watts, self._clock = read_watts, clock
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread, self._last, self._joules = None, None, 0.0

    def _probe(self):
        if self._read_watts is not None:
            return True, ""
        try:
            from jtop import jtop
        except ImportError as e:
            return False, f"jetson-stats: jtop not importable ({e}; pip install jetson-stats)"
        try:
            self._jtop = jtop(interval=self.period_s)
            self._jtop.start()
        except Exception as e:  # noqa: BLE001 - JtopException (jtop.service not running) and OS errors alike
            return False, f"jetson-stats: cannot reach the jtop service ({type(e).__name__}: {e})"
        self._read_watts = self._jtop_watts
        return True, ""

    def _jtop_watts(self) -> float:
        power = self._jtop.power  # jetson-stats 4: {"rail": {name: {"power": mW}}, "tot": {"power": mW}}, renewed
        return (power["tot"] if self.rail is None else power["rail"][self.rail])["power"] / 1e3

    def sample(self) -> tuple[float, float]:
        """Take one (t, W) sample and add the trapezoid since the previous one."""
        with self._lock:  # the sampler thread and read_joules() both sample
            t, w = self._clock(), float(self._read_watts())
            if self._last is not None:
                self._joules += integrate_power([self._last[0], t], [self._last[1], w])
            self._last = (t, w)
            return t, w

    def _run(self):
        while not self._stop.wait(self.period_s):
            self.sample()

    def read_joules(self):
        self._check()
        if self.background and self._thread is None:
            self.sample()
            self._thread = threading.Thread(target=self._run, name="jetson-energy", daemon=True)
            self._thread.start()
        self.sample()  # so the span ends at this read, not at the last tick
        return self._joules

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if getattr(self, "_jtop", None) is not None:
            self._jtop.close()

    def describe(self):
        return {"meter": self.name, "measures": f"Jetson {self.rail or 'module total'} power (jtop), integrated",
                "source": f"jtop power [mW], trapezoid over samples every {self.period_s * 1e3:g} ms",
                "scope": "the rail's whole load, all processes"}


class NoMeter(EnergyMeter):
    name = "none"

    def __init__(self, reason: str):
        self.reason = reason

    def _probe(self):
        return False, self.reason

    def read_joules(self):
        self._check()

    def describe(self):
        return {"meter": self.name, "measures": "nothing", "reason": self.reason}


class EnergySpan:
    """start()/stop() around a workload; stop() returns joules, or None with `reason` set."""

    def __init__(self, meter: EnergyMeter, clock=time.perf_counter):
        self.meter, self._clock = meter, clock
        self.joules = self.seconds = self.reason = None

    def start(self):
        self.joules, self._e0 = None, None
        ok, why = self.meter.available()
        self.reason = None if ok else why
        if ok:
            self._e0 = self._read()
        self._t0 = self._clock()
        return self

    def _read(self):
        try:
            return self.meter.read_joules()
        except Exception as e:  # noqa: BLE001 - a failed read must not fail a benchmark: it is 'not measured'
            self.reason = f"{self.meter.name}: reading failed ({type(e).__name__}: {e})"

    def stop(self) -> float | None:
        self.seconds = self._clock() - self._t0
        e1 = self._read() if self._e0 is not None else None
        if e1 is not None:
            try:
                self.joules = counter_delta(self._e0, e1, self.meter.wrap_j)
            except ValueError as e:
                self.reason = f"{self.meter.name}: {e}"
        return self.joules

    __enter__ = start

    def __exit__(self, *exc):
        self.stop()


def measure(meter: EnergyMeter, fn, *args, **kwargs):
    """(fn(*args, **kwargs), joules or None, seconds)."""
    span = EnergySpan(meter).start()
    result = fn(*args, **kwargs)
    return result, span.stop(), span.seconds


def _candidates(device: str) -> list[EnergyMeter]:
    kind, _, index = device.partition(":")
    if kind == "cuda":  # a desktop/server GPU has NVML; a Jetson's integrated GPU has jtop instead
        return [NvmlMeter(int(index or 0)), JetsonMeter()]
    if kind == "cpu":
        return [RaplMeter()]
    return []


def detect_meters(device: str | None = None) -> list[EnergyMeter]:
    """The available meters for a torch-style device ("cuda", "cuda:1", "cpu"), or for both kinds."""
    return [m for d in ([device] if device else ["cuda", "cpu"]) for m in _candidates(d) if m.available()[0]]


def meter_for(device: str) -> EnergyMeter:
    """The first available meter for the device, else a NoMeter whose reason lists what was looked for."""
    tried = _candidates(device)
    for m in tried:
        if m.available()[0]:
            return m
    looked = "; ".join(m.available()[1] for m in tried) or f"no meter is known for device {device!r}"
    return NoMeter(f"no energy meter for {device!r} on this machine (looked for: {looked})")


def energy_extra_info(joules: float | None, seconds: float, tokens: int, samples: int, meter: EnergyMeter,
                      reason: str | None = None) -> dict:
    """pytest-benchmark extra_info fields: measured energy and its per-token/-sample/-second ratios, or the reason."""
    if joules is None:
        why = reason or meter.available()[1] or f"{meter.name} gave no reading"
        return {"energy_meter": meter.name, "energy": f"not measured: {why}"}
    if joules < 0:
        raise ValueError(f"negative energy {joules} J: not a measurement")
    info = {"energy_meter": meter.name, "energy_measures": meter.describe()["measures"], "energy_j": joules}
    if tokens > 0:
        info["energy_per_token_j"] = joules / tokens
    if samples > 0:
        info["energy_per_sample_j"] = joules / samples
    if seconds > 0:
        info["mean_power_w"] = joules / seconds
    return info
