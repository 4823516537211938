"""Triton kernels of the integer path (stpcore.snn.int_kernels): bad inputs everywhere; the
kernels on CUDA, or on CPU under TRITON_INTERPRET=1 with triton installed (skipped otherwise).

The interpreter evaluates ``tl.fma`` as a multiply then an add (two fp32 roundings), so there the
currents may be 1 ulp off the exact value rounded once; compiled on CUDA the FMA rounds once and
the currents are the exact ones bit for bit."""
import os

import pytest
import torch

from stpcore.snn import int_kernels
from stpcore.snn.int_kernels import binary_linear, binary_linear_lif, int_kernels_available
from stpcore.snn.lif import lif_scan_loop

from test_integer import as_reference, draw_spikes, make_binary_model
from reference_loop import compare_rates  # noqa: E402  (bench/, on the path test_integer sets)

CUDA = torch.cuda.is_available() and int_kernels_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1" and int_kernels_available()
DEVICES = [pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRET, reason="needs TRITON_INTERPRET=1")),
           pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs CUDA and triton"))]
SHAPES = [(1, 7, 16, 8), (2, 17, 13, 10), (3, 40, 64, 24), (2, 33, 200, 40), (2, 70, 130, 3),
          (1, 96, 40, 100)]     # the last: 3 row blocks (one group and a part) by 4 column blocks


def make_layer(k, n, seed, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(-1, 2, (n, k), generator=gen, dtype=torch.int8)
    alpha = torch.rand(n, generator=gen) + 0.01
    bias = torch.randn(n, generator=gen)
    return signs.to(device), alpha.to(device), bias.to(device)


def exact_currents(x, signs, alpha, bias):
    """``alpha * (x @ signs^T) + bias`` in float64 (exact here), rounded once to fp32."""
    return (alpha.double() * (x.double() @ signs.double().t()) + bias.double()).float()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("t,m,k,n", SHAPES)
def test_currents_are_the_exact_value_rounded_once(t, m, k, n, device):
    signs, alpha, bias = make_layer(k, n, seed=k + n, device=device)
    x = draw_spikes(t, m, k, seed=m).to(device)
    got = binary_linear(x, signs, alpha, bias)
    want = exact_currents(x, signs, alpha, bias)
    assert got.dtype == torch.float32 and got.shape == (t, m, n)
    if device == "cuda":
        assert torch.equal(got, want)
    else:
        scale = (alpha.double() * (x.double() @ signs.double().t())).abs() + bias.double().abs()
        assert ((got.double() - want.double()).abs() <= torch.finfo(torch.float32).eps * scale).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("t,m,k,n", SHAPES)
def test_fused_lif_equals_currents_then_loop(t, m, k, n, device):
    """Spikes, membranes and last spikes of the one-kernel LIF equal the loop's on the kernel's
    own currents, bit for bit, and a second block continues from the returned state."""
    signs, alpha, bias = make_layer(k, n, seed=k, device=device)
    x = draw_spikes(2 * t, m, k, seed=n).to(device)
    vth = torch.tensor(0.6, device=device)
    cur = binary_linear(x, signs, alpha, bias)
    want, (u_want, s_want) = lif_scan_loop(cur[:t], vth)
    got, (u, s) = binary_linear_lif(x[:t], signs, alpha, bias, vth)
    assert got.dtype == torch.int8 and torch.equal(got.float(), want)
    assert torch.equal(u, u_want) and torch.equal(s, s_want)
    want2, _ = lif_scan_loop(cur[t:], vth, state=(u_want, s_want))
    got2, _ = binary_linear_lif(x[t:], signs, alpha, bias, vth, state=(u, s))
    assert torch.equal(got2.float(), want2)
    assert 0 < want.mean() < 1                           # some neurons fire, not all


@pytest.mark.parametrize("device", DEVICES)
def test_fused_lif_starts_from_any_given_state(device):
    """Step 0 resets by the given last spikes even where they disagree with u >= vth (the loop
    derives later resets from its own spikes), with a positive and a negative threshold."""
    t, m, k, n = 3, 20, 40, 24
    signs, alpha, bias = make_layer(k, n, seed=3, device=device)
    x = draw_spikes(t, m, k, seed=4).to(device)
    gen = torch.Generator().manual_seed(5)
    u0, s0 = torch.randn(m, n, generator=gen), (torch.rand(m, n, generator=gen) < 0.5).float()
    u0, s0 = u0.to(device), s0.to(device)
    cur = binary_linear(x, signs, alpha, bias)
    for v in (0.6, -0.2):
        vth = torch.tensor(v, device=device)
        assert ((s0 != 0) != (u0 >= vth)).any()          # a state no step could have left
        want, (u_want, s_want) = lif_scan_loop(cur, vth, state=(u0, s0))
        got, (u, s) = binary_linear_lif(x, signs, alpha, bias, vth, state=(u0, s0))
        assert torch.equal(got.float(), want) and torch.equal(u, u_want) and torch.equal(s, s_want)


@pytest.mark.parametrize("device", DEVICES)
def test_no_fan_in_gives_the_bias(device):
    """K = 0 (a population fed by a width pruned to nothing): the current is the bias at every
    step, and the LIF kernel still fires on it (its time loop runs one empty K block per step)."""
    signs, alpha, bias = make_layer(0, 24, seed=2, device=device)
    x = torch.zeros(3, 20, 0, dtype=torch.int8, device=device)
    vth = torch.tensor(0.6, device=device)
    assert torch.equal(binary_linear(x, signs, alpha, bias), bias.expand(3, 20, 24))
    want, (u_want, s_want) = lif_scan_loop(bias.expand(3, 20, 24), vth)
    got, (u, s) = binary_linear_lif(x, signs, alpha, bias, vth)
    assert torch.equal(got.float(), want) and torch.equal(u, u_want) and torch.equal(s, s_want)
    assert 0 < want.mean() < 1


@pytest.mark.parametrize("device", DEVICES)
def test_tma_and_pointer_loads_give_the_same_outputs(device, monkeypatch):
    """K = 64 rows are 16-byte aligned, so the kernels read them through TMA descriptors; forcing
    pointer loads gives the same currents and spikes. 50 rows per step with 32-row blocks: a
    block's TMA rows run past the step into the next one (which feeds only unstored rows)."""
    signs, alpha, bias = make_layer(64, 40, seed=8, device=device)
    x = draw_spikes(3, 50, 64, seed=9).to(device)
    vth = torch.tensor(0.6, device=device)
    assert int_kernels._use_tma(x.reshape(-1, 64), signs)
    assert not int_kernels._use_tma(x[..., :60].reshape(-1, 60).contiguous(), signs[:, :60].contiguous())
    with_tma = binary_linear(x, signs, alpha, bias), binary_linear_lif(x, signs, alpha, bias, vth)
    monkeypatch.setattr(int_kernels, "_use_tma", lambda *_: False)
    pointers = binary_linear(x, signs, alpha, bias), binary_linear_lif(x, signs, alpha, bias, vth)
    assert torch.equal(with_tma[0], pointers[0]) and torch.equal(with_tma[1][0], pointers[1][0])
    assert all(torch.equal(a, b) for a, b in zip(with_tma[1][1], pointers[1][1]))
    assert 0 < with_tma[1][0].float().mean() < 1


@pytest.mark.parametrize("device", DEVICES)
def test_an_explicit_tile_gives_the_same_outputs(device):
    """``tile`` (for benchmarks) changes the launch, not the result: integer sums are exact."""
    tile = {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 64, "GROUP_M": 1, "num_warps": 4,
            "num_stages": 2}
    signs, alpha, bias = make_layer(130, 70, seed=6, device=device)
    x = draw_spikes(2, 50, 130, seed=7).to(device)
    vth = torch.tensor(0.6, device=device)
    assert torch.equal(binary_linear(x, signs, alpha, bias, tile), binary_linear(x, signs, alpha, bias))
    got, want = (binary_linear_lif(x, signs, alpha, bias, vth, tile=tl)[0] for tl in (tile, None))
    assert torch.equal(got, want)


@pytest.mark.parametrize("call, error, match", [
    (lambda s, a, b: binary_linear(torch.ones(4, 8), s, a, b), TypeError, "`x` and `signs` must be int8"),
    (lambda s, a, b: binary_linear(torch.ones(4, 9, dtype=torch.int8), s, a, b), ValueError, "must agree"),
    (lambda s, a, b: binary_linear(torch.ones(4, 8, dtype=torch.int8), s, a[:3], b), ValueError, "must agree"),
    (lambda s, a, b: binary_linear_lif(torch.ones(2, 4, 8, dtype=torch.int8), s, a, b, 0.5),
     ValueError, "`threshold` must be a 0-dim tensor"),
    (lambda s, a, b: binary_linear_lif(torch.ones(8, dtype=torch.int8), s, a, b, torch.tensor(0.5)),
     ValueError, r"\[T, ..., K\]"),
    (lambda s, a, b: binary_linear_lif(torch.ones(2, 4, 8, dtype=torch.int8), s, a, b, torch.tensor(0.5),
                                       spike_dtype=torch.int32), ValueError, "`spike_dtype` must be one of"),
    (lambda s, a, b: binary_linear(torch.ones(4, 8, dtype=torch.int8), s, a, b, {"BLOCK_M": 64}),
     ValueError, "`tile` must be None or a dict with the keys"),
])
def test_bad_inputs_are_refused_before_any_kernel(call, error, match, monkeypatch):
    monkeypatch.setattr(int_kernels, "triton", None)        # nothing may be launched
    with pytest.raises(error, match=match):
        call(*make_layer(8, 5, seed=0))


@pytest.mark.skipif(not CUDA, reason="needs CUDA and triton")
@pytest.mark.parametrize("attention", ["split", "sdpa"])
@pytest.mark.parametrize("case", ["dense", "pruned", "sequential"])
def test_cuda_int8_simulation_takes_the_kernels_and_deviates_as_fp32(case, attention, monkeypatch):
    """On CUDA the integer path runs the fused kernels (Key, Value and intermediate in one
    kernel each; the attention in the split-bf16 kernel, or PyTorch's with
    ``STP_INT_ATTENTION=sdpa``) and, summed over 6 seeds, differs from float64 no more than fp32
    does. Head size 16: the smallest the split kernel takes."""
    import stpcore.snn.integer as integer
    import stpcore.snn.layer as layer
    monkeypatch.setenv("STP_INT_ATTENTION", attention)
    calls = {"lif": 0, "attention": 0}
    real_lif, real_attention = integer.binary_linear_lif, layer.spike_attention

    def count(name, fn):
        return lambda *a, **k: calls.__setitem__(name, calls[name] + 1) or fn(*a, **k)
    monkeypatch.setattr(integer, "binary_linear_lif", count("lif", real_lif))
    monkeypatch.setattr(layer, "spike_attention", count("attention", real_attention))
    frac = {"fp32": 0.0, "int8": 0.0}
    for seed in range(6):
        bert, batch = make_binary_model(seed, hidden_size=64, intermediate_size=64, timesteps=30)
        bert, batch = bert.cuda(), {k: v.cuda() for k, v in batch.items()}
        if case == "pruned":
            heads, neurons = torch.ones(2, 4), torch.ones(2, 64)
            heads[0] = 0                    # an empty attention: attention output has K = 0
            heads[1, 2] = neurons[0, ::3] = 0
            bert.set_masks(heads.cuda(), neurons.cuda())
        if case == "sequential":
            bert.set_layer_timesteps([30, 17])
        ref = as_reference(bert.simulate(**batch, dtype=torch.float64))
        for name, dtype in (("fp32", torch.float32), ("int8", torch.int8)):
            frac[name] += compare_rates(bert.simulate(**batch, dtype=dtype), ref)["frac_rates_differing"]
    assert calls["lif"] and bool(calls["attention"]) == (attention == "split")
    assert frac["int8"] <= 1.25 * frac["fp32"] + 1e-3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_lif_writes_spikes_in_the_dtype_asked(dtype, device):
    """Key and Value spikes of the integer path come out fp32 with ``STP_INT_ATTENTION=sdpa``
    (what PyTorch's attention reads): the same 0/1 values as the int8 spikes."""
    signs, alpha, bias = make_layer(40, 24, seed=3, device=device)
    x = draw_spikes(3, 33, 40, seed=4).to(device)
    vth = torch.tensor(0.6, device=device)
    want, _ = binary_linear_lif(x, signs, alpha, bias, vth)
    got, _ = binary_linear_lif(x, signs, alpha, bias, vth, spike_dtype=dtype)
    assert got.dtype == dtype and torch.equal(got, want.to(dtype))
