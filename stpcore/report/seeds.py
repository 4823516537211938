"""Our numbers over several seeds, with intervals (the verdicts built on them: :mod:`stpcore.report.verdicts`).

Records come as ``{(task, stage, seed): record_or_None}`` (:func:`collect_seeded`). The
reference of every accuracy change is the **seed-0 baseline** (the pruning stages at seeds
0, 1, 2 all start from it, ``provenance.base_seed == 0``). Statistics: :mod:`stpcore.report.stats`.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from ..runs.runner import FOUNDATION
from . import stats
from .notes import SST2_ONLY, paper_value
from .tables import NO_METRIC, NOT_RUN, TABLE_STAGES, fmt_missing

SeededRecords = Mapping[tuple[str, str, int], "dict | None"]
REFERENCE = ("baseline", 0)
#: The seeds the foundation (teacher, full-precision and 1-bit students) is trained at, two as
#: the baseline issue asks (``scripts/gpu_session.sh``'s FOUND_SEEDS); the pruning stages run at
#: more seeds, all from the seed-0 baseline, so a foundation stage's seed 2 is never requested.
FOUNDATION_SEEDS = (0, 1)


# ---------------------------------------------------------------------------- collection
def collect_seeded(tasks: Iterable[str], stages: Iterable[str], seeds: Iterable[int], profile: str = "smoke",
                   recompute: bool = False,
                   getter: Callable[..., dict | None] | None = None) -> dict[tuple[str, str, int], dict | None]:
    """``{(task, stage, seed): record_or_None}`` from :func:`stpcore.runs.runner.get_record`
    (paper profile: None for what was never run; smoke: runs what is missing)."""
    if getter is None:
        from ..runs.runner import get_record as getter
    stages, seeds = list(stages), [int(s) for s in seeds]
    return {(task, stage, seed): getter(task, stage, profile=profile, seed=seed, recompute=recompute)
            for task in tasks for stage in stages for seed in seeds}


def collect_seeded_for(artifact: str, tasks: Iterable[str], seeds: Iterable[int], profile: str = "smoke",
                       recompute: bool = False, getter: Callable[..., dict | None] | None = None,
                       known: Mapping[tuple[str, str], dict | None] | None = None, known_seed: int = 0,
                       stages: Iterable[str] | None = None):
    """:func:`collect_seeded` for an artifact's stages (``TABLE_STAGES``, or ``stages``; SST-2
    only where the paper is; foundation stages at the ``seeds`` in :data:`FOUNDATION_SEEDS`), plus
    the seed-0 baseline (the reference) when ``seeds`` lacks 0.

    ``known``: records already collected at ``known_seed`` as ``{(task, stage): record}`` (e.g.
    the notebook's :func:`~stpcore.report.notes.collect_for` result); they are reused, not
    fetched (or, with ``recompute``, rerun) again."""
    if getter is None:
        from ..runs.runner import get_record as getter
    known = known or {}
    fetch = getter

    def cached(task, stage, profile, seed, recompute):
        if seed == known_seed and (task, stage) in known:
            return known[(task, stage)]
        return fetch(task, stage, profile=profile, seed=seed, recompute=recompute)
    tasks = [t for t in tasks if artifact not in SST2_ONLY or t == "sst2"]
    stages, seeds = list(TABLE_STAGES[artifact] if stages is None else stages), [int(s) for s in seeds]
    pruning = [st for st in stages if st not in FOUNDATION]
    out = collect_seeded(tasks, pruning, seeds, profile, recompute, cached)
    out.update(collect_seeded(tasks, [st for st in stages if st in FOUNDATION],
                              [s for s in seeds if s in FOUNDATION_SEEDS], profile, recompute, cached))
    for task in tasks:
        if (task, *REFERENCE) not in out:
            out.update(collect_seeded([task], [REFERENCE[0]], [REFERENCE[1]], profile, recompute, cached))
    return out


def _present(records: SeededRecords, task: str, stage: str, seeds: Iterable[int] | None) -> dict[int, dict]:
    """``{seed: record}`` of the records found for ``(task, stage)`` (all seeds if ``seeds`` is None)."""
    found = {s: r for (t, st, s), r in records.items() if t == task and st == stage and r is not None}
    return {s: found[s] for s in sorted(found) if seeds is None or s in set(seeds)}


def _metric(rec: dict, key: str, scale: float = 1.0) -> float | None:
    v = (rec.get("metrics") or {}).get(key)
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v) * scale


def _values(recs: Mapping[int, dict], key: str, scale: float = 1.0) -> list[float]:
    return [v for v in (_metric(r, key, scale) for r in recs.values()) if v is not None]


# ---------------------------------------------------------------------------- the accuracy change
def accuracy_change(records: SeededRecords, task: str, stage: str, seeds: Iterable[int] | None = None,
                    n_boot: int = 10000, level: float = 0.95) -> dict | None:
    """Dev accuracy of ``stage`` (pooled over its seeds) minus the seed-0 baseline's, with an interval.

    * **paired bootstrap** when the baseline and at least one seed of the stage have
      per-example predictions: :func:`stats.pooled_bootstrap_ci`, i.e. every replicate draws
      the dev examples once and averages the per-seed differences (seeds without predictions
      are left out; ``seeds`` in the result counts those used);
    * otherwise **binomial, unpaired**: the mean over seeds minus the baseline, +- z * the
      root sum of squares of the two binomial standard errors (:func:`stats.sampling_error`).
      Ignoring the pairing makes this interval wider than the paired one (conservative).

    For the ``baseline`` stage itself its seeds other than 0 are compared with seed 0 (seed-to-seed
    spread of the foundation); None when there are none. Returns ``{"diff", "low", "high",
    "n", "seeds", "basis"}`` or None (no baseline or no record of the stage)."""
    base = records.get((task, *REFERENCE))
    recs = _present(records, task, stage, seeds)
    if stage == REFERENCE[0]:
        recs.pop(REFERENCE[1], None)
    if base is None or not recs:
        return None
    vb = stats.correct_vector(base)
    vecs = [v for v in (stats.correct_vector(r) for r in recs.values())
            if v is not None and vb is not None and v.size == vb.size]
    if vecs:
        out = stats.pooled_bootstrap_ci(vb, vecs, n_boot=n_boot, level=level)
        out["basis"] = f"paired bootstrap, {len(vecs)} seed{'s' if len(vecs) > 1 else ''}"
        return out
    accs, b = _values(recs, "dev_accuracy"), _metric(base, "dev_accuracy")
    n = _metric(base, "dev_examples")
    if not accs or b is None:
        return None
    mean = sum(accs) / len(accs)
    if not n:
        return {"diff": mean - b, "low": None, "high": None, "n": None, "seeds": len(accs),
                "basis": "point only (no predictions, no example count)"}
    return {**stats.unpaired_binomial_ci(b, mean, int(n), level), "n": int(n), "seeds": len(accs),
            "basis": "binomial approx., unpaired (no predictions)"}


def seeded_status(records: SeededRecords) -> str:
    """One sentence: how many of the requested ``(task, stage, seed)`` records are present, and
    which are missing, grouped as ``task/stage seeds a,b``."""
    missing: dict[tuple[str, str], list[int]] = {}
    for (task, stage, seed), rec in sorted(records.items()):
        if rec is None:
            missing.setdefault((task, stage), []).append(seed)
    n_missing = sum(map(len, missing.values()))
    text = f"{len(records) - n_missing} of {len(records)} requested (task, stage, seed) records are present."
    if missing:
        text += " Not run: " + ", ".join(f"{t}/{s} seed{'s' if len(k) > 1 else ''} {','.join(map(str, k))}"
                                         for (t, s), k in missing.items()) + "."
    return text


# ---------------------------------------------------------------------------- formatting
def _cell(value, digits: int = 2, missing: str = NO_METRIC):
    return fmt_missing(value, digits, missing)


def _interval(ci: Mapping | None, digits: int = 2, missing: str = NO_METRIC) -> str:
    if not ci or ci.get("low") is None:
        return missing
    return f"[{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


def _paper_accuracy(task: str, stage: str, paper_table: str) -> float | None:
    for table in dict.fromkeys((paper_table, "table_ii", "table_iii", "table_iv", "table_v")):
        v = paper_value(table, task, stage, "accuracy")
        if v is not None:
            return v
    return None


SEEDED_COLUMNS = ["seeds found", "dev acc mean (%)", "dev acc 95% CI (seeds)", "ACs kept mean (%)",
                  "latency mean", "paper acc (%)", "Δ acc vs baseline s0 (pt)", "Δ 95% CI",
                  "Δ basis", "verdict"]


# ---------------------------------------------------------------------------- the seeded table
def seeded_table(records: SeededRecords, task: str, stages: Iterable[str], seeds: Iterable[int] | None = None,
                 paper_table: str = "table_ii", n_boot: int = 10000, level: float = 0.95) -> pd.DataFrame:
    """One task, one row per stage: the seeds found; the mean dev accuracy over them with its
    Student t interval (:func:`stats.mean_ci`; "n/a" with one seed); the ACs kept (% of the
    unpruned model) and latency (mean timesteps over layers), means over seeds; the paper's
    accuracy (``paper_table``, else the first other table that has the stage); and the change
    against the seed-0 baseline from :func:`accuracy_change` (pooled over seeds by averaging
    the per-seed differences inside each bootstrap replicate) with its interval, basis and
    :func:`stats.verdict` ("better" / "worse" / "same within noise"). "not run" without records."""
    rows = []
    for stage in stages:
        recs = _present(records, task, stage, seeds)
        if not recs:
            rows.append([NOT_RUN] * 5 + [_cell(_paper_accuracy(task, stage, paper_table))] + [NOT_RUN] * 4)
            continue
        acc = stats.mean_ci(_values(recs, "dev_accuracy"), level)
        acs, lat = _values(recs, "acs_fraction", 100.0), _values(recs, "mean_latency")
        ch = accuracy_change(records, task, stage, seeds, n_boot, level)
        if stage == REFERENCE[0] and ch is None:
            delta = ["reference", "reference", "", ""]
        elif ch is None:
            delta = [NO_METRIC, NO_METRIC, "no seed-0 baseline" if records.get((task, *REFERENCE)) is None
                     else NO_METRIC, NO_METRIC]
        else:
            basis = ch["basis"] if stage != REFERENCE[0] else (
                f"{ch['basis']}: seed{'s' if len(recs) > 2 else ''} {','.join(str(s) for s in recs if s)} "
                f"against seed 0 (the foundation's seed-to-seed spread)")
            delta = [_cell(ch["diff"]), _interval(ch), basis, stats.verdict(ch)]
        rows.append([",".join(map(str, recs)), _cell(acc["mean"]), _interval(acc),
                     _cell(float(np.mean(acs)) if acs else None), _cell(float(np.mean(lat)) if lat else None),
                     _cell(_paper_accuracy(task, stage, paper_table))] + delta)
    return pd.DataFrame(rows, index=pd.Index(list(stages), name="stage"), columns=SEEDED_COLUMNS)


def seeded_tables(records: SeededRecords, tasks: Iterable[str], stages: Iterable[str],
                  seeds: Iterable[int] | None = None, paper_table: str = "table_ii",
                  n_boot: int = 10000, level: float = 0.95) -> pd.DataFrame:
    """:func:`seeded_table` of every task, stacked (index ``(task, stage)``)."""
    tasks, stages = list(tasks), list(stages)
    if not tasks:
        return pd.DataFrame(columns=SEEDED_COLUMNS, index=pd.MultiIndex.from_tuples([], names=["task", "stage"]))
    return pd.concat({t: seeded_table(records, t, stages, seeds, paper_table, n_boot, level) for t in tasks},
                     names=["task", "stage"])


def seeded_tables_for(artifact: str, records: SeededRecords, tasks: Iterable[str], seeds: Iterable[int] | None = None,
                      paper_table: str | None = None, n_boot: int = 10000, level: float = 0.95) -> pd.DataFrame:
    """:func:`seeded_tables` for an artifact's stages (``TABLE_STAGES``) and tasks (SST-2 only
    where the paper is); the paper's accuracy from ``paper_table`` (default: the artifact)."""
    tasks = [t for t in tasks if artifact not in SST2_ONLY or t == "sst2"]
    return seeded_tables(records, tasks, TABLE_STAGES[artifact], seeds, paper_table or artifact, n_boot, level)
