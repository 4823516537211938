"""The starting point over seeds: training-seed spread against the dev split's sampling noise,
the majority-class rate, and how held-out accuracy tracks dev accuracy across the epochs the
held-out slice chose between (the book's "Starting point" page).

Records come as ``{(task, stage, seed): record_or_None}``
(:func:`stpcore.report.seeds.collect_seeded`). Accuracies are in percent, differences in points.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..runs.validate import validate_notebook_params
from . import stats
from .stats import majority_rate, predicted_share
from .plots import _new_figure, _not_run, _themed
from .paper import task_label
from .seeds import _cell
from .summary import FOUNDATION_STAGES, STAGE_LABELS, paper_reference
from .tables import NO_METRIC, NOT_RUN

SeededRecords = Mapping[tuple[str, str, int], "dict | None"]


#: Short stage names for compact tables and figure titles.
SHORT_LABELS = {"teacher": "teacher", "spiking_fp": "full precision", "baseline": "1-bit"}
#: The history's ``phase`` values in words.
PHASE_LABELS = {"prediction": "prediction-layer KD", "labels": "fine-tuning on labels",
                "intermediate_kd": "intermediate-layer KD"}


def _acc(rec: dict | None) -> float | None:
    v = ((rec or {}).get("metrics") or {}).get("dev_accuracy")
    return None if v is None else float(v)


# ---------------------------------------------------------------------------- majority class
def _task_majority(records: SeededRecords, task: str) -> tuple[str, float] | None:
    """The majority class of ``task``'s dev split from the first of its records that carries labels."""
    found = [rec for (t, _, _), rec in sorted(records.items(), key=lambda kv: (kv[0][1], kv[0][2]))
             if t == task]
    return next((majority_rate(r) for r in found if majority_rate(r) is not None), None)


# ---------------------------------------------------------------------------- seeds vs sampling
def seed_accuracy_table(records: SeededRecords, tasks: Iterable[str], seeds: Iterable[int],
                        stages: Iterable[str] = FOUNDATION_STAGES) -> pd.DataFrame:
    """Dev accuracy per task, stage and seed; the mean over seeds with the seed spread (sample
    sd, and max - min); beside it the binomial sampling error of one accuracy on this dev split
    (at the mean), the dev split's majority-class rate (from the records' ``dev_labels``) and
    the paper's reference."""
    seeds = [int(s) for s in seeds]
    rows = []
    for task in tasks:
        major = _task_majority(records, task)
        for stage in stages:
            recs = {s: records.get((task, stage, s)) for s in seeds}
            accs = [a for a in (_acc(r) for r in recs.values()) if a is not None]
            ci = stats.mean_ci(accs) if accs else {"mean": None, "sd": None}
            n = next((int(r["metrics"]["dev_examples"]) for r in recs.values()
                      if r and (r.get("metrics") or {}).get("dev_examples")), None)
            row = {"task": task, "model": STAGE_LABELS[stage]}
            row.update({f"seed {s}": _cell(_acc(r)) if r else NOT_RUN for s, r in recs.items()})
            row.update({
                "mean": _cell(ci["mean"]),
                "seed sd (pt)": _cell(ci.get("sd")),
                "max - min (pt)": _cell(max(accs) - min(accs)) if len(accs) > 1 else NO_METRIC,
                "dev examples": n if n else NO_METRIC,
                "binomial SE (pt)": _cell(stats.sampling_error(ci["mean"], n)) if n and accs else NO_METRIC,
                "majority class (%)": _cell(major[1]) if major else NO_METRIC,
                "paper / reference": _cell(paper_reference(task, stage))})
            rows.append(row)
    return pd.DataFrame(rows).set_index(["task", "model"])


def seed_difference_table(records: SeededRecords, tasks: Iterable[str], pair: tuple[int, int] = (0, 1),
                          stages: Iterable[str] = FOUNDATION_STAGES, n_boot: int = 10000) -> pd.DataFrame:
    """``seed b - seed a`` dev accuracy (``pair = (a, b)``) per task and stage, with the paired
    bootstrap 95 % interval over the dev examples (both models scored on the same examples)
    and how many examples the two seeds' models disagree on; "n/a" where a record lacks
    per-example predictions. An interval that covers 0 means the two seeds differ by no more
    than dev sampling noise."""
    a, b = pair
    rows = []
    for task in tasks:
        for stage in stages:
            ra, rb = records.get((task, stage, a)), records.get((task, stage, b))
            row = {"task": task, "model": STAGE_LABELS[stage]}
            if ra is None or rb is None:
                rows.append({**row, f"seed {b} - seed {a} (pt)": NOT_RUN, "95 % interval (pt)": NOT_RUN,
                             "verdict": NOT_RUN, "disagreeing examples": NOT_RUN, "examples": NOT_RUN})
                continue
            va, vb = stats.correct_vector(ra), stats.correct_vector(rb)
            diff = _acc(rb) - _acc(ra)
            if va is None or vb is None or va.size != vb.size:
                rows.append({**row, f"seed {b} - seed {a} (pt)": _cell(diff),
                             "95 % interval (pt)": f"{NO_METRIC} (no per-example predictions)",
                             "verdict": NO_METRIC, "disagreeing examples": NO_METRIC, "examples": NO_METRIC})
                continue
            ci = stats.paired_bootstrap_ci(va, vb, n_boot=n_boot)
            pa, pb = ra["metrics"]["dev_predictions"], rb["metrics"]["dev_predictions"]
            rows.append({**row, f"seed {b} - seed {a} (pt)": _cell(ci["diff"]),
                         "95 % interval (pt)": f"[{ci['low']:+.2f}, {ci['high']:+.2f}]",
                         "verdict": stats.verdict(ci), "disagreeing examples": sum(x != y for x, y in zip(pa, pb)),
                         "examples": ci["n"]})
    return pd.DataFrame(rows).set_index(["task", "model"])


def majority_reading(records: SeededRecords, task: str, seeds: Iterable[int],
                     stages: Iterable[str] = FOUNDATION_STAGES, z: float = 2.0) -> str:
    """Markdown: per stage, its dev accuracies next to the majority-class rate of the dev split
    (computed from ``dev_labels``) and how often it predicts that class; a stage whose every
    seed lies within ``z`` binomial standard errors of that rate "has not learned the task
    beyond the majority class" (said plainly)."""
    major = _task_majority(records, task)
    if major is None:
        return f"**{task_label(task)}**: no record with per-example labels; the majority-class rate is unknown."
    label, rate = major
    lines = [f"**{task_label(task)}**: the majority class (label {label}) is **{rate:.2f} %** of the dev split."]
    for stage in stages:
        recs = {s: records.get((task, stage, s)) for s in seeds}
        recs = {s: r for s, r in recs.items() if r is not None and _acc(r) is not None}
        if not recs:
            lines.append(f"- {SHORT_LABELS[stage]}: {NOT_RUN}.")
            continue
        n = int(next(iter(recs.values()))["metrics"].get("dev_examples") or 0)
        se = stats.sampling_error(rate, n) if n else float("nan")
        accs = ", ".join(f"{_acc(r):.2f} (seed {s})" for s, r in recs.items())
        shares = [predicted_share(r, label) for r in recs.values()]
        share = (", predicting label " + label + " for " + " / ".join(f"{x:.0f} %" for x in shares)
                 + " of the examples") if all(x is not None for x in shares) else ""
        near = all(abs(_acc(r) - rate) <= z * se for r in recs.values())
        ref = paper_reference(task, stage)
        ref = f" The paper's: {ref:.2f}." if ref is not None else ""
        if near:
            verdict = (f"within {z:g} binomial SE ({z * se:.1f} pt) of the majority-class rate: "
                       f"**it has not learned the task beyond predicting the majority class**")
        else:
            lo, hi = (f(_acc(r) for r in recs.values()) - rate for f in (min, max))
            gap = f"{lo:+.2f} pt" if len(recs) == 1 else f"{lo:+.2f} to {hi:+.2f} pt"
            verdict = (f"{gap} from the majority-class rate (more than {z:g} binomial SE, "
                       f"{z * se:.1f} pt): it has learned something")
        lines.append(f"- {STAGE_LABELS[stage]}: {accs}{share}; {verdict}.{ref}")
    return "\n".join(lines)


def seed_noise_reading(records: SeededRecords, task: str, stage: str = "baseline",
                       pair: tuple[int, int] = (0, 1), n_boot: int = 10000) -> str:
    """Markdown: one stage's two-seed gap next to the dev split's sampling noise (the binomial SE
    of one accuracy, and the paired bootstrap interval of the gap over the same examples)."""
    a, b = pair
    ra, rb = records.get((task, stage, a)), records.get((task, stage, b))
    name = f"{task_label(task)}, {SHORT_LABELS.get(stage, stage)}"
    if ra is None or rb is None or _acc(ra) is None or _acc(rb) is None:
        return f"**{name}**: seeds {a} and {b} are not both recorded; no seed spread to show."
    n = int(ra["metrics"].get("dev_examples") or 0)
    mean = (_acc(ra) + _acc(rb)) / 2
    se = stats.sampling_error(mean, n) if n else float("nan")
    gap = _acc(rb) - _acc(ra)
    text = (f"**{name}**: seed {b} - seed {a} = {gap:+.2f} pt; one accuracy on these {n} dev "
            f"examples has a binomial SE of {se:.2f} pt, so the gap is {abs(gap) / se:.1f} SE")
    va, vb = stats.correct_vector(ra), stats.correct_vector(rb)
    if va is None or vb is None or va.size != vb.size:
        return text + " (no per-example predictions: no paired interval)."
    ci = stats.paired_bootstrap_ci(va, vb, n_boot=n_boot)
    word = {stats.SAME: "covers 0: the two seeds' models are not distinguishable on this dev split",
            stats.BETTER: "excludes 0: the two models differ on this dev split beyond resampling its examples",
            stats.WORSE: "excludes 0: the two models differ on this dev split beyond resampling its examples"}
    return text + (f". The paired bootstrap 95 % interval over the same examples, "
                   f"[{ci['low']:+.2f}, {ci['high']:+.2f}], {word[stats.verdict(ci)]}.")


# ---------------------------------------------------------------------------- issue 14's targets
#: Issue 14's targets, NOT the paper's numbers; the dev accuracy (%) that the mean over the
#: training seeds :data:`TARGET_SEEDS` of ``(task, stage)`` must reach (>=).
ISSUE_14_TARGETS = {("sst2", "spiking_fp"): 85.0, ("sst2", "baseline"): 84.0, ("mrpc", "baseline"): 73.0}
#: The training seeds whose mean dev accuracy the targets are about.
TARGET_SEEDS = (0, 1)
MET, NOT_MET = "met", "not met"


def _check_targets_input(targets, seeds) -> tuple[dict, list[int]]:
    if not isinstance(targets, Mapping) or not targets:
        raise ValueError(f"`targets` must be a non-empty mapping {{(task, stage): accuracy}}; got {targets!r}")
    for key, value in targets.items():
        if not (isinstance(key, tuple) and len(key) == 2 and key[1] in STAGE_LABELS):
            raise ValueError(f"`targets` keys must be (task, stage) with stage one of {list(STAGE_LABELS)}; got {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 100.0:
            raise ValueError(f"`targets` values must be accuracies in [0, 100] (%); got {value!r} for {key!r}")
    if isinstance(seeds, str) or not isinstance(seeds, Iterable):
        raise ValueError(f"`seeds` must be a list of distinct ints >= 0; got {seeds!r}")
    return dict(targets), validate_notebook_params(seeds=list(seeds))["seeds"]


def _target_rows(records, tasks, seeds, targets, level) -> list[dict]:
    """Per target of a task in ``tasks``: its raw numbers and verdict (see :func:`check_targets`)."""
    targets, seeds = _check_targets_input(targets, seeds)
    if isinstance(tasks, str):
        raise ValueError(f"`tasks` must be a list of task names (or None for all); got the string {tasks!r}")
    tasks = None if tasks is None else list(tasks)
    out = []
    for (task, stage), target in targets.items():
        if tasks is not None and task not in tasks:
            continue
        found = {x: a for x, a in ((x, _acc(records.get((task, stage, x)))) for x in seeds) if a is not None}
        ci = stats.mean_ci(list(found.values()), level)
        missing = [x for x in seeds if x not in found]
        if not found:
            verdict = NOT_RUN
        elif missing:
            verdict = f"{NO_METRIC} (seed {', '.join(map(str, missing))} not run)"
        else:
            verdict = MET if ci["mean"] >= target - 1e-9 else NOT_MET
        out.append({"task": task, "stage": stage, "target": float(target), "seeds": list(found), **ci,
                    "verdict": verdict})
    return out


def check_targets(records: SeededRecords, tasks: Iterable[str] | None = None, seeds: Iterable[int] = TARGET_SEEDS,
                  targets: Mapping[tuple[str, str], float] = ISSUE_14_TARGETS, level: float = 0.95) -> pd.DataFrame:
    """Each target of ``targets`` (of ``tasks``, all by default): the mean dev accuracy over
    ``seeds`` with its Student t interval over the seeds (:func:`stats.mean_ci`; with two seeds
    the t quantile is 12.7, so the interval is wide), the gap to the target, and the verdict on
    the mean: "met" (mean >= target), "not met", "not run" without records, or "n/a" naming
    the seeds not run."""
    rows = _target_rows(records, tasks, seeds, targets, level)
    cols = ["target (dev acc, %)", "seeds found", "mean (%)", f"{100 * level:g} % interval (t over seeds)",
            "mean - target (pt)", "verdict"]
    return pd.DataFrame(
        [[f">= {r['target']:.1f}", ", ".join(map(str, r["seeds"])) or NOT_RUN, _cell(r["mean"]),
          f"[{r['low']:.2f}, {r['high']:.2f}]" if r["low"] is not None else NO_METRIC,
          _cell(None if r["mean"] is None else r["mean"] - r["target"]), r["verdict"]] for r in rows],
        index=pd.MultiIndex.from_tuples([(r["task"], SHORT_LABELS[r["stage"]]) for r in rows],
                                        names=["task", "model"]), columns=cols)


def describe_targets(records: SeededRecords, tasks: Iterable[str] | None = None, seeds: Iterable[int] = TARGET_SEEDS,
                     targets: Mapping[tuple[str, str], float] = ISSUE_14_TARGETS, level: float = 0.95) -> str:
    """Markdown, one line per target of :func:`check_targets`: the mean against the target, the
    verdict, and where the seed interval lies."""
    lines = []
    for r in _target_rows(records, tasks, seeds, targets, level):
        head = f"- **{task_label(r['task'])}, {SHORT_LABELS[r['stage']]}** (target >= {r['target']:.1f}): "
        if r["verdict"] not in (MET, NOT_MET):
            lines.append(head + f"**{r['verdict']}**: no mean over all the target's seeds.")
            continue
        where = "" if r["low"] is None else f" (its seed interval [{r['low']:.2f}, {r['high']:.2f}] " + (
            "also lies above the target)" if r["low"] >= r["target"] else
            "also lies below the target)" if r["high"] < r["target"] else "covers the target)")
        lines.append(head + f"mean {r['mean']:.2f} over seeds {', '.join(map(str, r['seeds']))}, "
                     f"{r['mean'] - r['target']:+.2f} pt from the target: **{r['verdict']}**{where}.")
    return "\n".join(lines) or "No target concerns these tasks."


# ---------------------------------------------------------------------------- selection
def selection_rows(record: dict | None) -> list[dict]:
    """The history rows the held-out slice chose between (those with both ``heldout_accuracy``
    and ``dev_accuracy``); for a staged history (``phase``), the last phase only (the earlier
    ones keep their last epoch, nothing is chosen there)."""
    hist = ((record or {}).get("metrics") or {}).get("history") or []
    rows = [r for r in hist if r.get("heldout_accuracy") is not None and r.get("dev_accuracy") is not None]
    if rows and "phase" in rows[-1]:
        rows = [r for r in rows if r.get("phase") == rows[-1]["phase"]]
    return rows


def selection_summary(record: dict | None) -> dict | None:
    """Held-out selection against dev: the epoch held-out chose (the first best, as
    :func:`stpcore.train.loop.fit` keeps it) and its dev accuracy, the epoch dev would have chosen,
    the accuracy lost by choosing on held-out, and the Pearson correlation of the two across the
    epochs (None with fewer than 3 epochs or when either is constant). None when no row has both
    accuracies."""
    rows = selection_rows(record)
    if not rows:
        return None
    held = np.array([r["heldout_accuracy"] for r in rows], float)
    dev = np.array([r["dev_accuracy"] for r in rows], float)
    i, j = int(np.argmax(held)), int(np.argmax(dev))
    corr = (None if len(rows) < 3 or held.std() == 0 or dev.std() == 0
            else float(np.corrcoef(held, dev)[0, 1]))
    final = _acc(record)
    return {"phase": rows[-1].get("phase", "fine-tuning"), "epochs": len(rows),
            "held-out chose epoch": int(rows[i]["epoch"]), "its dev acc": float(dev[i]),
            "dev would choose epoch": int(rows[j]["epoch"]), "best dev acc": float(dev[j]),
            "lost by held-out choice (pt)": float(dev[j] - dev[i]),
            "held-out range (pt)": float(held.max() - held.min()),
            "dev range (pt)": float(dev.max() - dev.min()), "correlation": corr,
            "record's dev acc matches": None if final is None else bool(abs(final - dev[i]) < 1e-6)}


def selection_entries(records: SeededRecords, tasks: Iterable[str], seeds: Iterable[int],
                      stages: Iterable[str] = FOUNDATION_STAGES) -> dict[tuple[str, str, int], dict]:
    """``{(task, stage, seed): record}`` of the records whose history can be tested."""
    return {(t, st, s): records.get((t, st, s)) for t in tasks for st in stages for s in seeds
            if selection_rows(records.get((t, st, s)))}


def _check_entries(entries: Mapping[tuple, dict]) -> Mapping[tuple, dict]:
    """``entries`` as :func:`selection_entries` makes them, or a ValueError naming it."""
    bad = [k for k, rec in entries.items() if not (isinstance(k, tuple) and len(k) == 3) or not selection_rows(rec)]
    if bad:
        raise ValueError(f"`entries` must map (task, stage, seed) to a record whose history logs held-out and "
                         f"dev accuracy (see selection_entries); got {bad[:3]}")
    return entries


def selection_table(entries: Mapping[tuple, dict]) -> pd.DataFrame:
    """:func:`selection_summary` per ``(task, stage, seed)`` entry."""
    _check_entries(entries)
    rows = []
    for (task, stage, seed), rec in entries.items():
        summ = selection_summary(rec)
        rows.append({"task": task, "stage": SHORT_LABELS.get(stage, stage), "seed": seed,
                     **{k: (_cell(v) if isinstance(v, float) or v is None else v) for k, v in summ.items()}})
    if not rows:
        return pd.DataFrame({"note": ["no record logs dev accuracy per epoch"]})
    return pd.DataFrame(rows).set_index(["task", "stage", "seed"])


@_themed
def plot_selection(entries: Mapping[tuple, dict], ncols: int = 4):
    """Held-out (solid) and dev (dashed) accuracy per epoch of the selected phase, one panel per
    entry; a circle marks the epoch held-out chose, a square the one dev would have chosen, a
    dotted line the dev split's majority-class rate (where the record has labels and the rate
    lies near the curves)."""
    items = list(_check_entries(entries).items())
    nrows = max(1, math.ceil(len(items) / ncols))
    fig, _ = _new_figure((3.0 * ncols, 2.6 * nrows), ncols=0)
    axes = [fig.add_subplot(nrows, ncols, k + 1) for k in range(max(1, len(items)))]
    if not items:
        _not_run(axes[0], "no record logs dev accuracy per epoch")
        return fig
    for ax, ((task, stage, seed), rec) in zip(axes, items):
        rows, summ = selection_rows(rec), selection_summary(rec)
        ep = [r["epoch"] for r in rows]
        held, dev = [r["heldout_accuracy"] for r in rows], [r["dev_accuracy"] for r in rows]
        ax.plot(ep, held, "o-", color="C0", ms=3, label="held-out")
        ax.plot(ep, dev, "s--", color="C1", ms=3, label="dev")
        i = ep.index(summ["held-out chose epoch"])
        j = ep.index(summ["dev would choose epoch"])
        ax.plot(ep[i], dev[i], "o", mfc="none", mec="k", ms=10)
        ax.plot(ep[j], dev[j], "s", mfc="none", mec="C3", ms=10)
        major = majority_rate(rec)
        if major is not None and major[1] > min(held + dev) - 5.0:    # not when it would squash the curves
            ax.axhline(major[1], color="0.5", ls=":", lw=1)
        ax.set_title(f"{task} {SHORT_LABELS.get(stage, stage)}, seed {seed}", fontsize=9)
        one = "\n(the only one: nothing to choose)" if len(ep) == 1 else ""
        ax.set_xlabel(f"epoch of {PHASE_LABELS.get(summ['phase'], summ['phase'])}{one}", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if one:
            ax.set_xlim(ep[0] - 1, ep[0] + 1)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("accuracy (%)", fontsize=8)
    axes[0].plot([], [], "o", mfc="none", mec="k", label="held-out's choice")
    axes[0].plot([], [], "s", mfc="none", mec="C3", label="dev's choice")
    axes[0].plot([], [], ":", color="0.5", label="majority class (dev)")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return fig
