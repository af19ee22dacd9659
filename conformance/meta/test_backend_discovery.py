"""Backends from outside the repository (SPEC.md section 8): entry points of group `s4dconf.backends` and import
paths module:Class, found and named by one resolver (backends/discovery.py, resolve_backend) that the pytest
plugin and the CLI share; every bad input refused with a message that says what, where and what to do.

Distributions are faked here as `*.dist-info` folders on sys.path (what importlib.metadata reads for an installed
package); one slow test builds and installs a real package into a fresh virtual environment instead."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

from s4dconf import cli
from s4dconf.backends import REGISTRY, backend_names, backend_sources, get_backend, resolve_backend
from s4dconf.backends.reference import ReferenceBackend
from s4dconf.check_output import conformance_dir
from s4dconf.conformance.plugin import _registered_backends
from s4dconf.reference.validate import S4DInputError

# The outside modules of these tests (names unlikely to exist anywhere else). `s4dtest_outside` holds one class per
# kind of backend class; `s4dtest_broken` fails while it imports.
OUTSIDE_MODULE = '''
import dataclasses

from s4dconf.backends import Backend
from s4dconf.backends.reference import ReferenceBackend


class Renamed(ReferenceBackend):
    """The float64 reference under another name: conformant by construction."""


class Perturbed(ReferenceBackend):
    """Wrong on purpose: every whole-batch logit off by 1e-3, far past the float64 tolerance (SPEC.md 11.1)."""

    def run(self, handle, u, path):
        out = super().run(handle, u, path)
        return dataclasses.replace(out, step_logits=out.step_logits + 1e-3)


class NotABackend:
    pass


def a_function():
    pass


class Abstract(Backend):
    pass


class Exploding(ReferenceBackend):
    def __init__(self):
        raise RuntimeError("no device handle")
'''
BROKEN_MODULE = 'raise RuntimeError("broken on purpose")\n'
NEVER_MODULE = 'raise AssertionError("a refused entry point must never be imported")\n'


@pytest.fixture(scope="module")
def modules_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("outside-modules")
    (d / "s4dtest_outside.py").write_text(OUTSIDE_MODULE)
    (d / "s4dtest_broken.py").write_text(BROKEN_MODULE)
    (d / "s4dtest_never.py").write_text(NEVER_MODULE)
    return d


@pytest.fixture
def outside(modules_dir, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(modules_dir))
    return modules_dir


def fake_distribution(site_dir: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """What pip leaves for an installed distribution, as far as importlib.metadata reads it: METADATA and
    entry_points.txt in NAME-VERSION.dist-info."""
    d = site_dir / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (d / "entry_points.txt").write_text("[s4dconf.backends]\n" + "".join(f"{k} = {v}\n" for k, v in
                                                                        entry_points.items()))


@pytest.fixture
def installed(outside, tmp_path, monkeypatch):
    """installed(dist name, version, {entry point name: "module:Class"}): a fake installed distribution."""
    site_dir = tmp_path / "site"

    def install(name, version, entry_points):
        fake_distribution(site_dir, name, version, entry_points)
        monkeypatch.syspath_prepend(str(site_dir))

    return install


def table_row(out: str, name: str) -> list[str]:
    """The cells of the row of `s4dconf backends` whose first cell is `name`: each column (as wide as its dashes
    under the header) read over the row's wrapped lines and joined, blanks collapsed."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    spans = [list(m.span()) for m in re.finditer(r"-+", lines[rule])]
    spans[-1][1] = None  # the last column runs to the end of the line
    first = slice(*spans[0])
    start = next(i for i in range(rule + 1, len(lines)) if lines[i][first].strip() == name)
    end = next((i for i in range(start + 1, len(lines)) if lines[i][first].strip() or not lines[i].strip()),
               len(lines))
    return [" ".join(" ".join(line[a:b] for line in lines[start:end]).split()) for a, b in spans]


# ------------------------------------------------------------------------------------------------- import paths

def test_import_path_is_named_by_the_qualified_class_name(outside):
    src = resolve_backend("s4dtest_outside:Renamed")
    assert (src.name, src.origin, src.target) == ("s4dtest_outside.Renamed", "import path", "s4dtest_outside:Renamed")
    b = get_backend("s4dtest_outside:Renamed")
    assert isinstance(b, ReferenceBackend) and type(b) is not ReferenceBackend
    assert b.name == b.info().name == "s4dtest_outside.Renamed"  # not the inherited "reference"


@pytest.mark.parametrize("spec", ["mod:", ":Cls", "a:b:c", "mod:Cls extra", "1mod:Cls", "mod:Cls[x]", "mod-x:Cls"])
def test_malformed_import_path(spec):
    with pytest.raises(S4DInputError, match=re.escape(f"{spec!r} is not an import path of the form 'module:Class'")):
        get_backend(spec)


def test_unknown_name_without_colon_lists_the_known_and_the_import_path_form():
    with pytest.raises(S4DInputError, match=r"unknown backend 'mod\.Cls'; known: reference, .*; or an import path "
                                            r"module:Class"):
        get_backend("mod.Cls")


@pytest.mark.parametrize("spec, message", [
    ("s4dtest_no_such_module:X", "cannot import module 's4dtest_no_such_module' (ModuleNotFoundError"),
    ("s4dtest_broken:X", "cannot import module 's4dtest_broken' (RuntimeError: broken on purpose); install"),
    ("s4dtest_outside:Nope", "module 's4dtest_outside' has no 'Nope'"),
    ("s4dtest_outside:NotABackend", "is class NotABackend; a backend is a subclass of s4dconf.backends.Backend"),
    ("s4dtest_outside:a_function", "is a function (not a class); a backend is a subclass of"),
    ("s4dtest_outside:Abstract", "does not implement info, prepare, run of s4dconf.backends.Backend"),
    ("s4dtest_outside:Exploding", "Exploding() failed (RuntimeError: no device handle); a backend class is "
                                  "constructed with no arguments"),
])
def test_import_path_that_cannot_be_a_backend(outside, spec, message):
    with pytest.raises(S4DInputError, match=re.escape(message)) as e:
        get_backend(spec)
    assert str(e.value).startswith(f"backend {spec.replace(':', '.')!r} (import path, {spec})")


# ------------------------------------------------------------------------------------------------- entry points

def test_entry_point_is_found_named_and_its_origin_given(installed):
    installed("s4dtest-good", "1.2", {"good-ref": "s4dtest_outside:Renamed"})
    assert backend_names() == [*REGISTRY, "good-ref"]
    src = resolve_backend("good-ref")
    assert (src.origin, src.kind, src.target) == ("entry point of s4dtest-good 1.2", "entry point",
                                                  "s4dtest_outside:Renamed")
    b = get_backend("good-ref")
    assert type(b).__name__ == "Renamed" and b.name == b.info().name == "good-ref"
    backends, origins, left_out = _registered_backends([])
    assert list(backends)[-1] == "good-ref" and origins["good-ref"] == src.origin and left_out == []


def test_a_built_in_name_always_means_the_built_in(installed, capsys):
    installed("s4dtest-shadow", "0.1", {"reference": "s4dtest_never:X"})
    assert type(get_backend("reference")) is ReferenceBackend
    refused = [s for s in backend_sources() if s.origin == "entry point of s4dtest-shadow 0.1"]
    assert len(refused) == 1
    assert "'reference' is the name of a built-in backend, which always wins" in refused[0].problem
    assert "reference" in backend_names() and backend_names().count("reference") == 1
    _, _, left_out = _registered_backends([])
    assert any("s4dtest-shadow" in line and "is refused" in line for line in left_out)
    assert cli.main(["backends"]) == 0
    assert "s4dtest_never" not in sys.modules  # refused: never imported
    out = " ".join(capsys.readouterr().out.split())
    assert "reference: entry point of s4dtest-shadow 0.1, s4dtest_never:X" in out


def test_a_name_two_distributions_declare_is_refused(installed):
    installed("s4dtest-one", "1.0", {"twin": "s4dtest_outside:Renamed"})
    installed("s4dtest-two", "2.0", {"twin": "s4dtest_outside:Renamed"})
    with pytest.raises(S4DInputError, match=r"'twin' is declared by 2 distributions \(entry point of s4dtest-(one 1.0|"
                                            r"two 2.0); entry point of s4dtest-(one 1.0|two 2.0)\); select one by "
                                            r"its import path"):
        get_backend("twin")
    assert "twin" not in backend_names()


def test_an_entry_point_name_a_test_id_cannot_carry_is_refused(installed):
    installed("s4dtest-spaced", "1.0", {"my ref": "s4dtest_outside:Renamed"})
    with pytest.raises(S4DInputError, match=r"'my ref' is not a backend name \(letters, digits"):
        get_backend("my ref")


def test_malformed_entry_point_value(installed):
    installed("s4dtest-malformed", "1.0", {"no-class": "s4dtest_outside"})
    with pytest.raises(S4DInputError, match=re.escape("backend 'no-class' (entry point of s4dtest-malformed 1.0, "
                                                      "s4dtest_outside): 's4dtest_outside' is not an import path")):
        get_backend("no-class")


def test_a_broken_entry_point_is_left_out_unless_named(installed, capsys):
    installed("s4dtest-broken", "0.9", {"broken": "s4dtest_broken:X", "wrong-class": "s4dtest_outside:NotABackend"})
    backends, _, left_out = _registered_backends([])
    assert "broken" not in backends and "wrong-class" not in backends and "reference" in backends
    assert any(line.startswith("left out: backend 'broken' (entry point of s4dtest-broken 0.9") and
               "RuntimeError: broken on purpose" in line for line in left_out)
    with pytest.raises(pytest.UsageError, match="cannot import module 's4dtest_broken'"):
        _registered_backends([resolve_backend("broken")])
    # the listing names it with the reason and succeeds; naming it is bad input (exit 2)
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    broken, wrong = table_row(out, "broken"), table_row(out, "wrong-class")
    assert broken[1:5] == wrong[1:5] == ["entry point", "no", "-", "-"]
    assert broken[5].startswith("cannot import module 's4dtest_broken' (RuntimeError: broken on purpose)")
    assert "is class NotABackend; a backend is a subclass of s4dconf.backends.Backend" in wrong[5]
    assert cli.main(["backends", "--backend", "broken"]) == 2
    assert "cannot import module 's4dtest_broken'" in capsys.readouterr().err


def test_two_backends_under_one_name_are_a_usage_error(installed):
    installed("s4dtest-dotted", "1.0", {"s4dtest_outside.Renamed": "s4dtest_outside:Perturbed"})
    with pytest.raises(pytest.UsageError, match="two backends are named 's4dtest_outside.Renamed'"):
        _registered_backends([resolve_backend("s4dtest_outside:Renamed")])


# ------------------------------------------------------------------------------------------------- the CLI

def test_backends_lists_an_import_path_with_its_origin(outside, capsys):
    assert cli.main(["backends", "--backend", "s4dtest_outside:Renamed"]) == 0
    out = capsys.readouterr().out
    assert table_row(out, "reference")[1:5] == ["built in", "yes", "float64", "cpu"]
    assert "s4dtest_outside.Renamed: import path, s4dtest_outside:Renamed" in " ".join(out.split())


@pytest.mark.parametrize("command", ["check", "backends"])
def test_cli_refuses_a_bad_import_path_before_any_work(outside, capsys, command, monkeypatch):
    monkeypatch.setattr(cli, "run_conformance", lambda *a, **k: pytest.fail("the suite must not start"))
    assert cli.main([command, "--backend", "s4dtest_outside:NotABackend"]) == 2
    assert "is class NotABackend; a backend is a subclass of" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- the suite

def _suite_command(python, *backends, selection: str) -> list[str]:
    """The installed conformance suite as `s4dconf check` runs it (check_output.run_conformance), narrowed."""
    cmd = [str(python), "-m", "pytest", str(conformance_dir()), "-m", "conformance", "-p",
           "s4dconf.conformance.plugin", "--import-mode=importlib", "-p", "no:cacheprovider", "-v", "-k", selection]
    for b in backends:
        cmd += ["--backend", b]
    return cmd


def _outcomes(stdout: str, backend: str) -> dict[str, str]:
    """test id -> PASSED/FAILED/... for the tests of `backend` in pytest -v output."""
    pattern = rf"^(\S+\[[^\]]*\b{re.escape(backend)}\b[^\]]*\]) (PASSED|FAILED|SKIPPED|ERROR)"
    return {m[1]: m[2] for m in re.finditer(pattern, stdout, re.M)}


@pytest.mark.slow  # a pytest run of the installed suite in a subprocess: collection alone is seconds
def test_suite_runs_an_import_path_backend_from_pythonpath(modules_dir, tmp_path):
    """`pytest -m conformance --backend module:Class` with the module on PYTHONPATH only, nothing installed: the
    conformant class passes, the perturbed one fails its whole-batch golden cases (the check can fail)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(modules_dir), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(_suite_command(sys.executable, "s4dtest_outside:Renamed", "s4dtest_outside:Perturbed",
                                      selection="tiny and impulse"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert "backend s4dtest_outside.Renamed (import path): float64" in r.stdout, r.stdout[-3000:]
    good, bad = _outcomes(r.stdout, "s4dtest_outside.Renamed"), _outcomes(r.stdout, "s4dtest_outside.Perturbed")
    assert len(good) >= 3 and set(good.values()) == {"PASSED"}, r.stdout[-3000:]
    golden_bad = {k: v for k, v in bad.items() if "test_golden_case[" in k}
    assert len(golden_bad) == 2 and set(golden_bad.values()) == {"FAILED"}, r.stdout[-3000:]
    assert r.returncode == 1


PACKAGE = {
    "pyproject.toml": '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "s4dconf-myref"
version = "0.3.1"
dependencies = ["s4dconf"]

[project.entry-points."s4dconf.backends"]
myref = "s4dconf_myref:MyReference"

[tool.setuptools]
py-modules = ["s4dconf_myref"]
''',
    "s4dconf_myref.py": '''"""An out-of-tree backend: the float64 reference under its own name and version."""
import dataclasses

from s4dconf.backends.reference import ReferenceBackend


class MyReference(ReferenceBackend):
    def info(self):
        return dataclasses.replace(super().info(), version="s4dconf-myref 0.3.1")
''',
}


def _offline_build_blocker() -> str:
    """'' when pip can build and install a setuptools package here with nothing downloaded, else why not."""
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed in this environment"
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed in this environment, and a test downloads nothing to build with"
    # setuptools builds wheels on its own from 70.1; before, only with the `wheel` package
    if tuple(int(x) for x in re.findall(r"\d+", version)[:2]) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return (f"setuptools {version} builds a wheel only with the `wheel` package, which this environment lacks, "
                "and a test downloads nothing to build with")
    return ""


@pytest.mark.slow
def test_an_installed_out_of_tree_package_passes_conformance(tmp_path):
    """A real package declaring entry point `myref`, built and installed with pip into a fresh virtual environment
    (nothing downloaded), passes `pytest -m conformance --backend myref` there, and `s4dconf backends` there names
    its distribution; this environment never sees it."""
    why = _offline_build_blocker()
    if why:
        pytest.skip(why)
    pkg, venv = tmp_path / "s4dconf-myref", tmp_path / "venv"
    pkg.mkdir()
    for name, text in PACKAGE.items():
        (pkg / name).write_text(text)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # under tox this interpreter is itself a venv, whose packages --system-site-packages does not reach
    (purelib / "_s4dconf_parent.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_CACHE_DIR"] = "1"

    def run(*cmd, timeout=300):
        return subprocess.run([str(c) for c in cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=timeout)

    r = run(python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
            "--disable-pip-version-check", pkg)
    assert r.returncode == 0, f"pip install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    where = run(python, "-c", "import s4dconf_myref; print(s4dconf_myref.__file__)").stdout.strip()
    assert Path(where).is_relative_to(venv), where
    assert importlib.util.find_spec("s4dconf_myref") is None  # installed there only

    r = run(*_suite_command(python, "myref", selection="tiny and (impulse or noise) and not long"), timeout=600)
    assert "backend myref (entry point of s4dconf-myref 0.3.1): float64, version s4dconf-myref 0.3.1" in r.stdout, \
        r.stdout[-3000:] + r.stderr[-3000:]
    outcomes = _outcomes(r.stdout, "myref")
    assert r.returncode == 0 and len(outcomes) >= 6 and set(outcomes.values()) == {"PASSED"}, r.stdout[-3000:]

    r = run(python, "-m", "s4dconf.cli", "backends")
    assert r.returncode == 0, r.stderr
    assert table_row(r.stdout, "myref")[1:] == ["entry point", "yes", "float64", "cpu", "s4dconf-myref 0.3.1"], \
        r.stdout
    assert "myref: entry point of s4dconf-myref 0.3.1, s4dconf_myref:MyReference" in " ".join(r.stdout.split())
