"""Temporal pruning: PCA complexity, running rates and the Eq. 10 allocation."""
import math

import pytest
import torch

from stpcore.prune.temporal import (allocate_timesteps, count_components, mean_latency,
                              prune_timesteps, running_rate)


def low_rank(rank, steps=60, features=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(steps, rank, generator=gen, dtype=torch.float64) @ torch.randn(
        rank, features, generator=gen, dtype=torch.float64)


def test_allocate_matches_eq10_by_hand():
    c, b, t_conv = [3, 5, 4], 1.02, 85
    expected = [math.ceil(b ** cl / max(b ** cj for cj in c) * t_conv) for cl in c]
    assert expected == [82, 85, 84]
    assert allocate_timesteps(c, b, t_conv) == expected


def test_allocate_large_base_and_floor_of_one():
    c, b, t_conv = [2, 7, 5], 3.0, 50
    expected = [math.ceil(b ** cl / b ** 7 * t_conv) for cl in c]
    assert expected == [1, 50, 6]
    assert allocate_timesteps(c, b, t_conv) == expected


def test_allocate_huge_components_do_not_overflow():
    assert allocate_timesteps([1000, 3000, 2999], 2.0, 85) == [1, 85, 43]


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_count_components_recovers_rank(rank):
    assert count_components(low_rank(rank), variance=0.99999) == rank


def test_count_components_edge_cases():
    assert count_components(torch.ones(10, 5)) == 1                     # zero variance
    assert count_components(torch.ones(10, 0)) == 1                     # no neurons left
    assert count_components(low_rank(3, steps=4, features=6), 1.0) <= 3  # capped at the rank
    assert count_components(low_rank(7).numpy(), 0.5) <= 7               # numpy input


def test_running_rate_of_known_train():
    spikes = torch.tensor([1, 0, 1, 1])
    torch.testing.assert_close(running_rate(spikes), torch.tensor([1.0, 0.5, 2 / 3, 0.75]))
    both = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(running_rate(both), torch.tensor([[1.0, 0.0], [1.0, 0.0],
                                                                 [2 / 3, 1 / 3]]))


def test_prune_timesteps_and_latency():
    traces = [low_rank(2, seed=1), low_rank(4, seed=2), low_rank(3, seed=3)]
    components, steps = prune_timesteps(traces, 0.99999, 1.5, 80)
    assert components == [2, 4, 3]
    assert steps == [math.ceil(1.5 ** (c - 4) * 80) for c in components] == [36, 80, 54]
    assert mean_latency(steps) == pytest.approx((36 + 80 + 54) / 3)


@pytest.mark.parametrize("base", [1.0, 0.5])
def test_bad_base(base):
    with pytest.raises(ValueError, match="`base` must be > 1"):
        allocate_timesteps([3, 4], base, 85)


@pytest.mark.parametrize("variance", [0, 1.5])
def test_bad_variance(variance):
    with pytest.raises(ValueError, match="`variance`"):
        count_components(low_rank(2), variance)


def test_bad_traces_and_components():
    with pytest.raises(ValueError, match="`traces`"):
        count_components(torch.rand(10))
    with pytest.raises(ValueError, match="`components`"):
        allocate_timesteps([], 1.5, 85)
    with pytest.raises(ValueError, match="`components`"):
        allocate_timesteps([3, 0], 1.5, 85)
    with pytest.raises(ValueError, match="`t_conv`"):
        allocate_timesteps([3, 4], 1.5, 0)
