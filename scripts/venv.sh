# Sourced by scripts/main-job and scripts/test (not run on its own): the checkout's virtual environment, the torch
# build, and the interpreters tox needs. Settings, all optional:
#
#   S4DCONF_VENV         where the venv lives (default: .venv in the checkout, ignored by git)
#   PYTHON               the interpreter it is made from (default: python3.11, else python3; 3.10 or newer)
#   S4DCONF_TORCH        cpu | gpu | auto (default auto: gpu when `nvidia-smi -L` lists a GPU, else cpu)
#   S4DCONF_TORCH_INDEX  PyTorch's CPU wheel index, used on the cpu path when it answers within 5 s
#                        (default https://download.pytorch.org/whl/cpu; empty: never asked; under CI
#                        (CI set) never asked unless set: CI machines reach package registries only)
#   S4DCONF_SETUP_ONLY   1: install, then stop before the job or the tests
#   S4DCONF_CHECK_ONLY   1 (scripts/test): check the interpreters tox needs, then stop
# shellcheck shell=bash

S4DCONF_VENV="${S4DCONF_VENV:-.venv}"
VENV_PY="$S4DCONF_VENV/bin/python"
if [ -n "${CI:-}" ]; then
    CPU_TORCH_INDEX="${S4DCONF_TORCH_INDEX-}"
else
    CPU_TORCH_INDEX="${S4DCONF_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
fi
TORCH_ARGS=()

say() { printf '%s\n' "[$(basename "$0")] $*" >&2; }

die() { printf '%s\n' "[$(basename "$0")] error: $*" >&2; exit 2; }

py_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'; }

pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        printf '%s\n' "$PYTHON"
    elif python3.11 -c '' >/dev/null 2>&1; then
        printf '%s\n' python3.11
    else
        printf '%s\n' python3
    fi
}

# Make the venv, or repair one that lost its interpreter; nothing when it is there. Idempotent.
ensure_venv() {
    if [ -f "$S4DCONF_VENV" ] && [ ! -d "$S4DCONF_VENV" ]; then
        # a PEP 832 redirect file that recent tox (4.67) writes at .venv unless tox.ini says venv_redirect = false
        say "removing the file $S4DCONF_VENV (a tox venv redirect), to make the virtual environment there"
        rm -f "$S4DCONF_VENV"
    fi
    if "$VENV_PY" -c 'import pip' >/dev/null 2>&1; then
        return 0
    fi
    local py
    py="$(pick_python)"
    "$py" -c '' >/dev/null 2>&1 \
        || die "no working '$py': install Python 3.11 (3.10 works too) or set PYTHON=/path/to/python3"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$py is Python $(py_version "$py"); s4dconf needs 3.10 or newer (3.11 recommended): set PYTHON"
    say "creating the virtual environment $S4DCONF_VENV with $py (Python $(py_version "$py"))"
    "$py" -m venv --clear "$S4DCONF_VENV" \
        || die "'$py -m venv' failed; on Debian/Ubuntu install the venv module: apt install python3-venv"
}

has_nvidia_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'
}

# The CPU index when it answers (else nothing, said on stderr); needs the venv's python.
cpu_index_if_reachable() {
    [ -n "$CPU_TORCH_INDEX" ] || return 0
    if "$VENV_PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
            "$CPU_TORCH_INDEX/" >/dev/null 2>&1; then
        printf '%s\n' "$CPU_TORCH_INDEX"
    else
        say "PyTorch's CPU wheel index $CPU_TORCH_INDEX does not answer: torch==2.13.0 comes from pip's own indexes" \
            "(PyPI's Linux wheel is the large CUDA build; this project's machines hold the CPU build on disk)"
    fi
}

# TORCH_ARGS: the pip arguments that choose the torch build. cpu: the pin of scripts/constraints-cpu.txt, from
# PyTorch's CPU index when it answers. gpu: none, so the CUDA build already in the venv is kept.
choose_torch() {
    local mode="${S4DCONF_TORCH:-auto}" index
    if [ "$mode" = auto ]; then
        if has_nvidia_gpu; then mode=gpu; else mode=cpu; fi
    fi
    case "$mode" in
        cpu)
            TORCH_ARGS=(-c scripts/constraints-cpu.txt)
            index="$(cpu_index_if_reachable)"
            if [ -n "$index" ]; then TORCH_ARGS+=(--extra-index-url "$index"); fi
            say "torch: the CPU build, torch==2.13.0 (scripts/constraints-cpu.txt)"
            ;;
        gpu)
            if ! "$VENV_PY" -c 'import torch' >/dev/null 2>&1; then
                say "NVIDIA GPU found: install the CUDA build of torch matching your driver first, e.g." \
                    "$S4DCONF_VENV/bin/pip install torch --index-url https://download.pytorch.org/whl/cu128" \
                    "(https://pytorch.org/get-started/locally/); without it pip takes PyPI's default build"
            fi
            ;;
        *) die "S4DCONF_TORCH=$mode: expected cpu, gpu or auto" ;;
    esac
}

# pip install "${@:2}" into the venv, unless the same request (its arguments, pyproject.toml, the constraints) was
# done there before; $1 names the request's stamp file.
pip_install_once() {
    local stamp="$S4DCONF_VENV/.s4dconf-$1.installed" key
    shift
    key="$({ printf '%s\n' "$@"; cat pyproject.toml scripts/constraints-cpu.txt; } | cksum)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
        say "already installed in $S4DCONF_VENV (pip install $*)"
        return 0
    fi
    say "pip install $*"
    "$VENV_PY" -m pip install --disable-pip-version-check "$@"
    printf '%s\n' "$key" >"$stamp"
}

has_python() {  # has_python 3 10: python3.10 runs and is 3.10
    "python$1.$2" -c "import sys; sys.exit(sys.version_info[:2] != ($1, $2))" >/dev/null 2>&1
}

# The interpreters of the tox environments to be run (tox's own arguments: -e/--env, else tox.ini's envlist):
# python3.11 for py311 and the benchmark envs, python3.10 for lava, loihi and bench-lava. A missing one stops here,
# before tox starts, with how to get it.
check_tox_interpreters() {
    local envs="" arg prev=""
    for arg in "$@"; do
        [ "$arg" = -- ] && break  # the rest goes to pytest
        case "$prev" in -e | --env) envs="$envs,$arg" ;; esac
        case "$arg" in --env=*) envs="$envs,${arg#--env=}" ;; -e?*) envs="$envs,${arg#-e}" ;; esac
        prev="$arg"
    done
    if [ -z "$envs" ]; then
        envs="$(sed -n 's/^envlist *= *//p' tox.ini | head -n 1)"
    fi
    local need310=0 need311=0 e
    for e in ${envs//,/ }; do
        case "$e" in
            lava | loihi | bench-lava) need310=1 ;;
            *) need311=1 ;;
        esac
    done
    local missing=0
    if [ "$need311" = 1 ] && ! has_python 3 11; then
        say "error: the tox environments py311, bench and bench-smoke need Python 3.11, and no working python3.11" \
            "is on PATH. Get it with pyenv (pyenv install 3.11.7) or your distribution's package" \
            "(Debian/Ubuntu: apt install python3.11 python3.11-venv)."
        missing=1
    fi
    if [ "$need310" = 1 ] && ! has_python 3 10; then
        say "error: the tox environment lava (lava-nc 0.10.0: Python 3.10 only) needs Python 3.10, and no working" \
            "python3.10 is on PATH. Get it with pyenv: pyenv install 3.10.13 (this checkout's .python-version then" \
            "selects it beside 3.11.7), or your distribution's package (Debian/Ubuntu: apt install python3.10" \
            "python3.10-venv, on Ubuntu from the deadsnakes PPA; Fedora: dnf install python3.10)."
        missing=1
    fi
    if [ "$missing" = 1 ]; then
        say "nothing was installed or run. Meanwhile, the environments that need only Python 3.11:" \
            "scripts/test -e py311,bench-smoke"
        exit 2
    fi
    say "interpreters found for the tox environments ${envs#,}"
}
