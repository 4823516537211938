"""The packed weight file of a 1-bit SpikingBERT classifier, ``packed.safetensors``.

A folder with ``config.json`` and ``packed.safetensors`` (in place of ``model.safetensors``)
loads with ``SpikingBertForSequenceClassification.from_pretrained(folder)``, or, after
``import stpcore``, with ``transformers.AutoModelForSequenceClassification``. The file holds

- each 1-bit encoder weight (a :class:`~stpcore.snn.quant.QuantLinear` with ``binary`` set) as
  ``<layer>.signs`` (one bit per weight, :func:`~stpcore.snn.quant.pack_signs`) and
  ``<layer>.alpha`` (its per-output-channel scale), restored as ``alpha * sign(W)``;
- every other tensor in fp32, except the word embeddings, which are not stored: they are the
  frozen, pretrained ones of the model named by the config's ``word_embeddings_source`` (the
  teacher), restored from there and checked against their sha256;
- metadata: ``binary_layers`` (a JSON list of those layers), ``word_embeddings_sha256`` and
  ``teacher_dtype`` (the dtype the source's embeddings were rounded through in training).

Where the word embeddings come from is a hook: :func:`set_word_embeddings_source` installs a
function ``source(name, dtype)`` returning the pretrained word embeddings of the model ``name``
(None: the source's default model). ``import stpcore`` installs
:func:`stpcore.train.teacher.teacher_word_embeddings`, so this module needs nothing from
training.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .quant import QuantLinear, pack_signs, unpack_signs

PACKED_WEIGHTS = "packed.safetensors"
WORD_EMBEDDINGS = "spiking_bert.word_embeddings.weight"
METADATA = ("binary_layers", "word_embeddings_sha256", "teacher_dtype")

_word_embeddings_source: Callable[[str | None, str], torch.Tensor] | None = None


def set_word_embeddings_source(source: Callable[[str | None, str], torch.Tensor]) -> None:
    """Install ``source(name, dtype) -> [vocab, hidden] float32 tensor``: the pretrained word
    embeddings of the model ``name`` (None: the source's default), rounded through ``dtype``."""
    global _word_embeddings_source
    _word_embeddings_source = source


def source_word_embeddings(name: str | None, dtype: str = "float32") -> torch.Tensor:
    """The installed source's word embeddings of ``name`` (see :func:`set_word_embeddings_source`)."""
    if _word_embeddings_source is None:
        raise RuntimeError("no source of word embeddings is installed: `import stpcore` installs "
                           "the teacher package's (stpcore.snn.packed.set_word_embeddings_source)")
    return _word_embeddings_source(name, dtype)


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of a tensor's fp32 bytes."""
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def packed_weights_file(path) -> Path | None:
    """``path/packed.safetensors`` when ``path`` is a local folder holding one, else None."""
    if not isinstance(path, (str, Path)):
        return None
    packed = Path(path) / PACKED_WEIGHTS
    return packed if packed.is_file() else None


def binary_layers(model: nn.Module) -> list[str]:
    """Names of ``model``'s 1-bit linear layers."""
    return [n for n, m in model.named_modules() if isinstance(m, QuantLinear) and m.binary]


def pack_state(model: nn.Module, source: str | None,
               dtype: str = "float32") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of ``packed.safetensors`` for ``model`` (see the module doc).

    Raises ValueError when the model's word embeddings are not ``source``'s rounded through
    ``dtype``: they could not be restored."""
    state = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    emb_sha = tensor_sha256(state.pop(WORD_EMBEDDINGS))
    if emb_sha != tensor_sha256(source_word_embeddings(source, dtype)):
        raise ValueError(f"the model's word embeddings differ from those of {source!r} "
                         f"({dtype}); trained with freeze_word_embeddings=False? They cannot "
                         "be restored, so this model cannot be packed")
    binary = binary_layers(model)
    tensors = {}
    for name in binary:
        tensors[f"{name}.alpha"], tensors[f"{name}.signs"] = pack_signs(state.pop(f"{name}.weight"))
    tensors.update(state)
    meta = {"word_embeddings_sha256": emb_sha, "teacher_dtype": dtype,
            "binary_layers": json.dumps(binary)}
    return tensors, meta


def unpack_state(packed: Path, model: nn.Module, source: str | None) -> dict[str, torch.Tensor]:
    """The full state dict of ``model`` (any device, meta included: only its layer shapes are
    read) from ``packed`` (a ``packed.safetensors``), word embeddings from ``source``. A file
    that is not a safetensors file with the metadata of :func:`pack_state` raises
    ``ValueError`` naming it."""
    fix = "pack the model again (python -m stpcore pack) or restore the file"
    try:
        with safe_open(str(packed), "pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except SafetensorError as err:
        raise ValueError(f"{str(packed)!r} is not a readable safetensors file ({err}); {fix}") from None
    missing = [k for k in METADATA if k not in meta]
    if missing:
        raise ValueError(f"{str(packed)!r} is not a packed checkpoint (its metadata lacks "
                         f"{missing}); {fix}")
    state = {}
    for name in json.loads(meta["binary_layers"]):
        alpha, signs = tensors.pop(f"{name}.alpha"), tensors.pop(f"{name}.signs")
        state[f"{name}.weight"] = unpack_signs(alpha, signs, model.get_submodule(name).in_features)
    emb = source_word_embeddings(source, meta["teacher_dtype"])
    if tensor_sha256(emb) != meta["word_embeddings_sha256"]:
        raise ValueError(f"the word embeddings of {repr(source) if source else 'the default model'} "
                         f"do not match the ones {str(packed)!r} was packed with (another "
                         "teacher package version?)")
    state.update(tensors)
    state[WORD_EMBEDDINGS] = emb
    return state
