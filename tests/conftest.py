"""Shared fixtures: a tiny SpikingBERT and a random, partly padded batch.

The default initialisation (std 0.02, zero biases) gives currents far below threshold, so most
encoder populations would never spike in T = 12 steps and many invariants would hold vacuously.
``make_tiny_model`` therefore re-draws the linear weights at a scale that makes every population
fire at an intermediate rate (checked by ``test_fixture_populations_are_active``).
"""
from __future__ import annotations

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


@pytest.fixture
def tiny_model():
    return make_tiny_model()


@pytest.fixture
def tiny_batch():
    return make_batch()
