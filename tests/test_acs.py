"""AC counts (Eq. 14-21): closed forms on a tiny SpikingBERT, gradients, validation."""
import math

import pytest
import torch

from stpcore.prune.acs import (POPULATIONS, acs_fraction, count_acs, count_synaptic_acs,
                         estimate_energy, normalized_c)

L, D, HEADS, F, N = 2, 8, 2, 16, 3
H = D // HEADS
T = [4, 2]
T_CONV = 4
PER_HEAD = 3 * N * D * H + 2 * N * N * H + N * D * H   # Eq. 17-20 per head per timestep
PER_NEURON = 2 * N * D                                  # Eq. 21 per neuron per timestep
CONFIG = dict(seq_len=N, hidden_size=D, num_heads=HEADS)


def ones():
    return torch.ones(L, HEADS), torch.ones(L, F)


def constant_rates(value):
    return {"embedding": value, "layers": [[value] * len(POPULATIONS) for _ in range(L)]}


def test_count_matches_hand_computed_closed_form():
    head = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    neuron = torch.ones(L, F)
    neuron[0, 10:] = 0                                   # 10 neurons kept in layer 1
    # layer 1: 1 head, 10 neurons, t=4; layer 2: 2 heads, 16 neurons, t=2
    qkv = lambda t: 3 * N * D * H * t
    attn = lambda t: 2 * N * N * H * t
    fc = lambda t: N * D * H * t
    ffn = lambda t: N * D * t + N * D * t
    expected = (1 * (qkv(4) + attn(4) + fc(4)) + 10 * ffn(4)
                + 2 * (qkv(2) + attn(2) + fc(2)) + 16 * ffn(2))
    assert expected == 7104
    got = count_acs(head, neuron, T, **CONFIG)
    assert got.dtype == torch.float64 and got.item() == expected


def test_unpruned_count_and_fraction_one():
    head, neuron = ones()
    full = count_acs(head, neuron, [T_CONV] * L, **CONFIG)
    assert full.item() == L * T_CONV * (HEADS * PER_HEAD + F * PER_NEURON)
    frac = acs_fraction(head, neuron, [T_CONV] * L, **CONFIG, reference_timesteps=T_CONV)
    assert frac.item() == 1.0
    frac_t = acs_fraction(head, neuron, T, **CONFIG, reference_timesteps=T_CONV)
    assert frac_t.item() == pytest.approx(sum(T) / (L * T_CONV))


def test_timesteps_as_tensor_match_list():
    head, neuron = ones()
    from_list = count_acs(head, neuron, T, **CONFIG)
    from_tensor = count_acs(head, neuron, torch.tensor(T, dtype=torch.float32), **CONFIG)
    assert from_list.item() == from_tensor.item()


def test_pruning_one_head_or_neuron_removes_exactly_its_share():
    head, neuron = ones()
    full = count_acs(head, neuron, T, **CONFIG).item()
    head[1, 0] = 0
    assert full - count_acs(head, neuron, T, **CONFIG).item() == PER_HEAD * T[1]
    head, neuron = ones()
    neuron[0, 3] = 0
    assert full - count_acs(head, neuron, T, **CONFIG).item() == N * D * (T[0] + T[0])


def test_gradient_wrt_soft_masks_is_unit_cost():
    head = torch.full((L, HEADS), 0.5, requires_grad=True)
    neuron = torch.full((L, F), 0.3, requires_grad=True)
    count_acs(head, neuron, T, **CONFIG).backward()
    expected_head = torch.tensor([[PER_HEAD * t] * HEADS for t in T], dtype=torch.float32)
    expected_neuron = torch.tensor([[PER_NEURON * t] * F for t in T], dtype=torch.float32)
    torch.testing.assert_close(head.grad, expected_head)
    torch.testing.assert_close(neuron.grad, expected_neuron)


def test_breakdown_sums_to_count():
    head = torch.tensor([[1.0, 0.0], [0.7, 1.0]])
    neuron = torch.rand(L, F, generator=torch.Generator().manual_seed(0))
    rows = count_synaptic_acs(head, neuron, T, **CONFIG)
    assert len(rows) == 8 * L
    assert math.isclose(sum(r["acs"] for r in rows), count_acs(head, neuron, T, **CONFIG).item(),
                        rel_tol=1e-12)
    first = {r["connection"]: r for r in rows if r["layer"] == 0}
    second = {r["connection"]: r for r in rows if r["layer"] == 1}
    assert first["query"]["pre_population"] == "embedding" and first["query"]["pre_layer"] is None
    assert (second["key"]["pre_layer"], second["key"]["pre_population"]) == (0, "output")
    assert (second["scores"]["pre_layer"], second["scores"]["pre_population"]) == (1, "key")
    assert second["scores"]["acs"] == pytest.approx(N * N * H * 1.7 * T[1])


def test_normalized_c_bounds():
    head, neuron = ones()
    args = (head, neuron, [T_CONV] * L)
    assert normalized_c(constant_rates(0.0), *args, **CONFIG, reference_timesteps=T_CONV) == 0.0
    assert normalized_c(constant_rates(1.0), *args, **CONFIG, reference_timesteps=T_CONV) == 1.0


def test_normalized_c_rescales_rates_to_kept_units():
    head, neuron = ones()
    head[0, 1] = 0                                       # half the heads of layer 1 pruned
    neuron[1, : F // 4] = 0                              # a quarter of layer 2's neurons pruned
    rates = constant_rates(1.0)
    rates["layers"][0][POPULATIONS.index("attention")] = 0.5       # kept heads always spike
    rates["layers"][1][POPULATIONS.index("intermediate")] = 0.75   # kept neurons always spike
    got = normalized_c(rates, head, neuron, T, **CONFIG, reference_timesteps=T_CONV)
    expected = acs_fraction(head, neuron, T, **CONFIG, reference_timesteps=T_CONV).item()
    assert got == pytest.approx(expected, rel=1e-12)
    head[0] = 0                                          # no head kept: rate guard, no division
    assert normalized_c(rates, head, neuron, T, **CONFIG, reference_timesteps=T_CONV) < expected


def test_estimate_energy():
    assert estimate_energy(1e9) == pytest.approx(0.9e-3)
    assert estimate_energy(torch.tensor(1e9), macs=1e9) == pytest.approx(5.5e-3)


BAD_INPUTS = [
    ("head_mask", dict(head_mask=torch.ones(L, HEADS + 1))),
    ("head_mask", dict(head_mask=torch.ones(L * HEADS))),
    ("head_mask", dict(head_mask=torch.full((L, HEADS), 1.5))),
    ("neuron_mask", dict(neuron_mask=-torch.ones(L, F))),
    ("neuron_mask", dict(neuron_mask=torch.ones(L + 1, F))),
    ("neuron_mask", dict(neuron_mask=torch.ones(L, F, 1))),
    ("layer_timesteps", dict(layer_timesteps=[4])),
    ("layer_timesteps", dict(layer_timesteps=[4, 0])),
    ("seq_len", dict(seq_len=0)),
    ("hidden_size", dict(hidden_size=9)),
]


@pytest.mark.parametrize("name,override", BAD_INPUTS)
def test_bad_inputs_name_the_parameter(name, override):
    head, neuron = ones()
    kwargs = dict(head_mask=head, neuron_mask=neuron, layer_timesteps=T, **CONFIG)
    kwargs.update(override)
    with pytest.raises(ValueError, match=f"`{name}`"):
        count_acs(**kwargs)
    with pytest.raises(ValueError, match=f"`{name}`"):
        acs_fraction(**kwargs, reference_timesteps=T_CONV)


@pytest.mark.parametrize("reference", [0, -3, 2.5])
def test_bad_reference_timesteps(reference):
    head, neuron = ones()
    with pytest.raises(ValueError, match="`reference_timesteps`"):
        acs_fraction(head, neuron, T, **CONFIG, reference_timesteps=reference)
    with pytest.raises(ValueError, match="`reference_timesteps`"):
        normalized_c(constant_rates(0.5), head, neuron, T, **CONFIG,
                     reference_timesteps=reference)


def test_bad_rates():
    head, neuron = ones()
    short = {"embedding": 0.1, "layers": [[0.1] * len(POPULATIONS)]}
    with pytest.raises(ValueError, match="`rates`"):
        normalized_c(short, head, neuron, T, **CONFIG, reference_timesteps=T_CONV)
    with pytest.raises(ValueError, match="`rates`"):
        normalized_c(constant_rates(1.2), head, neuron, T, **CONFIG, reference_timesteps=T_CONV)
