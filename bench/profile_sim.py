"""Where a simulation's time goes: the kernels of one ``simulate`` per dtype and pruning setting.

    PYTHONPATH=. python bench/profile_sim.py --device cuda --size paper   # H200: about a minute
    PYTHONPATH=. python bench/profile_sim.py --device cpu --size small    # seconds (a smoke run)

Builds bench_sim's 1-bit random model at the size's first width, warms each setting up (which
also autotunes the Triton kernels), then profiles one ``simulate`` with ``torch.profiler``:
dense, temporally pruned (sequential executor) and spatially pruned (masks), as
``bench_sim.bench_pruning`` times them (``bench_sim.pruned_settings``), in bf16 and, for the
1-bit model, int8 (fp32 with ``--fp32``). For each run the record keeps the wall time
(``bench_sim.Timer``), the summed kernel time (on CPU: the operators' self time) and every
kernel name with its time and calls (``stpcore.report.intpath`` groups the names), and on CUDA
where the device waited (:func:`device_gaps`: idle time inside the run, the longest gaps
between kernels, the host operators with the most CPU time), and for the dense runs the per-call
weight preparation against the executor alone, eager and as a CUDA graph (:func:`host_split`). Writes
``bench/results/profile_sim_<device>.json``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sim import FLOAT_DTYPES, SIZES, Timer, make_batch, pruned_settings  # noqa: E402
from reference_loop import random_model  # noqa: E402

from stpcore.runs.records import (REPO_ROOT, SOURCE_SHA256, atomic_write_json,  # noqa: E402
                                  describe_device, git_commit)
from stpcore.snn import sequential  # noqa: E402
from stpcore.snn.prepared import prepare_weights  # noqa: E402
from stpcore.snn.spike_attention import attention_mode, heads_per_program  # noqa: E402

SETTINGS = ("dense", "temporal", "spatial")


def apply_setting(bert, setting: str, layer_steps, head_mask, neuron_mask) -> None:
    """Put ``bert`` in one of :data:`SETTINGS` (each call first undoes the others)."""
    if setting not in SETTINGS:
        raise ValueError(f"`setting` must be one of {SETTINGS}; got {setting!r}")
    bert.set_layer_timesteps(layer_steps if setting == "temporal" else None)
    bert.set_masks(*((head_mask, neuron_mask) if setting == "spatial" else (None, None)))


def kernel_times(prof, device: torch.device) -> dict:
    """``{name: {"ms", "calls"}}`` of the device kernels in ``prof`` (on CPU: every operator's
    self CPU time, the closest CPU analogue), longest first."""
    cuda = device.type == "cuda"
    out = {}
    for e in prof.key_averages():
        us = (getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
              ) if cuda else e.self_cpu_time_total
        if us > 0 and (not cuda or e.device_type == torch.autograd.DeviceType.CUDA):
            out[e.key] = {"ms": us / 1e3, "calls": e.count}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["ms"]))


def count_draws(run) -> int:
    """Run ``run()`` and return how many Bernoulli spikes Eq. 11's executor drew in it
    (``steps * rate.numel()`` summed over its ``draw_bernoulli`` calls)."""
    draw, drawn = sequential.draw_bernoulli, [0]

    def counting(rate, steps, *args, **kwargs):
        drawn[0] += steps * rate.numel()
        return draw(rate, steps, *args, **kwargs)
    sequential.draw_bernoulli = counting
    try:
        run()
    finally:
        sequential.draw_bernoulli = draw
    return drawn[0]


def profile_run(bert, batch, dtype, device, timer) -> dict:
    """Wall time (median of 3), the kernel breakdown of one ``simulate`` in ``dtype`` and the
    Bernoulli spikes it drew (``bernoulli_draws``, 0 outside Eq. 11's executor)."""
    run = lambda: bert.simulate(**batch, dtype=dtype)
    wall = timer(run, 3)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        draws = count_draws(run)
        if device.type == "cuda":
            torch.cuda.synchronize()
    kernels = kernel_times(prof, device)
    return {"wall_ms": wall * 1e3, "kernel_ms": sum(k["ms"] for k in kernels.values()),
            "kernels": kernels, "bernoulli_draws": draws,
            **(device_gaps(prof) if device.type == "cuda" else {})}


@torch.no_grad()
def host_split(bert, batch, dtype, timer) -> dict:
    """A dense simulation's parts, timed apart: ``prepare_ms``, the weights each call prepares
    (:mod:`stpcore.snn.prepared`, which ``cache_weights()`` saves in evaluation), and the
    unrolled executor alone (``SpikingBertModel._simulate_unrolled``) eagerly, ``core_eager_ms``,
    and on CUDA replayed as one CUDA graph, ``core_graph_ms`` (no launches, so no launch gaps;
    ``graph_same_rates``: its rates equal the eager ones)."""
    prep = lambda: prepare_weights(bert, dtype, True)
    x = bert.embed(batch["input_ids"], batch["token_type_ids"]).float()
    valid, ready = batch["attention_mask"].float()[..., None], prep()
    args = (x, bert.extended_mask(batch["attention_mask"]), valid, bert.vth().detach().float(),
            ready.weights, ready.kv_cols, dtype, bert.config.timesteps, False)
    core = lambda: bert._simulate_unrolled(*args)
    out = {"prepare_ms": timer(prep, 3) * 1e3, "core_eager_ms": timer(core, 3) * 1e3}
    if x.is_cuda:
        eager, side = core(), torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):                   # warm-up off the capturing stream
            core()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            replayed = core()
        out["core_graph_ms"] = timer(graph.replay, 3) * 1e3
        out["graph_same_rates"] = all(torch.equal(a[p], b[p]) for a, b in zip(replayed[1], eager[1])
                                      for p in a)
    return out


def device_gaps(prof, top: int = 8) -> dict:
    """Where the device waited in the profiled run: ``device_span_ms`` (first kernel start to
    last kernel end), ``device_idle_ms`` (the span less the union of kernel intervals), the
    ``top`` longest gaps between kernels with the kernels on either side, and the host
    operators with the most self CPU time (``host_ops``: what the host was doing meanwhile)."""
    spans = sorted((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                   if e.device_type == torch.autograd.DeviceType.CUDA)
    if not spans:
        return {}
    busy, gaps, end, last = 0.0, [], spans[0][0], spans[0][2]
    for start, stop, name in spans:                     # microseconds
        if start > end:
            gaps.append({"ms": (start - end) / 1e3, "after": last[:80], "before": name[:80]})
        busy += max(stop - max(start, end), 0.0)
        if stop > end:
            end, last = stop, name
    host = sorted(((e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()
                   if e.device_type == torch.autograd.DeviceType.CPU), key=lambda x: -x[1])[:top]
    return {"device_span_ms": (end - spans[0][0]) / 1e3,
            "device_idle_ms": (end - spans[0][0] - busy) / 1e3,
            "longest_gaps": sorted(gaps, key=lambda g: -g["ms"])[:top],
            "host_ops": {k: {"ms": us / 1e3, "calls": n} for k, us, n in host}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--fp32", action="store_true", help="also profile the fp32 path")
    ap.add_argument("--out", type=Path, default=None,
                    help="record path (default bench/results/profile_sim_<device>.json)")
    args = ap.parse_args(argv)
    device, s = torch.device(args.device), SIZES[args.size]
    torch.set_float32_matmul_precision("highest")
    start, timer = time.perf_counter(), Timer(device)
    hidden, inter = s["widths"][0]
    model = random_model(seed=0, vocab_size=s["vocab"], hidden_size=hidden, intermediate_size=inter,
                         num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                         timesteps=s["timesteps"], max_position_embeddings=max(512, s["seq"]))
    model = model.to(device)
    model.spiking_bert.set_binary_weights(True)
    batch, _ = make_batch(s, device)
    pruned = pruned_settings(model.config)
    dtypes = [(n, d) for n, d in FLOAT_DTYPES if args.fp32 or n != "fp32"] + [("int8", torch.int8)]
    runs = {}
    for setting in SETTINGS:
        apply_setting(model.spiking_bert, setting, *pruned)
        for name, dtype in dtypes:
            runs[f"{setting}_{name}"] = r = profile_run(model.spiking_bert, batch, dtype, device, timer)
            if setting == "dense":
                r["host_split"] = host_split(model.spiking_bert, batch, dtype, timer)
            idle = f", device idle {r['device_idle_ms']:.1f} ms" if "device_idle_ms" in r else ""
            print(f"{setting:>8} {name:>4}: wall {r['wall_ms']:8.2f} ms, kernels {r['kernel_ms']:8.2f} ms{idle}; "
                  + ", ".join(f"{k[:40]} {v['ms']:.1f}" for k, v in list(r["kernels"].items())[:3]),
                  flush=True)
    apply_setting(model.spiking_bert, "dense", *pruned)
    record = {"name": f"profile_sim_{args.size}", "size": args.size, "width": f"{hidden}/{inter}",
              "setup": {k: v for k, v in s.items() if k != "reps"}, "layer_timesteps": pruned[0],
              "weights": "random (reference_loop.random_model), 1-bit; timing only", "runs": runs,
              "attention": {"mode": attention_mode(), "heads_per_program": heads_per_program()},
              "provenance": {**git_commit(), "source_sha256": SOURCE_SHA256,
                             "device": describe_device(device), "torch": torch.__version__,
                             "wall_time_s": time.perf_counter() - start}}
    path = args.out or REPO_ROOT / "bench" / "results" / f"profile_sim_{device.type}.json"
    atomic_write_json(path, record)
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
