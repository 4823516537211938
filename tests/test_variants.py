"""Pruning stages rerun with one knob changed (stpcore.report.variants): Eq. 10's latency against
hand counts, the base matched to a target latency, and a variant's records put in place of the
default ones (read from a results root written here)."""
import json
import math

import pandas as pd
import pytest

from stpcore.report import variants
from stpcore.runs.records import record_path

COMPS = {"embedding": 4, "layers": [[1, 2, 3, 4, 5, 6]]}      # 7 populations, c_max = 6


def test_eq10_latency_hand_count():
    # t = ceil(b^(c - 6) * 10) at b = 2: c = 4 -> 3 (2.5), 1..6 -> 1 (0.3125), 1 (0.625), 2 (1.25), 3, 5, 10
    assert variants.eq10_latency(COMPS, 2.0, 10) == pytest.approx((3 + 1 + 1 + 2 + 3 + 5 + 10) / 7)
    # a base just above 1 keeps every population at (almost) T_conv
    assert variants.eq10_latency(COMPS, 1.0001, 10) == pytest.approx(10.0)


def _two_stage(comps, base=1.02, t_conv=10):
    return {"config": {"pca_base": base, "t_conv": t_conv}, "metrics": {"components": comps}}


def test_match_base_picks_the_nearest_grid_point():
    recs = {("sst2", "two_stage", 0): _two_stage(COMPS), ("sst2", "two_stage", 1): _two_stage(COMPS),
            ("sst2", "two_stage", 2): None}
    target = variants.eq10_latency(COMPS, 1.5, 10)
    grid = (1.1, 1.3, 1.5, 1.7, 2.0, 3.0)
    df = variants.match_base(recs, "sst2", bases=grid, target=target)
    assert list(df.index[df["chosen"].str.contains("nearest")]) == [1.5]
    assert list(df.columns[:3]) == ["seed 0", "seed 1", "mean"] and df.loc[1.5, "mean"] == pytest.approx(round(target, 2))
    assert "these records' base" in df.loc[1.02, "chosen"]             # the records' own base is shown
    assert 3.0 not in df.index                                          # only the neighbours of the choice
    assert variants.match_base({("sst2", "two_stage", 0): None}, "sst2") is None


def test_match_base_default_target_is_the_papers_latency():
    recs = {("sst2", "two_stage", 0): _two_stage(COMPS, t_conv=85)}
    assert set(variants.match_base(recs, "sst2")["target (paper)"]) == {53.08}   # Table III, SST-2
    recs = {("sst2", "two_stage", 0): _two_stage(COMPS, t_conv=10)}               # the same share
    assert set(variants.match_base(recs, "sst2")["target (paper)"]) == {round(5.308 / 0.85, 2)}


def _put(root, rec):
    """Write ``rec`` where :func:`read_record` finds its task, stage and seed under ``root``."""
    path = record_path(rec["profile"], rec["task"], rec["stage"], root=root, seed=rec["provenance"]["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return rec


def _write(root, stage, seed, **config):
    return _put(root, {"profile": "paper", "task": "sst2", "stage": stage, "config": config,
                       "metrics": {"dev_accuracy": 80.0}, "provenance": {"seed": seed}})


def test_variant_records_replace_the_default_stages(tmp_path):
    made = _write(tmp_path / "sst2-paper-latency", "two_stage", 1, pca_base=1.0135)
    beside = _write(tmp_path / "archive" / variants.BF16_ARCHIVE, "baseline", 0, sim_dtype="bfloat16")
    default = {("sst2", "baseline", 0): {"b": 0}, ("sst2", "teacher", 0): {"t": 0}, ("sst2", "two_stage", 0): {"d": 0},
               ("sst2", "two_stage", 1): {"d": 1}, ("mrpc", "two_stage", 0): {"m": 0}}
    out = variants.variant_records("sst2-paper-latency", default, [0, 1], root=tmp_path,
                                   archive_root=tmp_path / "archive")
    assert out[("sst2", "baseline", 0)] == beside            # the record it was made beside (archived)
    assert out[("sst2", "teacher", 0)] == {"t": 0} and out[("mrpc", "two_stage", 0)] == {"m": 0}
    assert out[("sst2", "two_stage", 0)] is None                        # the variant's seed 0: not run
    assert out[("sst2", "two_stage", 1)]["config"] == made["config"]
    assert out[("sst2", "adaptive_threshold", 1)] is None
    assert variants.knob_values("sst2-paper-latency", out) == [1.0135]
    shown = variants.relabel("sst2-paper-latency", out, ["two_stage"], "(paper latency)")
    assert set(shown) == {("sst2", "two_stage (paper latency)", s) for s in (0, 1)}    # not mrpc's
    assert shown[("sst2", "two_stage (paper latency)", 1)] is out[("sst2", "two_stage", 1)]


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match=r"`name` must be one of \['mrpc-int8', 'sst2-int8', 'sst2-paper-latency'\]; got 'x'"):
        variants.variant_records("x", {}, [0])
    with pytest.raises(ValueError, match="`name` must be one of"):
        variants.knob_values("x", {})


def test_grid_steps():
    assert variants.BASE_GRID[0] == 1.0005 and variants.BASE_GRID[-1] == 1.03
    assert all(math.isclose(b - a, 0.0005, abs_tol=1e-9) for a, b in zip(variants.BASE_GRID, variants.BASE_GRID[1:]))


def _scored(stage, seed, preds, dtype, c=0.05, task="mrpc"):
    """A record of ``stage`` whose dev predictions are ``preds`` against all-"1" labels."""
    cfg = {"sim_dtype": "bfloat16"} if dtype == "bfloat16" else {"sim_dtype": "bfloat16", "binary_sim_dtype": dtype}
    return {"profile": "paper", "task": task, "stage": stage, "config": cfg, "provenance": {"seed": seed},
            "metrics": {"dev_accuracy": 100.0 * preds.count("1") / len(preds), "normalized_c": c,
                        "dev_predictions": preds, "dev_labels": "1" * len(preds)}}


def test_dtype_table_pairs_the_variant_with_the_default_records(tmp_path):
    # 40 dev examples: 30 right by default at both seeds; 32 and 32 (other ones) in int8
    old = {s: "1" * 30 + "0" * 10 for s in (0, 1)}
    new = {0: "1" * 32 + "0" * 8, 1: "1" * 30 + "0" * 8 + "11"}
    for seed, preds in new.items():
        _put(tmp_path / "mrpc-int8", _scored("two_stage", seed, preds, "int8", c=0.06))
    default = {("mrpc", "two_stage", s): _scored("two_stage", s, p, "bfloat16") for s, p in old.items()}
    default[("mrpc", "spatial_retrain", 0)] = _scored("spatial_retrain", 0, old[0], "bfloat16")
    table = variants.dtype_table("mrpc-int8", default, [0, 1], results_root=tmp_path / "mrpc-int8", n_boot=2000)
    assert list(table.index) == ["spatial_retrain", "two_stage"]   # a stage either side has
    assert table.loc["spatial_retrain", "after seeds"] == 0           # not rerun: says so
    assert table.loc["spatial_retrain", "Δ acc (pt)"] == "not run"
    row = table.loc["two_stage"]
    assert (row["before dtype"], row["after dtype"]) == ("bfloat16", "int8")
    assert (row["before seeds"], row["after seeds"]) == (2, 2)
    assert row["before dev acc (%)"] == 75.0 and row["after dev acc (%)"] == 80.0
    assert row["after Normalized #C"] == 0.06
    assert row["Δ acc (pt)"] == pytest.approx(5.0)            # per example: mean over seeds, paired
    assert variants.dtype_table("sst2-int8", default, [0, 1], results_root=tmp_path) is None   # not run


def test_dtype_comparison_reads_both_roots_and_runs_nothing(tmp_path):
    # adopted: the int8 records are the profile's own, the bf16 ones they replaced are archived
    results, archive = tmp_path / "results", tmp_path / "archive"
    replaced = archive / variants.VARIANTS["mrpc-int8"]["replaced"]
    assert variants.dtype_comparison("mrpc-int8", results_root=results, archive_root=archive) == (None, None)
    _put(replaced, _scored("two_stage", 0, "1100", "bfloat16"))
    _put(replaced, _scored("baseline", 0, "1100", "bfloat16"))
    _put(results, _scored("baseline", 0, "1110", "int8"))
    _put(results, _scored("two_stage", 0, "1110", "int8"))
    check = _scored("precision_check", 0, "1", "int8")
    check["metrics"] = {"float32": {"dev_accuracy": 75.0, "dev_predictions": "1110", "dev_labels": "1111"},
                        "int8": {"dev_accuracy": 75.0, "dev_predictions": "1110", "dev_labels": "1111"}}
    _put(results, check)
    checked, stages = variants.dtype_comparison("mrpc-int8", seeds=[0], results_root=results, archive_root=archive)
    assert checked.loc[("mrpc", "int8"), "Δ dev acc vs fp32 (pt)"] == 0.0     # the same predictions
    assert checked.loc[("mrpc", "int8"), "baseline record's dev acc"] == 50.0   # the bf16 one it replaced
    assert list(stages.index) == ["two_stage"] and stages.loc["two_stage", "Δ acc (pt)"] == 25.0


def test_dtype_reading_names_the_stages_not_rerun_and_counts_intervals_against_chance():
    rows = {"a": (3, "better", 1.5, "[0.40, 2.90]"), "b": (3, "same within noise", 0.1, "[-1.00, 1.20]"),
            "c": (0, "not run", "not run", "not run")}
    table = pd.DataFrame([{"after seeds": n, "verdict": v, "Δ acc (pt)": d, "95% interval": i}
                          for n, v, d, i in rows.values()], index=list(rows))
    text = variants.dtype_reading(table)
    assert "covers 2 of 3 stages (not rerun: c)" in text
    assert "1 of its 2 paired 95% intervals excludes zero (a: better, +1.50 pt [0.40, 2.90])" in text
    assert "about 0.1 would by chance" in text
    reruns = pd.DataFrame([{"seeds": 3, "bit-identical": 0, "Δ acc (pt)": -0.9, "95% interval": "[-1.72, -0.16]"},
                           {"seeds": 3, "bit-identical": 3, "Δ acc (pt)": 0.0, "95% interval": "[0.00, 0.00]"}],
                          index=["a", "b"])
    text = variants.dtype_reading(table, reruns=reruns)
    assert ("(a: better, +1.50 pt [0.40, 2.90], where a rerun of the same configuration alone moved "
            "it -0.90 pt [-1.72, -0.16])") in text
    assert text.count("a rerun") == 1          # a stage that rebuilt bit for bit adds nothing
    assert "probability 0.10" in text        # 1 - 0.95 ** 2 = 0.0975
    assert variants.dtype_reading(None) == "Not rerun yet."


def _rerun(root, stage, seed, preds, digest, upstream="u0"):
    rec = _scored(stage, seed, preds, "int8")
    rec["provenance"].update(checkpoint_sha256=digest, git_commit="abcdef0123",
                             upstream={"spatial_fisher_asr": {"checkpoint_sha256": upstream}})
    return _put(root, rec)


def test_rerun_table_tells_identical_rebuilds_from_runs_that_moved(tmp_path):
    first, again = tmp_path / "archive" / "first", tmp_path / "results"
    for seed in (0, 1):          # post-training: the same checkpoint and predictions both times
        for root in (first, again):
            _rerun(root, "temporal_pca", seed, "1100", "same")
    _rerun(first, "spatial_retrain", 0, "1110", "a0")          # retraining: moved at seed 0
    _rerun(again, "spatial_retrain", 0, "1100", "b0")
    _rerun(first, "spatial_retrain", 1, "1100", "a1")
    _rerun(again, "spatial_retrain", 1, "1100", "a1")
    _rerun(first, "two_stage", 0, "1100", "c1", upstream="a0")  # from the model that moved
    _rerun(again, "two_stage", 0, "1100", "c2", upstream="b0")
    _rerun(again, "joint_retrain", 0, "1100", "d")             # no first run: no row
    table = variants.rerun_table("mrpc-int8", "first", seeds=[0, 1], results_root=again,
                                 archive_root=tmp_path / "archive", n_boot=500)
    assert list(table.index) == ["spatial_retrain", "temporal_pca", "two_stage"]
    assert table.loc["temporal_pca", ["seeds", "bit-identical", "Δ acc (pt)"]].tolist() == [2, 2, 0.0]
    row = table.loc["spatial_retrain"]
    assert (row["seeds"], row["same configuration"], row["same upstream models"], row["bit-identical"]) == (2, 2, 2, 1)
    assert (row["first run dev acc (%)"], row["rerun dev acc (%)"]) == (62.5, 50.0)
    assert row["Δ acc (pt)"] == -12.5 and row["first run commit"] == "abcdef0"
    assert table.loc["two_stage", "same upstream models"] == 0
    text = variants.rerun_reading(table, "MRPC")
    assert text.startswith("MRPC: temporal_pca rebuilt bit for bit at every seed")
    assert "spatial_retrain differs at 1 of 2 seeds (from the same models), -12.50 pt" in text
    assert "two_stage differs at 1 of 1 seeds (from upstream models that moved)" in text
    assert variants.rerun_table("sst2-int8", "first", results_root=again,
                                archive_root=tmp_path / "archive") is None
    assert variants.rerun_reading(None, "SST-2") == "SST-2: no stage recomputed."


def test_repeat_table_lists_every_run_of_one_configuration(tmp_path):
    results, archive, repeats = tmp_path / "results", tmp_path / "archive", tmp_path / "repeats"
    _rerun(results, "spatial_retrain", 0, "1100", "b0")
    _rerun(archive / "first", "spatial_retrain", 0, "1110", "a0")
    _rerun(repeats / "again", "spatial_retrain", 0, "1100", "b0")       # the same checkpoint
    det = _rerun(repeats / "det", "spatial_retrain", 0, "1111", "c0")
    det["provenance"]["deterministic"] = True
    _put(repeats / "det", det)
    _rerun(repeats / "moved", "spatial_retrain", 0, "1000", "d0", upstream="u1")   # other upstream
    other = _rerun(repeats / "bf16", "spatial_retrain", 0, "1000", "e0")
    other["config"] = {"sim_dtype": "bfloat16"}
    _put(repeats / "bf16", other)                                       # another configuration: left out
    for i, (root, name) in enumerate([(archive, "first"), (results, None), (repeats, "again"),
                                      (repeats, "det"), (repeats, "moved")]):
        path = record_path("paper", "mrpc", "spatial_retrain", root=root / name if name else root)
        rec = json.loads(path.read_text())
        rec["provenance"]["finished"] = f"2026-12-0{i + 1}"
        path.write_text(json.dumps(rec))
    table = variants.repeat_table("mrpc", "spatial_retrain", results_root=results, archive_root=archive,
                                  repeats_root=repeats, n_boot=500)
    assert list(table.index) == ["archive/first", "current record", "repeats/again", "repeats/det", "repeats/moved"]
    assert table.loc["current record", "Δ vs current (pt)"] == "(reference)"
    assert table.loc["archive/first", "Δ vs current (pt)"] == 25.0 and table.loc["repeats/again", "Δ vs current (pt)"] == 0.0
    assert table["deterministic mode"].tolist() == [False, False, False, True, False]
    bare = json.loads(record_path("paper", "mrpc", "spatial_retrain", root=repeats / "moved").read_text())
    del bare["metrics"]["dev_predictions"]                  # a record without per-example predictions
    _put(repeats / "moved", bare)
    assert variants.repeat_table("mrpc", "spatial_retrain", results_root=results, archive_root=archive,
                                 repeats_root=repeats, n_boot=100).loc["repeats/moved", "Δ vs current (pt)"] == "n/a"
    assert table["same upstream models"].tolist() == [True, True, True, True, False]
    text = variants.repeat_reading(table, "mrpc", "spatial_retrain")
    assert "4 runs with the current record's configuration and upstream models made 3 distinct checkpoint(s)" in text
    assert "in default mode, 3 run(s), dev accuracy 50.00 to 75.00 (spread 25.00 pt)" in text
    assert "in deterministic mode, 1 run(s), dev accuracy 100.00." in text
    assert variants.repeat_table("sst2", "spatial_retrain", results_root=results) is None
    assert variants.repeat_reading(None, "sst2", "x") == "sst2 x: no current record."
