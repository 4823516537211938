"""Checks of what a SpikingBERT is called with, run before any simulation work: each error
names the argument, what is allowed and what was given (instead of an IndexError or a shape
mismatch deep inside the simulation)."""
from __future__ import annotations

import torch

from .layer import check_sim_dtype


def _shape(value):
    return tuple(value.shape) if isinstance(value, torch.Tensor) else value


def check_inputs(config, input_ids, attention_mask, token_type_ids=None) -> None:
    """``input_ids``: integer ids ``[B, N]`` with 1 <= N <= ``config.max_position_embeddings``;
    ``attention_mask`` (and ``token_type_ids`` unless None) of the same shape."""
    if (not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2
            or input_ids.is_floating_point()):
        raise ValueError(f"simulate: `input_ids` must be an integer tensor [batch, sequence]; "
                         f"got {_shape(input_ids)!r}")
    n, limit = input_ids.shape[1], config.max_position_embeddings
    if not 1 <= n <= limit:
        raise ValueError(f"simulate: `input_ids` must have 1 to max_position_embeddings={limit} "
                         f"tokens per row; got {n}")
    for name, value in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if value is None and name == "token_type_ids":
            continue
        if not isinstance(value, torch.Tensor) or value.shape != input_ids.shape:
            raise ValueError(f"simulate: `{name}` must be a tensor of the shape of `input_ids` "
                             f"{tuple(input_ids.shape)}; got {_shape(value)!r}")


def check_forward_args(bert, input_ids, attention_mask, token_type_ids, labels, head_mask,
                       neuron_mask, sim_dtype) -> None:
    """The arguments of ``SpikingBertForSequenceClassification.forward``: the inputs
    (:func:`check_inputs`), ``sim_dtype`` (:func:`stpcore.snn.layer.check_sim_dtype`),
    ``labels`` integer class ids ``[B]`` in [0, num_labels) (the range off CUDA), mask overrides of the installed
    masks' shapes."""
    check_sim_dtype(sim_dtype, "sim_dtype", "forward")
    check_inputs(bert.config, input_ids, attention_mask, token_type_ids)
    if labels is not None:
        k = bert.config.num_labels
        ok = (isinstance(labels, torch.Tensor) and not labels.is_floating_point()
              and labels.shape == input_ids.shape[:1])
        # the value range is checked off CUDA only: there it would cost a host sync per step
        # (cross-entropy's own device assert still stops a bad label on the GPU)
        if not ok or (labels.device.type != "cuda" and bool(((labels < 0) | (labels >= k)).any())):
            raise ValueError(f"forward: `labels` must be integer class ids [batch] = "
                             f"[{input_ids.shape[0]}] in [0, num_labels={k}); got "
                             f"{getattr(labels, 'dtype', type(labels))} {_shape(labels)!r}")
    for name, value in (("head_mask", head_mask), ("neuron_mask", neuron_mask)):
        want = tuple(getattr(bert, name).shape)
        if value is not None and (not isinstance(value, torch.Tensor) or tuple(value.shape) != want):
            raise ValueError(f"forward: `{name}` (the gradient pass's override) must be a tensor "
                             f"of shape {want}; got {_shape(value)!r}")
