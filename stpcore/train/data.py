"""GLUE data: loading, held-out slices, tokenisation and dynamically padded loaders.

Splits are read from a local folder of Parquet files laid out as ``<glue_dir>/<task>/<split>.parquet``
(Hugging Face ``glue`` columns) or from the HF hub (``nyu-mll/glue``). The local folder is
``glue_dir`` if given, else ``STP_GLUE_DIR``, else ``<repo>/../shared/glue`` when it exists.

Checkpoints and hyperparameters are chosen on a held-out slice of the *train* split
(:func:`split_heldout`); the dev split is only used for the final report.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

from ..snn.checks import check_seed, is_int

REPO_ROOT = Path(__file__).resolve().parents[2]
HUB_DATASET = "nyu-mll/glue"
SOURCES = ("auto", "local", "hub")
MIN_MAX_LENGTH, MAX_MAX_LENGTH = 8, 512
MODEL_COLUMNS = ("input_ids", "token_type_ids", "attention_mask", "labels")


@dataclass(frozen=True)
class TaskSpec:
    """Text columns (one, or two for sentence pairs), number of labels and dev split names."""

    text_columns: tuple[str, ...]
    num_labels: int
    dev_splits: tuple[str, ...] = ("validation",)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.dev_splits)


TASKS: dict[str, TaskSpec] = {
    "sst2": TaskSpec(("sentence",), 2),
    "mrpc": TaskSpec(("sentence1", "sentence2"), 2),
    "qnli": TaskSpec(("question", "sentence"), 2),
    "qqp": TaskSpec(("question1", "question2"), 2),
    "mnli": TaskSpec(("premise", "hypothesis"), 3, ("validation_matched", "validation_mismatched")),
}


def task_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``task``; ``ValueError`` listing the allowed tasks otherwise."""
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"task={task!r} is not supported; allowed tasks: {', '.join(TASKS)}")
    return TASKS[task]


def resolve_glue_dir(glue_dir: str | os.PathLike | None = None) -> Path | None:
    """The local GLUE folder to read, or ``None`` (meaning: use the hub).

    Order: ``glue_dir``, then ``STP_GLUE_DIR``, then ``<repo>/../shared/glue`` if it exists.
    A folder named explicitly (argument or env) that does not exist raises ``FileNotFoundError``
    (``NotADirectoryError`` when it is a file).
    """
    if glue_dir is not None:
        origin, path = "glue_dir", Path(glue_dir)
    elif os.environ.get("STP_GLUE_DIR"):
        origin, path = "STP_GLUE_DIR", Path(os.environ["STP_GLUE_DIR"])
    else:
        default = REPO_ROOT.parent / "shared" / "glue"
        return default if default.is_dir() else None
    if not path.is_dir():
        what, error = (("is not a folder", NotADirectoryError) if path.exists() else
                       ("does not exist", FileNotFoundError))
        raise error(
            f"GLUE folder {str(path)!r} (from {origin}) {what}; set STP_GLUE_DIR or pass "
            f"glue_dir= to a folder laid out as <task>/<split>.parquet, or use source='hub'")
    return path


def load_split(task: str, split: str, glue_dir: str | os.PathLike | None = None,
               source: str = "auto") -> datasets.Dataset:
    """One split of a GLUE task, with the HF ``glue`` columns.

    ``source``: ``"local"`` reads ``<glue_dir>/<task>/<split>.parquet``; ``"hub"`` downloads
    ``nyu-mll/glue``; ``"auto"`` is local when a GLUE folder resolves, else hub (no fallback to
    the hub for a file missing from a present folder).
    """
    spec = task_spec(task)
    if not isinstance(split, str) or split not in spec.splits:
        raise ValueError(f"split={split!r} is not a split of task {task!r}; "
                         f"allowed splits: {', '.join(spec.splits)}")
    if not isinstance(source, str) or source not in SOURCES:
        raise ValueError(f"source={source!r} is not supported; allowed sources: {', '.join(SOURCES)}")
    root = None if source == "hub" else resolve_glue_dir(glue_dir)
    if source == "hub" or (source == "auto" and root is None):
        return datasets.load_dataset(HUB_DATASET, task, split=split)
    if root is None:
        raise FileNotFoundError(
            "source='local' but no GLUE folder was found: pass glue_dir=, set STP_GLUE_DIR, "
            f"or place the data at {REPO_ROOT.parent / 'shared' / 'glue'}")
    path = root / task / f"{split}.parquet"
    if not path.is_file():
        what = "not a file" if path.exists() else "missing file"
        raise FileNotFoundError(
            f"{task}/{split} is not in the GLUE folder: {what} {str(path)!r}. Obtain it from "
            f"the HF hub ({HUB_DATASET!r}, config {task!r}) with source='hub' on a machine with "
            f"network, or put the Parquet file (HF glue columns) at that path")
    _check_parquet(path, task, split)
    return datasets.load_dataset("parquet", data_files=str(path), split="train")


def _check_parquet(path: Path, task: str, split: str) -> None:
    """A local split file is a readable Parquet file with at least one row (read from its footer,
    before ``datasets`` caches anything): ``ValueError`` naming the file otherwise."""
    fix = "replace it with the HF glue Parquet file of that split"
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as err:        # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise ValueError(f"{task}/{split}: {str(path)!r} is not a readable Parquet file "
                         f"({type(err).__name__}: {err}); {fix}") from None
    if rows == 0:
        raise ValueError(f"{task}/{split}: {str(path)!r} must hold at least one example; "
                         f"got 0 rows; {fix}")


HELDOUT_RULES = ("match_dev", "random")


def word_lengths(dataset: datasets.Dataset, text_columns: tuple[str, ...]) -> np.ndarray:
    """Words per example (whitespace split, text columns added up)."""
    counts = np.zeros(len(dataset), dtype=int)
    for c in text_columns:              # whole columns (`[:]`: a list), not rows: 100x faster
        counts += np.array([len(str(t).split()) for t in dataset[c][:]], dtype=int)
    return counts


def split_heldout(dataset: datasets.Dataset, fraction: float = 0.05, max_size: int = 2000,
                  seed: int = 0, match_lengths=None, text_columns: tuple[str, ...] = ()
                  ) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split a *train* split into ``(train, heldout)``, deterministically for a given ``seed``.

    The held-out slice has ``min(max_size, round(fraction * n))`` rows (at least 1). Without
    ``match_lengths`` they are drawn at random. With ``match_lengths`` (the dev split's word
    counts) they are drawn so that their length distribution matches: per decile bin of the
    reference lengths, as many rows as that bin's share (fewer where train has too few).
    SST-2's train split is mostly short phrases while dev holds whole sentences, so a random
    slice reads about 10 points above dev; a length-matched one holds sentences like dev's.

    With one text column, train rows whose text occurs inside a held-out text are dropped from
    train: SST-2's train split holds the phrases of its sentences, which would otherwise leak
    the held-out sentences' labels into training. Both parts keep the original row order.
    """
    _check_fraction(fraction)
    if not is_int(max_size) or max_size < 1:
        raise ValueError(f"max_size={max_size!r} must be an int >= 1")
    check_seed("seed", seed)
    n = len(dataset)
    if n < 2:
        raise ValueError(f"dataset has {n} rows; split_heldout needs at least 2")
    size = min(max_size, max(1, round(fraction * n)), n - 1)
    rng = np.random.default_rng(seed)
    if match_lengths is None:
        held = rng.permutation(n)[:size]
    else:
        ref = np.asarray(match_lengths)
        if ref.ndim != 1 or len(ref) < 1:
            raise ValueError("match_lengths must be a non-empty 1-D list of lengths")
        lengths = word_lengths(dataset, text_columns)
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
        if len(edges) == 1:                 # every dev example has one length: a single bin
            edges = np.array([edges[0], edges[0] + 1.0])
        ref_bin = np.clip(np.searchsorted(edges, ref, side="right") - 1, 0, len(edges) - 2)
        own_bin = np.searchsorted(edges, lengths, side="right") - 1
        own_bin[lengths >= edges[-1]] = len(edges) - 2          # longer than dev: last bin
        own_bin[lengths < edges[0]] = -1                        # shorter than any dev example
        held = []
        for b in range(len(edges) - 1):
            want = round(size * float((ref_bin == b).mean()))
            pool = np.flatnonzero(own_bin == b)
            held.append(rng.permutation(pool)[:want])
        held = np.concatenate(held).astype(int)
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    if len(text_columns) == 1:
        texts = dataset[text_columns[0]][:]
        blob = "\n".join(str(texts[i]) for i in np.sort(held))
        leak = np.array([mask[i] and str(texts[i]) in blob for i in range(n)], dtype=bool)
        mask &= ~leak
    keep = np.flatnonzero(mask)
    return dataset.select(keep), dataset.select(np.sort(held))


def _check_fraction(fraction: Any) -> None:
    if (not isinstance(fraction, Real) or isinstance(fraction, bool) or not math.isfinite(fraction)
            or not 0.0 < fraction < 1.0):
        raise ValueError(f"fraction={fraction!r} must be a number in (0, 1)")


def check_columns(dataset: datasets.Dataset, task: str, split: str) -> None:
    """The task's text columns hold strings and ``label`` holds ints, with no missing values."""
    spec = task_spec(task)
    missing = [c for c in (*spec.text_columns, "label") if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{task}/{split}: the split must have the column(s) "
                         f"{[*spec.text_columns, 'label']} (HF glue layout); missing {missing}; "
                         f"it has {dataset.column_names}")
    table = dataset.data
    for column in (*spec.text_columns, "label"):
        kind = table.schema.field(column).type
        ok = (pa.types.is_integer(kind) if column == "label" else
              pa.types.is_string(kind) or pa.types.is_large_string(kind))
        if not ok:
            want = "integer label ids" if column == "label" else "strings"
            raise ValueError(f"{task}/{split}: column {column!r} must hold {want}; got type {kind}")
        nulls = table.column(column).null_count
        if nulls:
            raise ValueError(f"{task}/{split}: column {column!r} must have no missing values; "
                             f"got {nulls} missing")


def check_labels(dataset: datasets.Dataset, task: str, split: str) -> None:
    """A split must not be empty; its columns are those of :func:`check_columns`; labels must be
    ints in [0, num_labels) (GLUE's unlabelled test splits use -1)."""
    spec = task_spec(task)
    if len(dataset) == 0:
        raise ValueError(f"{task}/{split} must hold at least one example; got 0 rows")
    check_columns(dataset, task, split)
    labels = np.asarray(dataset["label"])
    bad = labels[(labels < 0) | (labels >= spec.num_labels)]
    if len(bad):
        raise ValueError(f"{task}/{split}: labels must be in [0, {spec.num_labels}); found "
                         f"{sorted(set(bad.tolist()))[:5]} in {int(len(bad))} rows")


def _check_max_length(max_length: Any) -> None:
    if not is_int(max_length) or not MIN_MAX_LENGTH <= max_length <= MAX_MAX_LENGTH:
        raise ValueError(f"max_length={max_length!r} must be an int in "
                         f"[{MIN_MAX_LENGTH}, {MAX_MAX_LENGTH}]")


def tokenize(dataset: datasets.Dataset, task: str, tokenizer: Any,
             max_length: int = 128) -> datasets.Dataset:
    """Tokenise ``dataset`` (pairs as pairs, truncated to ``max_length``, not padded).

    Returns a dataset with exactly the columns ``input_ids, token_type_ids, attention_mask, labels``.
    """
    spec = task_spec(task)
    _check_max_length(max_length)
    missing = [c for c in (*spec.text_columns, "label") if c not in dataset.column_names]
    if missing:
        raise ValueError(f"dataset lacks column(s) {missing} needed for task {task!r}; "
                         f"it has {dataset.column_names}")
    return tokenize_columns(dataset, spec.text_columns, tokenizer, max_length, f"tokenize {task}")


def tokenize_columns(dataset: datasets.Dataset, text_columns: tuple[str, ...], tokenizer: Any,
                     max_length: int, desc: str = "tokenize") -> datasets.Dataset:
    """:func:`tokenize` by column names: ``text_columns`` (two: one pair) and ``label``."""
    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[c] for c in text_columns]
        enc = tokenizer(*texts, truncation=True, max_length=max_length,
                        return_token_type_ids=True, return_attention_mask=True)
        return {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                "attention_mask": enc["attention_mask"], "labels": batch["label"]}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=desc)


def _pad_collate(pad_token_id: int):
    """Collate rows into LongTensors padded to the longest row of the batch."""
    pad_values = {"input_ids": pad_token_id, "token_type_ids": 0, "attention_mask": 0}

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        batch = {k: torch.tensor([list(r[k]) + [v] * (width - len(r[k])) for r in rows],
                                 dtype=torch.long) for k, v in pad_values.items()}
        batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
        return batch

    return collate


def make_loader(tokenized: datasets.Dataset, batch_size: int, shuffle: bool, seed: int = 0,
                limit: int | None = None, pad_token_id: int = 0) -> DataLoader:
    """A DataLoader of dicts of LongTensors ``input_ids, token_type_ids, attention_mask, labels``.

    Batches are padded to their longest row (``pad_token_id`` in ``input_ids``, 0 elsewhere;
    0 is BERT's ``[PAD]``). ``limit`` keeps the first ``limit`` rows, taken after a ``seed``-ed
    shuffle when ``shuffle`` is true; with ``shuffle=False`` the order is kept.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
    if limit is not None and (not is_int(limit) or limit < 1):
        raise ValueError(f"limit={limit!r} must be None or an int >= 1")
    data = tokenized.shuffle(seed=seed) if shuffle else tokenized
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    data = data.select_columns(list(MODEL_COLUMNS))
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=_pad_collate(pad_token_id))


def load_task(task: str, tokenizer: Any, max_length: int = 128,
              glue_dir: str | os.PathLike | None = None, source: str = "auto",
              heldout_fraction: float = 0.05, seed: int = 0,
              heldout_rule: str = "match_dev") -> dict[str, datasets.Dataset]:
    """Tokenised ``{"train", "heldout", "dev"}`` of ``task`` (mnli adds ``"dev_mismatched"``).

    ``heldout`` is a slice of the train split (see :func:`split_heldout`); ``dev`` is the first
    dev split (``validation_matched`` for mnli).
    """
    spec = task_spec(task)
    _check_max_length(max_length)
    if not isinstance(heldout_rule, str) or heldout_rule not in HELDOUT_RULES:
        raise ValueError(f"heldout_rule={heldout_rule!r} is not supported; allowed: "
                         f"{', '.join(HELDOUT_RULES)}")
    _check_fraction(heldout_fraction)
    check_seed("seed", seed)
    splits = load_checked(task, glue_dir, source)
    full = splits.pop("train")
    if len(full) < 2:
        raise ValueError(f"{task}/train must hold at least 2 examples (the held-out slice is taken "
                         f"from it); got {len(full)}")
    parts = dict(zip(("dev", "dev_mismatched"), (splits[s] for s in spec.dev_splits)))
    match = word_lengths(parts["dev"], spec.text_columns) if heldout_rule == "match_dev" else None
    parts["train"], parts["heldout"] = split_heldout(full, fraction=heldout_fraction, seed=seed,
                                                     match_lengths=match,
                                                     text_columns=spec.text_columns)
    return {name: tokenize(ds, task, tokenizer, max_length) for name, ds in parts.items()}


def load_checked(task: str, glue_dir: str | os.PathLike | None = None,
                 source: str = "auto") -> dict[str, datasets.Dataset]:
    """Every split of ``task`` (``{"train": ..., "validation": ...}``), each checked by
    :func:`check_labels` (readable, non-empty, the HF glue columns and types, labels in range).
    Cheap next to training: callers can run it before any work starts."""
    spec = task_spec(task)
    out = {}
    for split in (*spec.dev_splits, "train"):
        out[split] = load_split(task, split, glue_dir, source)
        check_labels(out[split], task, split)
    return out
