"""The integer simulation path of 1-bit models (``sim_dtype=torch.int8``, stpcore.snn.integer).

Its synaptic currents are ``alpha * (spikes @ sign^T) + b`` computed exactly and rounded once to
fp32; everything else (LIF, attention, LayerNorm) is the fp32 path's (on CPU, and on CUDA
without the Triton kernels). So such an int8 simulation is bit for bit the fp32 simulation whose
linear currents are replaced by float64 ones rounded once.
Against a full float64 simulation it deviates as much as fp32 does: a flipped spike anywhere
cascades, and the LIF, softmax and LayerNorm roundings that cause most flips are fp32's in both.
"""
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import stpcore.snn.layer as layer_mod
from stpcore.snn.integer import compute_binary_currents, multiply_int8, split_binary
from stpcore.snn.quant import QuantLinear

from conftest import make_batch, make_tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from reference_loop import compare_rates  # noqa: E402

WIDE = dict(hidden_size=32, intermediate_size=64, timesteps=30)     # spikes flip in fp32 here
#: On CUDA the products go through torch._int_mm (M > 16) or the fp32 fallback (M <= 16).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="needs CUDA"))]


def make_binary_layer(k: int, n: int, seed: int) -> QuantLinear:
    torch.manual_seed(seed)
    lin = QuantLinear(k, n, binary=True)
    with torch.no_grad():
        lin.bias.normal_(0.0, 0.5)
    return lin


def draw_spikes(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < 0.4).to(torch.int8)


def compute_float64_currents(spikes, lin: QuantLinear) -> torch.Tensor:
    """``alpha * (S @ sign^T) + b`` in float64 from the layer's own weight, rounded once."""
    w = lin.weight.detach()
    alpha = w.abs().mean(1).double()                # the scale, as binarize computes it
    sign = torch.where(w >= 0, 1.0, -1.0).double()
    return (alpha * (spikes.double() @ sign.t()) + lin.bias.detach().double()).float()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("t,m,k,n", [(1, 7, 16, 8), (2, 17, 13, 10), (3, 40, 64, 24),
                                     (1, 33, 1536, 40)])
def test_currents_are_float64_rounded_once(t, m, k, n, device):
    lin = make_binary_layer(k, n, seed=k + n)
    spikes = draw_spikes(t, m, k, seed=m)
    with torch.no_grad():
        w = split_binary(lin)
        got = compute_binary_currents(spikes.to(device), type(w)(*(x.to(device) for x in w)))
    assert got.dtype == torch.float32 and got.shape == (t, m, n)
    assert torch.equal(got.cpu(), compute_float64_currents(spikes, lin))


def test_split_binary_is_the_effective_weight_exactly():
    """Signs and scales read off the weight give binarize's effective weight bit for bit, with
    sign(0) = +1 as binarize has it (a zero weight in row 0)."""
    lin = make_binary_layer(40, 24, seed=1)
    with torch.no_grad():
        lin.weight[0, 3] = 0.0
        split = split_binary(lin)
        assert split.signs.dtype == torch.int8 and split.signs[0, 3] == 1
        assert torch.equal(split.alpha[:, None].float() * split.signs, lin.effective_weight())
        assert torch.equal(split.bias, lin.bias.double()) and split.alpha.dtype == torch.float64


def test_fp32_currents_are_not_float64_rounded_once():
    """The bar above is not met by the fp32 path: its K additions of +-alpha round."""
    lin = make_binary_layer(1536, 40, seed=0)
    spikes = draw_spikes(64, 1536)
    with torch.no_grad():
        fp32 = F.linear(spikes.float(), lin.effective_weight(), lin.bias)
    assert not torch.equal(fp32, compute_float64_currents(spikes, lin))


def test_currents_need_int8_spikes():
    lin = make_binary_layer(8, 8, seed=0)
    with torch.no_grad(), pytest.raises(TypeError, match="int8"):
        compute_binary_currents(torch.ones(3, 8), split_binary(lin))


@pytest.mark.parametrize("m,k,n", [(17, 13, 10), (40, 64, 24), (33, 8, 3)])
def test_int_mm_gets_the_shapes_cuda_takes(m, k, n, monkeypatch):
    """``torch._int_mm`` on CUDA needs M > 16, K and N multiples of 8 (CPU's takes any):
    every call must satisfy that, with the weight column-major, and the result be exact."""
    real, calls = torch._int_mm, []

    def checked(a, b):
        calls.append((a.shape, b.shape))
        assert a.dtype == b.dtype == torch.int8
        assert a.shape[0] > 16 and a.shape[1] % 8 == 0 and b.shape[1] % 8 == 0
        assert b.stride(0) == 1                     # column-major [K, N]
        return real(a, b)
    monkeypatch.setattr(torch, "_int_mm", checked)
    x = draw_spikes(m, k)
    signs = torch.randint(-1, 2, (n, k), generator=torch.Generator().manual_seed(1),
                          dtype=torch.int8)
    got = multiply_int8(x, signs)
    assert calls and got.dtype == torch.int32
    assert torch.equal(got, x.long() @ signs.long().t())


def compute_exact_currents(x, lin):
    """The fp32 path's linear step with exact products: float64, rounded once to fp32."""
    weight, bias = lin
    return ((x.double() @ weight.double().t()) + bias.double()).float()


def make_binary_model(seed, **overrides):
    model = make_tiny_model(seed, **overrides)
    model.spiking_bert.set_binary_weights(True)
    batch = make_batch(seed)
    batch.pop("labels")
    return model.spiking_bert, batch


def as_reference(sim):
    return {"embedding": sim.embedding_rate, "layers": sim.rates}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", ["dense", "pruned", "sequential"])
def test_int8_is_fp32_with_exact_currents(seed, case, device, monkeypatch):
    """Bit for bit, unrolled and sequential (Eq. 11) executors, with pruned heads and neurons
    (layer 0 loses every head: empty Query, Key, Value, attention populations). On CUDA with the
    Triton kernels off (``STP_FUSED_LIF=0``; with them on, attention and LayerNorm sum in
    another order: tests/test_int_kernels.py) the products must have gone through torch._int_mm."""
    monkeypatch.setenv("STP_FUSED_LIF", "0")
    bert, batch = make_binary_model(seed, **WIDE)
    bert, batch = bert.to(device), {k: v.to(device) for k, v in batch.items()}
    if case == "pruned":
        heads, neurons = torch.ones(2, 4), torch.ones(2, 64)
        heads[0] = 0
        heads[1, 2] = neurons[0, ::3] = neurons[1, 5:20] = 0
        bert.set_masks(heads, neurons)
    if case == "sequential":
        bert.set_layer_timesteps([30, 17])
    simulate = lambda dtype: bert.simulate(**batch, dtype=dtype, generator=torch.Generator(
        device=device).manual_seed(seed))
    real_int_mm, int_mm_calls = torch._int_mm, []
    monkeypatch.setattr(torch, "_int_mm", lambda *a: int_mm_calls.append(1) or real_int_mm(*a))
    int8 = simulate(torch.int8)
    assert bool(int_mm_calls) == (device == "cuda")
    with monkeypatch.context() as m:
        m.setattr(layer_mod, "compute_currents", compute_exact_currents)
        reference = simulate(torch.float32)
    assert compare_rates(int8, as_reference(reference)) == {"max_abs_asr_diff": 0.0,
                                                            "frac_rates_differing": 0.0}
    assert all(r.dtype == torch.float32 for layer in int8.rates for r in layer.values())


def test_fp32_is_not_fp32_with_exact_currents(monkeypatch):
    """The equality above is not vacuous: the fp32 path's own currents flip spikes."""
    differing = 0.0
    for seed in range(4):
        bert, batch = make_binary_model(seed, **WIDE)
        fp32 = bert.simulate(**batch)
        with monkeypatch.context() as m:
            m.setattr(layer_mod, "compute_currents", compute_exact_currents)
            reference = bert.simulate(**batch)
        differing += compare_rates(fp32, as_reference(reference))["frac_rates_differing"]
    assert differing > 0


def test_deviation_from_float64_is_fp32s_not_bf16s():
    """Against a float64 simulation, over 8 seeds: int8 deviates as fp32 does (measured: total
    fraction of differing rates 0.98x fp32's, largest difference 4/T against fp32's 3/T; a flip
    anywhere cascades, so single seeds go either way) and far less than bf16 (6.7x int8's)."""
    total = {d: {"frac_rates_differing": 0.0, "max_abs_asr_diff": 0.0}
             for d in ("fp32", "int8", "bf16")}
    for seed in range(8):
        bert, batch = make_binary_model(seed, **WIDE)
        ref = as_reference(bert.simulate(**batch, dtype=torch.float64))
        for name, dtype in (("fp32", torch.float32), ("int8", torch.int8),
                            ("bf16", torch.bfloat16)):
            got = compare_rates(bert.simulate(**batch, dtype=dtype), ref)
            total[name]["frac_rates_differing"] += got["frac_rates_differing"] / 8
            total[name]["max_abs_asr_diff"] = max(total[name]["max_abs_asr_diff"],
                                                  got["max_abs_asr_diff"])
    fp32, int8, bf16 = total["fp32"], total["int8"], total["bf16"]
    assert 0 < fp32["frac_rates_differing"] and 0 < fp32["max_abs_asr_diff"]
    assert int8["frac_rates_differing"] <= 1.25 * fp32["frac_rates_differing"]
    assert int8["max_abs_asr_diff"] <= 2 * fp32["max_abs_asr_diff"]
    assert bf16["frac_rates_differing"] >= 3 * int8["frac_rates_differing"]


@pytest.mark.parametrize("device", DEVICES)
def test_training_step_with_int8_simulation_repeats_bit_for_bit(device):
    """A training step in int8 gives finite gradients, and the same loss and gradients bit for
    bit when repeated from the same weights and batch (on CUDA: the Triton products, attention
    and LayerNorm-LIF kernels and the fp32 Eq. 4 pass), so a rerun step does not drift."""
    def step():
        model = make_tiny_model(0).to(device)
        model.spiking_bert.set_binary_weights(True)
        out = model(**{k: v.to(device) for k, v in make_batch(0).items()}, sim_dtype=torch.int8)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    (loss, grads), (again, regrads) = step(), step()
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    assert torch.equal(loss, again) and grads.keys() == regrads.keys()
    assert [n for n in grads if not torch.equal(grads[n], regrads[n])] == []


def test_full_precision_model_refuses_int8():
    model = make_tiny_model(0)                          # binary_weights=False
    batch = make_batch(0)
    with pytest.raises(ValueError, match="`sim_dtype` torch.int8 .* needs 1-bit weights"):
        model(**batch, sim_dtype=torch.int8)
    model.spiking_bert.set_binary_weights(True)
    model.spiking_bert.layers[1].output.binary = False  # one layer left full precision
    with pytest.raises(ValueError, match="sim_dtype"):
        model.spiking_bert.simulate(batch["input_ids"], batch["attention_mask"],
                                    dtype=torch.int8)
