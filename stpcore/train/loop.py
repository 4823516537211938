"""The training loop and evaluation.

``fit`` is the one loop every stage uses (teacher fine-tuning, KD, 1-bit fine-tuning, pruning
retraining): AdamW, linear warm-up/decay, gradient clipping, and checkpoint selection on a
held-out slice of the *train* split (never on the dev split that is reported).

Data-parallel training: when a ``torch.distributed`` process group of more than one process is
initialised (``torchrun --nproc-per-node N python -m stpcore run ...``), ``fit`` shards the
training batches over the ranks (a :class:`~torch.utils.data.DistributedSampler`, seeded like
the loader's shuffle, each rank taking ``batch_size // world_size`` rows of a step, so the global
batch and the number of steps stay those of one process) and averages the gradients of every
trained parameter (model, ``extra_modules``, ``param_groups``) with one ``all_reduce`` after each
backward pass, before clipping. No ``DistributedDataParallel`` wrapper: ``loss_fn(model, batch)``
and the model's no-grad simulation + equilibrium pass run unchanged. Every rank evaluates the
same full held-out set; rank 0's accuracy decides the checkpoint for all ranks. With one process
nothing of this runs.
"""
from __future__ import annotations

import copy
import math
import os
import sys
from contextlib import nullcontext
from typing import Callable, Iterable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from ..snn.layer import POPULATIONS
from ..snn.model import SpikingBertForSequenceClassification

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def pick_device() -> torch.device:
    """``cuda:LOCAL_RANK`` under a launcher that sets ``LOCAL_RANK`` (torchrun), else ``cuda``
    (or ``cpu`` without a GPU)."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = os.environ.get("LOCAL_RANK")
    return torch.device(f"cuda:{int(local)}" if local not in (None, "") else "cuda")


# ---- torch.distributed helpers (all no-ops with one process) ----------------------------------
def world_size() -> int:
    """Processes in the default process group (1 when none is initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce the gradients of ``params`` and divide by the world size, in one flat buffer.
    A parameter without a gradient on some rank contributes zeros there; one without a gradient
    on every rank keeps ``grad = None`` (so AdamW still skips it, as with one process)."""
    n = world_size()
    if n == 1:
        return
    params = list(params)
    if not params:
        return
    device = params[0].device
    flat = torch.cat([(p.grad.detach().reshape(-1).to(device, torch.float32) if p.grad is not None
                       else torch.zeros(p.numel(), device=device)) for p in params] +
                     [torch.tensor([float(p.grad is not None) for p in params], device=device)])
    dist.all_reduce(flat)
    present, offset = flat[-len(params):], 0
    for p, seen in zip(params, present.tolist()):
        k = p.numel()
        if seen > 0:
            g = (flat[offset:offset + k] / n).view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        offset += k


def _broadcast_float(value: float) -> float:
    """Rank 0's ``value`` on every rank."""
    if world_size() == 1:
        return value
    backend = dist.get_backend()
    dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=dev)
    dist.broadcast(t, src=0)
    return float(t.item())


def _sum_over_ranks(*values: float) -> list[float]:
    if world_size() == 1:
        return list(values)
    backend = dist.get_backend()
    dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return t.tolist()


def shard_loader(loader):
    """The training ``loader`` split over the ranks: a DataLoader over the same dataset with a
    :class:`DistributedSampler` (shuffled iff ``loader`` shuffles, seeded with the loader's
    generator seed; ``set_epoch`` is called each epoch by :func:`fit`) and ``batch_size //
    world_size`` rows per rank and step. Any other iterable of batches (a list of dicts) is
    split row-wise: rank ``r`` takes rows ``r::world_size`` of each batch. Returns ``loader``
    itself with one process."""
    n, r = world_size(), rank()
    if n == 1:
        return loader
    if isinstance(loader, DataLoader) and loader.batch_size is not None:
        shuffle = isinstance(loader.sampler, RandomSampler)
        seed = loader.generator.initial_seed() if loader.generator is not None else 0
        sampler = DistributedSampler(loader.dataset, num_replicas=n, rank=r, shuffle=shuffle,
                                     seed=seed, drop_last=False)
        return DataLoader(loader.dataset, batch_size=max(1, loader.batch_size // n), sampler=sampler,
                          collate_fn=loader.collate_fn, num_workers=loader.num_workers,
                          pin_memory=loader.pin_memory, drop_last=loader.drop_last)
    return [{k: v[r::n] for k, v in batch.items()} for batch in loader]


# ---- progress bars -----------------------------------------------------------------------------
def _env_on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def progress_kwargs(progress: bool, total: int | None, file=None) -> dict:
    """tqdm keywords for a loop of ``total`` steps. Off when ``progress`` is false, when
    ``TQDM_DISABLE`` or ``CI`` is set, and on ranks other than 0. On a terminal: tqdm's usual
    bar. In a log (``file``, default stderr, is not a terminal): at most one update per ~5 % of
    the loop (``miniters = total // 20``; tqdm's monitor thread may not lower it), still no
    more often than ``TQDM_MININTERVAL`` seconds when that is set."""
    file = sys.stderr if file is None else file
    if not progress or _env_on("TQDM_DISABLE") or _env_on("CI") or not is_main_process():
        return {"disable": True}
    isatty = getattr(file, "isatty", None)
    if isatty is not None and isatty():
        return {"disable": False, "file": file}
    return {"disable": False, "file": file, "miniters": max(1, (total or 0) // 20),
            "maxinterval": float("inf"), "ascii": True}


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in MODEL_KEYS if k in batch}


def is_spiking(model) -> bool:
    return isinstance(model, SpikingBertForSequenceClassification)


@torch.no_grad()
def evaluate(model, loader, device, sim_dtype=torch.float32, seq_len: int | None = None,
             record_traces: bool = False, costs: Callable | None = None) -> dict:
    """Accuracy (%), per-example ``predictions`` and ``labels`` (loader order) and, for SpikingBERT, the token-weighted population rates
    (``{"embedding": a, "layers": [[a per POPULATIONS]]}``), each layer's output ASR and
    optionally per-layer output traces for PCA. ``costs(model, rates, seq_len) -> dict`` adds
    cost metrics (the pruning package's :func:`stpcore.prune.acs.spiking_costs`: Normalized #C,
    AC fraction, latency), counted at sequence length ``seq_len``, None: the longest (padded)
    batch of ``loader`` (the pipeline passes the profile's ``max_length``). An empty
    ``loader`` is a ValueError."""
    model.eval()
    predictions, labels, longest = [], [], 0
    spiking = is_spiking(model)
    pop_sum, tokens, traces = None, 0, None
    cache = model.spiking_bert.cache_weights() if spiking else nullcontext()
    with cache:                 # the weights are prepared once (stpcore.snn.prepared)
        for batch in loader:
            batch = to_device(batch, device)
            longest = max(longest, int(batch["input_ids"].shape[1]))
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
    if total == 0:
        raise ValueError("evaluate: `loader` must yield at least one batch of examples; got none")
    correct = sum(int(a == b) for a, b in zip(predictions, labels))
    result = {"accuracy": 100.0 * correct / max(total, 1), "examples": total,
              "predictions": predictions, "labels": labels}
    if spiking:
        flat, L = pop_sum / tokens, model.config.num_hidden_layers
        rates = {"embedding": float(flat[0]), "layers": flat[1:].view(L, len(POPULATIONS)).tolist()}
        result.update({"population_rates": rates, "layer_asr": [r[-1] for r in rates["layers"]]})
        if costs is not None:
            result.update(costs(model, rates, longest if seq_len is None else seq_len))
        if record_traces:
            result["traces"] = [t / tokens for t in traces]    # [t^l, D] mean spikes per step
    return result


# ---- the loop ----------------------------------------------------------------------------------
def fit(model, train_loader, *, epochs: int, lr: float, loss_fn: Callable, device,
        heldout_loader=None, extra_modules: tuple = (), progress: bool = True,
        on_step: Callable | None = None, on_epoch: Callable | None = None,
        sim_dtype=torch.float32, seq_len: int | None = None, select_best: bool = True,
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
    chooses anything. ``seq_len``: the N of ``costs`` (:func:`evaluate`; None: the held-out
    loader's longest batch). A non-finite loss stops training with ``FloatingPointError``; an
    empty ``train_loader`` is a ValueError.
    Returns the per-epoch history."""
    if epochs < 1 or lr <= 0:
        raise ValueError(f"`epochs` must be >= 1 and `lr` > 0; got {epochs}, {lr}")
    if len(train_loader) == 0:
        raise ValueError("fit: `train_loader` must hold at least one batch; got an empty one")
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
    distributed = world_size() > 1
    train_loader = shard_loader(train_loader)
    sampler = getattr(train_loader, "sampler", None)
    total = epochs * len(train_loader)
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    kw = {"sim_dtype": sim_dtype} if is_spiking(model) else {}
    history, best, best_acc, step = [], None, -math.inf, 0
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum = correct = seen = 0
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        for batch in tqdm(train_loader, desc=f"{desc} {epoch}/{epochs}", leave=False,
                          total=len(train_loader),
                          **progress_kwargs(progress, len(train_loader))):
            batch = to_device(batch, device)
            loss, out = loss_fn(model, batch, **kw)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"{desc}: the training loss is {value} at epoch {epoch}, "
                                         f"step {step + 1}; lower the learning rate (nothing is "
                                         f"recorded for this stage)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if distributed:
                average_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            loss_sum += value * len(batch["labels"])
            correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
            seen += len(batch["labels"])
            if on_step is not None:
                on_step(step)
        if distributed:         # the epoch's figures over all ranks' shards, identical everywhere
            loss_sum, correct, seen = _sum_over_ranks(loss_sum, correct, seen)
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": 100.0 * correct / seen}
        if heldout_loader is not None:
            ev = evaluate(model, heldout_loader, device, sim_dtype, seq_len, costs=costs)
            if distributed:     # every rank saw the same held-out set; rank 0's figure decides
                ev["accuracy"] = _broadcast_float(ev["accuracy"])
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
