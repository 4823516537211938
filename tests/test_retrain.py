"""Pruning during retraining (Eq. 12-13): activity loss, mask logits, AC penalty, PCA steps."""
import pytest
import torch

import stpcore.prune.retrain as retrain_mod
from stpcore.prune import acs
from stpcore.prune.retrain import MaskLogits, RetrainConfig, activity_loss, retrain

from conftest import make_batch, make_tiny_model

GEOM = dict(seq_len=7, hidden_size=16, num_heads=4)


def loader(n=2):
    return [make_batch(seed=i) for i in range(n)]


def test_activity_loss_closed_form():
    emb = torch.full((2, 2, 2), 0.9)                    # the embedding rate is not penalised
    a1 = torch.tensor([[[0.3, 0.4], [1.0, 1.0]],
                       [[0.0, 0.6], [0.8, 0.0]]])
    a2 = torch.tensor([[[1.0, 0.0], [0.0, 0.0]],
                       [[0.5, 0.5], [0.5, 0.5]]])
    mask = torch.tensor([[1, 0], [1, 1]])               # token 2 of example 1 is padding
    # layer 1: example 1 ||(.3,.4)|| = .5, example 2 ||(0,.6,.8,0)|| = 1 -> mean .75
    # layer 2: example 1 1.0, example 2 sqrt(4 * .25) = 1.0 -> mean 1.0
    assert activity_loss([emb, a1, a2], mask).item() == pytest.approx(1.75)
    assert activity_loss([emb, a1], mask).item() == pytest.approx(0.75)


def test_activity_loss_gradient_is_finite_at_zero_rates():
    a = torch.zeros(2, 3, 4, requires_grad=True)
    loss = activity_loss([torch.zeros(2, 3, 4), a], torch.ones(2, 3))
    (g,) = torch.autograd.grad(loss, a)
    assert torch.isfinite(g).all()
    assert loss.item() == pytest.approx(1e-6)


def test_mask_logits_hard_and_soft():
    head = torch.tensor([[1.0, 0.0, 1.0]])
    neuron = torch.tensor([[0.0, 1.0]])
    logits = MaskLogits(head, neuron, init=2.0)
    assert logits.head.tolist() == [[2.0, -2.0, 2.0]]
    assert logits.neuron.tolist() == [[-2.0, 2.0]]
    hard_h, hard_n = logits.hard()
    assert torch.equal(hard_h, head) and torch.equal(hard_n, neuron)
    assert not hard_h.requires_grad
    soft_h, soft_n = logits.soft()
    s = 1 / (1 + torch.exp(torch.tensor(-2.0)))
    assert torch.allclose(soft_h, torch.tensor([[s, 1 - s, s]]))
    assert torch.allclose(soft_n, torch.tensor([[1 - s, s]]))
    assert soft_h.requires_grad
    with torch.no_grad():
        logits.head[0, 0] = -0.01                        # just below zero: pruned
        logits.head[0, 1] = 0.0                          # exactly zero: pruned (z > 0 keeps)
    assert logits.hard()[0].tolist() == [[0.0, 0.0, 1.0]]


class _Capture:
    """Wraps ``fit`` to record the mask logits at the start and the end of retraining."""

    def __init__(self, monkeypatch):
        self.before = self.logits = None
        real = retrain_mod.fit

        def fit(model, train_loader, **kw):
            mods = kw.get("extra_modules", ())
            self.logits = mods[0] if mods else None
            if self.logits is not None:
                self.before = [p.detach().clone() for p in (self.logits.head, self.logits.neuron)]
            return real(model, train_loader, **kw)

        monkeypatch.setattr(retrain_mod, "fit", fit)


def _penalty_run(monkeypatch, batches=2, **kw):
    model = make_tiny_model()
    cap = _Capture(monkeypatch)
    cfg = RetrainConfig(epochs=1, lr=1.5, learn_masks=True, penalty_lambda=1.0,
                        penalty_fraction=1.0, mask_lr=1.5, mask_init=2.0, seq_len=7, **kw)
    out = retrain(model, loader(batches), cfg, "cpu", progress=False)
    return model, cap, out


def test_ac_penalty_shrinks_the_soft_mask_acs(monkeypatch):
    # lr 1.5 from logits +2: ~ +0.5 after step 1, ~ -1 after step 2, so step 3 simulates with
    # hard masks that prune everything the penalty pushed below zero
    model, cap, out = _penalty_run(monkeypatch, batches=3)
    steps = model.config.per_layer_timesteps
    before = acs.count_acs(*(torch.sigmoid(z) for z in cap.before), steps, **GEOM)
    after = acs.count_acs(*(torch.sigmoid(z.detach()) for z in (cap.logits.head,
                                                                  cap.logits.neuron)), steps, **GEOM)
    assert after < 0.5 * before
    assert torch.all(cap.logits.head < cap.before[0])                  # every logit pushed down
    bert = model.spiking_bert
    # the installed hard masks keep fewer units than before (all ones), and config is synced
    assert bert.head_mask.sum() < 8 and bert.neuron_mask.sum() < 64
    assert model.config.head_mask == bert.head_mask.int().tolist()
    assert model.config.neuron_mask == bert.neuron_mask.int().tolist()
    assert len(out["history"]) == 1 and out["timestep_log"] == []


def test_without_penalty_masks_stay(monkeypatch):
    model = make_tiny_model()
    cap = _Capture(monkeypatch)
    cfg = RetrainConfig(epochs=1, lr=1e-3, learn_masks=True, penalty_lambda=0.0, seq_len=7)
    retrain(model, loader(2), cfg, "cpu", progress=False)
    assert torch.equal(model.spiking_bert.head_mask, torch.ones(2, 4))
    assert cap.logits.head.grad is not None          # the soft masks were in the graph


def test_installed_masks_match_final_logits(monkeypatch):
    model, cap, _ = _penalty_run(monkeypatch)
    hard_h, hard_n = cap.logits.hard()
    assert torch.equal(model.spiking_bert.head_mask, hard_h)
    assert torch.equal(model.spiking_bert.neuron_mask, hard_n)


def test_learnable_threshold_is_trained_only_when_asked():
    for learn in (False, True):
        model = make_tiny_model()
        before = model.spiking_bert.thresholds.detach().clone()
        cfg = RetrainConfig(epochs=1, lr=1e-2, learnable_threshold=learn, seq_len=7)
        retrain(model, loader(2), cfg, "cpu", progress=False)
        changed = not torch.equal(model.spiking_bert.thresholds.detach(), before)
        assert changed == learn
        assert model.config.learnable_threshold == learn


def test_pca_every_sets_valid_layer_timesteps():
    model = make_tiny_model()
    cfg = RetrainConfig(epochs=1, lr=1e-4, pca_every=1, pca_base=3.0, pca_variance=0.9,
                        t_conv=12, seq_len=7)
    out = retrain(model, loader(2), cfg, "cpu", trace_loader=loader(1), progress=False)
    steps = model.config.layer_timesteps
    assert isinstance(steps, list) and len(steps) == 2
    assert all(isinstance(t, int) and 1 <= t <= 12 for t in steps) and max(steps) == 12
    log = out["timestep_log"]
    assert [e["step"] for e in log] == [1, 2]
    assert log[-1]["layer_timesteps"] == steps
    model.config.validate()


def test_pca_every_needs_a_trace_loader():
    cfg = RetrainConfig(pca_every=1, seq_len=7)
    with pytest.raises(ValueError, match="`trace_loader`"):
        retrain(make_tiny_model(), loader(1), cfg, "cpu", progress=False)


def test_measure_traces_restores_non_uniform_timesteps():
    model = make_tiny_model()
    model.spiking_bert.set_layer_timesteps([12, 4])
    traces = retrain_mod.measure_traces(model, loader(1), "cpu")
    assert [t.shape for t in traces] == [torch.Size([12, 16])] * 2       # measured at T_conv
    assert model.config.layer_timesteps == [12, 4]
    assert all(t.min() >= 0 for t in traces) and all(t.sum() > 0 for t in traces)


def test_mask_logits_train_at_their_own_rate_while_weights_barely_move():
    """With a tiny weight lr the masks must still respond to the penalty (mask_lr), and the
    penalty is off after `penalty_fraction` of the steps."""
    model = make_tiny_model()
    weights_before = model.spiking_bert.layers[0].key.weight.detach().clone()
    cfg = RetrainConfig(epochs=1, lr=1e-9, learn_masks=True, penalty_lambda=1.0,
                        penalty_fraction=1.0, mask_lr=1.5, mask_init=2.0, seq_len=7)
    retrain(model, loader(3), cfg, "cpu", progress=False)
    assert torch.allclose(model.spiking_bert.layers[0].key.weight, weights_before, atol=1e-6)
    assert model.spiking_bert.head_mask.sum() < 8            # masks moved at mask_lr


def test_penalty_fraction_zero_leaves_masks(monkeypatch):
    model = make_tiny_model()
    cfg = RetrainConfig(epochs=1, lr=1e-9, learn_masks=True, penalty_lambda=1.0,
                        penalty_fraction=0.0, mask_lr=1e-4, mask_init=2.0, seq_len=7)
    retrain(model, loader(3), cfg, "cpu", progress=False)
    assert torch.equal(model.spiking_bert.head_mask, torch.ones(2, 4))
