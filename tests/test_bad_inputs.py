"""Bad inputs fail before any work starts, with a message naming the parameter, what is allowed
and what was given; nothing is written to the results or runs folders.

One table of bad inputs (command lines, ``get_profile`` calls, notebook parameters), each with
the fragment its message must contain; then the inputs that must pass.
"""
from __future__ import annotations

import dataclasses
import os
import time

import pytest

import stpcore.runs.runner as runner          # imported up front: the rows below are timed
from stpcore.__main__ import main
from stpcore.runs import validate
from stpcore.runs.profiles import FIELD_RULES, PROFILES, Profile, get_profile
from stpcore.runs.validate import validate_notebook_params

QUICK_S = 5.0          # a rejected input never gets near a stage; generous for a slow CI box


def cli(*args):
    return ("cli", ["run", "--task", "sst2", "--profile", "smoke", *args])


def api(*args, **kwargs):
    return ("api", lambda: get_profile(*args, **kwargs))


def nb(**params):
    return ("nb", lambda: validate_notebook_params(**params))


BAD = [
    # --- command line: --set values ----------------------------------------------------------
    ("t_conv=0", *cli("--set", "t_conv=0"), "profile field `t_conv` must be an int >= 1; got 0"),
    ("t_conv=abc", *cli("--set", "t_conv=abc"), "`t_conv` must be an int >= 1; got 'abc'"),
    ("t_conv=NaN", *cli("--set", "t_conv=NaN"), "`t_conv` must be an int >= 1; got nan"),
    ("t_conv=8.5", *cli("--set", "t_conv=8.5"), "`t_conv` must be an int >= 1; got 8.5"),
    ("initial_vth=0", *cli("--set", "initial_vth=0"), "`initial_vth` must be a finite number > 0; got 0"),
    ("initial_vth=Infinity", *cli("--set", "initial_vth=Infinity"), "`initial_vth` must be a finite number > 0; got inf"),
    ("kd_batch_size=abc", *cli("--set", "kd_batch_size=abc"), "`kd_batch_size` must be an int >= 1; got 'abc'"),
    ("time_chunk=0", *cli("--set", "time_chunk=0"), "`time_chunk` must be an int >= 1; got 0"),
    ("student_layers=10", *cli("--set", "student_layers=10"), "`student_layers` must be an int in [1, 6]"),
    ("student_layers=0", *cli("--set", "student_layers=0"), "`student_layers` must be an int >= 1; got 0"),
    ("teacher_lr=NaN", *cli("--set", "teacher_lr=NaN"), "`teacher_lr` must be a finite number > 0; got nan"),
    ("teacher_lr=-1e4", *cli("--set", "teacher_lr=-1e4"), "`teacher_lr` must be a finite number > 0; got -10000.0"),
    ("teacher_lr=Infinity", *cli("--set", "teacher_lr=Infinity"), "`teacher_lr` must be a finite number > 0; got inf"),
    ("heldout_rule=foo", *cli("--set", "heldout_rule=foo"), "`heldout_rule` must be one of ['match_dev', 'random']; got 'foo'"),
    ("sim_dtype=float33", *cli("--set", "sim_dtype=float33"), "`sim_dtype` must be one of ['float32', 'bfloat16', 'float16']"),
    ("ac_budget=0", *cli("--set", "ac_budget=0"), "`ac_budget` must be a finite number in (0, 1]; got 0"),
    ("budget_sweep item", *cli("--set", "budget_sweep=[0.5,1.5]"), "`budget_sweep` must be a non-empty tuple of numbers"),
    ("base_sweep<1", *cli("--set", "base_sweep=[0.9]"), "`base_sweep` must be a non-empty tuple"),
    ("progress=1", *cli("--set", "progress=1"), "`progress` must be a bool"),
    ("train_limit=0", *cli("--set", "train_limit=0"), "`train_limit` must be an int >= 1 or None; got 0"),
    ("max_length=1000", *cli("--set", "max_length=1000"), "`max_length` must be an int in [2, 512]"),
    ("penalty_fraction=1.5", *cli("--set", "penalty_fraction=1.5"), "`penalty_fraction` must be a finite number in [0, 1]; got 1.5"),
    ("pca_base=1", *cli("--set", "pca_base=1.0"), "`pca_base` must be a finite number > 1; got 1.0"),
    ("heldout_fraction=1", *cli("--set", "heldout_fraction=1"), "`heldout_fraction` must be a finite number in (0, 1)"),
    ("empty teacher", *cli("--set", "teacher="), "`teacher` must be a non-empty string"),
    ("--teacher ''", *cli("--teacher", ""), "`teacher` must be a non-empty string"),
    ("unknown key", *cli("--set", "foo=1"), "unknown profile override(s) ['foo']"),
    # --- command line: the form of --set, stages, seeds, task ----------------------------------
    ("--set without =", *cli("--set", "t_conv"), "`--set` items must be KEY=VALUE (e.g. t_conv=8); got 't_conv'"),
    ("--set empty key", *cli("--set", "=5"), "`--set` items must be KEY=VALUE"),
    ("--set name", *cli("--set", "name=paper"), "`--set name` is not a profile field; use --profile"),
    ("unknown stage", *cli("--stages", "teacher,foo"), "`stages` must be a comma-separated list of teacher"),
    ("empty stage", *cli("--stages", "teacher,"), "got unknown ['']"),
    ("negative seed", *cli("--seed", "-1"), "`--seed` must be an int >= 0; got -1"),
    ("negative base seed", *cli("--base-seed", "-2"), "`--base-seed` must be an int >= 0; got -2"),
    ("unknown task", "cli", ["run", "--task", "cola"], "`task` must be one of"),
    # --- get_profile -------------------------------------------------------------------------
    ("api t_conv=-3", *api("paper", "sst2", t_conv=-3), "profile field `t_conv` must be an int >= 1; got -3"),
    ("api ac_budget=7", *api("paper", "sst2", ac_budget=7), "`ac_budget` must be a finite number in (0, 1]; got 7"),
    ("api train_batch_size='x'", *api("paper", "sst2", train_batch_size="x"), "`train_batch_size` must be an int >= 1; got 'x'"),
    ("api heldout_rule", *api("paper", "sst2", heldout_rule="foo"), "`heldout_rule` must be one of"),
    ("api temporal_granularity", *api("paper", "sst2", temporal_granularity="foo"), "`temporal_granularity` must be one of ['sublayer', 'layer']; got 'foo'"),
    ("api sim_dtype", *api("paper", "sst2", sim_dtype="float33"), "`sim_dtype` must be one of ['float32', 'bfloat16', 'float16']; got 'float33'"),
    ("api unknown key", *api("paper", "sst2", t_convv=8), "unknown profile override(s) ['t_convv']"),
    ("api unknown profile", *api("huge", "sst2"), "`profile` must be one of ['paper', 'smoke']; got 'huge'"),
    ("api unknown task", *api("paper", "cola"), "`task` must be one of"),
    ("api bool as int", *api("smoke", "mrpc", freeze_masks=0), "`freeze_masks` must be a bool"),
    ("api extra not dict", *api("smoke", "mrpc", extra=[1]), "`extra` must be a dict"),
    ("api empty sweep", *api("smoke", "mrpc", lambda_sweep=()), "`lambda_sweep` must be a non-empty tuple"),
    ("api eval_limit=1.5", *api("smoke", "mrpc", eval_limit=1.5), "`eval_limit` must be an int >= 1 or None; got 1.5"),
    ("api pca_variance=0", *api("smoke", "mrpc", pca_variance=0.0), "`pca_variance` must be a finite number in (0, 1]"),
    ("api ac_penalty_lambda<0", *api("smoke", "mrpc", ac_penalty_lambda=-1e-12), "`ac_penalty_lambda` must be a finite number >= 0"),
    # --- notebook parameters -----------------------------------------------------------------
    ("nb profile", *nb(profile="big"), "`profile` must be one of ['paper', 'smoke']; got 'big'"),
    ("nb tasks json", *nb(tasks='["cola"]'), "`tasks` must be a non-empty list of tasks"),
    ("nb tasks empty", *nb(tasks=[]), "`tasks` must be a non-empty list"),
    ("nb tasks int", *nb(tasks=5), "`tasks` must be a non-empty list"),
    ("nb task", *nb(task="cola"), "`task` must be one of"),
    ("nb seeds negative", *nb(seeds="[-1]"), "`seeds` must be a non-empty list of ints >= 0; got '[-1]'"),
    ("nb seeds float", *nb(seeds=[1.5]), "`seeds` must be a non-empty list of ints >= 0"),
    ("nb seeds text", *nb(seeds="abc"), "`seeds` must be a non-empty list of ints >= 0; got 'abc'"),
    ("nb seed", *nb(seed=-1), "`seed` must be an int >= 0; got -1"),
    ("nb recompute word", *nb(recompute="maybe"), "`recompute` must be a bool"),
    ("nb recompute 2", *nb(recompute=2), "`recompute` must be a bool"),
    ("nb recompute None", *nb(recompute=None), "`recompute` must be a bool"),
    ("nb unknown", *nb(profle="smoke"), "unknown notebook parameter(s) ['profle']"),
]


@pytest.fixture
def outdirs(tmp_path, monkeypatch):
    """Results and runs folders under tmp_path (not yet created); no stage may run."""
    monkeypatch.setenv("STP_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("STP_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("STP_GLUE_DIR", raising=False)

    def no_stage(*a, **k):
        raise AssertionError(f"a stage ran despite bad input: {a} {k}")
    monkeypatch.setattr(runner, "run_stage", no_stage)
    return tmp_path


def expect_rejected(kind, what, fragment, capsys) -> str:
    """Run one bad input; return its message (the exit-2 line for the CLI)."""
    if kind == "cli":
        with pytest.raises(SystemExit) as info:
            main(what)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1].startswith("python -m stpcore: error: "), err
        message = err.strip().splitlines()[-1]
    else:
        with pytest.raises(ValueError) as info:
            what()
        message = str(info.value)
    assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_table_is_big_enough():
    assert len(BAD) >= 30
    assert len({row[0] for row in BAD}) == len(BAD)


@pytest.mark.parametrize("label,kind,what,fragment", BAD, ids=[row[0] for row in BAD])
def test_bad_input_is_rejected_quickly_and_writes_nothing(label, kind, what, fragment, outdirs,
                                                          capsys):
    start = time.perf_counter()
    expect_rejected(kind, what, fragment, capsys)
    assert time.perf_counter() - start < QUICK_S
    assert list(outdirs.rglob("*")) == []


# ---- output folders -------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["STP_RESULTS_DIR", "STP_RUNS_DIR"])
@pytest.mark.parametrize("layout", ["file", "under_file", "empty"])
def test_unusable_output_folder_fails_before_training(env, layout, outdirs, monkeypatch, capsys):
    blocker = outdirs / "a_file"
    blocker.write_text("not a folder")
    path = {"file": str(blocker), "under_file": str(blocker / "sub"), "empty": ""}[layout]
    monkeypatch.setenv(env, path)
    fragment = (f"`{env}` must be a writable directory" if layout == "empty" else
                f"`{env}` must be a writable directory (or one that can be created); "
                f"got {path!r}")
    expect_rejected(*cli(), fragment, capsys)
    assert [p.name for p in outdirs.rglob("*")] == ["a_file"]


@pytest.mark.parametrize("env", ["STP_RESULTS_DIR", "STP_RUNS_DIR"])
def test_read_only_output_folder_fails_before_training(env, outdirs, monkeypatch, capsys):
    """Root ignores permission bits, so the check's own view (os.access) is made read-only."""
    ro = outdirs / "ro"
    ro.mkdir()
    monkeypatch.setenv(env, str(ro / "sub"))
    real_access = os.access
    monkeypatch.setattr(validate.os, "access",
                        lambda p, mode, **k: False if str(p) == str(ro) else real_access(p, mode))
    expect_rejected(*cli(), f"`{env}` must be a writable directory (or one that can be created); "
                            f"got {str(ro / 'sub')!r}, which would be created under {str(ro)!r}, "
                            f"which is not writable", capsys)
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write to read-only folders")
def test_read_only_output_folder_really(outdirs, monkeypatch, capsys):
    ro = outdirs / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        monkeypatch.setenv("STP_RESULTS_DIR", str(ro))
        expect_rejected(*cli(), "which is not writable", capsys)
    finally:
        ro.chmod(0o700)


# ---- every field has a rule ---------------------------------------------------------------------
def test_every_profile_field_has_a_rule():
    fields = {f.name for f in dataclasses.fields(Profile)}
    assert fields - set(FIELD_RULES) == set(), "Profile fields without a rule in FIELD_RULES"
    assert set(FIELD_RULES) - fields == set(), "rules for fields Profile no longer has"


def test_a_field_without_a_rule_fails_validation(monkeypatch):
    monkeypatch.delitem(FIELD_RULES, "time_chunk")
    with pytest.raises(ValueError, match="profile field `time_chunk` has no validation rule"):
        get_profile("smoke", "sst2")


def test_name_rule_lists_the_profiles():
    assert FIELD_RULES["name"].allowed == f"one of {sorted(PROFILES)}"


# ---- inputs that must pass ----------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["smoke", "paper"])
@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_default_profiles_validate(profile, task):
    p = get_profile(profile, task)
    assert p.validate() is p
    assert p.name == profile


@pytest.mark.parametrize("profile", ["smoke", "paper"])
@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_default_command_line_passes_validation(profile, task, outdirs, monkeypatch, capsys):
    calls = []

    def fake_run_stage(task, name, profile, seed, **kw):
        calls.append((task, name, profile, seed, kw))
        return {"metrics": {"dev_accuracy": 50.0}, "provenance": {"wall_time_s": 0.0,
                                                                  "device": "cpu"}}
    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    assert main(["run", "--task", task, "--profile", profile]) == 0
    assert [c[1] for c in calls] == ["teacher", "spiking_fp", "baseline"]
    assert list(outdirs.rglob("*")) == []


def test_set_values_are_parsed_as_json_and_pass(outdirs, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(runner, "run_stage", lambda *a, **kw: calls.append(kw) or {
        "metrics": {}, "provenance": {"wall_time_s": 0.0, "device": "cpu"}})
    assert main(["run", "--task", "sst2", "--stages", "teacher", "--seed", "1", "--set",
                 "teacher_lr=1e4", "--set", "budget_sweep=[0.5,1.0]", "--set", "progress=false",
                 "--set", "train_limit=null", "--set", "heldout_rule=random",
                 "--set", "student_layers=6"]) == 0
    kw = calls[0]
    assert kw["teacher_lr"] == 1e4 and kw["budget_sweep"] == [0.5, 1.0]
    assert kw["progress"] is False and kw["train_limit"] is None
    assert kw["heldout_rule"] == "random" and kw["student_layers"] == 6
    p = get_profile("smoke", "sst2", budget_sweep=[0.5, 1.0])
    assert p.budget_sweep == (0.5, 1.0)                   # lists become tuples


def test_other_teachers_leave_the_depth_to_later():
    assert get_profile("smoke", "sst2", teacher="bert-base-uncased",
                       student_layers=10).student_layers == 10


def test_notebook_params_normalised(outdirs):
    out = validate_notebook_params(profile="smoke", tasks='["mrpc"]', task=None, seeds="[0, 2]",
                                   seed="1", recompute="Yes", bench_dir=None)
    assert out == {"profile": "smoke", "tasks": ["mrpc"], "task": None, "seeds": [0, 2],
                   "seed": 1, "recompute": True, "bench_dir": None}
    assert validate_notebook_params(tasks=("sst2", "mrpc"))["tasks"] == ["sst2", "mrpc"]
    assert validate_notebook_params(tasks="sst2,mrpc")["tasks"] == ["sst2", "mrpc"]
    assert validate_notebook_params(task="mrpc", seeds=3)["seeds"] == [3]
    for word, value in [("true", True), ("FALSE", False), ("1", True), ("0", False),
                        ("no", False), (True, True), (False, False), (1, True), (0, False)]:
        assert validate_notebook_params(recompute=word)["recompute"] is value
    assert validate_notebook_params(profile="paper", tasks=["sst2", "mrpc"], seed=0,
                                    recompute=False, task=None) == {
        "profile": "paper", "tasks": ["sst2", "mrpc"], "seed": 0, "recompute": False, "task": None}
    assert list(outdirs.rglob("*")) == []


def test_notebook_params_check_output_folders_when_writing(outdirs, monkeypatch):
    blocker = outdirs / "f"
    blocker.write_text("x")
    monkeypatch.setenv("STP_RESULTS_DIR", str(blocker))
    validate_notebook_params(profile="paper", recompute=False)          # reading only: fine
    with pytest.raises(ValueError, match="`STP_RESULTS_DIR` must be a writable directory"):
        validate_notebook_params(profile="smoke")
    with pytest.raises(ValueError, match="`STP_RESULTS_DIR` must be a writable directory"):
        validate_notebook_params(profile="paper", recompute="true")
