"""Pruning stages rerun with one knob changed (a *variant*), judged beside the default ones.

A variant is a results root under ``data/results/sweeps/<name>/``, made on the GPU by
``scripts/gpu_session.sh task TASK FOUND PRUNE NAME:knob=value``. It changes pruning knobs
(``stpcore.runs.profiles.PRUNING_KEYS``) or how the later stages simulate
(``stpcore.runs.runner.RUNTIME_KEYS``) only, so it starts from the shipped foundation, and its
pruned models pair with the default records' seed-0 baseline on the same dev examples.

``sst2-paper-latency`` reruns two-stage pruning of SST-2 (and the adaptive threshold on it) with
the PCA base chosen so that Eq. 10 gives our models the paper's two-stage latency.
:func:`match_base` shows that choice, made in closed form from the c of our default two-stage
records. Accuracy never entered it. It ran in bf16, beside the bf16 records the paper profile
had then, so it is judged beside those (archived in ``BF16_ARCHIVE``; ``"beside"``).

``mrpc-int8`` and ``sst2-int8`` reran every 1-bit pruning stage with ``binary_sim_dtype=int8``
(issue 12: the integer path, as exact as fp32, where the records before simulated in bf16). The
paper profile then adopted them (``"adopted"``: their records are the profile's own, under
``data/results``), and the bf16 records they replaced are archived (``"replaced"``).
:func:`dtype_table` sets each stage beside the bf16 record of the same stage and seeds,
:func:`rerun_table` sets the stages a second session recomputed beside the first session's
records of the same configuration (archived), and :func:`repeat_table` lists every run of one
stage and seed kept, which says how far a rerun alone moves a result.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ..prune.acs import population_latency
from ..prune.temporal import allocate_timesteps, flatten_populations, unflatten_populations
from ..runs.profiles import binary_dtype_name
from ..runs.records import REPO_ROOT, read_record
from .schedules import SWEEPS_DIR
from .seeds import SeededRecords, _interval, _present, _values
from .stats import BETTER, WORSE, correct_vector, paired_bootstrap_ci, verdict
from .summary import paper_latency_percent, precision_table
from .tables import NO_METRIC, NOT_RUN
from .tradeoff import stage_difference

#: The 1-bit pruning stages with a dev accuracy, which a simulation-dtype variant reruns.
DTYPE_STAGES = ("spatial_fisher", "spatial_fisher_asr_neuron", "spatial_fisher_asr_attn",
                "spatial_fisher_asr", "spatial_retrain", "temporal_pca", "temporal_retrain",
                "two_stage", "joint_retrain", "adaptive_threshold", "baseline_adaptive", "random_mask")
#: The paper profile's records simulated in bf16, which the int8 reruns replaced (issue 12).
BF16_ARCHIVE = "2026-12-04-bf16"
#: name -> the task, the stages the variant reruns and the knob it changes, and where set,
#: ``adopted`` (its records are the profile's own now), ``replaced`` (the archive under
#: ``ARCHIVE_DIR`` of the records it replaced) or ``beside`` (that of the records of its task it
#: was made beside and is judged with).
VARIANTS = {"sst2-paper-latency": {"task": "sst2", "knob": "pca_base", "beside": BF16_ARCHIVE,
                                   "stages": ("spatial_retrain", "two_stage", "adaptive_threshold")},
            **{f"{task}-int8": {"task": task, "knob": "binary_sim_dtype", "stages": DTYPE_STAGES,
                                "adopted": True, "replaced": BF16_ARCHIVE}
               for task in ("mrpc", "sst2")}}
#: Records no longer current (``rerun_table``, ``replaced``, ``beside``) and repeated runs.
ARCHIVE_DIR = REPO_ROOT / "data" / "results" / "archive"
REPEATS_DIR = REPO_ROOT / "data" / "results" / "repeats"
#: The PCA bases :func:`match_base` tries, from 1.0 (exclusive) to 1.03 in steps of 0.0005.
BASE_GRID = tuple(round(1.0 + 0.0005 * i, 4) for i in range(1, 61))


def _variant(name: str) -> dict:
    if name not in VARIANTS:
        raise ValueError(f"`name` must be one of {sorted(VARIANTS)}; got {name!r}")
    return VARIANTS[name]


def _folder(name: str, root: Path | None, results_root: Path | None) -> Path | None:
    """Where the variant's records are: ``results_root`` (None: ``data/results``) once adopted,
    else ``<root>/<name>`` (``root``: the sweeps folder, default ``data/results/sweeps``)."""
    return results_root if _variant(name).get("adopted") else Path(root or SWEEPS_DIR) / name


def _upstream_digests(rec: dict) -> dict:
    """``{upstream stage: its checkpoint digest}`` of a record's provenance."""
    return {k: u.get("checkpoint_sha256") for k, u in rec["provenance"].get("upstream", {}).items()}


def beside_records(name: str, records: SeededRecords, profile: str = "paper",
                   archive_root: Path | None = None) -> dict:
    """``records`` with those of the variant's task that it was made beside (``beside``: an
    archive under ``archive_root``, default ``data/results/archive``) in place of the current
    ones, where the archive has them; ``records`` as they are for a variant without one."""
    v, out = _variant(name), dict(records)
    if "beside" in v:
        old = Path(archive_root or ARCHIVE_DIR) / v["beside"]
        for (task, stage, seed) in [k for k in out if k[0] == v["task"]]:
            rec = read_record(profile, task, stage, root=old, seed=seed)
            out[(task, stage, seed)] = rec if rec is not None else out[(task, stage, seed)]
    return out


def variant_records(name: str, records: SeededRecords, seeds: Iterable[int], profile: str = "paper",
                    root: Path | None = None, results_root: Path | None = None,
                    archive_root: Path | None = None) -> dict:
    """``records`` (``{(task, stage, seed): record}``) with the variant's stages in place of the
    default ones at ``seeds`` (None where the variant has no record), after
    :func:`beside_records` (a variant made beside records since archived pairs with those). The headline's functions
    (:func:`~stpcore.report.verdicts.headline_verdicts`,
    :func:`~stpcore.report.tradeoff.pair_table`) then judge the variant's models against the
    seed-0 baseline they were made beside. ``root``: the sweeps folder (default
    ``data/results/sweeps``); ``archive_root``: default ``data/results/archive``."""
    v = _variant(name)
    folder = _folder(name, root, results_root)
    kept = {k: r for k, r in records.items() if not (k[0] == v["task"] and k[1] in v["stages"])}
    out = beside_records(name, kept, profile, archive_root)
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
        df.loc[b, "chosen"] = "; ".join(filter(None, [df.loc[b, "chosen"], "these records' base (Eq. 10 on their bf16 models' c)"]))
    i = df.index.get_loc(best)
    keep = set(df.index[max(0, i - 2): i + 3]) | used
    return df.loc[[b for b in df.index if b in keep]].round(2)


def dtype_table(name: str, records: SeededRecords, seeds: Iterable[int], profile: str = "paper",
                root: Path | None = None, results_root: Path | None = None,
                n_boot: int = 10000) -> pd.DataFrame | None:
    """Each stage of the simulation-dtype variant ``name`` (``<task>-int8``, the *after* side)
    beside ``records`` (``{(task, stage, seed): record}``, the *before* side: the records it
    replaced) of the same stage at ``seeds``: the dtype and seeds of each, their mean dev
    accuracy and Normalized #C, and after minus before, pooled over the seeds and paired over
    the dev examples (:func:`~stpcore.report.tradeoff.stage_difference`) with its verdict. Rows:
    the stages either side has a record of (a stage not rerun says so in its columns). None when
    the variant has no record (not run)."""
    v, seeds = _variant(name), [int(s) for s in seeds]
    ours = relabel(name, variant_records(name, {}, seeds, profile, root, results_root), v["stages"], "(after)")
    if not any(r is not None for r in ours.values()):
        return None
    both = {**records, **ours}
    rows = []
    for stage in v["stages"]:
        new, old = (_present(both, v["task"], st, seeds) for st in (f"{stage} (after)", stage))
        if not new and not old:
            continue
        d = stage_difference(both, v["task"], f"{stage} (after)", stage, seeds, n_boot)
        row = {"stage": stage}
        for label, recs in (("before", old), ("after", new)):
            acc, c = _values(recs, "dev_accuracy"), _values(recs, "normalized_c")
            row.update({f"{label} dtype": ", ".join(sorted({binary_dtype_name(r["config"]) for r in recs.values()})) or NOT_RUN,
                        f"{label} seeds": len(recs),
                        f"{label} dev acc (%)": round(sum(acc) / len(acc), 2) if acc else NOT_RUN,
                        f"{label} Normalized #C": round(sum(c) / len(c), 4) if c else NOT_RUN})
        row.update({"Δ acc (pt)": NOT_RUN if d is None else round(d["diff"], 2),
                    "95% interval": _interval(d, missing=NOT_RUN), "verdict": NOT_RUN if d is None else verdict(d)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("stage") if rows else None


def dtype_comparison(name: str, seeds: Iterable[int] = (0, 1, 2), profile: str = "paper",
                     root: Path | None = None, results_root: Path | None = None,
                     archive_root: Path | None = None
                     ) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """What the simulation-dtype variant ``name`` changes, from records on disk (nothing runs):
    its ``precision_check`` (the seed-0 baseline checkpoint evaluated in fp32 and the variant's
    dtype, :func:`~stpcore.report.summary.precision_table`, beside the baseline record before)
    and :func:`dtype_table` of its pruning stages against the records before at ``seeds``: those
    it replaced (``replaced``, under ``archive_root``, default ``data/results/archive``), or
    for a variant not adopted, the profile's own (``results_root``, default ``data/results``).
    Each None where the variant has no such record."""
    v, seeds = _variant(name), [int(s) for s in seeds]
    task = v["task"]
    before = Path(archive_root or ARCHIVE_DIR) / v["replaced"] if "replaced" in v else results_root
    old = {(task, st, s): read_record(profile, task, st, root=before, seed=s)
           for st in v["stages"] for s in seeds}
    check = read_record(profile, task, "precision_check", root=_folder(name, root, results_root))
    checked = None if check is None else precision_table(
        {(task, "precision_check"): check, (task, "baseline"): read_record(profile, task, "baseline", root=before)},
        [task])
    return checked, dtype_table(name, old, seeds, profile, root, results_root)


def dtype_reading(table: pd.DataFrame | None, level: float = 0.95,
                  reruns: pd.DataFrame | None = None) -> str:
    """The reading of a :func:`dtype_table`: which stages the variant reran and which not, which
    paired intervals exclude zero, and how many would by chance alone if the dtype changed
    nothing (``1 - level`` of them; with the chance of at least that many, treating the stages
    as independent, which they are not quite: they share the foundation). ``reruns`` (a
    :func:`rerun_table`): a stage that moved also says how far a rerun of the same configuration
    alone moved it."""
    if table is None:
        return "Not rerun yet."
    ran = table[table["after seeds"] != 0]
    missing = [s for s in table.index if s not in ran.index]
    out = f"The rerun covers {len(ran)} of {len(table)} stages" + (
        f" (not rerun: {', '.join(missing)})." if missing else ".")
    moved = ran[ran["verdict"].isin([BETTER, WORSE])]
    chance = len(ran) * (1 - level)
    at_least = 1 - sum(math.comb(len(ran), k) * (1 - level) ** k * level ** (len(ran) - k)
                       for k in range(len(moved)))
    alone = {} if reruns is None else {
        s: f", where a rerun of the same configuration alone moved it {r['Δ acc (pt)']:+.2f} pt"
           f" {r['95% interval']}"
        for s, r in reruns.iterrows() if r["bit-identical"] < r["seeds"]}
    named = "; ".join(f"{s}: {r['verdict']}, {r['Δ acc (pt)']:+.2f} pt {r['95% interval']}"
                      + alone.get(s, "") for s, r in moved.iterrows())
    verb = "excludes" if len(moved) == 1 else "exclude"
    return (out + f" {len(moved)} of its {len(ran)} paired {level:.0%} intervals {verb} zero"
            + (f" ({named})" if named else "") + f"; if the dtype changed nothing, about {chance:.1f}"
            f" would by chance, and at least {len(moved)} with probability {at_least:.2f}.")


def rerun_table(name: str, archive: str, seeds: Iterable[int] = (0, 1, 2), profile: str = "paper",
                root: Path | None = None, archive_root: Path | None = None,
                results_root: Path | None = None, n_boot: int = 10000) -> pd.DataFrame | None:
    """The stages of variant ``name`` that a later session recomputed, beside the records they
    replaced (the folder ``archive`` under ``archive_root``, default ``data/results/archive``):
    per stage, how many seeds have both runs, at how many the configuration and the upstream
    models (checkpoint digests) are the same and the checkpoint and dev predictions
    bit-identical, each run's mean dev accuracy, and the rerun minus the first run pooled over
    the seeds and paired over the dev examples, with its verdict. None when the archive holds no
    record of the variant's task."""
    v, seeds = _variant(name), [int(s) for s in seeds]
    task, folder = v["task"], Path(archive_root or ARCHIVE_DIR) / archive
    rerun = variant_records(name, {}, seeds, profile, root, results_root)
    digest = lambda r: (r["provenance"].get("checkpoint_sha256"), r["metrics"].get("dev_predictions"))
    mean_acc = lambda pairs, i: round(statistics.fmean(_values({s: p[i] for s, p in pairs.items()},
                                                               "dev_accuracy")), 2)
    rows = []
    for stage in v["stages"]:
        pairs = {s: (read_record(profile, task, stage, root=folder, seed=s),
                     rerun[(task, stage, s)]) for s in seeds}
        pairs = {s: p for s, p in pairs.items() if None not in p}
        if not pairs:
            continue
        both = {(task, key, s): p[i] for s, p in pairs.items() for i, key in enumerate(("first", "rerun"))}
        d = stage_difference(both, task, "rerun", "first", seeds, n_boot)
        rows.append({"stage": stage, "seeds": len(pairs),
                     "same configuration": sum(a["config"] == b["config"] for a, b in pairs.values()),
                     "same upstream models": sum(_upstream_digests(a) == _upstream_digests(b)
                                                 for a, b in pairs.values()),
                     "bit-identical": sum(digest(a) == digest(b) for a, b in pairs.values()),
                     "first run dev acc (%)": mean_acc(pairs, 0), "rerun dev acc (%)": mean_acc(pairs, 1),
                     "first run commit": ", ".join(sorted({a["provenance"]["git_commit"][:7]
                                                           for a, _ in pairs.values()})),
                     "Δ acc (pt)": NOT_RUN if d is None else round(d["diff"], 2),
                     "95% interval": _interval(d, missing=NOT_RUN), "verdict": NOT_RUN if d is None else verdict(d)})
    return pd.DataFrame(rows).set_index("stage") if rows else None


def rerun_reading(table: pd.DataFrame | None, task: str) -> str:
    """The reading of a :func:`rerun_table`: the stages rebuilt bit for bit, and those that
    moved with nothing changed (their paired intervals cover the dev sampling, not this)."""
    if table is None:
        return f"{task}: no stage recomputed."
    same = table[table["bit-identical"] == table["seeds"]]
    moved = table[table["bit-identical"] < table["seeds"]]
    out = f"{task}: " + (f"{', '.join(same.index)} rebuilt bit for bit at every seed (the same "
                         "checkpoints and dev predictions)" if len(same) else "no stage rebuilt bit for bit")
    if not len(moved):
        return out + "."
    named = "; ".join(f"{s} differs at {r['seeds'] - r['bit-identical']} of {r['seeds']} seeds"
                      + (" (from the same models)" if r["same upstream models"] == r["seeds"] else
                         " (from upstream models that moved)")
                      + f", {r['Δ acc (pt)']:+.2f} pt {r['95% interval']}" for s, r in moved.iterrows())
    return (out + f"; with the same configuration, {named}. A paired interval over the dev"
            " examples covers their sampling, not this run-to-run spread: a difference of that size"
            " between two such runs is not evidence of the knob that separates them.")


def repeat_table(task: str, stage: str, seed: int = 0, profile: str = "paper",
                 results_root: Path | None = None, archive_root: Path | None = None,
                 repeats_root: Path | None = None, n_boot: int = 10000) -> pd.DataFrame | None:
    """Every kept run of ``stage`` at ``seed`` with the current record's configuration: the
    current record (``results_root``), archived ones (each folder under ``archive_root``) and
    repeats (each folder under ``repeats_root``, default ``data/results/repeats``), oldest first.
    Per run: where it is kept, its commit, whether it ran in ``STP_DETERMINISTIC`` mode, whether
    it starts from the current record's upstream models, its checkpoint digest, its dev accuracy,
    and its dev accuracy minus the current record's, paired over the dev examples. None without
    a current record."""
    current = read_record(profile, task, stage, root=results_root, seed=seed)
    if current is None:
        return None
    runs = {"current record": current}
    for base in (Path(archive_root or ARCHIVE_DIR), Path(repeats_root or REPEATS_DIR)):
        for folder in sorted(p for p in base.glob("*") if p.is_dir()):
            rec = read_record(profile, task, stage, root=folder, seed=seed)
            if rec is not None and rec["config"] == current["config"]:
                runs[f"{base.name}/{folder.name}"] = rec
    mine = correct_vector(current)
    rows = []
    for where, rec in sorted(runs.items(), key=lambda kv: kv[1]["provenance"]["finished"]):
        other = correct_vector(rec)
        d = None if where == "current record" or other is None else paired_bootstrap_ci(mine, other, n_boot)
        rows.append({"run": where, "commit": rec["provenance"]["git_commit"][:7],
                     "deterministic mode": bool(rec["provenance"].get("deterministic")),
                     "same upstream models": _upstream_digests(rec) == _upstream_digests(current),
                     "checkpoint": rec["provenance"].get("checkpoint_sha256", "")[:8],
                     "dev acc (%)": round(rec["metrics"]["dev_accuracy"], 2),
                     "Δ vs current (pt)": ("(reference)" if where == "current record" else
                                           NO_METRIC if d is None else round(d["diff"], 2)),
                     "95% interval": _interval(d, missing="")})
    return pd.DataFrame(rows).set_index("run")


def repeat_reading(table: pd.DataFrame | None, task: str, stage: str) -> str:
    """The reading of a :func:`repeat_table`: how many runs of the same configuration from the
    same upstream models, how many distinct checkpoints they made, and the spread of their dev
    accuracy, in default mode and in deterministic mode."""
    if table is None:
        return f"{task} {stage}: no current record."
    same = table[table["same upstream models"]]
    out = (f"{task} {stage}: {len(same)} runs with the current record's configuration and upstream"
           f" models made {same['checkpoint'].nunique()} distinct checkpoint(s)")
    for mode, runs in same.groupby("deterministic mode"):
        acc = runs["dev acc (%)"]
        out += (f"; {'in deterministic mode' if mode else 'in default mode'}, {len(runs)} run(s), dev"
                f" accuracy {acc.min():.2f}" + (f" to {acc.max():.2f} (spread {acc.max() - acc.min():.2f} pt)"
                                                if len(runs) > 1 else ""))
    return out + "."
