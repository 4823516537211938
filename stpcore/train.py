"""Training loops, knowledge-distillation losses and evaluation.

``fit`` is the one loop every stage uses (teacher fine-tuning, KD, 1-bit fine-tuning, pruning
retraining): AdamW, linear warm-up/decay, gradient clipping, and checkpoint selection on a
held-out slice of the *train* split (never on the dev split that is reported).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from . import acs
from .model import SpikingBertForSequenceClassification

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in MODEL_KEYS if k in batch}


def is_spiking(model) -> bool:
    return isinstance(model, SpikingBertForSequenceClassification)


@torch.no_grad()
def evaluate(model, loader, device, sim_dtype=torch.float32, seq_len: int = 128,
             record_traces: bool = False) -> dict:
    """Accuracy (%) and, for SpikingBERT, the token-weighted population rates, Normalized #C
    (Eq. 14), the AC fraction (Eq. 15-21) and optionally per-layer output traces for PCA."""
    model.eval()
    correct = total = 0
    spiking = is_spiking(model)
    pop_sum, tokens, traces = None, 0, None
    for batch in loader:
        batch = to_device(batch, device)
        if spiking:
            out = model(**model_inputs(batch), implicit=False, sim_dtype=sim_dtype,
                        record_traces=record_traces)
            sim, n = out.simulation, out.simulation.num_tokens
            flat = torch.tensor([sim.population_rates["embedding"]] +
                                sum(sim.population_rates["layers"], [])) * n
            pop_sum = flat if pop_sum is None else pop_sum + flat
            tokens += n
            if record_traces:
                tr = [t.cpu() for t in sim.traces]
                traces = tr if traces is None else [a + b for a, b in zip(traces, tr)]
        else:
            out = model(**model_inputs(batch))
        correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
        total += len(batch["labels"])
    result = {"accuracy": 100.0 * correct / max(total, 1), "examples": total}
    if spiking:
        result.update(spiking_costs(model, pop_sum / tokens, seq_len))
        if record_traces:
            result["traces"] = [t / tokens for t in traces]    # [t^l, D] mean spikes per step
    return result


def spiking_costs(model, flat_rates: torch.Tensor, seq_len: int) -> dict:
    """Normalized #C, AC fraction and mean latency of a SpikingBERT at its measured rates."""
    cfg, bert = model.config, model.spiking_bert
    L = cfg.num_hidden_layers
    rates = {"embedding": float(flat_rates[0]),
             "layers": flat_rates[1:].view(L, len(acs.POPULATIONS)).tolist()}
    geometry = dict(seq_len=seq_len, hidden_size=cfg.hidden_size, num_heads=cfg.num_attention_heads)
    masks = (bert.head_mask.cpu(), bert.neuron_mask.cpu(), cfg.per_layer_timesteps)
    steps = cfg.per_layer_timesteps
    return {"population_rates": rates,
            "layer_asr": [r[-1] for r in rates["layers"]],
            "normalized_c": acs.normalized_c(rates, *masks, **geometry, reference_timesteps=cfg.timesteps),
            "acs_fraction": float(acs.acs_fraction(*masks, **geometry, reference_timesteps=cfg.timesteps)),
            "layer_timesteps": steps,
            "mean_latency": sum(steps) / len(steps)}


# ---- losses ------------------------------------------------------------------------------------
def label_loss(model, batch, **kw):
    out = model(**model_inputs(batch), labels=batch["labels"], **kw)
    return out.loss, out


def soft_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0):
    t = temperature
    return -(torch.softmax(teacher_logits / t, -1) * torch.log_softmax(student_logits / t, -1)).sum(-1).mean()


class Distiller(nn.Module):
    """Intermediate-layer KD (hidden ASRs through a fitted projection, attention maps) and
    prediction-layer KD, from a BERT teacher or from a full-precision SpikingBERT.

    Hidden states: MSE between ``fit(a_l)`` and the mapped teacher hidden state on valid tokens
    (the embedding population imitates the embedding output). Attention: KL divergence between
    the teacher's and the student's attention distributions (rows of valid queries)."""

    def __init__(self, teacher, layer_map: list[int], student_width: int, mode: str):
        super().__init__()
        if mode not in ("intermediate", "prediction"):
            raise ValueError(f"`mode` must be 'intermediate' or 'prediction'; got {mode!r}")
        self.teacher, self.layer_map, self.mode = teacher, layer_map, mode
        width = teacher.config.hidden_size
        self.fit = nn.Linear(student_width, width) if not is_spiking(teacher) else nn.Identity()

    @torch.no_grad()
    def teacher_outputs(self, batch, sim_dtype):
        self.teacher.eval()
        inputs = model_inputs(batch)
        if is_spiking(self.teacher):
            out = self.teacher(**inputs, implicit=False, sim_dtype=sim_dtype)
            hidden, atts = self.teacher.spiking_bert.equilibrium(**inputs, sim=out.simulation)
            return out.logits, hidden, atts
        out = self.teacher(**inputs, output_hidden_states=True, output_attentions=True)
        return out.logits, out.hidden_states, out.attentions

    def forward(self, model, batch, sim_dtype=torch.float32, **kw):
        t_logits, t_hidden, t_atts = self.teacher_outputs(batch, sim_dtype)
        out = model(**model_inputs(batch), labels=batch["labels"], sim_dtype=sim_dtype, **kw)
        if self.mode == "prediction":
            return soft_cross_entropy(out.logits, t_logits), out
        valid = batch["attention_mask"].bool()
        loss = 0.0
        for l, h in enumerate(out.hidden_rates):
            target = t_hidden[0 if l == 0 else self.layer_map[l - 1]]
            loss = loss + nn.functional.mse_loss(self.fit(h)[valid], target.float()[valid])
        for l, p in enumerate(out.attentions):
            q = t_atts[self.layer_map[l] - 1].float().clamp_min(1e-9)
            kl = (q * (q.log() - p.float().clamp_min(1e-9).log())).sum(-1)   # [B, heads, N]
            loss = loss + kl.transpose(1, 2)[valid].mean()
        return loss, out


# ---- the loop ----------------------------------------------------------------------------------
def fit(model, train_loader, *, epochs: int, lr: float, loss_fn: Callable, device,
        heldout_loader=None, extra_modules: tuple = (), progress: bool = True,
        on_step: Callable | None = None, on_epoch: Callable | None = None,
        sim_dtype=torch.float32, seq_len: int = 128, select_best: bool = True,
        weight_decay: float = 0.01, extra_lr: float | None = None,
        desc: str = "train") -> list[dict]:
    """Train ``model`` with ``loss_fn(model, batch) -> (loss, output)``; keep the weights of the
    epoch with the best held-out accuracy. ``extra_modules`` (a KD projection, mask logits)
    train too, at ``extra_lr`` if given (without weight decay). Returns the per-epoch history."""
    if epochs < 1 or lr <= 0:
        raise ValueError(f"`epochs` must be >= 1 and `lr` > 0; got {epochs}, {lr}")
    trainable = lambda mods: [p for m in mods for p in m.parameters() if p.requires_grad]
    params = trainable((model, *extra_modules))
    groups = ([{"params": trainable((model,))},
               {"params": trainable(extra_modules), "lr": extra_lr, "weight_decay": 0.0}]
              if extra_lr is not None else [{"params": params}])
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    total = epochs * len(train_loader)
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    kw = {"sim_dtype": sim_dtype} if is_spiking(model) else {}
    history, best, best_acc, step = [], None, -math.inf, 0
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum = correct = seen = 0
        for batch in tqdm(train_loader, desc=f"{desc} {epoch}/{epochs}", disable=not progress,
                          leave=False):
            batch = to_device(batch, device)
            loss, out = loss_fn(model, batch, **kw)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            loss_sum += float(loss.detach()) * len(batch["labels"])
            correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
            seen += len(batch["labels"])
            if on_step is not None:
                on_step(step)
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": 100.0 * correct / seen}
        if heldout_loader is not None:
            ev = evaluate(model, heldout_loader, device, sim_dtype, seq_len)
            row["heldout_accuracy"] = ev["accuracy"]
            row.update({k: ev[k] for k in ("layer_asr", "normalized_c", "acs_fraction",
                                           "mean_latency") if k in ev})
            if select_best and ev["accuracy"] > best_acc:
                best_acc, best = ev["accuracy"], copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            row.update(on_epoch(epoch) or {})
        history.append(row)
    if best is not None:
        model.load_state_dict(best)
    return history
