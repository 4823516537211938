"""One SpikingBERT encoder layer (Appendix A): six spiking populations, their block simulation
and their equilibrium map (Eq. 4). The model (:mod:`stpcore.snn.model`) stacks these layers.

Shapes: simulation blocks are ``[t, B, N, width]`` (t steps of a ``time_chunk`` block), rates
``[B, N, width]``. Populations of pruned units are simulated compact (kept units only).

Simulation dtypes ``dt``: fp32 (the exact reference path: :meth:`SpikingEncoderLayer.attend`, the
unfused LayerNorm); bf16/fp16 (:data:`LOW_PRECISION`: weights, currents and spikes in ``dt``, a
fused attention kernel and, on CUDA, the fused LayerNorm-LIF kernel); int8 (1-bit models only:
int8 spikes, integer synaptic products, :mod:`stpcore.snn.integer`; everything real-valued in
fp32: on CPU as the fp32 path, on CUDA through the split-bf16 attention kernel
(:mod:`stpcore.snn.spike_attention`, as accurate as fp32) and the fused LayerNorm-LIF kernel in
fp32, :func:`fused_kernels`); float64 (a reference that measures the others' rounding: all of fp32's steps in float64).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import SpikingBertConfig
from .integer import INT_DTYPE, compute_currents, fire_linear, split_binary
from .kernels import fused_norm_lif_scan
from .lif import equilibrium_rate, lif_scan, use_fused_lif
from .quant import QuantLinear
from .spike_attention import attention_mode, spike_attention, use_spike_attention

#: The six spiking populations of an encoder layer, in simulation order (Appendix A).
POPULATIONS = ("key", "value", "attention", "attention_output", "intermediate", "output")

#: Each population's presynaptic populations (where "input" is the layer input), Eq. 11's sources.
PRESYNAPTIC = {"key": ("input",), "value": ("input",), "attention": ("input", "key", "value"),
               "attention_output": ("attention", "input"), "intermediate": ("attention_output",),
               "output": ("intermediate", "attention_output")}

#: Simulation dtypes that round currents and spikes to 16 bits and take the fused kernels.
LOW_PRECISION = (torch.bfloat16, torch.float16)

#: Every simulation dtype (the module docstring says what each does).
SIM_DTYPES = (torch.float32, *LOW_PRECISION, INT_DTYPE, torch.float64)


def check_sim_dtype(dtype, name: str = "dtype", fn: str = "simulate") -> None:
    """Raise a ValueError naming ``name`` unless ``dtype`` is one of :data:`SIM_DTYPES` (another
    dtype, e.g. int32, would truncate the weights without a word)."""
    if not isinstance(dtype, torch.dtype) or dtype not in SIM_DTYPES:
        raise ValueError(f"{fn}: `{name}` must be one of {', '.join(map(str, SIM_DTYPES))}; "
                         f"got {dtype!r}")


#: Kept intermediate neurons are padded to a multiple of this many units (by simulation dtype,
#: else 8) with units that never fire, so that rows stay 16-byte aligned for the tensor cores:
#: int8 spikes need 16 (Triton vectorises its int8 loads only then); float dtypes keep 8.
ALIGN = {INT_DTYPE: 16}


def spike_dtype(name: str, dt) -> torch.dtype:
    """The dtype population ``name``'s spikes are kept in when simulating in ``dt``: ``dt``, but
    in the integer path with PyTorch's attention (``STP_INT_ATTENTION=sdpa``) Key and Value
    spikes are fp32, the dtype of that attention, which alone reads them (written so by their
    kernel instead of cast there: 0/1 are exact in both). The integer path's own attention
    (:mod:`stpcore.snn.spike_attention`) reads them as int8."""
    sdpa = dt == INT_DTYPE and name in ("key", "value") and attention_mode() == "sdpa"
    return torch.float32 if sdpa else dt


def fused_kernels(dt, x: torch.Tensor) -> bool:
    """Whether a simulation in ``dt`` on ``x``'s device takes the fused LayerNorm-LIF kernel (and,
    for the integer path, a fused attention kernel: :meth:`SpikingEncoderLayer.context`;
    bf16/fp16 take fused attention on every device): CUDA with triton (``STP_FUSED_LIF``), dt bf16, fp16 or int8."""
    cuda = x.is_cuda and use_fused_lif(x.device)
    return cuda and (dt in LOW_PRECISION or dt == INT_DTYPE)


def population_counts(counts: dict | None, name: str, shape, device) -> torch.Tensor | None:
    """Population ``name``'s spike counts in ``counts`` (a dict the simulation keeps, or None:
    no counting), created as fp32 zeros ``shape`` on first use; the LIF functions add each
    block's spikes to it (their ``counts`` argument)."""
    if counts is None:
        return None
    if name not in counts:
        counts[name] = torch.zeros(shape, dtype=torch.float32, device=device)
    return counts[name]


def _out_shape(x: torch.Tensor, lin: tuple) -> tuple:
    """The state shape ``[..., out]`` of the population that ``lin`` (a float ``(weight, bias)``
    or a :class:`~stpcore.snn.integer.BinaryLinear`, ``[out, in]`` first in both) drives from
    ``x [t, ..., in]``."""
    return (*x.shape[1:-1], lin[0].shape[0])


def _remake(parts: tuple, items) -> tuple:
    """``items`` as the kind of tuple ``parts`` is: a :class:`~stpcore.snn.integer.BinaryLinear`
    ``(signs, alpha, bias)`` or a float ``(weight, bias)``."""
    return parts._make(items) if hasattr(parts, "_make") else tuple(items)


def _attach(value: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Forward value ``value`` (the simulated rate), gradient of ``f`` (the equilibrium map)."""
    return value + (f - f.detach())


class SpikingEncoderLayer(nn.Module):
    """One encoder layer of six LIF populations (:data:`POPULATIONS`), each run by Eq. 1-3
    (``u[t] = gamma u[t-1] + I[t] - V_th s[t-1]``, ``s[t] = H(u[t] - V_th)``) on a current of
    the *same* step's presynaptic spikes (:data:`PRESYNAPTIC`; "input" is the layer input):
    Key and Value ``W s_in[t]``; attention, Query ``W s_in[t]`` (real-valued) against Key spikes,
    probabilities times Value spikes; attention output ``LN(W s_attn[t] + s_in[t])``;
    intermediate ``W s_ao[t]``; output ``LN(W s_inter[t] + s_ao[t])``.

    Shapes: spikes and currents ``[T, B, N, width]`` (a block of ``T`` = ``time_chunk`` steps,
    time first), membrane state ``[B, N, width]``, rates ``[B, N, width]``; width D (hidden) or
    F (intermediate), compact (kept units only) where heads or neurons are pruned.
    :meth:`simulate_block` runs the six populations over one block in order,
    :meth:`population_block` one population (the sequential executor), :meth:`equilibrium` the
    Eq. 4 map on rates."""

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

    def weights(self, dtype, head_cols=None, neurons=None, prune_kv=True) -> dict:
        """Effective weights and biases in ``dtype``: ``{name: (weight [out, in], bias [out])}``,
        or for ``dtype`` int8 ``{name: BinaryLinear}`` (sign matrices and fp64 scales and biases
        read off the layers, :func:`stpcore.snn.integer.split_binary`; ValueError unless every
        layer is 1-bit). With
        the kept heads' hidden columns ``head_cols`` (:meth:`head_columns`) and kept ``neurons``
        (index tensors; None = all) the pruned units' rows and columns are dropped: Query (and,
        with ``prune_kv``, Key and Value) rows and attention-output columns of pruned heads,
        intermediate rows and output columns of pruned neurons. The kept neurons are padded to a
        multiple of :data:`ALIGN` with zero weights (and scales) and a bias of -inf."""
        names = ("query", "key", "value", "attention_output", "intermediate", "output")
        if dtype == INT_DTYPE and not all(getattr(self, n).binary for n in names):
            raise ValueError(f"`sim_dtype` {INT_DTYPE} (integer synaptic products) needs 1-bit "
                             f"weights (set_binary_weights(True)); this model's are full "
                             f"precision: use float32, bfloat16 or float16")
        w = {n: split_binary(getattr(self, n)) if dtype == INT_DTYPE else
             (getattr(self, n).effective_weight().to(dtype), getattr(self, n).bias.to(dtype))
             for n in names}
        if head_cols is not None:
            for n in ("query", "key", "value") if prune_kv else ("query",):
                w[n] = _remake(w[n], (t[head_cols] for t in w[n]))
            ao = w["attention_output"]
            w["attention_output"] = _remake(ao, (ao[0][:, head_cols], *ao[1:]))
        if neurons is not None:     # padded (ALIGN) with units that never fire
            inter, out = w["intermediate"], w["output"]
            pad = -len(neurons) % ALIGN.get(dtype, 8)
            fills = (*([0.0] * (len(inter) - 2)), -math.inf)    # [alpha], bias
            w["intermediate"] = _remake(inter, (
                torch.cat([inter[0][neurons], inter[0].new_zeros(pad, inter[0].shape[1])]),
                *(torch.cat([v[neurons], v.new_full((pad,), f)]) for v, f in zip(inter[1:], fills))))
            w["output"] = _remake(out, (torch.cat([out[0][:, neurons],
                                                   out[0].new_zeros(out[0].shape[0], pad)], 1), *out[1:]))
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

    def context(self, q_in, k, v, ext_mask, fused: bool = False):
        """The attention context of the simulation. fp32 (and float64): :meth:`attend` (exact, as
        the reference loop). ``fused`` (the integer path on CUDA, fp32 queries): the split-bf16
        tensor-core kernel :func:`stpcore.snn.spike_attention.spike_attention` (as accurate as
        fp32) where it applies, else, as for bf16/fp16, PyTorch's fused
        scaled-dot-product-attention kernel (softmax in fp32 inside it, no ``[N, N]`` tensor in
        memory). Both round differently from :meth:`attend`. Key and value spikes are taken in
        the queries' dtype (int8 spikes of the integer path: fp32)."""
        if fused and q_in.dtype == torch.float32 and use_spike_attention(q_in, self.head_size):
            return spike_attention(q_in, k, v, ext_mask, self.head_size)
        k, v = k.to(q_in.dtype), v.to(q_in.dtype)
        if q_in.dtype not in LOW_PRECISION and not fused:
            return self.attend(q_in, k, v, ext_mask)[0]
        *lead, n, width = q_in.shape
        if width == 0:                  # every head of the layer pruned: an empty population
            return q_in
        split = lambda x: x.reshape(-1, n, width // self.head_size, self.head_size).transpose(1, 2)
        mask = ext_mask.to(q_in.dtype).expand(*lead[:-1], *ext_mask.shape).reshape(-1, 1, 1, n)
        ctx = nn.functional.scaled_dot_product_attention(split(q_in), split(k), split(v), mask)
        return ctx.transpose(1, 2).reshape(q_in.shape)

    @staticmethod
    def residual_norm(ln: nn.LayerNorm, current, residual):
        """LayerNorm(current + residual) in fp32 (for fp32 currents exactly as the reference
        loop; bf16/fp16 currents are summed with the residual in fp32; int8 spikes are added
        exactly), or in float64 for float64 currents."""
        acc = torch.promote_types(current.dtype, torch.float32)
        return nn.functional.layer_norm(current.to(acc) + residual, ln.normalized_shape,
                                        ln.weight.to(acc), ln.bias.to(acc), ln.eps)

    def simulate_block(self, s_in, w, ext_mask, state, vth, leak, kv_cols, dt, counts=None):
        """Simulate all six populations over a block of steps. ``s_in``: ``[t, B, N, D]``.

        ``counts``: None, or a dict in which each population's spikes are counted across blocks
        (:func:`population_counts`: ``{name: fp32 [B, N, width]}``), by the kernels that write
        them where they can (no second pass over the spikes).

        ``w`` comes from :meth:`weights`; ``kv_cols`` are the kept heads' columns to take from
        whole Key and Value weights (None: all heads kept, or Key and Value already pruned in
        ``w``). Populations of pruned units come out compact (kept units only). Every linear
        layer here is driven by spikes (``s_in`` and this layer's populations), so with ``dt``
        int8 all six are integer products."""
        lin = lambda x, n: compute_currents(x, w[n])     # currents in dt (int8: fp32); LIF fp32
        s_dt = s_in.to(dt)
        fused = fused_kernels(dt, s_in)
        out = {}

        count = lambda name, shape: population_counts(counts, name, shape, s_in.device)

        def fire(name, current):        # spikes in dt: 0/1 are exact
            out[name], state[name] = lif_scan(current, vth, leak, state.get(name), spike_dtype=dt,
                                              counts=count(name, current.shape[1:]))
            return out[name]

        def fire_lin(name, x):          # the integer path on CUDA: product and LIF in one kernel
            out[name], state[name] = fire_linear(x, w[name], vth, leak, state.get(name),
                                                 spike_dtype(name, dt),
                                                 count(name, _out_shape(x, w[name])))
            return out[name]

        def fire_norm(name, ln, current, residual):     # fused: one kernel
            if fused:
                out[name], state[name] = fused_norm_lif_scan(
                    current, residual, ln, vth, leak, state.get(name), spike_dtype=dt,
                    counts=count(name, current.shape[1:]))
            else:
                fire(name, self.residual_norm(ln, current, residual))

        fire_lin("key", s_dt)
        fire_lin("value", s_dt)
        k, v = out["key"], out["value"]
        if kv_cols is not None:
            k, v = k[..., kv_cols], v[..., kv_cols]
        fire("attention", self.context(lin(s_dt, "query"), k, v, ext_mask, fused))
        fire_norm("attention_output", self.ln_attention,
                  lin(out["attention"], "attention_output"), s_in)
        fire_lin("intermediate", out["attention_output"])
        fire_norm("output", self.ln_output, lin(out["intermediate"], "output"),
                  out["attention_output"])
        return out

    def population_block(self, name, s, w, ext_mask, state, vth, leak, kv_cols, dt, counts=None):
        """Simulate one population over a block of steps from its presynaptic spikes ``s``
        (``{"input": [t, B, N, D], population: [t, B, N, width]}``; see :data:`PRESYNAPTIC`),
        as :meth:`simulate_block` would (``counts`` too); returns its spikes
        ``[t, B, N, width]`` in ``dt``."""
        lin = lambda x, n: compute_currents(x.to(dt), w[n])
        first = next(iter(s.values()))
        fused = fused_kernels(dt, first)
        count = lambda shape: population_counts(counts, name, shape, first.device)
        if name in ("key", "value", "intermediate"):
            pre = s["attention_output" if name == "intermediate" else "input"].to(dt)
            spikes, state[name] = fire_linear(pre, w[name], vth, leak, state.get(name),
                                              spike_dtype(name, dt),
                                              count(_out_shape(pre, w[name])))
            return spikes
        elif name == "attention":
            k, v = s["key"], s["value"]
            if kv_cols is not None:
                k, v = k[..., kv_cols], v[..., kv_cols]
            current = self.context(lin(s["input"], "query"), k, v, ext_mask, fused)
        else:
            pre, residual, ln = (("attention", "input", self.ln_attention)
                                 if name == "attention_output" else
                                 ("intermediate", "attention_output", self.ln_output))
            current, res = lin(s[pre], name), s[residual]    # 0/1 spikes: exact in any dtype
            if fused:
                spikes, state[name] = fused_norm_lif_scan(current, res, ln, vth, leak,
                                                          state.get(name), spike_dtype=dt,
                                                          counts=count(current.shape[1:]))
                return spikes
            current = self.residual_norm(ln, current, res)
        spikes, state[name] = lif_scan(current, vth, leak, state.get(name), spike_dtype=dt,
                                       counts=count(current.shape[1:]))
        return spikes

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
