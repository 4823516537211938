"""Intervals and verdicts (stpcore.report.stats) and the seeded tables (stpcore.report.seeds),
on synthetic data and synthetic records; no pipeline."""
import math
import statistics

import numpy as np
import pytest

from stpcore.report import seeds, stats, summary, verdicts


# ---------------------------------------------------------------------------- bootstrap
def test_bootstrap_matches_closed_form_for_large_n():
    rng = np.random.default_rng(1)
    n = 20000
    a = (rng.random(n) < 0.80).astype(int)
    flip = rng.random(n) < 0.10                       # b disagrees with a on ~10 % of examples
    b = np.where(flip, 1 - a, a)
    ci = stats.paired_bootstrap_ci(a, b, n_boot=4000, seed=3)
    d = b - a
    half_closed = 1.96 * math.sqrt(np.var(d) / n) * 100
    assert ci["n"] == n
    assert ci["diff"] == pytest.approx(100 * d.mean())
    assert (ci["high"] - ci["low"]) / 2 == pytest.approx(half_closed, rel=0.10)
    assert ci["low"] < ci["diff"] < ci["high"]


def test_bootstrap_interval_covers_true_difference():
    rng = np.random.default_rng(7)
    n = 3000
    a = (rng.random(n) < 0.70).astype(int)
    # b: a copy of a, then 6 % of a's errors fixed -> true difference 0.3 * 0.06 * 100 = 1.8 pt in expectation
    fix = (a == 0) & (rng.random(n) < 0.06)
    b = np.where(fix, 1, a)
    true = 100 * 0.30 * 0.06
    ci = stats.paired_bootstrap_ci(a, b, n_boot=5000)
    assert ci["low"] <= true <= ci["high"]
    assert ci["low"] > 0                               # b only ever fixes errors: clearly better
    assert stats.verdict(ci) == "better"


def test_bootstrap_is_reproducible_and_identical_models_give_zero():
    a = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
    assert stats.paired_bootstrap_ci(a, a) == {"diff": 0.0, "low": 0.0, "high": 0.0, "n": 10}
    b = [1, 1, 1, 1, 0, 0, 0, 1, 1, 1]
    assert stats.paired_bootstrap_ci(a, b, seed=5) == stats.paired_bootstrap_ci(a, b, seed=5)


@pytest.mark.parametrize("a,b,match", [
    ([1, 0, 1], [1, 0], "correct_a.*correct_b.*equal lengths.*3 and 2"),
    ([1, 2, 0], [1, 0, 0], "correct_a.*only 0 and 1.*2"),
    ([1, 0], [0.5, 1], "correct_b.*only 0 and 1"),
    ([], [], "correct_a.*at least one"),
    ([[1, 0], [0, 1]], [[1, 0], [0, 1]], "correct_a.*1-D.*shape"),
    (["x", "y"], [1, 0], "correct_a.*0/1"),
])
def test_bootstrap_rejects_bad_inputs(a, b, match):
    with pytest.raises(ValueError, match=match):
        stats.paired_bootstrap_ci(a, b)


def test_bootstrap_rejects_bad_level_and_n_boot():
    with pytest.raises(ValueError, match="level.*between 0 and 1.*95"):
        stats.paired_bootstrap_ci([1, 0], [0, 1], level=95)
    with pytest.raises(ValueError, match="n_boot.*positive integer"):
        stats.paired_bootstrap_ci([1, 0], [0, 1], n_boot=0)


def test_pooled_bootstrap_averages_seed_differences():
    rng = np.random.default_rng(2)
    base = (rng.random(500) < 0.7).astype(int)
    s1, s2 = base.copy(), (rng.random(500) < 0.7).astype(int)
    ci = stats.pooled_bootstrap_ci(base, [s1, s2], n_boot=2000)
    assert ci["seeds"] == 2
    assert ci["diff"] == pytest.approx(100 * ((s1 - base).mean() + (s2 - base).mean()) / 2)
    assert ci["low"] <= ci["diff"] <= ci["high"]
    with pytest.raises(ValueError, match=r"correct_seeds\[1\].*equal lengths"):
        stats.pooled_bootstrap_ci(base, [s1, s2[:10]])
    with pytest.raises(ValueError, match="at least one"):
        stats.pooled_bootstrap_ci(base, [])


# ---------------------------------------------------------------------------- seeds, records, verdicts
def test_mean_ci_against_t_quantile():
    vals = [80.0, 82.0, 84.5]
    ci = stats.mean_ci(vals)
    sd = statistics.stdev(vals)
    half = 4.302653 * sd / math.sqrt(3)            # t(0.975, df = 2)
    assert ci["n"] == 3 and ci["mean"] == pytest.approx(sum(vals) / 3) and ci["sd"] == pytest.approx(sd)
    assert ci["low"] == pytest.approx(ci["mean"] - half, rel=1e-6)
    assert ci["high"] == pytest.approx(ci["mean"] + half, rel=1e-6)
    one = stats.mean_ci([81.0])
    assert one == {"mean": 81.0, "low": None, "high": None, "n": 1, "sd": None}
    assert stats.mean_ci([])["mean"] is None


def test_t_quantile_fallback_without_scipy(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert stats._t_quantile(0.975, 2) == pytest.approx(4.302653, rel=1e-6)
    assert stats._t_quantile(0.975, 30) == pytest.approx(2.042272, rel=1e-4)
    assert stats._t_quantile(0.95, 2) == pytest.approx(2.919986, rel=1e-5)


def test_correct_vector():
    rec = {"metrics": {"dev_predictions": "0110", "dev_labels": "0101"}}
    assert stats.correct_vector(rec).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert stats.correct_vector(None) is None
    assert stats.correct_vector({"metrics": {"dev_accuracy": 80.0}}) is None
    assert stats.correct_vector({"metrics": {"dev_predictions": "01", "dev_labels": "011"}}) is None


def test_verdicts_and_sampling_error():
    assert stats.verdict({"low": 0.2, "high": 1.0}) == "better"
    assert stats.verdict({"low": -2.0, "high": -0.1}) == "worse"
    assert stats.verdict({"low": -1.0, "high": 1.0}) == "same within noise"
    assert stats.verdict({"low": 0.2, "high": 1.0}, margin=0.5) == "same within noise"
    assert stats.verdict({"low": -2.0, "high": -0.6}, margin=0.5) == "worse"
    assert stats.verdict(None) == "n/a"
    assert stats.sampling_error(80.0, 872) == pytest.approx(100 * math.sqrt(0.8 * 0.2 / 872))
    assert stats.sampling_error(100.0, 10) == 0.0
    with pytest.raises(ValueError, match="accuracy.*0, 100"):
        stats.sampling_error(0.8 * 200, 10)
    with pytest.raises(ValueError, match="n.*positive integer"):
        stats.sampling_error(80.0, 0)


# ---------------------------------------------------------------------------- seeded tables
def _rec(task, stage, seed, correct=None, labels="0101010101" * 20, **metrics):
    m = dict(metrics)
    if correct is not None:
        m["dev_predictions"] = "".join(l if c else str(1 - int(l)) for l, c in zip(labels, correct))
        m["dev_labels"] = labels
        m["dev_accuracy"] = 100.0 * sum(correct) / len(correct)
        m["dev_examples"] = len(correct)
    return {"task": task, "stage": stage, "metrics": m, "provenance": {"seed": seed, "base_seed": 0}}


def _records():
    rng = np.random.default_rng(0)
    base = (rng.random(200) < 0.8).astype(int).tolist()
    recs = {("sst2", "baseline", 0): _rec("sst2", "baseline", 0, base, acs_fraction=1.0, mean_latency=100.0),
            ("sst2", "baseline", 1): None}
    for s in (0, 1, 2):
        recs[("sst2", "two_stage", s)] = _rec("sst2", "two_stage", s, base, acs_fraction=0.40 + 0.01 * s,
                                              mean_latency=40.0 + s)
    recs[("sst2", "spatial_retrain", 0)] = {"metrics": {"dev_accuracy": 79.0, "dev_examples": 200}}
    return recs


def test_collect_seeded_uses_getter():
    calls = []

    def getter(task, stage, profile, seed, recompute):
        calls.append((task, stage, seed, profile))
        return None if seed == 2 else {"stage": stage}
    out = seeds.collect_seeded(["sst2"], ["baseline", "two_stage"], [0, 2], profile="paper", getter=getter)
    assert set(out) == {("sst2", st, s) for st in ("baseline", "two_stage") for s in (0, 2)}
    assert out[("sst2", "two_stage", 2)] is None and len(calls) == 4
    out = seeds.collect_seeded_for("table_iv", ["sst2", "mrpc"], [1], profile="paper", getter=getter)
    assert ("sst2", "baseline", 0) in out and not any(k[0] == "mrpc" for k in out)
    calls.clear()
    known = {("sst2", "baseline"): {"stage": "known"}}
    out = seeds.collect_seeded_for("findings", ["sst2"], [0, 1], profile="paper", getter=getter, known=known,
                                   stages=["baseline"])
    assert out[("sst2", "baseline", 0)] == {"stage": "known"} and calls == [("sst2", "baseline", 1, "paper")]
    out = seeds.collect_seeded_for("findings", ["sst2"], [0, 1, 2], profile="paper", getter=getter,
                                   stages=["baseline", "two_stage"])        # the foundation: 2 seeds
    assert sorted(k[1:] for k in out) == [("baseline", 0), ("baseline", 1), ("two_stage", 0),
                                          ("two_stage", 1), ("two_stage", 2)]


def test_seeded_table():
    recs = _records()
    df = seeds.seeded_table(recs, "sst2", ["baseline", "spatial_retrain", "two_stage", "temporal_pca"])
    two = df.loc["two_stage"]
    assert two["seeds found"] == "0,1,2"
    assert two["Δ acc vs baseline s0 (pt)"] == 0.0 and two["verdict"] == "same within noise"
    assert two["Δ basis"].startswith("paired bootstrap, 3 seeds")
    assert two["ACs kept mean (%)"] == pytest.approx(41.0) and two["latency mean"] == pytest.approx(41.0)
    assert two["paper acc (%)"] == 87.27
    assert df.loc["baseline", "Δ acc vs baseline s0 (pt)"] == "reference"
    sr = df.loc["spatial_retrain"]
    assert sr["Δ basis"].startswith("binomial") and sr["dev acc 95% CI (seeds)"] == "n/a"
    assert df.loc["temporal_pca", "seeds found"] == "not run"
    both = seeds.seeded_tables(recs, ["sst2", "mrpc"], ["baseline", "two_stage"])
    assert both.loc[("mrpc", "two_stage"), "seeds found"] == "not run"


def test_headline_verdicts():
    recs = _records()
    v = verdicts.headline_verdicts(recs, ["sst2", "mrpc"])
    assert v.loc[("sst2", "accuracy kept"), "verdict"] == "reproduced"      # identical predictions
    assert v.loc[("sst2", "ACs kept"), "verdict"] == "reproduced"            # 41 % <= 41.53 + 5
    assert v.loc[("sst2", "latency kept"), "verdict"] == "reproduced"        # 41 % <= 62.4 + 5
    assert v.loc[("sst2", "latency kept"), "criterion"] == "latency kept <= paper's 62.45 % + 5 pt"
    assert summary.paper_latency_percent("sst2") == pytest.approx(100 * 53.08 / 85)   # Table III
    assert summary.paper_latency_percent("mrpc") == pytest.approx(100 * 54 / 110)
    assert (v.xs("mrpc")["verdict"] == "inconclusive").all()
    assert v.loc[("mrpc", "accuracy kept"), "ours"] == "not run"
    assert v.loc[("sst2", "ACs kept"), "paper"] == 41.53
    assert v.loc[("sst2", "accuracy kept"), "note"] == "the paper's +0.69 lies above our interval"   # [0, 0]
    assert v.loc[("sst2", "accuracy kept"), "paper"] == pytest.approx(87.27 - 86.58)
    assert verdicts.decide(-3.0, 2.0, -1.0, at_most=False) == "inconclusive"
    assert verdicts.decide(-3.0, -1.5, -1.0, at_most=False) == "not reproduced"
    assert verdicts.decide(60.0, 70.0, 55.0, at_most=True) == "not reproduced"
    assert verdicts.decide(None, None, 55.0, at_most=True) == "inconclusive"
    assert "inconclusive" in verdicts.verdict_rules()


def test_headline_verdicts_notes():
    """A baseline at the majority class cannot show an accuracy loss: the accuracy claim is at
    best inconclusive and says why; pruning far below the paper's share is noted."""
    labels = "1" * 140 + "0" * 60                               # majority class: 70 %
    base = [1] * 140 + [0] * 60                                  # predicts "1" everywhere: 70 %
    recs = {("mrpc", "baseline", 0): _rec("mrpc", "baseline", 0, base, labels=labels, mean_latency=110.0,
                                          acs_fraction=1.0)}
    for s in (0, 1, 2):
        recs[("mrpc", "two_stage", s)] = _rec("mrpc", "two_stage", s, base, labels=labels,
                                              acs_fraction=0.05, mean_latency=50.0)
    v = verdicts.headline_verdicts(recs, ["mrpc"])
    acc = v.loc[("mrpc", "accuracy kept")]
    assert acc["ours"] == 0.0 and acc["verdict"] == "inconclusive"        # would be reproduced
    assert "not above the majority class (70.00 %)" in acc["note"]
    assert "prunes further than the paper" in v.loc[("mrpc", "ACs kept"), "note"]
    assert v.loc[("mrpc", "latency kept"), "note"] == ""                  # 45.5 % vs 49.1 %: near
    worse = dict(recs)
    for s in (0, 1, 2):
        worse[("mrpc", "two_stage", s)] = _rec("mrpc", "two_stage", s, [0] * 140 + [1] * 60, labels=labels,
                                               acs_fraction=0.05, mean_latency=50.0)
    assert verdicts.headline_verdicts(worse, ["mrpc"]).loc[("mrpc", "accuracy kept"), "verdict"] == "not reproduced"


def test_place_paper():
    """The note says where 0 and the paper's change fall against our interval, and nothing when
    both are inside it."""
    assert verdicts.place_paper(0.69, -3.17, -0.11) == ("worse than the baseline (interval below 0); "
                                                        "the paper's +0.69 lies above our interval")
    assert verdicts.place_paper(0.41, -1.06, 4.33) == ""
    assert verdicts.place_paper(-2.0, 0.5, 1.5) == ("better than the baseline (interval above 0); "
                                                    "the paper's -2.00 lies below our interval")
    assert verdicts.place_paper(None, 0.5, 1.5) == "better than the baseline (interval above 0)"
    assert verdicts.place_paper(0.69, None, None) == ""


def test_above_majority():
    labels = "1" * 70 + "0" * 30
    rec = lambda acc: {"metrics": {"dev_labels": labels, "dev_accuracy": acc}}
    assert stats.majority_rate(rec(0)) == ("1", 70.0)
    assert stats.above_majority(rec(71.0)) is False                     # within noise of 70 %
    assert stats.above_majority(rec(90.0)) is True
    assert stats.above_majority({"metrics": {"dev_accuracy": 90.0}}) is None
    assert stats.predicted_share({"metrics": {"dev_predictions": "1101"}}, "1") == 75.0


def test_overall_verdicts():
    v = verdicts.headline_verdicts(_records(), ["sst2", "mrpc"])
    out = verdicts.overall_verdicts(v)
    assert out.loc["sst2", "verdict"] == "reproduced"
    assert out.loc["mrpc", "verdict"] == "inconclusive" and "accuracy kept: not run" in out.loc["mrpc", "because"]
    v.loc[("sst2", "latency kept"), "verdict"] = "not reproduced"
    out = verdicts.overall_verdicts(v)
    assert out.loc["sst2", "verdict"] == "not reproduced"
    assert out.loc["sst2", "because"].startswith("latency kept: 41.0 [38.52, 43.48] against latency kept <= paper")


def test_seeded_status():
    recs = {("sst2", "two_stage", 0): None, ("sst2", "two_stage", 1): {"x": 1}, ("sst2", "two_stage", 2): None,
            ("mrpc", "baseline", 0): None}
    assert seeds.seeded_status(recs) == ("1 of 4 requested (task, stage, seed) records are present. "
                                         "Not run: mrpc/baseline seed 0, sst2/two_stage seeds 0,2.")


def test_check_targets_and_bad_claim():
    t = verdicts.check_rerun_targets(_records(), ["sst2"])
    assert {k[0] for k in t.index} == {"sst2"}                                 # MRPC's targets left out
    assert t.loc[("sst2", "two_stage", "ACs kept"), "verdict"] == "met"        # 41 % <= 47 %
    assert t.loc[("sst2", "two_stage", "latency kept"), "target"] == "<= 67 %"
    assert t.loc[("sst2", "two_stage", "accuracy kept"), "verdict"] == "met"   # identical predictions
    row = t.loc[("sst2", "temporal_retrain", "ACs kept")]
    assert row["ours"] == "not run" and row["verdict"] == "inconclusive"
    strict = verdicts.check_rerun_targets(_records(), ["sst2"], targets=(("sst2", "two_stage", "ACs kept", 35.0),))
    assert strict.iloc[0]["verdict"] == "not met"                              # [38.5, 43.5] > 35
    with pytest.raises(ValueError, match="`claim` must be one of"):
        verdicts.check_claim(_records(), "sst2", "two_stage", "energy kept", 1.0)
