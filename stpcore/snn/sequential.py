"""The population-by-population sequential executor (Eq. 11 at sublayer granularity).

Every spiking population runs its own number of timesteps, one population at a time: the
embedding population on its constant input current, every other population on Bernoulli spikes
drawn independently at each of its steps from the average spiking rates (ASRs) of its
presynaptic populations (:data:`stpcore.snn.layer.PRESYNAPTIC`), each ASR measured over that
population's own steps (:func:`stpcore.snn.bernoulli.draw_bernoulli`: torch's draws, on CUDA in
one Triton kernel). Only rates travel between populations, so no spike history is stored.
With per-layer timesteps every population of layer l runs t^l steps; this differs from exact
spike propagation inside a layer only by the Bernoulli sampling.
"""
from __future__ import annotations

import torch

from .bernoulli import draw_bernoulli
from .layer import POPULATIONS, PRESYNAPTIC, spike_dtype
from .lif import lif_scan


def time_blocks(steps: int, chunk: int):
    """The lengths of the blocks ``steps`` timesteps are simulated in: ``chunk`` each, the
    last one the rest (both executors)."""
    for t0 in range(0, steps, chunk):
        yield min(chunk, steps - t0)


def trace_recorder(valid: torch.Tensor, on: bool = True):
    """None unless ``on``; else the function that turns spikes ``[t, B, N, width]`` into a
    trace ``[t, B, width]``: summed over each example's valid tokens (``valid [B, N, 1]``)."""
    return (lambda s: (s.float() * valid).sum(dim=2)) if on else None


def simulate_populations(layers, weights, x, ext, valid, vth, leak, kv_cols, dtype, chunk,
                         timesteps: dict, generator=None, record_traces=False):
    """Run the populations in order; returns ``(embedding_rate, rates, traces)``.

    ``timesteps`` is the ``{"embedding": t, "layers": [[t per POPULATIONS]]}`` form;
    ``weights``/``kv_cols`` per layer as :meth:`SpikingBertModel.simulate` builds them; rates
    come out compact (kept units only). ``traces`` (with ``record_traces``): ``{"embedding":
    [t, B, D], "layers": [{population: [t, B, width]}]}``, spikes summed over each example's
    valid tokens at each of the population's steps; else None.
    """
    record = trace_recorder(valid, record_traces)
    state, trace = {}, []
    spikes_sum = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    t_emb = timesteps["embedding"]
    for t in time_blocks(t_emb, chunk):
        s, state["s"] = lif_scan(x.expand(t, *x.shape), vth[0], leak, state.get("s"),
                                 spike_dtype=dtype, counts=spikes_sum)
        if record:
            trace.append(record(s))
    emb_rate = spikes_sum / t_emb
    traces = {"embedding": torch.cat(trace), "layers": []} if record else None
    rates, a_in = [], emb_rate
    for l, layer in enumerate(layers):
        known, state, layer_traces, counts = {"input": a_in}, {}, {}, {}
        for name, steps in zip(POPULATIONS, timesteps["layers"][l]):
            trace = []
            for t in time_blocks(steps, chunk):
                pre = {p: draw_bernoulli(known[p], t, spike_dtype(p, dtype), generator)
                       for p in PRESYNAPTIC[name]}
                s = layer.population_block(name, pre, weights[l], ext, state, vth[l], leak,
                                           kv_cols[l], dtype, counts)
                if record:
                    trace.append(record(s))
            known[name] = counts[name] / steps
            if record:
                layer_traces[name] = torch.cat(trace)
        rates.append({p: known[p] for p in POPULATIONS})
        if record:
            traces["layers"].append(layer_traces)
        a_in = known["output"]
    return emb_rate, rates, traces
