"""Tests of stpcore.train.data on a tiny Parquet GLUE folder written per test (offline, CPU)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from stpcore.train import data

REAL_GLUE = data.REPO_ROOT.parent / "shared" / "glue"

pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture
def glue_dir(tmp_path) -> Path:
    """sst2/{train,validation} and mrpc/train, 10 rows each; mrpc/validation is absent."""
    root = tmp_path / "glue"
    words = ["good", "bad", "a truly wonderful film", "dull", "fine", "awful and far too long",
             "great", "meh", "superb acting", "boring"]
    sst2 = pd.DataFrame({"sentence": words, "label": [i % 2 for i in range(10)],
                         "idx": range(10)})
    mrpc = pd.DataFrame({"sentence1": [f"the cat sat on mat {i}" for i in range(10)],
                         "sentence2": ["a cat sat " * (1 + i % 3) for i in range(10)],
                         "label": [i % 2 for i in range(10)], "idx": range(10)})
    for task, split, df in [("sst2", "train", sst2), ("sst2", "validation", sst2.iloc[:4]),
                            ("mrpc", "train", mrpc)]:
        (root / task).mkdir(parents=True, exist_ok=True)
        df.to_parquet(root / task / f"{split}.parquet", index=False)
    return root


def test_tasks_table():
    assert set(data.TASKS) == {"sst2", "mrpc", "qnli", "qqp", "mnli"}
    assert data.TASKS["mnli"].num_labels == 3
    assert data.TASKS["mnli"].splits == ("train", "validation_matched", "validation_mismatched")
    assert data.TASKS["qqp"].text_columns == ("question1", "question2")


def test_resolve_glue_dir_order(glue_dir, tmp_path, monkeypatch):
    assert data.resolve_glue_dir(glue_dir) == glue_dir
    monkeypatch.setenv("STP_GLUE_DIR", str(glue_dir))
    assert data.resolve_glue_dir() == glue_dir
    other = tmp_path / "other"
    other.mkdir()
    assert data.resolve_glue_dir(other) == other  # the argument wins over the env


def test_load_local(glue_dir):
    ds = data.load_split("sst2", "train", glue_dir=glue_dir)
    assert len(ds) == 10 and ds.column_names == ["sentence", "label", "idx"]
    assert len(data.load_split("sst2", "validation", glue_dir=glue_dir, source="local")) == 4


def test_tokenize_pairs_have_second_segment(glue_dir, tokenizer):
    tok = data.tokenize(data.load_split("mrpc", "train", glue_dir=glue_dir), "mrpc", tokenizer)
    assert tok.column_names == list(data.MODEL_COLUMNS)
    row = tok[0]
    sep = tokenizer.sep_token_id
    first_sep = row["input_ids"].index(sep)
    assert set(row["token_type_ids"][:first_sep + 1]) == {0}
    assert set(row["token_type_ids"][first_sep + 1:]) == {1}
    assert row["input_ids"][-1] == sep and row["attention_mask"] == [1] * len(row["input_ids"])
    single = data.tokenize(data.load_split("sst2", "train", glue_dir=glue_dir), "sst2", tokenizer)
    assert all(set(t) == {0} for t in single["token_type_ids"])


def test_tokenize_truncates(glue_dir, tokenizer):
    tok = data.tokenize(data.load_split("mrpc", "train", glue_dir=glue_dir), "mrpc", tokenizer,
                        max_length=8)
    assert max(len(x) for x in tok["input_ids"]) == 8


def test_loader_pads_to_batch_max(glue_dir, tokenizer):
    tok = data.tokenize(data.load_split("sst2", "train", glue_dir=glue_dir), "sst2", tokenizer)
    lengths = [len(x) for x in tok["input_ids"]]
    batches = list(data.make_loader(tok, batch_size=4, shuffle=False))
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 2]
    for i, b in enumerate(batches):
        assert set(b) == set(data.MODEL_COLUMNS)
        assert all(t.dtype == torch.long for t in b.values())
        chunk = lengths[4 * i:4 * i + 4]
        assert b["input_ids"].shape[1] == max(chunk)
        assert b["attention_mask"].sum(1).tolist() == chunk
        assert (b["input_ids"][b["attention_mask"] == 0] == tokenizer.pad_token_id).all()
    assert torch.cat([b["labels"] for b in batches]).tolist() == list(tok["labels"])  # order kept


def test_loader_limit_and_seeded_shuffle(glue_dir, tokenizer):
    tok = data.tokenize(data.load_split("sst2", "train", glue_dir=glue_dir), "sst2", tokenizer)
    evalb = list(data.make_loader(tok, batch_size=2, shuffle=False, limit=3))
    assert sum(len(b["labels"]) for b in evalb) == 3
    assert evalb[0]["input_ids"][0].tolist()[:len(tok[0]["input_ids"])] == tok[0]["input_ids"]

    def ids(seed):
        loader = data.make_loader(tok, batch_size=3, shuffle=True, seed=seed, limit=5)
        return [tuple(r) for b in loader for r in b["input_ids"].tolist()]

    assert len(ids(0)) == 5 and ids(0) == ids(0)
    assert ids(0) != ids(1)


def test_split_heldout_deterministic_and_disjoint(glue_dir):
    ds = data.load_split("sst2", "train", glue_dir=glue_dir)
    train, held = data.split_heldout(ds, fraction=0.3, seed=0)
    assert len(held) == 3 and len(train) == 7
    train_idx, held_idx = list(train["idx"]), list(held["idx"])
    assert set(train_idx).isdisjoint(held_idx) and sorted(train_idx + held_idx) == list(range(10))
    again_train, again_held = data.split_heldout(ds, fraction=0.3, seed=0)
    assert list(again_held["idx"]) == held_idx and list(again_train["idx"]) == train_idx
    assert list(data.split_heldout(ds, fraction=0.3, seed=1)[1]["idx"]) != held_idx
    assert len(data.split_heldout(ds, fraction=0.5, max_size=2)[1]) == 2


def test_word_lengths_add_up_the_text_columns_of_the_selected_rows():
    import datasets
    ds = datasets.Dataset.from_dict({"a": ["one two", "x", "p q r s"], "b": ["three", "y z", ""]})
    assert data.word_lengths(ds, ("a", "b")).tolist() == [3, 3, 4]
    assert data.word_lengths(ds.select([2, 0]), ("a",)).tolist() == [4, 2]   # select's order
    assert data.word_lengths(ds, ()).tolist() == [0, 0, 0]


def test_split_heldout_matches_dev_lengths_and_drops_train_phrases_of_held_out_sentences():
    import datasets
    texts = ["good", "a truly wonderful film", "truly wonderful", "dull", "awful and far too long",
             "far too long", "meh", "fine", "bad", "great"]
    ds = datasets.Dataset.from_dict({"sentence": texts, "idx": list(range(10))})
    # dev holds only 4- and 5-word sentences: one held-out row per half of its lengths
    train, held = data.split_heldout(ds, 0.2, seed=3, match_lengths=[4, 5], text_columns=("sentence",))
    assert held["idx"][:] == [1, 4]
    # the phrases of held-out sentences leave train (SST-2's train holds its sentences' phrases)
    assert train["idx"][:] == [0, 3, 6, 7, 8, 9]
    _, random_held = data.split_heldout(ds, 0.2, seed=3)                   # no length matching
    assert len(random_held) == 2


def test_load_task(glue_dir, tokenizer):
    with pytest.raises(FileNotFoundError, match="mrpc/validation.parquet"):
        data.load_task("mrpc", tokenizer, glue_dir=glue_dir)
    parts = data.load_task("sst2", tokenizer, glue_dir=glue_dir, heldout_fraction=0.2)
    assert set(parts) == {"train", "heldout", "dev"}
    assert (len(parts["train"]), len(parts["heldout"]), len(parts["dev"])) == (8, 2, 4)


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda g: data.load_split("cola", "train", g), ValueError, r"task='cola'.*sst2, mrpc"),
    (lambda g: data.load_split("sst2", "test", g), ValueError, r"split='test'.*train, validation"),
    (lambda g: data.load_split("mnli", "validation", g), ValueError, "validation_matched"),
    (lambda g: data.load_split("sst2", "train", g, source="web"), ValueError, "source='web'"),
    (lambda g: data.load_split("sst2", "train", g / "nope"), FileNotFoundError,
     r"nope.*STP_GLUE_DIR.*glue_dir"),
    (lambda g: data.load_split("mrpc", "validation", g), FileNotFoundError,
     r"mrpc/validation\.parquet.*nyu-mll/glue.*source='hub'"),
    (lambda g: data.split_heldout(data.load_split("sst2", "train", g), fraction=1.0),
     ValueError, "fraction=1.0"),
    (lambda g: data.split_heldout(data.load_split("sst2", "train", g), fraction=0),
     ValueError, "fraction=0"),
])
def test_bad_inputs(glue_dir, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(glue_dir)


def test_missing_env_glue_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STP_GLUE_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"absent.*from STP_GLUE_DIR"):
        data.load_split("sst2", "train")


@pytest.mark.parametrize("max_length", [4, 513, 128.0, True])
def test_bad_max_length(glue_dir, tokenizer, max_length):
    ds = data.load_split("sst2", "train", glue_dir=glue_dir)
    with pytest.raises(ValueError, match="max_length="):
        data.tokenize(ds, "sst2", tokenizer, max_length=max_length)


@pytest.mark.parametrize("kwargs, pattern", [({"batch_size": 0}, "batch_size=0"),
                                             ({"batch_size": 2, "limit": 0}, "limit=0")])
def test_bad_loader_args(glue_dir, tokenizer, kwargs, pattern):
    tok = data.tokenize(data.load_split("sst2", "train", glue_dir=glue_dir), "sst2", tokenizer)
    with pytest.raises(ValueError, match=pattern):
        data.make_loader(tok, shuffle=False, **kwargs)


@pytest.mark.skipif(not (REAL_GLUE / "sst2" / "validation.parquet").is_file(),
                    reason="shared GLUE copy not present")
def test_real_sst2_validation():
    ds = data.load_split("sst2", "validation")
    assert len(ds) == 872 and ds.features["label"].names == ["negative", "positive"]
