"""Temporal pruning: PCA-derived temporal complexity c and timestep allocation (Eq. 10).

For each unit of allocation we record the running average spiking rate (ASR) of every neuron
at every timestep, a trace ``[T, F]`` (rows = timesteps as samples, columns = neurons as
features). The number of principal components needed to explain ``variance`` of it is its
temporal complexity c, and Eq. 10 maps the c's to timesteps. Two granularities:

* ``"layer"``: the L encoder layers' output populations, t^l per layer;
* ``"sublayer"``: every spiking population -- the embedding and each layer's six
  (``POPULATIONS``), 1 + 6 L in all (25 for 4 layers) -- one t per population, in the
  ``{"embedding": t, "layers": [[t per POPULATIONS]]}`` form.
"""
from __future__ import annotations

import math

import torch

from ..snn.checks import check_arg as _check, is_int, is_real
from ..snn.layer import POPULATIONS
from ..train.loop import model_inputs, to_device

GRANULARITIES = ("sublayer", "layer")
#: Trace readings of :func:`population_components` as (rate, aggregation) pairs.
READINGS = {"running/tokens": ("running", "tokens"), "step/tokens": ("step", "tokens"),
            "running/examples": ("running", "examples"), "step/examples": ("step", "examples")}


def running_rate(spikes) -> torch.Tensor:
    """Running ASR ``a[t] = (s[1] + ... + s[t]) / t`` of spikes ``[T, ...]``, same shape."""
    spikes = torch.as_tensor(spikes)
    _check(spikes.dim() >= 1 and spikes.shape[0] >= 1, "running_rate", "spikes",
           "a tensor [T, ...] with T >= 1", tuple(spikes.shape))
    dtype = spikes.dtype if spikes.is_floating_point() else torch.float32
    steps = torch.arange(1, spikes.shape[0] + 1, dtype=dtype, device=spikes.device)
    return spikes.to(dtype).cumsum(dim=0) / steps.view(-1, *([1] * (spikes.dim() - 1)))


def count_components(traces, variance: float = 0.99999) -> int:
    """Temporal complexity c^l: principal components explaining ``variance`` of ``traces``.

    ``traces`` is ``[T, F]`` (timesteps x neurons). Columns are centred, singular values s
    give explained-variance ratios s_k^2 / sum s^2, and the result is the smallest k whose
    cumulative ratio is >= ``variance`` (capped at the number of singular values, so rounding
    cannot push it past the rank at ``variance`` = 1). A trace with zero variance (e.g. a
    layer whose rates never change) has 1 component by convention, and so does a population
    with no neurons left (``F = 0``: every head or neuron of it pruned), which carries nothing.
    """
    _check(is_real(variance) and 0 < variance <= 1,
           "count_components", "variance", "in (0, 1]", variance)
    traces = torch.as_tensor(traces).to(torch.float64)
    _check(traces.dim() == 2 and traces.shape[0] >= 2,
           "count_components", "traces", "a 2-D tensor [T, F] with T >= 2 timesteps",
           tuple(traces.shape))
    bad = traces[~torch.isfinite(traces)]
    _check(bad.numel() == 0, "count_components", "traces", "finite (no NaN or infinite rates)",
           bad[:3].tolist())
    if traces.shape[1] == 0:
        return 1
    centred = traces - traces.mean(dim=0, keepdim=True)
    power = torch.linalg.svdvals(centred) ** 2
    total = power.sum()
    if total <= 0:
        return 1
    cumulative = torch.cumsum(power, dim=0) / total
    index = int(torch.searchsorted(cumulative, torch.tensor([float(variance)],
                                                            dtype=torch.float64)).item())
    return min(index + 1, power.shape[0])


def allocate_timesteps(components, base: float, t_conv: int) -> list[int]:
    """Eq. 10: ``t^l = ceil(b^{c^l} / max_j b^{c^j} * T_conv)``, each at least 1.

    Evaluated as ``b^{c^l - max_j c^j}``, a power <= 1 that cannot overflow for c in the
    thousands (it may underflow to 0, giving the floor of 1 timestep).
    """
    _check(is_real(base) and base > 1,
           "allocate_timesteps", "base", "> 1", base)
    _check(is_int(t_conv) and t_conv >= 1,
           "allocate_timesteps", "t_conv", "an int >= 1", t_conv)
    components = list(components)
    _check(len(components) >= 1 and all(is_int(c)
                                        and c >= 1 for c in components),
           "allocate_timesteps", "components", "a non-empty list of ints >= 1", components)
    top = max(components)
    return [max(1, math.ceil(float(base) ** (int(c) - int(top)) * int(t_conv)))
            for c in components]


def prune_timesteps(layer_traces, variance: float, base: float,
                    t_conv: int) -> tuple[list[int], list[int]]:
    """Temporal pruning of Sec. III-B2: per-layer ``[T, F]`` traces -> (c^l list, t^l list)."""
    layer_traces = list(layer_traces)
    _check(len(layer_traces) >= 1, "prune_timesteps", "layer_traces",
           "a non-empty list of [T, F] traces", layer_traces)
    components = [count_components(traces, variance) for traces in layer_traces]
    return components, allocate_timesteps(components, base, t_conv)


def check_granularity(granularity, fn: str) -> str:
    _check(granularity in GRANULARITIES, fn, "granularity", f"one of {GRANULARITIES}",
           granularity)
    return granularity


def flatten_populations(per_population: dict) -> list:
    """``{"embedding": x, "layers": [[x per POPULATIONS]]}`` -> ``[x_emb, x_1key, ...]``."""
    return [per_population["embedding"], *(x for row in per_population["layers"] for x in row)]


def unflatten_populations(values) -> dict:
    """Inverse of :func:`flatten_populations` (``1 + 6 L`` values)."""
    values, k = list(values), len(POPULATIONS)
    _check(len(values) >= 1 + k and (len(values) - 1) % k == 0, "unflatten_populations",
           "values", f"1 + {k} L values", len(values))
    return {"embedding": values[0],
            "layers": [values[i:i + k] for i in range(1, len(values), k)]}


def prune_population_timesteps(population_traces: dict, variance: float, base: float,
                               t_conv: int) -> tuple[dict, dict]:
    """Sublayer temporal pruning: Eq. 10 over all spiking populations at once.

    ``population_traces``: ``{"embedding": [T, D], "layers": [[[T, width] per POPULATIONS]]}``
    (already in the reading to analyse, e.g. running rates). Returns (c, t), both in the
    ``{"embedding": ..., "layers": [[...]]}`` form."""
    _check(isinstance(population_traces, dict) and set(population_traces) == {"embedding", "layers"}
           and all(len(r) == len(POPULATIONS) for r in population_traces["layers"]),
           "prune_population_timesteps", "population_traces",
           f'{{"embedding": trace, "layers": rows of {len(POPULATIONS)} traces}}',
           type(population_traces))
    components, steps = prune_timesteps(flatten_populations(population_traces), variance, base,
                                        t_conv)
    return unflatten_populations(components), unflatten_populations(steps)


@torch.no_grad()
def collect_population_traces(model, loader, device, sim_dtype=torch.float32,
                              per_example: bool = False) -> dict:
    """Per-population spike traces at the model's current timesteps (no autograd).

    Token-averaged (``per_example=False``): ``[t, width]``, each step's spikes summed over all
    valid tokens of all examples, divided by the number of valid tokens (as the per-layer
    output traces of :func:`stpcore.train.loop.evaluate`). Per example: each example's
    ``[t, width]`` trace (divided by its own valid tokens), concatenated along the neuron axis
    into ``[t, examples x width]`` -- the rows stay timesteps, so PCA still counts temporal
    components, but example-to-example differences are no longer averaged away. Returned as
    ``{"embedding": trace, "layers": [[trace per POPULATIONS]]}`` on the CPU. ``loader`` must
    yield at least one batch."""
    model.eval()
    sums, parts, tokens = None, [], 0
    with model.spiking_bert.cache_weights():     # weights prepared once (stpcore.snn.prepared)
        for batch in loader:
            batch = to_device(batch, device)
            inputs = model_inputs(batch)
            sim = model.spiking_bert.simulate(inputs["input_ids"], inputs["attention_mask"],
                                              inputs.get("token_type_ids"), record_traces=True,
                                              dtype=sim_dtype)
            pt = sim.population_traces
            flat = [pt["embedding"], *(row[p] for row in pt["layers"] for p in POPULATIONS)]
            if per_example:
                n = inputs["attention_mask"].float().sum(1).clamp_min(1)          # [B]
                parts.append([(tr / n[None, :, None]).cpu() for tr in flat])      # [t, B, width]
            else:
                flat = [tr.sum(1).cpu() for tr in flat]
                sums = flat if sums is None else [a + b for a, b in zip(sums, flat)]
                tokens += sim.num_tokens
    _check(bool(parts) or sums is not None, "collect_population_traces", "loader",
           "an iterable of at least one batch", "no batches")
    if per_example:
        out = [torch.cat([p[i] for p in parts], dim=1) for i in range(len(parts[0]))]
        out = [tr.reshape(tr.shape[0], -1) for tr in out]      # [t, examples x width]
    else:
        out = [tr / max(tokens, 1) for tr in sums]
    return unflatten_populations(out)


def population_components(model, loader, device, variance: float, readings=tuple(READINGS),
                          sim_dtype=torch.float32) -> dict:
    """c of every spiking population under several trace readings, measured at T_conv.

    Readings (:data:`READINGS`): ``"running/tokens"`` (the running ASR of token-averaged
    traces: what temporal pruning uses), ``"step/tokens"`` (the per-step rate instead of the
    running rate), ``"running/examples"`` and ``"step/examples"`` (per-example traces
    concatenated along the neuron axis, see :func:`collect_population_traces`). Returns
    ``{reading: {"embedding": c, "layers": [[c per POPULATIONS]]}}``. The model's timesteps
    are set to T_conv while measuring and restored afterwards."""
    readings = tuple(readings)
    _check(len(readings) >= 1 and all(r in READINGS for r in readings), "population_components",
           "readings", f"a non-empty subset of {tuple(READINGS)}", readings)
    bert, cfg = model.spiking_bert, model.config
    saved = (cfg.layer_timesteps, cfg.population_timesteps)
    bert.set_layer_timesteps(None)
    try:
        traces = {agg: collect_population_traces(model, loader, device, sim_dtype,
                                                 per_example=agg == "examples")
                  for agg in dict.fromkeys(READINGS[r][1] for r in readings)}
    finally:
        cfg.layer_timesteps, cfg.population_timesteps = saved
    out = {}
    for r in readings:
        rate, agg = READINGS[r]
        flat = flatten_populations(traces[agg])
        if rate == "running":
            flat = [running_rate(t) for t in flat]
        out[r] = unflatten_populations([count_components(t, variance) for t in flat])
    return out


def mean_latency(layer_timesteps) -> float:
    """The plain mean of the timesteps given: over the *layers* for a per-layer list ``[t^1..
    t^L]`` (the tutorial's per-layer reading of Eq. 10), over the spiking populations
    (embedding + 6 per layer) for the per-population dict.

    Not the latency the records store: that is :func:`stpcore.prune.acs.population_latency`,
    which always averages over the 1 + 6 L populations (a per-layer list counts every
    population of layer l at t^l and the embedding at t^1), so for a per-layer list the two
    differ (``[85, 40, 20, 10]``: 38.75 here, 40.6 there); for the dict they agree."""
    if isinstance(layer_timesteps, dict):
        layer_timesteps = flatten_populations(layer_timesteps)
    steps = [float(t) for t in layer_timesteps]
    _check(len(steps) >= 1 and min(steps) >= 1, "mean_latency", "layer_timesteps",
           "a non-empty list of numbers >= 1", steps)
    return sum(steps) / len(steps)
