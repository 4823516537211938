"""SpikingBERT (Appendix A) with population-major simulation and implicit differentiation (Eq. 4).

Each encoder layer has six spiking populations (``POPULATIONS``): Key and Value spikes, spiking
attention (real-valued Query against Key spikes, probabilities times Value spikes), attention
output (dense + residual + LayerNorm), intermediate, and output (dense + residual + LayerNorm).
The embeddings are a constant input current to an ``embedding`` population. The classifier reads
the average spiking rate (ASR) of the last layer's [CLS] token.

Simulation (:meth:`SpikingBertModel.simulate`, no autograd): a population's spikes at step t
depend only on earlier populations at the same step and on its own membrane, so every population
is simulated over a block of ``time_chunk`` steps at once: one matrix product with time folded
into the batch, then the LIF scan (:func:`stpcore.snn.lif.lif_scan`). This is exact. Pruned heads
and neurons are not computed: their rows and columns are dropped from the weights
(:meth:`stpcore.snn.layer.SpikingEncoderLayer.weights`) and their rates are zero.

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

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .config import SpikingBertConfig
from .checks import is_int
from .inputs import check_forward_args, check_inputs
from .layer import LOW_PRECISION, POPULATIONS, SpikingEncoderLayer, _attach, check_sim_dtype
from .lif import equilibrium_rate, lif_scan
from .packed import packed_weights_file, unpack_state
from .prepared import WeightCaching, expand_rates, prepare_weights
from .quant import QuantLinear
from .sequential import simulate_populations, time_blocks, trace_recorder


@dataclass
class Simulation:
    """What one simulation measured (all detached).

    rates: per layer, ``{population: ASR [B, N, width]}``; embedding_rate ``[B, N, D]``.
    population_rates: ``{"embedding": float, "layers": [[6 floats]]}`` mean over valid tokens
    (Key and Value: over the neurons of kept heads; the others over the whole population).
    traces: per layer, ``[t, D]`` output spikes summed over valid tokens at each step (or None).
    timesteps: per layer, :attr:`SpikingBertConfig.per_layer_timesteps`;
    population_timesteps: ``{"embedding": t, "layers": [[t per POPULATIONS]]}``.
    population_traces: ``{"embedding": [t, B, D], "layers": [{population: [t, B, width]}]}``,
    each population's spikes summed over each example's valid tokens at each of its steps
    (pruned units compact: kept units only), or None.
    """
    embedding_rate: torch.Tensor
    rates: list[dict[str, torch.Tensor]]
    population_rates: dict
    timesteps: list[int]
    num_tokens: int
    traces: list[torch.Tensor] | None = None
    population_timesteps: dict | None = None
    population_traces: dict | None = None


@dataclass
class SpikingOutput:
    """What :meth:`SpikingBertForSequenceClassification.forward` returns.

    logits ``[B, num_labels]``; loss: cross-entropy against ``labels`` (None without labels);
    hidden_rates: the embedding's and each layer's output ASRs ``[B, N, D]`` (with gradients
    after the Eq. 4 pass, else the simulated rates); attentions: each layer's attention
    probabilities ``[B, heads, N, N]`` (Eq. 4 pass only, else empty); simulation: the
    :class:`Simulation` the rates were measured by.
    """
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_rates: list[torch.Tensor] = field(default_factory=list)   # embedding + each layer output
    attentions: list[torch.Tensor] = field(default_factory=list)     # [B, heads, N, N] per layer
    simulation: Simulation | None = None


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
    """Embeddings, L spiking encoder layers, per-layer thresholds and the pruning masks.

    Word embeddings: ``padding_idx=0`` (BERT's ``[PAD]`` id), so row 0 gets no gradient; with
    another tokenizer's pad id, token 0 never trains (padding itself never reaches the output:
    the attention mask removes it). Kept at 0: the recorded models were trained so."""

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
        self.weight_cache = None        # a stpcore.snn.prepared.WeightCache while cache_weights()
        self.post_init()

    # ---- configuration -------------------------------------------------------------------
    def set_masks(self, head_mask=None, neuron_mask=None) -> None:
        """Install 0/1 head ``[L, heads]`` and neuron ``[L, F]`` masks (None = keep all). Both
        are checked before either is installed; the error names the mask and the fault."""
        values = {}
        for name, mask in (("head_mask", head_mask), ("neuron_mask", neuron_mask)):
            buf = getattr(self, name)
            value = torch.ones_like(buf) if mask is None else torch.as_tensor(mask, dtype=buf.dtype)
            if value.shape != buf.shape:
                raise ValueError(f"set_masks: `{name}` must be a 0/1 tensor of shape "
                                 f"{tuple(buf.shape)}; got shape {tuple(value.shape)}")
            bad = value[(value != 0) & (value != 1)]
            if bad.numel():
                raise ValueError(f"set_masks: `{name}` must hold only 0 and 1; got "
                                 f"{bad.numel()} other value(s), e.g. {bad[0].item()!r}")
            values[name] = (mask, value)
        for name, (mask, value) in values.items():
            buf = getattr(self, name)
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
        """Per-layer timesteps ``[t^1..t^L]``, ints >= 1 (None = T_conv); clears
        ``population_timesteps``. Validated; the config is unchanged on error."""
        if layer_timesteps is not None and not all(is_int(t) for t in layer_timesteps):
            raise ValueError(f"set_layer_timesteps: `layer_timesteps` must be None or "
                             f"{self.config.num_hidden_layers} ints >= 1; got {layer_timesteps!r}")
        saved = (self.config.layer_timesteps, self.config.population_timesteps)
        self.config.population_timesteps = None
        self.config.layer_timesteps = None if layer_timesteps is None else [int(t) for t in layer_timesteps]
        try:
            self.config.validate()
        except ValueError:
            self.config.layer_timesteps, self.config.population_timesteps = saved
            raise

    def set_population_timesteps(self, population_timesteps=None) -> None:
        """Per-population timesteps ``{"embedding": t, "layers": [[t per POPULATIONS]]}``
        (None = none); clears ``layer_timesteps``. Validated; the config is unchanged on error."""
        saved = (self.config.layer_timesteps, self.config.population_timesteps)
        self.config.layer_timesteps, self.config.population_timesteps = None, population_timesteps
        try:
            self.config.validate()
        except ValueError:
            self.config.layer_timesteps, self.config.population_timesteps = saved
            raise

    def cache_weights(self, enabled: bool = True) -> WeightCaching:
        """Reuse each simulation dtype's prepared weights and kept units between calls of
        :meth:`simulate` while no parameter or buffer changes (:mod:`stpcore.snn.prepared`; at
        paper size this saves several milliseconds and a host synchronisation per mask per call).
        Takes effect at once; ``with bert.cache_weights(): ...`` restores the previous setting
        on exit. Writes through ``tensor.data`` are not seen: leave it off around them."""
        return WeightCaching(self, enabled)

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

        dtype: the simulation dtype (:mod:`stpcore.snn.layer`): float32 (the exact reference
        path), bfloat16/float16 (16-bit weights, currents and spikes), int8 (1-bit models only,
        else ValueError: integer spike x sign products, :mod:`stpcore.snn.integer`), float64
        (every real-valued step in float64: a reference for the others' rounding).

        executor: "unrolled" (complete spatial unrolling, every population T_conv steps, exact
        spike propagation) or "sequential" (Eq. 11 population by population: each population
        runs its own steps on Bernoulli spikes drawn from its presynaptic populations' ASRs; see
        :mod:`stpcore.snn.sequential`). Default: unrolled when all populations have the same
        timesteps, else sequential.
        """
        check_sim_dtype(dtype, "dtype", "simulate")
        check_inputs(self.config, input_ids, attention_mask, token_type_ids)
        cfg = self.config
        steps, pop_steps = cfg.per_layer_timesteps, cfg.per_population_timesteps
        executor = executor or ("unrolled" if cfg.uniform_timesteps else "sequential")
        if executor not in ("unrolled", "sequential"):
            raise ValueError(f"`executor` must be 'unrolled' or 'sequential'; got {executor!r}")
        if executor == "unrolled" and not cfg.uniform_timesteps:
            raise ValueError("`executor`='unrolled' needs uniform timesteps (layer_timesteps / "
                             "population_timesteps); use 'sequential'")
        # the embedding population's input current is real-valued: fp32 (float64 for float64)
        x = self.embed(input_ids, token_type_ids).to(torch.promote_types(dtype, torch.float32))
        ext = self.extended_mask(attention_mask)
        valid = attention_mask.float()[..., None]                       # [B, N, 1]
        vth = self.vth().detach().float()
        L, chunk = len(self.layers), cfg.time_chunk
        kept, weights, kv_cols = (prepare_weights(self, dtype, prune_kv) if self.weight_cache is None
                                  else self.weight_cache.get(self, dtype, prune_kv))
        if executor == "sequential":
            emb_rate, rates, pop_traces = simulate_populations(
                self.layers, weights, x, ext, valid, vth, cfg.leak, kv_cols, dtype, chunk,
                pop_steps, generator, record_traces)
        else:
            emb_rate, rates, pop_traces = self._simulate_unrolled(
                x, ext, valid, vth, weights, kv_cols, dtype, steps[0], record_traces)
        traces = None
        if record_traces:           # per layer: output spikes summed over all valid tokens
            traces = [tr["output"].sum(1) for tr in pop_traces["layers"]]
        for l, (cols, neurons) in enumerate(kept):         # pruned units: silent, full width
            if cols is not None:
                for p in ("key", "value", "attention") if prune_kv else ("attention",):
                    rates[l][p] = expand_rates(rates[l][p], cols, cfg.hidden_size)
            if neurons is not None:
                rates[l]["intermediate"] = expand_rates(rates[l]["intermediate"], neurons,
                                                        cfg.intermediate_size)
        n_tok = valid.sum()
        mean = lambda r: (r * valid).sum() / (n_tok * max(r.shape[-1], 1))

        def pop_rate(l, p):             # Key and Value: over the kept heads, the neurons that
            cols, r = kept[l][0], rates[l][p]                       # feed kept connections
            if cols is not None and p in ("key", "value"):
                r = r[..., cols]
            return mean(r)
        # on device, then to the host at once: one synchronisation, not one per population
        *means, n = torch.stack([mean(emb_rate), *(pop_rate(l, p) for l in range(L)
                                                    for p in POPULATIONS), n_tok]).tolist()
        P = len(POPULATIONS)
        pop = {"embedding": means[0], "layers": [means[1 + l * P:1 + (l + 1) * P] for l in range(L)]}
        return Simulation(emb_rate, rates, pop, steps, int(n), traces, pop_steps, pop_traces)

    def _simulate_unrolled(self, x, ext, valid, vth, weights, kv_cols, dtype, steps,
                           record_traces):
        """Complete spatial unrolling: every population ``steps`` steps, exact spikes."""
        cfg, L = self.config, len(self.layers)
        sums = [{} for _ in range(L)]       # spike counts, added to by the LIF kernels
        states = [{} for _ in range(L)]
        emb_sum = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        emb_state = {}
        record = trace_recorder(valid, record_traces)
        emb_tr, traces = [], [{p: [] for p in POPULATIONS} for _ in range(L)]
        for t in time_blocks(steps, cfg.time_chunk):
            s, emb_state["s"] = lif_scan(x.expand(t, *x.shape), vth[0], cfg.leak,
                                         emb_state.get("s"), spike_dtype=dtype, counts=emb_sum)
            if record:
                emb_tr.append(record(s))
            for l in range(L):
                out = self.layers[l].simulate_block(s, weights[l], ext, states[l], vth[l],
                                                    cfg.leak, kv_cols[l], dtype, sums[l])
                for p in POPULATIONS if record else ():
                    traces[l][p].append(record(out[p]))
                s = out["output"]
        rates = [{p: sums[l][p] / steps for p in POPULATIONS} for l in range(L)]
        pop_traces = None
        if record:
            pop_traces = {"embedding": torch.cat(emb_tr),
                          "layers": [{p: torch.cat(tr[p]) for p in POPULATIONS} for tr in traces]}
        return emb_sum / steps, rates, pop_traces

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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """``PreTrainedModel.from_pretrained``; a local folder holding ``packed.safetensors``
        (a shipped 1-bit checkpoint, :mod:`stpcore.snn.packed`) is unpacked first, with the word
        embeddings of its config's ``word_embeddings_source`` (a ``word_embeddings_source=``
        keyword overrides it, with or without ``config=``, and is recorded in the loaded config).
        The other keywords (``dtype``, config overrides, ...) work as usual; config overrides
        are validated (:meth:`SpikingBertConfig.from_dict`)."""
        packed = packed_weights_file(pretrained_model_name_or_path)
        if packed is None:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        source = kwargs.pop("word_embeddings_source", None)
        kwargs.setdefault("config", str(packed.parent))
        config = kwargs["config"]
        if not isinstance(config, PretrainedConfig):
            config = cls.config_class.from_pretrained(config)
        with torch.device("meta"):                   # layer shapes only, no memory
            skeleton = cls(config)
        source = source if source is not None else config.word_embeddings_source
        state = unpack_state(packed, skeleton, source)
        loaded = super().from_pretrained(None, *model_args, state_dict=state, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded     # output_loading_info
        model.name_or_path = model.config.name_or_path = str(pretrained_model_name_or_path)
        model.config.word_embeddings_source = source
        model.config.validate()
        return loaded

    def classify(self, cls_rate: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.tanh(self.pooler(cls_rate)))

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None, head_mask=None,
                neuron_mask=None, executor=None, implicit=None, record_traces=False,
                sim_dtype=torch.float32, implicit_dtype=torch.float32):
        """Simulate, then (when gradients are on, or ``implicit=True``) run the Eq. 4 pass.

        ``head_mask``/``neuron_mask`` override the installed masks in the gradient pass only
        (soft or grad-requiring masks); the simulation always uses the installed 0/1 masks.
        ``implicit_dtype``: float32 (default) or bfloat16/float16, under which the Eq. 4 pass runs
        in autocast (its products, forward and backward, in that dtype). The forward values are
        the simulated rates either way (``stpcore.snn.layer._attach``), so logits and loss
        are unchanged; only the gradients move. ``labels``: class ids ``[B]`` in
        [0, num_labels). An unknown keyword is a TypeError (nothing in stpcore or HF's loading
        passes others)."""
        check_forward_args(self.spiking_bert, input_ids, attention_mask, token_type_ids, labels,
                           head_mask, neuron_mask, sim_dtype)
        if implicit_dtype not in (torch.float32, *LOW_PRECISION):
            raise ValueError(f"`implicit_dtype` must be torch.float32, torch.bfloat16 or "
                             f"torch.float16; got {implicit_dtype!r}")
        bert = self.spiking_bert
        sim = bert.simulate(input_ids, attention_mask, token_type_ids, executor=executor,
                            record_traces=record_traces, dtype=sim_dtype,
                            prune_kv=head_mask is None)
        implicit = torch.is_grad_enabled() if implicit is None else implicit
        if implicit:
            with torch.autocast(input_ids.device.type, dtype=implicit_dtype,
                                enabled=implicit_dtype != torch.float32):
                hidden, attentions = bert.equilibrium(input_ids, attention_mask, token_type_ids,
                                                      sim, head_mask, neuron_mask)
        else:
            hidden, attentions = [sim.embedding_rate] + [r["output"] for r in sim.rates], []
        logits = self.classify(hidden[-1][:, 0])
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SpikingOutput(logits, loss, hidden, attentions, sim)
