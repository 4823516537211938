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
import warnings

import torch

from .checks import check_arg, is_positive, is_real
from .kernels import SPIKE_DTYPES, check_counts, fused_lif_scan, fused_lif_supports, sum_spikes

_FUSED_CHECKED: dict[str, bool] = {}      # device -> the fused kernel passed its self-check


def use_fused_lif(device: torch.device) -> bool:
    """Whether CUDA tensors on ``device`` take the fused kernel. ``STP_FUSED_LIF``: ``0`` never,
    ``1`` always, unset/``auto``: once per device, after the kernel reproduces the loop's spikes
    bit for bit on a random block (otherwise warn and keep the loop)."""
    mode = os.environ.get("STP_FUSED_LIF", "auto")
    if mode not in ("0", "1", "auto"):
        raise ValueError(f"STP_FUSED_LIF must be 0, 1 or auto; got {mode!r}")
    if mode != "auto":
        return mode == "1"
    key = str(device)
    if key not in _FUSED_CHECKED:
        try:
            gen = torch.Generator(device=device).manual_seed(0)
            cur = torch.rand(17, 4099, device=device, generator=gen) * 1.5 - 0.25
            vth = torch.tensor(0.9, device=device)
            _FUSED_CHECKED[key] = torch.equal(lif_scan_loop(cur, vth)[0], fused_lif_scan(cur, vth)[0])
            if not _FUSED_CHECKED[key]:
                warnings.warn("fused LIF kernel disagrees with the loop; using the loop")
        except Exception as err:                    # no triton, a compile error, ...
            warnings.warn(f"fused LIF kernel unavailable ({err}); using the loop")
            _FUSED_CHECKED[key] = False
    return _FUSED_CHECKED[key]


def spike_counts(spikes: torch.Tensor) -> torch.Tensor:
    """Spikes ``[T, ...]`` summed over time, fp32 ``[...]`` (exact: integers below 2**24). On CUDA
    with the fused kernels (:func:`use_fused_lif`) and spikes in a kernel dtype
    (:data:`stpcore.snn.kernels.SPIKE_DTYPES`; not float64, the exactness reference) one Triton
    kernel reads the spikes once (:func:`stpcore.snn.kernels.sum_spikes`); otherwise
    ``spikes.sum(0, dtype=torch.float32)``."""
    if (spikes.is_cuda and spikes.dim() >= 1 and spikes.shape[0] >= 1
            and spikes.dtype in SPIKE_DTYPES and use_fused_lif(spikes.device)):
        return sum_spikes(spikes)
    return spikes.sum(0, dtype=torch.float32)


def check_threshold(threshold, fn: str, shape=None) -> None:
    """V_th: a number > 0, or a tensor > 0 broadcastable to ``shape`` (its values are checked
    off CUDA only: there the check would cost a host synchronisation per call)."""
    if isinstance(threshold, torch.Tensor):
        if shape is not None:
            check_arg(torch.broadcast_shapes(threshold.shape, shape) == tuple(shape), fn,
                      "threshold", f"a number > 0 or a tensor broadcastable to {tuple(shape)}",
                      tuple(threshold.shape))
        if not threshold.is_cuda and threshold.numel():
            low = float(threshold.detach().min())
            check_arg(low > 0, fn, "threshold", "> 0 everywhere", f"a minimum of {low}")
    else:
        check_arg(is_positive(threshold), fn, "threshold", "a number > 0", threshold)


def check_lif_args(current, threshold, leak, state, fn: str = "lif_scan") -> None:
    """The arguments of :func:`lif_scan`: a current ``[T, B, ...]`` with T >= 1, a threshold
    > 0 (:func:`check_threshold`), leak gamma in (0, 1], a state ``(u, s)`` each shaped
    ``current[0]``."""
    ok = isinstance(current, torch.Tensor) and current.dim() >= 1 and current.shape[0] >= 1
    check_arg(ok, fn, "current", "a tensor [T, B, ...] with a leading time axis of length >= 1",
              tuple(current.shape) if isinstance(current, torch.Tensor) else current)
    try:
        check_threshold(threshold, fn, current.shape[1:])
    except RuntimeError as err:         # not broadcastable
        raise ValueError(f"{fn}: `threshold` must be a number > 0 or a tensor broadcastable to "
                         f"{tuple(current.shape[1:])}; got {tuple(threshold.shape)}") from err
    check_arg(is_real(leak) and 0 < leak <= 1, fn, "leak", "gamma in (0, 1]", leak)
    if state is not None:
        shapes = [tuple(getattr(v, "shape", ())) for v in state] if isinstance(state, tuple) else None
        check_arg(shapes is not None and len(shapes) == 2
                  and all(sh == tuple(current.shape[1:]) for sh in shapes), fn, "state",
                  f"None or a tuple (u, s) of tensors shaped current[0] {tuple(current.shape[1:])}",
                  shapes if shapes is not None else state)


def lif_scan(current: torch.Tensor, threshold, leak: float = 1.0,
             state: tuple[torch.Tensor, torch.Tensor] | None = None, spike_dtype=None,
             counts: torch.Tensor | None = None):
    """Run Eq. 1-3 over the leading time axis.

    Args:
        current: input current ``[T, B, ...]``.
        threshold: V_th > 0, a float or a tensor broadcastable to ``current[0]``.
        leak: gamma in (0, 1].
        (All checked before any work: :func:`check_lif_args`.)
        state: ``(u, s)`` of the previous step (each ``[B, ...]``) to continue a simulation;
            None starts from rest.
        spike_dtype: dtype of the returned spikes (default: the current's; 0/1 are exact in
            every float format).
        counts: None, or a float32 tensor shaped ``current[0]`` to which each neuron's spikes
            of these steps are added in place (the fused kernel counts them as it writes them;
            elsewhere :func:`spike_counts` of the spikes).

    Returns:
        ``(spikes [T, B, ...] in {0, 1}, state)`` with the final ``(u, s)``. The state is kept
        in at least fp32 (bf16/fp16 currents accumulate in fp32). On CUDA, with a scalar threshold and :func:`use_fused_lif`, the fused kernel runs
        (:func:`stpcore.snn.kernels.fused_lif_scan`: bit-identical spikes in fp32 when leak == 1);
        otherwise :func:`lif_scan_loop`.
    """
    check_lif_args(current, threshold, leak, state)
    if current.is_cuda and fused_lif_supports(current, threshold) and use_fused_lif(current.device):
        return fused_lif_scan(current, threshold, leak, state, spike_dtype=spike_dtype,
                              counts=counts)
    check_counts(counts, current.shape[1:], current.device, "lif_scan")
    spikes, state = lif_scan_loop(current, threshold, leak, state, spike_dtype)
    add_counts(counts, spikes)
    return spikes, state


def add_counts(counts: torch.Tensor | None, spikes: torch.Tensor) -> None:
    """``counts += spike_counts(spikes)`` in place, unless ``counts`` is None: the ``counts``
    argument of the LIF functions where no kernel counted the spikes."""
    if counts is not None:
        counts += spike_counts(spikes)


def lif_scan_loop(current: torch.Tensor, threshold, leak: float = 1.0,
                  state: tuple[torch.Tensor, torch.Tensor] | None = None, spike_dtype=None):
    """The reference Python loop of :func:`lif_scan` (same arguments and results), any device."""
    if current.dim() < 1 or current.shape[0] < 1:
        raise ValueError("lif_scan: `current` must have a leading time axis of length >= 1")
    acc = torch.promote_types(current.dtype, torch.float32)
    if state is None:
        u = torch.zeros(current.shape[1:], dtype=acc, device=current.device)
        s = torch.zeros_like(u)
    else:
        u, s = state
    spikes = torch.empty(current.shape, dtype=spike_dtype or current.dtype, device=current.device)
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
    ``I``, the rate converges to this value as T grows (for a constant current the error is below 1/T;
    see the tutorial). It is the map ``f`` whose fixed point Eq. 4 differentiates.
    For gamma < 1 it is the same approximation the public SpikingBERT uses. ``threshold`` must
    be > 0 (:func:`check_threshold`).
    """
    check_threshold(threshold, "equilibrium_rate")
    return torch.clamp(current / threshold, 0.0, 1.0)
