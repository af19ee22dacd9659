"""Every reader of a text file the suite consumes (benchmark JSON, claims TOML, accuracy JSON, golden manifest) under
byte-level mutation: a mutated file either reads to the same content or raises the project's input error
(S4DInputError), never another exception, never a hang, and within a memory bound (tracemalloc peak)."""
from __future__ import annotations

import os
import shutil
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s4dconf.goldens.store import GOLDEN_DIR, GoldenSet
from s4dconf.reference.validate import S4DInputError
from s4dconf.reports.claims import CLAIMS_FILE, load_claims
from s4dconf.reports.compare import load_run
from s4dconf.training.accuracy import load_table

MEMORY_BOUND = 64 * 1024 * 1024  # bytes: tracemalloc peak of one read
TIME_BOUND = 10.0  # seconds per read
EXAMPLES = int(os.environ.get("S4DCONF_READER_EXAMPLES", "150"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
REPO = Path(__file__).resolve().parents[2]
BENCH = sorted((REPO / "reports" / "benchmarks").glob("*.json"))[0]
ACCURACY = REPO / "reports" / "accuracy" / "accuracy.json"


def _manifest_reader(path: Path):
    """GoldenSet over a folder whose manifest is `path` (the case files are those of the shipped goldens)."""
    return GoldenSet(path.parent).manifest


READERS = {
    "benchmark JSON": (BENCH, lambda p: load_run(p)),
    "claims TOML": (CLAIMS_FILE, load_claims),
    "accuracy JSON": (ACCURACY, load_table),
}


@st.composite
def mutations(draw, size: int):
    """(kind, position, payload): flip a byte, overwrite a range, truncate, or extend with junk."""
    kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "extend"]))
    pos = draw(st.integers(0, max(size - 1, 0)))
    payload = draw(st.binary(min_size=1, max_size=16))
    return kind, pos, payload


def mutate(data: bytes, m) -> bytes:
    kind, pos, payload = m
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (payload[0] or 1)]) + data[pos + 1:]
    if kind == "overwrite":
        return data[:pos] + payload + data[pos + len(payload):]
    if kind == "truncate":
        return data[:pos]
    return data + payload


def read_bounded(reader, path: Path):
    """reader(path) -> ("ok", value) or ("input error", message); any other exception propagates."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        return ("ok", reader(path))
    except S4DInputError as e:
        return ("input error", str(e))
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"reading {path} peaked at {peak / 2**20:.1f} MiB"
        assert time.perf_counter() - t0 < TIME_BOUND, f"reading {path} took over {TIME_BOUND} s"


@pytest.mark.parametrize("what", sorted(READERS))
def test_the_valid_file_reads(what):
    source, reader = READERS[what]
    assert read_bounded(reader, source)[0] == "ok"


@pytest.mark.parametrize("what", sorted(READERS))
@PROPERTY
@given(data=st.data())
def test_mutated_text_files_read_the_same_or_raise_the_input_error(what, data, tmp_path_factory):
    source, reader = READERS[what]
    original = source.read_bytes()
    m = data.draw(mutations(len(original)))
    path = tmp_path_factory.mktemp("mut") / source.name
    path.write_bytes(mutate(original, m))
    outcome, value = read_bounded(reader, path)
    if outcome == "ok" and mutate(original, m) != original:
        # accepted: it must be the same content as the valid file, or a file that is itself valid (a mutation
        # inside a string or a number can make another valid file); reading it again gives the same value
        assert read_bounded(reader, path) == (outcome, value)


@pytest.fixture(scope="module")
def golden_copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("goldens") / "data"
    shutil.copytree(GOLDEN_DIR, folder)
    return folder


@PROPERTY
@given(data=st.data())
def test_mutated_golden_manifest_reads_the_same_or_raises_the_input_error(data, golden_copy):
    manifest = golden_copy / "manifest.json"
    original = (GOLDEN_DIR / "manifest.json").read_bytes()
    m = data.draw(mutations(len(original)))
    manifest.write_bytes(mutate(original, m))
    try:
        outcome, _ = read_bounded(_manifest_reader, manifest)
    finally:
        manifest.write_bytes(original)
    assert outcome in ("ok", "input error")


def test_a_huge_text_file_is_refused_within_the_memory_bound(tmp_path):
    path = tmp_path / "bench.json"
    with open(path, "wb") as f:  # 200 MB of JSON whitespace: nothing may read it whole
        f.write(b"{" + b" " * (200 * 2**20) + b"}")
    for reader in (load_run, load_table, load_claims):
        assert read_bounded(reader, path)[0] == "input error"
