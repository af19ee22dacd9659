"""The conformance run behind `s4dconf check` and `s4dconf run`: pytest in a subprocess with progress (tqdm on a
terminal, one line otherwise), and what a person reads first: the summary per backend, skips grouped by reason,
the matrix with each tolerance's direction, the failing checks."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import s4dconf.conformance
from s4dconf.reports.conformance_summary import LOWER, check_matrix_rows, decode_record
from s4dconf.reports.tables import text_table


def conformance_dir() -> Path:
    """The installed conformance suite's folder (what pytest runs)."""
    return Path(s4dconf.conformance.__file__).resolve().parent


WIDTH = 100  # every table and summary line of the CLI fits in this many columns
_RESULT_LINE = re.compile(r"^\S*::.* (PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR)\b")
_COLLECTED = re.compile(r"collected (\d+) items?(?: / (\d+) deselected)?(?: / \d+ skipped)?(?: / (\d+) selected)?")


def is_terminal(stream=None) -> bool:
    """Progress bars on a terminal; one plain line per step otherwise (CI logs, pipes, tests)."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _bar(total, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)


def side_files(json_path: Path) -> tuple[Path, Path]:
    """Where run_conformance leaves pytest's per-test outcomes (JSON) and its full output (text)."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + ".outcomes.json"), json_path.with_name(json_path.stem + ".pytest.txt")


def run_conformance(backends, json_path: Path, extra=(), quiet=False) -> int:
    """Run the pytest conformance suite in a subprocess; the plugin writes the records to json_path, the per-test
    outcomes and pytest's output go next to it (side_files). pytest's progress shows as a bar on a terminal, as
    one line when it ends otherwise."""
    cmd = [sys.executable, "-m", "pytest", str(conformance_dir()), "-m", "conformance",
           "-p", "s4dconf.conformance.plugin", "--import-mode=importlib", "-p", "no:cacheprovider",
           "--conformance-json", str(json_path), "-v", "-rs"]
    for b in backends:
        cmd += ["--backend", b]
    cmd += list(extra)
    outcomes, log = side_files(json_path)
    env = dict(os.environ, S4DCONF_OUTCOMES_JSON=str(outcomes), COLUMNS=str(WIDTH))
    t0, done, lines, bar = time.perf_counter(), 0, [], None
    terminal = is_terminal()
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              errors="replace") as proc:
            for line in proc.stdout:
                lines.append(line)
                m = _COLLECTED.search(line)
                if m and bar is None and terminal:
                    bar = _bar(int(m.group(3) or m.group(1)), "conformance (pytest)", "test")
                elif _RESULT_LINE.search(line):
                    done += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(_RESULT_LINE.search(line).group(1).lower())
            rc = proc.wait()
    finally:
        if bar is not None:
            bar.close()
        log.write_text("".join(lines))
    if not terminal and not quiet:
        print(f"conformance: pytest ran {done} tests in {time.perf_counter() - t0:.0f} s (exit code {rc})",
              flush=True)
    return rc


def _wrap(text: str, indent: str = "  ", first: str | None = None) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent if first is None else first, subsequent_indent=indent + "  ",
                         break_on_hyphens=False, break_long_words=True)


def _plain_reason(reason: str, backend: str | None) -> str:
    """A skip reason without the backend name it starts with (the group says it)."""
    for prefix in (f"backend {backend} ", f"{backend} ", f"{backend}: "):
        if backend and reason.startswith(prefix):
            return reason[len(prefix):]
    return reason


def check_summary(tests: list[dict], backends) -> list[str]:
    """The lines of the summary `s4dconf check` prints first: pass/fail/skip counts per backend, then the skipped
    tests grouped by backend and reason, then the tests that failed with pytest's one-line reason."""
    order = list(dict.fromkeys(list(backends) + [t["backend"] or "(no backend)" for t in tests]))
    counts = {b: Counter() for b in order}
    for t in tests:
        counts[t["backend"] or "(no backend)"][t["outcome"]] += 1
    kinds = [k for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
             if k in ("passed", "failed", "skipped") or any(c[k] for c in counts.values())]
    rows = [("backend", *kinds)] + [(b, *(c[k] for k in kinds)) for b, c in counts.items() if c or b in backends]
    out = ["tests per backend:", text_table(rows, width=WIDTH)]
    groups = Counter((t["backend"] or "(no backend)", _plain_reason(t["reason"], t["backend"]))
                     for t in tests if t["outcome"] == "skipped")
    if groups:
        out += ["", "skipped, by reason:"]
        for (b, reason), n in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), -kv[1])):
            out.append(_wrap(f"{b}: {n} case{'s' if n != 1 else ''}: {reason or 'no reason given'}"))
    bad = [t for t in tests if t["outcome"] in ("failed", "error", "xpassed")]
    if bad:
        out += ["", "failed tests (pytest's reason; `-v` shows the details):"]
        out += [_wrap(f"{t['nodeid']}: {t['reason'] or t['outcome']}") for t in bad[:30]]
        if len(bad) > 30:
            out.append(f"  ... and {len(bad) - 30} more")
    return out


def _direction(metric: str) -> str:
    return ">=" if metric in LOWER else "<="


def check_matrix(records: list[dict]) -> list[tuple]:
    """check_matrix_rows with the tolerance written as a bound with its direction ("snr_db >= 15")."""
    rows = [("backend:path", "family", "cases", "failed", "saturated", "worst", "bound (tolerance)", "verdict")]
    for backend, family, cases, failed, saturated, worst, tol, verdict in check_matrix_rows(records)[1:]:
        metric, _, value = worst.rpartition(" ")
        bound = f"{metric} {_direction(metric)} {tol}" if metric else "-"
        rows.append((backend, family, cases, failed, saturated, value if metric else worst, bound, verdict))
    return rows


def failing_checks(records: list[dict], limit: int = 20) -> list[str]:
    """One line per record that did not pass: backend, case, probe, the value and the bound it missed."""
    out = []
    for r in map(decode_record, records):
        if r["verdict"] == "pass":
            continue
        value = "-" if r["value"] is None else format(r["value"], ".4g")
        tol = "-" if r["tolerance"] is None else format(r["tolerance"], "g")
        out.append(_wrap(f"{r['backend']} {r['case']} ({r.get('probe') or '-'}): {r['metric']} {value}, "
                         f"needs {r['metric']} {_direction(r['metric'])} {tol}"))
    return out[:limit] + ([f"  ... and {len(out) - limit} more"] if len(out) > limit else [])
