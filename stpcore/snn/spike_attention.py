"""The integer path's attention on the tensor cores, as accurate as fp32 (:mod:`.integer`).

The attention population's current is ``softmax(q k^T / sqrt(d) + mask) v`` with real-valued
queries ``q`` (fp32 currents) and Key and Value *spikes* ``k, v`` (0/1). 0 and 1 are exact in
bf16, and every fp32 value is the exact sum of three bf16 values (:func:`_split3`: 8 + 8 + 8
significant bits, for magnitudes up to 2**127; below 2**-110 the smallest piece may be
subnormal and the sum off by under 2**-126, nothing against sums of order 1). So both products
run as three bf16 tensor-core products each, summed into one fp32 accumulator, smallest piece
first: every partial product is exact and only the fp32 sums round, as in an fp32 product (the
tensor cores' accumulation order and rounding differ from a CUDA-core fp32 sum's:
``bench/exactness.py`` measures what that does to the rates). The softmax is fp32 and
normalised before the second product, as in :meth:`SpikingEncoderLayer.attend`.

One program owns ``BLOCK_M`` queries of one head of one sequence and holds all its keys
(``BLOCK_N`` >= sequence length, up to :data:`MAX_TOKENS`): no online rescaling, no ``[N, N]``
tensor in memory. The tile is a fixed function of the sequence length, not autotuned: the
tensor-core instructions, and so the fp32 sums' rounding, can depend on it, and a simulation
must give the same spikes on every run (on the H200 an autotuned version gave int8 and fp32
spikes contexts that differed in rounding; with one tile per length they agree bit for bit).
In the dense int8 simulation at paper size on the H200 it takes 7.0 ms (at 7340856; 8.6 with
eight warps per program) where PyTorch's fused fp32 attention (CUDA cores) took 20.3
(bench/results/profile_sim_cuda.json and its git history, at 654268c and at 7f06678).

``STP_INT_ATTENTION``: ``split`` (default; this kernel where :func:`use_spike_attention`) or
``sdpa`` (PyTorch's fused fp32 attention, the integer path's attention before this kernel).
``STP_ATTENTION_HEADS`` (:func:`heads_per_program`): heads per program, taken in a loop that
prefetches the next head (one program holds one head and has nothing to overlap its loads with);
the same outputs bit for bit, untimed, so 1 stays the default.
Runs under ``TRITON_INTERPRET=1`` on CPU tensors, but with fp32 products there: the interpreter
(triton 3.6) multiplies bf16 operands as raw bits and rounds fp32 to bf16 otherwise than the
GPU, so on CPU the tests check the indexing, masks and softmax, and on CUDA the split products.
"""
from __future__ import annotations

import math
import os

import torch

from .kernels import INTERPRET, triton

if triton is not None:
    import triton.language as tl

#: Longest sequence one program holds (a [BLOCK_M, MAX_TOKENS] fp32 score tile in registers).
MAX_TOKENS = 512
#: Score-tile elements per program (BLOCK_M * BLOCK_N).
_TILE = 16384
#: Warps per program, four. At 128 tokens (a 128 x 128 score tile) on an H200 one block of 32
#: steps x 32 sequences took 0.70 ms at width 768 and 0.36 at 384 with four warps, 0.83 and 0.43
#: with eight (the earlier choice), with the same outputs bit for bit (a scratch probe at
#: 3176340; the profile record times it inside the simulation).
_WARPS = 4


def attention_mode() -> str:
    """``STP_INT_ATTENTION`` (``split`` or ``sdpa``); ValueError naming it otherwise."""
    mode = os.environ.get("STP_INT_ATTENTION", "split")
    if mode not in ("split", "sdpa"):
        raise ValueError(f"STP_INT_ATTENTION must be 'split' or 'sdpa'; got {mode!r}")
    return mode


def heads_per_program() -> int:
    """``STP_ATTENTION_HEADS`` (default 1): how many heads one program of the kernel takes in
    turn, in a loop that issues the next head's loads while the current one computes (a divisor
    of the head count is used: the largest that divides both). Each head's tile and products are
    the same whatever the value, so it moves no output bit (tests: on the interpreter, and on
    CUDA where the split products run). 1, the default, is the kernel every record used; larger
    values are an untimed alternative, to be timed on the H200 before it may become the default.
    ValueError naming the variable for anything but a positive integer."""
    text = os.environ.get("STP_ATTENTION_HEADS", "1")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"STP_ATTENTION_HEADS must be a positive integer; got {text!r}")
    return int(text)


def use_spike_attention(q: torch.Tensor, head_size: int) -> bool:
    """Whether :func:`spike_attention` takes ``q [..., N, width]``: triton, the ``split`` mode,
    a power-of-two head size of at least 16 (the tensor cores' smallest inner dimension), and
    ``N <= MAX_TOKENS``."""
    return (triton is not None and attention_mode() == "split" and _tensor_core_head(head_size)
            and q.shape[-2] <= MAX_TOKENS)


def _tensor_core_head(head_size: int) -> bool:
    """A power of two of at least 16 (the tensor cores' smallest inner dimension)."""
    return head_size >= 16 and head_size & (head_size - 1) == 0


if triton is not None:
    @triton.jit
    def _split3(x):
        """fp32 ``x`` as bf16 ``(hi, mid, lo)`` with ``hi + mid + lo == x`` exactly (each
        residual is exact in fp32 and has at most 16, then 8, significant bits)."""
        hi = x.to(tl.bfloat16)
        r = x - hi.to(tl.float32)
        mid = r.to(tl.bfloat16)
        return hi, mid, (r - mid.to(tl.float32)).to(tl.bfloat16)

    @triton.jit
    def _product(a, b, acc, SPLIT: tl.constexpr):
        """``acc + a @ b`` for fp32 ``a`` and 0/1 ``b``: three exact bf16 products (``SPLIT``)
        or one fp32 product (the interpreter)."""
        if SPLIT:
            b = b.to(tl.bfloat16)       # 0/1: exact
            hi, mid, lo = _split3(a)
            acc = tl.dot(lo, b, acc, out_dtype=tl.float32)
            acc = tl.dot(mid, b, acc, out_dtype=tl.float32)
            return tl.dot(hi, b, acc, out_dtype=tl.float32)
        return tl.dot(a, b.to(tl.float32), acc, input_precision="ieee", out_dtype=tl.float32)

    @triton.jit
    def _attend_head(q_ptr, k_ptr, v_ptr, mask_ptr, out_ptr, seq, base, rows, keys, dims, live_q,
                     live_k, N, W, scale, HEAD: tl.constexpr, BLOCK_M: tl.constexpr,
                     BLOCK_N: tl.constexpr, SPLIT: tl.constexpr):
        """One head's context for ``BLOCK_M`` queries (``base``: the head's first element)."""
        q = tl.load(q_ptr + base + rows[:, None] * W + dims[None, :], mask=live_q, other=0.0)
        kt = tl.load(k_ptr + base + keys[None, :] * W + dims[:, None], mask=live_k[None, :],
                     other=0.0)                                          # [HEAD, BLOCK_N]
        v = tl.load(v_ptr + base + keys[:, None] * W + dims[None, :], mask=live_k[:, None],
                    other=0.0)                                           # [BLOCK_N, HEAD]
        s = _product(q.to(tl.float32), kt, tl.zeros((BLOCK_M, BLOCK_N), tl.float32), SPLIT)
        add = tl.load(mask_ptr + seq.to(tl.int64) * N + keys, mask=live_k, other=float("-inf"))
        s = s * scale + add[None, :]
        e = tl.exp(s - tl.max(s, axis=1)[:, None])
        p = e / tl.sum(e, axis=1)[:, None]
        ctx = _product(p, v, tl.zeros((BLOCK_M, HEAD), tl.float32), SPLIT)
        tl.store(out_ptr + base + rows[:, None] * W + dims[None, :], ctx, mask=live_q)

    @triton.jit
    def _spike_attention_kernel(q_ptr, k_ptr, v_ptr, mask_ptr, out_ptr, N, W, scale,
                                HEAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                                SPLIT: tl.constexpr, HEADS: tl.constexpr, STAGES: tl.constexpr):
        group, pid_m = tl.program_id(0), tl.program_id(1)
        groups = W // (HEAD * HEADS)                    # programs per sequence and query block
        seq, head0 = group // groups, (group % groups) * HEADS
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        keys, dims = tl.arange(0, BLOCK_N), tl.arange(0, HEAD)
        live_q, live_k = rows[:, None] < N, keys < N
        first = seq.to(tl.int64) * N * W + head0 * HEAD
        if HEADS == 1:
            _attend_head(q_ptr, k_ptr, v_ptr, mask_ptr, out_ptr, seq, first, rows, keys, dims,
                         live_q, live_k, N, W, scale, HEAD, BLOCK_M, BLOCK_N, SPLIT)
        else:       # HEADS heads in turn, the next one's loads issued while this one computes
            for h in tl.range(0, HEADS, num_stages=STAGES):
                _attend_head(q_ptr, k_ptr, v_ptr, mask_ptr, out_ptr, seq, first + h * HEAD, rows,
                             keys, dims, live_q, live_k, N, W, scale, HEAD, BLOCK_M, BLOCK_N, SPLIT)

def spike_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                    head_size: int) -> torch.Tensor:
    """``softmax(q k^T / sqrt(head_size) + mask) v`` per head, on the tensor cores (module doc).

    Args:
        q: fp32 queries ``[..., N, width]`` (``width`` a multiple of ``head_size``).
        k, v: Key and Value spikes, q's shape, any dtype holding 0/1 (read as bf16).
        mask: additive mask broadcastable to the scores' ``[..., 1, 1, N]`` (heads, queries,
            keys): one row per sequence, e.g. ``[B, 1, 1, N]`` for ``q [t, B, N, width]``.
        head_size: a power of two >= 16 (:func:`use_spike_attention`).

    Returns:
        the fp32 context, q's shape.
    """
    *lead, n, width = q.shape
    if q.dtype != torch.float32 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"spike_attention: `q` must be fp32 and `k`, `v` its shape; got q "
                         f"{tuple(q.shape)} {q.dtype}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if width % head_size or not _tensor_core_head(head_size):
        raise ValueError(f"spike_attention: `head_size` must be a power of two >= 16 dividing "
                         f"the width {width}; got {head_size}")
    if n > MAX_TOKENS:
        raise ValueError(f"spike_attention: at most {MAX_TOKENS} tokens; got {n}")
    seqs = math.prod(lead)
    out = torch.empty_like(q)
    if seqs == 0 or n == 0 or width == 0:
        return out.zero_()
    rows = mask.to(torch.float32).expand(*lead, 1, 1, n).reshape(seqs, n).contiguous()
    block_n = max(16, triton.next_power_of_2(n))
    block_m = 16 if INTERPRET else max(16, min(128, _TILE // block_n))
    group = math.gcd(heads_per_program(), width // head_size)
    # (sequence, head group) pairs on the first grid axis, which takes up to 2**31 - 1 programs
    # (the second takes 65535: an MRPC evaluation, 64 steps x 128 sequences x 12 heads, is 98304).
    _spike_attention_kernel[(seqs * (width // head_size // group), triton.cdiv(n, block_m))](
        q.contiguous(), k.contiguous(), v.contiguous(), rows, out, n, width,
        1.0 / math.sqrt(head_size), HEAD=head_size, BLOCK_M=block_m, BLOCK_N=block_n,
        SPLIT=not INTERPRET, HEADS=group, STAGES=2, num_warps=_WARPS)
    return out
