"""Triton kernels of the integer path (:mod:`stpcore.snn.integer`) on CUDA.

Both take int8 spikes ``x`` (0/1) and int8 signs ``[N, K]`` of a 1-bit linear layer, multiply
them on the int8 tensor cores with int32 accumulation (exact: ``|acc| <= K``), and form the
current ``alpha * acc + bias`` as ONE fused multiply-add in fp32. ``acc`` converts to fp32
exactly (K < 2**24) and alpha and bias are fp32 values, so the FMA is the exact current rounded
once to fp32 (correctly rounded; the CPU path computes it in float64 and then rounds to fp32,
which can differ only where the float64 sum falls on an fp32 rounding midpoint).

* :func:`binary_linear`: the currents ``[M, N]`` fp32 (a GEMM with that epilogue);
* :func:`binary_linear_lif`: the currents of ``x [T, M, K]`` and the LIF scan (Eq. 1-3) behind
  them in one launch. Each program owns a ``[BLOCK_M, BLOCK_N]`` tile of neurons, keeps their
  membranes and last spikes in registers and walks the time axis, re-reading its weight tile
  (from L2) every step, in ONE flat loop over (step, K block): the software pipeliner then
  loads step t + 1's first operand blocks while step t's LIF update and spike store run (a
  loop over steps with the K loop inside it waited for each step's loads: 15 to 27 % slower at
  the shapes the simulator fuses, in ``bench/gemm_int8.py``'s H200 records before and after).
  The currents never reach memory, only spikes do (int8, or fp32 for the attention to read).
  The LIF step is ``_lif_step`` of :mod:`stpcore.snn.kernels`, so the spikes equal
  :func:`binary_linear` followed by :func:`stpcore.snn.kernels.fused_lif_scan` bit for bit.

Both load their operand tiles through TMA tensor descriptors (Hopper's tensor memory
accelerator; out-of-range rows and columns read as zeros) where the rows are 16-byte aligned
(K a multiple of 16, as the simulator pads its widths: :data:`stpcore.snn.layer.ALIGN`), and
through masked pointer loads otherwise (:func:`_use_tma`); the sums are the same integers either
way.

Import is safe without triton (:func:`int_kernels_available` is False); under
``TRITON_INTERPRET=1`` the kernels run on CPU tensors (slowly), which the tests use.
"""
from __future__ import annotations

import math

import torch

from .kernels import INTERPRET, SPIKE_DTYPES, triton

if triton is not None:
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor

    from .kernels import _lif_step



def int_kernels_available() -> bool:
    """True when triton is importable (the kernels can be compiled or interpreted)."""
    return triton is not None


#: Row blocks per launch group (``_tile_of``).
GROUP_M = 8
#: The keys of a launch tile (:func:`_tile`, the kernels' ``tile`` argument).
TILE_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M", "num_warps", "num_stages")


def _tile(lif: bool) -> dict:
    """The launch's tile ``{BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages}``: fixed,
    not autotuned (as the attention's: one tile, one rounding, and no autotuning in every
    process). The product alone: 128 x 128 x 64. The product with the LIF scan, whose programs
    each walk the whole time axis: 128 x 64 x 128, four pipeline stages. In
    ``bench/gemm_int8.py``'s sweep on an H200 (its record's ``tiles``, which the benchmarks page
    reads) the first was the fastest of its tiles at every simulator shape, and the second the
    fastest or within 5 % of it where the simulator fuses the LIF scan (fan-in 768 or 384; 11 %
    off at fan-in 3072, which the output layer takes without it). Single timings move by up to
    20 % between sweeps, so they do not rank close tiles. Under the interpreter, small tiles."""
    if INTERPRET:
        return dict(zip(TILE_KEYS, (32, 32, 32, 2, 4, 1)))
    if lif:
        return dict(zip(TILE_KEYS, (128, 64, 128, GROUP_M, 4, 4)))
    return dict(zip(TILE_KEYS, (128, 128, 64, GROUP_M, 4, 4)))


def _grid(m: int, n: int, tile: dict) -> tuple:
    """A 1-D launch of every ``[BLOCK_M, BLOCK_N]`` tile (:func:`_tile_of` orders them)."""
    return (triton.cdiv(m, tile["BLOCK_M"]) * triton.cdiv(n, tile["BLOCK_N"]),)


if triton is not None:
    @triton.jit
    def _tile_of(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
        """The first row and column of this program's tile. Grouped launch order: programs launched
        together walk the column blocks of ``GROUP_M`` row blocks, so a block of spike rows is
        read from memory once and then from L2 (the first kernels ran row blocks fastest and
        re-read every spike row once per column block: bench/results/gemm_int8_cuda.json)."""
        pid, blocks_m, blocks_n = tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        first_m = (pid // (GROUP_M * blocks_n)) * GROUP_M
        rows = tl.minimum(blocks_m - first_m, GROUP_M)
        pid_m = first_m + (pid % (GROUP_M * blocks_n)) % rows
        pid_n = (pid % (GROUP_M * blocks_n)) // rows
        return pid_m * BLOCK_M, pid_n * BLOCK_N

    @triton.jit
    def _dot_block(x, w, acc, row0, col0, k0, offs_m, offs_n, M, N, K, BLOCK_K: tl.constexpr,
                   TMA: tl.constexpr):
        """``acc + x[rows, k0:k0+BLOCK_K] @ signs[cols, k0:k0+BLOCK_K]^T`` (int32). ``x``, ``w``:
        tensor descriptors of the ``[rows, K]`` spikes and ``[N, K]`` signs (``TMA``: reads at
        ``row0``, ``col0``), or their pointers with ``M`` valid rows (reads at ``offs_m``,
        ``offs_n``)."""
        if TMA:             # (if/else: code after a constexpr branch's return is still compiled)
            acc = tl.dot(x.load([row0, k0]), w.load([col0, k0]).T, acc, out_dtype=tl.int32)
        else:
            kk = k0 + tl.arange(0, BLOCK_K)
            a = tl.load(x + offs_m[:, None] * K + kk[None, :],
                        mask=(offs_m[:, None] < M) & (kk[None, :] < K), other=0)
            b = tl.load(w + offs_n[None, :].to(tl.int64) * K + kk[:, None],
                        mask=(kk[:, None] < K) & (offs_n[None, :] < N), other=0)
            acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        return acc

    @triton.jit
    def _binary_linear_kernel(x, w, alpha_ptr, bias_ptr, out_ptr, M, N, K,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                              GROUP_M: tl.constexpr, TMA: tl.constexpr):
        row0, col0 = _tile_of(M, N, BLOCK_M, BLOCK_N, GROUP_M)
        offs_m = row0.to(tl.int64) + tl.arange(0, BLOCK_M)
        offs_n = col0 + tl.arange(0, BLOCK_N)
        live_n = offs_n < N
        alpha = tl.load(alpha_ptr + offs_n, mask=live_n, other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + offs_n, mask=live_n, other=0.0).to(tl.float32)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        for k0 in range(0, K, BLOCK_K):
            acc = _dot_block(x, w, acc, row0, col0, k0, offs_m, offs_n, M, N, K, BLOCK_K, TMA)
        cur = tl.fma(acc.to(tl.float32), alpha[None, :], bias[None, :])
        tl.store(out_ptr + offs_m[:, None] * N + offs_n[None, :], cur,
                 mask=(offs_m[:, None] < M) & live_n[None, :])

    @triton.jit
    def _binary_linear_lif_kernel(x, w, alpha_ptr, bias_ptr, spk_ptr, u_in, s_in, u_out,
                                  s_out, vth_ptr, leak, T, M, N, K, LEAK_ONE: tl.constexpr,
                                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                                  BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                                  STAGES: tl.constexpr, TMA: tl.constexpr):
        row0, col0 = _tile_of(M, N, BLOCK_M, BLOCK_N, GROUP_M)
        offs_m = row0.to(tl.int64) + tl.arange(0, BLOCK_M)
        offs_n = col0 + tl.arange(0, BLOCK_N)
        live_n = offs_n < N
        tile = offs_m[:, None] * N + offs_n[None, :]
        live = (offs_m[:, None] < M) & live_n[None, :]
        alpha = tl.load(alpha_ptr + offs_n, mask=live_n, other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + offs_n, mask=live_n, other=0.0).to(tl.float32)
        vth = tl.load(vth_ptr).to(tl.float32)
        u = tl.load(u_in + tile, mask=live, other=0.0)
        s = tl.load(s_in + tile, mask=live, other=0.0)     # the last spike: step 0's reset
        blocks = tl.maximum(tl.cdiv(K, BLOCK_K), 1)         # K = 0: one all-zero block
        step_x, step_s = (M * K).to(tl.int64), (M * N).to(tl.int64)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        # one flat loop over (step, K block), so the pipeliner prefetches step t + 1's first
        # blocks while step t's LIF runs. Step t's rows: TMA, rows t M + row0 of the [T M, K]
        # spikes (rows past M belong to step t + 1 or read as zeros, and only feed rows that
        # are not stored); pointers, offset t M K.
        for i in tl.range(0, T * blocks, num_stages=STAGES):
            t = i // blocks
            k0 = (i - t * blocks) * BLOCK_K
            if TMA:
                acc = _dot_block(x, w, acc, row0 + t * M, col0, k0, offs_m, offs_n, M, N, K,
                                 BLOCK_K, TMA)
            else:
                acc = _dot_block(x + t * step_x, w, acc, row0, col0, k0, offs_m, offs_n, M, N,
                                 K, BLOCK_K, TMA)
            if k0 + BLOCK_K >= K:                           # the step's last block: fire
                cur = tl.fma(acc.to(tl.float32), alpha[None, :], bias[None, :])
                u, s = _lif_step(u, s, cur, vth, leak, LEAK_ONE)
                tl.store(spk_ptr + t * step_s + tile, s.to(spk_ptr.dtype.element_ty), mask=live)
                acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        tl.store(u_out + tile, u, mask=live)
        tl.store(s_out + tile, s, mask=live)


def _check_tile(tile: dict | None) -> None:
    if tile is not None and (not isinstance(tile, dict) or set(tile) != set(TILE_KEYS)):
        raise ValueError(f"int kernels: `tile` must be None or a dict with the keys "
                         f"{sorted(TILE_KEYS)}; got {tile!r}")


def _operands(x2: torch.Tensor, signs: torch.Tensor, tile: dict) -> tuple:
    """``(x, w, TMA)`` kernel arguments for the ``[rows, K]`` spikes ``x2`` and the signs: tensor
    descriptors with the tile's blocks where TMA can read them (:func:`_use_tma`), else the
    tensors (pointers)."""
    if not _use_tma(x2, signs):
        return x2, signs, False
    return (TensorDescriptor.from_tensor(x2, [tile["BLOCK_M"], tile["BLOCK_K"]]),
            TensorDescriptor.from_tensor(signs, [tile["BLOCK_N"], tile["BLOCK_K"]]), True)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """``x [..., K]`` as contiguous ``[rows, K]`` rows, also for K = 0 (where ``reshape(-1, 0)``
    is ambiguous and fails)."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1]).contiguous()


def _use_tma(x2: torch.Tensor, signs: torch.Tensor) -> bool:
    """TMA needs 16-byte aligned rows and base addresses and int32 row coordinates: K a
    positive multiple of 16, both tensors 16-byte aligned, fewer than 2**31 rows."""
    return (0 < x2.shape[1] and x2.shape[1] % 16 == 0 and x2.data_ptr() % 16 == 0
            and signs.data_ptr() % 16 == 0 and x2.shape[0] < 2 ** 31)


def _check(x: torch.Tensor, signs: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor):
    if x.dtype != torch.int8 or signs.dtype != torch.int8:
        raise TypeError(f"int kernels: `x` and `signs` must be int8; got {x.dtype} and {signs.dtype}")
    if x.shape[-1] != signs.shape[1] or not alpha.shape == bias.shape == (signs.shape[0],):
        raise ValueError(f"int kernels: `x` [..., K], `signs` [N, K], `alpha` and `bias` [N] must "
                         f"agree; got {tuple(x.shape)}, {tuple(signs.shape)}, "
                         f"{tuple(alpha.shape)}, {tuple(bias.shape)}")


def binary_linear(x: torch.Tensor, signs: torch.Tensor, alpha: torch.Tensor,
                  bias: torch.Tensor, tile: dict | None = None) -> torch.Tensor:
    """``alpha * (x @ signs^T) + bias`` of int8 spikes ``x [..., K]``: fp32 ``[..., N]``, each
    value the exact current rounded once. ``alpha``, ``bias``: ``[N]``, any float dtype, read as
    they are and cast to fp32 in the kernel (fp32 must hold them exactly, as it does the scales
    and biases of a 1-bit layer, which :class:`stpcore.snn.integer.BinaryLinear` keeps in float64).
    ``tile``: the launch's tile (:func:`_tile`'s keys; None: :func:`_tile`'s choice), for
    benchmarks."""
    _check(x, signs, alpha, bias)
    _check_tile(tile)
    x2, signs = _rows(x), signs.contiguous()
    (m, k), n = x2.shape, signs.shape[0]
    tile = tile or _tile(False)
    out = torch.empty((m, n), dtype=torch.float32, device=x.device)
    if m and n:
        xo, wo, tma = _operands(x2, signs, tile)
        _binary_linear_kernel[_grid(m, n, tile)](xo, wo, alpha.contiguous(), bias.contiguous(),
                                                 out, m, n, k, TMA=tma, **tile)
    return out.reshape(*x.shape[:-1], n)


def binary_linear_lif(x: torch.Tensor, signs: torch.Tensor, alpha: torch.Tensor,
                      bias: torch.Tensor, threshold: torch.Tensor, leak: float = 1.0,
                      state: tuple[torch.Tensor, torch.Tensor] | None = None,
                      spike_dtype: torch.dtype = torch.int8, tile: dict | None = None):
    """Eq. 1-3 driven by ``alpha * (x[t] @ signs^T) + bias``, in one launch (module doc).

    Args:
        x: int8 spikes ``[T, ..., K]``.
        signs, alpha, bias: as :func:`binary_linear`.
        threshold: a 0-dim tensor on ``x``'s device (read by the kernel: no host sync).
        leak: gamma in (0, 1].
        state: ``(u, s)`` shaped ``[..., N]`` (fp32), or None to start at rest.
        spike_dtype: int8 or a float dtype (0/1 are exact in each).
        tile: as :func:`binary_linear`'s.

    Returns:
        ``(spikes [T, ..., N], (u, s))`` as :func:`stpcore.snn.lif.lif_scan` returns them.
    """
    _check(x, signs, alpha, bias)
    _check_tile(tile)
    if spike_dtype not in SPIKE_DTYPES:
        raise ValueError(f"binary_linear_lif: `spike_dtype` must be one of {SPIKE_DTYPES}; "
                         f"got {spike_dtype}")
    if not (isinstance(threshold, torch.Tensor) and threshold.dim() == 0):
        raise ValueError("binary_linear_lif: `threshold` must be a 0-dim tensor")
    if x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"binary_linear_lif: `x` must be [T, ..., K] with T >= 1; got {tuple(x.shape)}")
    steps, n = x.shape[0], signs.shape[0]
    shape = (steps, *x.shape[1:-1], n)
    if state is None:
        u = torch.zeros(shape[1:], dtype=torch.float32, device=x.device)
        s = torch.zeros_like(u)
    else:                               # read only: the kernel writes the new state apart
        u, s = (v.to(torch.float32).contiguous() for v in state)
    spikes = torch.empty(shape, dtype=spike_dtype, device=x.device)
    m = u.numel() // max(n, 1)
    tile = tile or _tile(True)
    if m == 0 or n == 0:
        return spikes, (u, s)
    u_out, s_out = torch.empty_like(u), torch.empty_like(s)    # apart: the input state is read only
    xo, wo, tma = _operands(_rows(x), signs.contiguous(), tile)
    _binary_linear_lif_kernel[_grid(m, n, tile)](xo, wo, alpha.contiguous(), bias.contiguous(),
                                                 spikes, u, s, u_out, s_out, threshold.reshape(1),
                                                 float(leak), steps, m, n, x.shape[-1],
                                                 LEAK_ONE=float(leak) == 1.0, TMA=tma,
                                                 STAGES=tile["num_stages"], **tile)
    return spikes, (u_out, s_out)
