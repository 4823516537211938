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

FLOOR = -10.0   # accuracy change (pt) below which the lambda-sweep plot draws a point at the floor


def _paper_point(task: str) -> tuple[float, float] | None:
    """The paper's spatial-retraining point of Table II: (ACs kept in %, its accuracy minus its
    baseline's), or None where the paper has no such row for ``task``."""
    acs = paper_value("table_ii", task, "spatial_retrain", "acs_percent")
    acc = paper_value("table_ii", task, "spatial_retrain", "accuracy")
    base = paper_value("table_ii", task, "baseline", "accuracy")
    return None if None in (acs, acc, base) else (acs, acc - base)


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


def lambda_sweep_reading(sweep: dict | None, baseline: dict | None, task: str) -> str:
    """One sentence per task: what Table I's lambda keeps and loses, the sweep's points on either
    side of the paper's spatial-retraining share of ACs (Table II), and the no-penalty point.
    Accuracy change is dev accuracy minus the seed-0 baseline's; one seed, so a change smaller
    than the dev split's sampling error is not a finding."""
    label = task_label(task)
    if sweep is None or baseline is None:
        return f"{label}: lambda sweep {'not run' if sweep is None else 'without a baseline record'}."
    ref = baseline["metrics"]["dev_accuracy"]
    pts = sorted(sweep["metrics"]["points"], key=lambda p: p["multiplier"])

    def show(p):
        return f"x{p['multiplier']:g} ({100 * p['acs_fraction']:.2f} %, {p['dev_accuracy'] - ref:+.2f} pt)"
    parts = [f"{label}:"]
    table_i = next((p for p in pts if p["multiplier"] == 1.0), None)
    if table_i is not None:
        parts.append(f"Table I's lambda keeps {100 * table_i['acs_fraction']:.2f} % of the ACs at "
                     f"{table_i['dev_accuracy'] - ref:+.2f} pt.")
    paper = _paper_point(task)
    if paper is not None:
        p_acs, p_change = paper
        above = [p for p in pts if 100 * p["acs_fraction"] >= p_acs]
        below = [p for p in pts if 100 * p["acs_fraction"] < p_acs]
        near = [show(min(above, key=lambda p: p["acs_fraction"]))] if above else []
        near += [show(max(below, key=lambda p: p["acs_fraction"]))] if below else []
        parts.append(f"The paper's spatial retraining keeps {p_acs:g} % at {p_change:+.2f} pt; "
                     f"our points on either side of it: {' and '.join(near)}.")
    zero = next((p for p in pts if p["multiplier"] == 0.0), None)
    if zero is not None:
        parts.append(f"Without the penalty (x0) retraining keeps {100 * zero['acs_fraction']:.2f} % "
                     f"({zero['dev_accuracy'] - ref:+.2f} pt).")
    return " ".join(parts)


def x1_against_retrain(sweep: dict | None, retrain: dict | None, task: str) -> str:
    """One sentence: the sweep's x1 point (Table I's lambda) is a run of its own, beside the
    ``spatial_retrain`` record of the same setting: ACs kept, masks flipped and dev accuracy of
    both, and whether they started from the same post-training model (the upstream digest)."""
    label = task_label(task)
    x1 = None if sweep is None else next(
        (p for p in sweep["metrics"]["points"] if p["multiplier"] == 1.0), None)
    if x1 is None or retrain is None:
        return (f"{label}: no x1 point to set beside `spatial_retrain`." if x1 is None else
                f"{label}: `spatial_retrain` not run, so the x1 point stands alone.")
    m, seed = retrain["metrics"], retrain["provenance"].get("seed", 0)

    def upstream(r):
        return (r["provenance"].get("upstream") or {}).get("spatial_fisher_asr", {}).get("checkpoint_sha256")
    a, b = upstream(sweep), upstream(retrain)
    start = (f"the same post-training model ({a[:8]})" if a is not None and a == b
             else "post-training models of different digests" if a and b else "a post-training model")
    pair = (f"ACs kept {100 * x1['acs_fraction']:.2f} % against {100 * m['acs_fraction']:.2f} %, "
            f"masks flipped {_flips(x1)} against {_flips(m)}, dev accuracy "
            f"{x1['dev_accuracy']:.2f} against {m['dev_accuracy']:.2f}")
    same = (x1["acs_fraction"] == m["acs_fraction"] and _flips(x1) == _flips(m)
            and x1["dev_accuracy"] == m["dev_accuracy"])
    tail = ("; they agree" if same else
            "; in PyTorch's default mode two runs need not agree (the deviations page, "
            "*A rerun of the same retraining*)")
    return (f"{label}: the sweep's x1 point is a separate run from the `spatial_retrain` "
            f"seed-{seed} record, from {start}: {pair}{tail}.")


def travel_table(records: Mapping[tuple[str, str], dict | None]) -> pd.DataFrame:
    """Per retraining record, keyed ``(task, run label)``: penalty steps, mask_lr, the logit
    travel they allow against ``mask_init`` (the record's ``max_logit_travel``, else computed from
    its mask_lr and steps), the penalty scale, and the mask flips counted."""
    rows = []
    for (task, label), rec in records.items():
        if rec is None:
            rows.append({"task": task_label(task), "run": label, "masks flipped": "not run"})
            continue
        m, c = rec["metrics"], rec["config"]
        steps = m.get("penalty_steps")
        travel = m.get("max_logit_travel")
        if travel is None and steps is not None:
            travel = max_logit_travel(c["mask_lr"], steps)
        rows.append({"task": task_label(rec["task"]), "run": label, "mask_lr": c["mask_lr"],
                     "penalty steps": steps,
                     "max logit travel": None if travel is None else round(travel, 2),
                     "logit start": RetrainConfig.mask_init, "penalty scale": m.get("penalty_scale"),
                     "masks flipped": _flips(m),
                     "ACs kept (%)": round(100 * m["acs_fraction"], 2),
                     "dev accuracy": round(m["dev_accuracy"], 2)})
    return pd.DataFrame(rows).set_index(["task", "run"])


def travel_reading(table: pd.DataFrame) -> str:
    """One clause per (task, mask_lr) of :func:`travel_table`: penalty steps, the travel they
    allow, and the masks flipped over its runs, so the prose under the table restates it."""
    done = table[table["masks flipped"] != "not run"].reset_index()
    if done.empty:
        return "No retraining record to read."
    parts = []
    for (task, lr), g in done.groupby(["task", "mask_lr"], sort=False):
        steps = sorted(set(g["penalty steps"].dropna().astype(int)))
        travel = sorted(set(g["max logit travel"].dropna()))
        flips = [int(f) for f in g["masks flipped"] if f != "n/a"]
        flipped = ("no count of" if not flips else f"{min(flips)}" if min(flips) == max(flips)
                   else f"{min(flips)} to {max(flips)}")
        parts.append(f"{task} at `mask_lr` {lr:g}: {', '.join(map(str, steps)) or 'n/a'} penalty "
                     f"steps, at most {', '.join(f'{t:g}' for t in travel) or 'n/a'} of travel, "
                     f"{flipped} masks flipped over {len(g)} run{'s' * (len(g) > 1)}")
    return "; ".join(parts) + "."


@_themed
def plot_lambda_sweep(sweeps: Mapping[str, dict | None], baselines: Mapping[str, dict | None],
                      archived: Mapping[str, dict | None] | None = None,
                      tasks: tuple[str, ...] = ("sst2", "mrpc")) -> Figure:
    """Accuracy change against ACs kept along the lambda sweep, one panel per task.

    ``sweeps`` / ``archived``: ``{task: lambda_sweep record}`` (the current one, and an older one
    drawn grey and dashed); ``baselines``: ``{task: baseline record}``, the reference of the
    change. The paper's spatial-retraining point (Table II: its ACs kept and its accuracy minus
    its baseline's) is the red square; each of our points is labelled with its multiple of
    Table I's lambda; a change below ``FLOOR`` (a collapsed model) is drawn at the floor and
    labelled with its value, so that it does not flatten the points near the paper's."""
    archived = archived or {}
    fig, axes = _new_figure((5.0 * len(tasks), 4.0), len(tasks))
    for ax, task in zip(axes, tasks):
        base = baselines.get(task)
        drawn = floored = False
        for rec, style, label, annotate in (
                (archived.get(task), dict(color="0.55", ls="--", marker="x"), "archived (mask_lr {lr})", False),
                (sweeps.get(task), dict(color="C0", ls="-", marker="o"), "ours (mask_lr {lr})", True)):
            if rec is None or base is None:
                continue
            ref = base["metrics"]["dev_accuracy"]
            pts = sorted(rec["metrics"]["points"], key=lambda p: p["multiplier"])
            xs = [100 * p["acs_fraction"] for p in pts]
            ys = [p["dev_accuracy"] - ref for p in pts]
            shown = [max(y, FLOOR) for y in ys]         # a collapsed model: at the floor, labelled
            ax.plot(xs, shown, label=label.format(lr=rec["config"]["mask_lr"]), **style)
            if annotate:
                for i, (p, x, y, at) in enumerate(zip(pts, xs, ys, shown)):
                    text = f"{p['multiplier']:g}" + (f" ({y:+.1f})" if y < FLOOR else "")
                    ax.annotate(text, (x, at), textcoords="offset points",
                                xytext=(4, 4 if i % 2 == 0 else -10), fontsize=7)   # neighbours apart
            floored |= min(ys) < FLOOR
            drawn = True
        paper = _paper_point(task)
        if paper is not None:
            ax.plot([paper[0]], [paper[1]], "s", color="C3", label="paper, spatial retraining")
        if not drawn:
            _not_run(ax)
        ax.axhline(0.0, color="0.3", lw=0.8, ls=":")
        if floored:
            ax.set_ylim(bottom=FLOOR - 1)
        ax.set(xlim=(0, 102), xlabel="ACs kept (% of the unpruned model)",
               ylabel="dev accuracy - baseline (pt)", title=task_label(task))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
