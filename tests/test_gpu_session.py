"""scripts/gpu_session.sh, the GPU-session driver, on CPU: `forget` drops exactly the named stages'
records (every seed) and refuses a misspelt name before removing anything; `task` returns while
its pipeline still runs, in a session of its own, and it runs on after the caller's processes are
killed; bad commands are refused."""
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_session.sh"


def session(tmp_path: Path, *args: str, **env) -> subprocess.CompletedProcess:
    """Run the script with its session folder under ``tmp_path`` (never /tmp/stp)."""
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STP_SESSION_DIR": str(tmp_path / "stp"), **env})


def records(tmp_path: Path, task: str = "mrpc") -> Path:
    """A box's results folder holding two stages at several seeds and one other stage."""
    folder = tmp_path / "stp" / "v" / "default" / "results" / "paper" / task
    folder.mkdir(parents=True)
    for name in ("spatial_retrain", "spatial_retrain.seed1", "spatial_retrain.seed2",
                 "two_stage.seed2", "spatial_fisher_asr", "spatial_fisher_asr.seed1"):
        (folder / f"{name}.json").write_text("{}")
    return folder


def test_forget_drops_every_seed_of_the_named_stages_only(tmp_path):
    folder = records(tmp_path)
    out = session(tmp_path, "forget", "mrpc", "spatial_retrain,two_stage")
    assert out.returncode == 0, out.stderr
    assert "forgetting 3 record(s) of spatial_retrain" in out.stdout
    assert "forgetting 1 record(s) of two_stage" in out.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["spatial_fisher_asr.json",
                                                        "spatial_fisher_asr.seed1.json"]


def test_forget_refuses_a_misspelt_stage_before_removing_anything(tmp_path):
    folder = records(tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    out = session(tmp_path, "forget", "mrpc", "spatial_retrain,two_stag")
    assert out.returncode == 1
    assert f"forget: no record of 'two_stag' in {folder} (a misspelt stage?); nothing removed" in out.stderr
    assert sorted(p.name for p in folder.iterdir()) == before


def test_task_returns_at_once_and_its_pipeline_survives_the_callers_process_group(tmp_path):
    """The device tool ends a call by killing its processes; a pipeline left in the caller's
    process group died with it (2026-12-04). Here a stand-in stpcore that takes 2 s and fails:
    after `task` returns, its caller's whole process group is killed, and the pipeline still
    runs to its end (its choice fails, and says so in its log)."""
    fake = tmp_path / "stp" / "code" / "stpcore"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("import sys, time\ntime.sleep(2)\nsys.exit(1)\n")
    (tmp_path / "stp" / "commit").write_text("0" * 40)
    env = {**os.environ, "STP_SESSION_DIR": str(tmp_path / "stp"), "STP_PROFILE": "smoke"}
    caller = subprocess.Popen(["bash", str(SCRIPT), "task", "nosuchtask", "0", "-"], env=env,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    said = caller.communicate(timeout=30)[0]
    assert caller.returncode == 0 and re.fullmatch(r"started nosuchtask \(pipeline \d+\)\n", said), said
    # `task` returned while its pipeline runs on (foundation 2 s, then choice 2 s), leading a
    # session of its own: not the caller's, whose group is killed next
    pipeline = int(re.search(r"\d+", said).group())
    log = tmp_path / "stp" / "logs" / "nosuchtask-default-choose.log"
    assert os.getsid(pipeline) == pipeline != caller.pid    # (the caller led its own: Popen)
    assert not (log.exists() and "choose failed" in log.read_text())
    try:
        os.killpg(caller.pid, signal.SIGKILL)       # what is left of the call's processes
    except ProcessLookupError:
        pass                                        # nothing was left in it
    for _ in range(300):
        if log.exists() and "choose failed" in log.read_text():
            break
        time.sleep(0.1)
    assert log.exists() and "choose failed" in log.read_text()
    assert (tmp_path / "stp" / "gpu_session.sh").read_bytes() == SCRIPT.read_bytes()


@pytest.mark.parametrize("args, code, message", [
    (("frobnicate",), 2, "unknown command frobnicate"),
    (("poll", "5"), 2, "poll: $OUT is not set (run it through the device tool)"),
])
def test_bad_commands_are_refused(tmp_path, args, code, message):
    out = session(tmp_path, *args, OUT="")
    assert out.returncode == code and message in out.stderr
