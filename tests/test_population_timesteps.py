"""Temporal pruning at sublayer granularity: per-population timesteps in the config, the
population-by-population Bernoulli executor (Eq. 11), AC counting with a t per sublayer
(Appendix B, Eq. 14-21), Eq. 10 over all spiking populations and the latency over them."""
import math
import tempfile

import pytest
import torch

from stpcore.prune import acs
from stpcore.prune.acs import POPULATIONS, count_acs, count_synaptic_acs, normalized_c
from stpcore.prune.retrain import measure_traces, reallocate_timesteps
from stpcore.prune.temporal import (READINGS, allocate_timesteps, flatten_populations,
                                    mean_latency, population_components,
                                    prune_population_timesteps, unflatten_populations)
from stpcore.snn.config import SpikingBertConfig
from stpcore.snn.model import SpikingBertForSequenceClassification

from conftest import TINY, make_batch, make_tiny_model

POP_T = {"embedding": 7, "layers": [[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]]}


def simulate(model, batch, **kw):
    return model.spiking_bert.simulate(batch["input_ids"], batch["attention_mask"],
                                       batch["token_type_ids"], **kw)


# ---- configuration ----------------------------------------------------------------------------
def test_config_population_timesteps_properties_and_round_trip():
    cfg = SpikingBertConfig(**{**TINY, "population_timesteps": POP_T})
    assert cfg.per_population_timesteps == POP_T
    assert cfg.per_layer_timesteps == [6, 6]                      # per-layer max
    assert not cfg.uniform_timesteps
    layer = SpikingBertConfig(**{**TINY, "layer_timesteps": [12, 3]})
    assert layer.per_population_timesteps == {"embedding": 12, "layers": [[12] * 6, [3] * 6]}
    plain = SpikingBertConfig(**TINY)
    assert plain.per_population_timesteps == {"embedding": 12, "layers": [[12] * 6] * 2}
    assert plain.uniform_timesteps
    # uniform over all populations, the embedding included
    emb_only = {"embedding": 5, "layers": [[12] * 6] * 2}
    assert not SpikingBertConfig(**{**TINY, "population_timesteps": emb_only}).uniform_timesteps
    model = make_tiny_model()
    model.spiking_bert.set_population_timesteps(POP_T)
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        loaded = SpikingBertForSequenceClassification.from_pretrained(d)
    assert loaded.config.population_timesteps == POP_T and loaded.config.layer_timesteps is None


@pytest.mark.parametrize("bad", [
    {"embedding": 7.0, "layers": POP_T["layers"]},                       # float
    {"embedding": True, "layers": POP_T["layers"]},                      # bool
    {"embedding": "7", "layers": POP_T["layers"]},                       # string
    {"embedding": 7, "layers": [[1, 2, 3, 4, 5]] * 2},                   # 5 per layer
    {"embedding": 7, "layers": [[1] * 6]},                               # 1 layer of 2
    {"embedding": 7, "layers": [[1, 2, 3, 0, 5, 6], [1] * 6]},           # < 1
    {"embedding": 0, "layers": [[1] * 6] * 2},
    {"layers": [[1] * 6] * 2},                                           # no embedding
    [[1] * 6] * 2,
])
def test_config_rejects_bad_population_timesteps(bad):
    with pytest.raises(ValueError, match="`population_timesteps` must be None or"):
        SpikingBertConfig(**{**TINY, "population_timesteps": bad})


def test_at_most_one_granularity_and_setters_clear_each_other():
    with pytest.raises(ValueError, match="`population_timesteps`.*at most one"):
        SpikingBertConfig(**{**TINY, "layer_timesteps": [12, 3], "population_timesteps": POP_T})
    bert = make_tiny_model().spiking_bert
    bert.set_layer_timesteps([12, 3])
    bert.set_population_timesteps(POP_T)
    assert bert.config.layer_timesteps is None and bert.config.population_timesteps == POP_T
    with pytest.raises(ValueError, match="`population_timesteps`"):
        bert.set_population_timesteps({"embedding": 1, "layers": [[1] * 6]})
    assert bert.config.population_timesteps == POP_T                     # unchanged on error
    bert.set_layer_timesteps([12, 3])
    assert bert.config.population_timesteps is None and bert.config.layer_timesteps == [12, 3]


# ---- the population-by-population executor ------------------------------------------------------
def test_uniform_population_timesteps_run_the_unrolled_executor_bit_identically():
    model, batch = make_tiny_model(), make_batch()
    ref = simulate(model, batch, record_traces=True)
    model.spiking_bert.set_population_timesteps({"embedding": 12, "layers": [[12] * 6] * 2})
    sim = simulate(model, batch, record_traces=True)
    assert torch.equal(sim.embedding_rate, ref.embedding_rate)
    assert all(torch.equal(a[p], b[p]) for a, b in zip(sim.rates, ref.rates) for p in POPULATIONS)
    assert all(torch.equal(a, b) for a, b in zip(sim.traces, ref.traces))


def test_layer_granularity_is_the_population_executor_with_equal_steps():
    model, batch = make_tiny_model(), make_batch()
    g = lambda: torch.Generator().manual_seed(3)
    model.spiking_bert.set_layer_timesteps([12, 5])
    a = simulate(model, batch, generator=g())
    model.spiking_bert.set_population_timesteps({"embedding": 12, "layers": [[12] * 6, [5] * 6]})
    b = simulate(model, batch, generator=g())
    assert all(torch.equal(x[p], y[p]) for x, y in zip(a.rates, b.rates) for p in POPULATIONS)


def test_each_population_runs_its_own_steps():
    model, batch = make_tiny_model(), make_batch()
    model.spiking_bert.set_population_timesteps(POP_T)
    sim = simulate(model, batch, record_traces=True, generator=torch.Generator().manual_seed(0))
    assert sim.population_timesteps == POP_T
    r = sim.embedding_rate * 7
    assert torch.equal(r.round(), r.round(decimals=4))
    assert sim.population_traces["embedding"].shape == (7, 3, 16)
    for l, row in enumerate(POP_T["layers"]):
        for p, t in zip(POPULATIONS, row):
            r = sim.rates[l][p] * t                            # spike counts over t steps
            assert torch.equal(r.round(), r.round(decimals=4)), (l, p)
            assert sim.population_traces["layers"][l][p].shape[0] == t
    assert [tr.shape[0] for tr in sim.traces] == [6, 1]       # output populations' steps
    # the output population of layer 1 ran 6 steps: some rate is not a multiple of 1/5
    r5 = sim.rates[0]["output"] * 5
    assert not torch.equal(r5.round(), r5.round(decimals=4))


def test_population_inputs_are_bernoulli_at_their_presynaptic_asrs(monkeypatch):
    """Every population of layer 2 receives, at each of its own steps, Bernoulli spikes whose
    empirical rate matches its presynaptic populations' ASRs (measured over their own steps)."""
    steps = {"embedding": 300, "layers": [[300] * 6, [400, 350, 300, 250, 200, 450]]}
    model, batch = make_tiny_model(time_chunk=64), make_batch()
    model.spiking_bert.set_population_timesteps(steps)
    layer = model.spiking_bert.layers[1]
    seen, real = {}, layer.population_block

    def spy(name, s, *args):
        for pre, x in s.items():
            seen.setdefault((name, pre), []).append(x.clone())
        return real(name, s, *args)

    monkeypatch.setattr(layer, "population_block", spy)
    sim = simulate(model, batch, generator=torch.Generator().manual_seed(0))
    expected_pre = {"key": {"input"}, "value": {"input"}, "attention": {"input", "key", "value"},
                    "attention_output": {"attention", "input"},
                    "intermediate": {"attention_output"},
                    "output": {"intermediate", "attention_output"}}
    assert {k for k in seen} == {(n, p) for n, pres in expected_pre.items() for p in pres}
    for (name, pre), blocks in seen.items():
        s_in = torch.cat(blocks)
        t = steps["layers"][1][POPULATIONS.index(name)]
        assert s_in.shape[0] == t and set(s_in.unique().tolist()) <= {0.0, 1.0}
        p = sim.rates[0]["output"] if pre == "input" else sim.rates[1][pre]
        sigma = (p * (1 - p) / t).sqrt()
        err = (s_in.mean(0) - p).abs()
        assert torch.all(err <= 4.5 * sigma + 1e-6), (name, pre)
        assert err.mean() < 1.2 * sigma.mean(), (name, pre)
        assert torch.all(s_in[:, p == 0] == 0)


def test_population_executor_keeps_pruned_units_silent():
    model, batch = make_tiny_model(), make_batch()
    bert = model.spiking_bert
    hm, nm = torch.ones(2, 4), torch.ones(2, 32)
    hm[1, 2] = 0
    nm[0, :5] = 0
    bert.set_masks(hm, nm)
    bert.set_population_timesteps(POP_T)
    sim = simulate(model, batch, generator=torch.Generator().manual_seed(1))
    assert torch.all(sim.rates[1]["attention"][..., 8:12] == 0)
    assert torch.all(sim.rates[0]["intermediate"][..., :5] == 0)
    assert sim.rates[0]["intermediate"].shape[-1] == 32


# ---- AC counting with a t per sublayer (Appendix B) ----------------------------------------------
L, D, HEADS, F, N = 2, 8, 2, 16, 3


def test_count_acs_per_sublayer_matches_hand_count():
    head = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    neuron = torch.ones(L, F)
    neuron[0, 10:] = 0
    # N D H = 96, 2 N^2 H = 72, N D = 24. Layer 1 (1 head, 10 neurons), t = 1..6:
    # Q 96*3 + K 96*1 + V 96*2 + Attn 72*3 + FC 96*4 = 1176; 10 * (24*5 + 24*6) = 2640.
    # Layer 2 (2 heads, 16 neurons), t = 6..1: 2 * (96*4 + 96*6 + 96*5 + 72*4 + 96*3) = 4032;
    # 16 * (24*2 + 24*1) = 1152.
    got = count_acs(head, neuron, POP_T, N, D, HEADS)
    assert got.item() == 1176 + 2640 + 4032 + 1152
    rows = count_synaptic_acs(head, neuron, POP_T, N, D, HEADS)
    by = {(r["layer"], r["connection"]): r for r in rows}
    assert by[(0, "query")]["timesteps"] == 3 and by[(0, "query")]["acs"] == 288
    assert by[(0, "scores")]["acs"] == 36 * 3 and by[(1, "context")]["acs"] == 2 * 36 * 4
    assert by[(1, "key")]["acs"] == 2 * 96 * 6 and by[(1, "value")]["acs"] == 2 * 96 * 5
    assert by[(0, "output")]["acs"] == 10 * 24 * 6
    assert sum(r["acs"] for r in rows) == got.item()
    # the embedding's own timesteps enter no count
    assert count_acs(head, neuron, {**POP_T, "embedding": 99}, N, D, HEADS).item() == got.item()


def test_uniform_population_timesteps_give_the_per_layer_numbers_exactly():
    gen = torch.Generator().manual_seed(0)
    head, neuron = torch.rand(L, HEADS, generator=gen), torch.rand(L, F, generator=gen)
    per_layer = [4, 2]
    pop = {"embedding": 4, "layers": [[4] * 6, [2] * 6]}
    geo = dict(seq_len=N, hidden_size=D, num_heads=HEADS)
    assert count_acs(head, neuron, pop, **geo).item() == count_acs(head, neuron, per_layer, **geo).item()
    per_head = 3 * N * D * 4 + 2 * N * N * 4 + N * D * 4
    today = sum(head[l].double().sum() * per_head * t + neuron[l].double().sum() * 2 * N * D * t
                for l, t in enumerate(per_layer))
    assert count_acs(head, neuron, pop, **geo).item() == today.item()
    assert acs.acs_fraction(head, neuron, pop, **geo, reference_timesteps=4).item() == \
        acs.acs_fraction(head, neuron, per_layer, **geo, reference_timesteps=4).item()
    rates = {"embedding": 0.3, "layers": [[0.2, 0.4, 0.5, 0.1, 0.6, 0.3]] * L}
    hard_h, hard_n = (head > 0.5).float(), (neuron > 0.5).float()
    assert normalized_c(rates, hard_h, hard_n, pop, **geo, reference_timesteps=4) == \
        normalized_c(rates, hard_h, hard_n, per_layer, **geo, reference_timesteps=4)


def test_count_acs_per_population_is_differentiable_and_validated():
    head = torch.full((L, HEADS), 0.5, requires_grad=True)
    neuron = torch.full((L, F), 0.5, requires_grad=True)
    count_acs(head, neuron, POP_T, N, D, HEADS).backward()
    # d/dh of layer 1 = Q+K+V+Attn+FC per head = 1176; of layer 2 = 2016
    assert head.grad[:, 0].tolist() == [1176.0, 2016.0]
    assert neuron.grad[:, 0].tolist() == [24 * 11.0, 24 * 3.0]
    for bad in ({"embedding": 1, "layers": [[1] * 5] * 2}, {"embedding": 1, "layers": [[0] * 6] * 2},
                {"layers": [[1] * 6] * 2}, {"embedding": 1, "layers": [["a"] * 6] * 2}):
        with pytest.raises(ValueError, match="count_acs: `layer_timesteps`"):
            count_acs(head, neuron, bad, N, D, HEADS)


def test_normalized_c_counts_each_connection_at_its_postsynaptic_steps():
    ones_h, ones_n = torch.ones(L, HEADS), torch.ones(L, F)
    geo = dict(seq_len=N, hidden_size=D, num_heads=HEADS)
    rates = {"embedding": 0.0, "layers": [[0.0] * 6, [0.0] * 6]}
    rates["layers"][0][POPULATIONS.index("intermediate")] = 0.5      # only output of layer 1
    full = count_acs(ones_h, ones_n, [4, 4], **geo).item()
    got = normalized_c(rates, ones_h, ones_n, POP_T, **geo, reference_timesteps=4)
    assert got == pytest.approx(0.5 * F * N * D * 6 / full)          # t_Output of layer 1 = 6


def test_spiking_costs_latency_is_the_mean_over_25_populations():
    model = make_tiny_model(num_hidden_layers=4, threshold=1.0)
    steps = {"embedding": 3, "layers": [[1, 2, 3, 4, 5, 6], [2] * 6, [7] * 6, [1, 1, 1, 1, 1, 12]]}
    model.spiking_bert.set_population_timesteps(steps)
    rates = {"embedding": 0.2, "layers": [[0.2] * 6] * 4}
    costs = acs.spiking_costs(model, rates, seq_len=5)
    assert costs["mean_latency"] == pytest.approx((3 + 21 + 12 + 42 + 17) / 25)
    assert costs["mean_latency"] == pytest.approx(mean_latency(steps))
    assert costs["population_timesteps"] == steps and costs["layer_timesteps"] == [6, 2, 7, 12]
    model.spiking_bert.set_layer_timesteps([4, 2, 2, 4])
    costs = acs.spiking_costs(model, rates, seq_len=5)
    assert costs["mean_latency"] == pytest.approx((4 + 6 * 12) / 25)
    model.spiking_bert.set_layer_timesteps(None)
    assert acs.spiking_costs(model, rates, seq_len=5)["mean_latency"] == 12


# ---- Eq. 10 over the populations --------------------------------------------------------------
def _rank(rank, steps=40, features=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(steps, rank, generator=gen, dtype=torch.float64) @ torch.randn(
        rank, features, generator=gen, dtype=torch.float64)


def test_allocation_over_25_populations():
    ranks = list(range(1, 26))
    flat = [_rank(r % 9 + 1, seed=i) for i, r in enumerate(ranks)]
    traces = unflatten_populations(flat)
    assert len(traces["layers"]) == 4 and flatten_populations(traces) == flat
    comps, steps = prune_population_timesteps(traces, 0.999999, 2.0, 85)
    expected_c = [r % 9 + 1 for r in ranks]
    assert flatten_populations(comps) == expected_c
    assert flatten_populations(steps) == allocate_timesteps(expected_c, 2.0, 85)
    assert max(flatten_populations(steps)) == 85 and min(flatten_populations(steps)) == 1
    assert steps["embedding"] == math.ceil(2.0 ** (2 - 9) * 85)


def test_reallocate_timesteps_at_both_granularities():
    model = make_tiny_model()
    loader = [make_batch(0), make_batch(1)]
    traces = measure_traces(model, loader, "cpu", granularity="sublayer")
    assert traces["embedding"].shape == (12, 16)
    assert [tuple(t.shape) for t in traces["layers"][0]] == [(12, 16)] * 4 + [(12, 32), (12, 16)]
    comps, steps = reallocate_timesteps(model, loader, "cpu", 0.9, 3.0, 12)
    assert model.config.population_timesteps == steps and model.config.layer_timesteps is None
    assert len(flatten_populations(steps)) == 13 and max(flatten_populations(steps)) == 12
    assert all(isinstance(c, int) and c >= 1 for c in flatten_populations(comps))
    # measured at T_conv whatever the installed timesteps, which are restored
    again = measure_traces(model, loader, "cpu", granularity="sublayer")
    assert again["embedding"].shape[0] == 12 and model.config.population_timesteps == steps
    comps, steps = reallocate_timesteps(model, loader, "cpu", 0.9, 3.0, 12, granularity="layer")
    assert model.config.layer_timesteps == steps and len(steps) == 2
    assert model.config.population_timesteps is None
    with pytest.raises(ValueError, match="`granularity`"):
        measure_traces(model, loader, "cpu", granularity="population")


def test_reallocate_timesteps_with_a_population_pruned_away():
    """A learned mask can prune every head of a layer (two-stage pruning did, on MRPC): the
    traces of that layer's attention population are then [T, 0], and Eq. 10 gives it the
    fewest timesteps (c = 1, as for a trace with zero variance) instead of failing."""
    model = make_tiny_model()
    head_mask = torch.ones(2, 4)
    head_mask[1] = 0
    model.spiking_bert.set_masks(head_mask, None)
    loader = [make_batch(0), make_batch(1)]
    traces = measure_traces(model, loader, "cpu", granularity="sublayer")
    assert traces["layers"][1][POPULATIONS.index("attention")].shape == (12, 0)
    comps, steps = reallocate_timesteps(model, loader, "cpu", 0.9, 3.0, 12)
    assert comps["layers"][1][POPULATIONS.index("attention")] == 1
    assert steps["layers"][1][POPULATIONS.index("attention")] == min(flatten_populations(steps))
    assert model.config.population_timesteps == steps


def test_population_components_readings():
    model = make_tiny_model()
    model.spiking_bert.set_layer_timesteps([12, 4])
    loader = [make_batch(0), make_batch(1)]
    out = population_components(model, loader, "cpu", 0.99)
    assert set(out) == set(READINGS)
    for reading, c in out.items():
        assert len(c["layers"]) == 2 and all(len(r) == 6 for r in c["layers"])
        assert all(isinstance(v, int) and 1 <= v <= 12 for v in flatten_populations(c))
    assert model.config.layer_timesteps == [12, 4]                          # restored
    with pytest.raises(ValueError, match="`readings`"):
        population_components(model, loader, "cpu", 0.99, readings=("bogus",))


def test_pca_every_reallocates_per_population_by_default():
    from stpcore.prune.retrain import RetrainConfig, retrain
    model = make_tiny_model()
    batches = [make_batch(0), make_batch(1)]
    cfg = RetrainConfig(epochs=1, lr=1e-4, pca_every=1, pca_base=3.0, pca_variance=0.9,
                        t_conv=12, seq_len=7)
    assert cfg.granularity == "sublayer"
    out = retrain(model, batches, cfg, "cpu", trace_loader=[make_batch(2)], progress=False)
    steps = model.config.population_timesteps
    assert steps is not None and model.config.layer_timesteps is None
    assert max(flatten_populations(steps)) == 12
    assert out["timestep_log"][-1]["population_timesteps"] == steps


def test_adaptive_scaling_scales_every_population():
    from stpcore.runs.pruning import install_timesteps, scaled
    assert scaled([85, 40, 3], 0.25) == [21, 10, 1]
    got = scaled({"embedding": 85, "layers": [[85, 40, 3, 8, 12, 2]]}, 0.25)
    assert got == {"embedding": 21, "layers": [[21, 10, 1, 2, 3, 1]]}
    model = make_tiny_model()
    install_timesteps(model, scaled(POP_T, 2.0))
    assert model.config.population_timesteps["layers"][0] == [2, 4, 6, 8, 10, 12]
    install_timesteps(model, [12, 3])
    assert model.config.layer_timesteps == [12, 3] and model.config.population_timesteps is None
