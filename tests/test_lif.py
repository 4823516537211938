"""LIF neurons (Eq. 1-3): hand-computed spike trains, state continuation, ASR and its limit."""
import math

import pytest
import torch

from stpcore.snn.lif import equilibrium_rate, lif_scan, lif_scan_loop, spike_rate


def hand_lif(currents, threshold, leak):
    """Eq. 1-3 for one neuron in plain Python: u = g u + I - V s_prev, s = [u >= V]."""
    u = s = 0.0
    out = []
    for i in currents:
        u = leak * u + i - threshold * s
        s = 1.0 if u >= threshold else 0.0
        out.append(s)
    return out


def constant(i, steps, shape=(1,), dtype=torch.float64):
    return torch.full((steps, *shape), float(i), dtype=dtype)


def test_constant_current_hand_computed_train():
    # I = 3/8, V = 1 (dyadic, so exact): u = .375 .75 1.125* | .5 .875 1.25* | .625 1.0* | ...
    # The step at t = 8 lands exactly on the threshold: H(0) = 1 makes it spike.
    spikes, (u, s) = lif_scan(constant(0.375, 12), 1.0)
    fired = (spikes[:, 0] == 1).nonzero().flatten().add(1).tolist()     # 1-based steps
    assert fired == [3, 6, 8, 11]
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    # final state: u[12] = 12 * I minus one reset per spike at t = 3, 6, 8, 11
    assert u.item() == 12 * 0.375 - 4 * 1.0
    assert s.item() == 0.0


def test_constant_current_from_the_brief():
    # I = 0.3, V = 1 with subtractive reset: u = .3 .6 .9 1.2* | .5 .8 1.1* | .4 .7 1.0* | ...
    # (the t = 10 value is 1.0 up to rounding; IEEE rounds it to >= 1 in fp32 and fp64)
    for dtype in (torch.float32, torch.float64):
        spikes, _ = lif_scan(constant(0.3, 12, dtype=dtype), 1.0)
        assert (spikes[:, 0] == 1).nonzero().flatten().add(1).tolist() == [4, 7, 10]


def test_threshold_exactly_reached_spikes():
    spikes, _ = lif_scan(constant(0.5, 2), 1.0)          # u = 0.5, 1.0 -> H(0) = 1
    assert spikes[:, 0].tolist() == [0.0, 1.0]
    spikes, _ = lif_scan(constant(2.0, 1), 2.0)          # u = V at the first step
    assert spikes[:, 0].tolist() == [1.0]


@pytest.mark.parametrize("leak", [1.0, 0.9, 0.5])
def test_random_currents_match_hand_recurrence(leak):
    gen = torch.Generator().manual_seed(3)
    cur = torch.rand(40, 5, generator=gen, dtype=torch.float64) * 1.6 - 0.3
    spikes, _ = lif_scan(cur, 0.8, leak)
    for j in range(cur.shape[1]):
        assert spikes[:, j].tolist() == hand_lif(cur[:, j].tolist(), 0.8, leak)


def test_leak_below_one_hand_values():
    # gamma = 0.5, I = 0.75, V = 1: u = .75, 1.125*, .3125, .90625, 1.203125*
    spikes, (u, _) = lif_scan(constant(0.75, 5), 1.0, leak=0.5)
    assert spikes[:, 0].tolist() == [0, 1, 0, 0, 1]
    assert u.item() == 1.203125
    # leak < 1 fires strictly less than integrate-and-fire for the same current
    assert spikes.sum() < lif_scan(constant(0.75, 5), 1.0, leak=1.0)[0].sum()


def test_tensor_threshold_broadcasts_per_neuron():
    cur = constant(0.5, 8, shape=(2, 3))
    vth = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    spikes, _ = lif_scan(cur, vth)
    assert spike_rate(spikes)[0].tolist() == [1.0, 0.5, 0.25]


def test_state_continuation_equals_one_scan():
    gen = torch.Generator().manual_seed(1)
    cur = torch.rand(20, 4, 6, generator=gen) * 1.5 - 0.2
    full, (u_full, s_full) = lif_scan(cur, 0.7, 0.95)
    first, state = lif_scan(cur[:9], 0.7, 0.95)
    second, (u_two, s_two) = lif_scan(cur[9:], 0.7, 0.95, state=state)
    assert torch.equal(torch.cat([first, second]), full)
    assert torch.equal(u_two, u_full) and torch.equal(s_two, s_full)
    # continuing from rest is different (the state is really used)
    assert not torch.equal(lif_scan(cur[9:], 0.7, 0.95)[0], second)


def test_spike_rate_is_count_over_T():
    spikes = torch.tensor([[1, 0], [0, 0], [1, 1], [1, 0]], dtype=torch.float32)
    assert spike_rate(spikes).tolist() == [0.75, 0.25]
    spikes, _ = lif_scan(constant(0.375, 12), 1.0)
    assert spikes.sum().item() == 4
    assert spike_rate(spikes).item() == pytest.approx(4 / 12, rel=1e-6)


@pytest.mark.parametrize("steps", [7, 50, 333])
def test_rate_converges_to_equilibrium_within_one_over_T(steps):
    vth = 1.3
    currents = torch.linspace(0.01, 1.29, 37, dtype=torch.float64)
    spikes, _ = lif_scan(currents.expand(steps, -1).clone(), vth)
    asr = spike_rate(spikes).double()
    target = equilibrium_rate(currents, vth)
    assert torch.all((asr - target).abs() <= 1.0 / steps + 1e-12)
    # integrate-and-fire count is floor(T I / V) (never more spikes than the current allows)
    assert torch.equal(spikes.sum(0), torch.floor(steps * currents / vth + 1e-9))


def test_equilibrium_rate_closed_form():
    cur = torch.tensor([-1.0, 0.0, 0.3, 1.0, 2.5])
    assert torch.allclose(equilibrium_rate(cur, 2.0), torch.tensor([0.0, 0.0, 0.15, 0.5, 1.0]))


def test_negative_current_never_spikes():
    gen = torch.Generator().manual_seed(0)
    cur = -torch.rand(200, 3, 4, generator=gen) - 1e-3
    spikes, (u, _) = lif_scan(cur, 0.5)
    assert spikes.sum() == 0
    assert torch.all(u < 0)


def test_empty_time_axis_raises():
    with pytest.raises(ValueError, match="time axis"):
        lif_scan(torch.zeros(0, 3), 1.0)
    with pytest.raises(ValueError, match="time axis"):
        lif_scan(torch.tensor(1.0), 1.0)
    with pytest.raises(ValueError, match="time axis"):
        lif_scan_loop(torch.zeros(0, 2, 2), 1.0)


def test_low_precision_current_keeps_fp32_state():
    cur = constant(0.375, 12, dtype=torch.bfloat16)
    spikes, (u, s) = lif_scan(cur, 1.0)
    assert spikes.dtype == torch.bfloat16 and u.dtype == torch.float32
    assert (spikes[:, 0] == 1).nonzero().flatten().add(1).tolist() == [3, 6, 8, 11]


def test_fused_lif_switch_rejects_unknown_values(monkeypatch):
    from stpcore.snn.lif import use_fused_lif
    monkeypatch.setenv("STP_FUSED_LIF", "yes")
    with pytest.raises(ValueError, match="STP_FUSED_LIF"):
        use_fused_lif(torch.device("cpu"))
    monkeypatch.setenv("STP_FUSED_LIF", "0")
    assert use_fused_lif(torch.device("cpu")) is False
