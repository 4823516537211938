"""Accumulation operations (ACs) of a spiking BERT: the cost M(h, n, t) and the #C metric.

Notation (Appendix B): L encoder layers, N sequence length, D hidden size, H = D / num_heads
head size, F intermediate width; head mask ``h [L, num_heads]`` and neuron mask ``n [L, F]``
(0/1 or soft in [0, 1]). Timesteps ``t`` come either per layer, ``[t^1..t^L]`` (every sublayer
of layer l runs t^l), or per spiking population, ``{"embedding": t, "layers": [[t_K, t_V,
t_Attn, t_FC, t_Inter, t_Output] per layer]}`` (``POPULATIONS`` order; Appendix B sets
t_Q = t_Attn since the Query projection lives inside the spiking attention sublayer).

Every count is a sum over synaptic connections (``CONNECTIONS``) of
``unit cost x kept units x t(post)``, each connection counted at the timesteps of its
*postsynaptic* population (Eq. 17-21: query, scores and context at t_Attn, key at t_K, value at
t_V, attention output at t_FC, intermediate at t_Inter, output at t_Output); the embedding's
own timesteps enter no count (only the latency). With all spikes present ("full activity") it is
Eq. 15-21, weighted by the presynaptic spiking rates it is the numerator of Eq. 14.
"""
from __future__ import annotations

import math

import torch

from ..snn.checks import check_arg as _check, is_int
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

#: The postsynaptic population of each connection, the one whose timesteps count its ACs.
POSTSYNAPTIC = {"query": "attention", "key": "key", "value": "value", "scores": "attention",
                "context": "attention", "attention_output": "attention_output",
                "intermediate": "intermediate", "output": "output"}


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
    _check(is_int(num_heads) and num_heads >= 1, fn, "num_heads", "an int >= 1",
           num_heads)
    _check(is_int(hidden_size) and hidden_size >= 1 and hidden_size % num_heads == 0,
           fn, "hidden_size", f"an int >= 1 divisible by num_heads={num_heads}", hidden_size)
    _check(is_int(seq_len) and seq_len >= 1, fn, "seq_len", "an int >= 1", seq_len)
    head = _as_mask(head_mask, fn, "head_mask", num_heads)
    neuron = _as_mask(neuron_mask, fn, "neuron_mask", None).to(head.device)
    n_layers = head.shape[0]
    _check(neuron.shape[0] == n_layers, fn, "neuron_mask",
           f"[L, F] with the same L={n_layers} as head_mask", tuple(neuron.shape))
    t = _as_timesteps(layer_timesteps, n_layers, head.device, fn)
    return head, neuron, t


def _as_timesteps(timesteps, n_layers: int, device, fn: str) -> torch.Tensor:
    """Per-layer list ``[L]`` or per-population dict -> float64 ``[L, len(POPULATIONS)]``."""
    allowed = (f"{n_layers} numbers (one per layer) or {{\"embedding\": t, \"layers\": "
               f"{n_layers} rows of {len(POPULATIONS)} numbers}}, all >= 1")
    as_t = lambda v: (v.to(device=device, dtype=torch.float64) if isinstance(v, torch.Tensor)
                      else torch.tensor(v, dtype=torch.float64, device=device))
    try:
        if isinstance(timesteps, dict):
            _check(set(timesteps) == {"embedding", "layers"}, fn, "layer_timesteps", allowed,
                   timesteps)
            emb = float(timesteps["embedding"])
            rows = timesteps["layers"]
            t = as_t(rows if isinstance(rows, torch.Tensor) else [[float(v) for v in r] for r in rows])
            ok = t.dim() == 2 and t.shape == (n_layers, len(POPULATIONS)) and emb >= 1
        else:
            t = as_t(timesteps if isinstance(timesteps, torch.Tensor)
                     else [float(v) for v in timesteps])
            ok = t.dim() == 1 and t.shape[0] == n_layers
            t = t[:, None].expand(n_layers, len(POPULATIONS)) if ok else t
    except (TypeError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith(fn):
            raise
        raise ValueError(f"{fn}: `layer_timesteps` must be {allowed}; got {timesteps!r}") from err
    _check(ok, fn, "layer_timesteps", allowed, timesteps)
    _check(bool((t.detach() >= 1).all()), fn, "layer_timesteps", "all >= 1",
           t.detach().tolist())
    return t


def population_latency(timesteps, n_layers: int) -> float:
    """Mean timesteps over the spiking populations that have their own timesteps: the
    embedding and the six per layer (25 for 4 layers) for the per-population dict; a per-layer
    list counts as every population of layer l at t^l and the embedding at t^1. The latency
    the records store (``mean_latency`` of :func:`spiking_costs`); not
    :func:`stpcore.prune.temporal.mean_latency`, a per-layer mean for a list."""
    _check(is_int(n_layers) and n_layers >= 1, "population_latency", "n_layers",
           "an int >= 1", n_layers)
    if not isinstance(timesteps, dict):
        _check(isinstance(timesteps, (list, tuple, torch.Tensor)) and len(timesteps) >= 1,
               "population_latency", "timesteps",
               f"a per-population dict or {n_layers} per-layer numbers", timesteps)
        steps = [float(v) for v in timesteps]
        timesteps = {"embedding": steps[0], "layers": [[v] * len(POPULATIONS) for v in steps]}
    t = _as_timesteps(timesteps, n_layers, "cpu", "population_latency")
    return (float(timesteps["embedding"]) + float(t.sum())) / (1 + t.numel())


def _check_reference(reference_timesteps, fn: str) -> None:
    _check(is_int(reference_timesteps) and reference_timesteps >= 1, fn,
           "reference_timesteps", "an int >= 1 (T_conv)", reference_timesteps)


def count_acs(head_mask, neuron_mask, layer_timesteps, seq_len: int, hidden_size: int,
              num_heads: int) -> torch.Tensor:
    """M(h, n, t) of Eq. 15-21 as a float64 scalar, differentiable w.r.t. masks and timesteps.

    Per layer: ``sum(h^l) * [N D H (t_Q + t_K + t_V) (Eq. 17-18) + 2 N^2 H t_Attn (Eq. 19)
    + N D H t_FC (Eq. 20)] + sum(n^l) * [N D t_Inter + N D t_Output] (Eq. 21)``, t_Q = t_Attn;
    ``layer_timesteps`` is a per-layer list (all t = t^l) or the per-population dict.
    Eq. 18-21 give the cost of one head / one intermediate neuron; the mask sums count them.
    """
    head, neuron, t = _check_config(head_mask, neuron_mask, layer_timesteps, seq_len,
                                    hidden_size, num_heads, "count_acs")
    n, d, hd = seq_len, hidden_size, hidden_size // num_heads
    t_k, t_v, t_attn, t_fc, t_inter, t_out = t.unbind(dim=1)
    if bool((t.detach() == t.detach()[:, :1]).all()) and not t.requires_grad:
        t_l = t[:, 0]                       # one t per layer: today's exact expression
        per_head = (3 * n * d * hd + 2 * n * n * hd + n * d * hd) * t_l
        per_neuron = 2 * n * d * t_l
    else:
        per_head = (n * d * hd * (t_attn + t_k + t_v) + 2 * n * n * hd * t_attn   # Eq. 17-19
                    + n * d * hd * t_fc)                                          # Eq. 20, [L]
        per_neuron = n * d * t_inter + n * d * t_out                              # Eq. 21, [L]
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
    Each row also has ``post_population`` (:data:`POSTSYNAPTIC`) and ``timesteps``, the
    postsynaptic population's timesteps that multiply its unit cost.
    """
    head, neuron, t = _check_config(head_mask, neuron_mask, layer_timesteps, seq_len,
                                    hidden_size, num_heads, "count_synaptic_acs")
    n, d, hd = seq_len, hidden_size, hidden_size // num_heads
    unit_cost = {"head_linear": n * d * hd, "head_attention": n * n * hd, "neuron": n * d}
    kept_heads = head.detach().sum(dim=1).tolist()
    kept_neurons = neuron.detach().sum(dim=1).tolist()
    steps = t.detach().tolist()                                     # [L][POPULATIONS]
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
            post = POSTSYNAPTIC[name]
            t_post = steps[layer][POPULATIONS.index(post)]
            rows.append({"layer": layer, "connection": name, "pre_layer": pre_layer,
                         "pre_population": pre_population, "post_population": post,
                         "timesteps": t_post, "acs": unit_cost[family] * kept * t_post})
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
    ``rates`` (as :func:`stpcore.train.loop.evaluate` reports them); its ``costs`` argument.

    Counted at the per-population timesteps (:attr:`SpikingBertConfig.per_population_timesteps`);
    ``mean_latency`` is their mean over the populations (embedding + 6 per layer, Table III's
    latency); ``layer_timesteps`` is each layer's largest, ``population_timesteps`` the dict."""
    cfg, bert = model.config, model.spiking_bert
    geometry = dict(seq_len=seq_len, hidden_size=cfg.hidden_size, num_heads=cfg.num_attention_heads)
    pop = cfg.per_population_timesteps
    masks = (bert.head_mask.cpu(), bert.neuron_mask.cpu(), pop)
    return {"normalized_c": normalized_c(rates, *masks, **geometry, reference_timesteps=cfg.timesteps),
            "acs_fraction": float(acs_fraction(*masks, **geometry, reference_timesteps=cfg.timesteps)),
            "layer_timesteps": cfg.per_layer_timesteps,
            "population_timesteps": pop,
            "mean_latency": population_latency(pop, cfg.num_hidden_layers)}
