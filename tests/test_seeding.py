"""Seeding and the opt-in deterministic mode (stpcore.runs.seeding): a stage's draws repeat after
seed_everything, STP_DETERMINISTIC=1 turns PyTorch's deterministic algorithms on (and says so in
the record), unset leaves PyTorch as it is, and a bad value is named."""
import numpy as np
import pytest
import torch

from stpcore.runs import runner, seeding


@pytest.fixture
def algorithms_restored():
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(was[0], warn_only=was[1])


@pytest.fixture
def drawing_stage(run_dirs, monkeypatch):
    def draw(run):
        return {"torch": torch.rand(3).tolist(), "numpy": np.random.rand(2).tolist()}, None
    monkeypatch.setitem(runner.STAGES, "_draw", ((), draw))


def test_seed_everything_repeats_every_generator():
    seeding.seed_everything(7)
    first = torch.rand(4), np.random.rand(4)
    seeding.seed_everything(7)
    again = torch.rand(4), np.random.rand(4)
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def test_deterministic_mode_turns_the_algorithms_on_and_the_record_says_so(
        drawing_stage, monkeypatch, algorithms_restored):
    torch.use_deterministic_algorithms(False)
    monkeypatch.setenv("STP_DETERMINISTIC", "1")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")     # so that teardown restores the
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")          # original, which the mode sets
    rec = runner.run_stage("sst2", "_draw", "smoke", seed=2)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()      # an op without one warns
    assert rec["provenance"]["deterministic"] is True
    assert seeding.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")               # a user's own: kept
    assert seeding.deterministic_mode() and seeding.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_unset_leaves_pytorch_as_it_was_and_the_record_says_nothing(
        drawing_stage, monkeypatch, algorithms_restored):
    monkeypatch.delenv("STP_DETERMINISTIC", raising=False)
    torch.use_deterministic_algorithms(False)
    rec = runner.run_stage("sst2", "_draw", "smoke", seed=2)
    assert not torch.are_deterministic_algorithms_enabled() and "deterministic" not in rec["provenance"]
    monkeypatch.setenv("STP_DETERMINISTIC", "0")
    torch.use_deterministic_algorithms(True, warn_only=True)             # the caller's own setting
    runner.run_stage("sst2", "_draw", "smoke", seed=3)
    assert torch.are_deterministic_algorithms_enabled()                  # is never turned off


@pytest.mark.parametrize("value", ["yes", "true", "2", ""])
def test_a_bad_value_is_named(monkeypatch, value):
    monkeypatch.setenv("STP_DETERMINISTIC", value)
    with pytest.raises(ValueError, match=f"STP_DETERMINISTIC must be 0 or 1; got '{value}'"):
        seeding.deterministic_mode()
