"""The headline claim and the rerun's targets, decided from intervals over seeds.

Each claim (accuracy kept, ACs kept, latency kept) of a stage is checked against a threshold by
:func:`check_claim` from the intervals of :mod:`stpcore.report.seeds` (paired bootstrap for
accuracy, Student t over seeds for ACs and latency) and worded "reproduced" / "not reproduced" /
"inconclusive" (:func:`decide`). :func:`headline_verdicts` takes the thresholds from the paper's
numbers, :func:`check_rerun_targets` from the targets set before the rerun, :func:`overall_verdicts`
gives one verdict per task. Records come as ``{(task, stage, seed): record_or_None}``.
"""
from __future__ import annotations

from typing import Iterable

import pandas as pd

from . import stats
from .notes import paper_value
from .seeds import (REFERENCE, SeededRecords, _cell, _interval, _metric, _present, _values,
                    accuracy_change)
from .summary import ACCURACY_TOLERANCE, ACS_SLACK, LATENCY_SLACK, paper_latency_percent
from .tables import NO_METRIC, NOT_RUN

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


VERDICT_RULES = (
    "Each claim is decided from a 95 % interval of our estimate against its threshold: "
    "'reproduced' when the whole interval lies on the claim's side of the threshold, 'not reproduced' "
    "when the whole interval lies on the other side, 'inconclusive' when it straddles the threshold "
    "(or there is nothing to decide from). Accuracy: the two-stage model's dev accuracy minus the "
    "seed-0 baseline's (paired bootstrap over dev examples, pooled over the two-stage seeds; a binomial "
    "unpaired interval where records lack per-example predictions) must stay above -{tol:g} points. "
    "ACs kept (% of the unpruned model) must be at most the paper's share + {slack:g} points, and "
    "latency kept (two-stage mean timesteps over the seed-0 baseline's, %) at most the paper's share + {lat:g} "
    "points; "
    "both use a Student t interval over seeds, and with a single seed the point value decides "
    "(basis '1 seed: point').")


def verdict_rules(accuracy_tolerance: float = ACCURACY_TOLERANCE, acs_slack: float = ACS_SLACK,
                  latency_slack: float = LATENCY_SLACK) -> str:
    """The rules of :func:`headline_verdicts` in words (for the notebook)."""
    return VERDICT_RULES.format(tol=accuracy_tolerance, slack=acs_slack, lat=latency_slack)


def decide(low: float | None, high: float | None, threshold: float, at_most: bool) -> str:
    """``at_most``: the claim is "value <= threshold" (else "value >= threshold"). Reproduced
    when the interval ``[low, high]`` lies entirely on the claim's side, not reproduced when it
    lies entirely on the other side, inconclusive otherwise or without an interval."""
    if low is None or high is None:
        return INCONCLUSIVE
    if at_most:
        return REPRODUCED if high <= threshold else NOT_REPRODUCED if low > threshold else INCONCLUSIVE
    return REPRODUCED if low >= threshold else NOT_REPRODUCED if high < threshold else INCONCLUSIVE


def seed_interval(values: list[float], level: float = 0.95, word: str = "seed") -> tuple[dict, str]:
    """Student t interval of the mean of ``values`` (one per ``word``: seed, run) and its basis;
    with one value the point, as a zero-width interval (basis "1 seed: point")."""
    ci = stats.mean_ci(values, level)
    if ci["n"] == 1:
        ci = {**ci, "low": ci["mean"], "high": ci["mean"]}
        return ci, f"1 {word}: point"
    return ci, f"t interval, {ci['n']} {word}s"


CLAIMS = ("accuracy kept", "ACs kept", "latency kept")


def check_claim(records_by_seed: SeededRecords, task: str, stage: str, claim: str, threshold: float | None,
                seeds: Iterable[int] | None = None, n_boot: int = 10000, level: float = 0.95) -> dict:
    """One claim about ``stage`` of ``task`` against ``threshold``, decided by :func:`decide`.

    * ``"accuracy kept"``: the change against the seed-0 baseline (:func:`accuracy_change`) must
      be >= ``threshold`` points. A baseline not above its dev majority class
      (:func:`stats.above_majority`) makes it at best inconclusive: a model that predicts one
      class keeps that accuracy too (``note`` says so).
    * ``"ACs kept"`` (% of the unpruned model) and ``"latency kept"`` (mean timesteps over the
      seed-0 baseline's, %) must be <= ``threshold``: Student t interval over seeds, the point
      value with one seed.

    Without a ``threshold`` the claim is inconclusive. Returns ``{"ours", "interval", "basis",
    "verdict", "note", "low", "high"}`` (cells formatted; ``low`` / ``high`` the interval's ends
    or None)."""
    if claim not in CLAIMS:
        raise ValueError(f"`claim` must be one of {list(CLAIMS)}; got {claim!r}")
    base = records_by_seed.get((task, *REFERENCE))
    pruned = _present(records_by_seed, task, stage, seeds)
    out = {"ours": NOT_RUN, "interval": NO_METRIC, "basis": NO_METRIC, "verdict": INCONCLUSIVE, "note": "",
           "low": None, "high": None}
    if threshold is None:                   # nothing to decide against
        return {**out, "ours": NO_METRIC}
    if claim == "accuracy kept":
        ch = accuracy_change(records_by_seed, task, stage, seeds, n_boot, level)
        if ch is None:
            return out
        out.update(ours=_cell(ch["diff"]), interval=_interval(ch), basis=ch["basis"], low=ch["low"], high=ch["high"],
                   verdict=decide(ch["low"], ch["high"], threshold, at_most=False))
        if stats.above_majority(base, level) is False:
            out["note"] = (f"the baseline ({_metric(base, 'dev_accuracy'):.2f} %) is not above the majority "
                           f"class ({stats.majority_rate(base)[1]:.2f} %): no accuracy to lose")
            out["verdict"] = NOT_REPRODUCED if out["verdict"] == NOT_REPRODUCED else INCONCLUSIVE
        return out
    t_conv = None if base is None else _metric(base, "mean_latency")
    values = (_values(pruned, "acs_fraction", 100.0) if claim == "ACs kept" else
              [100.0 * v / t_conv for v in _values(pruned, "mean_latency")] if t_conv else [])
    if not values:
        out["ours"] = NOT_RUN if not pruned or base is None else NO_METRIC
        return out
    ci, basis = seed_interval(values, level)
    out.update(ours=_cell(ci["mean"]), interval=_interval(ci) if ci["n"] > 1 else "n/a (1 seed)", basis=basis,
               verdict=decide(ci["low"], ci["high"], threshold, at_most=True), low=ci["low"], high=ci["high"])
    return out


def place_paper(paper: float | None, low: float | None, high: float | None) -> str:
    """Where the paper's accuracy change falls against our interval ``[low, high]``, and where 0
    does (whether the pruned model is measurably better or worse than its baseline): words for
    the note, or "" when there is no interval or both fall inside it."""
    if low is None or high is None:
        return ""
    words = [] if low <= 0 <= high else ["worse than the baseline (interval below 0)" if high < 0
                                          else "better than the baseline (interval above 0)"]
    return "; ".join(filter(None, [*words, paper_outside(paper, low, high)]))


def paper_outside(paper: float | None, low: float | None, high: float | None) -> str:
    """"the paper's +x lies above/below our interval" when the paper's number falls outside
    ``[low, high]``, else "" (also without a number or an interval)."""
    if paper is None or low is None or high is None or low <= paper <= high:
        return ""
    return f"the paper's {paper:+.2f} lies {'above' if paper > high else 'below'} our interval"


def headline_verdicts(records_by_seed: SeededRecords, tasks: Iterable[str] = ("sst2", "mrpc"),
                      seeds: Iterable[int] | None = None, accuracy_tolerance: float = ACCURACY_TOLERANCE,
                      acs_slack: float = ACS_SLACK, latency_slack: float = LATENCY_SLACK,
                      n_boot: int = 10000, level: float = 0.95) -> pd.DataFrame:
    """The headline claim as three checks of the two-stage model per task (:data:`CLAIMS`, by
    :func:`check_claim`), "reproduced" / "not reproduced" / "inconclusive" by the rules of
    :func:`verdict_rules`: accuracy change >= -``accuracy_tolerance``, ACs and latency kept at
    most the paper's share + the slack. Index ``(task, claim)``; columns: criterion, the paper's
    number, our estimate, its interval, the basis of the interval, verdict, and a note where the
    verdict needs one (a cut well past the paper's is noted: the accuracy change is then measured
    at a deeper cut). ``seeds``: the two-stage seeds to use (default: all found)."""
    rows, index = [], []
    for task in tasks:
        p_base, p_two = (paper_value("table_iii", task, st, "accuracy") for st in ("baseline", "two_stage"))
        paper = {"accuracy kept": None if p_base is None or p_two is None else p_two - p_base,
                 "ACs kept": paper_value("table_ii", task, "two_stage", "acs_percent"),
                 "latency kept": paper_latency_percent(task)}
        for claim in CLAIMS:
            p_val = paper[claim]
            if claim == "accuracy kept":
                crit, threshold = f"change vs baseline >= -{accuracy_tolerance:g} pt", -accuracy_tolerance
            elif p_val is None:
                crit, threshold = f"{claim}: the paper gives no number", None
            else:
                slack = acs_slack if claim == "ACs kept" else latency_slack
                crit = f"{claim} <= paper's {p_val:{'g' if claim == 'ACs kept' else '.2f'}} % + {slack:g} pt"
                threshold = p_val + slack
            c = check_claim(records_by_seed, task, "two_stage", claim, threshold, seeds, n_boot, level)
            if claim != "accuracy kept" and c["high"] is not None and c["high"] < p_val - slack:
                c["note"] = "prunes further than the paper: the accuracy change is at a deeper cut"
            if claim == "accuracy kept":
                c["note"] = "; ".join(filter(None, [c["note"], place_paper(p_val, c["low"], c["high"])]))
            rows.append([crit, _cell(p_val), c["ours"], c["interval"], c["basis"], c["verdict"], c["note"]])
            index.append((task, claim))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["task", "claim"]),
                        columns=["criterion", "paper", "ours", "95% interval", "basis", "verdict", "note"])


#: Targets set before rerunning Tables II-V (from the paper's numbers, for our smaller model):
#: (task, stage, claim, threshold) for :func:`check_claim`.
RERUN_TARGETS = (("sst2", "temporal_retrain", "ACs kept", 70.0), ("sst2", "two_stage", "ACs kept", 47.0),
                 ("sst2", "two_stage", "latency kept", 67.0), ("sst2", "two_stage", "accuracy kept", -1.0),
                 ("mrpc", "two_stage", "ACs kept", 25.0), ("mrpc", "two_stage", "accuracy kept", -1.5))
TARGET_WORDS = {REPRODUCED: "met", NOT_REPRODUCED: "not met", INCONCLUSIVE: "inconclusive"}


def check_rerun_targets(records_by_seed: SeededRecords, tasks: Iterable[str] = ("sst2", "mrpc"),
                  targets=RERUN_TARGETS, seeds: Iterable[int] | None = None, n_boot: int = 10000,
                  level: float = 0.95) -> pd.DataFrame:
    """Each target of ``tasks`` by :func:`check_claim`: met / not met / inconclusive from the same
    intervals as the headline. Index ``(task, stage, claim)``."""
    tasks = list(tasks)
    rows, index = [], []
    for task, stage, claim, threshold in targets:
        if task not in tasks:
            continue
        c = check_claim(records_by_seed, task, stage, claim, threshold, seeds, n_boot, level)
        op = ">=" if claim == "accuracy kept" else "<="
        rows.append([f"{op} {threshold:g} {'pt' if claim == 'accuracy kept' else '%'}", c["ours"], c["interval"],
                     c["basis"], TARGET_WORDS[c["verdict"]], c["note"]])
        index.append((task, stage, claim))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["task", "stage", "claim"]),
                        columns=["target", "ours", "95% interval", "basis", "verdict", "note"])


def _reason(claim: str, row: pd.Series) -> str:
    if row["ours"] == NOT_RUN:
        return f"{claim}: not run"
    interval = "" if row["95% interval"] in (NO_METRIC, "n/a (1 seed)") else f" {row['95% interval']}"
    note = f"; {row['note']}" if row["note"] else ""
    return f"{claim}: {row['ours']}{interval} against {row['criterion']} ({row['basis']}{note})"


def overall_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """One verdict per task from :func:`headline_verdicts`: "reproduced" when every claim is,
    "not reproduced" when any claim is not, else "inconclusive"; ``because`` names the claims
    that decide it (with their notes)."""
    rows = {}
    for task, claims in verdicts.groupby(level="task", sort=False):
        claims = claims.droplevel("task")
        failed = claims[claims["verdict"] == NOT_REPRODUCED]
        open_ = claims[claims["verdict"] == INCONCLUSIVE]
        if not failed.empty:
            verdict, deciding = NOT_REPRODUCED, failed
        elif not open_.empty:
            verdict, deciding = INCONCLUSIVE, open_
        else:
            verdict, deciding = REPRODUCED, claims
        because = "; ".join(_reason(claim, row) for claim, row in deciding.iterrows())
        rows[task] = {"verdict": verdict, "because": because}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["verdict", "because"]).rename_axis("task")
