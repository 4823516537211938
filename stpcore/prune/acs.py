"""Accumulation operations (ACs) of a spiking BERT: the cost M(h, n, t) and the #C metric.

Notation (Appendix B): L encoder layers, N sequence length, D hidden size, H = D / num_heads
head size, F intermediate width; head mask ``h [L, num_heads]`` and neuron mask ``n [L, F]``
(0/1 or soft in [0, 1]); per-layer timesteps ``t = [t^1..t^L]``, shared by all sublayers of a
layer (so t_Q = t_K = t_V = t_Attn = t_FC = t_Inter = t_Output = t^l).

Every count is a sum over synaptic connections (``CONNECTIONS``) of
``unit cost x kept units x t^l``; with all spikes present ("full activity") it is Eq. 15-21,
weighted by the presynaptic spiking rates it is the numerator of Eq. 14.
"""
from __future__ import annotations

import math
from numbers import Integral

import torch

from ..snn.layer import POPULATIONS


# (connection, presynaptic population, cost family). "input" is the layer input: the
# embedding population for the first layer, the "output" population of the previous one.
CONNECTIONS = (
    ("query", "input", "head_linear"),
    ("key", "input", "head_linear"),
    ("value", "input", "head_linear"),
    ("scores", "key", "head_attention"),
    ("context", "value", "head_attention"),
    ("attention_output", "attention", "head_linear"),
    ("intermediate", "attention_output", "neuron"),
    ("output", "intermediate", "neuron"),
)


def _check(ok: bool, fn: str, name: str, allowed: str, got) -> None:
    if not ok:
        raise ValueError(f"{fn}: `{name}` must be {allowed}; got {got!r}")


def _as_mask(mask, fn: str, name: str, width: int | None) -> torch.Tensor:
    mask = torch.as_tensor(mask)
    shape = f"a 2-D tensor [L, {width if width is not None else 'F'}]"
    _check(mask.dim() == 2 and mask.shape[0] >= 1 and mask.shape[1] >= 1
           and (width is None or mask.shape[1] == width), fn, name, shape, tuple(mask.shape))
    mask = mask.to(torch.float64)
    values = mask.detach()
    _check(bool(((values >= 0) & (values <= 1)).all()), fn, name, "valued in [0, 1]",
           (values.min().item(), values.max().item()))
    return mask


def _check_config(head_mask, neuron_mask, layer_timesteps, seq_len, hidden_size, num_heads,
                  fn: str):
    """Validate the arguments shared by all counts; return float64 ``(h, n, t)``."""
    _check(isinstance(num_heads, Integral) and num_heads >= 1, fn, "num_heads", "an int >= 1",
           num_heads)
    _check(isinstance(hidden_size, Integral) and hidden_size >= 1 and hidden_size % num_heads == 0,
           fn, "hidden_size", f"an int >= 1 divisible by num_heads={num_heads}", hidden_size)
    _check(isinstance(seq_len, Integral) and seq_len >= 1, fn, "seq_len", "an int >= 1", seq_len)
    head = _as_mask(head_mask, fn, "head_mask", num_heads)
    neuron = _as_mask(neuron_mask, fn, "neuron_mask", None).to(head.device)
    n_layers = head.shape[0]
    _check(neuron.shape[0] == n_layers, fn, "neuron_mask",
           f"[L, F] with the same L={n_layers} as head_mask", tuple(neuron.shape))
    if isinstance(layer_timesteps, torch.Tensor):
        t = layer_timesteps.to(device=head.device, dtype=torch.float64)
    else:
        t = torch.tensor([float(v) for v in layer_timesteps], dtype=torch.float64,
                         device=head.device)
    _check(t.dim() == 1 and t.shape[0] == n_layers, fn, "layer_timesteps",
           f"{n_layers} numbers (one per layer)", tuple(t.shape))
    _check(bool((t.detach() >= 1).all()), fn, "layer_timesteps", "all >= 1",
           t.detach().tolist())
    return head, neuron, t


def _check_reference(reference_timesteps, fn: str) -> None:
    _check(isinstance(reference_timesteps, Integral) and reference_timesteps >= 1, fn,
           "reference_timesteps", "an int >= 1 (T_conv)", reference_timesteps)


def count_acs(head_mask, neuron_mask, layer_timesteps, seq_len: int, hidden_size: int,
              num_heads: int) -> torch.Tensor:
    """M(h, n, t) of Eq. 15-21 as a float64 scalar, differentiable w.r.t. masks and timesteps.

    Per layer: ``sum(h^l) * [N D H (t_Q + t_K + t_V) (Eq. 17-18) + 2 N^2 H t_Attn (Eq. 19)
    + N D H t_FC (Eq. 20)] + sum(n^l) * [N D t_Inter + N D t_Output] (Eq. 21)``, all t = t^l.
    Eq. 18-21 give the cost of one head / one intermediate neuron; the mask sums count them.
    """
    head, neuron, t = _check_config(head_mask, neuron_mask, layer_timesteps, seq_len,
                                    hidden_size, num_heads, "count_acs")
    n, d, hd = seq_len, hidden_size, hidden_size // num_heads
    per_head = (3 * n * d * hd + 2 * n * n * hd + n * d * hd) * t       # Eq. 16-20, [L]
    per_neuron = 2 * n * d * t                                           # Eq. 21, [L]
    return (head.sum(dim=1) * per_head + neuron.sum(dim=1) * per_neuron).sum()  # Eq. 15


def acs_fraction(head_mask, neuron_mask, layer_timesteps, seq_len: int, hidden_size: int,
                 num_heads: int, reference_timesteps: int) -> torch.Tensor:
    """M(h, n, t) / M(1, 1, T_conv): the kept share of the unpruned model's ACs (Eq. 5, 12).

    The reference has all-ones masks of the same shapes and ``reference_timesteps`` (T_conv)
    in every layer. Differentiable like :func:`count_acs`.
    """
    _check_reference(reference_timesteps, "acs_fraction")
    head, neuron, _ = _check_config(head_mask, neuron_mask, layer_timesteps, seq_len,
                                    hidden_size, num_heads, "acs_fraction")
    pruned = count_acs(head, neuron, layer_timesteps, seq_len, hidden_size, num_heads)
    full = count_acs(torch.ones_like(head), torch.ones_like(neuron),
                     [reference_timesteps] * head.shape[0], seq_len, hidden_size, num_heads)
    return pruned / full


def count_synaptic_acs(head_mask, neuron_mask, layer_timesteps, seq_len: int, hidden_size: int,
                       num_heads: int) -> list[dict]:
    """Per-connection ACs at full activity (every presynaptic neuron spikes every step).

    One row per (layer, connection in ``CONNECTIONS``) with keys ``layer`` (0-based),
    ``connection``, ``pre_layer`` (0-based layer of the presynaptic population, None for the
    embedding), ``pre_population`` ("embedding" or a name in ``POPULATIONS``) and ``acs``
    (float). Unit costs x t^l: query/key/value/attention_output N D H per kept head, scores and
    context N^2 H per kept head (the two products of Eq. 19), intermediate/output N D per kept
    neuron. Residual additions are not counted. The rows sum to :func:`count_acs`.
    """
    head, neuron, t = _check_config(head_mask, neuron_mask, layer_timesteps, seq_len,
                                    hidden_size, num_heads, "count_synaptic_acs")
    n, d, hd = seq_len, hidden_size, hidden_size // num_heads
    unit_cost = {"head_linear": n * d * hd, "head_attention": n * n * hd, "neuron": n * d}
    kept_heads = head.detach().sum(dim=1).tolist()
    kept_neurons = neuron.detach().sum(dim=1).tolist()
    steps = t.detach().tolist()
    rows = []
    for layer in range(head.shape[0]):
        for name, pre, family in CONNECTIONS:
            kept = kept_neurons[layer] if family == "neuron" else kept_heads[layer]
            if pre != "input":
                pre_layer, pre_population = layer, pre
            elif layer == 0:
                pre_layer, pre_population = None, "embedding"
            else:
                pre_layer, pre_population = layer - 1, "output"
            rows.append({"layer": layer, "connection": name, "pre_layer": pre_layer,
                         "pre_population": pre_population,
                         "acs": unit_cost[family] * kept * steps[layer]})
    return rows


def _check_rates(rates, n_layers: int) -> None:
    ok = isinstance(rates, dict) and "embedding" in rates and "layers" in rates
    ok = ok and len(rates["layers"]) == n_layers
    ok = ok and all(len(layer) == len(POPULATIONS) for layer in rates["layers"])
    _check(ok, "normalized_c", "rates",
           f'{{"embedding": float, "layers": {n_layers} lists of {len(POPULATIONS)} floats}}',
           rates)
    values = [rates["embedding"], *(v for layer in rates["layers"] for v in layer)]
    _check(all(0.0 <= float(v) <= 1.0 for v in values), "normalized_c", "rates",
           "spiking rates in [0, 1]", values)


def normalized_c(rates, head_mask, neuron_mask, layer_timesteps, seq_len: int,
                 hidden_size: int, num_heads: int, reference_timesteps: int) -> float:
    """Normalized #C of Eq. 14: sum_c ASR(pre(c)) * ACs(c) / ACs of the unpruned model.

    ``rates`` = ``{"embedding": a, "layers": [[a per POPULATIONS] per layer]}``, each a rate
    spikes / (neurons x timesteps), as :class:`stpcore.snn.model.Simulation` reports them: "key"
    and "value" over the neurons of kept heads, the others over the *whole* population, masked
    units counting as silent. Since the connections of pruned units are already absent from
    ACs(c), the "attention" and "intermediate" rates are rescaled to their kept units
    (x num_heads / kept heads, x F / kept neurons); a layer with none kept contributes 0.

    Reading of Eq. 14: the paper divides by "sum Layer ACs" without saying of which model; we
    take the unpruned model (all-ones masks, ``reference_timesteps`` = T_conv everywhere) so
    that spatial and temporal pruning lower #C below the baseline's. The last layer's
    "output" population has no counted fan-out (l runs to N-1 in Eq. 14).
    """
    _check_reference(reference_timesteps, "normalized_c")
    head, neuron, _ = _check_config(head_mask, neuron_mask, layer_timesteps, seq_len,
                                    hidden_size, num_heads, "normalized_c")
    _check_rates(rates, head.shape[0])
    kept = {"attention": (head.detach().sum(dim=1).tolist(), num_heads),
            "intermediate": (neuron.detach().sum(dim=1).tolist(), neuron.shape[1])}
    total = 0.0
    for row in count_synaptic_acs(head, neuron, layer_timesteps, seq_len, hidden_size,
                                  num_heads):
        pre, pre_layer = row["pre_population"], row["pre_layer"]
        if pre == "embedding":
            rate = float(rates["embedding"])
        else:
            rate = float(rates["layers"][pre_layer][POPULATIONS.index(pre)])
        if pre in kept:
            kept_units, width = kept[pre][0][pre_layer], kept[pre][1]
            rate = rate * width / kept_units if kept_units > 0 else 0.0
        total += rate * row["acs"]
    full = count_acs(torch.ones_like(head), torch.ones_like(neuron),
                     [reference_timesteps] * head.shape[0], seq_len, hidden_size, num_heads)
    return total / full.item()


def estimate_energy(acs, macs=0.0, e_ac: float = 0.9e-12, e_mac: float = 4.6e-12) -> float:
    """Energy in joules: ``acs * e_ac + macs * e_mac``.

    An *estimate* from published 45 nm per-operation energies (Horowitz, ISSCC 2014: 32-bit
    float add 0.9 pJ, multiply-accumulate 3.7 + 0.9 = 4.6 pJ), not a hardware measurement.
    """
    acs, macs = float(acs), float(macs)
    _check(acs >= 0 and math.isfinite(acs), "estimate_energy", "acs", "finite and >= 0", acs)
    _check(macs >= 0 and math.isfinite(macs), "estimate_energy", "macs", "finite and >= 0",
           macs)
    return acs * e_ac + macs * e_mac


def spiking_costs(model, rates: dict, seq_len: int) -> dict:
    """Normalized #C, AC fraction and mean latency of a SpikingBERT at its measured population
    ``rates`` (as :func:`stpcore.train.loop.evaluate` reports them); its ``costs`` argument."""
    cfg, bert = model.config, model.spiking_bert
    geometry = dict(seq_len=seq_len, hidden_size=cfg.hidden_size, num_heads=cfg.num_attention_heads)
    masks = (bert.head_mask.cpu(), bert.neuron_mask.cpu(), cfg.per_layer_timesteps)
    steps = cfg.per_layer_timesteps
    return {"normalized_c": normalized_c(rates, *masks, **geometry, reference_timesteps=cfg.timesteps),
            "acs_fraction": float(acs_fraction(*masks, **geometry, reference_timesteps=cfg.timesteps)),
            "layer_timesteps": steps,
            "mean_latency": sum(steps) / len(steps)}
