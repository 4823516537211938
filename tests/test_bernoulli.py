"""Eq. 11's Bernoulli spikes (stpcore.snn.bernoulli): on CUDA the Triton sampler against
``bernoulli_`` itself, spike for spike and generator state; on CPU under TRITON_INTERPRET=1 the
kernel against a NumPy Philox4x32-10 checked on Random123's known answers."""
import numpy as np
import pytest
import torch

from stpcore.snn import bernoulli
from stpcore.snn.bernoulli import draw_bernoulli, philox_bernoulli
from stpcore.snn.kernels import SPIKE_DTYPES as DTYPES

from test_int_kernels import CUDA, DEVICES

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85


def philox(ctr, key):
    """Philox4x32-10 of counters ``ctr`` (4 uint arrays) under ``key`` (2 ints), in uint64."""
    c = [np.asarray(x, dtype=np.uint64) for x in ctr]
    k0, k1, low = np.uint64(key[0]), np.uint64(key[1]), np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = np.uint64(M0) * c[0], np.uint64(M1) * c[2]
        c = [((p1 >> np.uint64(32)) ^ c[1] ^ k0) & low, p1 & low,
             ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & low, p0 & low]
        k0, k1 = (k0 + np.uint64(W0)) & low, (k1 + np.uint64(W1)) & low
    return c


def reference_spikes(rate, steps, seed, offset):
    """The module doc's formula, element by element: float32 uniforms from Philox, u <= p."""
    total = steps * rate.numel()
    i = np.arange(total, dtype=np.uint64)
    group, n = i // np.uint64(4), (offset // 4)
    words = philox([np.full_like(group, n & 0xFFFFFFFF), np.full_like(group, n >> 32),
                    group & np.uint64(0xFFFFFFFF), group >> np.uint64(32)],
                   (seed & 0xFFFFFFFF, seed >> 32))
    x = np.choose((i % np.uint64(4)).astype(np.int64), words)
    u = x.astype(np.float32) * np.float32(2.0 ** -32) + np.float32(2.0 ** -33)
    p = np.tile(rate.float().flatten().numpy(), steps)
    return torch.from_numpy(u <= p).reshape(steps, *rate.shape)


def test_numpy_philox_gives_random123s_known_answers():
    assert [int(x) for x in philox([0, 0, 0, 0], (0, 0))] == \
        [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert [int(x) for x in philox([0xFFFFFFFF] * 4, (0xFFFFFFFF, 0xFFFFFFFF))] == \
        [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert [int(x) for x in philox([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
                                   (0xA4093822, 0x299F31D0))] == \
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed, offset, shape", [(7, 0, (3, 5, 7)), (2 ** 63 + 12345, 12 * 9, (2, 33)),
                                                 (0, 2 ** 34 + 4, (1, 1)), (123, 24, (4, 250)),
                                                 (5, 0, (3, 700))])
def test_kernel_draws_the_formula(seed, offset, shape, device):
    """Odd sizes (a last group of fewer than 4 draws), a 64-bit seed, an offset past 2**32
    counters, rates of 0 and 1 at the ends. Under the interpreter not bf16: triton 3.6's
    interpreter fails converting these blocks to bf16 (a reshape error; CUDA compiles them)."""
    rate = torch.rand(shape, generator=torch.Generator().manual_seed(seed % 1000))
    rate.view(-1)[0], rate.view(-1)[-1] = 0.0, 1.0
    want = reference_spikes(rate, 3, seed, offset)
    for dtype in DTYPES if device == "cuda" else set(DTYPES) - {torch.bfloat16}:
        got = philox_bernoulli(rate.to(device), 3, dtype, seed, offset)
        assert got.dtype == dtype and torch.equal(got.cpu().bool(), want)


@pytest.mark.skipif(not CUDA, reason="needs CUDA and triton")
@pytest.mark.parametrize("shape", [(2, 30, 70), (4, 128, 771), (1, 3)])
@pytest.mark.parametrize("seeded", [True, False])
def test_cuda_draws_are_bernoulli_s_and_leave_the_generator_as_it_would(shape, seeded):
    """Against ``bernoulli_`` on the same generator state, over several calls: the same spikes in
    every dtype and the same state after (the next draws agree); ``seeded=False``: the default
    generator, as the simulation uses it without ``generator``."""
    rate = torch.rand(shape, generator=torch.Generator().manual_seed(1)).cuda()
    for steps in (5, 1, 13):
        for dtype in DTYPES:
            if seeded:
                g1, g2 = (torch.Generator(device="cuda").manual_seed(2 ** 62 + steps) for _ in range(2))
            else:
                g1 = g2 = None
                state = torch.cuda.get_rng_state()
            want = torch.empty(steps, *shape, dtype=dtype, device="cuda").bernoulli_(
                rate.expand(steps, *shape), generator=g1)
            after = torch.rand(3, device="cuda", generator=g1)
            if not seeded:
                torch.cuda.set_rng_state(state)
            got = draw_bernoulli(rate, steps, dtype, g2)
            assert torch.equal(got, want)
            assert torch.equal(torch.rand(3, device="cuda", generator=g2), after)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
@pytest.mark.parametrize("dtype", [torch.int8, torch.bfloat16, torch.float32, torch.float64])
def test_spikes_drawn_in_their_dtype_are_the_fp32_draws(dtype, device):
    """Eq. 11's executor draws spikes straight into the simulation's dtype: the same spikes, and
    the same generator state after, as torch.bernoulli in fp32 (so recorded sequential runs
    reproduce), on CPU through ``bernoulli_`` and on CUDA through the kernel (float64:
    ``bernoulli_``)."""
    rate = torch.rand(2, 30, 70, generator=torch.Generator().manual_seed(0)).to(device)
    g1, g2 = (torch.Generator(device=device).manual_seed(7) for _ in range(2))
    want = torch.bernoulli(rate.expand(5, *rate.shape), generator=g1)
    got = draw_bernoulli(rate, 5, dtype, g2)
    assert got.dtype == dtype and torch.equal(got.float(), want)
    assert torch.equal(torch.rand(3, generator=g1, device=device), torch.rand(3, generator=g2, device=device))


@pytest.mark.parametrize("call, match", [
    (lambda: philox_bernoulli(torch.rand(3), 2, torch.float64, 0, 0), "`dtype` must be one of"),
    (lambda: philox_bernoulli(torch.rand(3), 2, torch.int8, 0, 6), "`offset` must be a multiple of 4"),
    (lambda: philox_bernoulli(torch.rand(3), 2, torch.int8, -1, 0), "`seed` in \\[0, 2\\*\\*64\\); got 0, -1"),
])
def test_bad_inputs_are_refused_before_any_kernel(call, match, monkeypatch):
    monkeypatch.setattr(bernoulli, "triton", None)        # nothing may be launched
    with pytest.raises(ValueError, match=match):
        call()
