"""pytest plugin of the conformance suite: options, markers, report header, backend selection, skip lists,
and the JSON of measured records. Loaded with `-p s4dconf.conformance.plugin` (pyproject.toml does it).
"""
from __future__ import annotations

import json
import os
import platform
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy

import s4dconf
from s4dconf.backends import BUILT_IN, REGISTRY, Backend, backend_sources, resolve_backend
from s4dconf.goldens.store import GOLDEN_DIR, GoldenSet, expected_case_ids, expected_fxp_case_ids
from s4dconf.reference.validate import S4DInputError

from .harness import skiplist_for

MARKERS = {
    "conformance": "a check of a backend or of the reference against SPEC.md",
    "slow": "takes more than a few seconds (long sequences, the paper config)",
    "hardware": "needs a chip or a GPU; skips with the reason when absent",
    "benchmark": "a pytest-benchmark measurement (JSON with --benchmark-json)",
}


def pytest_addoption(parser):
    g = parser.getgroup("s4dconf", "s4dconf conformance")
    g.addoption("--backend", action="append", default=[], metavar="NAME",
                help="backend under test (repeatable; default: every registered one): a registered name (built in: "
                     f"{', '.join(REGISTRY)}; entry points of group s4dconf.backends: `s4dconf backends` lists them) "
                     "or an import path module:Class")
    g.addoption("--require-backend", action="append", default=[], metavar="NAME",
                help="fail instead of skip when this backend (a name or module:Class) is not available")
    g.addoption("--golden-dir", default=None, help=f"golden directory (default: {GOLDEN_DIR})")
    g.addoption("--conformance-json", default=None, metavar="PATH",
                help="write every measured record (case, metric, value, tolerance, verdict) to PATH")
    g.addoption("--max-examples", type=int, default=None, help="hypothesis examples per property")
    g.addoption("--bench-set", choices=["full", "smoke"], default="full",
                help="benchmarks: the full set (configs paper and loihi-profile, L 784 and 1024, batch 1/8/64) or the "
                     "smoke set CI compares (loihi-profile, L 784, batch 1/8/64, few rounds)")
    g.addoption("--derandomize", action="store_true", default=None,
                help="derandomise hypothesis (on by default when the CI environment variable is set)")


def _registered_backends(chosen) -> tuple[dict, dict, list[str]]:
    """(name -> instance, name -> origin, header lines of the sources left out) for every registered backend
    (SPEC.md section 8) and the `chosen` sources (what --backend and --require-backend name). A refused or broken
    entry point that is not chosen is left out and said in the header; a chosen one is a usage error."""
    backends, sources, left_out = {}, {}, []
    for src in backend_sources() + list(chosen):
        if src.problem:  # never imported; naming it was an error already (resolve_backend)
            left_out.append(f"left out: {src.where} is refused: {src.problem}")
            continue
        known = sources.get(src.name)
        if known is not None:
            if known != src:
                raise pytest.UsageError(f"two backends are named {src.name!r}: {known.where} and {src.where}; "
                                        "select one by a name that only it has")
            continue
        try:
            backends[src.name] = src.create()
        except S4DInputError as e:
            if src in chosen or src.origin == BUILT_IN:
                raise pytest.UsageError(str(e)) from None
            left_out.append(f"left out: {e}")
            continue
        sources[src.name] = src
    return backends, {n: s.origin for n, s in sources.items()}, left_out


class SuiteState:
    def __init__(self, config):
        named, required = config.getoption("backend"), config.getoption("require_backend")
        try:  # the names as the suite knows them: an import path module:Class is named module.Class
            sources = {spec: resolve_backend(spec) for spec in dict.fromkeys(named + required)}
        except S4DInputError as e:
            raise pytest.UsageError(str(e)) from None
        self.registered, self.origins, self.left_out = _registered_backends(list(sources.values()))
        named, required = [sources[s].name for s in named], [sources[s].name for s in required]
        self.required = set(required)
        self.availability = {n: b.availability() for n, b in self.registered.items()}
        # default: every available backend; --backend narrows to the named ones; --require-backend adds one
        # that must be available. A named or required backend that is absent skips (or fails) with its reason.
        chosen = (named or [n for n in self.registered if self.availability[n].available]) + required
        self.backend_names = list(dict.fromkeys(chosen))
        self.backends = {n: self.registered[n] for n in self.backend_names}
        self.golden_dir = Path(config.getoption("golden_dir") or GOLDEN_DIR)
        self._golden = None
        self.records: list = []
        self.skiplists = {n: skiplist_for(n) for n in self.backend_names}

    @property
    def golden(self) -> GoldenSet:
        if self._golden is None:
            self._golden = GoldenSet(self.golden_dir)
        return self._golden


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    _hypothesis_profile(config)
    _benchmark_json_folder(config)
    config._s4d = SuiteState(config)


def _benchmark_json_folder(config):
    """Create the folder of --benchmark-json now: pytest-benchmark opens the file only after the whole (long) run,
    so a missing folder (reports/out/ in a fresh clone) would lose every measurement at the very end."""
    path = getattr(config.option, "benchmark_json", None)
    if not isinstance(path, (str, os.PathLike)):  # absent, or an open file (older pytest-benchmark opens it early)
        return
    folder = Path(path).resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise pytest.UsageError(f"--benchmark-json {path}: cannot create its folder {folder}: {e}") from None


def _hypothesis_profile(config):
    try:
        from hypothesis import settings
    except ImportError:
        return
    derandomize = config.getoption("derandomize")
    if derandomize is None:
        derandomize = bool(os.environ.get("CI"))
    kwargs = {"derandomize": derandomize, "deadline": None, "print_blob": True}
    if config.getoption("max_examples"):
        kwargs["max_examples"] = config.getoption("max_examples")
    settings.register_profile("s4dconf", **kwargs)
    settings.load_profile("s4dconf")


def pytest_report_header(config):
    st = config._s4d
    lines = [
        f"s4dconf {s4dconf.__version__}, SPEC.md version {s4dconf.SPEC_VERSION}; numpy {np.__version__}, "
        f"scipy {scipy.__version__}, Python {platform.python_version()} on {platform.machine()}",
        f"golden dir: {st.golden_dir}",
    ]
    for name, b in st.registered.items():
        av = st.availability[name]
        label = name if st.origins[name] == BUILT_IN else f"{name} ({st.origins[name]})"
        if name not in st.backends:
            lines.append(f"backend {label}: not selected ({av})")
            continue
        if av.available:
            info = b.info()
            delays = ("per model (see its delays())" if type(b).delays is not Backend.delays
                      else f"layers={info.delays.layers} logits={info.delays.logits}")
            lines.append(
                f"backend {label}: {info.numeric_class}, version {info.version}, device {info.device}, "
                f"paths {'/'.join(info.paths)}, delays {delays}"
            )
        else:
            lines.append(f"backend {label}: {av}" + (" (REQUIRED)" if name in st.required else ""))
    return lines + st.left_out


def pytest_generate_tests(metafunc):
    st = metafunc.config._s4d
    names = metafunc.fixturenames
    # the cases the spec defines, not the manifest's list: a case missing from the goldens fails, naming it
    if "fxp_case_id" in names:
        ids = expected_fxp_case_ids()
        metafunc.parametrize("fxp_case_id", ids, ids=ids)
    if "golden_case_id" in names:
        ids = expected_case_ids()
        marks = {cid: [pytest.mark.slow] if cid.endswith("/long") or cid.startswith("paper/") else [] for cid in ids}
        metafunc.parametrize("golden_case_id", [pytest.param(c, marks=marks[c], id=c) for c in ids])
    if "backend_name" in names and "path" in names:
        combos = []
        for n in st.backend_names:
            paths = st.backends[n].info().paths if st.availability[n].available else ("default",)
            combos += [pytest.param(n, p, id=f"{n}:{p}") for p in paths]
        metafunc.parametrize("backend_name,path", combos)
    elif "backend_name" in names:
        chosen = st.backend_names
        if "fxp_case_id" in names:  # integer goldens: fixed-point backends (and unavailable ones, to say why)
            chosen = [n for n in chosen if not st.availability[n].available
                      or st.backends[n].info().numeric_class == "fixed-point"]
        metafunc.parametrize("backend_name", chosen)


@pytest.fixture
def suite(request) -> SuiteState:
    return request.config._s4d


@pytest.fixture
def backend(request, backend_name, suite):
    """The backend instance; skips (or fails, if required) with the reason when it is not available."""
    av = suite.availability[backend_name]
    if not av.available:
        if backend_name in suite.required:
            pytest.fail(f"required backend {backend_name} {av}")
        pytest.skip(f"backend {backend_name} {av}")
    return suite.backends[backend_name]


@pytest.fixture
def record(suite):
    """Append measured Records to the run's JSON; returns the list added by this test."""
    mine = []

    def add(records):
        mine.extend(records)
        suite.records.extend(records)
        return records

    add.mine = mine
    return add


@pytest.hookimpl(tryfirst=True)  # before -m/-k deselect, so staleness is judged on everything collected
def pytest_collection_modifyitems(config, items):
    st = config._s4d
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("backend_name") if callspec else None
        for entry in st.skiplists.get(name, []):
            if entry.pattern in item.nodeid:
                entry.used = True
                reason = f"{name} skip list line {entry.line}: {entry.reason}"
                if entry.action == "skip":
                    item.add_marker(pytest.mark.skip(reason=reason))
                else:
                    item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    here = Path(__file__).resolve().parent
    if any(Path(a.split("::")[0]).resolve() != here for a in config.args):
        return  # a run of part of the suite cannot tell a stale entry from one it did not collect
    for name, entries in st.skiplists.items():
        for entry in entries:
            if not entry.used:
                warnings.warn(
                    f"stale entry in conformance/skips/{name}.txt line {entry.line}: {entry.pattern!r} matches no "
                    "test; remove it", pytest.PytestWarning)


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("conformance_json")
    if not path:
        return
    st = session.config._s4d
    out = {
        "spec_version": s4dconf.SPEC_VERSION,
        "s4dconf": s4dconf.__version__,
        "platform": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                     "machine": platform.machine(), "system": platform.system()},
        "backends": {n: (st.backends[n].info().__dict__ | {"delays": st.backends[n].info().delays.__dict__})
                     if st.availability[n].available else {"available": False, "reason": st.availability[n].reason}
                     for n in st.backend_names},
        "exitstatus": int(exitstatus),
        "records": [r.as_json() for r in st.records],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1, default=str) + "\n")


OUTCOMES_ENV = "S4DCONF_OUTCOMES_JSON"  # `s4dconf check` sets it: where the per-test outcomes go
_OUTCOME_KEYS = ("passed", "failed", "skipped", "xfailed", "xpassed", "error")


def _backend_of(nodeid: str, names) -> str | None:
    """The backend a test id names in its parameters (the longest registered name that is a whole id part)."""
    params = nodeid.partition("[")[2]
    for name in sorted(names, key=len, reverse=True):
        if re.search(rf"(^|[-:\[]){re.escape(name)}($|[-:\]])", params):
            return name
    return None


def _reason(report, outcome: str) -> str:
    """A skip's or failure's reason in one line (pytest's "Skipped: " prefix dropped)."""
    if outcome in ("xfailed", "xpassed"):
        return getattr(report, "wasxfail", "") or ""
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        text = str(lr[2])
    elif getattr(lr, "reprcrash", None) is not None:
        text = lr.reprcrash.message
    else:
        text = str(lr or "")
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """For `s4dconf check`: every test's outcome, backend and reason as JSON at $S4DCONF_OUTCOMES_JSON (its summary
    counts and groups them); nothing without that variable."""
    path = os.environ.get(OUTCOMES_ENV)
    if not path:
        return
    names = list(config._s4d.registered)
    tests = []
    for outcome in _OUTCOME_KEYS:
        for rep in terminalreporter.stats.get(outcome, []):
            if not hasattr(rep, "nodeid"):
                continue
            tests.append({"nodeid": rep.nodeid, "outcome": outcome, "backend": _backend_of(rep.nodeid, names),
                          "when": getattr(rep, "when", "collect"),
                          "reason": "" if outcome == "passed" else _reason(rep, outcome)})
    Path(path).write_text(json.dumps({"exitstatus": int(exitstatus), "tests": tests}, indent=1) + "\n")


@pytest.hookimpl(optionalhook=True)  # a pytest-benchmark hook; without that plugin pytest never calls it
def pytest_benchmark_update_machine_info(config, machine_info):
    """Add the versions that the benchmark figures depend on to the machine_info of --benchmark-json."""
    info = {"s4dconf": s4dconf.__version__, "spec_version": s4dconf.SPEC_VERSION,
            "numpy": np.__version__, "scipy": scipy.__version__}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["blas"] = "threadpoolctl not installed: BLAS library unknown"
    else:
        try:
            info["blas"] = [{k: v for k, v in pool.items() if isinstance(v, (str, int, float, type(None)))}
                            for pool in threadpool_info()]
        except Exception as e:  # noqa: BLE001 - introspection must never fail a benchmark run
            info["blas"] = f"threadpool_info() failed: {type(e).__name__}: {e}"
    info.update(_device_info())
    machine_info["s4dconf"] = info


def _device_info() -> dict:
    """CPU model, torch and CUDA/GPU versions (when torch is importable), Lava's version (when installed)."""
    import importlib.metadata
    import platform

    out = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            out["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                              out["cpu"])
    except OSError:
        pass
    for dist in ("torch", "lava-nc"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    if out["torch"] != "not installed":
        import torch

        out["cuda"] = torch.version.cuda or "none (CPU build)"
        out["gpus"] = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                       if torch.cuda.is_available() else [])
        if out["gpus"]:
            try:
                import pynvml

                pynvml.nvmlInit()
                out["gpu_driver"] = pynvml.nvmlSystemGetDriverVersion()
            except Exception as e:  # noqa: BLE001 - the driver version is context, never a reason to fail
                out["gpu_driver"] = f"unknown ({type(e).__name__})"
    return out
