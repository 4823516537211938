"""The integer path's attention kernel (stpcore.snn.spike_attention): bad inputs everywhere; the
kernel on CUDA (split bf16 products), or on CPU under TRITON_INTERPRET=1 (fp32 products: the
interpreter cannot multiply bf16, module doc), skipped otherwise."""
import pytest
import torch

from stpcore.snn import spike_attention as sa
from stpcore.snn.config import SpikingBertConfig
from stpcore.snn.layer import SpikingEncoderLayer, spike_dtype
from stpcore.snn.spike_attention import MAX_TOKENS, spike_attention, use_spike_attention

from test_int_kernels import DEVICES


def attend(q, k, v, mask, head_size, dtype):
    """:meth:`SpikingEncoderLayer.attend` (the fp32 path's attention) in ``dtype``, on CPU."""
    width = q.shape[-1]
    layer = SpikingEncoderLayer(SpikingBertConfig(hidden_size=width, intermediate_size=16,
                                                  num_attention_heads=width // head_size))
    return layer.attend(*(x.cpu().to(dtype) for x in (q, k, v, mask)))[0]


def make_inputs(t, b, n, heads, head_size, seed, device="cpu"):
    """Queries of the spread of real currents, 0/1 keys and values at rate 0.3, padded tails."""
    gen = torch.Generator().manual_seed(seed)
    shape = (t, b, n, heads * head_size)
    q = torch.randn(shape, generator=gen) * 4
    k, v = ((torch.rand(shape, generator=gen) < 0.3).float() for _ in range(2))
    keep = torch.ones(b, n)
    keep[-1, n // 2:] = 0
    mask = (1.0 - keep[:, None, None, :]) * -10000.0
    return [x.to(device) for x in (q, k, v, mask)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("t, b, n, heads, head_size", [(1, 2, 7, 1, 16), (2, 3, 37, 2, 16),
                                                       (1, 2, 128, 2, 64), (1, 1, 200, 1, 32)])
def test_context_is_the_float64_context_to_fp32_accuracy(t, b, n, heads, head_size, device):
    """Every context value is a convex combination of 0/1 values: the kernel's largest error
    against float64 is of the fp32 path's size (a few fp32 ulps of 1), where bf16 products of
    unsplit queries and probabilities would err by about 1e-2."""
    q, k, v, mask = make_inputs(t, b, n, heads, head_size, seed=n, device=device)
    got = spike_attention(q, k, v, mask, head_size)
    ref = attend(q, k, v, mask, head_size, torch.float64)
    fp32_err = (attend(q, k, v, mask, head_size, torch.float32).double() - ref).abs().max().item()
    assert got.shape == q.shape and got.dtype == torch.float32
    err = (got.cpu().double() - ref).abs().max().item()
    assert err <= max(4 * fp32_err, 2 * torch.finfo(torch.float32).eps), (err, fp32_err)


@pytest.mark.parametrize("device", DEVICES)
def test_padded_keys_get_no_weight_and_spike_dtypes_agree(device):
    """A padded key's value never reaches the context (its mask is -10000: weight exp(-10000) = 0),
    and int8, bf16 and fp32 spikes (0/1 in each) give the same context bit for bit."""
    q, k, v, mask = make_inputs(1, 2, 20, 2, 16, seed=1, device=device)
    base = spike_attention(q, k, v, mask, 16)
    v2 = v.clone()
    v2[:, -1, 10:] = 1 - v2[:, -1, 10:]          # flip the padded keys' values
    assert torch.equal(spike_attention(q, k, v2, mask, 16), base)
    for dt in (torch.int8, torch.bfloat16):
        assert torch.equal(spike_attention(q, k.to(dt), v.to(dt), mask, 16), base)


@pytest.mark.parametrize("device", DEVICES)
def test_heads_per_program_moves_no_output_bit(device, monkeypatch):
    """``STP_ATTENTION_HEADS``: a program taking 2 or 4 of the 4 heads in turn (3 uses 1, 8 uses 4:
    the largest common divisor) writes the one-head-per-program context bit for bit."""
    q, k, v, mask = make_inputs(2, 3, 37, 4, 16, seed=5, device=device)
    monkeypatch.setenv("STP_ATTENTION_HEADS", "1")
    base = spike_attention(q, k, v, mask, 16)
    for heads in ("2", "3", "4", "8"):
        monkeypatch.setenv("STP_ATTENTION_HEADS", heads)
        assert torch.equal(spike_attention(q, k, v, mask, 16), base), heads


@pytest.mark.parametrize("value", ["0", "-2", "two", ""])
def test_heads_per_program_names_its_variable(value, monkeypatch):
    monkeypatch.setenv("STP_ATTENTION_HEADS", value)
    want = f"STP_ATTENTION_HEADS must be a positive integer; got '{value}'"
    with pytest.raises(ValueError, match=want):
        sa.heads_per_program()


@pytest.mark.skipif(not sa.triton or not torch.cuda.is_available(), reason="needs CUDA and triton")
def test_more_sequence_heads_than_a_second_grid_axis_takes():
    """70000 (sequence, head) pairs, more than the 65535 programs a CUDA grid's second axis
    takes (an MRPC evaluation: 64 steps x 128 sequences x 12 heads = 98304 failed to launch
    when the pairs were on that axis): every sequence gets its own context."""
    t, b, n, heads, head_size = 1, 35000, 3, 2, 16
    q, k, v, mask = make_inputs(t, b, n, heads, head_size, seed=7, device="cuda")
    got = spike_attention(q, k, v, mask, head_size)
    ref = attend(q, k, v, mask, head_size, torch.float64)
    assert (got.cpu().double() - ref).abs().max().item() <= 1e-5


def test_split_pieces_sum_to_the_fp32_value():
    """The identity the kernel's products rest on, in torch's round-to-nearest bf16 conversion
    (the GPU's ``cvt.rn``): hi + mid + lo == x for every fp32 x of magnitude in [2**-110, 2**127]
    (lo then a normal number, hi finite); below, lo may be subnormal and the sum off by less
    than 2**-126. (Queries are currents, probabilities at most 1: far from either end.)"""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200000, generator=gen) * torch.logspace(-38, 38, 200000).float()
    x = torch.cat([x, torch.tensor([2.0 ** 127, -(2.0 ** 127), 2.0 ** -110, 3e-37])])
    hi = x.bfloat16()
    r = x - hi.float()
    mid = r.bfloat16()
    lo = (r - mid.float()).bfloat16()
    err = (hi.double() + mid.double() + lo.double() - x.double()).abs()
    span = (x.abs() >= 2.0 ** -110) & (x.abs() <= 2.0 ** 127)
    assert torch.equal(err[span], torch.zeros_like(err[span]))
    assert err[x.abs() < 2.0 ** -110].max() < 2.0 ** -126


@pytest.mark.parametrize("args, match", [
    (dict(q=torch.zeros(1, 4, 32).double()), "`q` must be fp32"),
    (dict(k=torch.zeros(1, 4, 16)), "`k`, `v` its shape"),
    (dict(head_size=24), "`head_size` must be a power of two >= 16 dividing the width 32; got 24"),
    (dict(head_size=8), "power of two >= 16"),
    (dict(q=torch.zeros(1, MAX_TOKENS + 1, 32), k=torch.zeros(1, MAX_TOKENS + 1, 32),
          v=torch.zeros(1, MAX_TOKENS + 1, 32), mask=torch.zeros(1, 1, 1, MAX_TOKENS + 1)),
     f"at most {MAX_TOKENS} tokens; got {MAX_TOKENS + 1}"),
])
def test_bad_inputs_are_refused_before_any_kernel(args, match, monkeypatch):
    monkeypatch.setattr(sa, "triton", None)        # nothing may be launched
    call = dict(q=torch.zeros(1, 4, 32), k=torch.zeros(1, 4, 32), v=torch.zeros(1, 4, 32),
                mask=torch.zeros(1, 1, 1, 4), head_size=16)
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("[", r"\[")):
        spike_attention(**{**call, **args})


def test_mode_switch_names_its_variable_and_moves_key_value_spikes(monkeypatch):
    """``STP_INT_ATTENTION``: sdpa keeps the integer path's Key and Value spikes fp32 (what
    PyTorch's attention reads), split keeps them int8; anything else is refused by name."""
    q = torch.zeros(1, 8, 64)
    monkeypatch.setenv("STP_INT_ATTENTION", "sdpa")
    assert spike_dtype("key", torch.int8) == torch.float32 and not use_spike_attention(q, 16)
    monkeypatch.setenv("STP_INT_ATTENTION", "split")
    assert spike_dtype("key", torch.int8) == torch.int8
    assert spike_dtype("query", torch.bfloat16) == torch.bfloat16
    assert use_spike_attention(q, 16) == (sa.triton is not None)
    assert not use_spike_attention(q, 8) and not use_spike_attention(q, 24)
    monkeypatch.setenv("STP_INT_ATTENTION", "fast")
    with pytest.raises(ValueError, match="STP_INT_ATTENTION must be 'split' or 'sdpa'; got 'fast'"):
        spike_dtype("key", torch.int8)
