"""Retraining's components: the activity loss, mask logits, mask-flip counts, PCA time-step
updates, the lambda-sweep stage and AdamW's logit-travel bound."""
import pytest
import torch

import stpcore.prune.retrain as retrain_mod
from stpcore.prune.retrain import MaskLogits, RetrainConfig, activity_loss, mask_flips, retrain

from conftest import loader, make_tiny_model


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


def test_pca_every_sets_valid_layer_timesteps():
    model = make_tiny_model()
    cfg = RetrainConfig(epochs=1, lr=1e-4, pca_every=1, pca_base=3.0, pca_variance=0.9,
                        t_conv=12, seq_len=7, granularity="layer")
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
    traces = retrain_mod.measure_traces(model, loader(1), "cpu", granularity="layer")
    assert [t.shape for t in traces] == [torch.Size([12, 16])] * 2       # measured at T_conv
    assert model.config.layer_timesteps == [12, 4]
    assert all(t.min() >= 0 for t in traces) and all(t.sum() > 0 for t in traces)


def test_mask_flips_counts_a_constructed_case():
    h0 = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    h1 = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    n0 = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]])
    n1 = torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0]])
    assert mask_flips(h0, n0, h1, n1) == {"heads_pruned": 1, "heads_restored": 1,
                                          "neurons_pruned": 2, "neurons_restored": 1}
    assert mask_flips(h0, n0, h0, n0) == dict.fromkeys(("heads_pruned", "heads_restored",
                                                        "neurons_pruned", "neurons_restored"), 0)


class _FakeRun:
    """What ``stage_lambda_sweep`` needs of a Run, on the tiny model and CPU."""

    def __init__(self, profile):
        self.profile, self.device, self.sim_dtype, self.loaded = profile, "cpu", torch.float32, []

    def sim_dtype_for(self, model):         # as a Run: the profile's binary_sim_dtype
        from stpcore.runs.runner import Run
        return Run.sim_dtype_for(self, model)

    def model(self, name):
        self.loaded.append(name)
        m = make_tiny_model()
        h = torch.ones(2, 4)
        h[1, 3] = 0.0                                    # a post-training pruned head
        m.spiking_bert.set_masks(h, torch.ones(2, 32))
        return m

    def loader(self, split, batch_size=None, limit=None):
        return loader(3 if split == "train" else 1)

    def dev_metrics(self, model):
        from stpcore.prune.acs import spiking_costs
        from stpcore.train.loop import evaluate
        ev = evaluate(model, loader(1), "cpu", seq_len=7, costs=spiking_costs)
        return {"dev_accuracy": ev["accuracy"], "heldout_accuracy": ev["accuracy"],
                **{k: ev[k] for k in ("acs_fraction", "normalized_c")}}


def test_lambda_sweep_stage_on_the_smoke_profile():
    from stpcore.runs import runner
    from stpcore.runs.profiles import PRUNING_KEYS, get_profile
    from stpcore.runs.pruning import retrain_config, stage_lambda_sweep
    assert runner.STAGES["lambda_sweep"][0] == ("spatial_fisher_asr",)
    assert {"penalty_reference_width", "freeze_masks", "threshold_lr", "lambda_sweep"} <= PRUNING_KEYS
    smoke = get_profile("smoke", "sst2")
    assert smoke.lambda_sweep == (0.0, 4.0)
    cfg = retrain_config(_FakeRun(smoke))
    assert (cfg.penalty_reference_width, cfg.freeze_masks, cfg.threshold_lr) == (768, True, 1e-3)
    # a huge multiplier (lambda ~ 5) so that the penalty must prune
    p = get_profile("smoke", "sst2", lambda_sweep=(0.0, 1e12), mask_lr=1.5, progress=False)
    run = _FakeRun(p)
    metrics, model = stage_lambda_sweep(run)
    assert model is None and run.loaded == ["spatial_fisher_asr"] * 2     # fresh per point
    zero, big = metrics["points"]
    assert zero["multiplier"] == 0.0 and zero["lambda"] == 0.0
    assert big["lambda"] == pytest.approx(1e12 * p.ac_penalty_lambda)
    assert set(zero) == {"multiplier", "lambda", "dev_accuracy", "heldout_accuracy", "acs_fraction",
                         "normalized_c", "mask_flips"}
    pruned = lambda pt: pt["mask_flips"]["heads_pruned"] + pt["mask_flips"]["neurons_pruned"]
    assert pruned(big) > pruned(zero)
    assert big["mask_flips"]["heads_pruned"] <= 7 and big["mask_flips"]["neurons_pruned"] <= 64
    assert big["acs_fraction"] < zero["acs_fraction"]


@pytest.mark.parametrize("grad_scale", [1e-5, 1.0, 1e8])
def test_adamw_moves_a_logit_about_one_lr_per_step_whatever_lambda(grad_scale):
    """The bound behind max_logit_travel: a constant gradient of any size (above Adam's eps,
    below which it moves even less) moves an AdamW
    parameter by ~lr per step, so 150 steps at 0.01 cannot take a logit from +2 across 0,
    and 250 steps can."""
    from stpcore.prune.retrain import max_logit_travel
    z = torch.nn.Parameter(torch.tensor([2.0]))
    opt = torch.optim.AdamW([z], lr=0.01, weight_decay=0.0)
    for step in range(1, 251):
        opt.zero_grad()
        z.grad = torch.tensor([grad_scale])
        opt.step()
        if step == 150:
            assert float(z) > 0 and 2.0 - float(z) <= max_logit_travel(0.01, 150) + 1e-6
    assert float(z) < 0 and 2.0 - float(z) <= max_logit_travel(0.01, 250) + 1e-6
