"""The held-out sweep behind a task's foundation schedule (the "Starting point" page).

A sweep lives in ``data/results/sweeps/<task>-schedule/``: ``choice.json`` (written on the GPU
box by ``python -m stpcore choose``: the variants, their profile overrides, the rule and the
winner) and one results root per variant; the ``default`` variant is the profile as it is,
whose records are the task's own under ``data/results``. Held-out accuracy decides; dev accuracy
is shown beside it only.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..runs.records import REPO_ROOT, load_record, record_path
from .foundation import SHORT_LABELS
from .stats import correct_vector, pooled_pair_bootstrap_ci, verdict
from .tables import NOT_RUN

SWEEPS_DIR = REPO_ROOT / "data" / "results" / "sweeps"
SWEPT_STAGES = ("spiking_fp", "baseline")


def load_schedule_sweep(task: str, profile: str = "paper", root: Path | None = None,
                        results: Path | None = None) -> dict | None:
    """``{"chosen", "rule", "rows"}`` (one row per variant, stage and seed: held-out and dev
    accuracy, the training accuracy of the last epoch, and the 0/1 dev correctness vector,
    None where the run did not finish), or None when ``task`` has no sweep."""
    folder = Path(root or SWEEPS_DIR) / f"{task}-schedule"
    if not (folder / "choice.json").is_file():
        return None
    choice = json.loads((folder / "choice.json").read_text())
    results = Path(results or REPO_ROOT / "data" / "results")
    rows = []
    for name, variant in choice["variants"].items():
        vroot = results if name == "default" else folder / name
        for stage in SWEPT_STAGES:
            for seed in choice["seeds"]:
                path = record_path(profile, task, stage, root=vroot, seed=seed)
                rec = load_record(path, profile, task, stage, seed) if path.is_file() else {}
                m = rec.get("metrics", {})
                rows.append({"variant": name, "overrides": variant["overrides"], "stage": stage,
                             "seed": seed, "config": rec.get("config", {}),
                             "heldout": m.get("heldout_accuracy"), "dev": m.get("dev_accuracy"),
                             "train": (m.get("history") or [{}])[-1].get("train_accuracy"),
                             "correct": correct_vector(rec)})
    return {"chosen": choice["chosen"], "rule": choice["rule"], "rows": pd.DataFrame(rows)}


def count_denominator(accuracies, most: int = 100_000) -> int | None:
    """The smallest number of examples n for which every accuracy (percent) is a whole count
    out of n, i.e. the size of the split they were measured on (None if no n <= ``most``)."""
    accs = [a for a in accuracies if a is not None and not math.isnan(a)]
    for n in range(1, most + 1):
        if all(abs(a * n / 100 - round(a * n / 100)) < 1e-6 for a in accs):
            return n
    return None


def schedule_sweep_table(sweep: dict) -> pd.DataFrame:
    """Per variant: the swept settings (one column each, as its records ran them), then per
    stage the mean held-out and dev accuracy and the last epoch's training accuracy over the
    seeds that finished (``not run`` where none did), and how many seeds that is. The variant
    held-out chose is marked "(chosen)" where the records use it (:func:`is_adopted`); where they
    do not, it is marked "(held-out's pick; not adopted)" and ``default`` "(used by the records)"."""
    rows, chosen = sweep["rows"], sweep["chosen"]
    keys = list(dict.fromkeys(k for o in rows.overrides for k in o))
    adopted = is_adopted(rows, chosen)
    out = []
    for name, part in rows.groupby("variant", sort=False):
        ran = {**next((c for c in part.config if c), {}), **part.overrides.iloc[0]}
        label = ((" (chosen)" if adopted else " (held-out's pick; not adopted)") if name == chosen
                 else " (used by the records)" if name == "default" and not adopted else "")
        row = {"variant": name + label,
               **{k: ran.get(k, "n/a") for k in keys}}
        for stage in SWEPT_STAGES:
            done = part[(part.stage == stage) & part.heldout.notna()]
            label = SHORT_LABELS[stage]
            row[f"{label}: held-out"] = round(done.heldout.mean(), 2) if len(done) else NOT_RUN
            row[f"{label}: dev"] = round(done.dev.mean(), 2) if len(done) else NOT_RUN
            row[f"{label}: train"] = round(done.train.mean(), 2) if len(done) else NOT_RUN
            row[f"{label}: seeds"] = len(done)
        out.append(row)
    return pd.DataFrame(out).set_index("variant")


def schedule_sweep_reading(sweep: dict) -> str:
    """One paragraph: which variant won and by how much on held-out, per stage, against the
    held-out mean's own sampling error (binomial, over the seeds' slices together; the slice
    size is read off the accuracies by :func:`count_denominator`)."""
    rows, chosen = sweep["rows"], sweep["chosen"]
    heldout_examples = count_denominator(rows.heldout.dropna().tolist())
    parts = [f"Rule: {sweep['rule']}. Chosen: **{chosen}**." if is_adopted(rows, chosen) else
             f"Rule: {sweep['rule']}. Held-out's pick: **{chosen}**, not adopted: every record here "
             f"(and every pruning stage) uses **default** (the last sentence says why)."]
    for stage in SWEPT_STAGES:
        done = rows[(rows.stage == stage) & rows.heldout.notna()]
        means = done.groupby("variant").heldout.mean()
        if len(means) < 2:
            continue
        seeds = done.groupby("variant").seed.count()
        best = means.idxmax()
        p, n = means[best] / 100, heldout_examples * int(seeds[best])
        se = 100 * math.sqrt(p * (1 - p) / n)
        spread = means.max() - means.min()
        verdict = "within" if spread <= 2 * se else "beyond"
        parts.append(f"{SHORT_LABELS[stage]}: held-out means {', '.join(f'{v} {a:.2f}' for v, a in means.items())}; "
                     f"the spread ({spread:.2f} points) is {verdict} twice the sampling error of a "
                     f"held-out mean over {n} examples ({se:.2f} points).")
        gap = (done.groupby("variant").train.mean() - means).dropna()
        if not gap.empty:
            parts.append(f"Training accuracy of the last epoch minus held-out accuracy: "
                         f"{', '.join(f'{v} {g:+.2f}' for v, g in gap.items())} points; a gap far "
                         f"beyond that sampling error means the model does better on its training "
                         f"examples than on held-out ones drawn like dev: it fits them without "
                         f"generalising, or they are easier than dev's (a gap that grows from one "
                         f"variant to another points to the former).")
    parts += _adoption(rows, chosen)
    missing = sorted(set(rows.variant) - set(rows[rows.stage == "baseline"].dropna(subset=["heldout"]).variant))
    if missing:
        parts.append(f"Variants without a 1-bit result (stopped before that stage): {', '.join(missing)}; "
                     f"they could not be chosen.")
    return " ".join(parts)


def is_adopted(rows: pd.DataFrame, chosen: str) -> bool:
    """Whether the task's own records (``default``) already ran the chosen variant's overrides,
    i.e. whether the profile adopted it and the pruning stages start from it (always for
    ``default``)."""
    if chosen == "default":
        return True
    base = rows[rows.stage == "baseline"]
    overrides = rows[rows.variant == chosen].overrides.iloc[0]
    ran = [c for c in base[base.variant == "default"].config if c]
    return bool(ran) and all(c.get(k) == v for c in ran for k, v in overrides.items())


def _adoption(rows: pd.DataFrame, chosen: str) -> list[str]:
    """Sentences on a chosen variant other than ``default``: its 1-bit dev accuracy against the
    default's (seeds pooled, paired bootstrap over the dev examples: reported, never used to
    choose), and whether the task's own records (``default``) already ran its overrides, i.e.
    whether the profile adopted it and the pruning stages start from it."""
    if chosen == "default":
        return []
    base = rows[rows.stage == "baseline"]
    vecs = {v: [c for c in base[base.variant == v].correct if c is not None] for v in ("default", chosen)}
    out = []
    if all(vecs.values()):
        ci = pooled_pair_bootstrap_ci(vecs["default"], vecs[chosen])
        out.append(f"On dev, {chosen}'s 1-bit accuracy minus the default's, seeds pooled: "
                   f"{ci['diff']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}] points (95 % paired "
                   f"bootstrap over {ci['n']} dev examples): {verdict(ci)}.")
    overrides = rows[rows.variant == chosen].overrides.iloc[0]
    adopted = is_adopted(rows, chosen)
    out.append(f"The profile {'has adopted' if adopted else 'has not adopted'} {chosen} "
               f"({', '.join(f'{k}={v}' for k, v in overrides.items())}): "
               + ("the task's records, and every pruning stage, start from it." if adopted else
                  "the task's records, the shipped checkpoints and every pruning stage start from "
                  "the default schedule, and adopting it means retraining both and rerunning "
                  "every pruning stage."))
    return out
