"""Shipped checkpoints: a trained 1-bit SpikingBERT in a few MiB, with its record and model card.

:func:`pack_checkpoint` writes a folder ``data/checkpoints/<task>-seed<k>/`` holding

- ``packed.safetensors``: every 1-bit encoder weight as its sign bits (``numpy.packbits``, one
  bit per weight) and its per-output-channel scale alpha; every other tensor in fp32, except the
  word embeddings, which are not stored at all: with ``freeze_word_embeddings`` they never left
  the teacher package's pretrained values, and :func:`load_checkpoint` restores them from there
  (checked against the sha256 stored at packing time);
- ``config.json`` (the :class:`~stpcore.snn.config.SpikingBertConfig`), ``record.json`` (the
  stage record it came from) and ``README.md`` (a model card).

A binary weight is restored as ``alpha * sign(W)``; the model recomputes alpha as the mean of
those values, which can differ from the stored alpha by one float32 ulp (about 1e-7 relative).
The signs are exact; on the shipped MRPC checkpoint the CPU fp32 predictions equal the GPU's on
every dev example checked (tests/test_checkpoints.py). Retraining from a shipped checkpoint starts from latent weights ``alpha * sign(W)``
instead of the trained latent values (the signs, hence the model, are the same).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..snn.config import SpikingBertConfig
from ..snn.model import SpikingBertForSequenceClassification
from ..snn.quant import QuantLinear
from ..train.teacher import resolve_teacher
from .records import REPO_ROOT, atomic_write_json

CHECKPOINTS_DIR = REPO_ROOT / "data" / "checkpoints"
WORD_EMBEDDINGS = "spiking_bert.word_embeddings.weight"
MAX_BYTES = 4 * 2 ** 20


def _tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def teacher_word_embeddings(teacher: str = "all-minilm-l6-v2", dtype: str = "float32") -> torch.Tensor:
    """The teacher package's pretrained word embeddings, rounded through ``dtype`` (the dtype
    of the teacher copy the model was trained from: a GPU box may carry an fp16 copy)."""
    from transformers import AutoModel
    model = AutoModel.from_pretrained(resolve_teacher(teacher), dtype=torch.float32)
    return model.embeddings.word_embeddings.weight.detach().to(getattr(torch, dtype)).float()


def pack_checkpoint(model: SpikingBertForSequenceClassification, out_dir: str | Path,
                    record: dict, teacher_dtype: str = "float32") -> Path:
    """Write ``model`` compactly to ``out_dir`` (see the module doc); returns the folder.
    Refuses a model whose word embeddings are not the teacher package's."""
    out = Path(out_dir)
    state = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    emb_sha = _tensor_sha256(state.pop(WORD_EMBEDDINGS))
    want = _tensor_sha256(teacher_word_embeddings(record["config"]["teacher"], teacher_dtype))
    if emb_sha != want:
        raise ValueError("pack_checkpoint: the model's word embeddings differ from the teacher "
                         "package's (trained with freeze_word_embeddings=False?); they cannot be "
                         "restored, so this model cannot be packed")
    binary = [n for n, m in model.named_modules() if isinstance(m, QuantLinear) and m.binary]
    tensors = {}
    for name in binary:
        w = state.pop(f"{name}.weight")
        tensors[f"{name}.alpha"] = w.abs().mean(dim=1)
        tensors[f"{name}.signs"] = torch.from_numpy(np.packbits((w >= 0).numpy(), axis=1))
    tensors.update(state)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {"word_embeddings_sha256": emb_sha, "teacher_dtype": teacher_dtype,
            "binary_layers": json.dumps(binary)}
    save_file(tensors, tmp / "packed.safetensors", metadata=meta)
    model.config.to_json_file(tmp / "config.json")
    atomic_write_json(tmp / "record.json", record)
    (tmp / "README.md").write_text(model_card(record))
    size = sum(f.stat().st_size for f in tmp.iterdir())
    if size > MAX_BYTES:
        shutil.rmtree(tmp)
        raise ValueError(f"pack_checkpoint: {size} bytes is over the {MAX_BYTES} byte budget")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def load_checkpoint(path: str | Path, teacher: str | None = None
                    ) -> SpikingBertForSequenceClassification:
    """The model packed at ``path`` (a folder from :func:`pack_checkpoint`), in fp32 on CPU.

    ``teacher`` (default: the one in the record) supplies the word embeddings."""
    path = Path(path)
    packed = path / "packed.safetensors"
    if not packed.is_file():
        raise FileNotFoundError(f"no packed checkpoint at {str(path)!r} (missing packed.safetensors)")
    from safetensors import safe_open
    with safe_open(str(packed), "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(packed)
    record = json.loads((path / "record.json").read_text())
    config = SpikingBertConfig.from_json_file(str(path / "config.json"))
    model = SpikingBertForSequenceClassification(config)
    state = {}
    for name in json.loads(meta["binary_layers"]):
        alpha, signs = tensors.pop(f"{name}.alpha"), tensors.pop(f"{name}.signs")
        cols = model.get_submodule(name).weight.shape[1]
        bits = np.unpackbits(signs.numpy(), axis=1, count=cols).astype(np.float32)
        state[f"{name}.weight"] = alpha[:, None] * torch.from_numpy(bits * 2 - 1)
    state.update(tensors)
    emb = teacher_word_embeddings(teacher or record["config"]["teacher"], meta["teacher_dtype"])
    if _tensor_sha256(emb) != meta["word_embeddings_sha256"]:
        raise ValueError(f"load_checkpoint: the teacher's word embeddings do not match the ones "
                         f"{str(path)!r} was trained with (another teacher package version?)")
    state[WORD_EMBEDDINGS] = emb
    model.load_state_dict(state)
    return model.eval()


def model_card(record: dict) -> str:
    """A model card (Markdown) from a stage record."""
    m, p, c = record["metrics"], record["provenance"], record["config"]
    return f"""# 1-bit SpikingBERT, {record['task'].upper()} (seed {p['seed']})

What: the 1-bit SpikingBERT baseline of the `stpcore` reproduction of Jiang et al. 2025,
*Spatio-Temporal Pruning for Compressed Spiking Large Language Models*: {c['student_layers']} spiking
encoder layers, width of the teacher `{c['teacher']}`, T_conv = {c['t_conv']}, 1-bit encoder
weights (sign x per-channel scale). Word embeddings are the teacher package's (frozen in training).

How it was trained: teacher fine-tuning, intermediate- and prediction-layer KD into a
full-precision SpikingBERT, then binarisation with KD from it (`stpcore` profile `{record['profile']}`,
stage `{record['stage']}`), commit {p.get('git_commit')}, on {p['device']}, {p['wall_time_s']:.0f} s.

Results (GLUE dev, {m.get('dev_examples')} examples): accuracy {m['dev_accuracy']:.2f} %,
Normalized #C {m.get('normalized_c', float('nan')):.3f}, mean latency {m.get('mean_latency')} timesteps.

Load: `from stpcore.runs.checkpoints import load_checkpoint; model = load_checkpoint(path)`.

Limits: a research reproduction, not a product; trained on GLUE {record['task'].upper()} only;
the teacher is MiniLM-L6 (width 384), smaller than the paper's BERT-base, and accuracy is several
points below the paper's baseline (see the book's Deviations page). `record.json` is the full record.
"""
