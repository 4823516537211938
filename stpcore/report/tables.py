"""Tables that put OUR numbers beside the PAPER's, with the difference.

Every builder takes records (see :mod:`stpcore.runs.records`) as a mapping
``{(task, stage): record_or_None}`` or as a list of record dicts, and returns a
:class:`pandas.DataFrame`. The paper's numbers come from :func:`stpcore.report.paper.load_paper_results`.

Conventions:

* a stage without a record shows :data:`NOT_RUN` (``"not run"``) in the "ours" and
  difference cells; no number is ever made up for it;
* a record that lacks the metric shows :data:`NO_METRIC` (``"n/a"``);
* the difference is ``ours - paper`` (in the table's unit, e.g. accuracy points).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from .paper import PAPER_TASKS, load_paper_results, task_label

NOT_RUN = "not run"
NO_METRIC = "n/a"

#: The stages each artifact needs, in the order of the paper's rows.
TABLE_STAGES: dict[str, tuple[str, ...]] = {
    "table_ii": ("baseline", "spatial_fisher", "spatial_fisher_asr_neuron", "spatial_fisher_asr_attn",
                 "spatial_fisher_asr", "spatial_retrain", "temporal_pca", "temporal_retrain", "two_stage"),
    "table_iii": ("baseline", "two_stage", "adaptive_threshold"),
    "table_iv": ("baseline", "spatial_retrain", "temporal_retrain", "joint_retrain", "two_stage"),
    "table_v": ("baseline", "baseline_adaptive", "two_stage", "adaptive_threshold"),
    "fig_3": ("activity_ablation",),
    "fig_4": ("budget_sweep", "base_sweep"),
    "fig_5": ("random_mask", "spatial_retrain", "spatial_fisher_asr"),
}

#: Table I rows, as keys of :func:`stpcore.runs.profiles.hyperparameters` (-> the paper's row label).
TABLE_I_KEYS = ("t_conv", "initial_vth", "ac_penalty_lambda", "pca_variance", "train_batch_size",
                "eval_batch_size", "learning_rate", "ac_budget", "pca_base", "activity_eta")


# ---------------------------------------------------------------------------- helpers
def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_missing(value: Any, digits: int | None = 2, missing: str = NOT_RUN) -> Any:
    """A table cell: ``missing`` (default ``"not run"``) for None/NaN, strings unchanged,
    numbers rounded to ``digits`` (``None``: not rounded)."""
    if _is_missing(value):
        return missing
    if isinstance(value, str) or isinstance(value, bool):
        return value
    value = float(value)
    return value if digits is None else round(value, digits)


def as_record_map(records: Mapping | Iterable[dict] | None) -> dict[tuple[str, str], dict | None]:
    """Normalise records to ``{(task, stage): record_or_None}``.

    Accepts such a mapping already, or an iterable of record dicts (keyed by their
    ``task`` and ``stage`` fields), or None (no records).
    """
    if records is None:
        return {}
    if isinstance(records, Mapping):
        out = {}
        for key, rec in records.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise TypeError(f"record keys must be (task, stage) tuples, got {key!r}")
            out[(str(key[0]), str(key[1]))] = rec
        return out
    return {(rec["task"], rec["stage"]): rec for rec in records if rec is not None}


def get_metric(record: dict | None, key: str, scale: float = 1.0) -> Any:
    """A metric of a record (times ``scale``); None when there is no record, NO_METRIC when the
    record lacks the key."""
    if record is None:
        return None
    value = record.get("metrics", {}).get(key)
    if _is_missing(value):
        return NO_METRIC
    return float(value) * scale


def difference(ours: Any, paper: Any, digits: int | None = 2) -> Any:
    """``ours - paper`` rounded to ``digits``; passes NOT_RUN / NO_METRIC through."""
    if _is_missing(ours):
        return NOT_RUN
    if isinstance(ours, str):
        return ours
    if _is_missing(paper):
        return NO_METRIC
    d = float(ours) - float(paper)
    if math.isclose(float(ours), float(paper), rel_tol=1e-9, abs_tol=0.0):
        d = 0.0
    return d if digits is None else round(d, digits)


def _g(value: Any, missing: str) -> str:
    """Table I cell: a number in ``%g`` form (``1e-12``, ``0.85``, ``140``) or a string as is."""
    if _is_missing(value):
        return missing
    if isinstance(value, (str, bool)):
        return str(value)
    return f"{float(value):g}"


def _triple(ours: Any, paper: Any, digits: int | None) -> list:
    return [fmt_missing(paper, digits, NO_METRIC), fmt_missing(ours, digits), difference(ours, paper, digits)]


def collect_records(tasks: Iterable[str], stages: Iterable[str], profile: str = "smoke", seed: int = 0,
                    recompute: bool = False,
                    getter: Callable[..., dict | None] | None = None) -> dict[tuple[str, str], dict | None]:
    """``{(task, stage): record_or_None}`` from :func:`stpcore.runs.runner.get_record`.

    For the ``paper`` profile a stage that was never run gives None (shown as "not run");
    for ``smoke`` (or ``recompute=True``) the pipeline runs what is missing.
    """
    if getter is None:
        from ..runs.runner import get_record as getter  # imported late: heavy, and written elsewhere
    return {(task, stage): getter(task, stage, profile=profile, seed=seed, recompute=recompute)
            for task in tasks for stage in stages}


# ---------------------------------------------------------------------------- Table I
def table_i(profile_cfgs: Mapping[str, Mapping | None], tasks: Iterable[str] = PAPER_TASKS) -> pd.DataFrame:
    """Table I: hyperparameters, ours (``profile_cfgs[task]``, e.g. from
    :func:`stpcore.runs.profiles.hyperparameters`) beside the paper's, and ``ours - paper``.

    Rows: the paper's hyperparameter labels; columns: ``(task, paper|ours|diff)``; cells are
    strings in ``%g`` form (the values span 1e-12 to 140). A task missing from ``profile_cfgs``
    shows "not run".
    """
    paper = load_paper_results()["table_i"]
    tasks = list(tasks)
    data, index = [], []
    for key in TABLE_I_KEYS:
        row = []
        for task in tasks:
            cfg = profile_cfgs.get(task)
            ours = None if cfg is None else cfg.get(key, NO_METRIC)
            p = paper["values"][key].get(task)
            row += [_g(p, NO_METRIC), _g(ours, NOT_RUN), _g(difference(ours, p, None), NOT_RUN)]
        data.append(row)
        index.append(paper["labels"][key])
    cols = pd.MultiIndex.from_tuples([(task_label(t), c) for t in tasks for c in ("paper", "ours", "diff")],
                                     names=["Dataset", ""])
    return pd.DataFrame(data, index=pd.Index(index, name="Hyperparameter"), columns=cols)


# ---------------------------------------------------------------------------- Table II
TABLE_II_COLUMNS = ["Acc (%) paper", "Acc (%) ours", "Acc diff", "ACs (%) paper", "ACs (%) ours", "ACs diff"]


def table_ii(records, tasks: Iterable[str] = PAPER_TASKS, accuracy_key: str = "dev_accuracy") -> pd.DataFrame:
    """Table II: accuracy and ACs (% of the unpruned model) of every pruning method, per task.

    Rows: ``(Task, Method)`` in the paper's order; ours: ``metrics[accuracy_key]`` and
    ``100 * metrics["acs_fraction"]``.
    """
    recs = as_record_map(records)
    rows, index = [], []
    for task in tasks:
        for r in load_paper_results()["table_ii"]["rows"]:
            rec = recs.get((task, r["stage"]))
            p = r["values"][task]
            rows.append(_triple(get_metric(rec, accuracy_key), p["accuracy"], 2)
                        + _triple(get_metric(rec, "acs_fraction", 100.0), p["acs_percent"], 2))
            index.append((task_label(task), r["label"]))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["Task", "Method"]),
                        columns=TABLE_II_COLUMNS)


# ---------------------------------------------------------------------------- Table III
TABLE_III_COLUMNS = ["Accuracy paper", "Accuracy ours", "Accuracy diff",
                     "Normalized #C paper", "Normalized #C ours", "Normalized #C diff",
                     "Latency paper", "Latency ours", "Latency diff"]


def table_iii(records, tasks: Iterable[str] = PAPER_TASKS, accuracy_key: str = "dev_accuracy") -> pd.DataFrame:
    """Table III: accuracy, Normalized #C (Eq. 14) and latency (mean timesteps over layers)
    of the baseline, the two-stage pruned model, and the pruned model with adaptive threshold."""
    recs = as_record_map(records)
    paper = load_paper_results()["table_iii"]
    rows, index = [], []
    for task in tasks:
        for stage, label in paper["columns"].items():
            rec = recs.get((task, stage))
            p = paper["values"][task][stage]
            rows.append(_triple(get_metric(rec, accuracy_key), p["accuracy"], 2)
                        + _triple(get_metric(rec, "normalized_c"), p["normalized_c"], 3)
                        + _triple(get_metric(rec, "mean_latency"), p["latency"], 2))
            index.append((task_label(task), label))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["Task", "Model"]),
                        columns=TABLE_III_COLUMNS)


# ---------------------------------------------------------------------------- Table IV
TABLE_IV_COLUMNS = ["Spatial", "Temporal", "Retrain", "Accuracy paper", "Accuracy ours", "Accuracy diff"]


def table_iv(records, task: str = "sst2", accuracy_key: str = "dev_accuracy") -> pd.DataFrame:
    """Table IV: pruning strategies (spatial only, temporal only, joint retraining, sequential)."""
    recs = as_record_map(records)
    rows, index = [], []
    for r in load_paper_results()["table_iv"]["rows"]:
        rec = recs.get((task, r["stage"]))
        rows.append(["✓" if r["spatial"] else "✗", "✓" if r["temporal"] else "✗", r["retrain"]]
                    + _triple(get_metric(rec, accuracy_key), r["accuracy"], 2))
        index.append(r["label"])
    return pd.DataFrame(rows, index=pd.Index(index, name=f"Pruning strategy ({task_label(task)})"),
                        columns=TABLE_IV_COLUMNS)


# ---------------------------------------------------------------------------- Table V
TABLE_V_COLUMNS = ["Timesteps paper", "Timesteps ours", "Timesteps diff",
                   "Accuracy (%) paper", "Accuracy (%) ours", "Accuracy diff"]


def table_v(records, task: str = "sst2", accuracy_key: str = "dev_accuracy") -> pd.DataFrame:
    """Table V: baseline and pruned model with fixed vs adaptive threshold (timesteps = mean
    latency over layers)."""
    recs = as_record_map(records)
    rows, index = [], []
    for r in load_paper_results()["table_v"]["rows"]:
        rec = recs.get((task, r["stage"]))
        rows.append(_triple(get_metric(rec, "mean_latency"), r["timesteps"], 2)
                    + _triple(get_metric(rec, accuracy_key), r["accuracy"], 2))
        index.append((r["model"], r["threshold"]))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["Model", "Threshold type"]),
                        columns=TABLE_V_COLUMNS)
