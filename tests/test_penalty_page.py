"""The penalty page's travel table and x1 sentence, and the granularity page's divisor reading
(synthetic records built here, plus the paper's Table III latencies)."""
import pytest


def _rec(task, stage, mask_lr=0.05, seed=0, upstream="aa" * 32, **metrics):
    return {"schema": 1, "profile": "test", "task": task, "stage": stage,
            "config": {"mask_lr": mask_lr}, "metrics": metrics,
            "provenance": {"seed": seed, "upstream": {"spatial_fisher_asr": {"checkpoint_sha256": upstream}}}}


def _flips(heads, neurons):
    return {"heads_pruned": heads, "heads_restored": 0, "neurons_pruned": neurons, "neurons_restored": 0}


def _retrain(task, steps, mask_lr=0.05, seed=0, flips=(1, 2), acs=0.25, dev=70.0, **extra):
    return _rec(task, "spatial_retrain", mask_lr, seed, penalty_steps=steps, penalty_scale=4.0,
                mask_flips=_flips(*flips), acs_fraction=acs, dev_accuracy=dev, **extra)


def test_travel_table_has_a_task_column_and_reads_the_recorded_travel():
    from stpcore.report import penalty
    table = penalty.travel_table({
        ("sst2", "seed 0"): _retrain("sst2", 250, max_logit_travel=12.5, flips=(9, 264)),
        ("mrpc", "seed 0"): _retrain("mrpc", 164, flips=(34, 770)),            # no recorded travel
        ("mrpc", "seed 1"): None})
    assert list(table.index.names) == ["task", "run"]
    assert table.loc[("SST-2", "seed 0"), "max logit travel"] == 12.5
    assert table.loc[("MRPC", "seed 0"), "max logit travel"] == pytest.approx(8.2)   # 0.05 x 164
    assert table.loc[("MRPC", "seed 0"), "masks flipped"] == 804
    assert table.loc[("MRPC", "seed 1"), "masks flipped"] == "not run"


def test_travel_reading_restates_each_task_and_rate():
    from stpcore.report import penalty
    table = penalty.travel_table({
        ("sst2", "seed 0"): _retrain("sst2", 250, max_logit_travel=12.5, flips=(9, 264)),
        ("sst2", "seed 1"): _retrain("sst2", 250, max_logit_travel=12.5, flips=(6, 207)),
        ("mrpc", "old seed 1"): _retrain("mrpc", 164, mask_lr=0.01, flips=(0, 0)),
        ("mrpc", "old seed 2"): _retrain("mrpc", 164, mask_lr=0.01, flips=(0, 0))})
    text = penalty.travel_reading(table)
    assert text == ("SST-2 at `mask_lr` 0.05: 250 penalty steps, at most 12.5 of travel, 213 to 273 "
                    "masks flipped over 2 runs; MRPC at `mask_lr` 0.01: 164 penalty steps, at most "
                    "1.64 of travel, 0 masks flipped over 2 runs.")


def test_x1_against_retrain_sets_both_runs_side_by_side():
    from stpcore.report import penalty
    sweep = _rec("mrpc", "lambda_sweep", points=[
        {"multiplier": 0.0, "acs_fraction": 0.6, "dev_accuracy": 67.0, "mask_flips": _flips(0, 1)},
        {"multiplier": 1.0, "acs_fraction": 0.2603, "dev_accuracy": 68.63, "mask_flips": _flips(34, 765)}])
    retrain = _retrain("mrpc", 164, flips=(34, 770), acs=0.2598, dev=68.63)
    text = penalty.x1_against_retrain(sweep, retrain, "mrpc")
    assert text.startswith("MRPC: the sweep's x1 point is a separate run from the `spatial_retrain` "
                           "seed-0 record, from the same post-training model (aaaaaaaa): ACs kept "
                           "26.03 % against 25.98 %, masks flipped 799 against 804, dev accuracy "
                           "68.63 against 68.63; in PyTorch's default mode two runs need not agree")
    same = _retrain("mrpc", 164, flips=(34, 765), acs=0.2603, dev=68.63, )
    assert penalty.x1_against_retrain(sweep, same, "mrpc").endswith("; they agree.")
    other = _retrain("mrpc", 164, upstream="bb" * 32)
    assert "post-training models of different digests" in penalty.x1_against_retrain(sweep, other, "mrpc")
    assert "not run" in penalty.x1_against_retrain(sweep, None, "mrpc")
    assert "no x1 point" in penalty.x1_against_retrain(None, retrain, "mrpc")


def test_divisor_table_shows_every_d_and_the_reading_matches_it():
    from stpcore.report import granularity
    div = granularity.latency_divisors()
    assert list(div.index) == list(range(1, 31))          # every d, none filtered
    hits = div["latencies that are k/d"]
    text = granularity.latency_divisors_reading(div)
    assert text.startswith("Of d = 1 to 30, only d = 25 fits all 10;")
    assert f"d = 4, a mean over the 4 layers, fits {hits[4]}" in text
    assert f"the next best fit {hits[hits < 10].max()}" in text
    assert f"every d fits the {hits[1]} whole-number latencies" in text and hits.min() == hits[1]
