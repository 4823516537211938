"""What a simulation prepares before its first step, and the cache that reuses it.

Before simulating, :meth:`stpcore.snn.model.SpikingBertModel.simulate` reads the masks' kept
units (a host synchronisation per mask) and builds every layer's effective weights in the
simulation dtype (:meth:`stpcore.snn.layer.SpikingEncoderLayer.weights`: 1-bit weights
binarised, pruned rows and columns dropped, for int8 split into signs and scales). At paper size
(4 layers, width 768) that is a few hundred small kernels, several milliseconds on an H200,
every call. :class:`WeightCache` keeps the result per ``(dtype, prune_kv)`` for as long as no
parameter or buffer of the model changes; it is what
:meth:`~stpcore.snn.model.SpikingBertModel.cache_weights` turns on (evaluation, trace
collection, a frozen KD teacher).

A change is seen through each tensor's address and version counter, which every in-place
operation on it bumps (optimiser steps, ``load_state_dict``, ``set_masks``) and moving the
model replaces. Writes through ``tensor.data`` bump no counter, so weights the cache derived
(1-bit, low-precision, pruned) would go stale: leave the cache off around code that edits
weights that way.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class Prepared(NamedTuple):
    """Per layer: ``kept`` (the kept heads' hidden columns and the kept neurons, each an index
    tensor or None for all), ``weights``
    (:meth:`stpcore.snn.layer.SpikingEncoderLayer.weights`) and ``kv_cols``
    (the kept heads' columns to take from whole Key and Value weights, or None)."""
    kept: list
    weights: list
    kv_cols: list


def kept_units(mask: torch.Tensor) -> torch.Tensor | None:
    """Indices of the kept units of a 0/1 mask row, or None when all are kept."""
    return None if bool((mask != 0).all()) else mask.nonzero().flatten()


def expand_rates(rate: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
    """Scatter compact rates ``[..., >= len(index)]`` into zeros ``[..., width]``."""
    full = rate.new_zeros(*rate.shape[:-1], width)
    full[..., index] = rate[..., :len(index)]           # drops the padding units
    return full


def prepare_weights(bert, dtype: torch.dtype, prune_kv: bool) -> Prepared:
    """The kept units and the effective weights of ``bert`` (a ``SpikingBertModel``) in ``dtype``."""
    kept = []
    for layer, hm, nm in zip(bert.layers, bert.head_mask, bert.neuron_mask):
        heads = kept_units(hm)
        kept.append((None if heads is None else layer.head_columns(heads), kept_units(nm)))
    weights = [layer.weights(dtype, *kept[l], prune_kv) for l, layer in enumerate(bert.layers)]
    return Prepared(kept, weights, [None if prune_kv else k[0] for k in kept])


def tensor_versions(module: torch.nn.Module) -> tuple:
    """Address and version counter of every parameter and buffer of ``module``."""
    return tuple((t.data_ptr(), t._version)
                 for t in (*module.parameters(), *module.buffers()))


class WeightCache:
    """:func:`prepare_weights` results per ``(dtype, prune_kv, binary flags)``, each reused while
    :func:`tensor_versions` of the model is unchanged and rebuilt otherwise."""

    def __init__(self):
        self.entries = {}

    def get(self, bert, dtype: torch.dtype, prune_kv: bool) -> Prepared:
        binary = tuple(bool(getattr(m, "binary", False)) for m in bert.layers.modules())
        key, versions = (dtype, prune_kv, binary), tensor_versions(bert)
        hit = self.entries.get(key)
        if hit is None or hit[0] != versions:
            hit = self.entries[key] = (versions, prepare_weights(bert, dtype, prune_kv))
        return hit[1]


class WeightCaching:
    """Turns a model's :class:`WeightCache` on or off at once; as a context manager, restores the
    previous setting on exit (the pattern of ``torch.set_grad_enabled``). Nested blocks share
    the outer cache."""

    def __init__(self, bert, enabled: bool = True):
        self.bert, self.previous = bert, bert.weight_cache
        bert.weight_cache = (self.previous or WeightCache()) if enabled else None

    def __enter__(self):
        return self.bert

    def __exit__(self, *exc):
        self.bert.weight_cache = self.previous
