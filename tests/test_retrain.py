"""Pruning during retraining (Eq. 12-13): the AC penalty on the mask logits (its effect, scale and
gradient, mask freezing, mask flips) and learnable thresholds."""
import pytest
import torch

import stpcore.prune.retrain as retrain_mod
from stpcore.prune import acs
from stpcore.prune.retrain import RetrainConfig, penalty_scale, retrain

from conftest import loader, make_tiny_model

GEOM = dict(seq_len=7, hidden_size=16, num_heads=4)


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
    cfg = RetrainConfig(epochs=1, lr=1e-3, learn_masks=True, penalty_lambda=0.0, seq_len=7,
                        freeze_masks=False)
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


# ---- penalty scale, mask freezing, learnable thresholds, mask flips ----------------------------
class _Recorder:
    """Wraps ``fit``: keeps its kwargs, the mask logits, and snapshots of them after each step."""

    def __init__(self, monkeypatch):
        self.kwargs, self.logits, self.snapshots = None, None, {}
        real = retrain_mod.fit

        def fit(model, train_loader, **kw):
            self.kwargs = kw
            mods = kw.get("extra_modules", ())
            self.logits = mods[0] if mods else None
            inner = kw["on_step"]

            def on_step(step):
                if self.logits is not None:
                    self.snapshots[step] = [z.detach().clone() for z in (self.logits.head,
                                                                         self.logits.neuron)]
                inner(step)
            return real(model, train_loader, **{**kw, "on_step": on_step})

        monkeypatch.setattr(retrain_mod, "fit", fit)


def test_penalty_scale_is_the_squared_width_ratio():
    assert penalty_scale(768, 768) == 1.0
    assert penalty_scale(384, 768) == pytest.approx(4.0)
    assert penalty_scale(16, 768) == pytest.approx(2304.0)
    assert penalty_scale(384, None) == 1.0
    out = retrain(make_tiny_model(), loader(1), RetrainConfig(seq_len=7), "cpu", progress=False)
    assert out["penalty_scale"] == pytest.approx((768 / 16) ** 2)
    out = retrain(make_tiny_model(), loader(1), RetrainConfig(seq_len=7, penalty_reference_width=None),
                  "cpu", progress=False)
    assert out["penalty_scale"] == 1.0


def _logit_grads(monkeypatch, lam, ref):
    """Mask-logit gradients of one retraining step (gradient clipping off)."""
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: None)
    rec = _Recorder(monkeypatch)
    cfg = RetrainConfig(epochs=1, lr=1e-9, learn_masks=True, penalty_lambda=lam, penalty_fraction=1.0,
                        mask_lr=1e-9, mask_init=2.0, seq_len=7, penalty_reference_width=ref)
    out = retrain(make_tiny_model(), loader(1), cfg, "cpu", progress=False)
    assert out["penalty_steps"] == (1 if lam > 0 else 0)
    return rec.logits.head.grad.clone(), rec.logits.neuron.grad.clone()


def test_penalty_gradient_closed_form(monkeypatch):
    # dL/dz = lambda * (768 / D)^2 * dM/dm * sigmoid'(z), with m = sigmoid(z), z = +2 everywhere
    model = make_tiny_model()
    s = torch.sigmoid(torch.tensor(2.0))
    h = torch.full((2, 4), float(s), requires_grad=True)
    n = torch.full((2, 32), float(s), requires_grad=True)
    m = acs.count_acs(h, n, model.config.per_layer_timesteps, **GEOM)
    dh, dn = torch.autograd.grad(m, (h, n))
    scale = (768 / 16) ** 2
    lam = 1.0 / (scale * float(torch.cat([dh.flatten(), dn.flatten()]).abs().max()))
    base_h, base_n = _logit_grads(monkeypatch, 0.0, 768)          # the task loss alone
    gh, gn = _logit_grads(monkeypatch, lam, 768)
    uh, un = _logit_grads(monkeypatch, lam, None)
    ds = s * (1 - s)
    assert torch.allclose(gh - base_h, lam * scale * dh * ds, rtol=1e-3, atol=1e-6)
    assert torch.allclose(gn - base_n, lam * scale * dn * ds, rtol=1e-3, atol=1e-6)
    assert torch.allclose(uh - base_h, lam * dh * ds, rtol=1e-3, atol=1e-8)      # unscaled
    assert float((gh - base_h).abs().max()) > 0.1


def _freeze_run(monkeypatch, freeze):
    rec = _Recorder(monkeypatch)
    cfg = RetrainConfig(epochs=1, lr=1e-3, learn_masks=True, penalty_lambda=1.0, penalty_fraction=0.5,
                        mask_lr=1.5, mask_init=2.0, seq_len=7, freeze_masks=freeze)
    model = make_tiny_model()
    out = retrain(model, loader(4), cfg, "cpu", progress=False)   # penalty on for steps 1-2
    return model, rec, out


def test_masks_frozen_after_the_penalty_phase(monkeypatch):
    model, rec, out = _freeze_run(monkeypatch, True)
    assert out["penalty_steps"] == 2
    start = 2.0 * torch.ones(2, 4)
    assert not torch.equal(rec.snapshots[2][0], start)            # the penalty moved them
    for step in (3, 4):
        assert torch.equal(rec.snapshots[step][0], rec.snapshots[2][0])
        assert torch.equal(rec.snapshots[step][1], rec.snapshots[2][1])
    assert torch.equal(model.spiking_bert.head_mask, (rec.snapshots[2][0] > 0).float())
    assert torch.equal(model.spiking_bert.neuron_mask, (rec.snapshots[2][1] > 0).float())


def test_masks_keep_moving_without_freezing(monkeypatch):
    model, rec, out = _freeze_run(monkeypatch, False)
    assert out["penalty_steps"] == 2
    assert not torch.equal(rec.snapshots[4][0], rec.snapshots[2][0])   # momentum and task loss
    assert not torch.equal(rec.snapshots[4][1], rec.snapshots[2][1])


def test_thresholds_train_at_their_own_rate_and_are_recorded(monkeypatch):
    rec = _Recorder(monkeypatch)
    model = make_tiny_model()
    start = [float(v) for v in model.spiking_bert.vth().detach()]
    cfg = RetrainConfig(epochs=1, lr=1e-9, learnable_threshold=True, threshold_lr=0.05, seq_len=7)
    out = retrain(model, loader(3), cfg, "cpu", progress=False)
    (group,) = rec.kwargs["param_groups"]
    assert group["params"] == [model.spiking_bert.thresholds]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.0
    assert out["thresholds_start"] == pytest.approx(start)
    end = model.spiking_bert.vth().detach().tolist()
    assert out["thresholds"] == pytest.approx(end)
    moved = max(abs(a - b) for a, b in zip(start, end))
    assert 0.01 < moved <= 0.05 * 2.5 + 1e-6        # ~threshold_lr per step (3 steps, schedule)
    # at the weights' rate they would not move visibly
    model = make_tiny_model()
    out = retrain(model, loader(3), RetrainConfig(epochs=1, lr=1e-9, learnable_threshold=True,
                                                  threshold_lr=1e-9, seq_len=7), "cpu", progress=False)
    assert max(abs(a - b) for a, b in zip(out["thresholds_start"], out["thresholds"])) < 1e-6


def test_fit_param_groups_leave_the_main_group(monkeypatch):
    from stpcore.train import loop
    groups = []
    real = torch.optim.AdamW

    class Spy(real):
        def __init__(self, params, **kw):
            super().__init__(params, **kw)
            groups.extend(self.param_groups)

    monkeypatch.setattr(loop.torch.optim, "AdamW", Spy)
    model = make_tiny_model()
    th = model.spiking_bert.thresholds
    th.requires_grad_(True)
    loss_fn = lambda m, b, **kw: (lambda o: (o.loss, o))(m(**loop.model_inputs(b), labels=b["labels"], **kw))
    loop.fit(model, loader(1), epochs=1, lr=1e-4, loss_fn=loss_fn, device="cpu", progress=False,
             select_best=False, param_groups=[{"params": [th], "lr": 0.5}])
    main, extra = groups
    assert all(p is not th for p in main["params"]) and main["weight_decay"] == 0.01
    assert extra["params"] == [th] and extra["weight_decay"] == 0.0
    assert extra["initial_lr"] == 0.5


def test_retrain_reports_mask_flips(monkeypatch):
    model, cap, out = _penalty_run(monkeypatch, batches=3)
    bert = model.spiking_bert
    assert out["mask_flips"] == {"heads_pruned": 8 - int(bert.head_mask.sum()), "heads_restored": 0,
                                 "neurons_pruned": 64 - int(bert.neuron_mask.sum()),
                                 "neurons_restored": 0}
    assert out["mask_flips"]["heads_pruned"] > 0


def test_retrain_warns_when_no_mask_can_flip():
    cfg = RetrainConfig(epochs=1, learn_masks=True, penalty_lambda=1.0, mask_lr=1e-3,
                        penalty_fraction=0.5, seq_len=10)
    with pytest.warns(UserWarning, match="no mask can flip"):
        out = retrain(make_tiny_model(), loader(4), cfg, "cpu", progress=False)
    assert out["max_logit_travel"] == pytest.approx(1e-3 * 2)
    assert out["mask_flips"] == {"heads_pruned": 0, "heads_restored": 0, "neurons_pruned": 0,
                                 "neurons_restored": 0}
