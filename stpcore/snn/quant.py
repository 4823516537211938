"""1-bit weights: sign times a per-output-channel scale, trained with a straight-through estimator.

``binarize(W)[i, j] = alpha_i * sign(W[i, j])`` with ``alpha_i = mean_j |W[i, j]|`` (the scale
that minimises ``||W - alpha * sign(W)||^2``). The backward pass of ``sign`` is the clipped
identity (``1`` where ``|W| <= 1``, else ``0``). Embeddings, LayerNorms, the pooler and the
classifier stay full precision; only encoder linear layers are binarised.

Stored compactly (:mod:`stpcore.snn.packed`), a 1-bit weight is its sign bits, eight to a byte
(:func:`pack_signs`), and its scale alpha; :func:`unpack_signs` restores ``alpha * sign(W)``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


def sign_ste(w: torch.Tensor) -> torch.Tensor:
    """sign(w) in {-1, +1} (sign(0) = +1) with the clipped straight-through gradient."""
    return _SignSTE.apply(w)


def binary_scale(weight: torch.Tensor) -> torch.Tensor:
    """alpha ``[out]`` of a ``[out, in]`` weight: ``mean_j |W[i, j]|``, in the weight's dtype."""
    return weight.abs().mean(dim=1)


def binarize(weight: torch.Tensor) -> torch.Tensor:
    """1-bit weight ``alpha * sign(W)``, alpha per output channel (rows of ``[out, in]``)."""
    return binary_scale(weight)[:, None] * sign_ste(weight)


def pack_signs(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha [out], signs [out, ceil(in / 8)] uint8)`` of a ``[out, in]`` weight: the scale
    of :func:`binarize` and ``W >= 0`` packed eight bits to a byte along each row
    (``numpy.packbits``, first column in the high bit)."""
    w = weight.detach().float().cpu()
    return binary_scale(w), torch.from_numpy(np.packbits((w >= 0).numpy(), axis=1))


def unpack_signs(alpha: torch.Tensor, signs: torch.Tensor, in_features: int) -> torch.Tensor:
    """The ``[out, in_features]`` weight ``alpha * sign(W)`` from :func:`pack_signs`'s output."""
    bits = np.unpackbits(signs.numpy(), axis=1, count=in_features).astype(np.float32)
    return alpha[:, None] * torch.from_numpy(bits * 2 - 1)


class QuantLinear(nn.Linear):
    """A linear layer whose effective weight is ``binarize(weight)`` when ``binary`` is set."""

    def __init__(self, in_features: int, out_features: int, binary: bool = False):
        super().__init__(in_features, out_features)
        self.binary = binary

    def effective_weight(self) -> torch.Tensor:
        return binarize(self.weight) if self.binary else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.effective_weight(), self.bias)
