"""Retraining under the AC penalty: the lambda sweep and the mask flips of retraining records.

Whether the penalty (Eq. 12) can prune at all depends on how far a mask logit can travel
during the penalty phase (:func:`stpcore.prune.retrain.max_logit_travel`), which this table
shows beside the flips each record counted.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
from matplotlib.figure import Figure

from ..prune.retrain import RetrainConfig, max_logit_travel
from .notes import paper_value, task_label
from .plots import _new_figure, _not_run, _themed


def _flips(m: dict) -> int | str:
    f = m.get("mask_flips")
    return "n/a" if f is None else sum(f.values())


def lambda_sweep_table(record: dict | None) -> pd.DataFrame | None:
    """One row per lambda multiplier of the ``lambda_sweep`` stage."""
    if record is None:
        return None
    rows = [{"lambda / Table I": p["multiplier"], "lambda": p["lambda"],
             "masks flipped": _flips(p), "ACs kept (%)": round(100 * p["acs_fraction"], 2),
             "dev accuracy": round(p["dev_accuracy"], 2),
             "held-out accuracy": round(p["heldout_accuracy"], 2)}
            for p in record["metrics"]["points"]]
    return pd.DataFrame(rows).set_index("lambda / Table I")


def travel_table(records: Mapping[str, dict | None]) -> pd.DataFrame:
    """Per retraining record: penalty steps, mask_lr, the logit travel they allow against
    ``mask_init``, the penalty scale, and the mask flips counted."""
    rows = []
    for label, rec in records.items():
        if rec is None:
            rows.append({"run": label, "masks flipped": "not run"})
            continue
        m, c = rec["metrics"], rec["config"]
        steps = m.get("penalty_steps")
        rows.append({"run": label, "mask_lr": c["mask_lr"], "penalty steps": steps,
                     "max logit travel": None if steps is None else
                     round(max_logit_travel(c["mask_lr"], steps), 2),
                     "logit start": RetrainConfig.mask_init, "penalty scale": m.get("penalty_scale"),
                     "masks flipped": _flips(m),
                     "ACs kept (%)": round(100 * m["acs_fraction"], 2),
                     "dev accuracy": round(m["dev_accuracy"], 2)})
    return pd.DataFrame(rows).set_index("run")


@_themed
def plot_lambda_sweep(sweeps: Mapping[str, dict | None], baselines: Mapping[str, dict | None],
                      archived: Mapping[str, dict | None] | None = None,
                      tasks: tuple[str, ...] = ("sst2", "mrpc")) -> Figure:
    """Accuracy change against ACs kept along the lambda sweep, one panel per task.

    ``sweeps`` / ``archived``: ``{task: lambda_sweep record}`` (the current one, and an older one
    drawn grey and dashed); ``baselines``: ``{task: baseline record}``, the reference of the
    change. The paper's spatial-retraining point (Table II: its ACs kept and its accuracy minus
    its baseline's) is the red square; each of our points is labelled with its multiple of
    Table I's lambda."""
    archived = archived or {}
    fig, axes = _new_figure((5.0 * len(tasks), 4.0), len(tasks))
    for ax, task in zip(axes, tasks):
        base = baselines.get(task)
        drawn = False
        for rec, style, label, annotate in (
                (archived.get(task), dict(color="0.55", ls="--", marker="x"), "archived (mask_lr {lr})", False),
                (sweeps.get(task), dict(color="C0", ls="-", marker="o"), "ours (mask_lr {lr})", True)):
            if rec is None or base is None:
                continue
            ref = base["metrics"]["dev_accuracy"]
            pts = sorted(rec["metrics"]["points"], key=lambda p: p["multiplier"])
            xs = [100 * p["acs_fraction"] for p in pts]
            ys = [p["dev_accuracy"] - ref for p in pts]
            ax.plot(xs, ys, label=label.format(lr=rec["config"]["mask_lr"]), **style)
            if annotate:
                for p, x, y in zip(pts, xs, ys):
                    ax.annotate(f"{p['multiplier']:g}", (x, y), textcoords="offset points",
                                xytext=(4, 4), fontsize=7)
            drawn = True
        p_acs = paper_value("table_ii", task, "spatial_retrain", "acs_percent")
        p_acc = paper_value("table_ii", task, "spatial_retrain", "accuracy")
        p_base = paper_value("table_ii", task, "baseline", "accuracy")
        if None not in (p_acs, p_acc, p_base):
            ax.plot([p_acs], [p_acc - p_base], "s", color="C3", label="paper, spatial retraining")
        if not drawn:
            _not_run(ax)
        ax.axhline(0.0, color="0.3", lw=0.8, ls=":")
        ax.set(xlim=(0, 102), xlabel="ACs kept (% of the unpruned model)",
               ylabel="dev accuracy - baseline (pt)", title=task_label(task))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
