"""Bernoulli spikes for Eq. 11's executor (:mod:`stpcore.snn.sequential`): torch's draws, faster.

``torch.empty(shape, dtype).bernoulli_(p)`` on CUDA (PyTorch's ``bernoulli_tensor_cuda_kernel``)
gives element ``i`` of the flattened output the uniform::

    u_i = float(x) * 2**-32 + 2**-33,   x = Philox4x32-10(ctr, key)[i % 4]
    ctr = (low and high 32 bits of offset / 4, low and high 32 bits of i // 4)
    key = (low and high 32 bits of seed)

(``curand_init(seed, subsequence=i // 4, offset)`` then ``curand_uniform4``), fires where
``u_i <= p_i`` with ``p`` cast to fp32, and advances the generator's Philox offset by 12 per
call. The kernels here compute the same draws (:func:`philox_bernoulli`) straight into the
simulation dtype. Where the rates' size is a multiple of 4 (the simulator's widths are), no
group of four draws spans two steps, so each program reads its rates once and walks the steps:
8.7 ms of a temporally pruned bf16 simulation at paper size on the H200 (bench/results/
profile_sim_cuda.json at 29b3e96), where one program per group of draws, reading the rate of
each draw through an int64 modulo, took 12.0 (at 654268c) and PyTorch's kernel 32.4 of its 78 ms
(at 7f06678). :func:`draw_bernoulli` takes them on CUDA and keeps the generator's state as
``bernoulli_`` would, so recorded runs reproduce spike for spike (tests/test_bernoulli.py checks
both against ``bernoulli_`` on CUDA); float64 spikes (the exactness reference compares a double
``p``) and other devices take ``bernoulli_`` itself. ``STP_FUSED_LIF=0`` turns the kernels off
with the other Triton kernels (:func:`stpcore.snn.lif.use_fused_lif`).
"""
from __future__ import annotations

import torch

from .kernels import SPIKE_DTYPES, triton
from .lif import use_fused_lif

if triton is not None:
    import triton.language as tl

#: Philox offset PyTorch's Bernoulli kernel reserves per call (``philox_cuda_state(10)``,
#: rounded up to a multiple of 4).
OFFSET_PER_CALL = 12
_BLOCK = 256        # groups of 4 draws per program


if triton is not None:
    @triton.jit
    def _uniform_draws(seed, ctr0, ctr1, group):
        """``[BLOCK, 4]`` uniforms of Philox groups ``group`` (int64 ``[BLOCK]``): draw ``4 g + w``
        is word ``w`` of group ``g`` (module doc)."""
        zero = tl.zeros(group.shape, tl.uint32)
        x0, x1, x2, x3 = tl.philox(seed, (zero + ctr0).to(tl.uint32), (zero + ctr1).to(tl.uint32),
                                   group.to(tl.uint32), (group >> 32).to(tl.uint32))
        word = tl.arange(0, 4)[None, :]
        x = tl.where(word == 0, x0[:, None], tl.where(word == 1, x1[:, None],
                                                      tl.where(word == 2, x2[:, None], x3[:, None])))
        return x.to(tl.float32) * 2.3283064365386963e-10 + 1.1641532182693481e-10

    @triton.jit
    def _bernoulli_kernel(rate_ptr, out_ptr, n_rate, total, seed, ctr0, ctr1,
                          BLOCK: tl.constexpr):
        """Any ``n_rate``: programs walk the flattened draws; rate ``i % n_rate``."""
        group = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)   # curand subsequence
        idx = group[:, None] * 4 + tl.arange(0, 4)[None, :]
        live = idx < total
        p = tl.load(rate_ptr + idx % n_rate, mask=live, other=0.0).to(tl.float32)
        u = _uniform_draws(seed, ctr0, ctr1, group)
        tl.store(out_ptr + idx, (u <= p).to(out_ptr.dtype.element_ty), mask=live)

    @triton.jit
    def _bernoulli_steps_kernel(rate_ptr, out_ptr, n_rate, steps, seed, ctr0, ctr1,
                                BLOCK: tl.constexpr):
        """``n_rate % 4 == 0``: no group spans two steps, so a program reads its rates once and
        walks the steps (no per-draw modulo, the rates read once instead of ``steps`` times)."""
        col = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)    # group within a step
        idx = col[:, None] * 4 + tl.arange(0, 4)[None, :]
        live = idx < n_rate
        p = tl.load(rate_ptr + idx, mask=live, other=0.0).to(tl.float32)
        n_rate = n_rate.to(tl.int64)
        groups = n_rate // 4
        for t in range(steps):
            u = _uniform_draws(seed, ctr0, ctr1, t * groups + col)
            tl.store(out_ptr + t * n_rate + idx, (u <= p).to(out_ptr.dtype.element_ty), mask=live)


def philox_bernoulli(rate: torch.Tensor, steps: int, dtype: torch.dtype, seed: int,
                     offset: int) -> torch.Tensor:
    """Spikes ``[steps, *rate.shape]`` in ``dtype`` (:data:`stpcore.snn.kernels.SPIKE_DTYPES`),
    drawn as ``bernoulli_(rate.expand(...))`` draws them from Philox ``seed`` at ``offset`` (module doc);
    the generator is neither read nor advanced."""
    if dtype not in SPIKE_DTYPES:
        raise ValueError(f"philox_bernoulli: `dtype` must be one of {SPIKE_DTYPES}; got {dtype}")
    if offset % 4 or not 0 <= offset < 2 ** 66 or not 0 <= seed < 2 ** 64:
        raise ValueError(f"philox_bernoulli: `offset` must be a multiple of 4 in [0, 2**66) and "
                         f"`seed` in [0, 2**64); got {offset}, {seed}")
    out = torch.empty((steps, *rate.shape), dtype=dtype, device=rate.device)
    total = out.numel()
    if total:
        ctr, n_rate = offset // 4, rate.numel()
        if n_rate % 4:
            _bernoulli_kernel[(triton.cdiv(triton.cdiv(total, 4), _BLOCK),)](
                rate.contiguous(), out, n_rate, total, seed, ctr & 0xFFFFFFFF, ctr >> 32,
                BLOCK=_BLOCK)
        else:
            _bernoulli_steps_kernel[(triton.cdiv(n_rate // 4, _BLOCK),)](
                rate.contiguous(), out, n_rate, steps, seed, ctr & 0xFFFFFFFF, ctr >> 32,
                BLOCK=_BLOCK)
    return out


def draw_bernoulli(rate: torch.Tensor, steps: int, dtype: torch.dtype,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli spikes ``[steps, *rate.shape]`` at ``rate``, in ``dtype``: the draws and the
    generator state ``torch.empty(...).bernoulli_(rate.expand(...), generator=generator)``
    gives (module doc), through :func:`philox_bernoulli` on CUDA."""
    shape = (steps, *rate.shape)
    if not (rate.is_cuda and triton is not None and dtype in SPIKE_DTYPES
            and use_fused_lif(rate.device)):
        return torch.empty(shape, dtype=dtype, device=rate.device).bernoulli_(rate.expand(shape),
                                                                              generator=generator)
    index = rate.device.index if rate.device.index is not None else torch.cuda.current_device()
    gen = generator or torch.cuda.default_generators[index]
    seed, offset = gen.initial_seed(), gen.get_offset()
    gen.set_offset(offset + OFFSET_PER_CALL)
    return philox_bernoulli(rate, steps, dtype, seed, offset)
