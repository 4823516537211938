"""Pruning during retraining (Sec. III-C, III-D; Eq. 12-13).

``L_total = L_pred(h, n, t) + lambda * M(h, n, t) + eta * sum_l ||a_l*||_2``

* Masks are learned through sigmoid surrogates: logits ``z`` (initialised at +-``mask_init``
  from the post-training masks), the simulation uses the hard mask ``z > 0``, the gradient pass
  uses ``sigmoid(z)`` (its forward value is the simulated rate, its gradient that of the soft mask).
* The AC penalty ``lambda * M`` (Eq. 15-21 on the soft masks) is on for the first
  ``penalty_fraction`` of the steps only (staged optimisation), then the plain loss recovers
  accuracy. The mask logits train at their own rate ``mask_lr``: at the weights' rate (AdamW
  moves a parameter by about lr per step) a logit at +-2 could not cross 0 in one epoch.
* Every ``pca_every`` steps the per-layer timesteps are re-allocated by PCA (Eq. 10).
* The activity loss (Eq. 13, p = 2) is the L2 norm of each encoder layer's output ASR per
  example (valid tokens), summed over layers and averaged over the batch.
* Learnable per-layer thresholds (Sec. III-D) make ``V_th`` a trained parameter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import acs
from .acs import spiking_costs
from .temporal import prune_timesteps, running_rate
from ..train.loop import evaluate, fit, model_inputs


@dataclass
class RetrainConfig:
    epochs: int = 1
    lr: float = 2e-5
    learn_masks: bool = False
    penalty_lambda: float = 0.0
    penalty_fraction: float = 0.5
    mask_lr: float = 1e-2
    activity_eta: float = 0.0
    learnable_threshold: bool = False
    pca_every: int | None = None          # None: timesteps stay fixed
    pca_variance: float = 0.99999
    pca_base: float = 1.02
    t_conv: int = 85
    mask_init: float = 2.0
    seq_len: int = 128


class MaskLogits(nn.Module):
    """Learnable head/neuron mask logits with hard (forward) and sigmoid (gradient) views."""

    def __init__(self, head_mask: torch.Tensor, neuron_mask: torch.Tensor, init: float):
        super().__init__()
        self.head = nn.Parameter((2 * head_mask.float() - 1) * init)
        self.neuron = nn.Parameter((2 * neuron_mask.float() - 1) * init)

    def soft(self):
        return torch.sigmoid(self.head), torch.sigmoid(self.neuron)

    def hard(self):
        return (self.head > 0).float().detach(), (self.neuron > 0).float().detach()


def activity_loss(hidden_rates: list[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
    """Eq. 13 with p = 2: sum over encoder layers of ||a_l*||_2 (per example), batch mean."""
    valid = attention_mask.float()[..., None]
    return sum((a * valid).pow(2).sum((1, 2)).clamp_min(1e-12).sqrt().mean() for a in hidden_rates[1:])


def measure_traces(model, loader, device, sim_dtype=torch.float32) -> list[torch.Tensor]:
    """Per-layer output spike traces ``[T_conv, D]`` measured at uniform T_conv (unrolled)."""
    bert = model.spiking_bert
    saved = bert.config.layer_timesteps
    bert.set_layer_timesteps(None)
    try:
        traces = evaluate(model, loader, device, sim_dtype, record_traces=True)["traces"]
    finally:
        bert.set_layer_timesteps(saved)
    return traces


def reallocate_timesteps(model, loader, device, variance: float, base: float, t_conv: int,
                         sim_dtype=torch.float32):
    """Temporal pruning (Eq. 10): measure traces, count components, set per-layer timesteps."""
    traces = measure_traces(model, loader, device, sim_dtype)
    components, steps = prune_timesteps([running_rate(t) for t in traces], variance, base, t_conv)
    model.spiking_bert.set_layer_timesteps(steps)
    return components, steps


def retrain(model, train_loader, cfg: RetrainConfig, device, heldout_loader=None,
            trace_loader=None, progress: bool = True, sim_dtype=torch.float32) -> dict:
    """Retrain a (pruned) SpikingBERT with Eq. 12-13; returns history and timestep log."""
    bert = model.spiking_bert
    if cfg.pca_every is not None and trace_loader is None:
        raise ValueError("`trace_loader` is needed when `pca_every` is set")
    bert.thresholds.requires_grad_(cfg.learnable_threshold)
    bert.config.learnable_threshold = cfg.learnable_threshold
    logits = MaskLogits(bert.head_mask, bert.neuron_mask, cfg.mask_init).to(device) if cfg.learn_masks else None
    penalty_steps = round(cfg.penalty_fraction * cfg.epochs * len(train_loader))
    geometry = dict(seq_len=cfg.seq_len, hidden_size=bert.config.hidden_size,
                    num_heads=bert.config.num_attention_heads)
    state = {"step": 0, "timesteps": []}

    def loss_fn(m, batch, **kw):
        extra = {}
        if logits is not None:
            hard_h, hard_n = logits.hard()
            bert.head_mask.copy_(hard_h)
            bert.neuron_mask.copy_(hard_n)
            extra = dict(zip(("head_mask", "neuron_mask"), logits.soft()))
        out = m(**model_inputs(batch), labels=batch["labels"], **extra, **kw)
        loss = out.loss
        if logits is not None and cfg.penalty_lambda > 0 and state["step"] < penalty_steps:
            m_acs = acs.count_acs(*logits.soft(), bert.config.per_layer_timesteps, **geometry)
            loss = loss + cfg.penalty_lambda * m_acs.float()
        if cfg.activity_eta > 0:
            loss = loss + cfg.activity_eta * activity_loss(out.hidden_rates, batch["attention_mask"])
        return loss, out

    def on_step(step):
        state["step"] = step
        if cfg.pca_every and step % cfg.pca_every == 0:
            _, steps = reallocate_timesteps(model, trace_loader, device, cfg.pca_variance,
                                            cfg.pca_base, cfg.t_conv, sim_dtype)
            state["timesteps"].append({"step": step, "layer_timesteps": steps})
            model.train()

    history = fit(model, train_loader, epochs=cfg.epochs, lr=cfg.lr, loss_fn=loss_fn, device=device,
                  heldout_loader=heldout_loader, extra_modules=(logits,) if logits is not None else (),
                  extra_lr=cfg.mask_lr if logits is not None else None,
                  progress=progress, on_step=on_step, sim_dtype=sim_dtype, seq_len=cfg.seq_len,
                  costs=spiking_costs, select_best=False, desc="retrain")
    if logits is not None:                        # the masks after the last optimiser step
        bert.head_mask.copy_(logits.hard()[0])
        bert.neuron_mask.copy_(logits.hard()[1])
    bert.set_masks(bert.head_mask.cpu(), bert.neuron_mask.cpu())       # sync the config lists
    return {"history": history, "timestep_log": state["timesteps"]}
