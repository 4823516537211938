"""Post-training spatial pruning (Sec. III-B.1, Eq. 5-9), in the manner of Kwon et al. 2022.

Masks are explicit tensors: heads ``[L, num_heads]`` (applied to the spiking attention
population) and neurons ``[L, intermediate]`` (the intermediate population, whose spikes feed the
output sublayer). Steps:

1. ``collect_mask_grads``: gradients of the loss w.r.t. all-ones masks, through the
   implicit-differentiation pass, one row per mini-batch; plus each unit's ASR.
2. ``compute_fisher_info``: the diagonal Fisher ``I_ii = sum_s g_si^2`` (Eq. 6).
3. ``score_units``: Fisher, or Fisher x ASR (Eq. 7-8) for neurons, heads, or both.
4. ``search_mask``: keep the top heads/neurons by score under the AC budget M(h, n) <= M_c
   (Eq. 5, 9), searching over the number of kept heads; ``rank_mask`` is plain ranking.
5. ``rearrange_mask``: greedy within-layer swaps using the block-diagonal Fisher (gradient
   interactions within a layer), never accepting a worse mask.
"""
from __future__ import annotations

import torch

from . import acs
from ..snn.checks import check_arg, is_int, is_real
from ..train.loop import model_inputs, to_device

SCORINGS = ("fisher", "fisher_asr_neuron", "fisher_asr_attn", "fisher_asr")


def _shape(t) -> tuple | str:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def check_mask_pair(fn: str, head, neuron, names=("head", "neuron")) -> None:
    """``head`` ``[L, heads]`` and ``neuron`` ``[L, F]``: 2-D tensors with the same L >= 1."""
    for name, t in zip(names, (head, neuron)):
        check_arg(isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[0] >= 1, fn, name,
                  "a 2-D tensor [L, units]", _shape(t))
    check_arg(head.shape[0] == neuron.shape[0], fn, names[1],
              f"[L, F] with the same L={head.shape[0]} as `{names[0]}`", _shape(neuron))


def collect_mask_grads(model, loader, device, num_samples: int, sim_dtype=torch.float32):
    """Per-batch mask gradients ``([S, L, heads], [S, L, F])`` and unit ASRs ``([L, heads], [L, F])``
    from the first batches of ``loader`` that hold ``num_samples`` examples (an int >= 1; at
    least one batch)."""
    check_arg(is_int(num_samples) and num_samples >= 1, "collect_mask_grads", "num_samples",
              "an int >= 1", num_samples)
    bert = model.spiking_bert
    model.eval()
    head_g, neuron_g, seen, tokens = [], [], 0, 0
    head_r, neuron_r = torch.zeros_like(bert.head_mask).cpu(), torch.zeros_like(bert.neuron_mask).cpu()
    heads = bert.config.num_attention_heads
    with bert.cache_weights():       # the simulations' weights prepared once (stpcore.snn.prepared)
        for batch in loader:
            if seen >= num_samples:
                break
            batch = to_device(batch, device)
            hm = torch.ones_like(bert.head_mask, requires_grad=True)
            nm = torch.ones_like(bert.neuron_mask, requires_grad=True)
            with torch.enable_grad():
                out = model(**model_inputs(batch), labels=batch["labels"], head_mask=hm,
                            neuron_mask=nm, implicit=True, sim_dtype=sim_dtype)
                gh, gn = torch.autograd.grad(out.loss, (hm, nm))
            head_g.append(gh.detach().cpu())
            neuron_g.append(gn.detach().cpu())
            valid = batch["attention_mask"].float()[..., None]
            for l, r in enumerate(out.simulation.rates):
                head_r[l] += (r["attention"] * valid).sum((0, 1)).view(heads, -1).sum(-1).cpu()
                neuron_r[l] += (r["intermediate"] * valid).sum((0, 1)).cpu()
            tokens += int(valid.sum())
            seen += len(batch["labels"])
    check_arg(bool(head_g), "collect_mask_grads", "loader", "an iterable of at least one batch",
              "no batches")
    head_size = bert.config.hidden_size // bert.config.num_attention_heads
    return (torch.stack(head_g), torch.stack(neuron_g),
            head_r / (tokens * head_size), neuron_r / tokens)


def compute_fisher_info(head_grads: torch.Tensor, neuron_grads: torch.Tensor):
    """Diagonal Fisher information of the masks (Eq. 6): ``sum_s g_s^2`` per unit."""
    return head_grads.pow(2).sum(0), neuron_grads.pow(2).sum(0)


def score_units(head_fisher, neuron_fisher, head_rate, neuron_rate, scoring: str):
    """Importance of every head and neuron (Table II's four scorings, Eq. 7-8). Each rate has
    its Fisher's shape (``[L, heads]``, ``[L, F]``; no broadcasting)."""
    if scoring not in SCORINGS:
        raise ValueError(f"`scoring` must be one of {SCORINGS}; got {scoring!r}")
    check_mask_pair("score_units", head_fisher, neuron_fisher, ("head_fisher", "neuron_fisher"))
    for name, rate, fisher in (("head_rate", head_rate, head_fisher),
                               ("neuron_rate", neuron_rate, neuron_fisher)):
        check_arg(isinstance(rate, torch.Tensor) and rate.shape == fisher.shape, "score_units",
                  name, f"a tensor of its Fisher's shape {tuple(fisher.shape)}", _shape(rate))
    use_attn = scoring in ("fisher_asr_attn", "fisher_asr")
    use_neuron = scoring in ("fisher_asr_neuron", "fisher_asr")
    return (head_fisher * head_rate if use_attn else head_fisher,
            neuron_fisher * neuron_rate if use_neuron else neuron_fisher)


def unit_costs(head_mask, neuron_mask, layer_timesteps, seq_len, hidden_size, num_heads):
    """ACs of each head and neuron: the gradient of M(h, n, t) (Eq. 15-21) w.r.t. the masks."""
    h = head_mask.detach().double().requires_grad_(True)
    n = neuron_mask.detach().double().requires_grad_(True)
    total = acs.count_acs(h, n, layer_timesteps, seq_len, hidden_size, num_heads)
    return torch.autograd.grad(total, (h, n))


def _check_inputs(head_score, neuron_score, head_cost, neuron_cost, budget) -> None:
    """``budget`` a number in (0, 1]; scores ``[L, heads]`` and ``[L, F]`` with one L; each cost
    tensor shaped as its scores, finite and >= 0."""
    if not (is_real(budget) and 0 < budget <= 1):
        raise ValueError(f"`budget` must be in (0, 1] (a fraction of the unpruned ACs); got {budget!r}")
    check_mask_pair("search_mask", head_score, neuron_score, ("head_score", "neuron_score"))
    for name, score, cost in (("head", head_score, head_cost), ("neuron", neuron_score, neuron_cost)):
        if cost.shape != score.shape:
            raise ValueError(f"`{name}_cost` must have the shape of `{name}_score`, "
                             f"{tuple(score.shape)}; got {tuple(cost.shape)}")
        bad = cost[~(torch.isfinite(cost) & (cost >= 0))]
        if bad.numel():
            raise ValueError(f"`{name}_cost` must be finite and >= 0 (ACs per unit); got "
                             f"{bad.numel()} value(s) that are not, e.g. {bad[:3].tolist()}")


def _fill(order, costs, room):
    """Keep units in ``order`` while their cumulative cost fits ``room``."""
    keep = torch.zeros(len(order), dtype=torch.bool)
    cum = torch.cumsum(costs[order], 0)
    keep[order[cum <= room + 1e-6]] = True
    return keep


def rank_mask(head_score, neuron_score, head_cost, neuron_cost, budget: float):
    """Plain ranking: keep units by importance per AC (heads and neurons in one list)."""
    _check_inputs(head_score, neuron_score, head_cost, neuron_cost, budget)
    scores = torch.cat([head_score.flatten(), neuron_score.flatten()]).double()
    costs = torch.cat([head_cost.flatten(), neuron_cost.flatten()]).double()
    room = budget * costs.sum()
    keep = _fill(torch.argsort(scores / costs, descending=True), costs, room)
    nh = head_score.numel()
    return keep[:nh].view_as(head_score).float(), keep[nh:].view_as(neuron_score).float()


def search_mask(head_score, neuron_score, head_cost, neuron_cost, budget: float):
    """Kwon et al.'s search: for every number k of kept heads (top-k by score), fill the rest of
    the budget with the top neurons; return the masks that prune the least importance (Eq. 9)."""
    _check_inputs(head_score, neuron_score, head_cost, neuron_cost, budget)
    hs, ns = head_score.flatten().double(), neuron_score.flatten().double()
    hc, nc = head_cost.flatten().double(), neuron_cost.flatten().double()
    room = budget * (hc.sum() + nc.sum())
    h_order, n_order = torch.argsort(hs, descending=True), torch.argsort(ns, descending=True)
    h_cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(hc[h_order], 0)])
    best, best_kept = None, -float("inf")
    for k in range(len(hs) + 1):
        if h_cum[k] > room + 1e-6:
            break
        keep_n = _fill(n_order, nc, room - h_cum[k])
        kept = hs[h_order[:k]].sum() + ns[keep_n].sum()
        if kept > best_kept:
            keep_h = torch.zeros(len(hs), dtype=torch.bool)
            keep_h[h_order[:k]] = True
            best, best_kept = (keep_h, keep_n), kept
    keep_h, keep_n = best
    return keep_h.view_as(head_score).float(), keep_n.view_as(neuron_score).float()


def pruned_fisher_loss(grads: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Block-diagonal Fisher estimate of the loss increase of pruning ``1 - mask``:
    ``1/2 sum_s sum_l (sum_{i pruned in l} g_sli)^2``. ``grads``: ``[S, L, units]``."""
    return 0.5 * (grads.double() * (1 - mask.double())).sum(-1).pow(2).sum()


def rearrange_mask(mask: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Greedy within-layer rearrangement: per layer, keep the number of pruned units, re-choose
    them one by one to minimise the block-diagonal Fisher loss; keep whichever is better.
    ``mask``: 0/1 ``[L, units]``; ``grads``: ``[S, L, units]`` (:func:`collect_mask_grads`)."""
    check_arg(isinstance(mask, torch.Tensor) and mask.dim() == 2, "rearrange_mask", "mask",
              "a 2-D 0/1 tensor [L, units]", _shape(mask))
    bad = mask[(mask != 0) & (mask != 1)]
    check_arg(bad.numel() == 0, "rearrange_mask", "mask", "0/1 valued",
              f"{bad.numel()} other value(s), e.g. {bad[:3].tolist()}")
    check_arg(isinstance(grads, torch.Tensor) and grads.dim() == 3 and grads.shape[0] >= 1
              and tuple(grads.shape[1:]) == tuple(mask.shape), "rearrange_mask", "grads",
              f"a tensor [S, L, units] = [S >= 1, {mask.shape[0]}, {mask.shape[1]}] (the mask's "
              f"L and units)", _shape(grads))
    out = mask.clone()
    for l in range(mask.shape[0]):
        g = grads[:, l].double()                                   # [S, units]
        n_prune = int((mask[l] == 0).sum())
        if n_prune in (0, mask.shape[1]):
            continue
        pruned = torch.zeros(mask.shape[1], dtype=torch.bool)
        r = torch.zeros(g.shape[0], dtype=torch.float64)
        sq = g.pow(2).sum(0)
        for _ in range(n_prune):
            cost = 2 * (r @ g) + sq
            cost[pruned] = float("inf")
            j = int(torch.argmin(cost))
            pruned[j] = True
            r = r + g[:, j]
        candidate = (~pruned).float()
        if pruned_fisher_loss(g[:, None], candidate[None]) < pruned_fisher_loss(g[:, None], mask[l][None]):
            out[l] = candidate
    return out
