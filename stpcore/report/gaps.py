"""Why the starting point is where it is: the distillation chain's gaps, ours beside the reference.

Each student loses accuracy to the model it is distilled from. The reference chain is the
paper's: BERT-base (the teacher of the public SpikingBERT, ``external.bert_base_sst2``) -> the
public full-precision SpikingBERT (``external.spikingbert_fp_sst2``) -> the paper's 1-bit
baseline (Table II). Where our gaps match the reference gaps, our shortfall against the paper is
the teacher's shortfall; where they are wider, it is the students'. Records come as
``{(task, stage, seed): record_or_None}`` (:func:`stpcore.report.seeds.collect_seeded`).
"""
from __future__ import annotations

from typing import Iterable

import pandas as pd

from .paper import load_paper_results, task_label
from .seeds import SeededRecords, _present, _values
from .summary import FOUNDATION_STAGES, paper_reference
from .tables import NO_METRIC, NOT_RUN, fmt_missing

GAP_COLUMNS = ["teacher (%)", "full precision (%)", "1-bit (%)", "teacher - full precision (pt)",
               "teacher - 1-bit (pt)", "seeds"]


def reference_chain(task: str) -> dict[str, float] | None:
    """The reference chain's accuracies ``{stage: percent}`` for ``task`` (None where the paper's
    sources do not give all three: only SST-2 has a published teacher and full-precision number)."""
    teacher = load_paper_results()["external"].get(f"bert_base_{task}", {}).get("accuracy")
    chain = {"teacher": teacher, "spiking_fp": paper_reference(task, "spiking_fp"),
             "baseline": paper_reference(task, "baseline")}
    return chain if all(v is not None for v in chain.values()) else None


def _means(records: SeededRecords, task: str, seeds: Iterable[int] | None) -> tuple[dict, list[int]]:
    """Our ``{stage: mean dev accuracy or None}`` of ``task`` over the seeds found, and those seeds."""
    found = {s: _present(records, task, s, seeds) for s in FOUNDATION_STAGES}
    acc = {s: (sum(v) / len(v) if (v := _values(recs, "dev_accuracy")) else None) for s, recs in found.items()}
    return acc, sorted({k for recs in found.values() for k in recs})


def _gaps(acc: dict) -> tuple[float | None, float | None]:
    """(teacher - full precision, teacher - 1-bit) of a chain, None where a stage is missing."""
    t = acc.get("teacher")
    return tuple(None if t is None or acc.get(s) is None else t - acc[s] for s in ("spiking_fp", "baseline"))


def _row(acc: dict, seeds: str) -> list:
    return [*(fmt_missing(acc.get(s), 2, NOT_RUN) for s in FOUNDATION_STAGES),
            *(fmt_missing(g, 2, NO_METRIC) for g in _gaps(acc)), seeds]


def gap_table(records: SeededRecords, tasks: Iterable[str] = ("sst2", "mrpc"),
              seeds: Iterable[int] | None = None) -> pd.DataFrame:
    """Per task: our teacher, full-precision and 1-bit dev accuracy (means over the seeds found)
    and the two gaps from the teacher; then the reference chain where the sources give one.
    Index ``(task, chain)``."""
    rows, index = [], []
    for task in tasks:
        acc, seen = _means(records, task, seeds)
        rows.append(_row(acc, ",".join(map(str, seen)) or NOT_RUN))
        index.append((task, "ours (mean over seeds)"))
        ref = reference_chain(task)
        if ref is not None:
            rows.append(_row(ref, "published"))
            index.append((task, "paper's chain (BERT-base, public SpikingBERT, Table II)"))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["task", "chain"]), columns=GAP_COLUMNS)


def describe_gaps(records: SeededRecords, tasks: Iterable[str] = ("sst2", "mrpc"),
                  seeds: Iterable[int] | None = None) -> str:
    """Markdown, one line per task: our gaps against the reference gaps, and the accuracies the
    reference gaps would give from our own teacher."""
    lines = []
    for task in tasks:
        acc, _ = _means(records, task, seeds)
        (g_fp, g_one), teacher = _gaps(acc), acc["teacher"]
        if g_fp is None or g_one is None:
            lines.append(f"- **{task_label(task)}**: not all three of our models have records.")
            continue
        head = (f"- **{task_label(task)}**: our students lose {g_fp:.2f} pt (full precision) and {g_one:.2f} pt "
                f"(1-bit) to their teacher")
        ref = reference_chain(task)
        if ref is None:
            lines.append(head + "; the sources give no reference chain for this task.")
            continue
        r_fp, r_one = _gaps(ref)
        lines.append(head + f"; the paper's chain loses {r_fp:.2f} and {r_one:.2f}. The paper's gaps applied "
                     f"to our teacher ({teacher:.2f} %) give {teacher - r_fp:.2f} % and {teacher - r_one:.2f} %, "
                     f"against ours {acc['spiking_fp']:.2f} % and {acc['baseline']:.2f} %.")
    return "\n".join(lines) or "No task."
