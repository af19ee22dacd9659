"""README's Quick start: two commands on a fresh clone, `scripts/main-job` (a venv .venv/ with s4dconf and torch,
then `s4dconf run`) and `scripts/test` (tox into that venv, then `tox`), which `.ci/run` calls.

Always: both scripts (and the helper they source) pass `bash -n` and are strict (`set -euo pipefail`); README's
Quick start block holds exactly those two commands; `.ci/run` ends in `scripts/test`; README's count of tox
environments is tox.ini's; the CPU pin of torch is one pin (constraints file = tox.ini); `.venv` is ignored by git
and tox does not write its PEP 832 `.venv` redirect file; a missing Python 3.10 stops `scripts/test` before anything
is installed, with how to get it.
Marked slow: the set-up part of both scripts in a fresh temporary venv (S4DCONF_SETUP_ONLY=1), only where the
package index answers (it installs torch and s4dconf's dependencies: minutes).
"""
from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
MAIN_JOB, TEST, HELPER = SCRIPTS / "main-job", SCRIPTS / "test", SCRIPTS / "venv.sh"
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(not (SCRIPTS / "main-job").is_file(),
                                reason=f"no scripts/ beside the installed package ({ROOT}): not a checkout")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def _tox_ini() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ROOT / "tox.ini")
    return cp


def _envlist() -> list[str]:
    return [e.strip() for e in _tox_ini()["tox"]["envlist"].split(",") if e.strip()]


def _quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Quick start", 1)[1].split("\n## ", 1)[0]


@needs_bash
@pytest.mark.parametrize("script", [MAIN_JOB, TEST, HELPER], ids=lambda p: p.name)
def test_script_syntax(script):
    r = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("script", [MAIN_JOB, TEST], ids=lambda p: p.name)
def test_scripts_are_strict_and_executable(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK), f"{script} is not executable (git update-index --chmod=+x)"
    assert "source scripts/venv.sh" in text


def test_readme_quick_start_is_two_commands():
    block = re.search(r"```bash\n(.*?)```", _quick_start(), re.S)
    assert block, "no ```bash block in README's Quick start"
    commands = [ln.split("#", 1)[0].strip() for ln in block[1].splitlines() if ln.split("#", 1)[0].strip()]
    assert commands == ["scripts/main-job", "scripts/test"]


def test_ci_runs_scripts_test():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    assert lines[-1] in ("scripts/test", "exec scripts/test")
    assert not any(re.search(r"(^|\s)(python3? -m )?tox(\s|$)", ln) for ln in lines[:-1]), "CI runs tox itself"


def test_readme_counts_the_tox_environments():
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    envs = _envlist()
    said = re.findall(r"`tox` runs (\w+) environments", (ROOT / "README.md").read_text())
    assert said == [words[len(envs)]], (said, envs)
    assert all(f"`{e}`" in _quick_start() for e in envs)


def test_one_cpu_pin_of_torch():
    pins = [ln.split("#", 1)[0].strip() for ln in (SCRIPTS / "constraints-cpu.txt").read_text().splitlines()]
    pins = [p for p in pins if p]
    assert pins == ["torch==2.13.0"]
    deps = [d.strip() for d in _tox_ini()["testenv"]["deps"].splitlines() if d.strip()]
    assert deps == pins


def test_venv_is_ignored_and_tox_writes_no_redirect():
    ignored = [ln.strip() for ln in (ROOT / ".gitignore").read_text().splitlines()]
    assert ".venv" in ignored  # no trailing slash: the directory and a stale redirect file
    assert _tox_ini()["tox"].get("venv_redirect", "").strip().lower() == "false"
    if shutil.which("git") and (ROOT / ".git").exists():
        for path in (".venv", ".venv/bin/python"):
            r = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, timeout=30)
            assert r.returncode == 0, f"git does not ignore {path}"


@needs_bash
def test_missing_python310_stops_before_anything_is_installed(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3.10").write_text("#!/bin/sh\necho 'python3.10: command not found' >&2\nexit 127\n")
    (fake / "python3.10").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ.get('PATH', '')}",
           "S4DCONF_VENV": str(tmp_path / "venv"), "S4DCONF_CHECK_ONLY": "1"}
    r = subprocess.run([BASH, str(TEST)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "pyenv install 3.10.13" in r.stderr and "apt install python3.10" in r.stderr
    assert "nothing was installed" in r.stderr
    assert not (tmp_path / "venv").exists()
    # environments that need no Python 3.10 pass the check
    r = subprocess.run([BASH, str(TEST), "-e", "py311", "--", "-e", "lava"], env=env, capture_output=True,
                       text=True, timeout=60)
    if shutil.which("python3.11"):
        assert r.returncode == 0, r.stderr


def _index_answers() -> str:
    """'' when the package index answers, else why not."""
    url = (os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/") + "/pip/"
    try:
        urllib.request.urlopen(url, timeout=10)
    except Exception as e:  # noqa: BLE001 - any failure means: not reachable from here
        return f"the package index {url} is not reachable ({type(e).__name__}: {e})"
    return ""


@needs_bash
@pytest.mark.slow
def test_setup_in_a_fresh_venv(tmp_path):
    if sys.version_info[:2] < (3, 11):
        pytest.skip("runs once, in the py311 environment: the scripts' venv does not depend on the Python of pytest")
    why = _index_answers()
    if why:
        pytest.skip(why)
    venv = tmp_path / "venv"
    env = {**os.environ, "S4DCONF_VENV": str(venv), "S4DCONF_SETUP_ONLY": "1", "S4DCONF_TORCH": "cpu",
           "S4DCONF_TORCH_INDEX": ""}  # registries only: never ask PyTorch's own index from a test
    env.pop("VIRTUAL_ENV", None)
    for script in (MAIN_JOB, TEST):
        r = subprocess.run([BASH, str(script)], env=env, capture_output=True, text=True, timeout=1500)
        assert r.returncode == 0, f"{script.name}: {r.stderr[-3000:]}"
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-c", "import torch, s4dconf; print(torch.__version__, torch.version.cuda)"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.split()[0].startswith("2.13.0") and r.stdout.split()[1] == "None", r
    assert subprocess.run([str(venv / "bin" / "tox"), "--version"], capture_output=True, timeout=120).returncode == 0
    assert subprocess.run([str(venv / "bin" / "s4dconf"), "configs"], capture_output=True,
                          timeout=300).returncode == 0
    again = subprocess.run([BASH, str(MAIN_JOB)], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already installed" in again.stderr  # idempotent
