"""`SpikingBertConfig`: every spiking hyperparameter of a (pruned) SpikingBERT in one HF config.

It round-trips through ``save_pretrained``/``from_pretrained`` together with the weights, so a
spatially and temporally pruned model (head/neuron masks, per-layer timesteps, learned
thresholds) is a normal HF checkpoint folder.
"""
from __future__ import annotations

import reprlib
from numbers import Real

from transformers import PretrainedConfig

from .checks import check_arg, is_int, is_positive


def _check(ok: bool, name: str, allowed: str, got) -> None:
    check_arg(ok, "SpikingBertConfig", name, allowed, got)


#: Spiking populations per encoder layer (``stpcore.snn.layer.POPULATIONS``).
NUM_POPULATIONS = 6


#: Architecture sizes, each an int >= 1 (numpy ints are stored as Python ints).
SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
         "intermediate_size", "max_position_embeddings", "type_vocab_size", "time_chunk")


def _check_mask(name: str, mask, rows: int, width: int) -> None:
    """A 0/1 mask of ``rows`` rows of ``width`` values; a bad value is named with its place."""
    allowed = f"None or {rows} rows of {width} values in {{0, 1}}"
    is_list = isinstance(mask, (list, tuple))
    _check(is_list and len(mask) == rows, name, allowed, f"{len(mask)} rows" if is_list else mask)
    for i, r in enumerate(mask):
        _check(isinstance(r, (list, tuple)) and len(r) == width, name, allowed,
               f"row {i} of {len(r)} values" if isinstance(r, (list, tuple)) else f"row {i} = {r!r}")
    bad = [(i, j, v) for i, r in enumerate(mask) for j, v in enumerate(r) if v not in (0, 1)]
    if bad:
        i, j, v = bad[0]
        raise ValueError(f"SpikingBertConfig: `{name}` must be {allowed}; got "
                         f"{reprlib.repr(mask)} ({len(bad)} value(s) not in {{0, 1}}, the first "
                         f"{v!r} at row {i}, column {j})")


def _check_population_timesteps(value, L: int) -> dict:
    """Validate ``population_timesteps``; return a plain-dict copy."""
    allowed = (f'None or {{"embedding": int >= 1, "layers": {L} lists of {NUM_POPULATIONS} '
               f'ints >= 1}} (no bools, floats or strings)')
    ok = isinstance(value, dict) and set(value) == {"embedding", "layers"}
    ok = ok and is_int(value["embedding"]) and value["embedding"] >= 1
    rows = value.get("layers") if isinstance(value, dict) else None
    ok = ok and isinstance(rows, (list, tuple)) and len(rows) == L
    ok = ok and all(isinstance(r, (list, tuple)) and len(r) == NUM_POPULATIONS
                    and all(is_int(t) and t >= 1 for t in r) for r in rows)
    _check(ok, "population_timesteps", allowed, value)
    return {"embedding": int(value["embedding"]), "layers": [[int(t) for t in r] for r in rows]}


class SpikingBertConfig(PretrainedConfig):
    """Configuration of :class:`stpcore.snn.model.SpikingBertForSequenceClassification`.

    Architecture (as BERT): ``vocab_size``, ``hidden_size``, ``num_hidden_layers``,
    ``num_attention_heads``, ``intermediate_size``, ``max_position_embeddings``,
    ``type_vocab_size``, ``layer_norm_eps``, ``num_labels``.

    Spiking hyperparameters:

    - ``timesteps``: T_conv, the number of simulation steps of the complete-unrolling executor.
    - ``layer_timesteps``: per-encoder-layer timesteps ``[t^1..t^L]`` after temporal pruning
      (Eq. 10); None means every layer runs ``timesteps``. Non-uniform lists are run by the
      Bernoulli sequential executor (Eq. 11).
    - ``population_timesteps``: per-spiking-population timesteps after sublayer-granularity
      temporal pruning, ``{"embedding": t, "layers": [[t per POPULATIONS] per layer]}`` (6 ints
      per layer in ``stpcore.snn.layer.POPULATIONS`` order); None means none set. At most one of
      ``layer_timesteps`` and ``population_timesteps`` may be set. Non-uniform values are run by
      the population-by-population Bernoulli executor (Eq. 11).
    - ``threshold``: V_th per encoder layer (a float is broadcast); the embedding population
      uses layer 1's threshold. ``learnable_threshold`` makes them parameters (Sec. III-D).
    - ``leak``: gamma of Eq. 1; 1.0 (integrate-and-fire) is the public SpikingBERT's value.
    - ``head_mask``: ``[L][num_heads]`` 0/1 lists (None = all kept); ``neuron_mask``:
      ``[L][intermediate_size]``.
    - ``binary_weights``: encoder linear weights are 1-bit (sign x per-output-channel scale).
    - ``time_chunk``: timesteps simulated together (time folded into the batch); memory is
      O(time_chunk). The unrolled executor's results do not depend on it; the sequential
      executor's do (its Bernoulli draws are taken per block of ``time_chunk`` steps, so a
      given generator gives other spikes at another chunk size, with the same statistics).
    - ``word_embeddings_source``: the model (the teacher, e.g. ``"all-minilm-l6-v2"``) whose
      pretrained word embeddings this model's are, unchanged; a packed checkpoint
      (:mod:`stpcore.snn.packed`) restores them from there. None: not recorded (a packed
      checkpoint then uses the installed source's default).
    """

    model_type = "spiking_bert"

    def __init__(self, vocab_size=30522, hidden_size=384, num_hidden_layers=4,
                 num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512,
                 type_vocab_size=2, layer_norm_eps=1e-12, timesteps=85, layer_timesteps=None,
                 threshold=1.0, leak=1.0,
                 population_timesteps=None, learnable_threshold=False, head_mask=None,
                 neuron_mask=None, binary_weights=False, time_chunk=32,
                 word_embeddings_source=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.timesteps = timesteps
        self.layer_timesteps = (list(layer_timesteps) if isinstance(layer_timesteps, (list, tuple))
                                else layer_timesteps)
        self.population_timesteps = population_timesteps
        number = isinstance(threshold, Real) and not isinstance(threshold, bool)
        if number and is_int(num_hidden_layers):                    # else validate() names L
            threshold = [float(threshold)] * num_hidden_layers       # one V_th for every layer
        self.threshold = list(threshold) if isinstance(threshold, (list, tuple)) else threshold
        self.leak = leak
        self.learnable_threshold = learnable_threshold
        self.head_mask = head_mask
        self.neuron_mask = neuron_mask
        self.binary_weights = binary_weights
        self.time_chunk = time_chunk
        self.word_embeddings_source = word_embeddings_source
        self.validate()

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """``PretrainedConfig.from_dict`` (which ``from_pretrained`` calls, and through it the
        model's ``from_pretrained``), then :meth:`validate`: HF sets keyword overrides such as
        ``timesteps=`` after ``__init__``, so they are checked here."""
        out = super().from_dict(config_dict, **kwargs)
        (out[0] if isinstance(out, tuple) else out).validate()
        return out

    def validate(self) -> None:
        """Raise a ValueError naming the first bad hyperparameter (what is allowed, what was
        given); numpy ints are accepted and stored as Python ints."""
        for name in SIZES:
            _check(is_int(getattr(self, name)) and getattr(self, name) >= 1, name,
                   "an int >= 1", getattr(self, name))
            setattr(self, name, int(getattr(self, name)))
        L, heads = self.num_hidden_layers, self.num_attention_heads
        _check(self.hidden_size % heads == 0, "hidden_size",
               f"divisible by num_attention_heads={heads}", self.hidden_size)
        _check(is_int(self.num_labels) and self.num_labels >= 2, "num_labels",
               "an int >= 2 (classification; the loss is cross-entropy)", self.num_labels)
        _check(is_positive(self.layer_norm_eps), "layer_norm_eps", "a float > 0",
               self.layer_norm_eps)
        for name in ("learnable_threshold", "binary_weights"):
            _check(isinstance(getattr(self, name), bool), name, "True or False (a bool)",
                   getattr(self, name))
        _check(is_int(self.timesteps) and self.timesteps >= 1, "timesteps",
               "an int >= 1 (T_conv)", self.timesteps)
        self.timesteps = int(self.timesteps)
        if self.layer_timesteps is not None:
            lt = self.layer_timesteps
            _check(isinstance(lt, list) and len(lt) == L and all(is_int(t) and t >= 1 for t in lt),
                   "layer_timesteps", f"None or {L} ints >= 1", lt)
            self.layer_timesteps = [int(t) for t in lt]
        if self.population_timesteps is not None:
            _check(self.layer_timesteps is None, "population_timesteps",
                   "None when `layer_timesteps` is set (at most one of the two)",
                   self.population_timesteps)
            self.population_timesteps = _check_population_timesteps(self.population_timesteps, L)
        th = self.threshold
        _check(isinstance(th, list) and len(th) == L and all(map(is_positive, th)), "threshold",
               f"a float > 0 or {L} floats > 0", th)
        self.threshold = [float(v) for v in th]
        _check(is_positive(self.leak) and self.leak <= 1, "leak", "in (0, 1]", self.leak)
        _check(self.word_embeddings_source is None or isinstance(self.word_embeddings_source, str),
               "word_embeddings_source", "None or a model name", self.word_embeddings_source)
        for name, width in (("head_mask", self.num_attention_heads),
                            ("neuron_mask", self.intermediate_size)):
            if getattr(self, name) is not None:
                _check_mask(name, getattr(self, name), L, width)

    @property
    def per_layer_timesteps(self) -> list[int]:
        """``[t^1..t^L]``, the configured list or T_conv for every layer. With
        ``population_timesteps`` set: each layer's largest population timesteps (the number of
        steps the layer is busy), not a cost or latency -- use ``per_population_timesteps``."""
        if self.population_timesteps is not None:
            return [max(row) for row in self.population_timesteps["layers"]]
        return list(self.layer_timesteps or [self.timesteps] * self.num_hidden_layers)

    @property
    def per_population_timesteps(self) -> dict:
        """``{"embedding": t, "layers": [[t per POPULATIONS] per layer]}`` (a fresh copy), the
        configured ``population_timesteps``; else from ``layer_timesteps`` (every population of
        layer l runs t^l, the embedding t^1); else T_conv everywhere."""
        if self.population_timesteps is not None:
            pt = self.population_timesteps
            return {"embedding": pt["embedding"], "layers": [list(r) for r in pt["layers"]]}
        steps = self.per_layer_timesteps
        return {"embedding": steps[0], "layers": [[t] * NUM_POPULATIONS for t in steps]}

    @property
    def uniform_timesteps(self) -> bool:
        """True when every spiking population (embedding included) runs the same steps."""
        pt = self.per_population_timesteps
        return len({pt["embedding"], *(t for row in pt["layers"] for t in row)}) == 1
