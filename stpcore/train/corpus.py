"""The general-KD corpus: unlabelled text from the local GLUE folder, never a task's dev split.

Step 1 of the public SpikingBERT pipeline distils a pre-trained (not fine-tuned) BERT into the
spiking student on general text (wikitext-103 there). Offline, the GLUE folder's splits of tasks
this project does not report (QQP's train subset, MNLI's and QNLI's dev splits) and SST-2's
train split serve as that text; their labels are never read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.parquet as pq

from ..snn.checks import check_seed, is_int
from .data import (TASKS, _check_max_length, resolve_glue_dir, task_spec,
                   tokenize_columns)

# name ("<task>/<split>" of the split a file holds) -> (file under the GLUE folder, text columns)
GENERAL_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "qqp/train_subset": ("_partial/qqp_train_subset.parquet", TASKS["qqp"].text_columns),
    "mnli/validation_matched": ("mnli/validation_matched.parquet", TASKS["mnli"].text_columns),
    "mnli/validation_mismatched": ("mnli/validation_mismatched.parquet",
                                   TASKS["mnli"].text_columns),
    "qnli/validation": ("qnli/validation.parquet", TASKS["qnli"].text_columns),
    "sst2/train": ("sst2/train.parquet", TASKS["sst2"].text_columns),
}


def general_sources_ok(sources: Any) -> bool:
    """Whether ``sources`` is a non-empty tuple (or list) of distinct names of
    :data:`GENERAL_SOURCES`."""
    return (isinstance(sources, (tuple, list)) and len(sources) >= 1
            and all(isinstance(s, str) and s in GENERAL_SOURCES for s in sources)
            and len(set(sources)) == len(sources))


def read_texts(path: Path, name: str, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The ``columns`` of a general-KD source file, row by row; ``FileNotFoundError`` naming a
    missing file, ``ValueError`` naming a missing column."""
    if not path.is_file():
        raise FileNotFoundError(f"general-KD source {name!r} needs the file {str(path)!r}, "
                                f"which is missing; put it there or drop {name!r} from "
                                f"`general_kd_sources`")
    table = pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"general-KD source {name!r}: {str(path)!r} lacks the column(s) {missing}")
    return list(zip(*(table.column(c).to_pylist() for c in columns)))


def load_general_corpus(tokenizer: Any, max_length: int, sources, exclude_task: str | None = None,
                        limit: int | None = None, glue_dir: str | os.PathLike | None = None,
                        seed: int = 0) -> datasets.Dataset:
    """The general-KD corpus: the text of ``sources`` (:data:`GENERAL_SOURCES` names) from the
    local GLUE folder (:func:`resolve_glue_dir`), tokenised as :func:`.data.tokenize` does (pairs as
    pairs, single sentences alone) with every label 0 (unused), plus a ``source`` column.

    A source that is a dev split of ``exclude_task`` (the task trained next) is refused. An
    example whose whitespace-normalised text came before (in any source) and one with a blank
    text are dropped; ``limit`` then keeps that many, drawn at random with ``seed``.
    """
    _check_max_length(max_length)
    check_seed("seed", seed)
    if limit is not None and (not is_int(limit) or limit < 1):
        raise ValueError(f"limit={limit!r} must be None or an int >= 1")
    if not general_sources_ok(sources):
        raise ValueError(f"sources={sources!r} must be a non-empty list of distinct names from "
                         f"{list(GENERAL_SOURCES)}")
    dev = task_spec(exclude_task).dev_splits if exclude_task is not None else ()
    own = [s for s in sources if s in {f"{exclude_task}/{split}" for split in dev}]
    if own:
        raise ValueError(f"general-KD source(s) {own} are dev splits of task {exclude_task!r}, "
                         f"whose dev text must never be trained on; drop them from "
                         f"`general_kd_sources`")
    root = resolve_glue_dir(glue_dir)
    if root is None:
        raise FileNotFoundError("general KD reads local Parquet files, but no GLUE folder was "
                                "found: pass glue_dir= or set STP_GLUE_DIR")
    seen, rows = set(), []
    for name in sources:
        file, columns = GENERAL_SOURCES[name]
        for texts in read_texts(root / file, name, columns):
            key = tuple(" ".join((t or "").split()) for t in texts)
            if all(key) and key not in seen:
                seen.add(key)
                rows.append((name, texts))
    if not rows:
        raise ValueError(f"general-KD sources {list(sources)} hold no text under {str(root)!r}")
    if limit is not None and limit < len(rows):
        keep = np.random.default_rng(seed).permutation(len(rows))[:limit]
        rows = [rows[i] for i in np.sort(keep)]
    parts = []
    for name in sources:
        mine = [texts for source, texts in rows if source == name]
        if mine:
            columns = GENERAL_SOURCES[name][1]
            table = {**dict(zip(columns, map(list, zip(*mine)))), "label": [0] * len(mine)}
            part = tokenize_columns(datasets.Dataset.from_dict(table), columns, tokenizer,
                                    max_length, f"tokenize {name}")
            parts.append(part.add_column("source", [name] * len(part)))
    return datasets.concatenate_datasets(parts)
