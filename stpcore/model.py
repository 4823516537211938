"""SpikingBERT (Appendix A) with population-major simulation and implicit differentiation (Eq. 4).

Each encoder layer has six spiking populations (``POPULATIONS``): Key and Value spikes, spiking
attention (real-valued Query against Key spikes, probabilities times Value spikes), attention
output (dense + residual + LayerNorm), intermediate, and output (dense + residual + LayerNorm).
The embeddings are a constant input current to an ``embedding`` population. The classifier reads
the average spiking rate (ASR) of the last layer's [CLS] token.

Simulation (:meth:`SpikingBertModel.simulate`, no autograd): a population's spikes at step t
depend only on earlier populations at the same step and on its own membrane, so every population
is simulated over a block of ``time_chunk`` steps at once: one matrix product with time folded
into the batch, then the LIF scan (:func:`stpcore.lif.lif_scan`). This is exact. Pruned heads
and neurons are not computed: their rows and columns are dropped from the weights
(:meth:`SpikingEncoderLayer.weights`) and their rates are zero.

Training (:meth:`SpikingBertModel.equilibrium`): the ASRs a* are a fixed point of the map
``f_theta`` that sends each population's input rates to ``clamp(I / V_th, 0, 1)``. Eq. 4 gives
``dL/dtheta = dL/da* (I - J_f)^{-1} df/dtheta``. SpikingBERT has no feedback, so J_f is strictly
block-lower-triangular and ``(I - J_f)^{-1}`` is the chain rule through f evaluated *at a** --
which autograd computes exactly when every population's value is the simulated rate and its
gradient is that of f at its simulated inputs (``a = a* + f(a_in) - f(a_in).detach()``). One
ANN-sized pass, memory independent of T. (The public code evaluates f from the embedding instead
of at a*; the two agree when the simulation has converged.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel

from .acs import POPULATIONS
from .config import SpikingBertConfig
from .lif import equilibrium_rate, lif_scan
from .quant import QuantLinear


@dataclass
class Simulation:
    """What one simulation measured (all detached).

    rates: per layer, ``{population: ASR [B, N, width]}``; embedding_rate ``[B, N, D]``.
    population_rates: ``{"embedding": float, "layers": [[6 floats]]}`` mean over valid tokens
    (Key and Value: over the neurons of kept heads; the others over the whole population).
    traces: per layer, ``[t^l, D]`` output spikes summed over valid tokens at each step (or None).
    """
    embedding_rate: torch.Tensor
    rates: list[dict[str, torch.Tensor]]
    population_rates: dict
    timesteps: list[int]
    num_tokens: int
    traces: list[torch.Tensor] | None = None


@dataclass
class SpikingOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_rates: list[torch.Tensor] = field(default_factory=list)   # embedding + each layer output
    attentions: list[torch.Tensor] = field(default_factory=list)     # [B, heads, N, N] per layer
    simulation: Simulation | None = None


def _kept(mask: torch.Tensor) -> torch.Tensor | None:
    """Indices of the kept units of a 0/1 mask row, or None when all are kept."""
    return None if bool((mask != 0).all()) else mask.nonzero().flatten()


def _expand(rate: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
    """Scatter compact rates ``[..., >= len(index)]`` into zeros ``[..., width]``."""
    full = rate.new_zeros(*rate.shape[:-1], width)
    full[..., index] = rate[..., :len(index)]           # drops the padding units
    return full


def _attach(value: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Forward value ``value`` (the simulated rate), gradient of ``f`` (the equilibrium map)."""
    return value + (f - f.detach())


class SpikingEncoderLayer(nn.Module):
    def __init__(self, config: SpikingBertConfig):
        super().__init__()
        D, F, b = config.hidden_size, config.intermediate_size, config.binary_weights
        self.num_heads = config.num_attention_heads
        self.head_size = D // self.num_heads
        self.query, self.key, self.value = (QuantLinear(D, D, b) for _ in range(3))
        self.attention_output = QuantLinear(D, D, b)
        self.intermediate = QuantLinear(D, F, b)
        self.output = QuantLinear(F, D, b)
        self.ln_attention = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.ln_output = nn.LayerNorm(D, eps=config.layer_norm_eps)

    def weights(self, dtype, heads=None, neurons=None,
                prune_kv=True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Effective weights and biases in ``dtype``. With kept ``heads`` / ``neurons`` (index
        tensors; None = all) the pruned units' rows and columns are dropped: Query (and, with
        ``prune_kv``, Key and Value) rows and attention-output columns of pruned heads,
        intermediate rows and output columns of pruned neurons. The kept neurons are padded to a
        multiple of 8 with zero weights and a bias of -inf."""
        names = ("query", "key", "value", "attention_output", "intermediate", "output")
        w = {n: (getattr(self, n).effective_weight().to(dtype), getattr(self, n).bias.to(dtype))
             for n in names}
        if heads is not None:
            cols = self.head_columns(heads)
            for n in ("query", "key", "value") if prune_kv else ("query",):
                w[n] = (w[n][0][cols], w[n][1][cols])
            w["attention_output"] = (w["attention_output"][0][:, cols], w["attention_output"][1])
        if neurons is not None:     # padded to a multiple of 8 (tensor-core alignment) with
            (wi, bi), (wo, bo) = w["intermediate"], w["output"]       # units that never fire
            pad = -len(neurons) % 8
            w["intermediate"] = (torch.cat([wi[neurons], wi.new_zeros(pad, wi.shape[1])]),
                                 torch.cat([bi[neurons], bi.new_full((pad,), -math.inf)]))
            w["output"] = (torch.cat([wo[:, neurons], wo.new_zeros(wo.shape[0], pad)], 1), bo)
        return w

    def head_columns(self, heads: torch.Tensor) -> torch.Tensor:
        """The hidden-state columns ``[len(heads) * head_size]`` of the given heads."""
        offsets = torch.arange(self.head_size, device=heads.device)
        return (heads[:, None] * self.head_size + offsets).flatten()

    def attend(self, q_in, k, v, ext_mask):
        """Scaled dot-product attention of real-valued queries over key/value rates or spikes.

        Shapes ``[..., N, D]``; returns the context ``[..., N, D]`` and probabilities."""
        shape = q_in.shape
        heads = shape[-1] // self.head_size              # fewer than num_heads when compacted
        split = lambda x: x.reshape(*shape[:-1], heads, self.head_size).transpose(-2, -3)
        scores = split(q_in) @ split(k).transpose(-1, -2) / math.sqrt(self.head_size)
        acc = torch.promote_types(scores.dtype, torch.float32)
        probs = torch.softmax(scores.to(acc) + ext_mask, dim=-1).to(v.dtype)
        ctx = (probs @ split(v)).transpose(-2, -3).reshape(shape)
        return ctx, probs

    def context(self, q_in, k, v, ext_mask):
        """The attention context of the simulation. fp32: :meth:`attend` (exact, as the
        reference loop). bf16/fp16: one fused scaled-dot-product-attention kernel (softmax in
        fp32 inside it, no ``[N, N]`` tensor in memory), which rounds differently."""
        if q_in.dtype == torch.float32:
            return self.attend(q_in, k, v, ext_mask)[0]
        *lead, n, width = q_in.shape
        split = lambda x: x.reshape(-1, n, width // self.head_size, self.head_size).transpose(1, 2)
        mask = ext_mask.to(q_in.dtype).expand(*lead[:-1], *ext_mask.shape).reshape(-1, 1, 1, n)
        ctx = nn.functional.scaled_dot_product_attention(split(q_in), split(k), split(v), mask)
        return ctx.transpose(1, 2).reshape(q_in.shape)

    @staticmethod
    def residual_norm(ln: nn.LayerNorm, current, residual):
        """LayerNorm(current + residual). fp32 currents: in fp32 (exact, as the reference loop).
        bf16/fp16: the sum and the output in that dtype (statistics in fp32 inside the kernel),
        which rounds the current like a matrix-product output and halves the bytes moved."""
        if current.dtype == torch.float32:
            return ln(current + residual)
        dt = current.dtype
        return nn.functional.layer_norm(current + residual.to(dt), ln.normalized_shape,
                                        ln.weight.to(dt), ln.bias.to(dt), ln.eps)

    def simulate_block(self, s_in, w, ext_mask, state, vth, leak, heads, dt):
        """Simulate all six populations over a block of steps. ``s_in``: ``[t, B, N, D]``.

        ``w`` comes from :meth:`weights`; ``heads`` are the kept heads of whole Key and Value
        weights (None: all heads kept, or Key and Value already pruned in ``w``). Populations
        of pruned units come out compact (kept units only)."""
        lin = lambda x, n: nn.functional.linear(x, *w[n])     # currents in dt; LIF keeps fp32
        s_dt = s_in.to(dt)
        out = {}

        def fire(name, current):        # spikes in dt: 0/1 are exact
            out[name], state[name] = lif_scan(current, vth, leak, state.get(name), spike_dtype=dt)
            return out[name]

        fire("key", lin(s_dt, "key"))
        fire("value", lin(s_dt, "value"))
        k, v = out["key"], out["value"]
        if heads is not None:
            cols = self.head_columns(heads)
            k, v = k[..., cols], v[..., cols]
        fire("attention", self.context(lin(s_dt, "query"), k, v, ext_mask))
        fire("attention_output",
             self.residual_norm(self.ln_attention, lin(out["attention"], "attention_output"), s_in))
        fire("intermediate", lin(out["attention_output"], "intermediate"))
        fire("output", self.residual_norm(self.ln_output, lin(out["intermediate"], "output"),
                                          out["attention_output"]))
        return out

    def equilibrium(self, a_in, rates, ext_mask, vth, head_mask, neuron_mask):
        """Eq. 4's map f for this layer, evaluated at the simulated input rates (see module doc).

        Masks may be soft (sigmoid surrogates) or require grad (Fisher information)."""
        a = {}
        a["key"] = _attach(rates["key"], equilibrium_rate(self.key(a_in), vth))
        a["value"] = _attach(rates["value"], equilibrium_rate(self.value(a_in), vth))
        ctx, probs = self.attend(self.query(a_in), a["key"], a["value"], ext_mask)
        hm = head_mask.repeat_interleave(self.head_size)
        a["attention"] = _attach(rates["attention"], equilibrium_rate(ctx, vth) * hm)
        cur = self.ln_attention(self.attention_output(a["attention"]) + a_in)
        a["attention_output"] = _attach(rates["attention_output"], equilibrium_rate(cur, vth))
        cur = self.intermediate(a["attention_output"])
        a["intermediate"] = _attach(rates["intermediate"], equilibrium_rate(cur, vth) * neuron_mask)
        cur = self.ln_output(self.output(a["intermediate"]) + a["attention_output"])
        a["output"] = _attach(rates["output"], equilibrium_rate(cur, vth))
        return a, probs


class SpikingBertPreTrainedModel(PreTrainedModel):
    config_class = SpikingBertConfig
    base_model_prefix = "spiking_bert"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def save_pretrained(self, *args, **kwargs):
        """Save, with the (possibly learned) thresholds written into ``config.threshold``."""
        bert = getattr(self, self.base_model_prefix, self)
        self.config.threshold = [float(v) for v in bert.thresholds.detach().cpu()]
        return super().save_pretrained(*args, **kwargs)


class SpikingBertModel(SpikingBertPreTrainedModel):
    """Embeddings, L spiking encoder layers, per-layer thresholds and the pruning masks."""

    def __init__(self, config: SpikingBertConfig):
        super().__init__(config)
        D = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, D, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, D)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, D)
        self.ln_embeddings = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(SpikingEncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.thresholds = nn.Parameter(torch.tensor(config.threshold),
                                       requires_grad=bool(config.learnable_threshold))
        for name, width in (("head_mask", config.num_attention_heads),
                            ("neuron_mask", config.intermediate_size)):
            mask = getattr(config, name)     # validated by the config
            self.register_buffer(name, torch.ones(config.num_hidden_layers, width) if mask is None
                                 else torch.tensor(mask, dtype=torch.float32))
        self.post_init()

    # ---- configuration -------------------------------------------------------------------
    def set_masks(self, head_mask=None, neuron_mask=None) -> None:
        """Install 0/1 head ``[L, heads]`` and neuron ``[L, F]`` masks (None = keep all)."""
        for name, mask in (("head_mask", head_mask), ("neuron_mask", neuron_mask)):
            buf = getattr(self, name)
            value = torch.ones_like(buf) if mask is None else torch.as_tensor(mask, dtype=buf.dtype)
            if value.shape != buf.shape or not bool(((value == 0) | (value == 1)).all()):
                raise ValueError(f"`{name}` must be a 0/1 tensor of shape {tuple(buf.shape)}; "
                                 f"got shape {tuple(value.shape)}")
            buf.copy_(value.to(buf.device))
            setattr(self.config, name, None if mask is None else value.int().tolist())

    def set_binary_weights(self, binary: bool = True) -> None:
        """Switch the encoder's linear layers to (or from) 1-bit weights."""
        self.config.binary_weights = bool(binary)
        for layer in self.layers:
            for m in layer.modules():
                if isinstance(m, QuantLinear):
                    m.binary = bool(binary)

    def set_layer_timesteps(self, layer_timesteps=None) -> None:
        self.config.layer_timesteps = None if layer_timesteps is None else [int(t) for t in layer_timesteps]
        self.config.validate()

    def vth(self) -> torch.Tensor:
        return self.thresholds.clamp(min=1e-3)

    # ---- simulation ------------------------------------------------------------------------
    def embed(self, input_ids, token_type_ids=None):
        """The constant input current of the embedding population ``[B, N, D]``."""
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)[None]
        return self.ln_embeddings(x + self.token_type_embeddings(token_type_ids))

    @staticmethod
    def extended_mask(attention_mask):
        return (1.0 - attention_mask[:, None, None, :].float()) * -10000.0

    @torch.no_grad()
    def simulate(self, input_ids, attention_mask, token_type_ids=None, executor=None,
                 record_traces=False, dtype=torch.float32, generator=None,
                 prune_kv=True) -> Simulation:
        """Simulate the network; returns measured ASRs (see :class:`Simulation`).

        prune_kv: skip the Key and Value neurons of pruned heads too (their rates read 0). They
        affect no spike; only a gradient pass with soft head masks (mask learning) needs them.

        executor: "unrolled" (complete spatial unrolling, every layer T_conv steps, exact spike
        propagation) or "sequential" (Eq. 11: layer l runs its own t^l steps on Bernoulli input
        spikes drawn from layer l-1's ASR, one layer's state at a time). Default: unrolled when
        all layers have the same timesteps, else sequential.
        """
        cfg = self.config
        steps = cfg.per_layer_timesteps
        executor = executor or ("unrolled" if cfg.uniform_timesteps else "sequential")
        if executor not in ("unrolled", "sequential"):
            raise ValueError(f"`executor` must be 'unrolled' or 'sequential'; got {executor!r}")
        if executor == "unrolled" and not cfg.uniform_timesteps:
            raise ValueError("`executor`='unrolled' needs uniform layer_timesteps; use 'sequential'")
        x = self.embed(input_ids, token_type_ids).float()
        ext = self.extended_mask(attention_mask)
        valid = attention_mask.float()[..., None]                       # [B, N, 1]
        vth = self.vth().detach().float()
        L, chunk = len(self.layers), cfg.time_chunk
        kept = [(_kept(self.head_mask[l]), _kept(self.neuron_mask[l])) for l in range(L)]
        weights = [layer.weights(dtype, *kept[l], prune_kv) for l, layer in enumerate(self.layers)]
        sums = [{p: 0.0 for p in POPULATIONS} for _ in range(L)]
        traces = [[] for _ in range(L)] if record_traces else None
        emb_sum, emb_state = 0.0, {}
        states = [{} for _ in range(L)]
        run = lambda l, s_in: self.layers[l].simulate_block(
            s_in, weights[l], ext, states[l], vth[l], cfg.leak, None if prune_kv else kept[l][0], dtype)

        def emb_block(t):
            s, emb_state["s"] = lif_scan(x.expand(t, *x.shape), vth[0], cfg.leak, emb_state.get("s"),
                                         spike_dtype=dtype)
            return s

        def accumulate(l, out):
            for p in POPULATIONS:
                sums[l][p] = sums[l][p] + out[p].sum(0, dtype=torch.float32)
            if record_traces:
                traces[l].append((out["output"].float() * valid).sum(dim=(1, 2)))

        if executor == "unrolled":
            for t0 in range(0, steps[0], chunk):
                s = emb_block(min(chunk, steps[0] - t0))
                emb_sum = emb_sum + s.sum(0, dtype=torch.float32)
                for l in range(L):
                    out = run(l, s)
                    accumulate(l, out)
                    s = out["output"]
        else:
            prev = None
            for l in range(L):
                for t0 in range(0, steps[l], chunk):
                    t = min(chunk, steps[l] - t0)
                    if l == 0:
                        s = emb_block(t)
                        emb_sum = emb_sum + s.sum(0, dtype=torch.float32)
                    else:
                        s = torch.bernoulli(prev.expand(t, *prev.shape), generator=generator)
                    accumulate(l, run(l, s))
                prev = sums[l]["output"] / steps[l]
        rates = [{p: sums[l][p] / steps[l] for p in POPULATIONS} for l in range(L)]
        for l, (heads, neurons) in enumerate(kept):        # pruned units: silent, full width
            if heads is not None:
                cols = self.layers[l].head_columns(heads)
                for p in ("key", "value", "attention") if prune_kv else ("attention",):
                    rates[l][p] = _expand(rates[l][p], cols, cfg.hidden_size)
            if neurons is not None:
                rates[l]["intermediate"] = _expand(rates[l]["intermediate"], neurons,
                                                   cfg.intermediate_size)
        emb_rate = emb_sum / steps[0]
        n_tok = valid.sum()
        mean = lambda r: float((r * valid).sum() / (n_tok * max(r.shape[-1], 1)))

        def pop_rate(l, p):             # Key and Value: over the kept heads, the neurons that
            heads, r = kept[l][0], rates[l][p]                      # feed kept connections
            if heads is not None and p in ("key", "value"):
                r = r[..., self.layers[l].head_columns(heads)]
            return mean(r)
        pop = {"embedding": mean(emb_rate), "layers": [[pop_rate(l, p) for p in POPULATIONS]
                                                       for l in range(L)]}
        return Simulation(emb_rate, rates, pop, steps, int(n_tok),
                          [torch.cat(tr) for tr in traces] if record_traces else None)

    def equilibrium(self, input_ids, attention_mask, token_type_ids, sim: Simulation,
                    head_mask=None, neuron_mask=None):
        """Implicit-differentiation pass (Eq. 4): rates with gradients, and attention probs."""
        head_mask = self.head_mask if head_mask is None else head_mask
        neuron_mask = self.neuron_mask if neuron_mask is None else neuron_mask
        ext = self.extended_mask(attention_mask)
        vth = self.vth()
        x = self.embed(input_ids, token_type_ids)
        a = _attach(sim.embedding_rate, equilibrium_rate(x, vth[0]))
        hidden, attentions = [a], []
        for l, layer in enumerate(self.layers):
            rates, probs = layer.equilibrium(a, sim.rates[l], ext, vth[l], head_mask[l], neuron_mask[l])
            a = rates["output"]
            hidden.append(a)
            attentions.append(probs)
        return hidden, attentions



class SpikingBertForSequenceClassification(SpikingBertPreTrainedModel):
    """SpikingBERT with a pooler and classifier on the last layer's [CLS] ASR."""

    def __init__(self, config: SpikingBertConfig):
        super().__init__(config)
        self.spiking_bert = SpikingBertModel(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def classify(self, cls_rate: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.tanh(self.pooler(cls_rate)))

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None, head_mask=None,
                neuron_mask=None, executor=None, implicit=None, record_traces=False,
                sim_dtype=torch.float32, **_):
        """Simulate, then (when gradients are on, or ``implicit=True``) run the Eq. 4 pass.

        ``head_mask``/``neuron_mask`` override the installed masks in the gradient pass only
        (soft or grad-requiring masks); the simulation always uses the installed 0/1 masks."""
        bert = self.spiking_bert
        sim = bert.simulate(input_ids, attention_mask, token_type_ids, executor=executor,
                            record_traces=record_traces, dtype=sim_dtype,
                            prune_kv=head_mask is None)
        implicit = torch.is_grad_enabled() if implicit is None else implicit
        if implicit:
            hidden, attentions = bert.equilibrium(input_ids, attention_mask, token_type_ids, sim,
                                                  head_mask, neuron_mask)
        else:
            hidden, attentions = [sim.embedding_rate] + [r["output"] for r in sim.rates], []
        logits = self.classify(hidden[-1][:, 0])
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SpikingOutput(logits, loss, hidden, attentions, sim)
