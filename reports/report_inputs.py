"""The report's inputs: loading each measured file (or saying it was not run), the commands that produce them,
and which machine a run comes from (this one, or a committed run of another)."""
from __future__ import annotations

import dataclasses
import json
import platform
import re
import tempfile
from pathlib import Path

from s4dconf.reference.validate import S4DInputError

from .claims import REPORTS_DIR
from .compare import MACHINE_FIELDS, load_run
from .page import NotRunNotice


COMMANDS = {
    "conformance": ["s4dconf run --out reports/out", "s4dconf check --json reports/out/conformance.json",
                    "pytest --conformance-json reports/out/conformance.json"],
    "accuracy": ["s4dconf eval --out reports/out/accuracy"],
    "sweep": ["s4dconf sweep training/models/smnist-float.npz --dataset smnist --grid weight_bits=4,6,8 "
              "--out reports/out/sweep"],
    "benchmarks": ["tox -e bench  # writes reports/out/benchmark.json",
                   "pytest -m benchmark conformance/benchmarks --benchmark-json reports/out/benchmark.json"],
    "claims": ["s4dconf claims --json reports/out/claims.json"],
    "resources": ["s4dconf run --out reports/out  # its step 'operation and resource counts' writes resources.md",
                  "s4dconf report --resources reports/out/resources.md"],
}
NUMERIC_EXTRA = ("us_per_token", "tokens_per_s", "samples_per_s", "quoted_chip_step_us")


# ---------------------------------------------------------------------------------------------------------------
# Inputs

@dataclasses.dataclass
class LoadedInput:
    data: object = None  # the parsed JSON (a compare.BenchRun for benchmarks); None when not given or not found
    path: str = ""
    missing: str = ""  # why it is absent, when a path was given


def load_input(src, what: str, read=None) -> LoadedInput:
    """An input: None, a path (absent file: missing, with the reason), or already-parsed data. `read` reads an
    existing file (default: JSON)."""
    if src is None:
        return LoadedInput()
    if not isinstance(src, (str, Path)):
        return LoadedInput(src, "(in memory)")
    p = Path(src)
    if not p.is_file():
        return LoadedInput(None, str(p), f"{what} file {p} does not exist")
    if read is not None:
        return LoadedInput(read(p), str(p))
    try:
        return LoadedInput(json.loads(p.read_text()), str(p))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise S4DInputError(f"{what} file {p}: {type(e).__name__}: {e}") from None


def load_benchmark_input(src) -> LoadedInput:
    """A pytest-benchmark file read by the one reader, `compare.load_run` (data: its BenchRun); already-parsed
    JSON goes through the same reader."""
    if src is None or isinstance(src, (str, Path)):
        return load_input(src, "benchmark", load_run)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "benchmark.json"
        p.write_text(json.dumps(src))
        return LoadedInput(load_run(p), "(in memory)")


def expect_input(cond: bool, what: str, path: str, msg: str) -> None:
    if not cond:
        raise S4DInputError(f"{what} file {path}: {msg}")


def fmt_number(x, spec: str = ".4g") -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return format(x, spec)
    return str(x)


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")


def not_run(key: str, what: str, missing: str = "") -> list:
    return [NotRunNotice(what + (f" ({missing})" if missing else ""), COMMANDS[key])]


# ---------------------------------------------------------------------------------------------------------------
# Where each run comes from: here (this machine) or another machine, labelled with it

COMMITTED_BENCH_DIR = REPORTS_DIR / "benchmarks"
COMMITTED_ACCURACY_DIR = REPORTS_DIR / "accuracy"


def this_machine() -> dict:
    """The machine building the report, in the fields pytest-benchmark records (`compare.MACHINE_FIELDS`)."""
    return {f: getattr(platform, f)() for f in MACHINE_FIELDS}


def in_folder(path: str, folder: Path) -> bool:
    try:
        return Path(path).resolve().parent == folder.resolve()
    except (OSError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class RunOrigin:
    """One benchmark run (file): whether it was measured here, and the machine it names."""

    file: str  # the file name
    here: bool
    committed: bool  # one of the runs committed under reports/benchmarks/
    machine: str  # node (CPU, system release)
    date: str  # the day it was measured

    @property
    def label(self) -> str:
        """"here", or the machine and the day: the label of every figure of this run."""
        if self.here:
            return "here"
        return f"{self.machine}, {'committed run' if self.committed else 'run'} of {self.date}"

    @property
    def heading(self) -> str:
        if self.here:
            return f"Here (this machine, {self.machine}): `{self.file}`, {self.date}"
        return f"Another machine: {self.label} (`{self.file}`)"


def run_origin(b: LoadedInput, host: dict) -> RunOrigin:
    mi = b.data.machine_info
    ours = mi.get("s4dconf") if isinstance(mi.get("s4dconf"), dict) else {}
    cpu = mi.get("cpu") if isinstance(mi.get("cpu"), dict) else {}
    brand = str(ours.get("cpu") or cpu.get("brand_raw") or mi.get("processor") or mi.get("machine") or "?")
    brand = re.sub(r"\s+", " ", re.sub(r"\((R|TM)\)|\bProcessor\b", "", brand)).strip() or brand
    release = " ".join(str(mi[k]) for k in ("system", "release") if mi.get(k))
    machine = f"{mi.get('node', '?')} ({brand}" + (f", {release})" if release else ")")
    committed = in_folder(b.path, COMMITTED_BENCH_DIR)
    here = not committed and all(mi.get(f) == host.get(f) for f in MACHINE_FIELDS)
    return RunOrigin(Path(b.path).name, here, committed, machine, str(b.data.datetime)[:10])
