"""The paper's pruning experiments as pipeline stages (Tables II-V, Figs. 3-5).

Post-training spatial pruning shares one Fisher pass per task (cached beside the checkpoints).
Retraining stages run ``retrain_epochs`` over ``retrain_limit`` training examples.
"""
from __future__ import annotations

import os
import time
import warnings

import torch

from .runner import Run, stage
from ..prune.retrain import RetrainConfig, measure_traces, reallocate_timesteps, retrain
from ..prune.spatial import (SCORINGS, collect_mask_grads, compute_fisher_info, rearrange_mask,
                      score_units, search_mask, unit_costs)
from ..prune.acs import acs_fraction, population_latency
from ..prune.temporal import (allocate_timesteps, count_components, flatten_populations,
                              population_components, running_rate, unflatten_populations)


def dtype_name(dtype: torch.dtype) -> str:
    """A simulation dtype as profiles and records spell it ("float32", "bfloat16", "int8")."""
    return str(dtype).removeprefix("torch.")


def fisher_info(run: Run, model) -> dict:
    """Mask gradients and unit ASRs of the 1-bit baseline on ``fisher_samples`` train examples,
    cached per baseline checkpoint and simulation dtype (a retrained baseline gets a new cache
    file; a re-evaluated one, ``Run.evaluated_as_now``, keeps it)."""
    p, dtype = run.profile, run.sim_dtype_for(model)
    prov = run.record("baseline")["provenance"]
    made = (prov.get("checkpoint_sha256") or prov["finished"].replace(":", ""))[:16]
    path = run.checkpoint(f"fisher-{made}-{p.fisher_samples}x{p.fisher_batch_size}-"
                          f"{dtype_name(dtype)}.pt")
    if path.exists():
        try:
            info = torch.load(path)
            if set(info) >= {"head_grads", "neuron_grads", "head_rate", "neuron_rate", "seconds"}:
                return info
            raise ValueError("missing keys")
        except Exception as err:                    # truncated or foreign: say so, recompute
            warnings.warn(f"Fisher cache {str(path)!r} is unreadable ({err}); recomputing it")
            path.unlink()
    start = time.perf_counter()
    loader = run.loader("train", batch_size=p.fisher_batch_size, limit=p.fisher_samples)
    hg, ng, hr, nr = collect_mask_grads(model, loader, run.device, p.fisher_samples, dtype)
    info = {"head_grads": hg, "neuron_grads": ng, "head_rate": hr, "neuron_rate": nr,
            "seconds": time.perf_counter() - start}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(info, tmp)
    os.replace(tmp, path)                           # a kill never leaves half a cache
    return info


def prune_spatial(run: Run, model, info: dict, scoring: str, budget: float) -> dict:
    """Score, search under the AC budget, rearrange; install the masks. Returns timings."""
    start = time.perf_counter()
    cfg, bert = model.config, model.spiking_bert
    ones_h, ones_n = torch.ones_like(bert.head_mask).cpu(), torch.ones_like(bert.neuron_mask).cpu()
    hc, nc = unit_costs(ones_h, ones_n, cfg.per_layer_timesteps, run.profile.max_length,
                        cfg.hidden_size, cfg.num_attention_heads)
    hf, nf = compute_fisher_info(info["head_grads"], info["neuron_grads"])
    hs, ns = score_units(hf, nf, info["head_rate"], info["neuron_rate"], scoring)
    h, n = search_mask(hs, ns, hc, nc, budget)
    # rearrangement on gradients weighted so that their diagonal Fisher equals the chosen score
    hw = info["head_rate"].sqrt() if scoring in ("fisher_asr_attn", "fisher_asr") else 1.0
    nw = info["neuron_rate"].sqrt() if scoring in ("fisher_asr_neuron", "fisher_asr") else 1.0
    h = rearrange_mask(h, info["head_grads"] * hw)
    n = rearrange_mask(n, info["neuron_grads"] * nw)
    bert.set_masks(h, n)
    return {"search_seconds": time.perf_counter() - start, "kept_heads": h.sum(1).int().tolist(),
            "kept_neurons": n.sum(1).int().tolist()}


def retrain_config(run: Run, **kw) -> RetrainConfig:
    p = run.profile
    base = dict(epochs=p.retrain_epochs, lr=p.retrain_lr, penalty_lambda=p.ac_penalty_lambda,
                penalty_fraction=p.penalty_fraction, mask_lr=p.mask_lr,
                penalty_reference_width=p.penalty_reference_width,
                freeze_masks=p.freeze_masks, threshold_lr=p.threshold_lr,
                pca_variance=p.pca_variance, pca_base=p.pca_base,
                t_conv=p.t_conv, seq_len=p.max_length, granularity=p.temporal_granularity)
    return RetrainConfig(**{**base, **kw})


def run_retrain(run: Run, model, **kw) -> dict:
    p = run.profile
    cfg = retrain_config(run, **kw)
    limit = p.retrain_limit or p.train_limit
    out = retrain(model, run.loader("train", limit=limit), cfg, run.device,
                  heldout_loader=run.loader("heldout"), trace_loader=trace_loader(run),
                  progress=p.progress, sim_dtype=run.sim_dtype_for(model))
    return {**run.dev_metrics(model), **out}


def trace_loader(run: Run):
    return run.loader("heldout", limit=run.profile.trace_samples)


def post_temporal(run: Run, model) -> dict:
    """Post-training temporal pruning (Eq. 10) at the profile's base; installs the timesteps."""
    p = run.profile
    comps, _ = reallocate_timesteps(model, trace_loader(run), run.device, p.pca_variance,
                                    p.pca_base, p.t_conv, run.sim_dtype_for(model),
                                    p.temporal_granularity)
    return {"components": comps, "temporal_granularity": p.temporal_granularity}


def scaled(steps, scale: float):
    """Table III/V's adaptive-threshold setting: the timesteps scaled down, each at least 1;
    a per-layer list or the per-population dict (every population's timesteps scaled)."""
    if isinstance(steps, dict):
        return {"embedding": max(1, round(steps["embedding"] * scale)),
                "layers": [[max(1, round(t * scale)) for t in row] for row in steps["layers"]]}
    return [max(1, round(t * scale)) for t in steps]


def install_timesteps(model, steps) -> None:
    """Per-layer list -> ``layer_timesteps``; per-population dict -> ``population_timesteps``;
    None -> T_conv everywhere."""
    if isinstance(steps, dict):
        model.spiking_bert.set_population_timesteps(steps)
    else:
        model.spiking_bert.set_layer_timesteps(steps)


# ---- Table II: post-training spatial pruning, four scorings --------------------------------------
def _spatial_stage(scoring: str):
    def fn(run: Run):
        model = run.model("baseline")
        info = fisher_info(run, model)
        timing = prune_spatial(run, model, info, scoring, run.profile.ac_budget)
        timing["fisher_seconds"] = info["seconds"]
        timing["pruning_seconds"] = info["seconds"] + timing["search_seconds"]
        return {**run.dev_metrics(model), **timing}, model
    fn.__doc__ = f"Post-training spatial pruning scored by {scoring} (Table II)."
    return fn


for _scoring in SCORINGS:
    stage(f"spatial_{_scoring}", needs=("baseline",))(_spatial_stage(_scoring))


@stage("spatial_retrain", needs=("spatial_fisher_asr",))
def stage_spatial_retrain(run: Run):
    model = run.model("spatial_fisher_asr")
    return run_retrain(run, model, learn_masks=True), model


@stage("lambda_sweep", needs=("spatial_fisher_asr",))
def stage_lambda_sweep(run: Run):
    """The AC penalty's strength: retraining the post-training spatially pruned model with
    learned masks at ``lambda_sweep`` multiples of Table I's lambda."""
    p, points = run.profile, []
    for mult in p.lambda_sweep:
        model = run.model("spatial_fisher_asr")            # fresh each time
        lam = mult * p.ac_penalty_lambda
        out = run_retrain(run, model, learn_masks=True, penalty_lambda=lam)
        points.append({"multiplier": mult, "lambda": lam,
                       **{k: out[k] for k in ("dev_accuracy", "heldout_accuracy", "acs_fraction",
                                              "normalized_c", "mask_flips")}})
    return {"points": points}, None


@stage("temporal_pca", needs=("baseline",))
def stage_temporal_pca(run: Run):
    model = run.model("baseline")
    extra = post_temporal(run, model)
    return {**run.dev_metrics(model), **extra}, model


@stage("temporal_retrain", needs=("temporal_pca",))
def stage_temporal_retrain(run: Run):
    model = run.model("temporal_pca")
    return run_retrain(run, model, pca_every=run.profile.pca_every), model


@stage("two_stage", needs=("spatial_retrain",))
def stage_two_stage(run: Run):
    """Spatial (post-training + retraining), then temporal (PCA + retraining with the activity loss)."""
    model = run.model("spatial_retrain")
    extra = post_temporal(run, model)
    post = run.dev_metrics(model)
    out = run_retrain(run, model, learn_masks=True, pca_every=run.profile.pca_every,
                      activity_eta=run.profile.activity_eta)
    return {**out, **extra, "post_temporal_dev_accuracy": post["dev_accuracy"]}, model


@stage("joint_retrain", needs=("spatial_fisher_asr", "temporal_pca"))
def stage_joint_retrain(run: Run):
    """Table IV: spatial masks and PCA timesteps applied at once, one retraining."""
    model = run.model("spatial_fisher_asr")
    metrics = run.record("temporal_pca")["metrics"]
    sublayer = run.profile.temporal_granularity == "sublayer" and "population_timesteps" in metrics
    install_timesteps(model, metrics["population_timesteps"] if sublayer
                      else metrics["layer_timesteps"])
    return run_retrain(run, model, learn_masks=True, pca_every=run.profile.pca_every), model


def retrain_adaptive(run: Run, source: str):
    """Table III/V's adaptive threshold: the timestep list of ``source``'s model scaled down
    by ``adaptive_scale``, then retraining with learnable per-layer thresholds."""
    model = run.model(source)
    cfg = model.config
    steps = (cfg.per_population_timesteps if cfg.population_timesteps is not None
             else cfg.per_layer_timesteps)
    install_timesteps(model, scaled(steps, run.profile.adaptive_scale))
    return run_retrain(run, model, learnable_threshold=True), model


@stage("adaptive_threshold", needs=("two_stage",))
def stage_adaptive_threshold(run: Run):
    """Table III/V: the two-stage pruned model with the adaptive threshold."""
    return retrain_adaptive(run, "two_stage")


@stage("baseline_adaptive", needs=("baseline",))
def stage_baseline_adaptive(run: Run):
    """Table V: the unpruned baseline with the adaptive threshold."""
    return retrain_adaptive(run, "baseline")[0], None


# ---- Figures ------------------------------------------------------------------------------------
@stage("activity_ablation", needs=("baseline",))
def stage_activity_ablation(run: Run):
    """Fig. 3: retraining with and without the activity loss, per-epoch ASR and #C."""
    out, start = {}, None
    for name, eta in (("with", run.profile.activity_eta), ("without", 0.0)):
        model = run.model("baseline")
        start = start or run.dev_metrics(model)          # the same baseline both times
        res = run_retrain(run, model, activity_eta=eta, epochs=max(2, run.profile.retrain_epochs))
        first = {"epoch": 0, "layer_asr": start["layer_asr"], "normalized_c": start["normalized_c"],
                 "heldout_accuracy": start["heldout_accuracy"]}
        out[name] = {"eta": eta, "history": [first] + res["history"],
                     "dev_accuracy": res["dev_accuracy"], "normalized_c": res["normalized_c"]}
    return out, None


@stage("budget_sweep", needs=("baseline",))
def stage_budget_sweep(run: Run):
    """Fig. 4a: post-training spatial pruning (Fisher x ASR) at AC budgets 0.4-1.0."""
    model = run.model("baseline")
    info = fisher_info(run, model)
    points = []
    for budget in run.profile.budget_sweep:
        prune_spatial(run, model, info, "fisher_asr", budget)    # replaces the previous masks
        m = run.dev_metrics(model)
        points.append({"budget": budget, **{k: m[k] for k in ("dev_accuracy", "heldout_accuracy",
                                                               "acs_fraction", "normalized_c")}})
    return {"points": points}, None


@stage("base_sweep", needs=("baseline",))
def stage_base_sweep(run: Run):
    """Fig. 4b: post-training temporal pruning at PCA bases 1.0-1.2 (1.0 = no pruning)."""
    p = run.profile
    model = run.model("baseline")
    g = p.temporal_granularity
    traces = measure_traces(model, trace_loader(run), run.device, run.sim_dtype_for(model), g)
    flat = traces if g == "layer" else flatten_populations(traces)
    comps = [count_components(running_rate(t), p.pca_variance) for t in flat]
    points = []
    for base in p.base_sweep:
        steps = allocate_timesteps(comps, base, p.t_conv) if base > 1 else None
        if steps is not None and g == "sublayer":
            steps = unflatten_populations(steps)
        install_timesteps(model, steps)
        m = run.dev_metrics(model)
        points.append({"base": base, "layer_timesteps": model.config.per_layer_timesteps,
                       "population_timesteps": model.config.per_population_timesteps,
                       **{k: m[k] for k in ("dev_accuracy", "heldout_accuracy", "acs_fraction",
                                            "normalized_c", "mean_latency")}})
    return {"components": comps if g == "layer" else unflatten_populations(comps),
            "temporal_granularity": g, "points": points}, None


@stage("random_mask", needs=("baseline",))
def stage_random_mask(run: Run):
    """Fig. 5: retraining from a random mask at the same AC budget (no post-training step)."""
    model = run.model("baseline")
    bert, cfg = model.spiking_bert, model.config
    gen = torch.Generator().manual_seed(run.seed)
    hc, nc = unit_costs(bert.head_mask.cpu(), bert.neuron_mask.cpu(), cfg.per_layer_timesteps,
                        run.profile.max_length, cfg.hidden_size, cfg.num_attention_heads)
    h, n = search_mask(torch.rand(hc.shape, generator=gen), torch.rand(nc.shape, generator=gen),
                       hc, nc, run.profile.ac_budget)
    bert.set_masks(h, n)
    post = run.dev_metrics(model)
    out = run_retrain(run, model, learn_masks=True)
    return {**out, "post_mask_dev_accuracy": post["dev_accuracy"]}, None


@stage("precision_check", needs=("baseline",))
def stage_precision_check(run: Run):
    """The 1-bit baseline simulated in fp32 (the exact path) and in the dtype the pruning stages
    simulate it in (``Run.sim_dtype_for``: the profile's ``sim_dtype``, or int8): dev and
    held-out accuracy, Normalized #C and the dev predictions of each, on the same checkpoint
    (so the two pair over the dev examples)."""
    model = run.model("baseline")
    keys = ("dev_accuracy", "heldout_accuracy", "normalized_c", "dev_predictions", "dev_labels")
    out = {}
    for dtype in dict.fromkeys((torch.float32, run.sim_dtype_for(model))):
        m = run.dev_metrics(model, dtype)
        out[dtype_name(dtype)] = {k: m[k] for k in keys}
    return out, None


@stage("temporal_readings", needs=("baseline",))
def stage_temporal_readings(run: Run):
    """The evidence for the temporal granularity: c of every population under four trace
    readings (running vs per-step rates; tokens averaged vs per-example traces), and for each
    reading the Eq. 10 allocation at both granularities (per population, and per layer from
    each layer's output population) with the ACs and latency it keeps. No accuracy: the
    allocations are closed-form from the c."""
    p = run.profile
    model = run.model("baseline")
    cfg, L = model.config, model.config.num_hidden_layers
    readings = population_components(model, trace_loader(run), run.device, p.pca_variance,
                                     sim_dtype=run.sim_dtype_for(model))
    ones = (torch.ones(L, cfg.num_attention_heads), torch.ones(L, cfg.intermediate_size))
    geometry = dict(seq_len=p.max_length, hidden_size=cfg.hidden_size,
                    num_heads=cfg.num_attention_heads, reference_timesteps=p.t_conv)
    out = {}
    for name, comps in readings.items():
        per_pop = unflatten_populations(allocate_timesteps(flatten_populations(comps),
                                                           p.pca_base, p.t_conv))
        per_layer = allocate_timesteps([row[-1] for row in comps["layers"]], p.pca_base, p.t_conv)
        out[name] = {"components": comps, "allocation": {
            "sublayer": {"timesteps": per_pop, "mean_latency": population_latency(per_pop, L),
                         "acs_fraction": float(acs_fraction(*ones, per_pop, **geometry))},
            "layer": {"timesteps": per_layer, "mean_latency": population_latency(per_layer, L),
                      "mean_layer_latency": sum(per_layer) / L,
                      "acs_fraction": float(acs_fraction(*ones, per_layer, **geometry))}}}
    return {"readings": out, "base": p.pca_base, "t_conv": p.t_conv,
            "trace_examples": p.trace_samples}, None
