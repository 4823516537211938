"""Choosing a schedule on held-out accuracy (stpcore.runs.sweep, `python -m stpcore choose`)."""
import json

import pytest

from stpcore.__main__ import main
from stpcore.runs.records import record_path
from stpcore.runs.sweep import choose_variant, parse_variant


def write(root, seed, held, dev, task="mrpc", stage="baseline", train=None, config=None, preds=None):
    path = record_path("paper", task, stage, root=root, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    history = [{"train_accuracy": train}] if train is not None else []
    shown = {"dev_predictions": preds, "dev_labels": "1" * len(preds)} if preds else {}
    path.write_text(json.dumps({"profile": "paper", "task": task, "stage": stage, "config": config or {},
                                "metrics": {"heldout_accuracy": held, "dev_accuracy": dev,
                                            "history": history, **shown},
                                "provenance": {"seed": seed}}))


def test_held_out_mean_decides_and_dev_never_does(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, 0, 70.0, 90.0), write(a, 1, 72.0, 90.0)     # best dev, worse held-out (mean 71)
    write(b, 0, 75.0, 60.0), write(b, 1, 69.0, 60.0)     # mean held-out 72
    out = choose_variant({"a": (a, {}), "b": (b, {"pred_lr": 1e-4})}, "mrpc")
    assert out["chosen"] == "b"
    assert out["variants"]["a"]["mean_heldout"] == pytest.approx(71.0)
    assert out["variants"]["b"]["mean_dev"] == pytest.approx(60.0)
    assert out["variants"]["b"]["overrides"] == {"pred_lr": 1e-4}


def test_incomplete_variant_cannot_win(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, 0, 60.0, 60.0), write(a, 1, 60.0, 60.0)
    write(b, 0, 99.0, 99.0)                               # seed 1 missing (a failed run)
    out = choose_variant({"a": (a, {}), "b": (b, {})}, "mrpc")
    assert out["chosen"] == "a" and out["variants"]["b"]["complete"] is False
    with pytest.raises(ValueError, match="no variant has `baseline` records for every seed"):
        choose_variant({"b": (b, {})}, "mrpc")


@pytest.mark.parametrize("text, message", [
    ("justaname", "NAME:ROOT"), (":root", "NAME:ROOT"), ("a:root:pred_lr", "key=value")])
def test_parse_variant_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_variant(text)


def test_cli_writes_the_comparison_and_prints_the_winner(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for s in (0, 1):
        write(a, s, 60.0, 70.0), write(b, s, 65.0, 70.0)
    out = tmp_path / "choice.json"
    assert main(["choose", "--task", "mrpc", "--variant", f"a:{a}", "--variant",
                 f"b:{b}:pred_lr=1e-4,fp_pred_epochs=10", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "b"
    saved = json.loads(out.read_text())
    assert saved["variants"]["b"]["overrides"] == {"pred_lr": 1e-4, "fp_pred_epochs": 10}
    with pytest.raises(SystemExit):          # a bad override is refused before anything is read
        main(["choose", "--task", "mrpc", "--variant", f"a:{a}:pred_lr=-1", "--out", str(out)])
    assert "pred_lr" in capsys.readouterr().err


# ---- the book's view of a sweep (stpcore.report.schedules) ------------------------------------
def test_count_denominator_recovers_the_split_size():
    from stpcore.report.schedules import count_denominator
    assert count_denominator([100 * 122 / 182, 100 * 131 / 182]) == 182
    assert count_denominator([50.0]) == 2 and count_denominator([]) == 1


def test_schedule_sweep_table_and_reading(tmp_path):
    from stpcore.report.schedules import (load_schedule_sweep, schedule_sweep_reading,
                                          schedule_sweep_table)
    sweeps, results = tmp_path / "sweeps", tmp_path / "results"
    folder = sweeps / "mrpc-schedule"
    for s, (h, d) in enumerate([(50.0, 60.0), (75.0, 60.0)]):       # default: held-out 62.5
        write(results, s, h, d), write(results, s, h, d, stage="spiking_fp")
    for s in (0, 1):                                                 # B: full precision only
        write(folder / "B", s, 100.0, 70.0, stage="spiking_fp", train=90.0 + 10 * s)
    variants = {"default": (results, {}), "B": (folder / "B", {"pred_lr": 1e-4})}
    choice = choose_variant(variants, "mrpc")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "choice.json").write_text(json.dumps(choice))
    sweep = load_schedule_sweep("mrpc", root=sweeps, results=results)
    table = schedule_sweep_table(sweep)
    assert table.loc["default (chosen)", "1-bit: held-out"] == 62.5
    assert table.loc["B", "1-bit: held-out"] == "not run" and table.loc["B", "full precision: seeds"] == 2
    assert table.loc["B", "pred_lr"] == 1e-4 and table.loc["default (chosen)", "pred_lr"] == "n/a"
    text = schedule_sweep_reading(sweep)
    assert "Chosen: **default**" in text and "stopped before that stage): B" in text
    assert "full precision: held-out means B 100.00, default 62.50" in text
    assert "over 8 examples" in text          # 4 examples per slice (25 % steps), 2 seeds
    assert "last epoch minus held-out accuracy: B -5.00 points" in text    # 95 - 100
    assert table.loc["B", "full precision: train"] == 95.0


@pytest.mark.parametrize("default_epochs, adopted", [(3, False), (5, True)])
def test_reading_of_a_chosen_variant_compares_dev_and_says_if_adopted(tmp_path, default_epochs, adopted):
    from stpcore.report.schedules import load_schedule_sweep, schedule_sweep_reading, schedule_sweep_table
    sweeps, results = tmp_path / "sweeps", tmp_path / "results"
    folder = sweeps / "sst2-schedule"
    cfg = {"fp_ikd_epochs": default_epochs}
    for s in (0, 1):       # dev: default right on 100 of 200, long on 200 (labels all 1)
        write(results, s, 80.0, 50.0, "sst2", config=cfg, preds="1" * 100 + "0" * 100)
        write(folder / "long", s, 90.0, 100.0, "sst2", config={"fp_ikd_epochs": 5}, preds="1" * 200)
    choice = choose_variant({"default": (results, {}), "long": (folder / "long", {"fp_ikd_epochs": 5})}, "sst2")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "choice.json").write_text(json.dumps(choice))
    sweep = load_schedule_sweep("sst2", root=sweeps, results=results)
    text = schedule_sweep_reading(sweep)
    assert ("Chosen: **long**" in text) is adopted          # "chosen" only where the records use it
    assert ("Held-out's pick: **long**, not adopted" in text) is not adopted
    labels = set(schedule_sweep_table(sweep).index)
    assert labels == ({"default", "long (chosen)"} if adopted else
                      {"default (used by the records)", "long (held-out's pick; not adopted)"})
    assert "seeds pooled: +50.00 [" in text and "over 200 dev examples): better" in text
    assert ("has adopted long (fp_ikd_epochs=5)" in text) is adopted
    assert ("has not adopted long" in text) is not adopted
