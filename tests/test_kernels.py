"""LIF scan: the Python loop on CPU, and the fused Triton kernel against it (CUDA, or CPU under
TRITON_INTERPRET=1 with triton installed; skipped otherwise)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import stpcore.snn.integer
import stpcore.snn.layer
import stpcore.snn.model
from stpcore.snn import kernels
from stpcore.snn.kernels import fused_lif_available, fused_lif_scan, fused_norm_lif_scan, sum_spikes
from stpcore.snn.lif import add_counts, lif_scan, lif_scan_loop

CUDA = torch.cuda.is_available() and fused_lif_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1" and fused_lif_available()


def test_kernels_import_without_triton():
    """A CPU-only install: in a fresh interpreter where triton cannot be imported
    (``sys.modules["triton"] = None`` makes every ``import triton...`` raise
    ModuleNotFoundError), every module that touches triton imports, the fused paths report
    unavailable and the loop runs. (The packages' ``__init__`` are bypassed, which import
    transformers and take seconds; none of these modules needs them.)"""
    snn = Path(kernels.__file__).resolve().parent
    code = "\n".join([
        "import sys, types",
        "sys.modules['triton'] = None",
        f"for name, path in (('stpcore', {str(snn.parent)!r}), ('stpcore.snn', {str(snn)!r})):",
        "    sys.modules[name] = types.ModuleType(name)",
        "    sys.modules[name].__path__ = [path]",
        "from stpcore.snn import kernels, lif, bernoulli, int_kernels, spike_attention",
        "import torch",
        "assert kernels.fused_lif_available() is False and kernels.triton is None",
        "assert int_kernels.int_kernels_available() is False",
        "s, _ = lif.lif_scan(torch.full((8, 1), 0.5), 1.0)",
        "assert s[:, 0].tolist() == [0, 1] * 4",
        "print(kernels.__file__)"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(snn / "kernels.py")      # the stpcore under test


def test_lif_scan_cpu_constant_current():
    spikes, (u, s) = lif_scan(torch.full((10, 2), 0.3), 1.0)
    assert spikes[:, 0].tolist() == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert s.tolist() == [1.0, 1.0] and torch.allclose(u, torch.ones(2))   # 10 x 0.3 - 2 resets


def test_lif_scan_counts_spikes_across_blocks_and_refuses_bad_counts():
    cur = torch.randn(12, 3, 5, generator=torch.Generator().manual_seed(1)) + 0.3
    counts = torch.ones(3, 5)
    head, mid = lif_scan(cur[:5], 0.7, counts=counts)
    tail, _ = lif_scan(cur[5:], 0.7, state=mid, counts=counts)
    assert torch.equal(counts, 1 + torch.cat([head, tail]).sum(0)) and 1 < counts.mean() < 13
    for bad in (torch.zeros(5, 3), torch.zeros(3, 5, dtype=torch.float64), [0.0] * 15,
                torch.zeros(5, 3).t()):
        with pytest.raises(ValueError, match="lif_scan: `counts` must be None or a contiguous "
                                             r"float32 tensor shaped \(3, 5\)"):
            lif_scan(cur, 0.7, counts=bad)


def test_lif_scan_cpu_state_continues_and_bf16_accumulates_in_fp32():
    cur = torch.randn(12, 3, 5, generator=torch.Generator().manual_seed(0))
    full, state = lif_scan(cur, torch.tensor(0.7), 0.9)
    head, mid = lif_scan(cur[:5], torch.tensor(0.7), 0.9)
    tail, end = lif_scan(cur[5:], torch.tensor(0.7), 0.9, mid)
    assert torch.equal(torch.cat([head, tail]), full) and torch.equal(end[0], state[0])
    low = cur.bfloat16()
    spikes, (u, _) = lif_scan(low, 0.7)
    ref, (u_ref, _) = lif_scan(low.float(), 0.7)
    assert spikes.dtype == torch.bfloat16 and u.dtype == torch.float32
    assert torch.equal(spikes.float(), ref) and torch.equal(u, u_ref)


def _check_fused(device):
    gen = torch.Generator(device=device).manual_seed(0)
    cur = torch.randn(37, 4, 33, 7, generator=gen, device=device) * 0.6 + 0.2
    for vth in (0.9, torch.tensor(0.9, device=device)):
        ref, (u_ref, s_ref) = lif_scan_loop(cur, vth)
        out, (u, s) = fused_lif_scan(cur, vth)
        assert torch.equal(out, ref) and torch.equal(u, u_ref) and torch.equal(s, s_ref)
    head, mid = fused_lif_scan(cur[:20], 0.9)               # continuing from a state
    tail, _ = fused_lif_scan(cur[20:], 0.9, state=mid)
    assert torch.equal(torch.cat([head, tail]), ref)
    const = cur[0].expand(9, *cur.shape[1:])                # time stride 0
    assert torch.equal(fused_lif_scan(const, 0.9)[0], lif_scan_loop(const, 0.9)[0])
    low = cur.bfloat16()                                     # bf16 in, fp32 accumulation
    out, (u, _) = fused_lif_scan(low, 0.9)
    assert out.dtype == torch.bfloat16 and torch.equal(out.float(), lif_scan_loop(low.float(), 0.9)[0])
    out, (u, _) = fused_lif_scan(cur, 0.9, leak=0.9)         # leak != 1: equal up to FMA rounding
    ref, (u_ref, _) = lif_scan_loop(cur, 0.9, 0.9)
    assert (out != ref).float().mean() < 1e-3 and ((u - u_ref).abs() > 1e-5).float().mean() < 1e-2
    counts = torch.full(cur.shape[1:], 2.0, device=device)   # added to across blocks, in place
    head, mid = fused_lif_scan(cur[:20], 0.9, counts=counts)
    tail, _ = fused_lif_scan(cur[20:], 0.9, state=mid, counts=counts, spike_dtype=torch.int8)
    assert torch.equal(counts, 2 + head.sum(0) + tail.sum(0, dtype=torch.float32))
    assert 0 < (counts - 2).mean() < len(cur)
    # exactly at threshold (dyadic, so exact in fp32): H(0) = 1 spikes. I = 3/8, V = 1:
    # u = .375 .75 1.125* .5 .875 1.25* .625 1.0* (test_lif's hand-computed train); I = 1/2, 1/4
    # reach u = V = 1 exactly at steps 2 and 4; I = 1 at every step
    exact = torch.tensor([0.375, 0.5, 0.25, 1.0], device=device).expand(12, 4)
    want = [[3, 6, 8, 11], [2, 4, 6, 8, 10, 12], [4, 8, 12], list(range(1, 13))]
    for vth in (1.0, torch.tensor(1.0, device=device)):
        for dtype in (torch.float32, torch.bfloat16):
            out, (u, s) = fused_lif_scan(exact.to(dtype), vth)
            fired = [(out[:, i] == 1).nonzero().flatten().add(1).tolist() for i in range(4)]
            assert fired == want, (vth, dtype, fired)
            assert torch.equal(out.float(), lif_scan_loop(exact.float(), vth)[0])


def _check_norm_fused(device):
    """The fused residual + LayerNorm + LIF kernel against LayerNorm then the loop (fp32 math,
    another reduction order: equal up to spikes exactly at threshold)."""
    gen = torch.Generator(device=device).manual_seed(0)
    ln = torch.nn.LayerNorm(24).to(device)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5, generator=gen)
        ln.bias.uniform_(-0.2, 0.4, generator=gen)
    vth = torch.tensor(0.6, device=device)
    for dtype in (torch.float32, torch.bfloat16):
        cur = (torch.randn(19, 3, 5, 24, generator=gen, device=device)).to(dtype)
        res = (torch.rand(19, 3, 5, 24, generator=gen, device=device) < 0.3).to(dtype)
        with torch.no_grad():
            ref, (u_ref, _) = lif_scan_loop(ln(cur.float() + res.float()), vth)
        out, (u, _) = fused_norm_lif_scan(cur, res, ln, vth, spike_dtype=dtype)
        assert out.dtype == dtype and out.shape == cur.shape
        assert (out.float() != ref).float().mean() < 1e-3 and ref.mean() > 0.05
        assert torch.allclose(u, u_ref, atol=1e-3)
        counts = torch.zeros(cur.shape[1:], device=device)
        head, mid = fused_norm_lif_scan(cur[:7], res[:7], ln, vth, spike_dtype=dtype, counts=counts)
        tail, _ = fused_norm_lif_scan(cur[7:], res[7:], ln, vth, state=mid, spike_dtype=dtype,
                                      counts=counts)
        assert torch.equal(torch.cat([head, tail]), out)
        assert torch.equal(counts, out.sum(0, dtype=torch.float32))


@pytest.mark.skipif(not INTERPRET, reason="needs triton and TRITON_INTERPRET=1")
def test_fused_interpreted_on_cpu():
    _check_fused("cpu")
    _check_norm_fused("cpu")


@pytest.mark.skipif(not CUDA, reason="needs CUDA and triton")
def test_fused_norm_cuda_matches_layernorm_then_loop():
    _check_norm_fused("cuda")


@pytest.mark.skipif(not CUDA, reason="needs CUDA and triton")
def test_fused_cuda_matches_loop_bitwise():
    _check_fused("cuda")
    cur = torch.randn(5, 8, device="cuda")
    assert torch.equal(lif_scan(cur, 0.5)[0], lif_scan_loop(cur, 0.5)[0])   # dispatch


@pytest.mark.skipif(not CUDA, reason="needs CUDA and triton")
def test_simulate_cuda_fused_equals_loop(monkeypatch):
    from stpcore.snn.config import SpikingBertConfig
    torch.manual_seed(0)
    cfg = SpikingBertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=128, timesteps=20,
                            time_chunk=6, threshold=0.05)
    bert = stpcore.snn.model.SpikingBertModel(cfg).cuda().eval()
    ids = torch.randint(1, 50, (2, 12), device="cuda")
    mask = torch.ones_like(ids)
    fused = bert.simulate(ids, mask)

    def loop_scan(current, threshold, leak=1.0, state=None, spike_dtype=None, counts=None):
        spikes, state = lif_scan_loop(current, threshold, leak, state, spike_dtype)
        add_counts(counts, spikes)
        return spikes, state
    for module in (stpcore.snn.model, stpcore.snn.layer, stpcore.snn.integer):
        monkeypatch.setattr(module, "lif_scan", loop_scan)
    loop = bert.simulate(ids, mask)
    assert all(torch.equal(fused.rates[l][p], loop.rates[l][p])
               for l in range(2) for p in fused.rates[l])
    assert torch.equal(fused.embedding_rate, loop.embedding_rate)


@pytest.mark.parametrize("device", [
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRET, reason="needs TRITON_INTERPRET=1")),
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs CUDA and triton"))])
@pytest.mark.parametrize("dtype", [torch.int8, torch.bfloat16, torch.float32])
def test_sum_spikes_counts_exactly(dtype, device):
    """The time-axis spike count of one read equals torch's fp32 sum (integers: exact)."""
    gen = torch.Generator().manual_seed(0)
    spikes = (torch.rand(37, 3, 1500, generator=gen) < 0.3).to(dtype).to(device)
    got = sum_spikes(spikes)
    assert got.dtype == torch.float32 and torch.equal(got, spikes.sum(0, dtype=torch.float32))
    assert 0 < got.mean() < 37


def test_sum_spikes_refuses_bad_spikes_before_any_kernel(monkeypatch):
    monkeypatch.setattr(kernels, "triton", None)
    for bad in (torch.zeros(4, 3, dtype=torch.int32), torch.zeros(0, 3, dtype=torch.int8)):
        with pytest.raises(ValueError, match="sum_spikes: needs triton and spikes"):
            sum_spikes(bad)
