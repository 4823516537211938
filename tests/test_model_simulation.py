"""SpikingBERT's forward simulation: invariants, head and neuron masks, and Eq. 11's sequential
executor against the unrolled one."""
import pytest
import torch
from torch import nn

from stpcore.prune.acs import POPULATIONS
from stpcore.snn.lif import lif_scan
from stpcore.snn.model import Simulation

from conftest import TINY, make_batch, make_tiny_model, simulate


def same_rates(a: Simulation, b: Simulation) -> bool:
    return torch.equal(a.embedding_rate, b.embedding_rate) and all(
        torch.equal(ra[p], rb[p]) for ra, rb in zip(a.rates, b.rates) for p in POPULATIONS)


# ---- the fixture is not vacuous ---------------------------------------------------------------
def test_fixture_populations_are_active(tiny_model, tiny_batch):
    sim = simulate(tiny_model, tiny_batch)
    rates = [sim.population_rates["embedding"], *sum(sim.population_rates["layers"], [])]
    assert all(0.1 < r < 0.9 for r in rates), rates
    assert sim.timesteps == [12, 12] and sim.num_tokens == 3 * 7 - 2
    for layer in sim.rates:
        for p in POPULATIONS:
            r = layer[p]
            # rates are spike counts over T = 12
            assert torch.equal(torch.round(r * 12), (r * 12).round(decimals=4))
            assert r.min() >= 0 and r.max() <= 1


# ---- simulation invariants --------------------------------------------------------------------
def test_time_chunk_does_not_change_rates(tiny_model, tiny_batch):
    sims = []
    for chunk in (1, 5, 12, 100):
        tiny_model.config.time_chunk = chunk
        sims.append(simulate(tiny_model, tiny_batch, record_traces=True))
    for other in sims[1:]:
        assert same_rates(sims[0], other)
        assert all(torch.equal(a, b) for a, b in zip(sims[0].traces, other.traces))
    assert [t.shape for t in sims[0].traces] == [torch.Size([12, 16])] * 2


def test_explicit_all_ones_masks_equal_no_masks(tiny_model, tiny_batch):
    inputs = {k: tiny_batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    ref = tiny_model(**inputs, implicit=True)
    bert = tiny_model.spiking_bert
    bert.set_masks(torch.ones(2, 4), torch.ones(2, 32))
    assert bert.config.head_mask == [[1] * 4] * 2
    out = tiny_model(**inputs, implicit=True)
    assert same_rates(ref.simulation, out.simulation)
    assert torch.equal(ref.logits, out.logits)
    # and passing all-ones soft masks to the gradient pass changes nothing either
    out2 = tiny_model(**inputs, implicit=True, head_mask=torch.ones(2, 4),
                      neuron_mask=torch.ones(2, 32))
    assert torch.equal(ref.logits, out2.logits)


def test_zero_head_mask_silences_that_head_only(tiny_model, tiny_batch):
    ref = simulate(tiny_model, tiny_batch)
    head_mask = torch.ones(2, 4)
    head_mask[1, 2] = 0                        # layer 2, head 3 (head size 4: features 8..11)
    tiny_model.spiking_bert.set_masks(head_mask, None)
    sim = simulate(tiny_model, tiny_batch)
    att = sim.rates[1]["attention"]
    assert ref.rates[1]["attention"][..., 8:12].sum() > 0          # it was active
    assert torch.all(att[..., 8:12] == 0)
    assert torch.equal(att[..., :8], ref.rates[1]["attention"][..., :8])
    assert torch.equal(att[..., 12:], ref.rates[1]["attention"][..., 12:])
    # everything upstream of the masked population is unchanged
    assert torch.equal(sim.embedding_rate, ref.embedding_rate)
    assert all(torch.equal(sim.rates[0][p], ref.rates[0][p]) for p in POPULATIONS)
    for p in ("key", "value"):        # the pruned head's Key and Value are skipped
        assert torch.all(sim.rates[1][p][..., 8:12] == 0)
        assert torch.equal(sim.rates[1][p][..., :8], ref.rates[1][p][..., :8])
        assert torch.equal(sim.rates[1][p][..., 12:], ref.rates[1][p][..., 12:])
    # ... and downstream sees the change
    assert not torch.equal(sim.rates[1]["output"], ref.rates[1]["output"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_layer_with_every_head_and_neuron_pruned_still_simulates(tiny_model, tiny_batch, dtype):
    """Learned masks can prune all heads (or all neurons) of a layer: its attention and
    intermediate populations are then empty, and the sublayers after them see biases only."""
    head_mask, neuron_mask = torch.ones(2, 4), torch.ones(2, TINY["intermediate_size"])
    head_mask[1], neuron_mask[0] = 0, 0
    tiny_model.spiking_bert.set_masks(head_mask, neuron_mask)
    sim = simulate(tiny_model, tiny_batch, dtype=dtype)
    assert sim.rates[1]["attention"].abs().sum() == 0
    assert sim.rates[0]["intermediate"].abs().sum() == 0
    assert torch.isfinite(sim.rates[1]["output"]).all() and sim.rates[1]["output"].sum() > 0


def test_neuron_mask_silences_intermediate_neurons(tiny_model, tiny_batch):
    neuron_mask = torch.ones(2, 32)
    neuron_mask[0, ::3] = 0
    tiny_model.spiking_bert.set_masks(None, neuron_mask)
    sim = simulate(tiny_model, tiny_batch)
    assert torch.all(sim.rates[0]["intermediate"][..., ::3] == 0)
    assert sim.rates[0]["intermediate"][..., 1::3].sum() > 0


def _zero_input_block(layer, steps=6):
    D = layer.query.in_features
    s_in = torch.zeros(steps, 2, 3, D)
    ext = torch.zeros(2, 1, 1, 3)
    return layer.simulate_block(s_in, layer.weights(torch.float32), ext, {}, torch.tensor(0.5),
                                1.0, None, torch.float32)


def test_zero_input_spikes_give_bias_only_currents(tiny_model):
    layer = tiny_model.spiking_bert.layers[0]
    out = _zero_input_block(layer)
    # key/value currents are exactly the biases: a constant-current LIF train
    for name in ("key", "value"):
        bias = getattr(layer, name).bias.detach()
        expected, _ = lif_scan(bias.expand(6, 2, 3, -1).contiguous(), 0.5)
        assert torch.equal(out[name], expected)
        assert out[name].sum() > 0                     # some biases exceed V_th / 6


def test_zero_input_and_zero_biases_are_silent(tiny_model):
    layer = tiny_model.spiking_bert.layers[0]
    with torch.no_grad():
        for m in layer.modules():
            if isinstance(m, (nn.Linear, nn.LayerNorm)):
                m.bias.zero_()
    out = _zero_input_block(layer)
    for p in POPULATIONS:
        assert out[p].shape == (6, 2, 3, 16 if p != "intermediate" else 32)
        assert out[p].sum() == 0, p


# ---- Eq. 11: the sequential executor ------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 7, 16), (2, 5, 32)])
def test_bernoulli_input_spike_rate_matches_probability(shape):
    """stpcore's draw for Eq. 11 (:func:`stpcore.snn.bernoulli.draw_bernoulli`, on this device):
    spikes [T, *shape] whose per-neuron rate is the given probability."""
    from stpcore.snn.bernoulli import draw_bernoulli
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(shape, generator=gen)
    T = 400
    s = draw_bernoulli(p, T, torch.float32, gen)
    assert s.shape == (T, *shape) and s.dtype == torch.float32
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    sigma = (p * (1 - p) / T).sqrt()
    assert torch.all((s.mean(0) - p).abs() <= 4 * sigma + 1e-6)
    # the draws are independent across steps (the expand() view is not shared randomness)
    assert not torch.equal(s[0], s[1])


def test_sequential_inputs_are_bernoulli_at_previous_layer_asr(monkeypatch):
    """Eq. 11: layer 2's Key population is driven by Bernoulli spikes whose per-neuron
    probability is layer 1's output ASR (record its input spikes, compare their rate)."""
    T = 600
    model, batch = make_tiny_model(timesteps=T, time_chunk=64), make_batch()
    layer = model.spiking_bert.layers[1]
    seen = []
    real = layer.population_block

    def spy(name, s, *args):
        if name == "key":
            seen.append(s["input"].clone())
        return real(name, s, *args)

    monkeypatch.setattr(layer, "population_block", spy)
    sim = simulate(model, batch, executor="sequential", generator=torch.Generator().manual_seed(0))
    s_in = torch.cat(seen)
    assert s_in.shape == (T, 3, 7, 16) and set(s_in.unique().tolist()) <= {0.0, 1.0}
    p = sim.rates[0]["output"]
    sigma = (p * (1 - p) / T).sqrt()
    assert torch.all((s_in.mean(0) - p).abs() <= 4.5 * sigma + 1e-6)
    # on average |error| ~ 0.8 sigma for an unbiased estimate; a biased probability fails this
    assert (s_in.mean(0) - p).abs().mean() < 1.2 * sigma.mean()
    # deterministic neurons (rate 0 or 1) get deterministic inputs
    assert torch.equal(s_in[:, p == 1], torch.ones_like(s_in[:, p == 1]))
    assert torch.all(s_in[:, p == 0] == 0)


def _layer2_gap(T, seeds=(0, 1, 2)):
    model, batch = make_tiny_model(timesteps=T, time_chunk=50), make_batch()
    unrolled = simulate(model, batch, executor="unrolled")
    gaps = []
    for seed in seeds:
        seq = simulate(model, batch, executor="sequential",
                       generator=torch.Generator().manual_seed(seed))
        # the embedding population is deterministic in both executors; every other population
        # runs on Bernoulli samples of its presynaptic ASRs (population by population)
        assert torch.equal(seq.embedding_rate, unrolled.embedding_rate)
        gaps.append(torch.stack([(seq.rates[l][p] - unrolled.rates[l][p]).abs().mean()
                                 for l in range(2) for p in POPULATIONS]).mean())
    return float(torch.stack(gaps).mean())


def test_sequential_executor_matches_unrolled_as_T_grows():
    short, long = _layer2_gap(25), _layer2_gap(400)
    assert 0 < long < 0.5 * short
    assert long < 0.02


def test_sequential_executor_with_non_uniform_timesteps(tiny_model, tiny_batch):
    tiny_model.spiking_bert.set_layer_timesteps([12, 5])
    sim = simulate(tiny_model, tiny_batch, record_traces=True)      # default: sequential
    assert sim.timesteps == [12, 5]
    assert [t.shape[0] for t in sim.traces] == [12, 5]
    r = sim.rates[1]["output"]
    assert torch.equal(torch.round(r * 5), (r * 5).round(decimals=4))      # multiples of 1/5
    g = lambda: torch.Generator().manual_seed(7)
    assert same_rates(simulate(tiny_model, tiny_batch, generator=g()),
                      simulate(tiny_model, tiny_batch, generator=g()))


def test_unrolled_executor_rejects_non_uniform_timesteps(tiny_model, tiny_batch):
    tiny_model.spiking_bert.set_layer_timesteps([12, 6])
    with pytest.raises(ValueError, match="executor"):
        simulate(tiny_model, tiny_batch, executor="unrolled")
    with pytest.raises(ValueError, match="executor"):
        simulate(tiny_model, tiny_batch, executor="parallel")


@pytest.mark.parametrize("dtype, align", [(torch.float32, 8), (torch.int8, 16)])
def test_kept_neurons_are_padded_to_align_with_units_that_never_fire(dtype, align):
    """Spatially pruned weights keep every width a multiple of ALIGN (int8: 16, else 8): the kept
    intermediate rows (and output columns) in order, then zero weights with a bias of -inf."""
    from stpcore.snn.layer import ALIGN
    assert ALIGN.get(dtype, 8) == align
    model = make_tiny_model(intermediate_size=40)
    model.spiking_bert.set_binary_weights(True)
    layer = model.spiking_bert.layers[0]
    neurons = torch.arange(0, 40, 2)                # 20 of 40 kept: 24 units in fp32, 32 in int8
    as_float = lambda w: w if dtype != torch.int8 else (w.alpha[:, None] * w.signs, w.bias)
    w = {n: as_float(v) for n, v in layer.weights(dtype, None, neurons).items()}
    full = {n: as_float(v) for n, v in layer.weights(dtype).items()}
    (wi, bi), (wo, bo) = w["intermediate"], w["output"]
    k = len(neurons)
    assert wi.shape[0] == bi.shape[0] == wo.shape[1] == -(-k // align) * align > k
    assert torch.equal(wi[:k], full["intermediate"][0][neurons])
    assert torch.equal(wo[:, :k], full["output"][0][:, neurons]) and torch.equal(bo, full["output"][1])
    assert (wi[k:] == 0).all() and (wo[:, k:] == 0).all() and torch.isneginf(bi[k:]).all()
