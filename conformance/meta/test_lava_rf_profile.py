"""The `loihi2-rf` format profile (SPEC.md 14.9) against Intel's own bit-accurate model of a complex neuron: lava-nc's
resonate-and-fire `PyRFModelFixed` (lava/proc/rf/models.py, Loihi2SimCfg select_tag "fixed_pt").

One mode neuron of 14.3 step 3a is an RF neuron: its decays are the mode's integer Abar (cos_decay = ar,
sin_decay = ai at decay_bits = F), its input currents are the two products Bbar v, each rescaled alone
(`sign(p) (|p| >> F)`, written out here), state_exp = 0 (the state shares the input's scale, 14.2), and its
threshold is out of reach (2^24 > 2^23 - 1), so it never spikes (a spike does not change its state anyway). RF
decays are unsigned: only modes with ar, ai >= 0 (cos and sin of the rotation non-negative) are representable.
Under the profile, the engine's state sequence of the mode (`fixedpoint.engine.mode_states`) must equal the RF
neuron's real and imaginary parts at every step, on several streams, loud ones clamping at +-(2^23 - 1) included;
and each single convention of the default format put back (floor, per-sum rescale, asymmetric clamp) must differ
from Intel's model somewhere on the same streams, so the check can tell the conventions apart.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from s4dconf.backends.lava_runtime import lava_availability, run_isolated

_LAVA_OK, _LAVA_REASON = lava_availability()
if not _LAVA_OK:
    pytest.skip(f"lava-nc's PyRFModelFixed runs in the Lava env only: {_LAVA_REASON}", allow_module_level=True)

from s4dconf.fixedpoint.engine import mode_states  # noqa: E402
from s4dconf.fixedpoint.formats import FORMAT_PROFILES, load_fxp  # noqa: E402
from s4dconf.goldens.store import GOLDEN_DIR  # noqa: E402

RF = FORMAT_PROFILES["loihi2-rf"]
F = RF.frac_bits
L = 64
STATE_MAX = 2 ** (RF.state_bits - 1) - 1


def shift_toward_zero(p: np.ndarray, s: int) -> np.ndarray:
    """sign(p) (|p| >> s): PyRFModelFixed.scale_volt, written out here (not taken from the code under test)."""
    p = np.asarray(p, dtype=np.int64)
    return np.sign(p) * (np.abs(p) >> s)


def rf_mode_run(ar: int, ai: int, re_in: np.ndarray, im_in: np.ndarray):
    """lava-nc's RF process (fixed_pt) for one mode: K neurons, RingBuffer inputs (K, L) into a_real_in and
    a_imag_in, Monitors on real and imag. Returns (real (K, L), imag (K, L), the process's (cos_decay, sin_decay,
    decay_bits), the model's decay precision)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor
    from lava.proc.rf.models import PyRFModelFixed
    from lava.proc.rf.process import RF as RFProcess

    K, steps = re_in.shape
    # RF takes (period, alpha) and truncates (1 - alpha) cos/sin(2 pi / period) 2^decay_bits; a magnitude 2^-30
    # above the mode's keeps float error from truncating ar or ai one unit low (the decays are checked below)
    theta = math.atan2(ai, ar)
    rf = RFProcess(shape=(K,), period=2 * math.pi / theta if theta else math.inf,
                   alpha=1.0 - math.hypot(ar, ai) * 2.0 ** -F * (1 + 2.0 ** -30), state_exp=0, decay_bits=F,
                   vth=2 ** RF.state_bits)
    src_re, src_im = RingBuffer(data=re_in.astype(np.float64)), RingBuffer(data=im_in.astype(np.float64))
    src_re.s_out.connect(rf.a_real_in)
    src_im.s_out.connect(rf.a_imag_in)
    mon_re, mon_im = Monitor(), Monitor()
    mon_re.probe(rf.real, steps)
    mon_im.probe(rf.imag, steps)
    try:
        rf.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        real = mon_re.get_data()[rf.name]["real"].T
        imag = mon_im.get_data()[rf.name]["imag"].T
        decays = (int(rf.cos_decay.get()[0]), int(rf.sin_decay.get()[0]), int(rf.decay_bits.get()[0]))
    finally:
        rf.stop()
    return real, imag, decays, PyRFModelFixed.sin_decay.precision


def rf_modes_job(modes: list, streams: list) -> list:
    """rf_mode_run for each mode (ar, ai, br, bi) with its streams v (K, L): the input currents are the products
    Bbar v, each rescaled alone. One forked child runs them all (SPEC.md 16.3)."""
    return [rf_mode_run(ar, ai, shift_toward_zero(br * v, F), shift_toward_zero(bi * v, F))
            for (ar, ai, br, bi), v in zip(modes, streams)]


def representable_golden_modes(n: int) -> list[tuple[int, int, int, int]]:
    """(ar, ai, br, bi) of n modes of the stored integer goldens' models with ar, ai >= 0: the slowest, the
    fastest-rotating, and evenly spaced ones by |Abar| between them."""
    modes = set()
    for path in sorted(GOLDEN_DIR.glob("fxp-model-*.npz")):
        m = load_fxp(path)
        for i in range(m.config.n_layers):
            a = [m.arrays[f"layer{i}.{k}"].ravel() for k in ("Abar_re", "Abar_im", "Bbar_re", "Bbar_im")]
            modes |= {tuple(int(v) for v in t) for t in zip(*a) if t[0] >= 0 and t[1] >= 0}
    by_mag = sorted(modes, key=lambda t: (t[0] ** 2 + t[1] ** 2, t))
    picks = [by_mag[-1], max(modes, key=lambda t: (math.atan2(t[1], t[0]), t))]
    picks += [by_mag[j] for j in np.linspace(0, len(by_mag) - 1, n).astype(int)]
    return list(dict.fromkeys(picks))  # in order, without repeats


# hand-picked edges: no rotation, a quarter turn, the largest representable decays (|Abar| just below 1)
EDGE_MODES = [(4095, 0, 1 << F, 0), (0, 4095, 1 << F, 1 << (F - 1)), (2896, 2896, 1 << F, -(1 << F))]


def input_streams(seed: int) -> np.ndarray:
    """Integer block inputs v (K, L) within the 24-bit message range: noise, sparse spikes, a small alternating
    sign (toward zero and floor part ways on negatives), and constant loud positive and negative inputs that drive
    the state of a slow mode into its clamp."""
    rng = np.random.default_rng(seed)
    M = 2 ** (RF.msg_bits - 1) - 1
    spikes = (rng.random(L) < 0.1) * rng.choice([-1, 1], L) * (1 << 20)
    return np.stack([
        np.round(rng.standard_normal(L) * 2.0 ** 16), spikes, np.where(np.arange(L) % 2 == 0, 3, -5),
        np.full(L, M), np.full(L, -M), np.round(rng.standard_normal(L) * 2.0 ** 22).clip(-M, M),
    ]).astype(np.int64)


MODES = representable_golden_modes(4) + EDGE_MODES
MODE_IDS = ["A=({},{}) B=({},{})".format(*t) for t in MODES]


@pytest.fixture(scope="module")
def rf_runs():
    """Per mode: (v (K, L), Intel's real and imaginary states (K, L), the RF process's decays, its precision)."""
    streams = [input_streams(seed=ar * 4096 + ai) for ar, ai, _, _ in MODES]
    runs = run_isolated(rf_modes_job, (MODES, streams), 600, what="lava-nc RF runs")
    return [(v, *run) for v, run in zip(streams, runs)]


def test_profile_widths_and_decays_are_the_rf_models(rf_runs):
    """The profile's F is the RF model's decay precision (its decays are unsigned decay_bits-bit magnitudes) and
    its state is twice that wide, as PyRFModelFixed derives its clip limit; each RF process holds its mode's
    integer Abar as its decays."""
    for (ar, ai, _, _), (_, _, _, decays, precision) in zip(MODES, rf_runs):
        assert RF.frac_bits == precision and RF.state_bits == 2 * precision
        assert decays == (ar, ai, F), f"mode ({ar}, {ai}): the RF process holds decays {decays}"


def first_difference(fmt, mode, v, real, imag) -> str | None:
    """Where the engine's state sequence of the mode under fmt first differs from Intel's, or None."""
    ar, ai, br, bi = mode
    x = mode_states(fmt, complex(ar, ai), complex(br, bi), v)
    for name, ours, intel in (("real", x.real, real), ("imag", x.imag, imag)):
        diff = np.argwhere(ours != intel)
        if diff.size:
            at = tuple(diff[0])
            return (f"{name} state of mode {mode}, stream {at[0]}, step {at[1]}: engine {ours[at]:.0f}, "
                    f"PyRFModelFixed {intel[at]:.0f}")
    return None


@pytest.mark.parametrize("index", range(len(MODES)), ids=MODE_IDS)
def test_numpy_fxp_rf_profile_is_bit_exact_with_pyrfmodelfixed(rf_runs, index):
    v, real, imag, _, _ = rf_runs[index]
    assert first_difference(RF, MODES[index], v, real, imag) is None, first_difference(
        RF, MODES[index], v, real, imag)


@pytest.mark.parametrize("field, default", [("rounding", "floor"), ("rescale", "per_sum"),
                                            ("saturation", "asymmetric")])
def test_each_default_convention_differs_from_the_rf_model(rf_runs, field, default):
    """The profile with one convention of the default format put back differs from Intel's model on some mode and
    stream: the bit-exact test pins each convention (a loud stream clamps, so saturation is seen too)."""
    fmt = dataclasses.replace(RF, **{field: default})
    found = [first_difference(fmt, mode, *run[:3]) for mode, run in zip(MODES, rf_runs)]
    assert any(found), f"{field} = {default!r} gives Intel's states on every mode and stream"
    clamped = any(np.abs(run[1]).max() == STATE_MAX for run in rf_runs)
    assert clamped, "no stream drives a state into the RF clip: the saturation convention goes unchecked"
