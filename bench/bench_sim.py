"""Simulation benchmarks of stpcore against the timestep-major reference loop (bench/README.md).

    python bench/bench_sim.py --device cpu --size small
    python bench/bench_sim.py --device cuda --size paper

Weights are random (``reference_loop.random_model``) on the real model class
(:class:`stpcore.snn.model.SpikingBertForSequenceClassification`): timings do not depend on trained
weights, and ASRs are only compared between implementations. Writes
``data/bench/sim_<size>_<device>.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_loop import ReferenceLoop, compare_rates, random_model  # noqa: E402

from stpcore.prune.acs import acs_fraction  # noqa: E402
from stpcore.report.benchmarks import T_MEM, TRAIN_VARIANTS, train_limit  # noqa: E402
from stpcore.runs.records import (REPO_ROOT, SOURCE_SHA256, atomic_write_json, describe_device,  # noqa: E402
                             git_commit)

SIZES = {   # widths: (hidden, intermediate); mem_steps: T of the memory comparison
    "small": dict(batch=2, seq=16, timesteps=8, widths=((64, 256), (32, 128)), layers=4,
                  heads=4, vocab=1000, mem_steps=(3, 14), reps=5, peak_n=512),
    "paper": dict(batch=32, seq=128, timesteps=85, widths=((768, 3072), (384, 1536)), layers=4,
                  heads=12, vocab=30522, mem_steps=(13, 140), reps=3, peak_n=8192),
}
KEEP = 0.6      # share of heads / neurons / timesteps kept by the pruned runs
FLOAT_DTYPES = (("fp32", torch.float32), ("bf16", torch.bfloat16))


def sim_dtypes(model) -> tuple:
    """The simulation dtypes to time: fp32 and bf16, and int8 (integer synaptic products,
    :mod:`stpcore.snn.integer`) for a 1-bit model (``config.binary_weights``, ``--binary``)."""
    return FLOAT_DTYPES + ((("int8", torch.int8),) if model.config.binary_weights else ())


class Timer:
    """Median seconds of ``fn`` after warm-up: CUDA events on GPU, wall clock on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn, reps: int, warmup: int = 1) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]


def device_peaks(device, timer, n: int) -> dict:
    """Measured peaks of this device: an n^3 matmul (bf16 and fp32; int8 -> int32 with
    ``torch._int_mm`` on CUDA, in tera-ops/s under the same key pattern) and a device copy."""
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        out[f"matmul_{name}_tflops"] = 2 * n ** 3 / timer(lambda: a @ b, 5) / 1e12
    if device.type == "cuda":
        a, b = (torch.randint(-1, 2, (n, n), device=device, dtype=torch.int8) for _ in range(2))
        # b.t(): the column-major weight cuBLASLt's int8 GEMM takes (a row-major one falls back to
        # a kernel about 7x slower on an H200: bench/results/gemm_int8_cuda.json)
        out["matmul_int8_tflops"] = 2 * n ** 3 / timer(lambda: torch._int_mm(a, b.t()), 5) / 1e12
    src = torch.empty((256 if device.type == "cuda" else 16) * 2 ** 20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    out["copy_gbps"] = 2 * src.numel() / timer(lambda: dst.copy_(src), 5) / 1e9  # read + write
    return out


def sim_work(s: dict, hidden: int, inter: int, steps: int) -> tuple[float, float]:
    """(matmul FLOPs, modelled bytes) of one simulation. FLOPs: per step and layer, Q/K/V/
    attention-output (4 N D^2), intermediate and output (2 N D F), scores and context (2 N^2 D),
    x2 for multiply-add. Bytes, a lower bound: each population's fp32 current written and
    read once and its fp32 spikes written and read once (16 B per neuron-step)."""
    tokens = s["batch"] * s["seq"]
    per_step = 2 * tokens * (4 * hidden ** 2 + 2 * hidden * inter + 2 * s["seq"] * hidden)
    neurons = tokens * (5 * hidden + inter)
    return per_step * s["layers"] * steps, 16.0 * neurons * s["layers"] * steps


def bench_simulation(model, batch, timer, s, peaks, hidden, inter) -> dict:
    """(a) throughput of simulate (fp32, bf16; int8 for 1-bit models) vs the reference loop,
    ASR agreement; (d). Each call prepares its weights (``seconds``), except under
    ``cached_seconds`` (inside ``cache_weights()``, as evaluation runs: :mod:`stpcore.snn.prepared`;
    the reference loop's own preparation is fp32 copies, negligible beside its time)."""
    bert, steps, reps = model.spiking_bert, model.config.timesteps, s["reps"]
    ref_loop, res = ReferenceLoop(model), {}
    ref = ref_loop.simulate(**batch)                    # also the reference's warm-up
    res["reference_s"] = timer(lambda: ref_loop.simulate(**batch), reps, warmup=0)
    flops, nbytes = sim_work(s, hidden, inter, steps)
    res["matmul_tflop_per_sim"] = flops / 1e12
    for name, dtype in sim_dtypes(model):
        sim = bert.simulate(**batch, dtype=dtype)
        sec = timer(lambda: bert.simulate(**batch, dtype=dtype), reps)
        with bert.cache_weights():          # as in an evaluation loop: weights prepared once
            cached = timer(lambda: bert.simulate(**batch, dtype=dtype), reps)
            by_chunk = {} if dtype == torch.float32 else chunk_times(model, batch, dtype, timer, reps)
        res[name] = {"seconds": sec, "example_steps_per_s": s["batch"] * steps / sec,
                     "speedup_vs_reference": res["reference_s"] / sec,
                     "cached_seconds": cached, "speedup_cached": res["reference_s"] / cached,
                     **({"cached_by_chunk": by_chunk} if by_chunk else {}),
                     **compare_rates(sim, ref), "tflops": flops / sec / 1e12,
                     "frac_matmul_peak": flops / sec / 1e12 / peaks[f"matmul_{name}_tflops"]
                     if f"matmul_{name}_tflops" in peaks else None,
                     "model_gbps": nbytes / sec / 1e9,
                     "frac_copy_peak": nbytes / sec / 1e9 / peaks["copy_gbps"]}
    res["reference_example_steps_per_s"] = s["batch"] * steps / res["reference_s"]
    return res


def chunk_times(model, batch, dtype, timer, reps: int) -> dict:
    """``{chunk: seconds}``: the cached simulation in ``dtype`` at each of :data:`CHUNKS`. The
    integer path's spikes do not depend on the chunk; bf16's may (another GEMM per row count)."""
    cfg, saved, out = model.config, model.config.time_chunk, {}
    try:
        for chunk in CHUNKS:
            cfg.time_chunk = chunk
            out[str(chunk)] = timer(lambda: model.spiking_bert.simulate(**batch, dtype=dtype), reps)
    finally:
        cfg.time_chunk = saved
    return out


#: The training-step variants whose Eq. 4 pass is compiled: record key -> (``torch.compile``
#: mode, the pass's dtype); "reduce-overhead" also replays the compiled pass as CUDA graphs. The
#: fp32 one keeps the default's fp32 gradients; "tf32": TF32 products around the step (whose bf16
#: and int8 simulations have no fp32 product: it reaches the Eq. 4 pass and classifier only).
COMPILED = {"implicit_bf16_compiled": ("default", torch.bfloat16),
            "implicit_bf16_graphs": ("reduce-overhead", torch.bfloat16),
            "implicit_fp32_graphs": ("reduce-overhead", torch.float32),
            "implicit_tf32_graphs": ("reduce-overhead", "tf32")}
#: Time chunks at which the bf16 and int8 simulations are also timed (``cached_by_chunk``): the
#: paper profile's 64 and one block of all 85 steps.
CHUNKS = (64, 85)


def compiled_step(bert, train_step, mode: str, timer, reps: int) -> dict:
    """Time ``train_step`` with ``bert.equilibrium`` replaced by ``torch.compile(..., mode=mode)``
    (a user-level option; the method is restored after): ``train_step_s``, and ``compile_s``,
    the first step's extra time (dynamo's caches reset first). A failure is recorded as
    ``error``, not raised: the other timings stand."""
    torch._dynamo.reset()
    try:
        bert.equilibrium = torch.compile(bert.equilibrium, mode=mode)
        first = time.perf_counter()
        train_step()
        torch.cuda.synchronize()
        first = time.perf_counter() - first
        step = timer(train_step, reps)
        return {"train_step_s": step, "compile_s": first - step, "mode": mode}
    except Exception as exc:                # noqa: BLE001 (recorded: an unsupported mode here)
        return {"error": f"{type(exc).__name__}: {exc}"[:500], "mode": mode}
    finally:
        vars(bert).pop("equilibrium", None)     # the method again
        torch._dynamo.reset()


def bench_training(model, batch, labels, timer, s, device) -> dict:
    """(b) training step (simulate + implicit backward) vs forward alone, in fp32 (top-level
    keys) and in each other simulation dtype (``dtypes``: the step's simulation in that dtype, its
    Eq. 4 pass fp32 as by default, and under ``implicit_bf16`` the same step with the Eq. 4 pass
    in bf16 autocast, ``implicit_dtype``, and on CUDA under the keys of :data:`COMPILED` that
    step with the Eq. 4 pass compiled in the key's dtype, :func:`compiled_step`); peak memory vs T
    (fp32)."""
    bert = model.spiking_bert

    def steps(dtype, implicit_dtype=torch.float32):     # (forward, training step) in dtype
        def forward():
            with torch.no_grad():
                model(**batch, sim_dtype=dtype)

        tf32 = implicit_dtype == "tf32"       # fp32 Eq. 4 pass, TF32 products around the step
        eq4 = torch.float32 if tf32 else implicit_dtype

        def train_step():
            model.zero_grad(set_to_none=True)
            model(**batch, labels=labels, sim_dtype=dtype, implicit_dtype=eq4).loss.backward()

        def tf32_step():
            precision = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision("high")
            try:
                train_step()
            finally:
                torch.set_float32_matmul_precision(precision)
        return forward, tf32_step if tf32 else train_step

    def timed(dtype) -> dict:
        forward, train_step = steps(dtype)
        out = {"forward_s": timer(forward, s["reps"]), "train_step_s": timer(train_step, s["reps"])}
        out["train_over_forward"] = out["train_step_s"] / out["forward_s"]
        if dtype != torch.float32:
            bf16_step = timer(steps(dtype, torch.bfloat16)[1], s["reps"])
            out["implicit_bf16"] = {"train_step_s": bf16_step,
                                    "train_over_forward": bf16_step / out["forward_s"]}
        for key, (mode, eq4) in (COMPILED.items() if dtype != torch.float32
                                 and device.type == "cuda" else ()):
            out[key] = compiled_step(bert, steps(dtype, eq4)[1], mode, timer, s["reps"])
            if "train_step_s" in out[key]:
                out[key]["train_over_forward"] = out[key]["train_step_s"] / out["forward_s"]
        return out

    res = timed(torch.float32)
    res["dtypes"] = {name: timed(dtype) for name, dtype in sim_dtypes(model) if name != "fp32"}
    train_step = steps(torch.float32)[1]
    if device.type == "cuda":
        cfg, saved = model.config, (model.config.timesteps, model.config.time_chunk)
        for chunk in (saved[1], min(s["mem_steps"])):   # default chunk, and chunk <= both T
            peaks = []
            for steps in s["mem_steps"]:
                cfg.timesteps, cfg.time_chunk = steps, chunk
                model.zero_grad(set_to_none=True)
                peaks.append(peak_memory(train_step))
            res[f"peak_gib_chunk{chunk}"] = dict(zip(map(str, s["mem_steps"]), peaks))
            res[f"mem_ratio_chunk{chunk}"] = peaks[1] / peaks[0]
        cfg.timesteps, cfg.time_chunk = saved
    return res


def pruned_settings(cfg) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """The pruned runs' settings: per-layer timesteps falling linearly from T to
    ``(2 KEEP - 1) T`` (a mean of KEEP T), and head and neuron masks keeping KEEP of each layer's
    units (random, seed 0)."""
    L, T = cfg.num_hidden_layers, cfg.timesteps
    gen = torch.Generator().manual_seed(0)
    keep = lambda width: torch.stack([(torch.randperm(width, generator=gen) < round(KEEP * width))
                                      .float() for _ in range(L)])
    layer_steps = [max(1, round(T * f)) for f in torch.linspace(1.0, 2 * KEEP - 1.0, L).tolist()]
    return layer_steps, keep(cfg.num_attention_heads), keep(cfg.intermediate_size)


def bench_pruning(model, batch, timer, s) -> dict:
    """(c) temporal (sequential executor, pruned t^l) and spatial (masks) vs dense uniform T, each
    timed per call and inside ``cache_weights()`` (``*_cached_s``, ``efficiency_cached``: the
    weights, with the masks' kept units gathered, prepared once, as evaluation runs)."""
    bert, cfg = model.spiking_bert, model.config
    L, H, F, D, T = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size, \
        cfg.hidden_size, cfg.timesteps
    ones_h, ones_n = torch.ones(L, H), torch.ones(L, F)
    frac = lambda h, n, t: float(acs_fraction(h, n, t, s["seq"], D, H, T))
    layer_steps, head_mask, neuron_mask = pruned_settings(cfg)
    res = {"layer_timesteps": layer_steps}
    for name, dtype in sim_dtypes(model):
        run = lambda: bert.simulate(**batch, dtype=dtype)
        if batch["input_ids"].is_cuda:        # Eq. 11's executor holds one layer's state
            res[f"peak_gib_{name}"] = {ex: peak_memory(lambda: bert.simulate(**batch, dtype=dtype,
                                                                            executor=ex))
                                       for ex in ("unrolled", "sequential")}

        def timed():                    # (per call, weights prepared once)
            plain = timer(run, s["reps"])
            with bert.cache_weights():
                return plain, timer(run, s["reps"])
        dense = timed()
        bert.set_layer_timesteps(layer_steps)
        temporal = timed()
        bert.set_layer_timesteps(None)
        bert.set_masks(head_mask, neuron_mask)
        spatial = timed()
        bert.set_masks(None, None)
        for kind, (sec, cached), f in (("temporal", temporal, frac(ones_h, ones_n, layer_steps)),
                                       ("spatial", spatial, frac(head_mask, neuron_mask, [T] * L))):
            res[f"{kind}_{name}"] = {"dense_s": dense[0], "pruned_s": sec, "acs_fraction": f,
                                     "speedup": dense[0] / sec, "predicted_speedup": 1 / f,
                                     "efficiency": dense[0] / sec * f, "dense_cached_s": dense[1],
                                     "pruned_cached_s": cached,
                                     "efficiency_cached": dense[1] / cached * f}
    return res


def peak_memory(fn) -> float:
    """Peak CUDA memory (GiB) allocated while ``fn`` runs."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2 ** 30


def make_batch(s, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, s["vocab"], (s["batch"], s["seq"]), generator=gen)
    labels = torch.randint(0, 2, (s["batch"],), generator=gen)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids)}
    return {k: v.to(device) for k, v in batch.items()}, labels.to(device)


def summary_rows(record) -> list[tuple[str, str, str]]:
    rows = []
    for width, r in record["widths"].items():
        a = r["simulation"]
        rows.append((f"[{width}] reference loop ex-steps/s", f"{a['reference_example_steps_per_s']:.1f}", ""))
        for d in (d for d in ("fp32", "bf16", "int8") if d in a):
            x = a[d]
            peak = "n/a" if x["frac_matmul_peak"] is None else f"{x['frac_matmul_peak']:.2f}"
            rows.append((f"[{width}] {d} ex-steps/s (x ref; weights cached)",
                         f"{x['example_steps_per_s']:.1f} ({x['speedup_vs_reference']:.2f}x; "
                         f"{x['speedup_cached']:.2f}x)", ">= 30x" if d == "int8" else ">= 10x"))
            rows.append((f"[{width}] {d} max|dASR| / frac differ",
                         f"{x['max_abs_asr_diff']:.3g} / {x['frac_rates_differing']:.2e}",
                         "0 / 0" if d == "fp32" else "report"))
            rows.append((f"[{width}] {d} TFLOP/s (peak frac), GB/s (copy frac)",
                         f"{x['tflops']:.2f} ({peak}), "
                         f"{x['model_gbps']:.1f} ({x['frac_copy_peak']:.2f})", ""))
        if "training" in r:
            b = r["training"]
            for d, x in {"fp32": b, **b.get("dtypes", {})}.items():
                limit = f"<= {train_limit(d):.2f}"
                rows.append((f"[{width}] {d} train step / forward", f"{x['train_over_forward']:.2f}", limit))
                for key, how in TRAIN_VARIANTS.items():
                    if "train_over_forward" in x.get(key, {}):
                        rows.append((f"[{width}] {d} train step (Eq. 4 pass {how}) / forward",
                                     f"{x[key]['train_over_forward']:.2f}", limit))
            for key in (k for k in b if k.startswith("mem_ratio")):
                rows.append((f"[{width}] peak mem T{'/T'.join(map(str, SIZES[record['size']]['mem_steps'][::-1]))} "
                             f"({key[10:]})", f"{b[key]:.2f}", f"<= {T_MEM:.2f}"))
            for key, p in r["pruning"].items():
                if key.startswith("peak_gib_"):
                    rows.append((f"[{width}] {key[9:]} peak GiB unrolled / sequential",
                                 f"{p['unrolled']:.2f} / {p['sequential']:.2f}", "report"))
                elif isinstance(p, dict):
                    rows.append((f"[{width}] {key} speed-up (AC-predicted)",
                                 f"{p['speedup']:.2f}x ({p['predicted_speedup']:.2f}x) eff {p['efficiency']:.2f}",
                                 "eff >= 0.75"))
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--tag", default="", help="suffix of the record name, e.g. _fused")
    ap.add_argument("--binary", action="store_true",
                    help="1-bit encoder weights (sign x scale), which adds the int8 path")
    ap.add_argument("--time-chunk", type=int, default=None,
                    help="steps simulated per matrix product (default: the config's)")
    args = ap.parse_args(argv)
    device, s = torch.device(args.device), SIZES[args.size]
    torch.set_float32_matmul_precision("highest")     # no TF32: fp32 is fp32
    timer, t_start = Timer(device), time.perf_counter()
    peaks = device_peaks(device, timer, s["peak_n"])
    batch, labels = make_batch(s, device)
    weights = "random (reference_loop.random_model)" + (", 1-bit" if args.binary else "")
    record = {"name": f"sim_{args.size}{args.tag}", "size": args.size, "widths": {},
              "fused_lif": os.environ.get("STP_FUSED_LIF", "auto"), "peaks": peaks,
              "setup": {k: v for k, v in s.items() if k != "reps"}, "weights": weights + "; timing only"}
    for i, (hidden, inter) in enumerate(s["widths"]):
        model = random_model(seed=i, vocab_size=s["vocab"], hidden_size=hidden,
                             intermediate_size=inter, num_hidden_layers=s["layers"],
                             num_attention_heads=s["heads"], timesteps=s["timesteps"],
                             max_position_embeddings=max(512, s["seq"])).to(device)
        if args.binary:
            model.spiking_bert.set_binary_weights(True)
        if args.time_chunk is not None:
            if args.time_chunk < 1:
                raise SystemExit(f"--time-chunk must be >= 1; got {args.time_chunk}")
            model.config.time_chunk = args.time_chunk
        record["setup"]["time_chunk"] = model.config.time_chunk
        r = {"simulation": bench_simulation(model, batch, timer, s, peaks, hidden, inter)}
        if i == 0:
            r["training"] = bench_training(model, batch, labels, timer, s, device)
            r["pruning"] = bench_pruning(model, batch, timer, s)
        record["widths"][f"{hidden}/{inter}"] = r
        del model
    record["provenance"] = {**git_commit(), "source_sha256": SOURCE_SHA256,
                            "device": describe_device(device),
                            "torch": torch.__version__, "wall_time_s": time.perf_counter() - t_start,
                            "fp32_matmul_precision": torch.get_float32_matmul_precision()}
    path = REPO_ROOT / "data" / "bench" / f"{record['name']}_{device.type}.json"
    atomic_write_json(path, record)
    rows = summary_rows(record)
    for name, value, target in rows:
        print(f"{name:<{max(len(r[0]) for r in rows)}}  {value:<40} {target}")
    print(f"wrote {path.relative_to(REPO_ROOT)} in {record['provenance']['wall_time_s']:.1f} s")
    return record


if __name__ == "__main__":
    main()
