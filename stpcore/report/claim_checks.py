"""How each kind of claim of the paper is decided (the claims themselves: :mod:`stpcore.report.claims`).

A :class:`Claim` names two stages (or a sweep, or an ablation record) and a ``kind``; :data:`RULES`
says in words how each kind is decided and :func:`check_claim` decides it from records
``{(task, stage, seed): record_or_None}``: "reproduced" / "not reproduced" / "inconclusive" from a
95 % interval against a threshold (:func:`stpcore.report.verdicts.decide`; an interval that
touches its threshold is inconclusive), or "by construction" / "not tested" where a claim cannot
be measured here. Accuracy comparisons pair the dev examples and use the seeds both stages have
(the seed-0 baseline for ``baseline``): pooling three seeds of one stage against one of another
would mix in a seed spread the interval does not cover.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from . import stats
from .notes import paper_value
from .paper import load_paper_results
from .seeds import REFERENCE, SeededRecords, _cell, _interval, _metric, _present, _values
from .summary import ACCURACY_TOLERANCE, ACS_SLACK
from .tables import NO_METRIC, NOT_RUN
from .verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, decide, paper_outside, seed_interval

BY_CONSTRUCTION, NOT_TESTED = "by construction", "not tested"
#: A change smaller than this (% of the value) is no cut, and a quantity moving less over a run does not move.
MATERIAL_PERCENT = 1.0
#: An interval end within this many points of its threshold is noted (a rerun could move the verdict).
FRAGILE_POINTS = 0.1

#: How each kind of claim is decided (``{tol}``, ``{slack}``, ``{material}`` filled by :func:`rules_text`).
RULES = {
    "beats": "the stage's dev accuracy minus the other's, on the seeds both have, paired over the dev "
             "examples (bootstrap), must lie above 0. Where the claim compares models at one budget they must "
             "end at comparable ACs (within {slack:g} points), or the winner at fewer; otherwise inconclusive.",
    "keeps": "the stage's dev accuracy minus the other's (paired, as above) must lie above -{tol:g} point, the "
             "headline's tolerance; inconclusive when the other model is not above the majority class.",
    "gains more": "the stage's accuracy gain over the other minus the second pair's gain (a difference in "
                  "differences of four stages, paired over the dev examples on the seeds all have) must lie above 0.",
    "cuts": "the stage's metric against the other's, in % change per seed both have (Student t interval over "
            "seeds; one run: the point), must lie below -{material:g} %. For the activity-loss ablation, a "
            "quantity that moves by less than {material:g} % over the run in both arms cannot show a cut.",
    "#C kept": "the stage's Normalized #C as % of the seed-0 baseline's (Student t interval over seeds) must be at "
               "most the paper's share + {slack:g} points.",
    "every layer's ASR cut": "each layer's mean ASR with the activity loss must be at least {material:g} % below the "
                             "run without it; a layer that moves in neither arm over the run cannot be decided.",
    "sweep keeps": "the dev accuracy at the paper's chosen value minus the sweep's unpruned point (1.0) must lie "
                   "above -{tol:g} point (binomial interval, unpaired: sweep points keep no per-example predictions).",
    "sweep drops": "the dev accuracy at the sweep's most aggressive value minus its unpruned point must lie below "
                   "-{tol:g} point (binomial interval, unpaired).",
    "sweep falls": "the metric must fall at every step of the sweep (computed, not sampled: the points decide).",
    "untested": "what the claim needs is not in our runs; the note says why.",
}


@dataclass(frozen=True)
class Claim:
    """One claim of the paper about ``artifact`` (a key of ``TABLE_STAGES``): ``words`` as the
    book shows them, decided by the rule ``kind`` (a key of :data:`RULES`) on ``stage`` against
    ``other``. ``second``: the pair a "gains more" claim compares with; ``metric``: the record's
    metric of a "cuts" / "sweep falls" claim; ``paper_table``: where the paper's own number comes
    from (None: it gives none); ``same_acs``: whether the claim compares models at one budget;
    ``why``: for kind "untested" why not, and for a claim that holds by construction what sets it."""
    artifact: str
    words: str
    kind: str
    stage: str
    other: str = "baseline"
    second: tuple[str, str] | None = None
    metric: str = "dev_accuracy"
    paper_table: str | None = "table_ii"
    same_acs: bool = True
    why: str = ""

    def __post_init__(self):
        if self.kind not in RULES:
            raise ValueError(f"`kind` must be one of {list(RULES)}; got {self.kind!r}")
        if (self.kind == "gains more") != (self.second is not None):
            raise ValueError(f"`second` is needed by kind 'gains more' and only by it; got kind {self.kind!r} "
                             f"with second={self.second!r}")


def rules_text(kinds, tolerance: float = ACCURACY_TOLERANCE, slack: float = ACS_SLACK) -> str:
    """The rules of ``kinds`` in words, one bullet each, in :data:`RULES` order."""
    return "\n".join(f"- *{kind}*: {text.format(tol=tolerance, slack=slack, material=MATERIAL_PERCENT)}"
                     for kind, text in RULES.items() if kind in set(kinds))


def row(ours=NOT_RUN, ci=None, basis=NO_METRIC, verdict=INCONCLUSIVE, note="") -> dict:
    """A claim's cells (``ci``: ``{"diff" or "mean", "low", "high"}``; a "point" basis shows no interval)."""
    point = ci is not None and "point" in basis
    return {"ours": ours if ci is None else _cell(ci["diff"] if "diff" in ci else ci["mean"]),
            "95% interval": "n/a (point)" if point else _interval(ci), "basis": basis, "verdict": verdict,
            "note": note, "low": None if ci is None else ci["low"], "high": None if ci is None else ci["high"]}


def _join(*notes) -> str:
    return "; ".join(n for n in notes if n)


def paper_accuracy_change(claim: Claim, task: str, stages=None) -> float | None:
    """The paper's accuracy change ``stage - other`` (``- (second[0] - second[1])``) in points."""
    if claim.paper_table is None:
        return None
    names = stages or [claim.stage, claim.other, *(claim.second or ())]
    vals = [paper_value(claim.paper_table, task, st, "accuracy") for st in names]
    return None if None in vals else vals[0] - vals[1] - (vals[2] - vals[3] if len(vals) == 4 else 0.0)


def _matched(records: SeededRecords, task: str, stages, seeds) -> dict[str, list]:
    """``{stage: [0/1 vectors]}`` on the seeds every stage has (the seed-0 baseline for ``baseline``)."""
    present = {st: _present(records, task, st, [REFERENCE[1]] if st == REFERENCE[0] else seeds) for st in stages}
    common = set.intersection(*[set(p) for st, p in present.items() if st != REFERENCE[0]] or [set()])
    out = {}
    for st, recs in present.items():
        use = recs if st == REFERENCE[0] else {s: r for s, r in recs.items() if s in common}
        out[st] = [v for v in (stats.correct_vector(r) for r in use.values()) if v is not None]
    return out


def _seeds_word(vectors: dict[str, list]) -> str:
    n = {len(v) for st, v in vectors.items() if st != REFERENCE[0]}
    k = n.pop() if len(n) == 1 else 0
    return f"paired bootstrap, {k} seed{'s' if k > 1 else ''} each" + ("" if k > 1 else " (seed spread not covered)")


def _mean_acs(records: SeededRecords, task: str, stage: str, seeds) -> float | None:
    acs = _values(_present(records, task, stage, seeds), "acs_fraction", 100.0)
    return sum(acs) / len(acs) if acs else None


def _size_note(paper: float | None, out: dict) -> str:
    """Where the paper's number falls against our interval; for a reproduced direction whose size is
    far from the paper's, that the direction holds but not the size."""
    where = paper_outside(paper, out["low"], out["high"])
    if where and out["verdict"] == REPRODUCED and paper and paper > 0 and out["low"] > paper:
        return f"the direction holds; our effect is {float(out['ours']) / paper:.0f}x the paper's {paper:+.2f}"
    return where


def check_pair(claim: Claim, records: SeededRecords, task: str, seeds, n_boot: int) -> dict:
    """Kinds "beats" (threshold 0) and "keeps" (threshold -tolerance)."""
    vecs = _matched(records, task, (claim.stage, claim.other), seeds)
    if not vecs[claim.stage] or not vecs[claim.other] or vecs[claim.stage][0].size != vecs[claim.other][0].size:
        return row()
    d = stats.pooled_pair_bootstrap_ci(vecs[claim.other], vecs[claim.stage], n_boot=n_boot)
    threshold = 0.0 if claim.kind == "beats" else -ACCURACY_TOLERANCE
    verdict = INCONCLUSIVE if d["low"] <= threshold <= d["high"] else decide(d["low"], d["high"], threshold, False)
    out = row(ci=d, basis=_seeds_word(vecs), verdict=verdict)
    notes = []
    if min(abs(d["low"] - threshold), abs(d["high"] - threshold)) < FRAGILE_POINTS:
        notes.append(f"an end of the interval lies within {FRAGILE_POINTS:g} point of {threshold:+g}: "
                     f"a rerun could move the verdict")
    trivial = [st for st in (claim.stage, claim.other)
               if any(stats.above_majority(r) is False for r in _present(records, task, st, seeds).values())]
    if claim.kind == "keeps" and claim.other in trivial:
        out["verdict"] = NOT_REPRODUCED if out["verdict"] == NOT_REPRODUCED else INCONCLUSIVE
        notes.append(f"{claim.other} is not above the majority class: no accuracy to lose")
    elif len(trivial) == 2:
        notes.append("neither model is above the majority class")
    a, b = (_mean_acs(records, task, st, seeds) for st in (claim.stage, claim.other))
    if claim.kind == "beats" and claim.same_acs and a is not None and b is not None and abs(a - b) > ACS_SLACK:
        cheaper_wins = (out["verdict"] == REPRODUCED and a <= b) or (out["verdict"] == NOT_REPRODUCED and a >= b)
        if not cheaper_wins:
            out["verdict"] = INCONCLUSIVE
        notes.append(f"not at the same ACs: {claim.stage} keeps {a:.1f} %, {claim.other} {b:.1f} %"
                     + ("" if cheaper_wins else "; the more accurate model spends more ACs"))
    out["note"] = _join(*notes)
    return out


def check_gains_more(claim: Claim, records: SeededRecords, task: str, seeds, n_boot: int) -> dict:
    names = (claim.stage, claim.other, *claim.second)
    vecs = _matched(records, task, names, seeds)
    if not all(vecs.values()) or len({v.size for vs in vecs.values() for v in vs}) != 1:
        return row()
    ci = stats.pooled_contrast_ci([vecs[names[0]], vecs[names[3]]], [vecs[names[1]], vecs[names[2]]], n_boot=n_boot)
    verdict = INCONCLUSIVE if ci["low"] <= 0.0 <= ci["high"] else decide(ci["low"], ci["high"], 0.0, False)
    return row(ci=ci, basis=_seeds_word(vecs), verdict=verdict,
               note=f"({names[0]} - {names[1]}) - ({names[2]} - {names[3]})")


def _history(record: dict | None, arm: str) -> list[dict]:
    return (((record or {}).get("metrics") or {}).get(arm) or {}).get("history") or []


def _moves(values: list[float]) -> bool:
    """Whether a quantity moved by at least :data:`MATERIAL_PERCENT` % of its mean over a run."""
    vals = [v for v in values if v is not None]
    return len(vals) > 1 and (max(vals) - min(vals)) >= MATERIAL_PERCENT / 100.0 * abs(statistics.mean(vals))


def check_cut(claim: Claim, records: SeededRecords, task: str, seeds) -> dict:
    note = ""
    if claim.stage == "activity_ablation":          # one run with the loss, one without
        rec = records.get((task, claim.stage, 0))
        arms = [_history(rec, arm) for arm in ("with", "without")]
        pairs = [] if not all(arms) else [(arms[0][-1].get(claim.metric), arms[1][-1].get(claim.metric))]
        still = pairs and not any(_moves([h.get(claim.metric) for h in arm]) for arm in arms)
        note = f"{claim.metric} moves in neither arm over the run: it cannot show a cut" if still else ""
    else:
        a, b = (_present(records, task, st, seeds) for st in (claim.stage, claim.other))
        pairs = [(_metric(a[s], claim.metric), _metric(b[s], claim.metric)) for s in a if s in b]
        still = False
    changes = [100.0 * (x / y - 1.0) for x, y in pairs if x is not None and y]
    if not changes:
        return row()
    ci, basis = seed_interval(changes, word="run" if claim.stage == "activity_ablation" else "seed")
    verdict = INCONCLUSIVE if still else decide(ci["low"], ci["high"], -MATERIAL_PERCENT, True)
    return row(ci=ci, basis=basis, verdict=verdict,
               note=_join(note, f"% change of {claim.metric} against {claim.other}" if claim.other != "baseline" else ""))


def check_layers(claim: Claim, records: SeededRecords, task: str) -> dict:
    rec = records.get((task, claim.stage, 0))
    arms = [_history(rec, arm) for arm in ("with", "without")]
    if not all(arms) or not arms[0][-1].get("layer_asr"):
        return row()
    rel = [100.0 * (a / b - 1.0) for a, b in zip(arms[0][-1]["layer_asr"], arms[1][-1]["layer_asr"])]
    still = [i for i in range(len(rel)) if not any(_moves([h["layer_asr"][i] for h in arm]) for arm in arms)]
    cut = [i for i, r in enumerate(rel) if r <= -MATERIAL_PERCENT]
    uncut_movers = [i for i in range(len(rel)) if i not in cut and i not in still]
    verdict = REPRODUCED if len(cut) == len(rel) else NOT_REPRODUCED if uncut_movers else INCONCLUSIVE
    return row(ours=f"{len(cut)} of {len(rel)} layers", basis="1 run each: points", verdict=verdict,
               note=_join("ASR change per layer: " + ", ".join(f"L{i + 1} {r:+.2f} %" for i, r in enumerate(rel)),
                          f"{', '.join(f'L{i + 1}' for i in still)} move in neither arm over the run" if still else ""))


#: Per sweep stage, its knob, the paper's figure key and chosen-value key (``data/paper``'s
#: ablations), the Table II stage whose accuracy the paper gives at that value, and the end of
#: the sweep that prunes most ("min" / "max" of the knob).
SWEEPS = {"budget_sweep": ("budget", "fig_4a", "chosen_ac_budget", "spatial_fisher_asr", "min"),
          "base_sweep": ("base", "fig_4b", "chosen_pca_base", "temporal_pca", "max")}


def check_sweep(claim: Claim, records: SeededRecords, task: str, level: float = 0.95) -> dict:
    knob, fig, chosen_key, paper_stage, extreme = SWEEPS[claim.stage]
    rec, base = records.get((task, claim.stage, 0)), records.get((task, *REFERENCE))
    points = {p.get(knob): p for p in ((rec or {}).get("metrics") or {}).get("points") or []}
    if claim.kind == "sweep falls":
        xs = sorted(points, reverse=extreme == "min")           # from the mildest to the most aggressive
        vals = [points[x].get(claim.metric) for x in xs]
        if len(vals) < 2 or None in vals:
            return row()
        falls = all(b < a for a, b in zip(vals, vals[1:]))
        return row(ours=" > ".join(f"{100 * v:.1f}" for v in vals), basis="computed: points",
                   verdict=REPRODUCED if falls else NOT_REPRODUCED, note=f"{claim.metric} (%) at {knob} {xs}")
    x = load_paper_results()["ablations"][fig][chosen_key] if claim.kind == "sweep keeps" else \
        (min if extreme == "min" else max)(points, default=None)
    n = None if base is None else _metric(base, "dev_examples")
    if x not in points or 1.0 not in points or not n:
        return row()
    ci = stats.unpaired_binomial_ci(points[1.0]["dev_accuracy"], points[x]["dev_accuracy"], int(n), level)
    keeps = claim.kind == "sweep keeps"
    verdict = decide(ci["low"], ci["high"], -ACCURACY_TOLERANCE, at_most=not keeps)
    notes = [f"{knob} {x:g} against 1.0, one run (seed 0)"]
    p_acs = paper_value("table_ii", task, paper_stage, "acs_percent")
    ours_acs = points[x].get("acs_fraction")
    if keeps and p_acs is not None and ours_acs is not None and 100 * ours_acs < p_acs - ACS_SLACK:
        notes.append(f"at a deeper cut than the paper's: {100 * ours_acs:.1f} % of the ACs against {p_acs:g} %")
    return row(ci=ci, basis="binomial, unpaired, 1 run", verdict=verdict, note=_join(*notes))


def check_c_kept(claim: Claim, records: SeededRecords, task: str, seeds) -> tuple[dict, float | None]:
    p_a, p_b = (paper_value("table_iii", task, st, "normalized_c") for st in (claim.stage, claim.other))
    paper = None if p_a is None or not p_b else 100.0 * p_a / p_b
    base = records.get((task, *REFERENCE))
    ref = None if base is None else _metric(base, "normalized_c")
    values = [100.0 * v / ref for v in _values(_present(records, task, claim.stage, seeds), "normalized_c")] if ref else []
    if not values or paper is None:
        return row(ours=NOT_RUN if not values else _cell(values[0])), paper
    ci, basis = seed_interval(values)
    return row(ci=ci, basis=basis, verdict=decide(ci["low"], ci["high"], paper + ACS_SLACK, at_most=True),
               note="% of the seed-0 baseline's Normalized #C"), paper


def paper_cut(claim: Claim, task: str) -> float | None:
    """The paper's % change of a "cuts" claim's metric (Table III), or None."""
    if claim.paper_table is None:
        return None
    key = "latency" if claim.metric == "mean_latency" else claim.metric
    a, b = (paper_value(claim.paper_table, task, st, key) for st in (claim.stage, claim.other))
    return None if a is None or not b else 100.0 * (a / b - 1.0)


def check_claim(claim: Claim, records: SeededRecords, task: str, seeds=None, n_boot: int = 10000) -> dict:
    """One claim of ``task`` decided by its rule (:data:`RULES`): ``{"claim", "paper", "ours",
    "95% interval", "basis", "verdict", "note", "low", "high"}`` (cells formatted; ``paper``: the
    paper's own number for the same quantity where it gives one)."""
    if not isinstance(claim, Claim):
        raise ValueError(f"`claim` must be a Claim (see stpcore.report.claims.CLAIMS); got {type(claim).__name__}")
    seeds = None if seeds is None else list(seeds)
    paper = paper_accuracy_change(claim, task)
    if claim.kind in ("beats", "keeps"):
        out = check_pair(claim, records, task, seeds, n_boot)
    elif claim.kind == "gains more":
        out = check_gains_more(claim, records, task, seeds, n_boot)
    elif claim.kind == "cuts":
        out, paper = check_cut(claim, records, task, seeds), paper_cut(claim, task)
    elif claim.kind == "#C kept":
        out, paper = check_c_kept(claim, records, task, seeds)
    elif claim.kind == "every layer's ASR cut":
        out = check_layers(claim, records, task)
    elif claim.kind == "untested":
        out = row(ours=NO_METRIC, verdict=NOT_TESTED, note=claim.why)
    else:
        out = check_sweep(claim, records, task)
        paper = paper_accuracy_change(claim, task, [SWEEPS[claim.stage][3], "baseline"]) \
            if claim.kind == "sweep keeps" else None
    if claim.kind in ("beats", "keeps", "gains more", "sweep keeps"):
        out["note"] = _join(out["note"], _size_note(paper, out))
    if claim.why and claim.kind != "untested" and out["ours"] != NOT_RUN:
        out["verdict"], out["note"] = BY_CONSTRUCTION, _join(claim.why, out["note"])
    return {"claim": claim.words, "paper": _cell(paper), **out}
