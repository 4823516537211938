"""The training loop and evaluation.

``fit`` is the one loop every stage uses (teacher fine-tuning, KD, 1-bit fine-tuning, pruning
retraining): AdamW, linear warm-up/decay, gradient clipping, and checkpoint selection on a
held-out slice of the *train* split (never on the dev split that is reported).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from tqdm import tqdm

from ..snn.layer import POPULATIONS
from ..snn.model import SpikingBertForSequenceClassification

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
             record_traces: bool = False, costs: Callable | None = None) -> dict:
    """Accuracy (%), per-example ``predictions`` and ``labels`` (loader order) and, for SpikingBERT, the token-weighted population rates
    (``{"embedding": a, "layers": [[a per POPULATIONS]]}``), each layer's output ASR and
    optionally per-layer output traces for PCA. ``costs(model, rates, seq_len) -> dict`` adds
    cost metrics (the pruning package's :func:`stpcore.prune.acs.spiking_costs`: Normalized #C,
    AC fraction, latency)."""
    model.eval()
    predictions, labels = [], []
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
        predictions += out.logits.argmax(-1).tolist()
        labels += batch["labels"].tolist()
    total = len(labels)
    correct = sum(int(a == b) for a, b in zip(predictions, labels))
    result = {"accuracy": 100.0 * correct / max(total, 1), "examples": total,
              "predictions": predictions, "labels": labels}
    if spiking:
        flat, L = pop_sum / tokens, model.config.num_hidden_layers
        rates = {"embedding": float(flat[0]), "layers": flat[1:].view(L, len(POPULATIONS)).tolist()}
        result.update({"population_rates": rates, "layer_asr": [r[-1] for r in rates["layers"]]})
        if costs is not None:
            result.update(costs(model, rates, seq_len))
        if record_traces:
            result["traces"] = [t / tokens for t in traces]    # [t^l, D] mean spikes per step
    return result


# ---- the loop ----------------------------------------------------------------------------------
def fit(model, train_loader, *, epochs: int, lr: float, loss_fn: Callable, device,
        heldout_loader=None, extra_modules: tuple = (), progress: bool = True,
        on_step: Callable | None = None, on_epoch: Callable | None = None,
        sim_dtype=torch.float32, seq_len: int = 128, select_best: bool = True,
        weight_decay: float = 0.01, extra_lr: float | None = None,
        param_groups: list[dict] | None = None,
        costs: Callable | None = None, report_loader=None, desc: str = "train") -> list[dict]:
    """Train ``model`` with ``loss_fn(model, batch) -> (loss, output)``; keep the weights of the
    epoch with the best held-out accuracy. ``extra_modules`` (a KD projection, mask logits)
    train too, at ``extra_lr`` if given (without weight decay); ``param_groups`` are extra AdamW
    groups (``{"params": [...], "lr": ..., ...}``, weight decay 0 unless given) whose parameters
    leave the main groups (e.g. learnable thresholds at their own rate); ``costs`` goes to
    :func:`evaluate`. ``report_loader`` (the dev split) is evaluated after each epoch
    and logged as ``dev_accuracy`` only, to show how well held-out accuracy tracks it; it never
    chooses anything. A non-finite loss stops training with ``FloatingPointError``.
    Returns the per-epoch history."""
    if epochs < 1 or lr <= 0:
        raise ValueError(f"`epochs` must be >= 1 and `lr` > 0; got {epochs}, {lr}")
    special = [{"weight_decay": 0.0, **g, "params": [p for p in g["params"] if p.requires_grad]}
               for g in (param_groups or ())]
    special = [g for g in special if g["params"]]
    taken = {id(p) for g in special for p in g["params"]}
    trainable = lambda mods: [p for m in mods for p in m.parameters()
                              if p.requires_grad and id(p) not in taken]
    groups = ([{"params": trainable((model,))},
               {"params": trainable(extra_modules), "lr": extra_lr, "weight_decay": 0.0}]
              if extra_lr is not None else [{"params": trainable((model, *extra_modules))}])
    groups += special
    params = [p for g in groups for p in g["params"]]
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
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"{desc}: the training loss is {value} at epoch {epoch}, "
                                         f"step {step + 1}; lower the learning rate (nothing is "
                                         f"recorded for this stage)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            loss_sum += value * len(batch["labels"])
            correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
            seen += len(batch["labels"])
            if on_step is not None:
                on_step(step)
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": 100.0 * correct / seen}
        if heldout_loader is not None:
            ev = evaluate(model, heldout_loader, device, sim_dtype, seq_len, costs=costs)
            row["heldout_accuracy"] = ev["accuracy"]
            row.update({k: ev[k] for k in ("layer_asr", "normalized_c", "acs_fraction",
                                           "mean_latency") if k in ev})
            if select_best and ev["accuracy"] > best_acc:
                best_acc, best = ev["accuracy"], copy.deepcopy(model.state_dict())
        if report_loader is not None:
            row["dev_accuracy"] = evaluate(model, report_loader, device, sim_dtype, seq_len)["accuracy"]
        if on_epoch is not None:
            row.update(on_epoch(epoch) or {})
        history.append(row)
    if best is not None:
        model.load_state_dict(best)
    return history
