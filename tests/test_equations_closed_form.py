"""Closed-form checks of equations whose earlier tests could not tell a right from a wrong variant
(the mutation review of fc94d37): the PCA component count (centring, s^2), the head ASR of Eq. 7
(head columns, padding), the greedy rearrangement's cross term, Eq. 14's layer-1 input rate and
the Eq. 12 penalty at the installed per-population timesteps."""
import contextlib
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import stpcore.prune.retrain as retrain_mod
from stpcore.prune import acs
from stpcore.prune.retrain import RetrainConfig, retrain
from stpcore.prune.spatial import collect_mask_grads, pruned_fisher_loss, rearrange_mask
from stpcore.prune.temporal import count_components

from conftest import loader, make_tiny_model


# ---- PCA component count c (Sec. III-B2) ------------------------------------------------------
def _trace(mean):
    """``[4, 2]`` trace: column means ``mean``; centred, singular values 3 and 1 (u1, u2 below
    are orthonormal and orthogonal to the ones vector, V = I): explained variance 0.9 and 0.1."""
    u1 = torch.tensor([1.0, -1.0, 1.0, -1.0]) / 2
    u2 = torch.tensor([1.0, 1.0, -1.0, -1.0]) / 2
    return torch.stack([3 * u1, 1 * u2], dim=1) + torch.tensor(mean)


def test_count_components_squares_singular_values():
    # s^2 ratios [0.9, 0.1]: 0.85 is reached by one component, 0.95 needs two. With s instead
    # of s^2 the ratios are [0.75, 0.25]: two components at 0.85.
    trace = _trace([0.0, 0.0])
    assert count_components(trace, 0.85) == 1
    assert count_components(trace, 0.9) == 1
    assert count_components(trace, 0.95) == 2


def test_count_components_centres_the_columns():
    # Means [1, 2] (a trace of rates is all positive in practice): centred, the same 0.9 / 0.1
    # split as above. Uncentred, X^T X = diag(9, 1) + 4 m m^T = [[13, 8], [8, 17]], eigenvalues
    # 15 +- sqrt(68), the first explaining 0.775 < 0.85: two components.
    trace = _trace([1.0, 2.0])
    assert torch.allclose(trace.mean(0), torch.tensor([1.0, 2.0]))
    assert count_components(trace, 0.85) == 1
    assert count_components(trace, 0.95) == 2
    assert count_components(trace + 5.0, 0.85) == 1        # any offset: centring removes it


# ---- head ASR of Eq. 7 (collect_mask_grads) ----------------------------------------------------
class _FakeBert:
    def __init__(self, layers, heads, head_size, width):
        self.head_mask = torch.ones(layers, heads)
        self.neuron_mask = torch.ones(layers, width)
        self.config = SimpleNamespace(num_attention_heads=heads, hidden_size=heads * head_size)

    def cache_weights(self):
        return contextlib.nullcontext()


class _FakeModel(nn.Module):
    """Reports fixed per-token population rates; loss linear in the masks."""

    def __init__(self, attention, intermediate):
        super().__init__()
        self.attention, self.intermediate = attention, intermediate      # [B, N, D], [B, N, F]
        layers = 1
        self.spiking_bert = _FakeBert(layers, 2, 3, intermediate.shape[-1])

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None, head_mask=None,
                neuron_mask=None, implicit=True, sim_dtype=None):
        loss = (head_mask * torch.arange(1.0, 3.0)).sum() + neuron_mask.sum()
        rates = [{"attention": self.attention, "intermediate": self.intermediate}]
        return SimpleNamespace(loss=loss, simulation=SimpleNamespace(rates=rates))


def test_head_rates_group_contiguous_columns_over_valid_tokens():
    # 2 heads of 3 columns; column c fires at rate col[c] on every valid token, padded tokens
    # at rate 1. ASR of head h = mean over its columns 3h..3h+2 and over valid tokens only:
    # [0.2, 0.7]. Interleaved columns (0, 2, 4 | 1, 3, 5) would give [0.367, 0.533]; counting
    # padded tokens would raise both.
    col = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])                     # 5 valid tokens, 1 padded
    attention = torch.where(mask[..., None].bool(), col, torch.ones(6)).float()
    neuron = torch.tensor([0.25, 0.5, 1.0, 0.0])
    intermediate = torch.where(mask[..., None].bool(), neuron, torch.ones(4)).float()
    model = _FakeModel(attention, intermediate)
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": mask,
             "labels": torch.tensor([0, 1])}
    gh, gn, hr, nr = collect_mask_grads(model, [batch], "cpu", num_samples=10)
    assert torch.allclose(hr, torch.tensor([[0.2, 0.7]]), atol=1e-6), hr
    assert torch.allclose(nr, neuron[None], atol=1e-6), nr
    assert torch.equal(gh, torch.tensor([[[1.0, 2.0]]])) and torch.equal(gn, torch.ones(1, 1, 4))


def test_head_rates_of_the_tiny_model_are_its_simulated_attention_rates():
    """On the tiny model (a padded batch): hr[l, h] = token-weighted mean of the attention
    population's rate over head h's columns h*H .. h*H + H - 1, padded tokens left out."""
    model = make_tiny_model()
    batches = loader(2)
    _, _, hr, _ = collect_mask_grads(model, batches, "cpu", num_samples=100)
    heads, d = 4, 16
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    sims = [model.spiking_bert.simulate(b["input_ids"], b["attention_mask"], b["token_type_ids"])
            for b in batches]
    for l in range(2):
        total = sum((sim.rates[l]["attention"] * b["attention_mask"][..., None]).sum((0, 1))
                    for sim, b in zip(sims, batches))
        expected = total.view(heads, d // heads).mean(-1) / tokens
        assert torch.allclose(hr[l], expected, atol=1e-6), (l, hr[l], expected)


# ---- greedy rearrangement (Kwon et al.): the cross term 2 r.g ---------------------------------
def test_rearrange_greedy_uses_the_exact_loss_increase():
    # One sample, gradients [1, 1.4, -2.5], two units pruned. Pruning j after the set with sum r
    # raises (r + g_j)^2 - r^2 = 2 r g_j + g_j^2. Greedy: unit 0 first (g^2 = 1, r = 1); then
    # unit 1 costs 2.8 + 1.96 = 4.76, unit 2 costs -5 + 6.25 = 1.25: unit 2, loss
    # 0.5 (1 - 2.5)^2 = 1.125, better than the given {0, 1} (0.5 * 2.4^2 = 2.88), so it is
    # taken. Without the factor 2 unit 1 (3.36 < 3.75) would be picked: {0, 1} again.
    grads = torch.tensor([[[1.0, 1.4, -2.5]]], dtype=torch.float64)
    mask = torch.tensor([[0.0, 0.0, 1.0]])
    out = rearrange_mask(mask, grads)
    assert out.tolist() == [[0.0, 1.0, 0.0]]
    assert float(pruned_fisher_loss(grads, out)) == pytest.approx(1.125)
    assert float(pruned_fisher_loss(grads, mask)) == pytest.approx(2.88)


# ---- Eq. 14: the first layer's Q/K/V read the embedding population's rate -------------------
def test_normalized_c_layer_one_inputs_use_the_embedding_rate():
    """One layer, all units kept, per-population timesteps: #C by hand, connection by
    connection (Eq. 14, 17-21), with an embedding rate unlike the layer's output rate."""
    n, d, heads, f, t_conv = 5, 8, 2, 6, 10
    hd = d // heads
    t_k, t_v, t_attn, t_fc, t_inter, t_out = 2, 3, 4, 5, 6, 7
    steps = {"embedding": 9, "layers": [[t_k, t_v, t_attn, t_fc, t_inter, t_out]]}
    a = dict(embedding=0.5, key=0.1, value=0.2, attention=0.3, attention_output=0.4,
             intermediate=0.05, output=0.9)
    rates = {"embedding": a["embedding"],
             "layers": [[a[p] for p in ("key", "value", "attention", "attention_output",
                                        "intermediate", "output")]]}
    kept = dict(head_mask=torch.ones(1, heads), neuron_mask=torch.ones(1, f))
    numerator = (a["embedding"] * n * d * hd * heads * (t_attn + t_k + t_v)     # Q, K, V
                 + (a["key"] + a["value"]) * n * n * hd * heads * t_attn           # scores, context
                 + a["attention"] * n * d * hd * heads * t_fc                      # attention output
                 + a["attention_output"] * n * d * f * t_inter                     # intermediate
                 + a["intermediate"] * n * d * f * t_out)                          # output
    full = (heads * (3 * n * d * hd + 2 * n * n * hd + n * d * hd) + f * 2 * n * d) * t_conv
    got = acs.normalized_c(rates, kept["head_mask"], kept["neuron_mask"], steps, seq_len=n,
                           hidden_size=d, num_heads=heads, reference_timesteps=t_conv)
    assert got == pytest.approx(numerator / full, rel=1e-12)
    # only the embedding rate changes: #C moves by its Q/K/V share alone
    rates["embedding"] = 0.0
    low = acs.normalized_c(rates, kept["head_mask"], kept["neuron_mask"], steps, seq_len=n,
                           hidden_size=d, num_heads=heads, reference_timesteps=t_conv)
    assert got - low == pytest.approx(0.5 * n * d * hd * heads * (t_attn + t_k + t_v) / full,
                                      rel=1e-9)


# ---- Eq. 12: the penalty M(h, n, t) at the installed per-population timesteps ------------------
POP_T = {"embedding": 7, "layers": [[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]]}
GEOM = dict(seq_len=7, hidden_size=16, num_heads=4)


def _pop_logit_grads(monkeypatch, lam):
    """Mask-logit gradients of one retraining step of the tiny model at ``POP_T``."""
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: None)
    seen = {}
    real = retrain_mod.fit

    def fit(model, train_loader, **kw):
        seen["logits"] = kw["extra_modules"][0]
        return real(model, train_loader, **kw)

    monkeypatch.setattr(retrain_mod, "fit", fit)
    model = make_tiny_model()
    model.spiking_bert.set_population_timesteps(POP_T)
    assert model.config.per_population_timesteps == POP_T
    cfg = RetrainConfig(epochs=1, lr=1e-9, learn_masks=True, penalty_lambda=lam,
                        penalty_fraction=1.0, mask_lr=1e-9, mask_init=2.0, seq_len=7,
                        penalty_reference_width=None)
    out = retrain(model, loader(1), cfg, "cpu", progress=False)
    assert out["penalty_steps"] == (1 if lam > 0 else 0)
    return seen["logits"].head.grad.clone(), seen["logits"].neuron.grad.clone()


@pytest.mark.filterwarnings("ignore:retrain. mask logits start")      # mask_lr 1e-9 on purpose
def test_penalty_gradient_uses_the_installed_population_timesteps(monkeypatch):
    # dL/dz = lambda dM(h, n, POP_T)/dm sigmoid'(z), m = sigmoid(2) everywhere. At POP_T a head
    # of layer 1 costs N D H (t_Attn + t_K + t_V) + 2 N^2 H t_Attn + N D H t_FC, far from its
    # cost at the uniform T_conv = 12.
    s = torch.sigmoid(torch.tensor(2.0))
    h = torch.full((2, 4), float(s), requires_grad=True)
    n = torch.full((2, 32), float(s), requires_grad=True)
    dh, dn = torch.autograd.grad(acs.count_acs(h, n, POP_T, **GEOM), (h, n))
    uh, un = torch.autograd.grad(acs.count_acs(h, n, [12, 12], **GEOM), (h, n))
    assert not torch.allclose(dh, uh, rtol=0.05)                   # the two readings differ
    lam = 1.0 / float(torch.cat([dh.flatten(), dn.flatten()]).abs().max())
    base_h, base_n = _pop_logit_grads(monkeypatch, 0.0)
    gh, gn = _pop_logit_grads(monkeypatch, lam)
    ds = s * (1 - s)
    assert torch.allclose(gh - base_h, lam * dh * ds, rtol=1e-3, atol=1e-6)
    assert torch.allclose(gn - base_n, lam * dn * ds, rtol=1e-3, atol=1e-6)
    assert float((gh - base_h).abs().max()) > 0.1
