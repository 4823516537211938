"""Fixes of the code review: every bad input is refused up front with an error that names the
parameter, what is allowed and what was given; defaults taken from the model or the data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import loader, make_batch, make_tiny_model, simulate, tiny_config
from stpcore.prune import acs, spatial, temporal
from stpcore.prune.retrain import RetrainConfig, retrain
from stpcore.snn.lif import equilibrium_rate, lif_scan
from stpcore.train import loop
from stpcore.train.teacher import student_layer_map


def bad(kind, fragment, fn, *args, **kw):
    with pytest.raises(kind, match=fragment):
        fn(*args, **kw)


# ---- 1: T_conv and N come from the model and the data -------------------------------------------
def test_retrain_defaults_to_the_models_timesteps():
    model = make_tiny_model(timesteps=4)
    retrain(model, loader(1), RetrainConfig(lr=1e-9, pca_every=1), "cpu", trace_loader=loader(1),
            progress=False)
    steps = model.config.population_timesteps
    assert max(steps["embedding"], *(t for row in steps["layers"] for t in row)) <= 4


def test_evaluate_counts_costs_at_the_longest_batch_unless_given():
    seen = []
    costs = lambda model, rates, seq_len: seen.append(seq_len) or {}
    data = [make_batch(length=5), make_batch(length=7)]
    loop.evaluate(make_tiny_model(), data, "cpu", costs=costs)
    loop.evaluate(make_tiny_model(), data, "cpu", seq_len=11, costs=costs)
    assert seen == [7, 11]


# ---- 2, 5: SpikingBertConfig ---------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("binary_weights", "false"), ("learnable_threshold", "false"), ("intermediate_size", -5),
    ("vocab_size", 0), ("num_hidden_layers", 2.0), ("hidden_size", "384"),
    ("num_attention_heads", 0), ("time_chunk", True), ("num_labels", 1), ("layer_norm_eps", 0.0)])
def test_config_refuses_and_names_the_field(field, value):
    bad(ValueError, f"`{field}` must be .*got {value!r}", tiny_config, **{field: value})


def test_config_accepts_numpy_ints_and_stores_python_ints():
    cfg = tiny_config(timesteps=np.int64(9), time_chunk=np.int32(3), num_hidden_layers=np.int64(2))
    assert type(cfg.timesteps) is int and type(cfg.time_chunk) is int and cfg.timesteps == 9
    cfg.to_json_string()                                     # serialisable


def test_from_dict_validates_the_overrides():
    d = tiny_config().to_dict()
    bad(ValueError, "`timesteps` must be", type(tiny_config()).from_dict, d, timesteps=-1)


# ---- 3, 4, 13: simulate and forward --------------------------------------------------------------
def test_unsupported_simulation_dtype_is_refused():
    model, b = make_tiny_model(), make_batch()
    bad(ValueError, r"`sim_dtype` must be one of .*float32.*got torch.int32", model,
        b["input_ids"], b["attention_mask"], sim_dtype=torch.int32)
    bad(ValueError, r"`dtype` must be one of .*got torch.int32", simulate, model, b,
        dtype=torch.int32)


def test_forward_refuses_unknown_keywords():
    b = make_batch()
    bad(TypeError, "sim_dtpye", make_tiny_model(), b["input_ids"], b["attention_mask"],
        sim_dtpye=torch.int8)


@pytest.mark.parametrize("change, name", [
    (lambda b: {**b, "attention_mask": b["attention_mask"][:, :5]}, "attention_mask"),
    (lambda b: {**b, "input_ids": b["input_ids"][0]}, "input_ids"),
    (lambda b: {**b, "input_ids": torch.ones(3, 17, dtype=torch.long),
                "attention_mask": torch.ones(3, 17, dtype=torch.long),
                "token_type_ids": None}, "input_ids"),
    (lambda b: {**b, "labels": b["labels"].float()}, "labels"),
    (lambda b: {**b, "head_mask": torch.ones(3, 3)}, "head_mask")])
def test_forward_names_the_bad_input(change, name):
    bad(ValueError, f"`{name}`", make_tiny_model(), **change(make_batch()))


# ---- 12: lif_scan and equilibrium_rate -----------------------------------------------------------
@pytest.mark.parametrize("kw, name", [
    (dict(leak=2.0), "leak"), (dict(leak=-1.0), "leak"), (dict(threshold=-1.0), "threshold"),
    (dict(threshold=0.0), "threshold"), (dict(threshold=torch.ones(7)), "threshold"),
    (dict(state=(torch.zeros(1, 3), torch.zeros(1, 3))), "state")])
def test_lif_scan_checks_its_arguments(kw, name):
    bad(ValueError, f"`{name}` must be", lif_scan, torch.rand(4, 2, 3), **{"threshold": 1.0, **kw})


def test_equilibrium_rate_refuses_zero_threshold():
    bad(ValueError, "`threshold` must be a number > 0", equilibrium_rate, torch.rand(3), 0.0)


# ---- 14: set_masks, set_layer_timesteps ----------------------------------------------------------
def test_set_masks_names_the_real_fault_and_installs_nothing():
    bert = make_tiny_model().spiking_bert
    bad(ValueError, "`head_mask` must hold only 0 and 1; got 8 other value", bert.set_masks,
        torch.full((2, 4), 0.5))
    bad(ValueError, r"`neuron_mask` must be a 0/1 tensor of shape \(2, 32\); got shape \(2, 3\)",
        bert.set_masks, torch.zeros(2, 4), torch.ones(2, 3))
    assert bool((bert.head_mask == 1).all()) and bert.config.head_mask is None


def test_set_layer_timesteps_refuses_non_integers():
    bert = make_tiny_model().spiking_bert
    bad(ValueError, r"`layer_timesteps` must be None or 2 ints >= 1; got \[2.7, 2\]",
        bert.set_layer_timesteps, [2.7, 2])
    assert bert.config.layer_timesteps is None


# ---- 9: RetrainConfig ----------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("granularity", "layers"), ("penalty_fraction", 5.0), ("epochs", 0), ("t_conv", -3),
    ("seq_len", 0), ("learn_masks", "yes"), ("pca_base", 1.0), ("lr", 0.0)])
def test_retrain_config_is_validated_at_construction(field, value):
    bad(ValueError, f"RetrainConfig: `{field}` must be .*got {value!r}", RetrainConfig,
        **{field: value})


# ---- 10: the two latency readings ----------------------------------------------------------------
def test_mean_latency_is_per_layer_and_population_latency_per_population():
    assert temporal.mean_latency([85, 40, 20, 10]) == pytest.approx(38.75)
    assert acs.population_latency([85, 40, 20, 10], 4) == pytest.approx(40.6)
    assert "population_latency" in temporal.mean_latency.__doc__
    bad(ValueError, "`timesteps` must be", acs.population_latency, [], 2)
    bad(ValueError, "`n_layers` must be", acs.population_latency, [1, 2], 0)


# ---- 11, 13: prune.spatial, train.loop, student_layer_map ----------------------------------------
def test_spatial_refuses_silent_bad_input():
    mask = torch.ones(2, 4)
    bad(ValueError, r"`grads` must be a tensor \[S, L, units\]", spatial.rearrange_mask, mask,
        torch.rand(5, 3, 4))
    bad(ValueError, r"`grads` must be", spatial.rearrange_mask, mask, torch.rand(5, 2, 6))
    bad(ValueError, "`mask` must be 0/1 valued", spatial.rearrange_mask, mask * 0.5,
        torch.rand(5, 2, 4))
    hs, ns = torch.rand(2, 4), torch.rand(3, 64)
    bad(ValueError, "`neuron_score` must be", spatial.search_mask, hs, ns, torch.ones(2, 4),
        torch.ones(3, 64), 0.5)
    bad(ValueError, "`head_rate` must be", spatial.score_units, hs, torch.rand(2, 64),
        torch.rand(4), torch.rand(2, 64), "fisher_asr")


def test_empty_loaders_and_zero_samples_are_named():
    model = make_tiny_model()
    bad(ValueError, "`loader` must", loop.evaluate, model, [], "cpu")
    bad(ValueError, "`train_loader` must", loop.fit, model, [], epochs=1, lr=1e-3,
        loss_fn=None, device="cpu", progress=False)
    bad(ValueError, "`num_samples` must be an int >= 1; got 0", spatial.collect_mask_grads,
        model, loader(1), "cpu", 0)
    bad(ValueError, "`loader` must", temporal.collect_population_traces, model, [], "cpu")


@pytest.mark.parametrize("student", [0, -2, 2.0])
def test_student_layer_map_refuses_bad_counts(student):
    bad(ValueError, "`student_layers` must be an int >= 1", student_layer_map, 6, student)


# ---- 16: profile and data agree on max_length ----------------------------------------------------
def test_profile_max_length_matches_the_data_layer():
    from stpcore.runs.profiles import get_profile
    bad(ValueError, r"`max_length` must be an int in \[8, 512\]; got 4", get_profile, "smoke",
        "sst2", max_length=4)
    assert get_profile("smoke", "sst2", max_length=8).max_length == 8


# ---- 7: time_chunk ---------------------------------------------------------------------------------
def test_unrolled_results_do_not_depend_on_time_chunk():
    b = make_batch()
    rates = [simulate(make_tiny_model(time_chunk=c), b, executor="unrolled").population_rates
             for c in (1, 5, 12)]
    assert rates[0] == rates[1] == rates[2]
