"""The starting-point page's report (stpcore.report.foundation): issue 14's targets decided on
the mean over seeds, the held-out selection entries, on synthetic records; and the paper
records' SST-2 seeds reaching the selection table."""
import pandas as pd
import pytest

from stpcore.report import foundation
from stpcore.report.summary import FOUNDATION_STAGES

T975_1 = 12.706205          # t(0.975, 1 degree of freedom): the 95 % interval over two seeds


def rec(acc, task="sst2", stage="baseline", n=872):
    return {"task": task, "stage": stage, "metrics": {"dev_accuracy": acc, "dev_examples": n}}


def seeded(values, task="sst2", stage="baseline"):
    """``{(task, stage, seed): record}`` with one dev accuracy per seed (None: no record)."""
    return {(task, stage, s): None if v is None else rec(v, task, stage) for s, v in enumerate(values)}


# ---------------------------------------------------------------------------- targets
def test_targets_are_issue_14s_on_seeds_0_and_1():
    assert foundation.ISSUE_14_TARGETS == {("sst2", "spiking_fp"): 85.0, ("sst2", "baseline"): 84.0,
                                           ("mrpc", "baseline"): 73.0}
    assert foundation.TARGET_SEEDS == (0, 1)


@pytest.mark.parametrize("values, verdict, mean, gap", [
    ((84.5, 85.5), "met", 85.0, 0.0),                 # mean exactly at the target
    ((84.5, 85.4), "not met", 84.95, -0.05),          # just below
    ((90.0, 80.5), "met", 85.25, 0.25),               # a seed below the target, the mean above
])
def test_target_is_decided_on_the_mean_over_seeds(values, verdict, mean, gap):
    table = foundation.check_targets(seeded(values), targets={("sst2", "baseline"): 85.0})
    row = table.loc[("sst2", "1-bit")]
    assert row["verdict"] == verdict and row["mean (%)"] == pytest.approx(mean)
    assert row["mean - target (pt)"] == pytest.approx(gap)
    half = T975_1 * abs(values[0] - values[1]) / 2          # t * sd / sqrt(2), sd = |a - b| / sqrt(2)
    assert row["95 % interval (t over seeds)"] == f"[{mean - half:.2f}, {mean + half:.2f}]"
    assert row["target (dev acc, %)"] == ">= 85.0" and row["seeds found"] == "0, 1"


def test_target_at_the_mean_is_met_despite_float_rounding():
    # 100 * 731 / 872 and 100 * 735 / 872: their mean is 100 * 733 / 872 up to rounding
    records = {("sst2", "baseline", 0): rec(100 * 731 / 872), ("sst2", "baseline", 1): rec(100 * 735 / 872)}
    table = foundation.check_targets(records, targets={("sst2", "baseline"): 100 * 733 / 872})
    assert table["verdict"].tolist() == ["met"]


def test_missing_seeds_give_na_or_not_run_not_a_crash():
    records = {**seeded((84.0, None)), **seeded((None, None), "mrpc")}
    table = foundation.check_targets(records)
    assert table.loc[("sst2", "1-bit"), "verdict"] == "n/a (seed 1 not run)"
    assert table.loc[("sst2", "1-bit"), "mean (%)"] == pytest.approx(84.0)
    assert table.loc[("sst2", "1-bit"), "95 % interval (t over seeds)"] == "n/a"
    assert table.loc[("sst2", "full precision"), "verdict"] == "not run"       # no key at all
    assert table.loc[("mrpc", "1-bit"), "verdict"] == "not run"                # keys, records None
    assert table.loc[("mrpc", "1-bit"), "seeds found"] == "not run"
    text = foundation.describe_targets(records)
    assert "**n/a (seed 1 not run)**" in text and text.count("\n") == 2


def test_record_without_dev_accuracy_counts_as_missing():
    records = {("mrpc", "baseline", 0): rec(70.0, "mrpc"), ("mrpc", "baseline", 1): {"metrics": {}}}
    assert foundation.check_targets(records, ["mrpc"])["verdict"].tolist() == ["n/a (seed 1 not run)"]


def test_targets_of_other_tasks_are_left_out():
    table = foundation.check_targets(seeded((80.0, 75.0), "mrpc"), tasks=["mrpc"])
    assert table.index.tolist() == [("mrpc", "1-bit")]
    assert table["verdict"].tolist() == ["met"]
    assert foundation.check_targets({}, tasks=["qnli"]).empty
    assert foundation.describe_targets({}, tasks=["qnli"]) == "No target concerns these tasks."


def test_target_reading_says_where_the_seed_interval_lies():
    below = foundation.describe_targets(seeded((70.0, 70.2)), targets={("sst2", "baseline"): 84.0})
    assert below.startswith("- **SST-2, 1-bit** (target >= 84.0): mean 70.10 over seeds 0, 1, -13.90 pt")
    assert "**not met**" in below and "also lies below the target" in below
    covers = foundation.describe_targets(seeded((83.0, 86.0)), targets={("sst2", "baseline"): 84.0})
    assert "**met**" in covers and "covers the target" in covers
    above = foundation.describe_targets(seeded((90.0, 90.1)), targets={("sst2", "baseline"): 84.0})
    assert "also lies above the target" in above


@pytest.mark.parametrize("kwargs, param", [
    ({"targets": {}}, "targets"),
    ({"targets": {("sst2", "two_stage"): 80.0}}, "targets"),
    ({"targets": {"sst2": 80.0}}, "targets"),
    ({"targets": {("sst2", "baseline"): 180.0}}, "targets"),
    ({"targets": {("sst2", "baseline"): "84"}}, "targets"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"seeds": [-1]}, "seeds"),
    ({"seeds": "01"}, "seeds"),
    ({"tasks": "sst2"}, "tasks"),
    ({"level": 95}, "level"),
])
def test_bad_target_input_is_rejected_naming_the_parameter(kwargs, param):
    for fn in (foundation.check_targets, foundation.describe_targets):
        with pytest.raises(ValueError, match=f"`{param}`"):
            fn(seeded((84.0, 85.0)), **kwargs)


# ---------------------------------------------------------------------------- selection
def history_record(task="sst2", stage="teacher", held=(80.0, 82.0, 81.0), dev=(79.0, 80.0, 81.0)):
    hist = [{"epoch": k + 1, "heldout_accuracy": h, "dev_accuracy": d} for k, (h, d) in enumerate(zip(held, dev))]
    return {"task": task, "stage": stage, "metrics": {"dev_accuracy": dev[1], "history": hist}}


def test_selection_entries_are_keyed_by_task_stage_and_seed():
    records = {("sst2", "teacher", 0): history_record(), ("sst2", "teacher", 1): history_record(),
               ("sst2", "baseline", 0): rec(80.0)}                       # no history: left out
    entries = foundation.selection_entries(records, ["sst2"], [0, 1])
    assert list(entries) == [("sst2", "teacher", 0), ("sst2", "teacher", 1)]
    table = foundation.selection_table(entries)
    assert table.index.names == ["task", "stage", "seed"]
    assert table.loc[("sst2", "teacher", 0), "held-out chose epoch"] == 2
    assert table.loc[("sst2", "teacher", 0), "dev would choose epoch"] == 3
    assert table.loc[("sst2", "teacher", 0), "record's dev acc matches"]


def test_selection_rejects_entries_it_cannot_read():
    with pytest.raises(ValueError, match="`entries`"):
        foundation.selection_table({("sst2", "teacher", 0, "other"): history_record()})
    with pytest.raises(ValueError, match="`entries`"):
        foundation.plot_selection({("sst2", "teacher", 0): rec(80.0)})


def test_majority_class_comes_from_the_records_themselves():
    r = rec(60.0)
    r["metrics"].update(dev_labels="1101", dev_predictions="1111")
    table = foundation.seed_accuracy_table({("sst2", "baseline", 0): r}, ["sst2"], [0], ["baseline"])
    assert table["majority class (%)"].tolist() == [75.0]


def test_paper_sst2_records_reach_the_selection_table_at_both_seeds():
    from stpcore.report.seeds import collect_seeded
    records = collect_seeded(["sst2"], FOUNDATION_STAGES, [0, 1], profile="paper")
    entries = foundation.selection_entries(records, ["sst2"], [0, 1])
    assert set(entries) == {("sst2", st, s) for st in FOUNDATION_STAGES for s in (0, 1)}
    assert isinstance(foundation.selection_table(entries), pd.DataFrame)
    assert foundation.check_targets(records, ["sst2"])["seeds found"].tolist() == ["0, 1", "0, 1"]


def test_distillation_gaps_against_the_reference_chain():
    from stpcore.report import gaps
    rec = lambda acc: {"metrics": {"dev_accuracy": acc}, "provenance": {"seed": 0}}
    recs = {("sst2", "teacher", 0): rec(90.0), ("sst2", "teacher", 1): rec(88.0),
            ("sst2", "spiking_fp", 0): rec(84.0), ("sst2", "spiking_fp", 1): None,
            ("sst2", "baseline", 0): rec(82.0), ("mrpc", "teacher", 0): rec(78.0)}
    t = gaps.gap_table(recs, ["sst2", "mrpc"])
    ours = t.loc[("sst2", "ours (mean over seeds)")]
    assert ours["teacher (%)"] == 89.0 and ours["teacher - full precision (pt)"] == 5.0
    assert ours["teacher - 1-bit (pt)"] == 7.0 and ours["seeds"] == "0,1"
    ref = t.xs("sst2").iloc[1]               # BERT-base 93.5 -> SpikingBERT 88.2 -> Table II 86.58
    assert ref["teacher - full precision (pt)"] == pytest.approx(5.3)
    assert ref["teacher - 1-bit (pt)"] == pytest.approx(6.92)
    assert gaps.reference_chain("mrpc") is None and len(t.xs("mrpc")) == 1
    text = gaps.describe_gaps(recs, ["sst2", "mrpc"])
    assert "give 83.70 % and 82.08 %" in text                            # 89 - 5.3, 89 - 6.92
    assert "**MRPC**: not all three of our models have records." in text


def test_precision_table_pairs_each_dtype_with_fp32_on_the_same_examples():
    """A dtype that gets 2 of 10 dev examples right that fp32 got wrong (and none wrong that fp32
    got right) is 20 points above it; a record that predates the stored predictions shows n/a."""
    from stpcore.report.summary import precision_table
    labels = "1" * 10
    check = {"metrics": {
        "float32": {"dev_accuracy": 70.0, "dev_predictions": "1" * 7 + "000", "dev_labels": labels},
        "int8": {"dev_accuracy": 90.0, "dev_predictions": "1" * 9 + "0", "dev_labels": labels}}}
    old = {"metrics": {"float32": {"dev_accuracy": 70.0}, "bfloat16": {"dev_accuracy": 71.0}}}
    table = precision_table({("mrpc", "precision_check"): check, ("sst2", "precision_check"): old})
    assert table.loc[("mrpc", "int8"), "Δ dev acc vs fp32 (pt)"] == 20.0
    low, high = (float(x) for x in table.loc[("mrpc", "int8"), "95% interval (paired)"].strip("[]").split(","))
    assert 0.0 <= low < 20.0 < high              # never below 0: no example got worse in int8
    assert table.loc[("mrpc", "float32"), "Δ dev acc vs fp32 (pt)"] == "n/a"
    assert table.loc[("sst2", "bfloat16"), "Δ dev acc vs fp32 (pt)"] == "n/a"


def test_foundation_table_times_a_re_evaluated_baseline_by_its_training_run():
    from stpcore.report.summary import foundation_table
    trained = {**rec(81.2), "provenance": {"device": "H200", "wall_time_s": 347.0}}
    again = {**rec(81.7), "provenance": {"device": "H200", "wall_time_s": 17.0, "evaluated_in": "int8",
                                         "evaluated_from": {"dev_accuracy": 81.2, "wall_time_s": 347.0}}}
    for r in (trained, again):
        row = foundation_table({("sst2", "baseline"): r}, ["sst2"]).xs("sst2").iloc[-1]
        assert row["training wall time (s)"] == 347        # the training, not the 17 s evaluation
    assert foundation_table({("sst2", "baseline"): again}, ["sst2"]).xs("sst2").iloc[-1]["dev acc (ours)"] == 81.7


def test_precision_table_names_the_dtype_of_the_baseline_record_beside_it():
    from stpcore.report.summary import precision_table, record_dtype
    check = {"metrics": {"float32": {"dev_accuracy": 70.0}, "int8": {"dev_accuracy": 70.0}}}
    now = {**rec(66.91), "config": {"sim_dtype": "bfloat16"}, "provenance": {"evaluated_in": "int8"}}
    archived = {**rec(66.67), "config": {"sim_dtype": "bfloat16"}, "provenance": {}}
    for base, dtype in ((now, "int8"), (archived, "bfloat16")):
        table = precision_table({("mrpc", "precision_check"): check, ("mrpc", "baseline"): base}, ["mrpc"])
        assert set(table["baseline record simulated in"]) == {dtype}
    assert record_dtype({"config": {"sim_dtype": "bfloat16", "binary_sim_dtype": "int8"}}) == "int8"
