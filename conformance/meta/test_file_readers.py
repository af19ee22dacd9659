"""Every file reader against damaged and hostile files (SPEC.md sections 7 and 13): the answer is the same content or
an S4DInputError naming the file - never another exception, never a hang, never unbounded memory - and every write
is atomic (a temporary file made exclusively next to the target, renamed into place, removed on failure).

The property tests mutate the bytes of a float64 model file, a fixed-point model file and a golden case file (bit
flips, overwritten ranges, truncation, junk appended or inserted, biased towards the zip headers) and read them with
tracemalloc running: the peak stays below MEMORY_BOUND. The hostile files (a deflate bomb, a .npy header claiming
10^12 elements, encrypted or bzip2 members, ...) are built byte by byte here.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import re
import struct
import tarfile
import time
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s4dconf.fixedpoint.formats import FXP_SCHEMA, FxpModel, load_fxp, read_model_file, save_fxp
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.goldens.store import GOLDEN_DIR
from s4dconf.reference.config import ModelConfig
from s4dconf.reference.model import S4DModel
from s4dconf.reference.modelfile import MODEL_SCHEMA, load_model, load_record, save_model
from s4dconf.reference.npzio import (atomic_write, check_output_path, read_npz, read_npz_bytes, write_npz)
from s4dconf.reference.validate import S4DInputError
from s4dconf.training import datafiles

MEMORY_BOUND = 64 * 1024 * 1024  # bytes: tracemalloc peak of one read of a hostile file
TIME_BOUND = 10.0  # seconds for one read (a hang would be minutes)
EXAMPLES = int(os.environ.get("S4DCONF_READER_EXAMPLES", "200"))  # per property; raise it for a longer campaign
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CFG = ModelConfig(name="readers", d_input=2, H=3, P=2, n_layers=2, n_classes=4, use_D=True)
GOLDEN_CASE = GOLDEN_DIR / "case-tiny-step.npz"


# ---------------------------------------------------------------- helpers


class Measured:
    """Peak traced memory (bytes above the level at entry) and wall time of the block."""

    def __enter__(self):
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started = True
        else:
            self._started = False
        tracemalloc.reset_peak()
        self._base = tracemalloc.get_traced_memory()[0]
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        self.peak = tracemalloc.get_traced_memory()[1] - self._base
        if self._started:
            tracemalloc.stop()
        return False


def bounded(fn, *args, **kwargs):
    """fn(*args) under Measured; asserts the memory and time bounds; returns (result or None, S4DInputError or None)."""
    result = error = None
    with Measured() as m:
        try:
            result = fn(*args, **kwargs)
        except S4DInputError as e:
            error = e
    assert m.peak < MEMORY_BOUND, f"peak {m.peak / 2**20:.1f} MiB"
    assert m.seconds < TIME_BOUND, f"{m.seconds:.1f} s"
    return result, error


def npy_header(descr, shape, fortran=False) -> bytes:
    d = "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran, tuple(shape))
    d += " " * ((64 - (10 + len(d) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode("latin1")


def raw_zip(members, comment: bytes = b"") -> bytes:
    """A zip archive from members (name, payload as stored, method, crc, file_size, flags), written field by field
    so that every field can lie."""
    out, central = b"", b""
    for name, payload, method, crc, size, flags in members:
        fname = name.encode()
        offset = len(out)
        out += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, flags, method, 0, 0x21, crc, len(payload), size,
                           len(fname), 0) + fname + payload
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, flags, method, 0, 0x21, crc,
                               len(payload), size, len(fname), 0, 0, 0, 0, 0o644 << 16, offset) + fname
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(out),
                      len(comment))
    return out + central + end + comment


def deflated(data: bytes) -> bytes:
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush()


def member(name, data: bytes, method=zipfile.ZIP_DEFLATED, flags=0, size=None, crc=None):
    payload = deflated(data) if method == zipfile.ZIP_DEFLATED else data
    return (name, payload, method, zlib.crc32(data) if crc is None else crc, len(data) if size is None else size,
            flags)


def zeros_bomb(header: bytes, n_zero_mib: int) -> tuple[bytes, int, int]:
    """(raw deflate stream, crc, size) of header + n MiB of zeros, made without holding the zeros: each full-flushed
    MiB compresses to the same bytes, so it is compressed once and repeated."""
    mib = bytes(1 << 20)
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = co.compress(header) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(mib) + co.flush(zlib.Z_FULL_FLUSH)
    assert co.compress(mib) + co.flush(zlib.Z_FULL_FLUSH) == block
    stream = first + block * n_zero_mib + co.flush()
    crc = zlib.crc32(header)
    for _ in range(n_zero_mib):
        crc = zlib.crc32(mib, crc)
    return stream, crc, len(header) + n_zero_mib * (1 << 20)


def same_arrays(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


# ---------------------------------------------------------------- the valid files and their content


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("readers")
    model = S4DModel.create(CFG, seed=4)
    save_model(model, d / "float.npz", record={"made_by": "test_file_readers", "epochs": 3})
    save_fxp(quantize(model), d / "fxp.npz")
    out = {"float": (d / "float.npz").read_bytes(), "fxp": (d / "fxp.npz").read_bytes(), "dir": d}
    if GOLDEN_CASE.is_file():
        out["golden"] = GOLDEN_CASE.read_bytes()
    return out


def float_content(path):
    mf = read_model_file(path)
    m = load_model(path)
    assert mf.schema == MODEL_SCHEMA and m.config == mf.model.config and same_arrays(m.params, mf.model.params)
    return m.config, dict(m.params), mf.record


def fxp_content(path):
    mf = read_model_file(path)
    m = load_fxp(path)
    assert mf.schema == FXP_SCHEMA and same_arrays(m.arrays, mf.model.arrays)
    return (m.config, m.fmt, m.inp_exp, m.act_exp, m.out_exp, m.w_exp, m.provenance, dict(m.arrays), mf.record)


def golden_content(path):
    return read_npz(path, "golden file")


def equal_content(a, b) -> bool:
    if isinstance(a, dict):
        if all(isinstance(v, np.ndarray) for v in a.values()):
            return isinstance(b, dict) and same_arrays(a, b)
        return a == b
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(equal_content(x, y) for x, y in zip(a, b))
    return a == b


READERS = {"float": float_content, "fxp": fxp_content, "golden": golden_content}


def zip_regions(data: bytes) -> list[int]:
    """Offsets worth mutating: every local header with the first bytes of its data, and the central directory."""
    spots = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            spots += range(info.header_offset, min(len(data), info.header_offset + 30 + len(info.filename) + 48))
        spots += range(zf.start_dir, len(data))
    return sorted(set(spots))


def _mutate_once(draw, data: bytes, spots: list[int]) -> bytes:
    n = len(data)
    if n == 0:
        return draw(st.binary(max_size=64))
    kind = draw(st.sampled_from(["flip", "overwrite", "fill", "truncate", "extend", "insert", "delete"]))
    spots = [p for p in spots if p < n]
    pos = draw(st.one_of(st.sampled_from(spots), st.integers(0, n - 1)) if spots else st.integers(0, n - 1))
    if kind == "flip":
        b = bytearray(data)
        b[pos] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "overwrite":
        junk = draw(st.binary(min_size=1, max_size=16))
        return data[:pos] + junk + data[pos + len(junk):]
    if kind == "fill":
        length = draw(st.integers(1, 64))
        return data[:pos] + bytes([draw(st.sampled_from([0, 0xFF]))]) * length + data[pos + length:]
    if kind == "truncate":
        return data[:pos]
    if kind == "extend":
        return data + draw(st.one_of(st.binary(min_size=1, max_size=64), st.just(b"\0" * 70_000)))
    if kind == "insert":
        return data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]
    return data[:pos] + data[pos + draw(st.integers(1, 64)):]


@st.composite
def mutated(draw, data: bytes, spots: list[int]):
    """One to three byte-level mutations in a row: bit flip, overwritten range (random bytes, or 0x00/0xFF),
    truncation, junk appended (also past zip's 64 KiB search window for its end record), inserted or deleted
    bytes; positions anywhere, or in the zip structures (`spots`)."""
    for _ in range(draw(st.integers(1, 3))):
        data = _mutate_once(draw, data, spots)
    return data


def check_mutations(files, kind, data_strategy):
    if kind not in files:
        pytest.skip(f"no golden case file {GOLDEN_CASE}")
    original = files[kind]
    path = files["dir"] / f"mutated-{kind}.npz"
    path.write_bytes(original)
    expected = READERS[kind](path)
    spots = zip_regions(original)

    @PROPERTY
    @given(data_strategy(original, spots))
    def prop(data):
        path.write_bytes(data)
        got, error = bounded(READERS[kind], path)
        if error is None:
            assert equal_content(got, expected), "a damaged file read as other content"
        else:
            assert str(path) in str(error)

    prop()


# ---------------------------------------------------------------- properties: mutated valid files


def test_mutated_float_model_file_reads_the_same_or_is_refused(files):
    check_mutations(files, "float", mutated)


def test_mutated_fixed_point_model_file_reads_the_same_or_is_refused(files):
    check_mutations(files, "fxp", mutated)


def test_mutated_golden_case_file_reads_the_same_or_is_refused(files):
    check_mutations(files, "golden", mutated)


def test_mutation_regions_cover_the_directory(files):
    """The biased offsets do include the zip structures (else the properties would mostly hit deflate data)."""
    spots = zip_regions(files["float"])
    assert 0 in spots and len(files["float"]) - 1 in spots and len(spots) < len(files["float"])


# ---------------------------------------------------------------- hostile .npz files


def read_hostile(tmp_path, data: bytes, **kw) -> S4DInputError:
    path = tmp_path / "hostile.npz"
    path.write_bytes(data)
    _, error = bounded(read_npz, path, "model file", **kw)
    assert error is not None, "a hostile file was read"
    assert str(path) in str(error)
    return error


def test_deflate_bomb_is_refused_before_decompression(tmp_path):
    header = npy_header("<f8", (553 << 17,))  # 553 MiB (580 MB) of float64 zeros
    stream, crc, size = zeros_bomb(header, 553)
    assert len(stream) < 1 << 20  # the file is under 1 MiB
    data = raw_zip([("x.npy", stream, zipfile.ZIP_DEFLATED, crc, size, 0)])
    # a genuine bomb: zlib really does expand it to the size stated (checked with bounded memory)
    d, total, tail = zlib.decompressobj(-15), 0, stream
    while tail and total < 8 << 20:
        total += len(d.decompress(tail, 1 << 20))
        tail = d.unconsumed_tail
    assert total >= 8 << 20
    error = read_hostile(tmp_path, data)
    assert re.search(r"more than 268435456 bytes uncompressed", str(error))


@pytest.mark.parametrize("crc_of", ["stream", "stated"])
def test_bomb_behind_a_small_header_is_cut_at_the_stated_size(tmp_path, crc_of):
    """Header and zip directory agree on 80 bytes of data, the deflate stream holds 64 MiB: no more than the stated
    size is decompressed. With the CRC of the whole stream that is a CRC error; with the CRC of the stated bytes the
    file is those bytes (zip ignores what follows a member's stated size)."""
    header = npy_header("<f8", (10,))
    stream, crc, _ = zeros_bomb(header, 64)
    if crc_of == "stated":
        crc = zlib.crc32(header + bytes(80))
    path = tmp_path / "bomb.npz"
    path.write_bytes(raw_zip([("x.npy", stream, zipfile.ZIP_DEFLATED, crc, len(header) + 80, 0)]))
    got, error = bounded(read_npz, path, "model file")
    if crc_of == "stream":
        assert error is not None and str(path) in str(error) and "CRC" in str(error)
    else:
        assert error is None and same_arrays(got, {"x": np.zeros(10)})


@pytest.mark.parametrize("stated", ["honest", "huge"])
def test_header_claiming_10_to_the_12_elements(tmp_path, stated):
    header = npy_header("<f8", (10**12,))
    size = len(header) if stated == "honest" else 3_000_000_000
    error = read_hostile(tmp_path, raw_zip([member("x.npy", header, size=size)]))
    expected = "needs 8000000000" if stated == "honest" else "more than 268435456 bytes"
    assert expected in str(error)


def test_tighter_max_bytes_refuses_before_reading(tmp_path):
    path = tmp_path / "ok.npz"
    write_npz(path, {"a": np.zeros(1000)})
    assert read_npz(path)["a"].shape == (1000,)
    with pytest.raises(S4DInputError, match=r"more than 4000 bytes uncompressed"):
        read_npz(path, max_bytes=4000)
    big = tmp_path / "big.npz"
    big.write_bytes(b"PK" + bytes(20 << 20))  # 20 MiB: over max_file_bytes(1000)
    with pytest.raises(S4DInputError, match=r"is 20971522 bytes, more than the"):
        read_npz(big, max_bytes=1000)


@pytest.mark.parametrize("name, method, flags, pattern", [
    ("x.npy", zipfile.ZIP_BZIP2, 0, r"compression method 12; only stored \(0\) and deflated \(8\)"),
    ("x.npy", 99, 0, r"compression method 99"),
    ("x.npy", zipfile.ZIP_STORED, 0x1, r"encrypted"),
    ("x.npy", zipfile.ZIP_DEFLATED, 0x41, r"encrypted"),
    ("dir/x.npy", zipfile.ZIP_DEFLATED, 0, r"member 'dir/x.npy' is not a plain <name>.npy"),
    ("..\\x.npy", zipfile.ZIP_DEFLATED, 0, r"is not a plain <name>.npy"),
    (".npy", zipfile.ZIP_DEFLATED, 0, r"is not a plain <name>.npy"),
    ("x.txt", zipfile.ZIP_DEFLATED, 0, r"member 'x.txt' is not a .npy array"),
], ids=["bzip2", "method-99", "encrypted", "strong-encryption", "path", "backslash", "empty-name", "not-npy"])
def test_member_refused_by_its_directory_entry(tmp_path, name, method, flags, pattern):
    body = npy_header("<f8", (2,)) + bytes(16)
    m = member(name, body, method=zipfile.ZIP_STORED, flags=flags)
    error = read_hostile(tmp_path, raw_zip([(m[0], m[1], method, m[3], m[4], m[5])]))
    assert re.search(pattern, str(error)), str(error)


def test_duplicate_member_refused(tmp_path):
    body = npy_header("<f8", (1,)) + bytes(8)
    error = read_hostile(tmp_path, raw_zip([member("x.npy", body), member("x.npy", body)]))
    assert "appears twice" in str(error)


@pytest.mark.parametrize("descr, pattern", [
    ("|O", r"needs pickle, which is refused"),
    ([("a", "<f8"), ("b", "<i4")], r"only plain numeric and unicode arrays"),
    ("|V8", r"only plain numeric and unicode arrays"),
    ("|S4", r"only plain numeric and unicode arrays"),
    ("<M8[s]", r"only plain numeric and unicode arrays"),
], ids=["object", "structured", "void", "bytes", "datetime"])
def test_dtype_refused_from_the_header(tmp_path, descr, pattern):
    error = read_hostile(tmp_path, raw_zip([member("x.npy", npy_header(descr, (1,)) + bytes(16))]))
    assert re.search(pattern, str(error)), str(error)


@pytest.mark.parametrize("header, pattern", [
    (b"\x93NUMPY\x03\x00" + struct.pack("<I", 8) + b"{}      ", r"format version 3.0 is not read"),
    (b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{", r"header of 2147483648 bytes"),
    (b"\x93NUMPX\x01\x00" + bytes(8), r"no .npy magic"),
    (npy_header("<f8", (2,)).replace(b"(2,)", b"(-2,)"), r"invalid shape|bad header"),
    (npy_header("<f8", (2,)).replace(b"'shape'", b"'shap' "), r"bad header"),
    (b"\x93NUMPY\x01\x00" + struct.pack("<H", 60) + b"(" * 59 + b"\n", r"bad header"),
], ids=["version-3", "header-2GiB", "magic", "negative-shape", "keys", "unparsable"])
def test_npy_header_refused(tmp_path, header, pattern):
    error = read_hostile(tmp_path, raw_zip([member("x.npy", header)]))
    assert re.search(pattern, str(error)), str(error)


def test_stated_size_disagreeing_with_the_header_is_refused(tmp_path):
    body = npy_header("<f8", (4,)) + bytes(32)
    error = read_hostile(tmp_path, raw_zip([member("x.npy", body, size=len(body) + 8)]))
    assert "the zip directory says" in str(error)


@pytest.mark.parametrize("damage", ["crc", "flip", "truncate"])
def test_damaged_member_data_is_an_input_error(tmp_path, damage):
    body = npy_header("<f8", (64,)) + np.arange(64, dtype="<f8").tobytes()
    m = member("x.npy", body, crc=zlib.crc32(body) ^ (1 if damage == "crc" else 0))
    if damage == "flip":
        payload = bytearray(m[1])
        payload[len(payload) // 2] ^= 0x10
        m = (m[0], bytes(payload), *m[2:])
    data = raw_zip([m])
    if damage == "truncate":
        cut = 30 + len("x.npy") + len(m[1]) // 2  # 10 bytes out of the middle of the member's data
        data = data[:cut] + data[cut + 10:]
    read_hostile(tmp_path, data)


def test_directory_entry_swallowing_the_next_ones_is_refused(tmp_path):
    """A damaged comment length makes zipfile read the following entries as a comment: fewer arrays, no error of
    its own. The end record's entry count gives it away."""
    body = npy_header("<f8", (1,)) + bytes(8)
    data = bytearray(raw_zip([member(f"{k}.npy", body) for k in "abc"]))
    first = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, first + 32, 200)  # comment length of the first entry
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        assert zf.namelist() == ["a.npy"]  # what zipfile alone makes of it
    assert "holds 1 readable entries, its end record lists 3" in str(read_hostile(tmp_path, bytes(data)))


@pytest.mark.parametrize("count", [2, 3])
def test_zip64_end_record_count(tmp_path, count):
    body = npy_header("<f8", (1,)) + bytes(8)
    plain = raw_zip([member(f"{k}.npy", body) for k in "ab"])
    end = plain.rfind(b"PK\x05\x06")
    cd = plain.find(b"PK\x01\x02")
    rec = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, end - cd, cd)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    data = plain[:end] + rec + locator + plain[end:]
    path = tmp_path / "zip64.npz"
    path.write_bytes(data)
    if count == 2:
        assert sorted(read_npz(path)) == ["a", "b"]
    else:
        assert "its end record lists 3" in str(read_hostile(tmp_path, data))


def test_too_many_directory_entries(tmp_path):
    data = b"PK\x01\x02" * 10_001 + raw_zip([member("x.npy", npy_header("<f8", (0,)))])
    assert "more than 10000 zip directory entries" in str(read_hostile(tmp_path, data))


def test_valid_arrays_of_every_plain_kind_read_as_numpy_reads_them(tmp_path):
    arrays = {"f8": np.arange(6.0).reshape(2, 3), "fortran": np.asfortranarray(np.arange(12).reshape(3, 4)),
              "be": np.arange(5, dtype=">i4"), "c": np.array([1 + 2j, 3 - 4j]), "b": np.array([True, False]),
              "u": np.array(["ab", "cde"]), "s0": np.array("scalar"), "empty": np.zeros((0, 3)), "f2": np.ones(3, "e")}
    for compress in (False, True):
        path = tmp_path / f"all-{compress}.npz"
        (np.savez_compressed if compress else np.savez)(path, **arrays)
        got = read_npz(path)
        with np.load(path, allow_pickle=False) as ref:
            assert same_arrays(got, {k: ref[k] for k in ref.files})
        assert got["fortran"].flags.f_contiguous and all(a.flags.writeable for a in got.values())
        assert read_npz_bytes(path.read_bytes(), path).keys() == got.keys()


# ---------------------------------------------------------------- model files: what the schema does not define


@pytest.fixture()
def float_arrays(files):
    return read_npz_bytes(files["float"], "float.npz")


@pytest.mark.parametrize("extra", ["__extra__", "layer0.junk", "layer5.a_re"])
def test_float_model_file_with_an_array_its_config_does_not_define(tmp_path, float_arrays, extra):
    path = tmp_path / "extra.npz"
    write_npz(path, {**float_arrays, extra: np.zeros(3)})
    for read in (load_model, read_model_file):
        with pytest.raises(S4DInputError, match=re.escape(str(path)) + r".*" + re.escape(repr(extra))):
            read(path)


@pytest.mark.parametrize("extra", ["__extra__", "__record__", "layer0.junk"])
def test_fixed_point_model_file_with_an_array_its_config_does_not_define(tmp_path, files, extra):
    arrays = read_npz_bytes(files["fxp"], "fxp.npz")
    path = tmp_path / "extra.npz"
    write_npz(path, {**arrays, extra: np.array("{}") if extra == "__record__" else np.zeros(3, np.int64)})
    for read in (load_fxp, read_model_file):
        with pytest.raises(S4DInputError, match=re.escape(str(path)) + r".*" + re.escape(repr(extra))):
            read(path)


@pytest.mark.parametrize("a_re", [-60.0, -740.0])
def test_float_model_file_whose_mode_does_not_decay(tmp_path, float_arrays, a_re):
    """Re(A) = -exp(a_re) is negative but so small that dt Re(A) rounds away: |Abar| = 1 (SPEC.md 3.4)."""
    x = float_arrays["layer1.a_re"].copy()
    x[2, 1] = a_re
    path = tmp_path / "slow.npz"
    write_npz(path, {**float_arrays, "layer1.a_re": x})
    for read in (load_model, read_model_file):
        with pytest.raises(S4DInputError, match=re.escape(str(path)) + r".*layer1\.a_re\[2, 1\] = "
                           + re.escape(repr(a_re)) + r".*\|Abar\| = .*would not decay"):
            read(path)


@pytest.mark.parametrize("entry, value, pattern", [
    ("__record__", "[1, 2]", r"__record__ must be a JSON object"),
    ("__record__", "1" * 5000, r"__record__ (is not valid JSON|must be a JSON object)"),  # 3.10: no digit limit
    ("__config__", "[" * 100_000, r"config JSON"),
])
def test_float_model_file_with_unreadable_json(tmp_path, float_arrays, entry, value, pattern):
    path = tmp_path / "json.npz"
    write_npz(path, {**float_arrays, entry: np.array(value)})
    with pytest.raises(S4DInputError, match=re.escape(str(path)) + r".*" + pattern):
        read_model_file(path)


def test_fixed_point_file_with_unreadable_json(tmp_path, files):
    arrays = read_npz_bytes(files["fxp"], "fxp.npz")
    exponents = json.loads(str(arrays["__exponents__"]))
    for entry, value in (("__exponents__", json.dumps({**exponents, "w_exp": "ab"})),  # dict("ab"): ValueError
                         ("__format__", "[" * 100_000), ("__exponents__", "1" * 5000)):
        path = tmp_path / "json.npz"
        write_npz(path, {**arrays, entry: np.array(value)})
        with pytest.raises(S4DInputError, match=re.escape(f"fixed-point model file {path}: ")):
            load_fxp(path)


def test_model_readers_accept_their_own_files(files):
    assert isinstance(read_model_file(files["dir"] / "fxp.npz").model, FxpModel)
    assert load_record(files["dir"] / "float.npz") == {"made_by": "test_file_readers", "epochs": 3}


# ---------------------------------------------------------------- writes


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_is_atomic_and_cleans_up_on_failure(tmp_path):
    out = tmp_path / "m.npz"
    out.write_bytes(b"old")

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(out, fail)
    assert out.read_bytes() == b"old" and leftovers(tmp_path) == []
    with pytest.raises(S4DInputError, match="object dtype"):
        write_npz(out, {"a": np.zeros(2), "b": np.array([{}], dtype=object)})
    assert out.read_bytes() == b"old" and leftovers(tmp_path) == []
    write_npz(out, {"a": np.zeros(2)})
    assert read_npz(out)["a"].shape == (2,) and leftovers(tmp_path) == []


def test_write_does_not_follow_planted_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "m.npz"
    (tmp_path / "m.npz.tmp").symlink_to(victim)  # the name the old writer used
    write_npz(out, {"a": np.ones(3)})
    assert victim.read_bytes() == b"precious"
    link = tmp_path / "link.npz"
    link.symlink_to(victim)
    write_npz(link, {"a": np.ones(3)})  # the link itself is replaced by the file
    assert victim.read_bytes() == b"precious" and not link.is_symlink() and read_npz(link)["a"].shape == (3,)


def test_write_keeps_the_mode_of_a_replaced_file(tmp_path):
    out = tmp_path / "m.npz"
    write_npz(out, {"a": np.ones(3)})
    out.chmod(0o640)
    write_npz(out, {"a": np.ones(4)})
    assert out.stat().st_mode & 0o777 == 0o640


def test_write_to_a_directory_or_an_impossible_folder(tmp_path):
    with pytest.raises(S4DInputError, match=re.escape(f"output file {tmp_path} is a directory")):
        write_npz(tmp_path, {"a": np.ones(1)})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(S4DInputError, match=re.escape(f"output file {blocker / 'sub' / 'm.npz'}: cannot create")):
        write_npz(blocker / "sub" / "m.npz", {"a": np.ones(1)})
    with pytest.raises(S4DInputError, match=r"folder .*missing.* does not exist"):
        atomic_write(tmp_path / "missing" / "m.npz", lambda f: f.write(b"x"))
    with pytest.raises(S4DInputError, match=r"array name 'a/b' is not storable"):
        write_npz(tmp_path / "n.npz", {"a/b": np.ones(1)})
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_write_into_an_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(S4DInputError, match=r"cannot create a file in"):
            write_npz(folder / "m.npz", {"a": np.ones(1)})
        with pytest.raises(S4DInputError, match=r"is not writable"):
            check_output_path(folder / "m.npz")
    finally:
        folder.chmod(0o700)


def test_check_output_path(tmp_path):
    model = tmp_path / "model.npz"
    model.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    for same in (model, tmp_path / "sub" / ".." / "model.npz", str(model)):
        with pytest.raises(S4DInputError, match=r"is the input file .*would replace the input"):
            check_output_path(same, None, model)
    link = tmp_path / "link.npz"
    link.symlink_to(model)
    hard = tmp_path / "hard.npz"
    os.link(model, hard)
    for other in (link, hard):
        with pytest.raises(S4DInputError, match=r"is the input file"):
            check_output_path(other, model)
    with pytest.raises(S4DInputError, match=r"is a directory"):
        check_output_path(tmp_path / "sub", model)
    with pytest.raises(S4DInputError, match=r"does not exist"):
        check_output_path(tmp_path / "new" / "out.npz", model, make_dirs=False)
    with pytest.raises(S4DInputError, match=r"cannot be created, .* is not a folder"):
        check_output_path(model / "out.npz", model)
    assert check_output_path(tmp_path / "new" / "deeper" / "out.npz", model) == tmp_path / "new" / "deeper" / "out.npz"
    assert check_output_path(tmp_path / "out.npz", model, tmp_path / "calib.npz") == tmp_path / "out.npz"


# ---------------------------------------------------------------- gzip/idx and tar readers


def idx_bytes(a: np.ndarray, magic: int, dims=None) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in (dims or a.shape)) + a.tobytes()


def write_mnist(folder: Path, images_file: bytes | None = None, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = idx_bytes(rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), datafiles.IDX_IMAGES_MAGIC)
    lab = idx_bytes(rng.integers(0, 10, 5, dtype=np.uint8), datafiles.IDX_LABELS_MAGIC)
    img_name, lab_name = datafiles._MNIST_FILES["test"]
    (folder / lab_name).write_bytes(lab)
    path = folder / (img_name + (".gz" if gz else ""))
    path.write_bytes(images_file if images_file is not None else (gzip.compress(img) if gz else img))
    return path


def load_mnist(folder: Path):
    return datafiles.load_mnist_arrays("test", [folder])


def test_mnist_reader_sanity(tmp_path):
    for gz in (False, True):
        write_mnist(tmp_path / str(gz), gz=gz)
        x, y, _ = load_mnist(tmp_path / str(gz))
        assert x.shape == (5, 784, 1) and y.shape == (5,)


@pytest.mark.parametrize("damage, pattern", [
    ("truncated", r"not a valid gzip file"),
    ("flipped", r"not a valid gzip file"),
    ("crc", r"not a valid gzip file .*CRC"),
    ("junk", r"not a valid gzip file|wrong magic number"),  # junk may inflate to bytes: the magic is checked first
])
def test_damaged_gzip_is_an_input_error(tmp_path, damage, pattern):
    good = gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8) + 7, datafiles.IDX_IMAGES_MAGIC))
    data = bytearray(good)
    if damage == "truncated":
        data = data[:len(data) - 20]
    elif damage == "flipped":
        data[len(data) // 2] ^= 0xFF
    elif damage == "crc":
        data[-8] ^= 1
    else:
        data = data[:10] + b"junk" * 20
    path = write_mnist(tmp_path, bytes(data), gz=True)
    _, error = bounded(load_mnist, tmp_path)
    assert error is not None and str(path) in str(error) and re.search(pattern, str(error)), error


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_claiming_too_many_items(tmp_path, gz):
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8), datafiles.IDX_IMAGES_MAGIC, dims=(4_000_000_000, 28, 28))
    path = write_mnist(tmp_path, gzip.compress(data) if gz else data, gz=gz)
    _, error = bounded(load_mnist, tmp_path)
    assert error is not None and str(path) in str(error) and "more than any MNIST file holds" in str(error)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_claiming_more_than_the_data_holds(tmp_path, gz):
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8), datafiles.IDX_IMAGES_MAGIC, dims=(60_000, 28, 28))
    path = write_mnist(tmp_path, gzip.compress(data) if gz else data, gz=gz)
    _, error = bounded(load_mnist, tmp_path)
    assert error is not None and str(path) in str(error) and "truncated" in str(error)


def gzip_of_zeros_bomb(header: bytes, n_zero_mib: int) -> bytes:
    """A gzip file of header + n MiB of zeros (see zeros_bomb), under 1 MiB for 200 MiB."""
    stream, crc, size = zeros_bomb(header, n_zero_mib)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + struct.pack("<II", crc, size & 0xFFFFFFFF)


def test_gzip_bomb_behind_a_small_idx_header_is_not_decompressed(tmp_path):
    """A header claiming 5 images followed by 200 MiB of zeros: only the 5 images (+1 byte) are decompressed."""
    bomb = gzip_of_zeros_bomb(idx_bytes(np.zeros((5, 28, 28), np.uint8), datafiles.IDX_IMAGES_MAGIC), 200)
    assert len(bomb) < 1 << 20
    path = write_mnist(tmp_path, bomb, gz=True)
    _, error = bounded(load_mnist, tmp_path)
    assert error is not None and str(path) in str(error) and "trailing bytes" in str(error)


def png_bytes(size=(32, 32)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (its pixel data is a few bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def write_tar(path: Path, members: list[tuple[str, bytes]], raw_tail: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue() + raw_tail))
    return path


def load_cifar_tar(folder: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning for the huge-header PNG
        return datafiles.load_cifar_rgb_arrays("train", [folder])


GOOD = [("train/cat/0.png", None), ("train/dog/1.png", None)]


def test_tar_reader_sanity(tmp_path):
    write_tar(tmp_path / "cifar10" / "x.tar.gz", [(n, png_bytes()) for n, _ in GOOD])
    x, y, meta = load_cifar_tar(tmp_path)
    assert x.shape == (2, 1024, 3) and meta["format"] == "image-tar"


@pytest.mark.parametrize("bad, pattern", [
    (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, r"train/dog/1.png: cannot decode the image"),
    (png_bytes()[:60], r"train/dog/1.png: cannot decode the image"),
    (png_claiming(10_000, 10_000), r"train/dog/1.png: image is 10000x10000, CIFAR-10 images are 32x32"),
    (png_claiming(30_000, 30_000), r"train/dog/1.png: cannot decode the image"),
    (bytes(2 << 20), r"member 'train/dog/1.png' is 2097152 bytes, more than 1048576"),
], ids=["garbage", "truncated", "10000x10000", "bomb-30000x30000", "2MiB"])
def test_tar_with_a_corrupt_member(tmp_path, bad, pattern):
    tar = write_tar(tmp_path / "cifar10" / "x.tar.gz", [("train/cat/0.png", png_bytes()), ("train/dog/1.png", bad)])
    _, error = bounded(load_cifar_tar, tmp_path)
    assert error is not None and str(tar) in str(error) and re.search(pattern, str(error)), error


def test_tar_truncated_or_damaged(tmp_path):
    members = [(f"train/cat/{i}.png", png_bytes()) for i in range(3)]
    tar = write_tar(tmp_path / "cifar10" / "x.tar.gz", members)
    good = tar.read_bytes()
    for data in (good[: len(good) // 2], good[:30] + bytes([good[30] ^ 0xFF]) + good[31:]):
        tar.write_bytes(data)
        _, error = bounded(load_cifar_tar, tmp_path)
        assert error is not None and str(tar) in str(error), error
    raw = gzip.decompress(good)
    tar.write_bytes(gzip.compress(raw[:512 + 300]))  # inside the first member's data
    _, error = bounded(load_cifar_tar, tmp_path)
    assert error is not None and str(tar) in str(error), error


def test_tar_pax_record_claiming_a_huge_size_is_not_read(tmp_path):
    """A pax header record of 200 MiB (really there, zeros, gzip-compressed to under 1 MiB) is refused unread."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 200 << 20
    tar = tmp_path / "cifar10" / "x.tar.gz"
    tar.parent.mkdir(parents=True)
    tar.write_bytes(gzip_of_zeros_bomb(info.tobuf(format=tarfile.USTAR_FORMAT), 201))
    _, error = bounded(load_cifar_tar, tmp_path)
    assert error is not None and str(tar) in str(error) and "refusing the archive" in str(error), error
