"""The integer simulation path of 1-bit models (``sim_dtype=torch.int8``): exact synaptic currents.

In a 1-bit model every encoder linear layer has the weight ``alpha_i * sign(W_ij)``
(:func:`stpcore.snn.quant.binarize`) and is driven by spikes ``s`` in {0, 1}, so its current is

    I = alpha * (s @ sign^T) + b

where ``s @ sign^T`` is an integer of magnitude at most the fan-in. This path computes that
product exactly and rounds once:

* on CUDA with triton (:func:`stpcore.snn.lif.use_fused_lif`): the Triton kernels of
  :mod:`stpcore.snn.int_kernels`, int8 x int8 -> int32 on the tensor cores and the current as one
  fp32 fused multiply-add (the exact value rounded once); for a population whose current drives
  its LIF neurons directly (Key, Value, intermediate) the LIF scan runs in the same kernel
  (:func:`fire_linear`), so its currents never reach memory;
* otherwise the product through ``torch._int_mm`` on CUDA (it needs M > 16 rows and K, N
  multiples of 8, so K and N are zero-padded, and fewer rows fall back) or, elsewhere, an fp32
  product of the 0/1 and +-1 values, exact because every partial sum is an integer of magnitude
  <= K < 2**24 (whatever the summation order); then ``alpha * acc + b`` in float64
  (``alpha * acc`` is exact: 24 + 12 bits for K <= 4096), written to fp32. Both round the exact
  current once (they can differ only where the float64 sum lands on an fp32 rounding midpoint),
  where the fp32 path rounds every one of its K additions of ``+-alpha``.

Only the synaptic products of spikes are integer. The LIF membranes, the query-key scores,
softmax, attention context and LayerNorms stay fp32 (:class:`stpcore.snn.layer.SpikingEncoderLayer`:
on CPU exactly the fp32 path's steps; on CUDA its split-bf16 attention kernel, whose products are
exact and whose sums are fp32 (:mod:`stpcore.snn.spike_attention`), and its fused LayerNorm-LIF
kernel, which sum in another order); the embedding population's input current is real-valued and is
never multiplied here.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

from .int_kernels import binary_linear, binary_linear_lif, int_kernels_available
from .lif import add_counts, lif_scan, use_fused_lif
from .quant import binary_scale

#: The simulation dtype that selects this path (profile ``sim_dtype="int8"``).
INT_DTYPE = torch.int8


class BinaryLinear(NamedTuple):
    """A 1-bit linear layer as the integer path reads it: ``alpha[:, None] * signs`` is the
    effective weight. Rows and columns of padding units are zero in ``signs``."""
    signs: torch.Tensor     # [out, in] int8 in {-1, 0, +1}
    alpha: torch.Tensor     # [out] float64, the per-output-channel scale
    bias: torch.Tensor      # [out] float64


def split_binary(layer) -> BinaryLinear:
    """The integer path's view of a 1-bit :class:`~stpcore.snn.quant.QuantLinear`, read off its
    weight ``W [out, in]`` in a few kernels (not through the fp32 effective weight): ``sign(W)``
    as int8 (+1 at 0, as :func:`~stpcore.snn.quant.binarize`), its scale
    (:func:`~stpcore.snn.quant.binary_scale`, then float64) and the bias. ``alpha[:, None] * signs`` is the layer's effective weight exactly
    (``alpha * (+-1)`` is exact)."""
    w = layer.weight.detach()
    return BinaryLinear(torch.where(w >= 0, 1, -1).to(INT_DTYPE), binary_scale(w).double(),
                        layer.bias.detach().double())


def multiply_int8(x: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """``x @ signs^T`` as int32 through ``torch._int_mm``, K and N zero-padded to multiples of 8
    (zeros add nothing), the weight passed column-major (``signs.t()``, the layout cuBLASLt's
    int8 GEMM takes without a copy). ``x``: ``[M, K]`` int8 with M > 16; ``signs``: ``[N, K]``
    int8. Returns ``[M, N]`` int32 (a view when N was padded)."""
    n = signs.shape[0]
    pad_k, pad_n = -x.shape[1] % 8, -n % 8
    if pad_k:
        x = F.pad(x, (0, pad_k))
    if pad_k or pad_n:
        signs = F.pad(signs, (0, pad_k, 0, pad_n))
    return torch._int_mm(x, signs.t())[:, :n]


def multiply_spikes(x: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """The exact integer product ``x @ signs^T`` of spikes ``x [M, K]`` (int8 0/1) and signs
    ``[N, K]`` (int8): int32 from :func:`multiply_int8` on CUDA when M > 16 and K, N > 0, else
    fp32 holding the same integers (exact, see the module doc)."""
    if x.is_cuda and x.shape[0] > 16 and x.shape[1] > 0 and signs.shape[0] > 0:
        return multiply_int8(x, signs)
    return x.float() @ signs.float().t()


def compute_binary_currents(spikes: torch.Tensor, lin: BinaryLinear) -> torch.Tensor:
    """Synaptic currents ``alpha * (spikes @ signs^T) + bias`` of int8 spikes ``[..., in]``:
    fp32 ``[..., out]``, the float64 value rounded once (``addcmul`` computes in float64, the
    dtype of alpha and bias, and casts on writing)."""
    if spikes.dtype != INT_DTYPE:
        raise TypeError(f"compute_binary_currents: spikes must be {INT_DTYPE} 0/1; got "
                        f"{spikes.dtype}")
    if use_int_kernels(spikes):
        return binary_linear(spikes, *lin)
    acc = multiply_spikes(spikes.flatten(0, -2), lin.signs)
    out = torch.empty(acc.shape, dtype=torch.float32, device=acc.device)
    torch.addcmul(lin.bias, acc, lin.alpha, out=out)
    return out.reshape(*spikes.shape[:-1], out.shape[-1])


def use_int_kernels(x: torch.Tensor) -> bool:
    """Whether ``x``'s products take the Triton kernels: CUDA, triton, and the fused kernels
    allowed on its device (``STP_FUSED_LIF``, :func:`stpcore.snn.lif.use_fused_lif`)."""
    return x.is_cuda and int_kernels_available() and use_fused_lif(x.device)


def fire_linear(x: torch.Tensor, lin, threshold, leak: float = 1.0, state=None, spike_dtype=None,
                counts=None):
    """LIF spikes (Eq. 1-3) of a population driven directly by ``lin``'s currents of spikes
    ``x [T, ..., in]`` (:func:`compute_currents`; spikes in ``spike_dtype``, default ``x``'s;
    ``counts``: as :func:`stpcore.snn.lif.lif_scan`'s).
    For a :class:`BinaryLinear` on CUDA with the Triton kernels, product and LIF run in one
    kernel (:func:`stpcore.snn.int_kernels.binary_linear_lif`); otherwise
    :func:`compute_currents` then :func:`stpcore.snn.lif.lif_scan`. Returns
    ``(spikes [T, ..., out], (u, s))``."""
    if (isinstance(lin, BinaryLinear) and use_int_kernels(x) and isinstance(threshold, torch.Tensor)
            and threshold.dim() == 0):
        spikes, state = binary_linear_lif(x, *lin, threshold, leak, state, spike_dtype or x.dtype)
        add_counts(counts, spikes)      # apart: a count tile would cost this kernel registers
        return spikes, state
    return lif_scan(compute_currents(x, lin), threshold, leak, state,
                    spike_dtype=spike_dtype or x.dtype, counts=counts)


def compute_currents(x: torch.Tensor, lin) -> torch.Tensor:
    """The currents of presynaptic spikes ``x [..., in]`` through ``lin``: a
    :class:`BinaryLinear` (integer path, ``x`` int8) or a float ``(weight, bias)`` pair in ``x``'s
    dtype (``torch.nn.functional.linear``). Returns ``[..., out]``."""
    if isinstance(lin, BinaryLinear):
        return compute_binary_currents(x, lin)
    return F.linear(x, *lin)
