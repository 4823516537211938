"""Pruning during retraining (Sec. III-C, III-D; Eq. 12-13).

``L_total = L_pred(h, n, t) + lambda * M(h, n, t) + eta * sum_l ||a_l*||_2``

* Masks are learned through sigmoid surrogates: logits ``z`` (initialised at +-``mask_init``
  from the post-training masks), the simulation uses the hard mask ``z > 0``, the gradient pass
  uses ``sigmoid(z)`` (its forward value is the simulated rate, its gradient that of the soft mask).
* The AC penalty ``lambda * (D_ref / D)**2 * M`` (Eq. 15-21 on the soft masks) is on for the
  first ``penalty_fraction`` of the steps only (staged optimisation), then the plain loss
  recovers accuracy. M(h, n, t) grows with the square of the hidden width D, and the paper's
  lambda (Table I) is set for BERT-base: it is read as the lambda of the width-768 reference
  (``penalty_reference_width``, D_ref = 768), so a width-384 model uses 4 lambda. ``None``
  leaves lambda unscaled.
* The mask logits train at their own rate ``mask_lr``. AdamW moves a parameter by about its
  learning rate per step whatever the gradient's size (a consistent gradient sign gives
  ``|m / sqrt(v)|`` ~ 1), so during the penalty phase a logit travels at most about
  ``mask_lr x penalty_steps`` (:func:`max_logit_travel`, recorded); when that is below
  ``mask_init`` no mask can flip, whatever lambda is. Measured on MRPC (2026-12-01): 164 penalty
  steps at mask_lr 1e-2 travel 1.64 < 2, and lambda from 0 to 16 x Table I's (x 4 for the
  width) flipped no mask at all; hence the default mask_lr 0.05. With
  ``freeze_masks`` they stop changing once the penalty phase ends (their gradient is dropped,
  so neither the task loss nor AdamW's momentum can undo the pruning).
* Every ``pca_every`` steps the timesteps are re-allocated by PCA (Eq. 10), per spiking
  population (``granularity="sublayer"``) or per layer (``"layer"``).
* The activity loss (Eq. 13, p = 2) is the L2 norm of each encoder layer's output ASR per
  example (valid tokens), summed over layers and averaged over the batch.
* Learnable per-layer thresholds (Sec. III-D) make ``V_th`` a trained parameter, in its own
  AdamW group at ``threshold_lr`` without weight decay; start and end values are returned.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from . import acs
from .acs import spiking_costs
from ..snn.checks import check_arg, is_int, is_positive, is_real
from .temporal import (GRANULARITIES, check_granularity, collect_population_traces, flatten_populations,
                       prune_population_timesteps, prune_timesteps, running_rate,
                       unflatten_populations)
from ..train.loop import evaluate, fit, model_inputs


@dataclass
class RetrainConfig:
    """Settings of :func:`retrain` (Eq. 12-13), validated at construction (a ValueError names
    the field, what is allowed and what was given, before any training).

    epochs, lr: the loop's (:func:`stpcore.train.loop.fit`). learn_masks: train head/neuron
    mask logits (:class:`MaskLogits`, started at +-``mask_init``, at ``mask_lr``);
    penalty_lambda: lambda of the AC penalty, on for the first ``penalty_fraction`` of the steps
    and scaled by ``(penalty_reference_width / D)**2`` (the paper's lambda is BERT-base's, width
    768; None: unscaled); freeze_masks: fix the logits after the penalty phase; activity_eta:
    eta of Eq. 13; learnable_threshold: train V_th at ``threshold_lr``. pca_every: re-allocate
    the timesteps by PCA (Eq. 10, ``pca_variance``, base ``pca_base``) every that many steps, per
    ``granularity`` ("sublayer" or "layer"); None keeps them.

    Taken from the model or the data when None (the pipeline, :mod:`stpcore.runs.pruning`,
    passes both from the profile): ``t_conv``, the T_conv of Eq. 10, is the model's
    ``config.timesteps``; ``seq_len``, the N of the AC penalty and of #C, is each batch's
    (padded) sequence length (:func:`stpcore.train.loop.evaluate`: the longest batch's).
    """
    epochs: int = 1
    lr: float = 2e-5
    learn_masks: bool = False
    penalty_lambda: float = 0.0
    penalty_fraction: float = 0.5
    mask_lr: float = 0.05
    activity_eta: float = 0.0
    learnable_threshold: bool = False
    pca_every: int | None = None          # None: timesteps stay fixed
    pca_variance: float = 0.99999
    pca_base: float = 1.02
    t_conv: int | None = None             # None: the model's config.timesteps
    mask_init: float = 2.0
    penalty_reference_width: int | None = 768   # lambda is the width-768 (BERT-base) value
    freeze_masks: bool = True                   # mask logits fixed after the penalty phase
    threshold_lr: float = 1e-3                  # own AdamW group, no weight decay
    seq_len: int | None = None            # None: each batch's sequence length
    granularity: str = "sublayer"         # PCA re-allocation: "sublayer" or "layer"

    def __post_init__(self):
        def need(ok, name, allowed):
            check_arg(ok, "RetrainConfig", name, allowed, getattr(self, name))
        count = lambda v: is_int(v) and v >= 1
        need(count(self.epochs), "epochs", "an int >= 1")
        for name in ("lr", "mask_lr", "threshold_lr", "mask_init"):
            need(is_positive(getattr(self, name)), name, "a number > 0")
        for name in ("penalty_lambda", "activity_eta"):
            need(is_real(getattr(self, name)) and getattr(self, name) >= 0, name, "a number >= 0")
        need(is_real(self.penalty_fraction) and 0 <= self.penalty_fraction <= 1,
             "penalty_fraction", "in [0, 1]")
        for name in ("learn_masks", "learnable_threshold", "freeze_masks"):
            need(isinstance(getattr(self, name), bool), name, "True or False (a bool)")
        for name in ("pca_every", "t_conv", "seq_len", "penalty_reference_width"):
            need(getattr(self, name) is None or count(getattr(self, name)), name,
                 "None or an int >= 1")
        need(is_real(self.pca_variance) and 0 < self.pca_variance <= 1, "pca_variance", "in (0, 1]")
        need(is_real(self.pca_base) and self.pca_base > 1, "pca_base", "a number > 1 (Eq. 10)")
        need(self.granularity in GRANULARITIES, "granularity", f"one of {GRANULARITIES}")


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


def mask_flips(head_start: torch.Tensor, neuron_start: torch.Tensor, head_end: torch.Tensor,
               neuron_end: torch.Tensor) -> dict:
    """Units pruned (kept -> pruned) and restored (pruned -> kept) between two mask sets."""
    count = lambda a, b: int(((a.cpu() > 0) & ~(b.cpu() > 0)).sum())
    return {"heads_pruned": count(head_start, head_end), "heads_restored": count(head_end, head_start),
            "neurons_pruned": count(neuron_start, neuron_end),
            "neurons_restored": count(neuron_end, neuron_start)}


def penalty_scale(hidden_size: int, reference_width: int | None) -> float:
    """The multiplier of lambda: ``(reference_width / hidden_size)**2`` (1 for ``None``)."""
    return 1.0 if reference_width is None else (reference_width / hidden_size) ** 2


def max_logit_travel(mask_lr: float, penalty_steps: int) -> float:
    """The most a mask logit can move during the penalty phase under AdamW (about one learning
    rate per step for a gradient of consistent sign): ``mask_lr * penalty_steps``."""
    return float(mask_lr) * int(penalty_steps)


def activity_loss(hidden_rates: list[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
    """Eq. 13 with p = 2: sum over encoder layers of ||a_l*||_2 (per example), batch mean."""
    valid = attention_mask.float()[..., None]
    return sum((a * valid).pow(2).sum((1, 2)).clamp_min(1e-12).sqrt().mean() for a in hidden_rates[1:])


def measure_traces(model, loader, device, sim_dtype=torch.float32, granularity="sublayer"):
    """Spike traces measured at uniform T_conv (unrolled); the timesteps are restored after.

    ``granularity="layer"``: per-layer output traces ``[T_conv, D]`` (a list of L);
    ``"sublayer"``: every spiking population's trace ``[T_conv, width]``, spikes per valid token
    per step, as ``{"embedding": trace, "layers": [[trace per POPULATIONS]]}``."""
    check_granularity(granularity, "measure_traces")
    bert, cfg = model.spiking_bert, model.config
    saved = (cfg.layer_timesteps, cfg.population_timesteps)
    bert.set_layer_timesteps(None)
    try:
        if granularity == "layer":
            traces = evaluate(model, loader, device, sim_dtype, record_traces=True)["traces"]
        else:
            traces = collect_population_traces(model, loader, device, sim_dtype)
    finally:
        cfg.layer_timesteps, cfg.population_timesteps = saved
    return traces


def reallocate_timesteps(model, loader, device, variance: float, base: float, t_conv: int,
                         sim_dtype=torch.float32, granularity="sublayer"):
    """Temporal pruning (Eq. 10): measure traces, count components (PCA of running rates),
    install the timesteps. ``"layer"``: returns (c list, t list) and sets ``layer_timesteps``;
    ``"sublayer"``: (c dict, t dict) over all populations, sets ``population_timesteps``."""
    traces = measure_traces(model, loader, device, sim_dtype, granularity)
    if granularity == "layer":
        components, steps = prune_timesteps([running_rate(t) for t in traces], variance, base,
                                            t_conv)
        model.spiking_bert.set_layer_timesteps(steps)
    else:
        running = unflatten_populations([running_rate(t) for t in flatten_populations(traces)])
        components, steps = prune_population_timesteps(running, variance, base, t_conv)
        model.spiking_bert.set_population_timesteps(steps)
    return components, steps


def retrain(model, train_loader, cfg: RetrainConfig, device, heldout_loader=None,
            trace_loader=None, progress: bool = True, sim_dtype=torch.float32) -> dict:
    """Retrain a (pruned) SpikingBERT with Eq. 12-13. Returns ``history``, ``timestep_log``,
    ``mask_flips`` (relative to the masks at the start), ``penalty_scale`` (the multiplier of
    lambda), ``penalty_steps`` (steps the penalty was applied), ``thresholds_start`` and
    ``thresholds`` (per-layer V_th before and after)."""
    bert = model.spiking_bert
    if cfg.pca_every is not None and trace_loader is None:
        raise ValueError("`trace_loader` is needed when `pca_every` is set")
    bert.thresholds.requires_grad_(cfg.learnable_threshold)
    bert.config.learnable_threshold = cfg.learnable_threshold
    logits = MaskLogits(bert.head_mask, bert.neuron_mask, cfg.mask_init).to(device) if cfg.learn_masks else None
    penalty_steps = round(cfg.penalty_fraction * cfg.epochs * len(train_loader))
    scale = penalty_scale(bert.config.hidden_size, cfg.penalty_reference_width)
    masks_start = (bert.head_mask.detach().clone(), bert.neuron_mask.detach().clone())
    vth_start = [float(v) for v in bert.vth().detach().cpu()]
    t_conv = bert.config.timesteps if cfg.t_conv is None else cfg.t_conv
    geometry = dict(hidden_size=bert.config.hidden_size, num_heads=bert.config.num_attention_heads)
    state = {"step": 0, "timesteps": [], "penalty_steps": 0}
    travel = max_logit_travel(cfg.mask_lr, penalty_steps)
    if logits is not None and cfg.penalty_lambda > 0 and travel <= cfg.mask_init:
        warnings.warn(f"retrain: mask logits start at +-{cfg.mask_init} but can travel at most "
                      f"mask_lr x penalty steps = {travel:.3g} during the penalty phase: no mask "
                      f"can flip; raise mask_lr or the penalty steps")

    def freeze():
        if logits is not None and cfg.freeze_masks and state["step"] >= penalty_steps:
            logits.requires_grad_(False)          # no gradient: AdamW skips them (no momentum)

    def loss_fn(m, batch, **kw):
        extra = {}
        freeze()
        if logits is not None:
            hard_h, hard_n = logits.hard()
            bert.head_mask.copy_(hard_h)
            bert.neuron_mask.copy_(hard_n)
            extra = dict(zip(("head_mask", "neuron_mask"), logits.soft()))
        out = m(**model_inputs(batch), labels=batch["labels"], **extra, **kw)
        loss = out.loss
        if logits is not None and cfg.penalty_lambda > 0 and state["step"] < penalty_steps:
            n = batch["input_ids"].shape[1] if cfg.seq_len is None else cfg.seq_len
            m_acs = acs.count_acs(*logits.soft(), bert.config.per_population_timesteps,
                                  seq_len=n, **geometry)
            loss = loss + cfg.penalty_lambda * scale * m_acs.float()
            state["penalty_steps"] += 1
        if cfg.activity_eta > 0:
            loss = loss + cfg.activity_eta * activity_loss(out.hidden_rates, batch["attention_mask"])
        return loss, out

    def on_step(step):
        state["step"] = step
        if cfg.pca_every and step % cfg.pca_every == 0:
            _, steps = reallocate_timesteps(model, trace_loader, device, cfg.pca_variance,
                                            cfg.pca_base, t_conv, sim_dtype, cfg.granularity)
            key = "layer_timesteps" if cfg.granularity == "layer" else "population_timesteps"
            state["timesteps"].append({"step": step, key: steps})
            model.train()

    freeze()                                      # penalty_fraction 0: frozen from the start
    history = fit(model, train_loader, epochs=cfg.epochs, lr=cfg.lr, loss_fn=loss_fn, device=device,
                  heldout_loader=heldout_loader, extra_modules=(logits,) if logits is not None else (),
                  extra_lr=cfg.mask_lr if logits is not None else None,
                  param_groups=[{"params": [bert.thresholds], "lr": cfg.threshold_lr,
                                 "weight_decay": 0.0}] if cfg.learnable_threshold else None,
                  progress=progress, on_step=on_step, sim_dtype=sim_dtype, seq_len=cfg.seq_len,
                  costs=spiking_costs, select_best=False, desc="retrain")
    if logits is not None:                        # the masks after the last optimiser step
        bert.head_mask.copy_(logits.hard()[0])
        bert.neuron_mask.copy_(logits.hard()[1])
    bert.set_masks(bert.head_mask.cpu(), bert.neuron_mask.cpu())       # sync the config lists
    return {"history": history, "timestep_log": state["timesteps"],
            "mask_flips": mask_flips(*masks_start, bert.head_mask, bert.neuron_mask),
            "penalty_scale": scale, "penalty_steps": state["penalty_steps"],
            "max_logit_travel": travel if logits is not None else 0.0,
            "thresholds_start": vth_start, "thresholds": [float(v) for v in bert.vth().detach().cpu()]}
