"""1-bit weights: alpha * sign(W), sign(0) = +1, the clipped straight-through gradient, and the
sign bits they are stored as."""
import pytest
import torch
from torch import nn

from stpcore.snn.quant import QuantLinear, binarize, pack_signs, sign_ste, unpack_signs

from conftest import make_batch, make_tiny_model


def test_binarize_closed_form():
    w = torch.tensor([[0.5, -1.0, 1.5],
                      [-0.2, 0.0, 0.4]])
    # alpha = mean |W| per output row: 1.0 and 0.2
    expected = torch.tensor([[1.0, -1.0, 1.0],
                             [-0.2, 0.2, 0.2]])
    assert torch.allclose(binarize(w), expected)


def test_sign_bits_round_trip_on_a_width_that_is_not_a_multiple_of_8():
    w = torch.tensor([[0.5, -1.0, 0.0, 2.0, -0.1, 0.3, -0.7, 0.2, 0.9, -0.4, 1.1],
                      [-0.5, 1.0, -2.0, 0.1, 0.1, -0.3, 0.7, -0.2, -0.9, 0.4, -1.1]])
    alpha, signs = pack_signs(w)
    assert signs.dtype == torch.uint8 and tuple(signs.shape) == (2, 2)       # 11 bits -> 2 bytes
    assert signs[0, 0].item() == 0b10110101                   # first column in the high bit
    restored = unpack_signs(alpha, signs, w.shape[1])
    assert torch.equal(torch.sign(restored), torch.where(w >= 0, 1.0, -1.0))
    assert torch.allclose(binarize(restored), binarize(w))


def test_binarize_alpha_minimises_the_error():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    b = binarize(w)
    sign = torch.where(w >= 0, 1.0, -1.0).double()
    alpha = b[:, :1] / sign[:, :1]
    assert torch.allclose(alpha.flatten(), w.abs().mean(1))
    assert torch.equal(torch.sign(b), sign)
    err = (w - b).pow(2).sum(1)
    for scale in (0.9, 1.1):                         # any other per-row scale is worse
        assert torch.all(err < (w - scale * b).pow(2).sum(1))


def test_sign_of_zero_is_plus_one():
    assert sign_ste(torch.tensor([0.0, -0.0, 1e-30, -1e-30])).tolist() == [1.0, 1.0, 1.0, -1.0]


def test_sign_ste_clipped_identity_gradient():
    w = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    out = sign_ste(w)
    assert out.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    upstream = torch.tensor([3.0, 5.0, 7.0, 11.0, 13.0])
    (grad,) = torch.autograd.grad(out, w, upstream)
    assert grad.tolist() == [0.0, 5.0, 7.0, 11.0, 0.0]
    # the clip is inclusive: |w| = 1 still passes the gradient
    w1 = torch.tensor([-1.0, 1.0, 1.0001], requires_grad=True)
    assert torch.autograd.grad(sign_ste(w1).sum(), w1)[0].tolist() == [1.0, 1.0, 0.0]


def test_binarize_gradient_flows_through_alpha_and_ste():
    w = torch.tensor([[0.5, -2.0]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(binarize(w).sum(), w)
    # out = alpha * (s1 + s2), alpha = (|w1| + |w2|) / 2, s = (+1, -1): sum = 0 -> d/dalpha
    # contributes 0; the STE passes d/ds = alpha for |w| <= 1 only
    assert g.tolist() == [[1.25, 0.0]]


def test_quantlinear_full_precision_equals_linear():
    torch.manual_seed(0)
    q = QuantLinear(5, 3, binary=False)
    ref = nn.Linear(5, 3)
    ref.load_state_dict(q.state_dict())
    x = torch.randn(4, 2, 5)
    assert torch.equal(q(x), ref(x))
    assert q.effective_weight() is q.weight


def test_quantlinear_binary_uses_binarized_weight():
    torch.manual_seed(0)
    q = QuantLinear(5, 3, binary=True)
    x = torch.randn(4, 5)
    assert torch.allclose(q(x), x @ binarize(q.weight).T + q.bias)
    assert not torch.allclose(q(x), nn.functional.linear(x, q.weight, q.bias))
    assert len(q.effective_weight().unique()) <= 6      # +-alpha per output row


def test_set_binary_weights_switches_only_the_encoder(tiny_batch):
    model = make_tiny_model()
    bert = model.spiking_bert
    full = bert.simulate(tiny_batch["input_ids"], tiny_batch["attention_mask"])
    bert.set_binary_weights(True)
    assert model.config.binary_weights is True
    for layer in bert.layers:
        w = layer.intermediate.effective_weight()
        assert torch.equal(w.abs(), w.abs().amax(1, keepdim=True).expand_as(w))
    assert not isinstance(model.classifier, QuantLinear)
    binary = bert.simulate(tiny_batch["input_ids"], tiny_batch["attention_mask"])
    assert torch.equal(binary.embedding_rate, full.embedding_rate)   # embeddings untouched
    assert not torch.equal(binary.rates[0]["key"], full.rates[0]["key"])
    bert.set_binary_weights(False)
    back = bert.simulate(tiny_batch["input_ids"], tiny_batch["attention_mask"])
    assert torch.equal(back.rates[1]["output"], full.rates[1]["output"])
