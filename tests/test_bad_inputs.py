"""Bad inputs fail before any work starts, with a message naming the parameter, what is allowed
and what was given; nothing is written to the results or runs folders.

One table of bad inputs (every command: run, pack, choose, book; ``--set`` values; ``get_profile``
calls; notebook parameters), each with the fragment its message must contain; then the inputs
that must pass. Bad files and bad arguments to the library's functions: ``test_bad_files.py``.
"""
from __future__ import annotations

import dataclasses
import os

import pytest

import stpcore.report.book  # noqa: F401      # imported up front: the rows below are timed
import stpcore.runs.runner as runner
from stpcore.__main__ import main
from stpcore.runs import validate
from stpcore.runs.profiles import FIELD_RULES, PROFILES, Profile, get_profile
from stpcore.runs.validate import validate_notebook_params
from stpcore.train import data
from conftest import expect_rejected, expect_rejected_quickly, rows

def cli(*args):
    return ("cli", ["run", "--task", "sst2", "--profile", "smoke", *args])


def argv(*args):
    return ("cli", list(args))


def pack(*args):
    return ("cli", ["pack", "--task", "sst2", "--profile", "smoke", "--out", "packed", *args])


def choose(*args):
    return ("cli", ["choose", "--task", "sst2", "--out", "choice.json", *args])


SEEDS = "`--seeds` must be comma-separated distinct ints >= 0 (e.g. 0,1,2)"


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
    ("binary_sim_dtype=int4", *cli("--set", "binary_sim_dtype=int4"), "`binary_sim_dtype` must be one of ['same', 'int8']; got 'int4'"),
    ("ac_budget=0", *cli("--set", "ac_budget=0"), "`ac_budget` must be a finite number in (0, 1]; got 0"),
    ("budget_sweep item", *cli("--set", "budget_sweep=[0.5,1.5]"), "`budget_sweep` must be a non-empty tuple of numbers"),
    ("base_sweep<1", *cli("--set", "base_sweep=[0.9]"), "`base_sweep` must be a non-empty tuple"),
    ("progress=1", *cli("--set", "progress=1"), "`progress` must be a bool"),
    ("train_limit=0", *cli("--set", "train_limit=0"), "`train_limit` must be an int >= 1 or None; got 0"),
    ("max_length=1000", *cli("--set", "max_length=1000"), "`max_length` must be an int in [8, 512]"),
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
    ("stage switched off", *cli("--stages", "teacher,general_kd"), "`--stages` names ['general_kd'], which this profile turns off"),
    ("negative seed", *cli("--seed", "-1"), "`--seed` must be an int >= 0 (at most 2**32 - 1); got -1"),
    ("negative base seed", *cli("--base-seed", "-2"), "`--base-seed` must be an int >= 0 (at most 2**32 - 1); got -2"),
    ("unknown task", "cli", ["run", "--task", "cola"], "`task` must be one of"),
    ("--seed 2**32", *cli("--seed", "4294967296"), "`--seed` must be an int >= 0 (at most 2**32 - 1); got 4294967296"),
    ("--seed abc", *cli("--seed", "abc"), "argument --seed: invalid int value: 'abc'"),
    ("--seed 1.5", *cli("--seed", "1.5"), "argument --seed: invalid int value: '1.5'"),
    ("--base-seed x", *cli("--base-seed", "x"), "argument --base-seed: invalid int value: 'x'"),
    ("--stages ''", *cli("--stages", ""), "`stages` must be a comma-separated list of teacher"),
    ("--stages all,teacher", *cli("--stages", "all,teacher"), "(or 'all'); got unknown ['all']"),
    ("--stages Teacher", *cli("--stages", "Teacher"), "got unknown ['Teacher']"),
    ("--stages with space", *cli("--stages", "teacher, baseline"), "got unknown [' baseline']"),
    ("--profile huge", *argv("run", "--task", "sst2", "--profile", "huge"), "argument --profile: invalid choice: 'huge'"),
    ("--task SST2", *argv("run", "--task", "SST2"), "`task` must be one of ['mnli', 'mrpc', 'qnli', 'qqp', 'sst2']; got 'SST2'"),
    ("--task ''", *argv("run", "--task", ""), "`task` must be one of ['mnli', 'mrpc', 'qnli', 'qqp', 'sst2']; got ''"),
    ("run without --task", *argv("run"), "the following arguments are required: --task"),
    ("no command", *argv(), "the following arguments are required: command"),
    ("unknown command", *argv("train"), "argument command: invalid choice: 'train'"),
    ("unknown command lists all", *argv("prune"), "'choose'"),
    ("unknown flag", *cli("--foo"), "unrecognized arguments: --foo"),
    ("--force with a value", *cli("--force", "yes"), "unrecognized arguments: yes"),
    ("--set without value", *cli("--set"), "argument --set: expected one argument"),
    ("--teacher without value", *cli("--teacher"), "argument --teacher: expected one argument"),
    ("--teacher not a folder", *cli("--teacher", "/nonexistent/teacher"), "`teacher` must be a teacher name, a hub id or an existing folder; got '/nonexistent/teacher'"),
    ("--set blank key", *cli("--set", " =5"), "`--set` items must be KEY=VALUE (e.g. t_conv=8); got ' =5'"),
    ("--set task", *cli("--set", "task=mrpc"), "`--set task` is not a profile field; use --task instead; got 'task=mrpc'"),
    ("--set profile", *cli("--set", "profile=paper"), "`--set profile` is not a profile field; use --profile"),
    ("--set seed", *cli("--set", "seed=1"), "`--set seed` is not a profile field; use --seed instead; got 'seed=1'"),
    ("--set base_seed", *cli("--set", "base_seed=1"), "`--set base_seed` is not a profile field; use --base-seed"),
    ("--set force", *cli("--set", "force=true"), "`--set force` is not a profile field; use --force"),
    ("--set stage_name", *cli("--set", "stage_name=x"), "`--set stage_name` is not a profile field; use --stages"),
    ("t_conv=true", *cli("--set", "t_conv=true"), "`t_conv` must be an int >= 1; got True"),
    ("t_conv=[8]", *cli("--set", "t_conv=[8]"), "`t_conv` must be an int >= 1; got [8]"),
    ("t_conv={}", *cli("--set", "t_conv={}"), "`t_conv` must be an int >= 1; got {}"),
    ("t_conv=1e400", *cli("--set", "t_conv=1e400"), "`t_conv` must be an int >= 1; got inf"),
    ("t_conv=-Infinity", *cli("--set", "t_conv=-Infinity"), "`t_conv` must be an int >= 1; got -inf"),
    ("initial_vth quoted", *cli("--set", 'initial_vth="1.0"'), "`initial_vth` must be a finite number > 0; got '1.0'"),
    ("budget_sweep=0.5", *cli("--set", "budget_sweep=0.5"), "`budget_sweep` must be a non-empty tuple of numbers, each a finite number in (0, 1]; got 0.5"),
    ("budget_sweep=[]", *cli("--set", "budget_sweep=[]"), "`budget_sweep` must be a non-empty tuple of numbers, each a finite number in (0, 1]; got []"),
    ("lambda_sweep=[NaN]", *cli("--set", "lambda_sweep=[NaN]"), "`lambda_sweep` must be a non-empty tuple of numbers, each a finite number >= 0; got [nan]"),
    ("base_sweep=[true]", *cli("--set", "base_sweep=[true]"), "`base_sweep` must be a non-empty tuple of numbers, each a finite number >= 1; got [True]"),
    ("extra={t_conv: 0}", *cli("--set", 'extra={"t_conv": 0}'), "`extra` must be an empty dict (set the fields themselves, e.g. --set t_conv=8); got {'t_conv': 0}"),
    ("teacher=5", *cli("--set", "teacher=5"), "`teacher` must be a non-empty string (a teacher name, hub id or folder); got 5"),
    ("heldout_fraction<0", *cli("--set", "heldout_fraction=-0.1"), "`heldout_fraction` must be a finite number in (0, 1); got -0.1"),
    # --- pack, choose, book --------------------------------------------------------------------
    ("pack task", *argv("pack", "--task", "cola", "--out", "packed"), "pack: error: `task` must be one of"),
    ("pack --seed -1", *pack("--seed", "-1"), "`--seed` must be an int >= 0 (at most 2**32 - 1); got -1"),
    ("pack --set t_conv=0", *pack("--set", "t_conv=0"), "`t_conv` must be an int >= 1; got 0"),
    ("pack --teacher-dtype", *pack("--teacher-dtype", "bf16"), "argument --teacher-dtype: invalid choice: 'bf16'"),
    ("pack without --out", *argv("pack", "--task", "sst2"), "the following arguments are required: --out"),
    ("pack --profile", *pack("--profile", "huge"), "argument --profile: invalid choice: 'huge'"),
    ("pack --stage foo", *pack("--stage", "foo"), "`--stage` must be one of"),
    ("pack --stage teacher", *pack("--stage", "teacher"), "`--stage` must be one of"),
    ("pack unrun stage", *pack(), "has no record"),
    ("choose --seeds a,b", *choose("--seeds", "a,b", "--variant", "a:r"), f"{SEEDS}; got 'a,b'"),
    ("choose --seeds -1", *choose("--seeds", "-1", "--variant", "a:r"), f"{SEEDS}; got '-1'"),
    ("choose --seeds ''", *choose("--seeds", "", "--variant", "a:r"), f"{SEEDS}; got ''"),
    ("choose --seeds 0,0", *choose("--seeds", "0,0", "--variant", "a:r"), f"{SEEDS}; got '0,0' (repeated)"),
    ("choose --variant name only", *choose("--variant", "a"), "`--variant` must be NAME:ROOT[:key=value,...]; got 'a'"),
    ("choose --variant no name", *choose("--variant", ":r"), "`--variant` must be NAME:ROOT[:key=value,...]; got ':r'"),
    ("choose override without =", *choose("--variant", "a:r:t_conv"), "`--variant` overrides must be key=value; got ['t_conv'] in 'a:r:t_conv'"),
    ("choose override t_conv=0", *choose("--variant", "a:r:t_conv=0"), "`t_conv` must be an int >= 1; got 0"),
    ("choose override unknown", *choose("--variant", "a:r:foo=1"), "unknown profile override(s) ['foo']"),
    ("choose override seed", *choose("--variant", "a:r:seed=3"), "`--variant seed` is not a profile field; got 'seed=3'"),
    ("choose same name twice", *choose("--variant", "a:r", "--variant", "a:s"), "`--variant` names must be distinct"),
    ("choose no records", *choose("--variant", "a:nowhere"), "no variant has `baseline` records for every seed [0, 1]"),
    ("choose without --variant", *argv("choose", "--task", "sst2", "--out", "c.json"), "the following arguments are required: --variant"),
    ("book --profile", *argv("book", "--profile", "huge"), "book: error: argument --profile: invalid choice: 'huge'"),
    ("book --seed x", *argv("book", "--seed", "x"), "argument --seed: invalid int value: 'x'"),
    ("book unknown flag", *argv("book", "--bogus"), "unrecognized arguments: --bogus"),
    ("book --tasks cola", *argv("book", "--tasks", "cola"), "`tasks` must be a non-empty list of tasks"),
    ("book --tasks ,", *argv("book", "--tasks", ","), "`tasks` must be a non-empty list"),
    ("book --seed -1", *argv("book", "--seed", "-1"), "`seed` must be an int >= 0"),
    ("book --only nope", *argv("book", "--only", "nope"), "--only 'nope'"),
    # --- notebook parameters -----------------------------------------------------------------
    ("nb profile", *nb(profile="big"), "`profile` must be one of ['paper', 'smoke']; got 'big'"),
    ("nb tasks json", *nb(tasks='["cola"]'), "`tasks` must be a non-empty list of tasks"),
    ("nb tasks empty", *nb(tasks=[]), "`tasks` must be a non-empty list"),
    ("nb tasks int", *nb(tasks=5), "`tasks` must be a non-empty list"),
    ("nb task", *nb(task="cola"), "`task` must be one of"),
    ("nb seeds negative", *nb(seeds="[-1]"), "`seeds` must be a non-empty list of ints >= 0; got '[-1]'"),
    ("nb seeds float", *nb(seeds=[1.5]), "`seeds` must be a non-empty list of ints >= 0"),
    ("nb seeds text", *nb(seeds="abc"), "`seeds` must be a non-empty list of ints >= 0; got 'abc'"),
    ("nb seed", *nb(seed=-1), "`seed` must be an int >= 0 (at most 2**32 - 1); got -1"),
    ("nb recompute word", *nb(recompute="maybe"), "`recompute` must be a bool"),
    ("nb recompute 2", *nb(recompute=2), "`recompute` must be a bool"),
    ("nb recompute None", *nb(recompute=None), "`recompute` must be a bool"),
    ("nb unknown", *nb(profle="smoke"), "unknown notebook parameter(s) ['profle']"),
    ("nb smoke_seeds by name", *nb(smoke_seeds=[0]), "unknown notebook parameter(s) ['smoke_seeds']; allowed: profile, tasks"),
    ("nb profile None", *nb(profile=None), "`profile` must be one of ['paper', 'smoke']; got None"),
    ("nb profile 5", *nb(profile=5), "`profile` must be one of ['paper', 'smoke']; got 5"),
    ("nb profile Paper", *nb(profile="Paper"), "`profile` must be one of ['paper', 'smoke']; got 'Paper'"),
    ("nb tasks with int", *nb(tasks='["sst2", 5]'), "got '[\"sst2\", 5]' (unknown: [5])"),
    ("nb tasks empty item", *nb(tasks="sst2,,mrpc"), "got 'sst2,,mrpc' (unknown: [''])"),
    ("nb tasks repeated", *nb(tasks=["sst2", "sst2"]), "`tasks` must be a non-empty list of distinct tasks; got ['sst2', 'sst2'] (repeated)"),
    ("nb tasks json empty", *nb(tasks="[]"), "`tasks` must be a non-empty list of tasks from"),
    ("nb tasks set", *nb(tasks={"sst2"}), "`tasks` must be a non-empty list of tasks from"),
    ("nb task 5", *nb(task=5), "`task` must be one of ['sst2', 'mrpc', 'qnli', 'qqp', 'mnli']; got 5"),
    ("nb task SST2", *nb(task="SST2"), "`task` must be one of ['sst2', 'mrpc', 'qnli', 'qqp', 'mnli']; got 'SST2'"),
    ("nb seeds json empty", *nb(seeds="[]"), "`seeds` must be a non-empty list of ints >= 0; got '[]'"),
    ("nb seeds repeated", *nb(seeds=[0, 0]), "`seeds` must be a non-empty list of distinct ints >= 0; got [0, 0] (repeated)"),
    ("nb seeds bool", *nb(seeds=[True]), "`seeds` must be a non-empty list of ints >= 0; got [True]"),
    ("nb seeds 1,2", *nb(seeds="1,2"), "`seeds` must be a non-empty list of ints >= 0; got '1,2'"),
    ("nb seeds 2**32", *nb(seeds=[2 ** 32]), "`seeds` must be a non-empty list of ints >= 0; got [4294967296]"),
    ("nb seed True", *nb(seed=True), "`seed` must be an int >= 0 (at most 2**32 - 1); got True"),
    ("nb seed x", *nb(seed="x"), "`seed` must be an int >= 0 (at most 2**32 - 1); got 'x'"),
    ("nb seed 1.0", *nb(seed=1.0), "`seed` must be an int >= 0 (at most 2**32 - 1); got 1.0"),
    ("nb seed None", *nb(seed=None), "`seed` must be an int >= 0 (at most 2**32 - 1); got None"),
    ("nb recompute ''", *nb(recompute=""), "`recompute` must be a bool (True/False, or one of the strings"),
    ("nb recompute list", *nb(recompute=[True]), "`recompute` must be a bool (True/False, or one of the strings ['0', '1', 'false', 'no', 'true', 'yes']); got [True]"),
    ("nb bench_dir 5", *nb(bench_dir=5), "`bench_dir` must be None or a folder path; got 5"),
    ("nb bench_dir absent", *nb(bench_dir="/nonexistent/bench"), "`bench_dir` must be None or a folder path; got '/nonexistent/bench', which is not an existing folder"),
]





def test_table_is_big_enough():
    assert len(BAD) >= 120
    assert len({row.id for row in rows(BAD)}) == len(BAD)


@pytest.mark.parametrize("label,kind,what,fragment", rows(BAD))
def test_bad_input_is_rejected_quickly_and_writes_nothing(label, kind, what, fragment, outdirs,
                                                          capsys):
    expect_rejected_quickly(kind, what, fragment, capsys)
    assert list(outdirs.rglob("*")) == []


def test_a_bad_determinism_switch_fails_before_training(outdirs, monkeypatch, capsys):
    monkeypatch.setenv("STP_DETERMINISTIC", "yes")
    expect_rejected_quickly(*cli(), "STP_DETERMINISTIC must be 0 or 1; got 'yes'", capsys)
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
@pytest.fixture
def checked_data(monkeypatch):
    """The tasks whose GLUE splits `run` checked before the first stage (train.data.load_checked,
    replaced here; test_bad_files checks it on real files)."""
    tasks = []
    monkeypatch.setattr(data, "load_checked", tasks.append)
    return tasks


@pytest.mark.parametrize("profile", ["smoke", "paper"])
@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_default_profiles_validate(profile, task):
    p = get_profile(profile, task)
    assert p.validate() is p
    assert p.name == profile


@pytest.mark.parametrize("profile", ["smoke", "paper"])
@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_default_command_line_passes_validation(profile, task, outdirs, checked_data, monkeypatch,
                                                 capsys):
    calls = []

    def fake_run_stage(task, name, profile, seed, **kw):
        calls.append((task, name, profile, seed, kw))
        return {"metrics": {"dev_accuracy": 50.0}, "provenance": {"wall_time_s": 0.0,
                                                                  "device": "cpu"}}
    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    assert main(["run", "--task", task, "--profile", profile]) == 0
    assert [c[1] for c in calls] == ["teacher", "spiking_fp", "baseline"]
    assert checked_data == [task]
    assert list(outdirs.rglob("*")) == []


def test_set_values_are_parsed_as_json_and_pass(outdirs, checked_data, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(runner, "run_stage", lambda *a, **kw: calls.append(kw) or {
        "metrics": {}, "provenance": {"wall_time_s": 0.0, "device": "cpu"}})
    assert main(["run", "--task", "sst2", "--stages", "teacher", "--seed", "1", "--set",
                 "teacher_lr=1e4", "--set", "budget_sweep=[0.5,1.0]", "--set", "progress=false",
                 "--set", "train_limit=null", "--set", "heldout_rule=random",
                 "--set", "student_layers=6"]) == 0
    kw = calls[0]
    assert checked_data == ["sst2"]
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
