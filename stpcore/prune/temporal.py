"""Temporal pruning: PCA-derived temporal complexity c^l and timestep allocation (Eq. 10).

For each encoder layer we record the running average spiking rate (ASR) of every neuron at
every timestep, a trace ``[T, F]`` (rows = timesteps as samples, columns = neurons as
features). The number of principal components needed to explain ``variance`` of it is the
layer's temporal complexity c^l, and Eq. 10 maps the c^l to per-layer timesteps t^l.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch


def _check(ok: bool, fn: str, name: str, allowed: str, got) -> None:
    if not ok:
        raise ValueError(f"{fn}: `{name}` must be {allowed}; got {got!r}")


def running_rate(spikes) -> torch.Tensor:
    """Running ASR ``a[t] = (s[1] + ... + s[t]) / t`` of spikes ``[T, ...]``, same shape."""
    spikes = torch.as_tensor(spikes)
    _check(spikes.dim() >= 1 and spikes.shape[0] >= 1, "running_rate", "spikes",
           "a tensor [T, ...] with T >= 1", tuple(spikes.shape))
    dtype = spikes.dtype if spikes.is_floating_point() else torch.float32
    steps = torch.arange(1, spikes.shape[0] + 1, dtype=dtype, device=spikes.device)
    return spikes.to(dtype).cumsum(dim=0) / steps.view(-1, *([1] * (spikes.dim() - 1)))


def count_components(traces, variance: float = 0.99999) -> int:
    """Temporal complexity c^l: principal components explaining ``variance`` of ``traces``.

    ``traces`` is ``[T, F]`` (timesteps x neurons). Columns are centred, singular values s
    give explained-variance ratios s_k^2 / sum s^2, and the result is the smallest k whose
    cumulative ratio is >= ``variance`` (capped at the number of singular values, so rounding
    cannot push it past the rank at ``variance`` = 1). A trace with zero variance (e.g. a
    layer whose rates never change) has 1 component by convention.
    """
    _check(isinstance(variance, Real) and 0 < variance <= 1, "count_components",
           "variance", "in (0, 1]", variance)
    traces = torch.as_tensor(traces).to(torch.float64)
    _check(traces.dim() == 2 and traces.shape[0] >= 2 and traces.shape[1] >= 1,
           "count_components", "traces", "a 2-D tensor [T, F] with T >= 2 timesteps",
           tuple(traces.shape))
    centred = traces - traces.mean(dim=0, keepdim=True)
    power = torch.linalg.svdvals(centred) ** 2
    total = power.sum()
    if total <= 0:
        return 1
    cumulative = torch.cumsum(power, dim=0) / total
    index = int(torch.searchsorted(cumulative, torch.tensor([float(variance)],
                                                            dtype=torch.float64)).item())
    return min(index + 1, power.shape[0])


def allocate_timesteps(components, base: float, t_conv: int) -> list[int]:
    """Eq. 10: ``t^l = ceil(b^{c^l} / max_j b^{c^j} * T_conv)``, each at least 1.

    Evaluated as ``b^{c^l - max_j c^j}``, a power <= 1 that cannot overflow for c in the
    thousands (it may underflow to 0, giving the floor of 1 timestep).
    """
    _check(isinstance(base, Real) and math.isfinite(base) and base > 1,
           "allocate_timesteps", "base", "> 1", base)
    _check(isinstance(t_conv, Integral) and t_conv >= 1, "allocate_timesteps", "t_conv",
           "an int >= 1", t_conv)
    components = list(components)
    _check(len(components) >= 1 and all(isinstance(c, Integral) and not isinstance(c, bool)
                                        and c >= 1 for c in components),
           "allocate_timesteps", "components", "a non-empty list of ints >= 1", components)
    top = max(components)
    return [max(1, math.ceil(float(base) ** (int(c) - int(top)) * int(t_conv)))
            for c in components]


def prune_timesteps(layer_traces, variance: float, base: float,
                    t_conv: int) -> tuple[list[int], list[int]]:
    """Temporal pruning of Sec. III-B2: per-layer ``[T, F]`` traces -> (c^l list, t^l list)."""
    layer_traces = list(layer_traces)
    _check(len(layer_traces) >= 1, "prune_timesteps", "layer_traces",
           "a non-empty list of [T, F] traces", layer_traces)
    components = [count_components(traces, variance) for traces in layer_traces]
    return components, allocate_timesteps(components, base, t_conv)


def mean_latency(layer_timesteps) -> float:
    """Latency as in Table III: the mean of the per-layer timesteps."""
    steps = [float(t) for t in layer_timesteps]
    _check(len(steps) >= 1 and min(steps) >= 1, "mean_latency", "layer_timesteps",
           "a non-empty list of numbers >= 1", steps)
    return sum(steps) / len(steps)
