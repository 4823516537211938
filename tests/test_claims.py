"""The paper's claims, one verdict each (stpcore.report.claims), and the contrast bootstrap under
them (stats.pooled_contrast_ci), on synthetic records with closed-form answers."""
import math
import statistics

import numpy as np
import pytest

from stpcore.report import claims, stats
from stpcore.report.claims import Claim
from stpcore.report.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

LABELS = "01" * 100                                  # 200 examples, balanced: majority class 50 %


def _rec(correct, **metrics):
    pred = "".join(l if c else str(1 - int(l)) for l, c in zip(LABELS, correct))
    return {"metrics": {"dev_predictions": pred, "dev_labels": LABELS, "dev_examples": len(LABELS),
                        "dev_accuracy": 100.0 * sum(correct) / len(correct), **metrics}}


def _first(k):                                        # the first k examples right, the rest wrong
    return [1] * k + [0] * (200 - k)


BEATS = Claim("fig_5", "A beats B", "beats", "spatial_retrain", "random_mask", paper_table=None)


def _pair(a_correct, b_correct, a_acs=0.5, b_acs=0.5):
    return {("sst2", "baseline", 0): _rec(_first(190), acs_fraction=1.0),
            ("sst2", "spatial_retrain", 0): _rec(a_correct, acs_fraction=a_acs),
            ("sst2", "random_mask", 0): _rec(b_correct, acs_fraction=b_acs)}


# ---------------------------------------------------------------------------- the contrast bootstrap
def test_pooled_contrast_is_the_difference_in_differences():
    rng = np.random.default_rng(0)
    arms = [[(rng.random(300) < p).astype(int) for _ in range(k)] for p, k in ((0.8, 2), (0.7, 1), (0.6, 3), (0.9, 1))]
    ci = stats.pooled_contrast_ci([arms[0], arms[3]], [arms[1], arms[2]], n_boot=500)
    means = [np.mean(a, axis=0).mean() for a in arms]
    assert ci["diff"] == pytest.approx(100 * (means[0] - means[1] - means[2] + means[3]))
    assert ci["low"] <= ci["diff"] <= ci["high"]
    assert ci["seeds_plus"] == [2, 1] and ci["seeds_minus"] == [1, 3]
    pair = stats.pooled_pair_bootstrap_ci(arms[1], arms[0], n_boot=500)       # one arm a side: the pair
    one = stats.pooled_contrast_ci([arms[0]], [arms[1]], n_boot=500)
    assert (pair["diff"], pair["low"], pair["high"]) == (one["diff"], one["low"], one["high"])


@pytest.mark.parametrize("plus, minus, word", [([], [[[1, 0]]], "`plus` and `minus`"),
                                               ([[[1, 0]]], [[]], "`minus[0]`"),
                                               ([[[1, 0]]], [[[1, 0, 1]]], "`plus[0]` and `minus[0]`"),
                                               ([[[1, 2]]], [[[1, 0]]], "`plus[0][0]`")])
def test_pooled_contrast_names_the_bad_arm(plus, minus, word):
    with pytest.raises(ValueError, match=word.replace("[", r"\[").replace("]", r"\]")):
        stats.pooled_contrast_ci(plus, minus, n_boot=10)


# ---------------------------------------------------------------------------- beats
def test_beats_decided_by_the_paired_interval():
    out = claims.check_claim(BEATS, _pair(_first(180), _first(140)), "sst2", n_boot=2000)
    assert out["verdict"] == REPRODUCED and out["ours"] == 20.0 and out["low"] > 0
    out = claims.check_claim(BEATS, _pair(_first(140), _first(180)), "sst2", n_boot=2000)
    assert out["verdict"] == NOT_REPRODUCED and out["high"] < 0
    out = claims.check_claim(BEATS, _pair(_first(160), _first(160)), "sst2", n_boot=2000)
    assert out["verdict"] == INCONCLUSIVE and out["ours"] == 0.0


def test_beats_needs_comparable_acs_unless_the_winner_is_cheaper():
    dearer = claims.check_claim(BEATS, _pair(_first(180), _first(140), a_acs=0.6, b_acs=0.3), "sst2", n_boot=500)
    assert dearer["verdict"] == INCONCLUSIVE and "spends more ACs" in dearer["note"]
    cheaper = claims.check_claim(BEATS, _pair(_first(180), _first(140), a_acs=0.3, b_acs=0.6), "sst2", n_boot=500)
    assert cheaper["verdict"] == REPRODUCED and "not at the same ACs" in cheaper["note"]
    near = claims.check_claim(BEATS, _pair(_first(180), _first(140), a_acs=0.52, b_acs=0.5), "sst2", n_boot=500)
    assert near["verdict"] == REPRODUCED and near["note"] == ""


def test_a_missing_stage_is_inconclusive_not_run():
    recs = _pair(_first(180), _first(140))
    del recs[("sst2", "random_mask", 0)]
    out = claims.check_claim(BEATS, recs, "sst2")
    assert out["verdict"] == INCONCLUSIVE and out["ours"] == "not run"


# ---------------------------------------------------------------------------- keeps and gains more
KEEPS = Claim("table_iii", "keeps", "keeps", "adaptive_threshold", "two_stage", paper_table="table_iii")


def test_keeps_uses_the_headlines_tolerance():
    # threshold -1 point (as the headline's accuracy claim); the paper's own change is shown beside
    recs = {("sst2", "two_stage", 0): _rec(_first(180)), ("sst2", "adaptive_threshold", 0): _rec(_first(179))}
    out = claims.check_claim(KEEPS, recs, "sst2", n_boot=2000)
    assert out["paper"] == pytest.approx(-0.69) and out["ours"] == -0.5
    assert out["low"] < -1.0 < out["high"] and out["verdict"] == INCONCLUSIVE        # one example apart: [-1.5, 0]
    recs[("sst2", "adaptive_threshold", 0)] = _rec(_first(180)[:-20] + [1] * 20)        # the same, 20 more right
    out = claims.check_claim(KEEPS, recs, "sst2", n_boot=2000)
    assert out["ours"] == 10.0 and out["verdict"] == REPRODUCED
    recs[("sst2", "adaptive_threshold", 0)] = _rec(_first(150))
    assert claims.check_claim(KEEPS, recs, "sst2", n_boot=2000)["verdict"] == NOT_REPRODUCED


def test_beats_uses_the_seeds_both_stages_have():
    recs = _pair(_first(180), _first(170))
    recs[("sst2", "spatial_retrain", 1)] = _rec(_first(120))       # a seed the other stage lacks: left out
    out = claims.check_claim(BEATS, recs, "sst2", n_boot=500)
    assert out["ours"] == 5.0 and out["basis"] == "paired bootstrap, 1 seed each (seed spread not covered)"
    recs[("sst2", "random_mask", 1)] = _rec(_first(110))
    out = claims.check_claim(BEATS, recs, "sst2", n_boot=500)
    assert out["ours"] == 5.0 and out["basis"] == "paired bootstrap, 2 seeds each"      # +5 at either seed


def test_an_interval_touching_its_threshold_is_inconclusive():
    # better on one example only: every resample's difference is >= 0, so the interval is [0, x]
    out = claims.check_claim(BEATS, _pair(_first(181), _first(180)), "sst2", n_boot=500)
    assert out["ours"] == 0.5 and out["low"] == 0.0 and out["verdict"] == INCONCLUSIVE
    assert "within 0.1 point of +0" in out["note"]


def test_keeps_cannot_be_decided_against_a_majority_class_model():
    recs = {("sst2", "two_stage", 0): _rec(_first(100)), ("sst2", "adaptive_threshold", 0): _rec(_first(100))}
    out = claims.check_claim(KEEPS, recs, "sst2", n_boot=500)
    assert out["verdict"] == INCONCLUSIVE and "majority class" in out["note"]


def test_gains_more_is_the_difference_in_differences():
    claim = next(c for c in claims.CLAIMS if c.kind == "gains more")
    recs = {("sst2", "baseline", 0): _rec(_first(190)), ("sst2", "baseline_adaptive", 0): _rec(_first(150)),
            ("sst2", "two_stage", 0): _rec(_first(180)), ("sst2", "adaptive_threshold", 0): _rec(_first(178))}
    out = claims.check_claim(claim, recs, "sst2", n_boot=2000)
    assert out["ours"] == pytest.approx(100 * ((178 - 180) - (150 - 190)) / 200)      # +19 points
    assert out["verdict"] == REPRODUCED
    assert out["paper"] == pytest.approx((86.58 - 87.27) - (82.8 - 86.58))           # Table V: +3.09


# ---------------------------------------------------------------------------- cuts, #C kept, layers, sweeps
def test_cuts_is_the_per_seed_percent_change():
    claim = Claim("table_iii", "cuts latency", "cuts", "adaptive_threshold", "two_stage", metric="mean_latency",
                  paper_table="table_iii")
    recs = {("sst2", "two_stage", s): {"metrics": {"mean_latency": 40.0}} for s in (0, 1, 2)}
    recs.update({("sst2", "adaptive_threshold", s): {"metrics": {"mean_latency": v}}
                 for s, v in zip((0, 1, 2), (10.0, 12.0, 14.0))})
    out = claims.check_claim(claim, recs, "sst2")
    changes = [-75.0, -70.0, -65.0]
    half = stats.mean_ci(changes)["high"] - statistics.mean(changes)
    assert out["ours"] == -70.0 and out["high"] == pytest.approx(-70.0 + half) and out["verdict"] == REPRODUCED
    assert out["paper"] == pytest.approx(100 * (13.04 / 53.08 - 1), abs=0.005)
    one = {k: v for k, v in recs.items() if k[2] == 0}
    assert claims.check_claim(claim, one, "sst2")["basis"] == "1 seed: point"
    flat = {k: {"metrics": {"mean_latency": 39.8}} if k[1] == "adaptive_threshold" else v for k, v in one.items()}
    assert claims.check_claim(claim, flat, "sst2")["verdict"] == NOT_REPRODUCED        # -0.5 %: not a cut


def _activity(with_asr, without_asr, with_c=0.1, without_c=0.1, start=(0.2, 0.2), start_c=0.1):
    def arm(asr, c):
        return {"history": [{"layer_asr": list(start), "normalized_c": start_c}, {"layer_asr": asr, "normalized_c": c}]}
    return {("sst2", "activity_ablation", 0): {"metrics": {"with": arm(with_asr, with_c),
                                                           "without": arm(without_asr, without_c)}}}


def test_activity_claims_need_every_layer_and_a_material_cut():
    layers = next(c for c in claims.CLAIMS if c.kind == "every layer's ASR cut")
    c_cut = next(c for c in claims.CLAIMS if c.artifact == "fig_3" and c.kind == "cuts")
    all_cut = _activity([0.18, 0.18], [0.2, 0.2], with_c=0.08)
    assert claims.check_claim(layers, all_cut, "sst2")["verdict"] == REPRODUCED
    out = claims.check_claim(c_cut, all_cut, "sst2")
    assert out["ours"] == pytest.approx(-20.0) and out["verdict"] == REPRODUCED
    assert out["95% interval"] == "n/a (point)" and out["basis"] == "1 run: point"
    moved = _activity([0.22, 0.18], [0.21, 0.2], with_c=0.0999, without_c=0.11)   # layer 1 moves, is not cut
    out = claims.check_claim(layers, moved, "sst2")
    assert out["verdict"] == NOT_REPRODUCED and out["ours"] == "1 of 2 layers" and "L1 +4.76 %" in out["note"]
    assert claims.check_claim(c_cut, moved, "sst2")["verdict"] == REPRODUCED        # -9.2 %


def test_activity_claims_cannot_be_decided_where_nothing_moves():
    layers = next(c for c in claims.CLAIMS if c.kind == "every layer's ASR cut")
    c_cut = next(c for c in claims.CLAIMS if c.artifact == "fig_3" and c.kind == "cuts")
    still = _activity([0.2, 0.18], [0.2, 0.2], with_c=0.0999)     # layer 1 and #C flat in both arms
    out = claims.check_claim(layers, still, "sst2")
    assert out["verdict"] == INCONCLUSIVE and "L1 move in neither arm" in out["note"]
    out = claims.check_claim(c_cut, still, "sst2")
    assert out["verdict"] == INCONCLUSIVE and "moves in neither arm" in out["note"]


def test_c_kept_against_the_papers_share_plus_slack():
    claim = next(c for c in claims.CLAIMS if c.kind == "#C kept")
    recs = {("sst2", "baseline", 0): {"metrics": {"normalized_c": 0.2}},
            ("sst2", "two_stage", 0): {"metrics": {"normalized_c": 0.1}}}
    out = claims.check_claim(claim, recs, "sst2")
    assert out["paper"] == pytest.approx(100 * 0.1 / 0.241, abs=0.005) and out["ours"] == 50.0
    assert out["verdict"] == NOT_REPRODUCED                        # 50 % > 41.5 % + 5


def test_sweep_keeps_with_an_unpaired_binomial_interval():
    claim = next(c for c in claims.CLAIMS if c.stage == "budget_sweep" and c.kind == "sweep keeps")
    recs = {("sst2", "baseline", 0): _rec(_first(180)),
            ("sst2", "budget_sweep", 0): {"metrics": {"points": [{"budget": 0.6, "dev_accuracy": 80.0},
                                                                  {"budget": 1.0, "dev_accuracy": 90.0}]}}}
    out = claims.check_claim(claim, recs, "sst2")
    half = 1.959964 * math.hypot(stats.sampling_error(80.0, 200), stats.sampling_error(90.0, 200))
    assert out["ours"] == -10.0 and out["low"] == pytest.approx(-10.0 - half, abs=1e-4)
    assert out["verdict"] == NOT_REPRODUCED and out["paper"] == pytest.approx(85.89 - 86.58)
    drops = next(c for c in claims.CLAIMS if c.kind == "sweep drops" and c.stage == "budget_sweep")
    recs[("sst2", "budget_sweep", 0)]["metrics"]["points"].append({"budget": 0.4, "dev_accuracy": 70.0})
    out = claims.check_claim(drops, recs, "sst2")
    assert out["ours"] == -20.0 and out["verdict"] == REPRODUCED and "budget 0.4" in out["note"]


def test_sweep_falls_at_every_step():
    falls = next(c for c in claims.CLAIMS if c.kind == "sweep falls")
    pts = [{"base": b, "acs_fraction": a} for b, a in ((1.0, 1.0), (1.02, 0.5), (1.1, 0.2))]
    recs = {("sst2", "base_sweep", 0): {"metrics": {"points": pts}}}
    assert claims.check_claim(falls, recs, "sst2")["verdict"] == REPRODUCED
    pts.append({"base": 1.2, "acs_fraction": 0.3})
    out = claims.check_claim(falls, recs, "sst2")
    assert out["verdict"] == NOT_REPRODUCED and out["ours"] == "100.0 > 50.0 > 20.0 > 30.0"


def test_untested_and_by_construction_claims_say_why():
    untested = next(c for c in claims.CLAIMS if c.kind == "untested")
    out = claims.check_claim(untested, {}, "sst2")
    assert out["verdict"] == "not tested" and out["note"] == untested.why
    scaled = next(c for c in claims.CLAIMS if c.why and c.kind == "cuts")
    recs = {("sst2", "two_stage", 0): {"metrics": {"mean_latency": 40.0}},
            ("sst2", "adaptive_threshold", 0): {"metrics": {"mean_latency": 10.0}}}
    out = claims.check_claim(scaled, recs, "sst2")
    assert out["verdict"] == "by construction" and out["note"].startswith(scaled.why)
    assert claims.check_claim(scaled, {}, "sst2")["verdict"] == INCONCLUSIVE       # not run: nothing to construct


# ---------------------------------------------------------------------------- the table and bad input
def test_claims_table_checks_sst2_only_artifacts_on_sst2_only():
    table = claims.claims_table({}, ["sst2", "mrpc"], n_boot=10)
    assert set(table.loc["table_iv"].index) == {"sst2"} and set(table.loc["table_ii"].index) == {"sst2", "mrpc"}
    untested = table["verdict"] == "not tested"
    assert (table.loc[~untested, "verdict"] == INCONCLUSIVE).all() and (table.loc[~untested, "ours"] == "not run").all()
    assert claims.verdict_counts(table) == (f"Of {len(table)} claims checked: 0 reproduced, 0 not reproduced, "
                                            f"{(~untested).sum()} inconclusive, {untested.sum()} not tested.")
    assert claims.claim_stages("table_v") == ("adaptive_threshold", "baseline_adaptive", "two_stage", "baseline")


def test_bad_claims_are_refused():
    with pytest.raises(ValueError, match="`kind` must be one of"):
        Claim("fig_5", "x", "wins", "a", "b")
    with pytest.raises(ValueError, match="`second` is needed by kind 'gains more'"):
        Claim("table_v", "x", "gains more", "a", "b")
    with pytest.raises(ValueError, match="`claim` must be a Claim"):
        claims.check_claim("beats", {}, "sst2")
