"""Timestep-major reference simulation of SpikingBERT, after the public code's loop.

A port (not a copy) of ``SNNBERTSpikingLIFFuncMultiLayer.snn_forward`` of the public
SpikingBERT (NeuroCompLab-psu/SpikingBERT, ``implicit_bert/modules/snn_modules.py``): for each
timestep, the embedding population and then every sublayer of every layer (key, value,
attention, attention output, intermediate, output) is visited once, on that step's spikes, in
fp32, and each population's mean spike rate is logged with one ``.item()`` (a host sync) per
population per step, as the public code does for its rate logs.

It runs on the weights of an :class:`stpcore.snn.model.SpikingBertForSequenceClassification` (read
from the instance: effective, possibly binarised, linear weights, LayerNorms, thresholds,
leak, head/neuron masks) so that its average spiking rates can be compared with
``model.spiking_bert.simulate(...)``. Two deliberate departures from the public code, both
needed for a bit-exact comparison with stpcore:

* the membrane update is stpcore's Eq. 1 order, ``u = leak*u + I - V*s_prev`` then
  ``s = (u >= V)``; the public code resets and leaks after firing (``u = (u - V*s) * leak``,
  then ``u + I`` next step): the same recurrence for leak = 1 in exact arithmetic, with a
  different fp32 rounding order (and, for leak < 1, the leak also scales the reset);
* pruned heads / intermediate neurons (stpcore's masks) are silenced after firing, as stpcore
  does; the public code has no masks.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from stpcore.prune.acs import POPULATIONS
from stpcore.snn.config import SpikingBertConfig
from stpcore.snn.model import SpikingBertForSequenceClassification


def random_model(seed: int = 0, weight_gain: float = 1.5, **config) -> SpikingBertForSequenceClassification:
    """A SpikingBERT with random weights (std ``weight_gain / sqrt(fan_in)`` for encoder
    linears, so that every population spikes at a non-trivial rate). For timing and exactness
    checks only: no trained weights are involved."""
    torch.manual_seed(seed)
    model = SpikingBertForSequenceClassification(SpikingBertConfig(**config))
    with torch.no_grad():
        for layer in model.spiking_bert.layers:
            for lin in (layer.query, layer.key, layer.value, layer.attention_output,
                        layer.intermediate, layer.output):
                lin.weight.normal_(0.0, weight_gain / math.sqrt(lin.in_features))
                lin.bias.normal_(0.0, 0.1)
    return model.eval()


class ReferenceLoop:
    """Timestep-major simulation on the weights of a stpcore model (see module doc)."""

    def __init__(self, model: nn.Module):
        self.bert = getattr(model, "spiking_bert", model)

    @torch.no_grad()
    def simulate(self, input_ids, attention_mask, token_type_ids=None, timesteps=None) -> dict:
        """Run ``timesteps`` (default T_conv) steps from rest.

        Returns ``{"embedding": ASR [B, N, D], "layers": [{population: ASR}], "log": [[mean
        rate of each population at step t] per step]}``; the log is what the host received.
        """
        bert, cfg = self.bert, self.bert.config
        steps = timesteps or cfg.timesteps
        x = bert.embed(input_ids, token_type_ids).float()
        ext = bert.extended_mask(attention_mask)
        vth = bert.vth().detach().float()
        weights = [layer.weights(torch.float32) for layer in bert.layers]
        state, counts, log = {}, {}, []

        def fire(key, current, v, mask=None):
            u, s = state.get(key, (torch.zeros_like(current), torch.zeros_like(current)))
            u = cfg.leak * u + current - v * s
            s = (u >= v).float()
            state[key] = (u, s)
            out = s if mask is None else s * mask
            counts[key] = counts.get(key, 0.0) + out
            log[-1].append(torch.mean(out).item())         # the public code's per-step rate log
            return out

        for _ in range(steps):
            log.append([])
            s = fire("embedding", x, vth[0])
            for l, layer in enumerate(bert.layers):
                s = self._layer_step(l, layer, weights[l], s, ext, vth[l], fire)
        rates = {key: c / steps for key, c in counts.items()}
        return {"embedding": rates["embedding"],
                "layers": [{p: rates[(l, p)] for p in POPULATIONS} for l in range(len(bert.layers))],
                "log": log}

    def _layer_step(self, l, layer, w, s_in, ext, v, fire):
        """One step of the six populations of layer ``l`` on input spikes ``s_in`` [B, N, D]."""
        lin = lambda x, name: F.linear(x, *w[name])
        norm = lambda x, ln: F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
        head_mask = self.bert.head_mask[l].repeat_interleave(layer.head_size)
        k = fire((l, "key"), lin(s_in, "key"), v)
        val = fire((l, "value"), lin(s_in, "value"), v)
        q = lin(s_in, "query")
        B, N, D = q.shape
        split = lambda t: t.reshape(B, N, layer.num_heads, layer.head_size).transpose(1, 2)
        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(layer.head_size)
        probs = torch.softmax(scores + ext, dim=-1)
        ctx = (probs @ split(val)).transpose(1, 2).reshape(B, N, D)
        a = fire((l, "attention"), ctx, v, head_mask)
        ao = fire((l, "attention_output"), norm(lin(a, "attention_output") + s_in,
                                                layer.ln_attention), v)
        i = fire((l, "intermediate"), lin(ao, "intermediate"), v, self.bert.neuron_mask[l])
        return fire((l, "output"), norm(lin(i, "output") + ao, layer.ln_output), v)


def compare_rates(sim, ref: dict) -> dict:
    """Max |ASR difference| and the fraction of neurons whose ASR differs, between a stpcore
    :class:`~stpcore.snn.model.Simulation` and a :meth:`ReferenceLoop.simulate` result, over the
    embedding and every population of every layer."""
    pairs = [(sim.embedding_rate, ref["embedding"])]
    pairs += [(sim.rates[l][p], ref["layers"][l][p]) for l in range(len(sim.rates))
              for p in POPULATIONS]
    diffs = [(a.float() - b.float()).abs() for a, b in pairs]
    n = sum(d.numel() for d in diffs)
    return {"max_abs_asr_diff": max(float(d.max()) for d in diffs),
            "frac_rates_differing": sum(int((d > 0).sum()) for d in diffs) / n}
