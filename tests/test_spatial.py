"""Post-training spatial pruning (Eq. 5-9): Fisher scores, budgeted mask search, rearrangement
and the mask gradients through the implicit pass."""
import itertools

import pytest
import torch
from torch import nn

from stpcore.prune import acs
from stpcore.prune.spatial import (SCORINGS, collect_mask_grads, compute_fisher_info,
                             pruned_fisher_loss, rank_mask, rearrange_mask, score_units,
                             search_mask, unit_costs)

from conftest import make_batch, make_tiny_model
from test_model import fixed_point_sim, reference_loss

L, HEADS, F = 3, 4, 16
GEOM = dict(seq_len=8, hidden_size=16, num_heads=HEADS)
STEPS = [10, 10, 10]
BUDGETS = [round(0.1 * k, 1) for k in range(1, 11)]


@pytest.fixture
def synthetic():
    gen = torch.Generator().manual_seed(0)
    head_score = torch.rand(L, HEADS, generator=gen, dtype=torch.float64)
    neuron_score = torch.rand(L, F, generator=gen, dtype=torch.float64) * 0.3
    head_cost, neuron_cost = unit_costs(torch.ones(L, HEADS), torch.ones(L, F), STEPS, **GEOM)
    return head_score, neuron_score, head_cost, neuron_cost


def kept_score(masks, head_score, neuron_score):
    return float((masks[0] * head_score).sum() + (masks[1] * neuron_score).sum())


def fraction(masks):
    return float(acs.acs_fraction(masks[0], masks[1], STEPS, **GEOM, reference_timesteps=10))


def test_unit_costs_closed_form(synthetic):
    _, _, head_cost, neuron_cost = synthetic
    n, d, hd, t = 8, 16, 4, 10
    assert torch.allclose(head_cost, torch.full((L, HEADS), (4 * n * d * hd + 2 * n * n * hd) * t,
                                                dtype=torch.float64))
    assert torch.allclose(neuron_cost, torch.full((L, F), 2 * n * d * t, dtype=torch.float64))
    # the unit costs add up to the full count
    total = acs.count_acs(torch.ones(L, HEADS), torch.ones(L, F), STEPS, **GEOM)
    assert float(head_cost.sum() + neuron_cost.sum()) == pytest.approx(float(total))


@pytest.mark.parametrize("budget", BUDGETS)
def test_search_mask_respects_budget_and_beats_ranking(synthetic, budget):
    hs, ns, hc, nc = synthetic
    searched = search_mask(hs, ns, hc, nc, budget)
    ranked = rank_mask(hs, ns, hc, nc, budget)
    for masks in (searched, ranked):
        assert masks[0].shape == (L, HEADS) and masks[1].shape == (L, F)
        assert set(torch.cat([masks[0].flatten(), masks[1].flatten()]).tolist()) <= {0.0, 1.0}
        assert fraction(masks) <= budget + 1e-9
    assert kept_score(searched, hs, ns) >= kept_score(ranked, hs, ns) - 1e-12


def test_search_mask_is_optimal_over_head_counts(synthetic):
    """Brute force over every number k of kept (top-scored) heads: the search keeps the most."""
    hs, ns, hc, nc = synthetic
    budget = 0.45
    room = budget * float(hc.sum() + nc.sum())
    h_order = torch.argsort(hs.flatten(), descending=True)
    n_sorted = torch.sort(ns.flatten(), descending=True).values
    best = -1.0
    for k in range(L * HEADS + 1):
        left = room - k * float(hc[0, 0])
        if left < 0:
            break
        m = int(left // float(nc[0, 0]) + 1e-9)
        best = max(best, float(hs.flatten()[h_order[:k]].sum() + n_sorted[:m].sum()))
    assert kept_score(search_mask(hs, ns, hc, nc, budget), hs, ns) == pytest.approx(best)


def test_budget_one_keeps_everything(synthetic):
    hs, ns, hc, nc = synthetic
    for fn in (search_mask, rank_mask):
        h, n = fn(hs, ns, hc, nc, 1.0)
        assert torch.all(h == 1) and torch.all(n == 1)


def test_smaller_budget_never_keeps_more(synthetic):
    hs, ns, hc, nc = synthetic
    fracs = [fraction(search_mask(hs, ns, hc, nc, b)) for b in BUDGETS]
    assert fracs == sorted(fracs) and fracs[0] < 0.11 and fracs[-1] == 1.0


@pytest.mark.parametrize("budget", [0.0, -0.5, 1.01, 2.0])
def test_budget_outside_unit_interval_raises(synthetic, budget):
    for fn in (search_mask, rank_mask):
        with pytest.raises(ValueError, match="`budget`"):
            fn(*synthetic, budget)


def test_rearrange_mask_never_worse_and_keeps_counts():
    gen = torch.Generator().manual_seed(1)
    for trial in range(5):
        grads = torch.randn(6, L, F, generator=gen, dtype=torch.float64)
        grads[:, :, : F // 2] *= 0.1 + trial               # varied gradient structure
        mask = (torch.rand(L, F, generator=gen) > 0.4).float()
        mask[0] = 1.0                                        # a layer with nothing pruned
        out = rearrange_mask(mask, grads)
        assert torch.equal(out[0], mask[0])
        assert torch.equal((out == 0).sum(1), (mask == 0).sum(1))
        for l in range(L):
            before = pruned_fisher_loss(grads[:, l:l + 1], mask[l:l + 1])
            after = pruned_fisher_loss(grads[:, l:l + 1], out[l:l + 1])
            assert after <= before + 1e-12
        assert pruned_fisher_loss(grads, out) <= pruned_fisher_loss(grads, mask) + 1e-12


def test_rearrange_mask_finds_a_strictly_better_mask():
    # one sample, layer of 3 units: pruning the unit with gradient 5 costs 12.5; unit 0 or 2
    # together cancel (+1 and -1) so pruning two units {0, 2} costs 0 vs {0, 1} costing 18
    grads = torch.tensor([[[1.0, 5.0, -1.0]]], dtype=torch.float64)
    mask = torch.tensor([[0.0, 0.0, 1.0]])
    out = rearrange_mask(mask, grads)
    assert out.tolist() == [[0.0, 1.0, 0.0]]
    assert float(pruned_fisher_loss(grads, out)) == 0.0
    assert float(pruned_fisher_loss(grads, mask)) == pytest.approx(18.0)


def test_rearrange_mask_keeps_a_better_original():
    # greedy picks the smallest |g| first (0.1) and then -3: loss 0.5 * 2.9^2 = 4.205, while the
    # given mask prunes {3, -3}, whose gradients cancel exactly: it must be kept
    grads = torch.tensor([[[0.1, 3.0, -3.0, 5.0]]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    assert torch.equal(rearrange_mask(mask, grads), mask)


def test_pruned_fisher_loss_closed_form():
    grads = torch.tensor([[[1.0, 2.0], [3.0, -1.0]],
                          [[0.5, 0.5], [1.0, 1.0]]])          # [S=2, L=2, units=2]
    mask = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    # sample 0: layer 0 (1+2)^2, layer 1 (-1)^2; sample 1: (0.5+0.5)^2, 1^2 -> 0.5 * 12
    assert float(pruned_fisher_loss(grads, mask)) == pytest.approx(6.0)


def test_compute_fisher_info_is_sum_of_squares():
    gen = torch.Generator().manual_seed(2)
    gh, gn = torch.randn(5, L, HEADS, generator=gen), torch.randn(5, L, F, generator=gen)
    fh, fn = compute_fisher_info(gh, gn)
    assert fh.shape == (L, HEADS) and fn.shape == (L, F)
    assert torch.allclose(fh, sum(g ** 2 for g in gh))
    assert torch.allclose(fn, (gn * gn).sum(0))


def test_score_units_variants_and_unknown_scoring():
    hf, nf = torch.tensor([[2.0, 4.0]]), torch.tensor([[1.0, 3.0, 5.0]])
    hr, nr = torch.tensor([[0.5, 0.25]]), torch.tensor([[0.1, 0.0, 1.0]])
    expect = {"fisher": (hf, nf), "fisher_asr_neuron": (hf, nf * nr),
              "fisher_asr_attn": (hf * hr, nf), "fisher_asr": (hf * hr, nf * nr)}
    assert set(expect) == set(SCORINGS)
    for scoring, (eh, en) in expect.items():
        h, n = score_units(hf, nf, hr, nr, scoring)
        assert torch.equal(h, eh) and torch.equal(n, en), scoring
    with pytest.raises(ValueError, match="`scoring`"):
        score_units(hf, nf, hr, nr, "magnitude")


# ---- mask gradients on the tiny model ----------------------------------------------------------
def _loader(n_batches=2):
    return [make_batch(seed=i) for i in range(n_batches)]


def test_collect_mask_grads_shapes_and_rates():
    model = make_tiny_model()
    loader = _loader(2)
    gh, gn, hr, nr = collect_mask_grads(model, loader, "cpu", num_samples=100)
    assert gh.shape == (2, 2, 4) and gn.shape == (2, 2, 32)
    assert hr.shape == (2, 4) and nr.shape == (2, 32)
    assert gh.abs().sum() > 0 and gn.abs().sum() > 0
    assert torch.all((hr >= 0) & (hr <= 1)) and torch.all((nr >= 0) & (nr <= 1))
    # the ASRs are the token-weighted simulated rates
    sims = [model.spiking_bert.simulate(b["input_ids"], b["attention_mask"]) for b in loader]
    tok = sum(int(b["attention_mask"].sum()) for b in loader)
    expected = sum((s.rates[1]["intermediate"] * b["attention_mask"][..., None]).sum((0, 1))
                   for s, b in zip(sims, loader)) / tok
    assert torch.allclose(nr[1], expected)
    # num_samples stops early (3 examples per batch)
    gh1, _, _, _ = collect_mask_grads(model, loader, "cpu", num_samples=3)
    assert gh1.shape[0] == 1 and torch.allclose(gh1[0], gh[0])


def test_head_mask_gradient_matches_finite_difference(monkeypatch):
    """At a simulated fixed point, d loss / d head_mask[l, h] is the derivative of the loss of the
    equilibrium map with that head's mask scaled 1 -> 1 +- eps."""
    model = make_tiny_model(threshold=[1.1, 0.85]).double()
    batch = make_batch()
    sim = fixed_point_sim(model, batch)
    monkeypatch.setattr(model.spiking_bert, "simulate", lambda *a, **k: sim)
    gh, gn, _, _ = collect_mask_grads(model, [batch], "cpu", num_samples=3)
    eps = 1e-6
    checked = 0
    for l, h in itertools.product(range(2), range(4)):
        fds = []
        for sign in (1, -1):
            hm = torch.ones(2, 4, dtype=torch.float64)
            hm[l, h] += sign * eps
            with torch.no_grad():
                fds.append(reference_loss(model, batch, head_mask=hm).item())
        fd = (fds[0] - fds[1]) / (2 * eps)
        assert gh[0, l, h].item() == pytest.approx(fd, rel=1e-3, abs=1e-8), (l, h)
        checked += abs(fd) > 1e-4
    assert checked >= 4
    for l, j in ((0, int(gn[0, 0].abs().argmax())), (1, int(gn[0, 1].abs().argmax()))):
        nm = torch.ones(2, 32, dtype=torch.float64)
        nm[l, j] += eps
        up = reference_loss(model, batch, neuron_mask=nm).item()
        nm[l, j] -= 2 * eps
        down = reference_loss(model, batch, neuron_mask=nm).item()
        assert gn[0, l, j].item() == pytest.approx((up - down) / (2 * eps), rel=1e-3)


def test_soft_head_mask_changes_gradient_not_forward_value():
    """The soft masks enter the gradient pass only: the loss value is the simulated one."""
    model, batch = make_tiny_model(), make_batch()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    hm = torch.ones(2, 4)
    hm[1, 0] = 0.5
    hm.requires_grad_(True)
    a = model(**inputs, labels=batch["labels"], implicit=True)
    b = model(**inputs, labels=batch["labels"], implicit=True, head_mask=hm)
    assert torch.equal(a.loss, b.loss)
    hm1 = torch.ones(2, 4, requires_grad=True)
    c = model(**inputs, labels=batch["labels"], implicit=True, head_mask=hm1)
    g_half = torch.autograd.grad(b.loss, hm)[0]
    g_one = torch.autograd.grad(c.loss, hm1)[0]
    assert not torch.allclose(g_half, g_one)
