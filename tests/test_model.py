"""SpikingBERT: Eq. 4's implicit gradient, checkpoints and configuration validation."""
import math

import pytest
import torch
from torch import nn

import stpcore.snn.model as model_mod
import stpcore.snn.layer as layer_mod
from stpcore.prune.acs import POPULATIONS
from stpcore.snn.config import SpikingBertConfig
from stpcore.snn.model import Simulation, SpikingBertForSequenceClassification

from conftest import TINY, make_tiny_model, simulate


# ---- Eq. 4: the implicit gradient --------------------------------------------------------------
def _clamp(current, vth):
    return torch.clamp(current / vth, 0.0, 1.0)


def reference_fixed_point(model, batch, head_mask=None, neuron_mask=None):
    """The feedforward equilibrium map a = clamp(I(a_in) / V_th, 0, 1), written out independently
    of the library (own attention, own masking), in the model's dtype. Returns (emb, rates)."""
    bert = model.spiking_bert
    head_mask = bert.head_mask if head_mask is None else head_mask
    neuron_mask = bert.neuron_mask if neuron_mask is None else neuron_mask
    vth = bert.thresholds.clamp(min=1e-3)
    mask = batch["attention_mask"]
    dtype = bert.word_embeddings.weight.dtype
    ext = (1.0 - mask[:, None, None, :].to(dtype)) * -10000.0
    a = _clamp(bert.embed(batch["input_ids"], batch["token_type_ids"]), vth[0])
    emb, rates = a, []
    for l, layer in enumerate(bert.layers):
        v, r = vth[l], {}
        r["key"], r["value"] = _clamp(layer.key(a), v), _clamp(layer.value(a), v)
        B, N, D = a.shape
        nh, hs = layer.num_heads, D // layer.num_heads
        split = lambda t: t.reshape(B, N, nh, hs).transpose(1, 2)
        scores = split(layer.query(a)) @ split(r["key"]).transpose(-1, -2) / math.sqrt(hs)
        ctx = (torch.softmax(scores + ext, -1) @ split(r["value"])).transpose(1, 2).reshape(B, N, D)
        r["attention"] = _clamp(ctx, v) * head_mask[l].repeat_interleave(hs)
        r["attention_output"] = _clamp(layer.ln_attention(layer.attention_output(r["attention"]) + a), v)
        r["intermediate"] = _clamp(layer.intermediate(r["attention_output"]), v) * neuron_mask[l]
        r["output"] = _clamp(layer.ln_output(layer.output(r["intermediate"]) + r["attention_output"]), v)
        rates.append(r)
        a = r["output"]
    return emb, rates


def fixed_point_sim(model, batch) -> Simulation:
    with torch.no_grad():
        emb, rates = reference_fixed_point(model, batch)
    return Simulation(emb.detach(), [{p: r[p].detach() for p in POPULATIONS} for r in rates], {},
                      model.config.per_layer_timesteps, int(batch["attention_mask"].sum()))


def reference_loss(model, batch, **masks):
    _, rates = reference_fixed_point(model, batch, **masks)
    return nn.functional.cross_entropy(model.classify(rates[-1]["output"][:, 0]), batch["labels"])


def equilibrium_loss(model, batch, sim, **masks):
    hidden, _ = model.spiking_bert.equilibrium(batch["input_ids"], batch["attention_mask"],
                                               batch["token_type_ids"], sim, **masks)
    return nn.functional.cross_entropy(model.classify(hidden[-1][:, 0]), batch["labels"])


@pytest.fixture
def double_model():
    # thresholds != 1 so that a saturated value population (rate 1 everywhere) does not put the
    # attention current exactly on the clamp's kink (where autograd and central differences
    # legitimately disagree)
    return make_tiny_model(learnable_threshold=True, threshold=[1.1, 0.85]).double()


def test_library_map_has_the_reference_fixed_point(double_model, tiny_batch, monkeypatch):
    sim = fixed_point_sim(double_model, tiny_batch)
    # evaluate the library's map f itself (forward value f instead of the simulated rate)
    monkeypatch.setattr(model_mod, "_attach", lambda value, f: f)
    monkeypatch.setattr(layer_mod, "_attach", lambda value, f: f)
    hidden, _ = double_model.spiking_bert.equilibrium(
        tiny_batch["input_ids"], tiny_batch["attention_mask"], tiny_batch["token_type_ids"], sim)
    assert torch.allclose(hidden[0], sim.embedding_rate, atol=1e-12)
    for l in range(2):
        assert torch.allclose(hidden[l + 1], sim.rates[l]["output"], atol=1e-6)


def test_equilibrium_forward_value_is_the_simulated_rate(tiny_model, tiny_batch):
    sim = simulate(tiny_model, tiny_batch)
    hidden, atts = tiny_model.spiking_bert.equilibrium(
        tiny_batch["input_ids"], tiny_batch["attention_mask"], tiny_batch["token_type_ids"], sim)
    assert torch.allclose(hidden[0], sim.embedding_rate, atol=1e-6)
    for l in range(2):
        assert torch.allclose(hidden[l + 1], sim.rates[l]["output"], atol=1e-6)
    assert [a.shape for a in atts] == [torch.Size([3, 4, 7, 7])] * 2
    # the padded keys get (numerically) zero attention
    assert atts[0][2, :, :, 5:].max() < 1e-6


def test_implicit_gradient_matches_finite_differences(double_model, tiny_batch):
    model, bert = double_model, double_model.spiking_bert
    sim = fixed_point_sim(model, tiny_batch)
    loss = equilibrium_loss(model, tiny_batch, sim)
    assert loss.item() == pytest.approx(reference_loss(model, tiny_batch).item(), rel=1e-12)
    params = {"layer0.intermediate": bert.layers[0].intermediate.weight,
              "layer1.query": bert.layers[1].query.weight,
              "layer0.value": bert.layers[0].value.weight,
              "classifier.bias": model.classifier.bias,
              "thresholds": bert.thresholds}
    assert bert.thresholds.requires_grad
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    eps = 1e-6
    checked = 0
    for name, p in params.items():
        g = grads[name]
        if name == "thresholds":
            indices = [(0,), (1,)]
        elif name == "classifier.bias":
            indices = [(0,), (1,)]
        else:      # the two entries with the largest gradient (a non-vacuous comparison)
            flat = torch.topk(g.abs().flatten(), 2).indices
            indices = [tuple(int(i) for i in torch.unravel_index(j, g.shape)) for j in flat]
        for idx in indices:
            with torch.no_grad():
                old = p[idx].item()
                p[idx] = old + eps
                up = reference_loss(model, tiny_batch).item()
                p[idx] = old - eps
                down = reference_loss(model, tiny_batch).item()
                p[idx] = old
            fd = (up - down) / (2 * eps)
            assert abs(g[idx].item()) > 1e-4, (name, idx)
            assert g[idx].item() == pytest.approx(fd, rel=1e-3, abs=1e-7), (name, idx)
            checked += 1
    assert checked == 10


def test_gradient_pass_is_independent_of_T(tiny_batch):
    """The Eq. 4 pass has no time axis: for the same rates it saves exactly the same tensors and
    gives the same gradients whether the model simulates 12 or 200 steps."""
    grads, saved = {}, {}
    sim = None
    for T in (12, 200):
        model = make_tiny_model(timesteps=T, time_chunk=16)
        if sim is None:
            sim = simulate(model, tiny_batch)
        sizes = []

        def pack(t):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = equilibrium_loss(model, tiny_batch, sim)
        params = [p for p in model.parameters() if p.requires_grad]
        grads[T] = torch.autograd.grad(loss, params)
        saved[T] = sizes
    assert saved[12] == saved[200] and sum(saved[12]) > 0
    # no saved tensor carries a time axis of length 12 or 200 in front of [B, N, ...]
    assert max(saved[12]) < 12 * 3 * 7 * 16
    assert all(torch.equal(a, b) for a, b in zip(grads[12], grads[200]))
    assert any(g.abs().sum() > 0 for g in grads[12])


def test_simulated_rates_do_not_require_grad(tiny_model, tiny_batch):
    sim = simulate(tiny_model, tiny_batch)
    assert not sim.embedding_rate.requires_grad
    assert not any(r[p].requires_grad for r in sim.rates for p in POPULATIONS)


def test_float64_model_keeps_float64_attention_precision(double_model, tiny_batch):
    bert = double_model.spiking_bert
    layer = bert.layers[0]
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 7, 16, generator=gen, dtype=torch.float64)
    k = torch.rand(3, 7, 16, generator=gen, dtype=torch.float64)
    v = torch.rand(3, 7, 16, generator=gen, dtype=torch.float64)
    ext = bert.extended_mask(tiny_batch["attention_mask"]).double()
    _, probs = layer.attend(q, k, v, ext)
    split = lambda t: t.reshape(3, 7, 4, 4).transpose(1, 2)
    ref = torch.softmax(split(q) @ split(k).transpose(-1, -2) / 2.0 + ext, -1)
    assert probs.dtype == torch.float64
    assert (probs - ref).abs().max() < 1e-13


# ---- checkpoints --------------------------------------------------------------------------------
def test_save_load_round_trip_of_a_pruned_model(tmp_path, tiny_batch):
    model = make_tiny_model(learnable_threshold=True)
    bert = model.spiking_bert
    head_mask = torch.ones(2, 4)
    head_mask[0, 1] = head_mask[1, 3] = 0
    neuron_mask = torch.ones(2, 32)
    neuron_mask[1, :10] = 0
    bert.set_masks(head_mask, neuron_mask)
    bert.set_layer_timesteps([12, 6])
    with torch.no_grad():
        bert.thresholds.copy_(torch.tensor([0.9, 1.15]))
    model.save_pretrained(tmp_path)
    loaded = SpikingBertForSequenceClassification.from_pretrained(tmp_path).eval()
    lb = loaded.spiking_bert
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "timesteps", "layer_timesteps", "leak",
                "learnable_threshold", "head_mask", "neuron_mask", "binary_weights",
                "time_chunk", "num_labels"):
        assert getattr(loaded.config, key) == getattr(model.config, key), key
    assert loaded.config.layer_timesteps == [12, 6]
    assert torch.equal(lb.head_mask, head_mask) and torch.equal(lb.neuron_mask, neuron_mask)
    assert torch.equal(lb.thresholds, bert.thresholds) and lb.thresholds.requires_grad
    inputs = {k: tiny_batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    outs = []
    for m in (model, loaded):
        torch.manual_seed(123)
        outs.append(m(**inputs, implicit=False).logits)
    assert torch.equal(*outs)
    outs = []
    for m in (model, loaded):
        m.spiking_bert.set_layer_timesteps(None)
        outs.append(m(**inputs, executor="unrolled", implicit=True).logits)
    assert torch.equal(*outs)


def test_saved_config_records_learned_thresholds(tmp_path):
    model = make_tiny_model(learnable_threshold=True)
    with torch.no_grad():
        model.spiking_bert.thresholds.copy_(torch.tensor([0.9, 1.15]))
    model.save_pretrained(tmp_path)
    assert SpikingBertConfig.from_pretrained(tmp_path).threshold == pytest.approx([0.9, 1.15])


def test_base_model_save_records_learned_thresholds(tmp_path):
    bert = make_tiny_model(learnable_threshold=True).spiking_bert
    with torch.no_grad():
        bert.thresholds.copy_(torch.tensor([0.9, 1.15]))
    bert.save_pretrained(tmp_path)
    assert SpikingBertConfig.from_pretrained(tmp_path).threshold == pytest.approx([0.9, 1.15])


# ---- configuration validation -------------------------------------------------------------------
@pytest.mark.parametrize("bad, name", [
    (dict(timesteps=0), "timesteps"),
    (dict(timesteps=2.5), "timesteps"),
    (dict(threshold=0.0), "threshold"),
    (dict(threshold=-1.0), "threshold"),
    (dict(threshold=[1.0, 1.0, 1.0]), "threshold"),
    (dict(hidden_size=18), "hidden_size"),
    (dict(leak=0.0), "leak"),
    (dict(leak=1.5), "leak"),
    (dict(layer_timesteps=[12]), "layer_timesteps"),
    (dict(layer_timesteps=[12, 0]), "layer_timesteps"),
    (dict(head_mask=[[1, 1, 1, 1]]), "head_mask"),
    (dict(head_mask=[[1, 1, 1], [1, 1, 1]]), "head_mask"),
    (dict(head_mask=[[1, 1, 1, 2], [1, 1, 1, 1]]), "head_mask"),
    (dict(head_mask=[[1, 1, 1, 0.5], [1, 1, 1, 1]]), "head_mask"),
    (dict(neuron_mask=[[1] * 31, [1] * 32]), "neuron_mask"),
    (dict(time_chunk=0), "time_chunk"),
])
def test_bad_config_values_raise_naming_the_parameter(bad, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SpikingBertConfig(**{**TINY, **bad})


def test_good_config_values_are_accepted():
    cfg = SpikingBertConfig(**{**TINY, "leak": 1.0, "threshold": [0.5, 2.0],
                               "layer_timesteps": [12, 3], "head_mask": [[1, 0, 1, 1], [1] * 4]})
    assert cfg.per_layer_timesteps == [12, 3] and not cfg.uniform_timesteps
    assert SpikingBertConfig(**TINY).per_layer_timesteps == [12, 12]


def test_set_layer_timesteps_validates(tiny_model):
    with pytest.raises(ValueError, match="`layer_timesteps`"):
        tiny_model.spiking_bert.set_layer_timesteps([12, 6, 3])


def test_set_masks_rejects_wrong_shapes_and_values(tiny_model):
    bert = tiny_model.spiking_bert
    with pytest.raises(ValueError, match="`head_mask`"):
        bert.set_masks(torch.ones(2, 5), None)
    with pytest.raises(ValueError, match="`head_mask`"):
        bert.set_masks(torch.ones(4), None)
    with pytest.raises(ValueError, match="`neuron_mask`"):
        bert.set_masks(None, torch.ones(3, 32))
    with pytest.raises(ValueError, match="`head_mask`"):
        bert.set_masks(torch.full((2, 4), 0.5), None)
    assert torch.equal(bert.head_mask, torch.ones(2, 4))       # nothing was installed


def test_a_layer_with_every_unit_pruned_runs_on_its_residual(tiny_model, tiny_batch):
    head_mask, neuron_mask = torch.ones(2, 4), torch.ones(2, 32)
    head_mask[0], neuron_mask[0] = 0, 0                 # layer 1: no heads, no neurons
    tiny_model.spiking_bert.set_masks(head_mask, neuron_mask)
    for executor in ("unrolled", "sequential"):
        sim = tiny_model.spiking_bert.simulate(tiny_batch["input_ids"], tiny_batch["attention_mask"],
                                               executor=executor)
        assert sim.rates[0]["attention"].shape[-1] == 16 and sim.rates[0]["attention"].sum() == 0
        assert sim.rates[0]["intermediate"].shape[-1] == 32
        assert sim.rates[0]["intermediate"].sum() == 0
        assert sim.rates[0]["output"].sum() > 0         # LayerNorm(bias + residual) still fires


def test_bf16_context_is_the_attention_of_attend_up_to_rounding(tiny_model):
    layer = tiny_model.spiking_bert.layers[0]
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, 5, 16, generator=gen)
    k, v = ((torch.rand(3, 2, 5, 16, generator=gen) < 0.3).float() for _ in range(2))
    ext = tiny_model.spiking_bert.extended_mask(torch.tensor([[1, 1, 1, 0, 0], [1] * 5]))
    exact = layer.attend(q, k, v, ext)[0]
    assert torch.equal(layer.context(q, k, v, ext), exact)             # fp32: the same code
    fast = layer.context(q.bfloat16(), k.bfloat16(), v.bfloat16(), ext)
    assert fast.dtype == torch.bfloat16 and fast.shape == exact.shape
    torch.testing.assert_close(fast.float(), exact, atol=3e-2, rtol=3e-2)


def test_implicit_dtype_moves_only_the_gradients(tiny_batch):
    """The Eq. 4 pass under bf16 autocast: the same logits and loss (the forward values are the
    simulated rates), gradients close to fp32's but not equal (its products did run in bf16)."""
    model = make_tiny_model(binary_weights=True)
    inputs = {k: v for k, v in tiny_batch.items() if k != "labels"}
    outs, grads = [], []
    for dtype in (torch.float32, torch.bfloat16):
        model.zero_grad(set_to_none=True)
        out = model(**inputs, labels=tiny_batch["labels"], implicit=True, implicit_dtype=dtype)
        out.loss.backward()
        outs.append(out)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.equal(outs[0].logits, outs[1].logits) and torch.equal(outs[0].loss, outs[1].loss)
    assert grads[0].shape == grads[1].shape and not torch.equal(grads[0], grads[1])
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.99
    with pytest.raises(ValueError, match="`implicit_dtype` must be torch.float32, torch.bfloat16 "
                                         "or torch.float16; got torch.float64"):
        model(**inputs, implicit_dtype=torch.float64)
