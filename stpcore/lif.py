"""Leaky integrate-and-fire neurons (Eq. 1-3) and their equilibrium rate map.

Recurrence for one population, input current ``I[t]`` (the synaptic sum ``W s_pre[t] + b``),
threshold ``V``, leak ``gamma``, membrane ``u`` and spikes ``s`` (both zero before t = 1)::

    u[t] = gamma * u[t-1] + I[t] - V * s[t-1]        (Eq. 1, subtractive reset)
    s[t] = H(u[t] - V)                              (Eq. 2-3, H(0) = 1)

In SpikingBERT the current of a population at step t is computed from its presynaptic
populations' spikes of the *same* step t (no synaptic delay between sublayers, as in the public
code), so a population can be simulated over a whole block of steps at once: one matrix product
with time folded into the batch, then this elementwise scan.
"""
from __future__ import annotations

import os

import torch

from .kernels import fused_lif_scan, fused_lif_supports


def lif_scan(current: torch.Tensor, threshold, leak: float = 1.0,
             state: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Run Eq. 1-3 over the leading time axis.

    Args:
        current: input current ``[T, B, ...]``.
        threshold: V_th, a float or a tensor broadcastable to ``current[0]``.
        leak: gamma in (0, 1].
        state: ``(u, s)`` of the previous step (each ``[B, ...]``) to continue a simulation;
            None starts from rest.

    Returns:
        ``(spikes [T, B, ...] in {0, 1}, state)`` with the final ``(u, s)``. Spikes have the
        current's dtype; the state is kept in at least fp32 (bf16/fp16 currents accumulate in
        fp32). On CUDA with triton and ``STP_FUSED_LIF=1``, a scalar threshold runs the fused kernel
        (:func:`stpcore.kernels.fused_lif_scan`: bit-identical spikes in fp32 when leak == 1);
        otherwise :func:`lif_scan_loop`.
    """
    if current.dim() < 1 or current.shape[0] < 1:
        raise ValueError("lif_scan: `current` must have a leading time axis of length >= 1")
    if current.is_cuda and os.environ.get("STP_FUSED_LIF") == "1" and fused_lif_supports(current, threshold):
        return fused_lif_scan(current, threshold, leak, state)
    return lif_scan_loop(current, threshold, leak, state)


def lif_scan_loop(current: torch.Tensor, threshold, leak: float = 1.0,
                  state: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The reference Python loop of :func:`lif_scan` (same arguments and results), any device."""
    if current.dim() < 1 or current.shape[0] < 1:
        raise ValueError("lif_scan: `current` must have a leading time axis of length >= 1")
    acc = torch.promote_types(current.dtype, torch.float32)
    if state is None:
        u = torch.zeros(current.shape[1:], dtype=acc, device=current.device)
        s = torch.zeros_like(u)
    else:
        u, s = state
    spikes = torch.empty_like(current)
    for t in range(current.shape[0]):
        u = leak * u + current[t] - threshold * s
        s = (u >= threshold).to(acc)
        spikes[t] = s
    return spikes, (u, s)


def spike_rate(spikes: torch.Tensor) -> torch.Tensor:
    """Average spiking rate (ASR) over the leading time axis: number of spikes / T."""
    return spikes.float().mean(dim=0)


def equilibrium_rate(current: torch.Tensor, threshold) -> torch.Tensor:
    """The equilibrium map of the ASR: ``a = clamp(I / V_th, 0, 1)``.

    For an integrate-and-fire neuron (gamma = 1) driven by a current whose time average is
    ``I``, the rate converges to this value as T grows (error at most V_th / (T |...|) per
    neuron; see the tutorial). It is the map ``f`` whose fixed point Eq. 4 differentiates.
    For gamma < 1 it is the same approximation the public SpikingBERT uses.
    """
    return torch.clamp(current / threshold, 0.0, 1.0)
