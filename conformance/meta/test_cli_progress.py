"""Live progress as a person at a terminal sees it (README "Command line"): a long step of the CLI, `s4dconf eval`
on a few sdigits samples, run in a pseudo-terminal shows a progress bar (percentage, samples done of total); with
output to a pipe (CI logs) the same command writes one plain line per step and no bar."""
from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals on this platform")

LIMIT = 40  # samples per cell: the bar's total
# one line per measured cell (dataset, model kind, backend): what accuracy_table reports as each cell ends
STEP_LINE = re.compile(r"^sdigits +(float|ptq|qaft) +(reference|numpy-fxp) +\d\.\d{4} \(40 samples, ")


def _eval_command(out_dir) -> list[str]:
    # float x reference, ptq x numpy-fxp, qaft x numpy-fxp: three cells, three steps
    return [sys.executable, "-m", "s4dconf.cli", "eval", "--dataset", "sdigits", "--limit", str(LIMIT),
            "--backend", "reference", "--backend", "numpy-fxp", "--out", str(out_dir)]


def _run_in_terminal(cmd, cwd, columns: int = 100) -> tuple[int, str]:
    """Run cmd with stdout and stderr on a pseudo-terminal of `columns` columns; (exit code, what it showed)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, cwd=cwd)
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_eval_shows_a_bar_on_a_terminal_and_one_line_per_step_otherwise(tmp_path):
    rc, shown = _run_in_terminal(_eval_command(tmp_path / "tty"), tmp_path)
    assert rc == 0, shown
    # tqdm's meter: "<pct>%|<bar>| <done>/<total> [elapsed<left, rate]", redrawn in place by a bare carriage
    # return (the terminal turns every newline into "\r\n": those do not count)
    assert re.search(rf"\d+%\|.*\| *\d+/{LIMIT} \[", shown) and re.search(r"\r(?!\n)", shown), shown
    assert "sample/s" in shown

    piped = subprocess.run(_eval_command(tmp_path / "pipe"), cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert piped.returncode == 0, piped.stdout + piped.stderr
    both = piped.stdout + piped.stderr
    assert "\r" not in both and not re.search(r"\d+%\|", both), "a bar was drawn into a pipe"
    steps = [line for line in both.splitlines() if STEP_LINE.match(line)]
    assert len(steps) == 3 and piped.stderr.strip() == "", both  # one line per step, nothing else on stderr
