"""pytest-benchmark measurements of the PyTorch baselines (SPEC.md section 17), float32, the paper's Jetson modes:

  torch-stream-latency   torch-rec: one token per timed call at batch 1, state carried (path eager; on CUDA also
                         cuda-graph); extra_info: us_per_token (mean, median, min), tokens_per_s.
  torch-conv-throughput  torch-conv: whole samples of L=784 at batch 1, 8 and 64; extra_info: samples_per_s,
                         tokens_per_s.
On CUDA the timed function synchronises before it returns. On the CPU torch runs on one thread, as the other
benchmarks. The chip's step time for loihi-profile is quoted from the paper, never measured here.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: the torch benchmarks need it")

from s4dconf.backends.torch_backends import TorchConvBackend, TorchRecBackend  # noqa: E402

from ._common import (  # noqa: E402,F401  (one_core: the module's autouse fixture)
    SEQ_LEN,
    STREAM_ROUNDS,
    STREAM_WARMUP,
    inputs,
    mean_seconds,
    model,
    one_core,
    stream_figures,
)
from .test_bench_reference import QUOTED_CHIP_STEP_US, QUOTED_SOURCE  # noqa: E402

pytestmark = [pytest.mark.benchmark]

CONV_BATCHES = (1, 8, 64)
CONV_ROUNDS = {"paper": 3, "loihi-profile": 5}


@pytest.fixture(scope="module", autouse=True)
def torch_one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _paths():
    return ["eager", "cuda-graph"] if torch.cuda.is_available() else ["eager"]


@pytest.mark.parametrize("path", _paths())
@pytest.mark.parametrize("name", ["loihi-profile", "paper"])
def test_torch_rec_stream_latency(benchmark, one_core, name, path):
    backend = TorchRecBackend()
    handle = backend.prepare(model(name))
    session = backend.open_session(handle, 1, graph=path == "cuda-graph")
    tokens = handle.tensor(inputs(1, (SEQ_LEN, 1, model(name).config.d_input)))
    pos = [0]

    def next_token():  # the tokens of one sequence in order; reset after each whole sequence
        if pos[0] == SEQ_LEN:
            session.reset()
            pos[0] = 0
        pos[0] += 1
        return (tokens[pos[0] - 1],), {}

    def step(u):
        out = session.step_tensor(u)[0]
        _sync(handle.device)
        return out

    info = {"backend": backend.name, "config": name, "mode": "stream", "path": path, "batch": 1, "seq_len": SEQ_LEN,
            "device": backend.info().device, "dtype": "float32", "torch": torch.__version__, **one_core}
    if name in QUOTED_CHIP_STEP_US:
        info.update(quoted_chip_step_us=QUOTED_CHIP_STEP_US[name], quoted_source=QUOTED_SOURCE)
    benchmark.group = "torch-stream-latency"
    benchmark.extra_info.update(info)
    logits = benchmark.pedantic(step, setup=next_token, rounds=STREAM_ROUNDS, iterations=1,
                                warmup_rounds=STREAM_WARMUP)
    assert logits.shape == (1, model(name).config.n_classes) and torch.isfinite(logits).all()
    figures = stream_figures(benchmark)
    if figures:
        benchmark.extra_info.update({k: figures[k] for k in (
            "us_per_token", "us_per_token_median", "us_per_token_min", "tokens_per_s")})


@pytest.mark.parametrize("batch", CONV_BATCHES)
@pytest.mark.parametrize("name", ["loihi-profile", "paper"])
def test_torch_conv_throughput(benchmark, one_core, name, batch):
    backend = TorchConvBackend()
    handle = backend.prepare(model(name))
    u = handle.tensor(inputs(0, (batch, SEQ_LEN, model(name).config.d_input)))

    def forward():
        with torch.no_grad():
            out = handle.module(u)[:, -1]
        _sync(handle.device)
        return out

    benchmark.group = "torch-conv-throughput"
    benchmark.extra_info.update(backend=backend.name, config=name, mode="conv", batch=batch, L=SEQ_LEN,
                                device=backend.info().device, dtype="float32", torch=torch.__version__, **one_core)
    logits = benchmark.pedantic(forward, rounds=CONV_ROUNDS[name], iterations=1, warmup_rounds=1)
    assert logits.shape == (batch, model(name).config.n_classes)
    assert np.isfinite(logits.cpu().numpy()).all()
    mean = mean_seconds(benchmark)
    if mean is not None:
        benchmark.extra_info.update(samples_per_s=batch / mean, tokens_per_s=batch * SEQ_LEN / mean)
