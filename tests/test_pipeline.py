"""The stage runner: reuse by configuration, dependencies, records with provenance."""
import json

import pytest
import torch

from stpcore.runs import runner
from stpcore.runs import records
from stpcore.runs.profiles import binary_dtype_name
from stpcore.runs.records import read_record


@pytest.fixture
def counting_stages(run_dirs, monkeypatch):
    calls = []

    def parent(run):
        calls.append("parent")
        (run.checkpoint("_parent")).mkdir(parents=True, exist_ok=True)
        return {"value": 1.0}, None

    def child(run):
        calls.append("child")
        return {"value": 2.0, "parent_seen": run.checkpoint("_parent").exists()}, None

    monkeypatch.setitem(runner.STAGES, "_parent", ((), parent))
    monkeypatch.setitem(runner.STAGES, "_child", (("_parent",), child))
    return calls, run_dirs


def test_stage_runs_once_then_reuses_its_record(counting_stages):
    calls, root = counting_stages
    rec = runner.run_stage("sst2", "_child", "smoke", seed=3)
    assert calls == ["parent", "child"] and rec["metrics"]["parent_seen"] is True
    assert rec["provenance"]["seed"] == 3 and rec["provenance"]["wall_time_s"] >= 0
    assert "device" in rec["provenance"] and "git_commit" in rec["provenance"]
    assert rec["provenance"]["source_sha256"] == records.source_digest()
    runner.run_stage("sst2", "_child", "smoke", seed=3)
    assert calls == ["parent", "child"]                       # reused
    runner.run_stage("sst2", "_child", "smoke", seed=3, force=True)
    assert calls == ["parent", "child", "child"]              # forced
    leftovers = [p for p in (root / "results").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []                                    # atomic writes leave nothing behind


def test_reuse_follows_the_computing_source(counting_stages, monkeypatch):
    """A record stays reusable across changes to report/ (which only renders): reuse compares
    ``compute_sha256``, and the whole source only for records older than that field."""
    calls, _ = counting_stages
    rec = runner.run_stage("sst2", "_parent", "smoke")
    assert rec["provenance"]["compute_sha256"] == records.COMPUTE_SHA256 != records.SOURCE_SHA256
    path = records.record_path("smoke", "sst2", "_parent")

    def rewrite(**prov):
        r = json.loads(path.read_text())
        r["provenance"].update(prov)
        r["provenance"] = {k: v for k, v in r["provenance"].items() if v is not None}
        path.write_text(json.dumps(r))
    rewrite(source_sha256="other report code")
    runner.run_stage("sst2", "_parent", "smoke")
    assert calls == ["parent"]                                   # reused
    rewrite(compute_sha256="other stage code")
    runner.run_stage("sst2", "_parent", "smoke")
    assert calls == ["parent"] * 2                               # rerun
    rewrite(compute_sha256="declared equivalent")
    monkeypatch.setattr(records, "COMPUTE_EQUIVALENT", {"declared equivalent": "abc1234"})
    runner.run_stage("sst2", "_parent", "smoke")
    assert calls == ["parent"] * 2                               # reused
    rewrite(compute_sha256=None, source_sha256="older record, other source")
    runner.run_stage("sst2", "_parent", "smoke")
    assert calls == ["parent"] * 3                               # no field: the whole source decides


def test_compute_equivalent_names_its_commits():
    """Each declared-equivalent digest is the computing source of the commit it names."""
    import subprocess
    import tarfile
    import io
    for digest, commit in records.COMPUTE_EQUIVALENT.items():
        got = subprocess.run(["git", "archive", commit, "stpcore"], cwd=records.REPO_ROOT, capture_output=True)
        if got.returncode:
            pytest.skip(f"commit {commit} is not in this clone's history")
        import tempfile
        from pathlib import Path
        with tempfile.TemporaryDirectory() as tmp:
            tarfile.open(fileobj=io.BytesIO(got.stdout)).extractall(tmp, filter="data")
            assert records.source_digest(Path(tmp) / "stpcore", records.RENDER_ONLY) == digest


def test_changed_configuration_or_seed_reruns(counting_stages):
    calls, _ = counting_stages
    runner.run_stage("sst2", "_parent", "smoke")
    runner.run_stage("sst2", "_parent", "smoke", teacher="bert-base-uncased")
    runner.run_stage("sst2", "_parent", "smoke", seed=1)
    assert calls == ["parent"] * 3
    assert read_record("smoke", "sst2", "_parent")["config"]["teacher"] == "bert-base-uncased"
    seed1 = read_record("smoke", "sst2", "_parent", seed=1)        # seeds do not overwrite
    assert seed1["config"]["teacher"] == "all-minilm-l6-v2" and seed1["provenance"]["seed"] == 1
    runner.run_stage("sst2", "_parent", "smoke", seed=1)
    assert calls == ["parent"] * 3                                  # seed 1 reused from its file


def test_base_seed_shares_the_foundation(counting_stages, monkeypatch):
    calls, _ = counting_stages
    monkeypatch.setattr(runner, "FOUNDATION", ("_parent",))
    for seed in (0, 1, 2):
        rec = runner.run_stage("sst2", "_child", "smoke", seed=seed, base_seed=0)
        assert rec["provenance"]["base_seed"] == 0 and rec["provenance"]["seed"] == seed
        assert rec["provenance"]["upstream"]["_parent"]["record"].endswith("_parent.json")
    assert calls == ["parent", "child", "child", "child"]          # one foundation, three seeds
    with pytest.raises(ValueError, match="base_seed"):
        runner.Run("sst2", "smoke", 0, base_seed=-1)


def test_pruning_knobs_rerun_pruning_stages_but_not_the_foundation(counting_stages, monkeypatch):
    calls, _ = counting_stages
    monkeypatch.setattr(runner, "FOUNDATION", ("_parent",))
    runner.run_stage("sst2", "_child", "smoke")
    runner.run_stage("sst2", "_child", "smoke", mask_lr=0.5)      # a pruning knob
    assert calls == ["parent", "child", "child"]                 # the foundation is reused
    runner.run_stage("sst2", "_child", "smoke", mask_lr=0.5, teacher_epochs=3)
    assert calls == ["parent", "child", "child", "parent", "child"]


def test_binary_sim_dtype_reruns_pruning_stages_and_picks_int8_for_1bit_models_only(
        counting_stages, monkeypatch):
    """``binary_sim_dtype`` says how later stages simulate (a runtime key: the foundation is
    reused, a pruning stage reruns); a record made before the field counts as "same"; int8 goes
    to spiking models with 1-bit weights only (a full-precision one has no integer products)."""
    from conftest import make_tiny_model
    calls, _ = counting_stages
    monkeypatch.setattr(runner, "FOUNDATION", ("_parent",))
    runner.run_stage("sst2", "_child", "smoke")
    runner.run_stage("sst2", "_child", "smoke", binary_sim_dtype="int8")
    assert calls == ["parent", "child", "child"]
    rec = read_record("smoke", "sst2", "_child", seed=0)
    del rec["config"]["binary_sim_dtype"]                       # made before the field
    assert runner.Run("sst2", "smoke", 0).reusable(rec, "_child")
    assert not runner.Run("sst2", "smoke", 0, binary_sim_dtype="int8").reusable(rec, "_child")
    fp, binary = make_tiny_model(), make_tiny_model()
    binary.spiking_bert.set_binary_weights(True)
    same, int8 = runner.Run("sst2", "smoke", 0), runner.Run("sst2", "smoke", 0, binary_sim_dtype="int8")
    assert [same.sim_dtype_for(m) for m in (fp, binary)] == [same.sim_dtype] * 2
    assert [int8.sim_dtype_for(m) for m in (fp, binary)] == [int8.sim_dtype, torch.int8]


def test_binary_dtype_name_reads_binary_sim_dtype_or_sim_dtype():
    assert binary_dtype_name({"sim_dtype": "bfloat16", "binary_sim_dtype": "int8"}) == "int8"
    assert binary_dtype_name({"sim_dtype": "bfloat16", "binary_sim_dtype": "same"}) == "bfloat16"
    assert binary_dtype_name({"sim_dtype": "float32"}) == "float32"      # made before the field


def test_a_binary_sim_dtype_switch_reevaluates_a_1bit_foundation_record_instead_of_retraining(
        counting_stages, monkeypatch):
    """The 1-bit baseline's dev metrics follow ``binary_sim_dtype``: after a switch its record
    gets metrics measured again from the same checkpoint (not retrained), keeps its training,
    and names the evaluation it replaced and the dtype of the new one; a switch back measures
    again; without a checkpoint it retrains."""
    calls, _ = counting_stages
    monkeypatch.setattr(runner, "FOUNDATION", ("_parent",))
    monkeypatch.setattr(runner, "BINARY_FOUNDATION", ("_parent",))
    monkeypatch.setattr(runner.Run, "has_model", lambda self, name, rec=None: True)
    monkeypatch.setattr(runner.Run, "model", lambda self, name: f"checkpoint of {name}")
    evaluated = []

    def dev_metrics(self, model, sim_dtype=None):
        evaluated.append((model, self.profile.binary_sim_dtype))
        return {"dev_accuracy": 51.0 if self.profile.binary_sim_dtype == "int8" else 50.0}
    monkeypatch.setattr(runner.Run, "dev_metrics", dev_metrics)
    first = runner.run_stage("sst2", "_parent", "smoke")
    assert first["metrics"] == {"value": 1.0} and evaluated == []     # trained, evaluated by the stage
    runner.run_stage("sst2", "_child", "smoke", binary_sim_dtype="int8")
    assert calls == ["parent", "child"] and evaluated == [("checkpoint of _parent", "int8")]
    rec = read_record("smoke", "sst2", "_parent")
    assert rec["metrics"] == {"value": 1.0, "dev_accuracy": 51.0}      # the stage's metrics stay
    assert rec["config"] == json.loads(json.dumps(first["config"]))    # trained as it was
    assert rec["config"]["binary_sim_dtype"] == "same" and rec["provenance"]["evaluated_in"] == "int8"
    was = rec["provenance"]["evaluated_from"]
    assert was["dtype"] == first["config"]["sim_dtype"] and was["finished"] == first["provenance"]["finished"]
    assert was["dev_accuracy"] is None and was["wall_time_s"] == first["provenance"]["wall_time_s"]
    runner.run_stage("sst2", "_child", "smoke", binary_sim_dtype="int8")
    assert calls == ["parent", "child"] and len(evaluated) == 1          # both reused as they are
    runner.run_stage("sst2", "_parent", "smoke")                        # switched back: measured again
    assert calls == ["parent", "child"] and evaluated[-1] == ("checkpoint of _parent", "same")
    assert read_record("smoke", "sst2", "_parent")["provenance"]["evaluated_from"]["dev_accuracy"] == 51.0
    monkeypatch.setattr(runner.Run, "has_model", lambda self, name, rec=None: False)
    runner.run_stage("sst2", "_parent", "smoke", binary_sim_dtype="int8")
    assert calls == ["parent", "child", "parent"] and len(evaluated) == 2   # no checkpoint: retrained


def test_get_record_never_computes_the_paper_profile(counting_stages):
    calls, _ = counting_stages
    assert runner.get_record("sst2", "_parent", profile="paper") is None
    assert calls == []
    assert runner.get_record("sst2", "_parent", profile="smoke")["metrics"]["value"] == 1.0


def test_bad_stage_task_profile_and_override_raise(counting_stages):
    with pytest.raises(ValueError, match="`stage`"):
        runner.run_stage("sst2", "no_such_stage")
    with pytest.raises(ValueError, match="`task`"):
        runner.run_stage("cola", "_parent")
    with pytest.raises(ValueError, match="`profile`"):
        runner.run_stage("sst2", "_parent", profile="huge")
    with pytest.raises(ValueError, match="override"):
        runner.run_stage("sst2", "_parent", learning_rate_typo=1)


def test_every_paper_stage_is_registered():
    expected = {"teacher", "spiking_fp", "baseline", "spatial_fisher", "spatial_fisher_asr_neuron",
                "spatial_fisher_asr_attn", "spatial_fisher_asr", "spatial_retrain", "temporal_pca",
                "temporal_retrain", "two_stage", "joint_retrain", "adaptive_threshold",
                "baseline_adaptive", "activity_ablation", "budget_sweep", "base_sweep", "random_mask"}
    assert expected <= set(runner.STAGES)
    for name, (needs, _) in runner.STAGES.items():
        assert set(needs) <= set(runner.STAGES), name


def test_energy_table_scales_with_normalized_c():
    from stpcore.report.summary import energy_table, unpruned_acs
    from stpcore.runs.profiles import get_profile
    cfg = get_profile("paper", "sst2").to_dict()
    rec = lambda nc: {"config": cfg, "profile": "paper", "metrics": {"normalized_c": nc}}
    table = energy_table({("sst2", "baseline", 0): rec(0.2), ("sst2", "two_stage", 1): rec(0.05),
                          ("sst2", "two_stage", 2): rec(0.15), ("sst2", "two_stage", 0): None},
                         tasks=("sst2",))
    e = table["energy per example (mJ, est.)"]
    assert abs(e[("sst2", "baseline")] - 2 * e[("sst2", "two_stage")]) < 0.02     # mean over seeds 1, 2
    assert table.loc[("sst2", "two_stage"), "seeds"] == "1,2"
    assert table.loc[("sst2", "adaptive_threshold"), "Normalized #C"] == "not run"
    # 4 layers x (12 heads x per-head + 1536 neurons x per-neuron), N = 128, D = 384, H = 32, T = 85
    n, d, h, t = 128, 384, 32, 85
    expected = 4 * (12 * (4 * n * d * h + 2 * n * n * h) + 1536 * 2 * n * d) * t
    assert unpruned_acs(cfg) == expected


def test_source_digest_names_the_code(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    first = records.source_digest(pkg)
    assert records.source_digest(pkg) == first
    (pkg / "a.py").write_text("x = 2\n")
    assert records.source_digest(pkg) != first


@pytest.fixture
def model_stage(run_dirs, monkeypatch):
    """A stage that returns a (tiny) model, so it writes a checkpoint with its record."""
    from conftest import make_tiny_model
    calls = []

    def fn(run):
        calls.append(1)
        torch.manual_seed(len(calls))
        return {"value": float(len(calls))}, make_tiny_model()

    monkeypatch.setitem(runner.STAGES, "_model", ((), fn))
    return calls


def test_a_kill_between_checkpoint_and_record_never_pairs_them_wrongly(model_stage, monkeypatch):
    run = runner.Run("sst2", "smoke", 0)
    first = run.record("_model")
    assert run.checkpoint_ok("_model", first)
    def killed(*a, **kw):
        raise KeyboardInterrupt("killed while writing the record")
    original = runner.write_record
    monkeypatch.setattr(runner, "write_record", killed)
    with pytest.raises(KeyboardInterrupt):
        run.record("_model", force=True)
    monkeypatch.setattr(runner, "write_record", original)
    # the old record is still there, but its checkpoint is gone: never new weights, old record
    assert read_record("smoke", "sst2", "_model")["metrics"]["value"] == 1.0
    assert not run.checkpoint_ok("_model")
    model = run.model("_model")                       # so the stage reruns, and pairs again
    rec = read_record("smoke", "sst2", "_model")
    assert rec["metrics"]["value"] == 3.0 and run.checkpoint_ok("_model", rec)
    assert model is not None and not run.checkpoint("_model").with_name("_model.tmp").exists()


def test_ensure_model_rebuilds_a_lost_checkpoint_and_same_model_keeps_the_children(model_stage, monkeypatch):
    """A GPU box given back loses the checkpoints: ``ensure_model`` (``run --with-models``)
    recomputes the stage once, before the stages that need it run side by side. A rerun that
    rebuilds the identical model keeps the records made from it (upstream matched by checkpoint
    digest); a different model makes them stale."""
    import shutil
    children = []
    monkeypatch.setitem(runner.STAGES, "_child", (("_model",), lambda run: children.append(1) or ({}, None)))
    deterministic = lambda run: model_stage.append(1) or ({"value": 1.0}, _seeded_model())
    monkeypatch.setitem(runner.STAGES, "_model", ((), deterministic))
    run = runner.Run("sst2", "smoke", 0)
    run.record("_child")
    assert model_stage == [1] and children == [1]
    assert runner.run_stage("sst2", "_model", "smoke", with_model=True) and model_stage == [1]   # model on disk
    shutil.rmtree(run.checkpoint("_model"))
    runner.run_stage("sst2", "_model", "smoke")                        # a record is enough: no rerun
    assert model_stage == [1]
    runner.run_stage("sst2", "_model", "smoke", with_model=True)       # the model is needed: rerun
    assert model_stage == [1, 1] and run.checkpoint_ok("_model")
    run.record("_child")
    assert children == [1]                                             # same weights: still current
    monkeypatch.setitem(runner.STAGES, "_model", ((), lambda run: ({"value": 2.0}, _seeded_model(7))))
    run.record("_model", force=True)
    run.record("_child")
    assert children == [1, 1]                                          # another model: rerun


def _seeded_model(seed: int = 0):
    from conftest import make_tiny_model
    return make_tiny_model(seed)


def test_a_corrupt_record_is_named_and_recomputed(counting_stages):
    calls, root = counting_stages
    runner.run_stage("sst2", "_parent", "smoke")
    path = records.record_path("smoke", "sst2", "_parent")
    path.write_text('{"config": {')                     # truncated
    with pytest.raises(ValueError, match="_parent.json.*--force"):
        read_record("smoke", "sst2", "_parent")
    with pytest.warns(UserWarning, match="recomputing _parent"):
        runner.run_stage("sst2", "_parent", "smoke")
    assert calls == ["parent", "parent"] and read_record("smoke", "sst2", "_parent")


def test_a_rewritten_config_json_is_never_used(model_stage):
    run = runner.Run("sst2", "smoke", 0)
    rec = run.record("_model")
    (run.checkpoint("_model") / "config.json").write_text("garbage")
    assert not run.checkpoint_ok("_model", rec)
    run.model("_model")                                   # reruns instead of loading garbage
    assert model_stage == [1, 1] and run.checkpoint_ok("_model")


def test_a_truncated_fisher_cache_is_named_and_recomputed(tmp_path, monkeypatch):
    from types import SimpleNamespace
    from stpcore.runs import pruning
    grads = (torch.zeros(1, 2, 4), torch.zeros(1, 2, 8), torch.zeros(2, 4), torch.zeros(2, 8))
    calls = []
    monkeypatch.setattr(pruning, "collect_mask_grads", lambda *a: calls.append(1) or grads)
    fake = SimpleNamespace(profile=SimpleNamespace(fisher_samples=4, fisher_batch_size=2),
                           record=lambda name: {"provenance": {"finished": "2026-12-01T00:00:00"}},
                           checkpoint=lambda name: tmp_path / name, loader=lambda *a, **k: [],
                           device="cpu", sim_dtype_for=lambda model: torch.float32)
    pruning.fisher_info(fake, None)
    path = next(tmp_path.glob("fisher-*-float32.pt"))
    path.write_bytes(path.read_bytes()[:20])              # a kill mid-write, or a full disk
    with pytest.warns(UserWarning, match="Fisher cache .*fisher-.*unreadable"):
        info = pruning.fisher_info(fake, None)
    assert calls == [1, 1] and set(info) >= {"head_grads", "seconds"}
    assert not list(tmp_path.glob("*.tmp"))
