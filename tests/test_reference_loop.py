"""The timestep-major reference loop (bench/reference_loop.py) and stpcore's block simulation
produce bit-identical spike rates in fp32 on CPU."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from reference_loop import ReferenceLoop, compare_rates, random_model  # noqa: E402

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16, timesteps=11, time_chunk=4,
            threshold=[0.8, 1.0])


def batch(seed=0, B=3, N=9):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (B, N), generator=gen)
    mask = torch.ones(B, N, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    return ids, mask, torch.randint(0, 2, (B, N), generator=gen)


@pytest.mark.parametrize("pruned", [False, True])
def test_reference_matches_simulate_bitwise(pruned):
    model = random_model(seed=1, **TINY)
    if pruned:
        heads = torch.ones(2, 4)
        heads[0, 1] = heads[1, 3] = 0
        neurons = (torch.rand(2, 64, generator=torch.Generator().manual_seed(2)) > 0.4).float()
        model.spiking_bert.set_masks(heads, neurons)
    ids, mask, types = batch()
    sim = model.spiking_bert.simulate(ids, mask, types, prune_kv=False)
    ref = ReferenceLoop(model).simulate(ids, mask, types)
    assert compare_rates(sim, ref) == {"max_abs_asr_diff": 0.0, "frac_rates_differing": 0.0}
    if pruned:          # skipping pruned heads' Key and Value changes only their own rates
        lean = model.spiking_bert.simulate(ids, mask, types)
        for l in range(2):
            cols = torch.arange(32).view(4, 8)[heads[l] == 0].flatten()
            for p, r in lean.rates[l].items():
                full = sim.rates[l][p].clone()
                if p in ("key", "value"):
                    assert full[..., cols].sum() > 0 and torch.all(r[..., cols] == 0)
                    full[..., cols] = 0
                assert torch.equal(r, full), (l, p)
        assert lean.population_rates == sim.population_rates
    rates = [float(r.mean()) for layer in ref["layers"] for r in layer.values()]
    assert 0.02 < min(rates[i] for i in (0, 1, 3, 5)) and max(rates) < 0.98   # real activity
    assert len(ref["log"]) == 11 and all(len(step) == 1 + 2 * 6 for step in ref["log"])


def test_reference_differs_when_weights_differ():
    model = random_model(seed=1, **TINY)
    ids, mask, types = batch()
    ref = ReferenceLoop(model).simulate(ids, mask, types)
    with torch.no_grad():
        model.spiking_bert.layers[0].key.weight.mul_(1.5)
    cmp = compare_rates(model.spiking_bert.simulate(ids, mask, types), ref)
    assert cmp["max_abs_asr_diff"] > 0 and 0 < cmp["frac_rates_differing"] < 1


def test_bench_times_the_int8_path_only_for_1bit_models():
    """bench_sim.py --binary: int8 joins fp32 and bf16 once every encoder linear is 1-bit, and
    its rates compare with the fp32 reference loop's (they need not be equal: the reference
    rounds every addition, the integer path once; tests/test_integer.py checks exactness)."""
    from bench_sim import sim_dtypes
    model = random_model(seed=0, vocab_size=100, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, timesteps=6)
    assert [n for n, _ in sim_dtypes(model)] == ["fp32", "bf16"]
    model.spiking_bert.set_binary_weights(True)
    assert [n for n, _ in sim_dtypes(model)] == ["fp32", "bf16", "int8"]
    ids = torch.randint(1, 100, (2, 5), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    ref = ReferenceLoop(model).simulate(**batch)
    cmp = compare_rates(model.spiking_bert.simulate(**batch, dtype=torch.int8), ref)
    assert 0 <= cmp["max_abs_asr_diff"] <= 1 and 0 <= cmp["frac_rates_differing"] < 0.5


def test_bench_training_times_a_step_in_every_simulation_dtype(monkeypatch):
    """bench_sim's training bench: fp32 at the top level, bf16 and int8 under ``dtypes``, each
    forward and step simulating in its own dtype (issue 12 bounds int8's step)."""
    from bench_sim import SIZES, Timer, bench_training
    model = random_model(seed=0, vocab_size=100, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, timesteps=6)
    model.spiking_bert.set_binary_weights(True)
    seen, simulate = [], model.spiking_bert.simulate
    monkeypatch.setattr(model.spiking_bert, "simulate",
                        lambda *a, **k: seen.append(k["dtype"]) or simulate(*a, **k))
    autocast, equilibrium = [], model.spiking_bert.equilibrium      # the Eq. 4 pass's dtype
    monkeypatch.setattr(model.spiking_bert, "equilibrium", lambda *a, **k: autocast.append(
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu")) or equilibrium(*a, **k))
    ids = torch.randint(1, 100, (2, 5), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    cpu = torch.device("cpu")
    res = bench_training(model, batch, torch.tensor([0, 1]), Timer(cpu), {**SIZES["small"], "reps": 1}, cpu)
    assert set(res["dtypes"]) == {"bf16", "int8"} and "peak_gib_chunk32" not in res     # memory: CUDA
    for r in (res, *res["dtypes"].values()):
        assert r["train_step_s"] > 0 and r["train_over_forward"] == r["train_step_s"] / r["forward_s"]
    for r in res["dtypes"].values():        # and again with the Eq. 4 pass in bf16
        b = r["implicit_bf16"]
        assert b["train_step_s"] > 0 and b["train_over_forward"] == b["train_step_s"] / r["forward_s"]
    assert "implicit_bf16" not in res
    # Timer: a warm-up and one timed call each; fp32 forward + step, others forward + 2 steps
    assert seen.count(torch.float32) == 4 and seen.count(torch.int8) == seen.count(torch.bfloat16) == 6
    assert autocast.count(torch.bfloat16) == 4 and autocast.count(False) == 6


def test_profile_sim_records_every_setting_and_dtype(tmp_path):
    """bench/profile_sim.py at smoke size on CPU: one run per pruning setting and dtype, each
    with a wall time and a non-empty kernel breakdown that sums to its kernel time."""
    import json
    from bench_sim import SIZES
    from profile_sim import SETTINGS, main
    main(["--device", "cpu", "--size", "small", "--out", str(tmp_path / "p.json")])
    rec = json.loads((tmp_path / "p.json").read_text())
    assert set(rec["runs"]) == {f"{s}_{d}" for s in SETTINGS for d in ("bf16", "int8")}
    for run in rec["runs"].values():
        assert run["wall_ms"] > 0 and run["kernels"]
        assert abs(sum(k["ms"] for k in run["kernels"].values()) - run["kernel_ms"]) < 1e-6
    assert any("bernoulli" in k for k in rec["runs"]["temporal_int8"]["kernels"])   # Eq. 11 samples
    # every population draws [t^l, B, N, width] from each presynaptic population's rates
    from stpcore.snn.layer import PRESYNAPTIC
    (hidden, inter), s = SIZES["small"]["widths"][0], SIZES["small"]
    per_step = sum(inter if q == "intermediate" else hidden for qs in PRESYNAPTIC.values() for q in qs)
    want = sum(rec["layer_timesteps"]) * s["batch"] * s["seq"] * per_step
    assert per_step == 9 * hidden + inter
    for name, run in rec["runs"].items():
        assert run["bernoulli_draws"] == (want if name.startswith("temporal") else 0)
        # the dense runs time the preparation and the executor apart (the CUDA graph: CUDA only)
        split = run.get("host_split")
        assert (split is not None) == name.startswith("dense")
        assert split is None or (set(split) == {"prepare_ms", "core_eager_ms"} and
                                 split["prepare_ms"] > 0 and split["core_eager_ms"] > 0)


def test_profile_sim_rejects_an_unknown_setting():
    from profile_sim import apply_setting
    with pytest.raises(ValueError, match="`setting` must be one of"):
        apply_setting(None, "both", [], None, None)


def test_device_gaps_measure_idle_time_between_overlapping_kernels():
    """Kernels [0, 100] and [50, 150] overlap (busy 150 us), then gaps of 250 and 20 us before
    [400, 500] and [520, 530]: span 530 us, idle 270 us, longest gap first with its neighbours."""
    from types import SimpleNamespace as NS
    from profile_sim import device_gaps
    cuda = torch.autograd.DeviceType.CUDA
    events = [NS(time_range=NS(start=a, end=b), name=n, device_type=cuda)
              for a, b, n in ((400, 500, "c"), (0, 100, "a"), (50, 150, "b"), (520, 530, "d"))]
    prof = NS(events=lambda: events, key_averages=lambda: [])
    got = device_gaps(prof)
    assert got["device_span_ms"] == pytest.approx(0.53) and got["device_idle_ms"] == pytest.approx(0.27)
    assert got["longest_gaps"][0] == {"ms": pytest.approx(0.25), "after": "b", "before": "c"}
    assert [g["before"] for g in got["longest_gaps"]] == ["c", "d"] and got["host_ops"] == {}
    assert device_gaps(NS(events=lambda: [], key_averages=lambda: [])) == {}


def test_compiled_step_records_a_failure_and_restores_the_method():
    """bench_sim.compiled_step (CUDA-only in the bench): an unusable compile mode is recorded as
    an error, not raised, and ``equilibrium`` is the model's method again afterwards."""
    from bench_sim import Timer, compiled_step
    from conftest import make_tiny_model
    bert = make_tiny_model().spiking_bert
    out = compiled_step(bert, lambda: None, "no-such-mode", Timer(torch.device("cpu")), 1)
    assert out["mode"] == "no-such-mode" and "no-such-mode" in out["error"]
    assert "equilibrium" not in vars(bert) and bert.equilibrium.__func__ is type(bert).equilibrium
