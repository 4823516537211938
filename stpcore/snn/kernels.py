"""Fused LIF scan (Eq. 1-3) as one Triton kernel: all steps of a population block in one launch.

Each program owns ``BLOCK`` neurons, keeps their membrane ``u`` and last spike ``s`` in registers
and walks the time axis: ``u = leak * u + I[t] - V * s; s = (u >= V)``. Currents are read once
(fp32, bf16 or fp16; arithmetic in fp32), spikes are written once in the requested dtype (0/1
are exact in every float format and in int8). The operations are those of
:func:`stpcore.snn.lif.lif_scan_loop`, in the same order, so in fp32 the spikes are bit-identical:

* ``leak == 1``: the multiply is skipped (``LEAK_ONE``), leaving ``(u + I) - V*s``; ``V*s`` is
  exact (s is 0 or 1), so even a fused multiply-add of the reset rounds like the loop.
* ``leak != 1``: the compiler may contract ``leak * u + I`` into one FMA (one rounding instead
  of two), so ``u`` may differ from the loop in the last ulp and a spike exactly at threshold
  can flip. Not bit-identical; equal up to that rounding.

Time may have stride 0 (a constant current expanded over steps, as the embedding population's):
the pointer advances by ``stride_t`` each step. ``triton`` is optional: without it this module
imports and :func:`fused_lif_available` is False. The kernel also runs under
``TRITON_INTERPRET=1`` on CPU tensors.
"""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:         # CPU-only installs have no triton
    triton = None

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: The dtypes spikes are written and summed in by the kernels here and in :mod:`.int_kernels`.
SPIKE_DTYPES = (torch.int8, *_DTYPES)
#: Whether the kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1``).
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def fused_lif_available() -> bool:
    """True when triton is importable (the fused kernel can be compiled or interpreted)."""
    return triton is not None


if triton is not None:
    @triton.jit
    def _lif_step(u, s, i, vth, leak, LEAK_ONE: tl.constexpr):
        """One step of Eq. 1-3 on fp32 registers, in the loop's order of operations."""
        if LEAK_ONE:
            u = u + i
        else:
            u = leak * u + i
        u = u - tl.where(s != 0.0, vth, 0.0)
        return u, tl.where(u >= vth, 1.0, 0.0)

    @triton.jit
    def _add_counts(cnt_ptr, offs, n, live, COUNT: tl.constexpr):
        """``counts[offs] += n`` (this block's spikes per neuron) where ``COUNT``."""
        if COUNT:
            tl.store(cnt_ptr + offs, tl.load(cnt_ptr + offs, mask=live, other=0.0) + n, mask=live)

    @triton.jit
    def _lif_scan_kernel(cur_ptr, spk_ptr, u_ptr, s_ptr, cnt_ptr, vth_ptr, vth_val, leak, T, M,
                         stride_t, VTH_FROM_PTR: tl.constexpr, LEAK_ONE: tl.constexpr,
                         COUNT: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        live = offs < M
        if VTH_FROM_PTR:
            vth = tl.load(vth_ptr).to(tl.float32)
        else:
            vth = vth_val
        u = tl.load(u_ptr + offs, mask=live, other=0.0)
        s = tl.load(s_ptr + offs, mask=live, other=0.0)
        n = tl.zeros((BLOCK,), dtype=tl.float32)
        cur = cur_ptr + offs
        spk = spk_ptr + offs
        for _ in range(T):
            u, s = _lif_step(u, s, tl.load(cur, mask=live, other=0.0).to(tl.float32), vth, leak,
                             LEAK_ONE)
            n += s
            tl.store(spk, s.to(spk_ptr.dtype.element_ty), mask=live)
            cur += stride_t
            spk += M
        tl.store(u_ptr + offs, u, mask=live)
        tl.store(s_ptr + offs, s, mask=live)
        _add_counts(cnt_ptr, offs, n, live, COUNT)

    @triton.jit
    def _norm_lif_kernel(cur_ptr, res_ptr, w_ptr, b_ptr, spk_ptr, u_ptr, s_ptr, cnt_ptr, vth_ptr,
                         eps, leak, T, R, D, LEAK_ONE: tl.constexpr, COUNT: tl.constexpr,
                         BLOCK_D: tl.constexpr):
        cols = tl.arange(0, BLOCK_D)
        live = cols < D
        base = tl.program_id(0).to(tl.int64) * D + cols
        vth = tl.load(vth_ptr).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=live, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cols, mask=live, other=0.0).to(tl.float32)
        u = tl.load(u_ptr + base, mask=live, other=0.0)
        s = tl.load(s_ptr + base, mask=live, other=0.0)
        n = tl.zeros((BLOCK_D,), dtype=tl.float32)
        off = base
        for _ in range(T):
            x = (tl.load(cur_ptr + off, mask=live, other=0.0).to(tl.float32)
                 + tl.load(res_ptr + off, mask=live, other=0.0).to(tl.float32))
            xc = tl.where(live, x - tl.sum(x, axis=0) / D, 0.0)
            y = xc * tl.rsqrt(tl.sum(xc * xc, axis=0) / D + eps) * w + b
            u, s = _lif_step(u, s, y, vth, leak, LEAK_ONE)
            n += s
            tl.store(spk_ptr + off, s.to(spk_ptr.dtype.element_ty), mask=live)
            off += R * D
        tl.store(u_ptr + base, u, mask=live)
        tl.store(s_ptr + base, s, mask=live)
        _add_counts(cnt_ptr, base, n, live, COUNT)

    @triton.jit
    def _sum_time_kernel(spk_ptr, out_ptr, T, M, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        live = offs < M
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for t in range(T):
            acc += tl.load(spk_ptr + t * M + offs, mask=live, other=0).to(tl.float32)
        tl.store(out_ptr + offs, acc, mask=live)


def sum_spikes(spikes: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """Spike counts over the leading time axis, fp32 ``[...]``, reading ``spikes [T, ...]`` (0/1
    in int8 or a float dtype) once. Equal to ``spikes.sum(0, dtype=torch.float32)``: every
    partial sum is an integer below 2**24. That call first copies int8 spikes to fp32
    (four times their bytes), which cost the int8 simulation a quarter of its time
    (bench/results/profile_sim_cuda.json)."""
    if not (fused_lif_available() and spikes.dim() >= 1 and spikes.shape[0] >= 1
            and spikes.dtype in SPIKE_DTYPES):
        raise ValueError(f"sum_spikes: needs triton and spikes [T, ...] (T >= 1) in one of "
                         f"{SPIKE_DTYPES}; got {spikes.dtype} {tuple(spikes.shape)}")
    spk = spikes.contiguous()
    m = spk[0].numel()
    out = torch.empty(spk.shape[1:], dtype=torch.float32, device=spk.device)
    if m:
        _sum_time_kernel[(triton.cdiv(m, block),)](spk, out, spk.shape[0], m, BLOCK=block)
    return out


def fused_lif_supports(current: torch.Tensor, threshold) -> bool:
    """Whether :func:`fused_lif_scan` takes these arguments (else use the loop)."""
    scalar = not isinstance(threshold, torch.Tensor) or (threshold.dim() == 0
                                                         and threshold.device == current.device)
    return (fused_lif_available() and current.dtype in _DTYPES and current.dim() >= 1
            and current.shape[0] >= 1 and scalar)


def check_counts(counts, shape, device, who: str) -> None:
    """``counts`` (the ``counts`` argument of the LIF kernels' wrappers) must be None or a
    contiguous fp32 tensor of the population's ``shape`` on ``device``: the kernels add each
    neuron's spikes of the block to it in place (exact: integers below 2**24)."""
    if counts is not None and not (isinstance(counts, torch.Tensor) and counts.dtype == torch.float32
                                   and tuple(counts.shape) == tuple(shape)
                                   and counts.device == device and counts.is_contiguous()):
        got = (f"{counts.dtype} {tuple(counts.shape)} on {counts.device}"
               if isinstance(counts, torch.Tensor) else type(counts).__name__)
        raise ValueError(f"{who}: `counts` must be None or a contiguous float32 tensor shaped "
                         f"{tuple(shape)} on {device}; got {got}")


def _state_and_spikes(current, state, spike_dtype):
    """fp32 ``(u, s)`` shaped ``current[0]`` (zeros, or copies of ``state``: the kernels update
    them in place) and an empty spike tensor shaped like ``current``."""
    if state is None:
        u = torch.zeros(current.shape[1:], dtype=torch.float32, device=current.device)
        s = torch.zeros_like(u)
    else:
        u = state[0].to(torch.float32, copy=True).contiguous()
        s = state[1].to(torch.float32, copy=True).contiguous()
    return u, s, torch.empty(current.shape, dtype=spike_dtype or current.dtype, device=current.device)


def fused_lif_scan(current: torch.Tensor, threshold, leak: float = 1.0,
                   state: tuple[torch.Tensor, torch.Tensor] | None = None, block: int = 1024,
                   spike_dtype=None, counts: torch.Tensor | None = None):
    """Eq. 1-3 over the leading time axis in one kernel launch (see module doc).

    Args:
        current: ``[T, ...]`` fp32/bf16/fp16. Read in place when ``current[0]`` is contiguous
            and the time stride is ``current[0].numel()`` or 0 (expanded), else copied.
        threshold: a python float or a 0-dim tensor on the current's device (read by the
            kernel: no host sync).
        leak: gamma in (0, 1], a python float.
        state: ``(u, s)`` each shaped ``current[0]``, or None to start at rest.
        spike_dtype: dtype of the spikes (default: the current's).
        counts: None, or fp32 ``[...]`` (shaped ``current[0]``) to which each neuron's spikes
            of these steps are added in place, in the same launch (:func:`check_counts`):
            what :func:`sum_spikes` of the spikes would add, without reading them again.

    Returns:
        ``(spikes, (u, s))``: spikes shaped like ``current``; u and s fp32.
    """
    if not fused_lif_supports(current, threshold):
        raise ValueError("fused_lif_scan: needs triton, a float current [T, ...] and a "
                         "scalar threshold")
    check_counts(counts, current.shape[1:], current.device, "fused_lif_scan")
    steps, m = current.shape[0], current[0].numel()
    cur = current
    if not (current[0].is_contiguous() and (steps == 1 or current.stride(0) in (0, m))):
        cur = current.contiguous()
    stride_t = cur.stride(0) if steps > 1 else m
    u, s, spikes = _state_and_spikes(current, state, spike_dtype)
    from_ptr = isinstance(threshold, torch.Tensor)
    vth_t = threshold.reshape(1) if from_ptr else u     # u: an unused placeholder pointer
    if m == 0:
        return spikes, (u, s)
    _lif_scan_kernel[(triton.cdiv(m, block),)](
        cur, spikes, u, s, u if counts is None else counts, vth_t,
        0.0 if from_ptr else float(threshold), float(leak), steps, m, stride_t,
        VTH_FROM_PTR=from_ptr, LEAK_ONE=float(leak) == 1.0, COUNT=counts is not None, BLOCK=block)
    return spikes, (u, s)


def fused_norm_lif_scan(current: torch.Tensor, residual: torch.Tensor, ln: torch.nn.LayerNorm,
                        threshold: torch.Tensor, leak: float = 1.0,
                        state: tuple[torch.Tensor, torch.Tensor] | None = None, spike_dtype=None,
                        counts: torch.Tensor | None = None):
    """Eq. 1-3 driven by ``LayerNorm(current + residual)`` over the last axis, in one launch.

    One program per row (token) keeps the row's membrane in registers and, at every step, sums
    current and residual in fp32, normalises the row with ``ln``'s weight, bias and eps, and
    updates the membrane. No normalised current reaches memory. The arithmetic is fp32; the
    row reductions run in another order than :class:`torch.nn.LayerNorm`'s, so a spike exactly
    at threshold may flip against the unfused path.

    Args:
        current, residual: ``[T, ..., D]``, same shape, any float dtypes.
        ln: the LayerNorm over D.
        threshold: a 0-dim tensor on the current's device.
        leak, state, spike_dtype, counts: as :func:`fused_lif_scan`.
    """
    if not (fused_lif_available() and current.shape == residual.shape
            and isinstance(threshold, torch.Tensor) and threshold.dim() == 0):
        raise ValueError("fused_norm_lif_scan: needs triton, current and residual of one shape "
                         "and a 0-dim threshold tensor")
    check_counts(counts, current.shape[1:], current.device, "fused_norm_lif_scan")
    steps, width = current.shape[0], current.shape[-1]
    rows = current[0].numel() // max(width, 1)
    cur, res = current.contiguous(), residual.contiguous()
    u, s, spikes = _state_and_spikes(current, state, spike_dtype)
    if rows == 0 or width == 0:
        return spikes, (u, s)
    _norm_lif_kernel[(rows,)](cur, res, ln.weight, ln.bias, spikes, u, s,
                              u if counts is None else counts, threshold.reshape(1),
                              float(ln.eps), float(leak), steps, rows, width,
                              LEAK_ONE=float(leak) == 1.0, COUNT=counts is not None,
                              BLOCK_D=triton.next_power_of_2(width))
    return spikes, (u, s)
