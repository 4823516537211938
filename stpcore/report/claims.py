"""Every claim the paper's Tables II-V and Figs. 3-5 state in words, one verdict each.

The headline (two-stage keeps accuracy, ACs and latency) is decided by
:mod:`stpcore.report.verdicts`; this module decides the other claims: which scores, orders and
settings beat which, as :class:`Claim` rows in the paper's order (:data:`CLAIMS`), each by the
rule of its ``kind`` (:data:`RULES`, in words for the book: :func:`claim_rules`) and worded
"reproduced" / "not reproduced" / "inconclusive" from a 95 % interval (:func:`verdicts.decide`).
Records come as ``{(task, stage, seed): record_or_None}`` (:mod:`stpcore.report.seeds`).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from . import stats
from .notes import SST2_ONLY, paper_value
from .paper import load_paper_results
from .seeds import (REFERENCE, SeededRecords, _cell, _interval, _metric, _present, _values,
                    collect_seeded_for)
from .summary import ACCURACY_TOLERANCE, ACS_SLACK
from .tables import NO_METRIC, NOT_RUN
from .tradeoff import stage_difference
from .verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, decide, paper_outside

#: A change smaller than this (% of the value) does not count as a cut (Fig. 3's summary uses it too).
MATERIAL_PERCENT = 1.0
#: A decided accuracy comparison whose interval clears its threshold by less than this (points) is noted.
FRAGILE_POINTS = 0.1

#: How each kind of claim is decided ("reproduced" / "not reproduced" / "inconclusive" from a 95 %
#: interval against a threshold: :func:`stpcore.report.verdicts.decide`).
RULES = {
    "beats": "the stage's dev accuracy minus the other's (each pooled over its seeds; paired bootstrap over the "
             "dev examples) must lie above 0: reproduced when the whole interval does, not reproduced when it "
             "lies below 0. The two must be at comparable ACs (within {slack:g} points), or the winner at fewer "
             "ACs; otherwise inconclusive.",
    "keeps": "the stage's dev accuracy minus the other's (paired bootstrap over the dev examples) must lie above "
             "the paper's own change minus {tol:g} point; inconclusive when the other model is not above the "
             "majority class (no accuracy to lose).",
    "gains more": "the stage's accuracy gain over the other minus the second pair's gain (a difference in "
                  "differences of four stages' dev accuracies, paired bootstrap over the dev examples) must lie "
                  "above 0.",
    "cuts": "the stage's metric against the other's, in % change per seed that both have (Student t interval "
            "over seeds; one run: the point), must lie below -{material:g} %.",
    "#C kept": "the stage's Normalized #C as % of the seed-0 baseline's (Student t interval over seeds) must be "
               "at most the paper's share + {slack:g} points.",
    "every layer's ASR cut": "each layer's mean ASR with the activity loss must be at least {material:g} % below "
                             "the run without it (one run each: the points decide).",
    "sweep keeps": "the dev accuracy at the paper's chosen value minus the sweep's unpruned point (1.0) must lie "
                   "above the paper's own change minus {tol:g} point (binomial interval, unpaired: sweep points "
                   "keep no per-example predictions).",
}


@dataclass(frozen=True)
class Claim:
    """One claim of the paper about ``artifact`` (a key of ``TABLE_STAGES``): ``words`` as the
    book shows them, decided by the rule ``kind`` (a key of :data:`RULES`) on ``stage`` against
    ``other``; ``second``: the pair a "gains more" claim compares with; ``metric``: the record's
    metric of a "cuts" claim; ``paper_table``: where the paper's own number comes from (None:
    the paper gives none)."""
    artifact: str
    words: str
    kind: str
    stage: str
    other: str = "baseline"
    second: tuple[str, str] | None = None
    metric: str = "dev_accuracy"
    paper_table: str | None = "table_ii"

    def __post_init__(self):
        if self.kind not in RULES:
            raise ValueError(f"`kind` must be one of {list(RULES)}; got {self.kind!r}")
        if (self.kind == "gains more") != (self.second is not None):
            raise ValueError(f"`second` is needed by kind 'gains more' and only by it; got kind {self.kind!r} "
                             f"with second={self.second!r}")


CLAIMS = (
    Claim("table_ii", "FIM + ASR of neurons beats FIM alone", "beats", "spatial_fisher_asr_neuron", "spatial_fisher"),
    Claim("table_ii", "FIM + ASR of attention beats FIM alone", "beats", "spatial_fisher_asr_attn", "spatial_fisher"),
    Claim("table_ii", "FIM + ASR beats FIM alone", "beats", "spatial_fisher_asr", "spatial_fisher"),
    Claim("table_ii", "FIM + ASR beats FIM + ASR of neurons", "beats", "spatial_fisher_asr", "spatial_fisher_asr_neuron"),
    Claim("table_ii", "FIM + ASR beats FIM + ASR of attention", "beats", "spatial_fisher_asr", "spatial_fisher_asr_attn"),
    Claim("table_ii", "retraining improves the spatially pruned model", "beats", "spatial_retrain", "spatial_fisher_asr"),
    Claim("table_ii", "retraining improves the temporally pruned model", "beats", "temporal_retrain", "temporal_pca"),
    Claim("table_iii", "two-stage cuts Normalized #C to the paper's share", "#C kept", "two_stage",
          paper_table="table_iii"),
    Claim("table_iii", "the adaptive threshold cuts latency further", "cuts", "adaptive_threshold", "two_stage",
          metric="mean_latency", paper_table="table_iii"),
    Claim("table_iii", "the adaptive threshold cuts Normalized #C further", "cuts", "adaptive_threshold", "two_stage",
          metric="normalized_c", paper_table="table_iii"),
    Claim("table_iii", "the adaptive threshold keeps the pruned model's accuracy", "keeps", "adaptive_threshold",
          "two_stage", paper_table="table_iii"),
    Claim("table_iv", "sequential (two-stage) beats joint retraining", "beats", "two_stage", "joint_retrain",
          paper_table="table_iv"),
    Claim("table_v", "the adaptive threshold helps the pruned model more than the baseline", "gains more",
          "adaptive_threshold", "two_stage", second=("baseline_adaptive", "baseline"), paper_table="table_v"),
    Claim("fig_3", "the activity loss lowers every layer's ASR", "every layer's ASR cut", "activity_ablation",
          paper_table=None),
    Claim("fig_3", "the activity loss lowers Normalized #C", "cuts", "activity_ablation", metric="normalized_c",
          paper_table=None),
    Claim("fig_4", "the chosen ACs budget keeps the post-training accuracy", "sweep keeps", "budget_sweep"),
    Claim("fig_4", "the chosen PCA base keeps the accuracy", "sweep keeps", "base_sweep"),
    Claim("fig_5", "post-training masks beat a random mask, both retrained", "beats", "spatial_retrain", "random_mask",
          paper_table=None),
)
COLUMNS = ["claim", "paper", "ours", "95% interval", "basis", "verdict", "note"]


#: The artifacts with claims, in the paper's order.
ARTIFACTS = tuple(dict.fromkeys(c.artifact for c in CLAIMS))


def claim_rules(artifacts: Iterable[str] | None = None, tolerance: float = ACCURACY_TOLERANCE,
                slack: float = ACS_SLACK, claims=CLAIMS) -> str:
    """The rules of :data:`RULES` in words (for the notebook), of the kinds the claims of
    ``artifacts`` use (default: all), one bullet each."""
    kinds = {c.kind for c in claims if artifacts is None or c.artifact in set(artifacts)}
    return "\n".join(f"- *{kind}*: {text.format(tol=tolerance, slack=slack, material=MATERIAL_PERCENT)}"
                     for kind, text in RULES.items() if kind in kinds)


def _paper_accuracy_change(claim: Claim, task: str) -> float | None:
    """The paper's own accuracy change ``stage - other`` (``+ second[1] - second[0]``) in points."""
    if claim.paper_table is None:
        return None
    names = [claim.stage, claim.other, *(claim.second or ())]
    vals = [paper_value(claim.paper_table, task, st, "accuracy") for st in names]
    if None in vals:
        return None
    return vals[0] - vals[1] - (vals[2] - vals[3] if claim.second else 0.0)


def _row(ours=NOT_RUN, ci=None, basis=NO_METRIC, verdict=INCONCLUSIVE, note="") -> dict:
    point = ci is not None and "point" in basis         # one run or seed: no interval to show
    return {"ours": ours if ci is None else _cell(ci["diff"] if "diff" in ci else ci["mean"]),
            "95% interval": "n/a (point)" if point else _interval(ci), "basis": basis, "verdict": verdict,
            "note": note, "low": None if ci is None else ci["low"], "high": None if ci is None else ci["high"]}


def _vectors(records: SeededRecords, task: str, stage: str, seeds) -> list:
    vecs = [stats.correct_vector(r) for r in _present(records, task, stage, seeds).values()]
    return [v for v in vecs if v is not None]


def _mean_acs(records: SeededRecords, task: str, stage: str, seeds) -> float | None:
    acs = _values(_present(records, task, stage, seeds), "acs_fraction", 100.0)
    return sum(acs) / len(acs) if acs else None


def _check_pair(claim: Claim, records: SeededRecords, task: str, seeds, threshold: float, n_boot: int) -> dict:
    d = stage_difference(records, task, claim.stage, claim.other, seeds, n_boot)
    if d is None:
        return _row()
    verdict = decide(d["low"], d["high"], threshold, at_most=False)
    if d["low"] <= threshold <= d["high"]:          # touching counts as straddling (e.g. [0, 0]: no difference)
        verdict = INCONCLUSIVE
    out = _row(ci=d, basis=f"paired bootstrap, {d['seeds_b']} vs {d['seeds_a']} seeds", verdict=verdict)
    side = d["low"] - threshold if out["verdict"] == REPRODUCED else threshold - d["high"]
    if out["verdict"] != INCONCLUSIVE and side < FRAGILE_POINTS:
        out["note"] = f"the interval clears {threshold:+.2f} by only {side:.2g} points: a rerun could move it"
    trivial = [st for st in (claim.stage, claim.other)
               if any(stats.above_majority(r) is False for r in _present(records, task, st, seeds).values())]
    if claim.kind == "keeps" and claim.other in trivial:
        out["verdict"] = NOT_REPRODUCED if out["verdict"] == NOT_REPRODUCED else INCONCLUSIVE
        out["note"] = f"{claim.other} is not above the majority class: no accuracy to lose"
    elif len(trivial) == 2:
        out["note"] = "neither model is above the majority class"
    a, b = (_mean_acs(records, task, st, seeds) for st in (claim.stage, claim.other))
    if claim.kind == "beats" and a is not None and b is not None and abs(a - b) > ACS_SLACK:
        dominated = (out["verdict"] == REPRODUCED and a <= b) or (out["verdict"] == NOT_REPRODUCED and a >= b)
        if out["verdict"] != INCONCLUSIVE and not dominated:
            out["verdict"] = INCONCLUSIVE
        out["note"] = "; ".join(filter(None, [out["note"], f"not at the same ACs: {claim.stage} keeps {a:.1f} %, {claim.other} {b:.1f} %"
                       + ("" if dominated else "; the more accurate model spends more ACs")]))
    return out


def _check_gains_more(claim: Claim, records: SeededRecords, task: str, seeds, n_boot: int) -> dict:
    arms = [_vectors(records, task, st, seeds) for st in (claim.stage, claim.other, *claim.second)]
    if not all(arms) or len({v.size for vs in arms for v in vs}) != 1:
        return _row()
    ci = stats.pooled_contrast_ci([arms[0], arms[3]], [arms[1], arms[2]], n_boot=n_boot)
    verdict = INCONCLUSIVE if ci["low"] <= 0.0 <= ci["high"] else decide(ci["low"], ci["high"], 0.0, at_most=False)
    return _row(ci=ci, basis=f"paired bootstrap, seeds {'/'.join(map(str, ci['seeds_plus'] + ci['seeds_minus']))}",
                verdict=verdict)


def _seed_ci(values: list[float]) -> tuple[dict, str]:
    ci = stats.mean_ci(values)
    if ci["n"] == 1:
        return {**ci, "low": ci["mean"], "high": ci["mean"]}, "1 seed: point"
    return ci, f"t interval, {ci['n']} seeds"


def _final_epoch(record: dict | None, arm: str) -> dict | None:
    hist = (((record or {}).get("metrics") or {}).get(arm) or {}).get("history") or []
    return hist[-1] if hist else None


def _check_cut(claim: Claim, records: SeededRecords, task: str, seeds) -> dict:
    if claim.stage == "activity_ablation":          # one run with the loss, one without
        rec = records.get((task, claim.stage, 0))
        with_, without = _final_epoch(rec, "with"), _final_epoch(rec, "without")
        pairs = [] if not with_ or not without else [(with_.get(claim.metric), without.get(claim.metric))]
        basis_word = "1 run each: point"
    else:
        a, b = (_present(records, task, st, seeds) for st in (claim.stage, claim.other))
        pairs = [(_metric(a[s], claim.metric), _metric(b[s], claim.metric)) for s in a if s in b]
        basis_word = None
    changes = [100.0 * (x / y - 1.0) for x, y in pairs if x is not None and y]
    if not changes:
        return _row()
    ci, basis = _seed_ci(changes)
    return _row(ci=ci, basis=basis_word or basis, verdict=decide(ci["low"], ci["high"], -MATERIAL_PERCENT, True),
                note=f"% change of {claim.metric} against {claim.other}" if claim.other != "baseline" else "")


def _check_layers(claim: Claim, records: SeededRecords, task: str) -> dict:
    rec = records.get((task, claim.stage, 0))
    with_, without = _final_epoch(rec, "with"), _final_epoch(rec, "without")
    if not with_ or not without or not with_.get("layer_asr"):
        return _row()
    rel = [100.0 * (a / b - 1.0) for a, b in zip(with_["layer_asr"], without["layer_asr"])]
    cut = [i for i, r in enumerate(rel) if r <= -MATERIAL_PERCENT]
    verdict = REPRODUCED if len(cut) == len(rel) else NOT_REPRODUCED
    return _row(ours=f"{len(cut)} of {len(rel)} layers", basis="1 run each: points", verdict=verdict,
                note="ASR change per layer: " + ", ".join(f"L{i + 1} {r:+.2f} %" for i, r in enumerate(rel)))


#: The sweep knob and the paper's chosen value (``data/paper``'s ablations) and the Table II
#: stage whose accuracy the paper gives at that value.
SWEEPS = {"budget_sweep": ("budget", "fig_4a", "chosen_ac_budget", "spatial_fisher_asr"),
          "base_sweep": ("base", "fig_4b", "chosen_pca_base", "temporal_pca")}


def _check_sweep(claim: Claim, records: SeededRecords, task: str, level: float = 0.95) -> dict:
    knob, fig, chosen_key, paper_stage = SWEEPS[claim.stage]
    chosen = load_paper_results()["ablations"][fig][chosen_key]
    rec, base = records.get((task, claim.stage, 0)), records.get((task, *REFERENCE))
    points = {p.get(knob): p for p in ((rec or {}).get("metrics") or {}).get("points") or []}
    n = None if base is None else _metric(base, "dev_examples")
    if chosen not in points or 1.0 not in points or not n:
        return _row()
    p_change = _paper_accuracy_change(Claim(claim.artifact, "", "keeps", paper_stage), task)
    acc, ref = points[chosen]["dev_accuracy"], points[1.0]["dev_accuracy"]
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2.0)
    half = z * (stats.sampling_error(acc, int(n)) ** 2 + stats.sampling_error(ref, int(n)) ** 2) ** 0.5
    ci = {"diff": acc - ref, "low": acc - ref - half, "high": acc - ref + half}
    verdict = INCONCLUSIVE if p_change is None else decide(ci["low"], ci["high"], p_change - ACCURACY_TOLERANCE, False)
    return _row(ci=ci, basis="binomial, unpaired, 1 run", verdict=verdict,
                note=f"{knob} {chosen:g} against 1.0; the paper's change: Table II {paper_stage}")


def check_claim(claim: Claim, records: SeededRecords, task: str, seeds: Iterable[int] | None = None,
                n_boot: int = 10000) -> dict:
    """One claim of ``task`` decided by its rule (:data:`RULES`): ``{"claim", "paper", "ours",
    "95% interval", "basis", "verdict", "note", "low", "high"}`` (cells formatted; ``paper``:
    the paper's own number for the same quantity where it gives one)."""
    if not isinstance(claim, Claim):
        raise ValueError(f"`claim` must be a Claim (see CLAIMS); got {type(claim).__name__}")
    seeds = None if seeds is None else list(seeds)
    paper = _paper_accuracy_change(claim, task)
    if claim.kind == "beats":
        out = _check_pair(claim, records, task, seeds, 0.0, n_boot)
    elif claim.kind == "keeps":
        threshold = None if paper is None else paper - ACCURACY_TOLERANCE
        out = _row() if threshold is None else _check_pair(claim, records, task, seeds, threshold, n_boot)
    elif claim.kind == "gains more":
        out = _check_gains_more(claim, records, task, seeds, n_boot)
    elif claim.kind == "cuts":
        out = _check_cut(claim, records, task, seeds)
        paper = _paper_cut(claim, task)
    elif claim.kind == "#C kept":
        out, paper = _check_c_kept(claim, records, task, seeds)
    elif claim.kind == "every layer's ASR cut":
        out = _check_layers(claim, records, task)
    else:
        out = _check_sweep(claim, records, task)
        paper = _paper_accuracy_change(Claim(claim.artifact, "", "keeps", SWEEPS[claim.stage][3]), task)
    if claim.kind in ("beats", "keeps", "gains more", "sweep keeps"):
        out["note"] = "; ".join(filter(None, [out["note"], paper_outside(paper, out["low"], out["high"])]))
    return {"claim": claim.words, "paper": _cell(paper), **out}


def _paper_cut(claim: Claim, task: str) -> float | None:
    if claim.paper_table is None:
        return None
    a, b = (paper_value(claim.paper_table, task, st, "latency" if claim.metric == "mean_latency" else claim.metric)
            for st in (claim.stage, claim.other))
    return None if a is None or not b else 100.0 * (a / b - 1.0)


def _check_c_kept(claim: Claim, records: SeededRecords, task: str, seeds) -> tuple[dict, float | None]:
    p_a, p_b = (paper_value("table_iii", task, st, "normalized_c") for st in (claim.stage, claim.other))
    paper = None if p_a is None or not p_b else 100.0 * p_a / p_b
    base = records.get((task, *REFERENCE))
    ref = None if base is None else _metric(base, "normalized_c")
    values = [100.0 * v / ref for v in _values(_present(records, task, claim.stage, seeds), "normalized_c")] if ref else []
    if not values or paper is None:
        return _row(ours=NOT_RUN if not values else _cell(values[0])), paper
    ci, basis = _seed_ci(values)
    return _row(ci=ci, basis=basis, verdict=decide(ci["low"], ci["high"], paper + ACS_SLACK, at_most=True),
                note="% of the seed-0 baseline's Normalized #C"), paper


def claim_stages(artifact: str, claims=CLAIMS) -> tuple[str, ...]:
    """The stages the claims of ``artifact`` read, and the baseline (the reference)."""
    names = [n for c in claims if c.artifact == artifact for n in (c.stage, c.other, *(c.second or ()))]
    return tuple(dict.fromkeys([*names, REFERENCE[0]]))


def collect_claim_records(artifacts: Iterable[str], tasks: Iterable[str], seeds: Iterable[int],
                          profile: str = "smoke", recompute: bool = False, **kwargs) -> dict:
    """``{(task, stage, seed): record_or_None}`` of every stage the claims of ``artifacts`` read
    (:func:`claim_stages`, by :func:`~stpcore.report.seeds.collect_seeded_for`; ``kwargs``:
    its ``getter``, ``known``, ``known_seed``)."""
    out: dict = {}
    for artifact in artifacts:
        out.update(collect_seeded_for(artifact, list(tasks), seeds, profile, recompute,
                                      stages=claim_stages(artifact), **kwargs))
    return out


def claims_table(records: SeededRecords, tasks: Iterable[str] = ("sst2", "mrpc"), artifacts: Iterable[str] | None = None,
                 seeds: Iterable[int] | None = None, claims=CLAIMS, n_boot: int = 10000) -> pd.DataFrame:
    """Every claim of ``claims`` (of ``artifacts``, default all) per task, by :func:`check_claim`;
    claims of the artifacts the paper shows on SST-2 only are checked on SST-2 only. Index
    ``(artifact, task)``; columns :data:`COLUMNS`."""
    tasks, wanted = list(tasks), None if artifacts is None else set(artifacts)
    rows, index = [], []
    for claim in claims:
        if wanted is not None and claim.artifact not in wanted:
            continue
        for task in tasks:
            if claim.artifact in SST2_ONLY and task != "sst2":
                continue
            row = check_claim(claim, records, task, seeds, n_boot)
            rows.append([row[c] for c in COLUMNS])
            index.append((claim.artifact, task))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["artifact", "task"]), columns=COLUMNS)


def verdict_counts(table: pd.DataFrame) -> str:
    """One sentence: how many of the claims in ``table`` (:func:`claims_table`) are reproduced,
    not reproduced and inconclusive."""
    counts = table["verdict"].value_counts()
    return (f"Of {len(table)} claims checked: " + ", ".join(f"{int(counts.get(v, 0))} {v}" for v in
                                                          (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)) + ".")
