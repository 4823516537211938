"""Pruning stages rerun with one knob changed (a *variant*), judged beside the default ones.

A variant is a results root under ``data/results/sweeps/<name>/``, made on the GPU by
``scripts/gpu_session.sh task TASK FOUND PRUNE NAME:knob=value``. It changes pruning knobs only
(``stpcore.runs.profiles.PRUNING_KEYS``), so it starts from the shipped foundation, and its
pruned models pair with the default records' seed-0 baseline on the same dev examples.

One variant is recorded, ``sst2-paper-latency``. It reruns two-stage pruning of SST-2 (and the
adaptive threshold on it) with the PCA base chosen so that Eq. 10 gives our models the paper's
two-stage latency. :func:`match_base` shows that choice, made in closed form from the c of our
default two-stage records. Accuracy never entered it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ..prune.acs import population_latency
from ..prune.temporal import allocate_timesteps, flatten_populations, unflatten_populations
from ..runs.records import read_record
from .schedules import SWEEPS_DIR
from .seeds import SeededRecords, _present
from .summary import paper_latency_percent

#: name -> the task, the stages the variant reruns, and the knob it changes.
VARIANTS = {"sst2-paper-latency": {"task": "sst2", "knob": "pca_base",
                                   "stages": ("spatial_retrain", "two_stage", "adaptive_threshold")}}
#: The PCA bases :func:`match_base` tries, from 1.0 (exclusive) to 1.03 in steps of 0.0005.
BASE_GRID = tuple(round(1.0 + 0.0005 * i, 4) for i in range(1, 61))


def _variant(name: str) -> dict:
    if name not in VARIANTS:
        raise ValueError(f"`name` must be one of {sorted(VARIANTS)}; got {name!r}")
    return VARIANTS[name]


def variant_records(name: str, records: SeededRecords, seeds: Iterable[int], profile: str = "paper",
                    root: Path | None = None) -> dict:
    """``records`` (``{(task, stage, seed): record}``) with the variant's stages in place of the
    default ones at ``seeds`` (None where the variant has no record). The headline's functions
    (:func:`~stpcore.report.verdicts.headline_verdicts`,
    :func:`~stpcore.report.tradeoff.pair_table`) then judge the variant's models against the
    same seed-0 baseline. ``root``: the sweeps folder (default ``data/results/sweeps``)."""
    v = _variant(name)
    folder = Path(root or SWEEPS_DIR) / name
    out = {k: r for k, r in records.items() if not (k[0] == v["task"] and k[1] in v["stages"])}
    for stage in v["stages"]:
        for seed in seeds:
            out[(v["task"], stage, int(seed))] = read_record(profile, v["task"], stage, root=folder, seed=int(seed))
    return out


def relabel(name: str, records: SeededRecords, stages: Iterable[str], suffix: str) -> dict:
    """The records of the variant's task and ``stages`` under the stage name ``"<stage> <suffix>"``
    (to show a variant's models as their own rows beside the default ones; other tasks' records,
    which the variant left as they were, are not repeated)."""
    task, stages = _variant(name)["task"], set(stages)
    return {(t, f"{st} {suffix}", s): r for (t, st, s), r in records.items() if t == task and st in stages}


def knob_values(name: str, records: SeededRecords) -> list:
    """The values of the variant's knob in the configuration of its records found (one value
    when the variant ran as intended)."""
    v = _variant(name)
    found = [r for (t, st, _), r in records.items() if t == v["task"] and st in v["stages"] and r is not None]
    return sorted({r["config"][v["knob"]] for r in found})


def eq10_latency(components: Mapping, base: float, t_conv: int) -> float:
    """Mean timesteps over the spiking populations that Eq. 10 allocates from the per-population
    components ``components`` (``{"embedding": c, "layers": [[c per population]]}``) at PCA base
    ``base``, with ``t_conv`` for the population of largest c."""
    steps = unflatten_populations(allocate_timesteps(flatten_populations(components), base, t_conv))
    return population_latency(steps, len(components["layers"]))


def match_base(records: SeededRecords, task: str, stage: str = "two_stage", seeds: Iterable[int] | None = None,
               bases: Iterable[float] = BASE_GRID, target: float | None = None) -> pd.DataFrame | None:
    """The PCA base at which Eq. 10 gives ``stage``'s models ``target`` mean timesteps (default:
    the paper's two-stage latency as a share of its T_conv, Table III, times the records'
    T_conv: 53.08 on SST-2 at the paper profile). For each base of ``bases``, the mean latency
    :func:`eq10_latency` allocates from the components c of each seed's ``stage`` record (c
    measured after the spatial stage, as the temporal stage does) and their mean over seeds;
    ``chosen`` marks the base whose mean is nearest ``target``. Closed form: no model runs. Rows:
    the chosen base and the grid points beside it, plus the record's own base. None without
    records that carry components."""
    recs = {s: r for s, r in _present(records, task, stage, seeds).items() if "components" in r["metrics"]}
    share = paper_latency_percent(task)
    if not recs or (target is None and share is None):
        return None
    if target is None:
        target = share / 100.0 * next(iter(recs.values()))["config"]["t_conv"]
    used = {r["config"]["pca_base"] for r in recs.values()}
    rows = []
    for base in sorted(set(bases) | used):
        lat = {f"seed {s}": eq10_latency(r["metrics"]["components"], base, r["config"]["t_conv"])
               for s, r in recs.items()}
        rows.append({"base": base, **lat, "mean": sum(lat.values()) / len(lat)})
    df = pd.DataFrame(rows).set_index("base")
    best = (df["mean"] - target).abs().idxmin()
    df["target (paper)"] = target
    df["chosen"] = ["nearest the paper" if b == best else "" for b in df.index]
    for b in used:
        df.loc[b, "chosen"] = "; ".join(filter(None, [df.loc[b, "chosen"], "these records' base"]))
    i = df.index.get_loc(best)
    keep = set(df.index[max(0, i - 2): i + 3]) | used
    return df.loc[[b for b in df.index if b in keep]].round(2)

