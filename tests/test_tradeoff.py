"""Accuracy against ACs and head-to-head comparisons (stpcore.report.tradeoff), and the pooled
two-sided bootstrap under them (stats.pooled_pair_bootstrap_ci), on synthetic records."""
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from stpcore.report import stats, tradeoff


def _rec(correct, labels, **metrics):
    pred = "".join(l if c else str(1 - int(l)) for l, c in zip(labels, correct))
    return {"metrics": {"dev_predictions": pred, "dev_labels": labels, "dev_examples": len(labels),
                        "dev_accuracy": 100.0 * sum(correct) / len(correct), **metrics}}


LABELS = "01" * 100
ALL, NINETY = [1] * 200, [1] * 180 + [0] * 20


def _records():
    return {("sst2", "baseline", 0): _rec(ALL, LABELS, acs_fraction=1.0),
            ("sst2", "two_stage", 0): _rec(NINETY, LABELS, acs_fraction=0.30),
            ("sst2", "two_stage", 1): _rec(ALL, LABELS, acs_fraction=0.40),
            ("sst2", "two_stage", 2): None,
            ("sst2", "baseline_adaptive", 0): _rec(ALL, LABELS, acs_fraction=0.25),
            ("sst2", "adaptive_threshold", 0): _rec(NINETY, LABELS, acs_fraction=0.05)}


def test_pooled_pair_bootstrap_closed_form():
    rng = np.random.default_rng(2)
    n = 20000
    a = [(rng.random(n) < 0.8).astype(int) for _ in range(2)]
    b = [(rng.random(n) < 0.7).astype(int) for _ in range(3)]
    ci = stats.pooled_pair_bootstrap_ci(a, b, n_boot=3000, seed=1)
    d = np.mean(b, axis=0) - np.mean(a, axis=0)
    assert ci["diff"] == pytest.approx(100 * d.mean()) and (ci["seeds_a"], ci["seeds_b"]) == (2, 3)
    assert (ci["high"] - ci["low"]) / 2 == pytest.approx(1.96 * math.sqrt(np.var(d) / n) * 100, rel=0.1)
    one = stats.pooled_pair_bootstrap_ci([a[0]], b, n_boot=500, seed=4)       # one reference model:
    assert {k: one[k] for k in ("diff", "low", "high", "n")} == pytest.approx(   # pooled_bootstrap_ci
        {k: v for k, v in stats.pooled_bootstrap_ci(a[0], b, n_boot=500, seed=4).items() if k != "seeds"})


def test_pooled_pair_bootstrap_bad_input():
    with pytest.raises(ValueError, match="`correct_a` must hold at least one"):
        stats.pooled_pair_bootstrap_ci([], [[1, 0]])
    with pytest.raises(ValueError, match=r"equal lengths\); got lengths \[2, 3\]"):
        stats.pooled_pair_bootstrap_ci([[1, 0]], [[1, 0, 1]])
    with pytest.raises(ValueError, match=r"correct_b\[0\]"):
        stats.pooled_pair_bootstrap_ci([[1, 0]], [[1, 2]])


def test_tradeoff_frame():
    df = tradeoff.tradeoff_frame(_records(), "sst2")
    assert list(df.index) == ["two_stage", "baseline_adaptive", "adaptive_threshold"]   # others not run
    two = df.loc["two_stage"]
    assert two["seeds"] == "0,1" and two["ACs kept (%)"] == pytest.approx(35.0)
    assert two["Δ acc (pt)"] == pytest.approx(-5.0)                 # (90 + 100) / 2 - 100
    assert two["Δ low"] <= -5.0 <= two["Δ high"] and two["Δ basis"] == "paired bootstrap, 2 seeds"
    assert two["paper ACs kept (%)"] == 41.53 and two["paper Δ acc (pt)"] == pytest.approx(87.27 - 86.58)
    assert np.isnan(df.loc["baseline_adaptive", "paper ACs kept (%)"])          # not in Table II


def test_pair_table():
    out = tradeoff.pair_table(_records(), ["sst2"])
    row = out.loc[("sst2", "adaptive_threshold - baseline_adaptive")]
    assert row["paper Δ (pt)"] == pytest.approx(86.58 - 82.8)        # Table V
    assert row["ours Δ (pt)"] == -10.0 and row["verdict"] == "worse" and row["seeds"] == "1 vs 1 seeds"
    joint = out.loc[("sst2", "two_stage - joint_retrain")]
    assert joint["ours Δ (pt)"] == "not run" and joint["verdict"] == "not run"
    assert joint["paper Δ (pt)"] == pytest.approx(87.27 - 85.55)     # Table IV
    d = tradeoff.stage_difference(_records(), "sst2", "two_stage", "baseline_adaptive")
    assert d["diff"] == pytest.approx(-5.0) and (d["seeds_a"], d["seeds_b"]) == (1, 2)
    assert tradeoff.pair_table(_records(), ["mrpc"]).iloc[0]["paper Δ (pt)"] == "n/a"   # SST-2 tables


def test_plot_tradeoff():
    recs = _records()
    fig = tradeoff.plot_tradeoff({"sst2": tradeoff.tradeoff_frame(recs, "sst2"),
                                  "mrpc": tradeoff.tradeoff_frame(recs, "mrpc")})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].get_title() == "SST-2" and len(fig.axes[0].texts) == 3 + 1   # ours + the paper's two_stage
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["ours", "paper (Table II)"]


def test_plot_tradeoff_shows_a_variant_apart():
    recs = _records()
    recs[("sst2", "two_stage (paper latency)", 0)] = recs[("sst2", "two_stage", 1)]
    df = tradeoff.tradeoff_frame(recs, "sst2", stages=("two_stage", "two_stage (paper latency)"))
    ax = tradeoff.plot_tradeoff({"sst2": df}).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ours", "ours, paper latency", "paper (Table II)"]
    ours = [t for t in ax.texts if t.get_fontsize() == 7]                # our labels: the stage name only
    assert sorted(t.get_text() for t in ours) == ["two_stage", "two_stage"]
    assert {t.get_color() for t in ours} == {"C0", "C2"}


def test_place_labels_keeps_labels_of_one_point_apart():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set(xlim=(0, 10), ylim=(0, 10))
    tradeoff.place_labels(ax, [(5, 5, name, "C0", 7) for name in ("two_stage", "joint_retrain", "random_mask")])
    offsets = [t.xyann for t in ax.texts]
    assert len(offsets) == 3 and len(set(offsets)) == 3          # three different places, none on another
    assert offsets[0] == tradeoff.LABEL_OFFSETS[0]
    plt.close(fig)
