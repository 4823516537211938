"""Accuracy against ACs kept, every pruned model beside the paper's points (the findings page).

The headline's accuracy claim is measured where our two-stage model lands, which is a deeper cut
than the paper's. This puts each retrained model on one chart, accuracy change (against the
seed-0 baseline, :func:`stpcore.report.seeds.accuracy_change`) over ACs kept (mean over seeds),
with the paper's Table II points beside them, so a reader sees what our models lose at the
paper's share of ACs, not only at ours.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import pandas as pd
from matplotlib.figure import Figure

from . import stats
from .notes import paper_value, task_label
from .plots import _new_figure, _not_run, _themed
from .seeds import SeededRecords, _interval, _present, _values, accuracy_change
from .tables import NO_METRIC, NOT_RUN

#: The pruned models of Tables II-V that end in retraining or a learned threshold, and the
#: post-training temporal model (its retrained version's starting point).
TRADEOFF_STAGES = ("spatial_retrain", "temporal_pca", "temporal_retrain", "two_stage", "joint_retrain",
                   "random_mask", "baseline_adaptive", "adaptive_threshold")
#: Head-to-head claims of the paper between two pruned models, as (stage, other, the table whose
#: accuracies the paper's difference comes from). Table V: pruning with the adaptive threshold beats
#: the baseline with it (86.58 against 82.8); Table IV: sequential beats joint retraining.
PAIRS = (("adaptive_threshold", "baseline_adaptive", "table_v"), ("two_stage", "joint_retrain", "table_iv"))
COLUMNS = ["seeds", "ACs kept (%)", "Δ acc (pt)", "Δ low", "Δ high", "Δ basis", "paper ACs kept (%)",
           "paper Δ acc (pt)"]


def tradeoff_frame(records: SeededRecords, task: str, stages: Iterable[str] = TRADEOFF_STAGES,
                   seeds: Iterable[int] | None = None, n_boot: int = 10000, level: float = 0.95) -> pd.DataFrame:
    """One row per stage of ``stages`` that has records: the seeds found, mean ACs kept (%), the
    accuracy change with its interval and basis, and the paper's Table II point (ACs kept, its
    accuracy minus its baseline's; None where Table II has no such row). Index: stage."""
    p_base = paper_value("table_ii", task, "baseline", "accuracy")
    rows, index = [], []
    for stage in stages:
        recs = _present(records, task, stage, seeds)
        acs = _values(recs, "acs_fraction", 100.0)
        ch = accuracy_change(records, task, stage, seeds, n_boot, level)
        if not acs or ch is None:
            continue
        p_acs = paper_value("table_ii", task, stage, "acs_percent")
        p_acc = paper_value("table_ii", task, stage, "accuracy")
        rows.append([",".join(map(str, recs)), sum(acs) / len(acs), ch["diff"], ch["low"], ch["high"], ch["basis"],
                     p_acs, None if p_acc is None or p_base is None else p_acc - p_base])
        index.append(stage)
    return pd.DataFrame(rows, index=pd.Index(index, name="stage"), columns=COLUMNS)


@_themed
def plot_tradeoff(frames: Mapping[str, pd.DataFrame], tolerance: float = 1.0) -> Figure:
    """One panel per task of ``frames`` (:func:`tradeoff_frame`): our models as points with their
    accuracy-change intervals, labelled by stage (a stage named ``"<stage> (<variant>)"``, e.g.
    from :func:`stpcore.report.variants.relabel`, in green, labelled ``<stage>``, with the variant
    in the legend); the paper's Table II points as red squares; dotted lines at no change and at
    -``tolerance`` points (the headline's accuracy rule)."""
    fig, axes = _new_figure((5.5 * len(frames), 4.3), len(frames))
    for ax, (task, df) in zip(axes, frames.items()):
        if df.empty:
            _not_run(ax)
        legend, labels = {}, []
        for stage, r in df.sort_values("ACs kept (%)").iterrows():
            name, _, variant = stage.partition(" (")
            color = "C2" if variant else "C0"
            err = None if pd.isna(r["Δ low"]) else [[r["Δ acc (pt)"] - r["Δ low"]], [r["Δ high"] - r["Δ acc (pt)"]]]
            dots = ax.errorbar([r["ACs kept (%)"]], [r["Δ acc (pt)"]], yerr=err, fmt="o", color=color, ms=4, capsize=2)
            legend.setdefault(f"ours, {variant.rstrip(')')}" if variant else "ours", dots)
            labels.append((r["ACs kept (%)"], r["Δ acc (pt)"], name, color, 7))
        paper = df.dropna(subset=["paper ACs kept (%)", "paper Δ acc (pt)"])
        if not paper.empty:
            legend["paper (Table II)"], = ax.plot(paper["paper ACs kept (%)"], paper["paper Δ acc (pt)"], "s",
                                                  color="C3", ms=5)
            labels += [(r["paper ACs kept (%)"], r["paper Δ acc (pt)"], stage, "C3", 6) for stage, r in paper.iterrows()]
        if legend:
            ax.legend(legend.values(), legend.keys(), fontsize=7, loc="lower right")
        ax.axhline(0.0, color="0.3", lw=0.8, ls=":")
        ax.axhline(-tolerance, color="0.5", lw=0.8, ls="--")
        ax.set(xlim=(0, 102), xlabel="ACs kept (% of the unpruned model)",
               ylabel="dev accuracy - seed-0 baseline (pt)", title=task_label(task))
        place_labels(ax, labels)
    fig.tight_layout()
    return fig


#: Where :func:`place_labels` tries a label, in points from its point (right side first, then left).
LABEL_OFFSETS = [(4, dy) for dy in (3, -11, 10, -18, 17, -25, 24)] + [(-4, dy) for dy in (3, -11, 10, -18)]


def place_labels(ax, labels) -> None:
    """Annotate each ``(x, y, text, color, fontsize)`` of ``labels`` beside its point at the first
    offset of :data:`LABEL_OFFSETS` whose box (estimated from the text's length) overlaps no label
    placed before it (the last offset when all do); left-side offsets right-align the text."""
    to_px = ax.figure.dpi / 72.0
    placed = []
    for x, y, text, color, size in sorted(labels, key=lambda lab: (-lab[1], lab[0])):
        px, py = ax.transData.transform((x, y))
        w, h = 0.6 * size * len(text) * to_px, 1.2 * size * to_px
        for dx, dy in LABEL_OFFSETS:
            left = px + dx * to_px - (w if dx < 0 else 0.0)
            box = (left, py + dy * to_px, left + w, py + dy * to_px + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=size, color=color,
                    ha="right" if dx < 0 else "left")


def stage_difference(records: SeededRecords, task: str, stage: str, other: str, seeds: Iterable[int] | None = None,
                     n_boot: int = 10000, level: float = 0.95) -> dict | None:
    """Dev accuracy of ``stage`` minus ``other``'s, each pooled over its seeds found, paired over
    the dev examples (:func:`stats.pooled_pair_bootstrap_ci`); None unless both have records with
    per-example predictions."""
    vecs = {}
    for st in (other, stage):
        vs = [stats.correct_vector(r) for r in _present(records, task, st, seeds).values()]
        vecs[st] = [v for v in vs if v is not None]
    if not vecs[other] or not vecs[stage] or vecs[other][0].size != vecs[stage][0].size:
        return None
    return stats.pooled_pair_bootstrap_ci(vecs[other], vecs[stage], n_boot=n_boot, level=level)


def pair_table(records: SeededRecords, tasks: Iterable[str], pairs=PAIRS, seeds: Iterable[int] | None = None,
               n_boot: int = 10000, level: float = 0.95) -> pd.DataFrame:
    """Each pair of :data:`PAIRS` per task: the paper's difference (where its table has both
    accuracies for the task; a pair whose table is None has no paper counterpart), ours with its
    paired interval and the seeds used, and the plain verdict (:func:`stats.verdict`). Index
    ``(task, comparison)``."""
    rows, index = [], []
    for task in tasks:
        for stage, other, table in pairs:
            p_a, p_b = (None if table is None else paper_value(table, task, st, "accuracy") for st in (stage, other))
            d = stage_difference(records, task, stage, other, seeds, n_boot, level)
            ours = ([NOT_RUN, NO_METRIC, NO_METRIC, NOT_RUN] if d is None else
                    [round(d["diff"], 2), _interval(d), f"{d['seeds_b']} vs {d['seeds_a']} seeds", stats.verdict(d)])
            rows.append([NO_METRIC if None in (p_a, p_b) else round(p_a - p_b, 2), *ours])
            index.append((task, f"{stage} - {other}"))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["task", "comparison"]),
                        columns=["paper Δ (pt)", "ours Δ (pt)", "95% interval", "seeds", "verdict"])
