"""The paper's own published numbers (Jiang et al. 2025), kept apart from ours.

Everything here is read from ``data/paper/paper_results.json``, transcribed from Tables I-V
and the Sec. IV-C text of "Spatio-Temporal Pruning for Compressed Spiking Large Language
Models". Nothing in this module is a result of stpcore.
"""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

PAPER_RESULTS_PATH = Path(__file__).resolve().parents[2] / "data" / "paper" / "paper_results.json"
#: GLUE tasks of the paper, in the column order of its tables.
PAPER_TASKS = ("mnli", "qqp", "qnli", "sst2", "mrpc")


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_paper_results(path: str | Path | None = None) -> dict:
    """The paper's published numbers as a dict (a fresh copy each call).

    Keys: ``source`` (what these numbers are), ``paper``, ``tasks``, ``task_labels``,
    ``table_i`` ... ``table_v``, ``section_iv_c``, ``ablations`` and ``external``
    (numbers from other papers, e.g. the full-precision SpikingBERT accuracy).
    """
    return copy.deepcopy(_load(str(path or PAPER_RESULTS_PATH)))


def task_label(task: str) -> str:
    """The paper's spelling of a task name (``sst2`` -> ``SST-2``)."""
    return load_paper_results()["task_labels"].get(task, task.upper())
