"""The integer simulation path (issue 12) on the benchmarks page: its exactness against a float64
simulation (``bench/exactness.py``, on CPU and on CUDA), and its speed in a 1-bit bench record
against bf16 and the issue's targets (:func:`integer_path_summary`); its products alone are
:mod:`stpcore.report.gemm`'s."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .benchmarks import (BENCH_RESULTS as RESULTS, INT8, MET, NOT_MET, T_INT, T_INT_DEFAULT,
                         T_INT_TIE, _g, dtype_table, read_bench_file, record_dtypes)
from ..runs.profiles import PROFILES
from .gemm import GEMM_RECORD
from .tables import NO_METRIC

EXACTNESS_RECORDS = {"cpu": RESULTS / "exactness_cpu.json", "cuda": RESULTS / "exactness_cuda.json"}
EXACTNESS_COLUMNS = {"frac_currents_differing": "currents differing from exact (share)",
                     "max_abs_current_diff": "largest current difference",
                     "frac_rates_differing": "rates differing from float64 (share)",
                     "max_abs_asr_diff": "largest rate difference",
                     "predictions_equal_float64": "predictions equal to float64"}
#: The exactness record's name for the integer path with PyTorch's attention (bench/exactness.py).
SDPA = "int8_sdpa"



def exactness_table(path: str | Path = EXACTNESS_RECORDS["cpu"]) -> pd.DataFrame | str:
    """Per model and simulation dtype: how far its first-layer currents and its rates are from a
    float64 simulation of the same model (``bench/exactness.py``'s record), or a line saying
    the record is missing."""
    rec = read_bench_file(Path(path))
    if isinstance(rec, str):
        return f"no exactness record at {path} (run `python bench/exactness.py`)"
    return _exactness_frame(rec)


def _exactness_frame(rec: dict) -> pd.DataFrame:
    rows = [{"model": model, "dtype": dtype, **{label: res[dtype].get(key)
                                                 for key, label in EXACTNESS_COLUMNS.items()},
             "examples": res.get("setup", {}).get("examples", res.get("setup", {}).get("batch"))}
            for model, res in rec["models"].items() for dtype in rec["dtypes"]]
    return pd.DataFrame(rows).set_index(["model", "dtype"])


def exactness_reading(path: str | Path = EXACTNESS_RECORDS["cuda"]) -> str:
    """Issue 12's exactness bar in words: per model, the integer path's share of rates differing
    from float64 and its largest difference as multiples of fp32's (the bar: no more than fp32),
    bf16's share beside them, and whether its currents were exact."""
    rec = read_bench_file(Path(path))
    if isinstance(rec, str):
        return exactness_table(path)
    table = _exactness_frame(rec)
    share, top = "rates differing from float64 (share)", "largest rate difference"
    parts, met = [], 0
    for model in table.index.get_level_values("model").unique():
        x = table.loc[model]
        ratio, top_ratio = x.loc[INT8, share] / x.loc["fp32", share], x.loc[INT8, top] / x.loc["fp32", top]
        # rates are counts / T, so equal largest differences can differ in the last fp32 bit of
        # the subtraction (2/17 as 0.1176470667 and 0.1176470816): equal to 1e-6 counts as equal
        met += ratio <= 1 and top_ratio <= 1 + 1e-6
        parts.append(f"{model}: {_g(ratio)}x fp32's share of differing rates and {_g(top_ratio)}x its "
                     f"largest difference (bf16: {_g(x.loc['bf16', share] / x.loc['fp32', share])}x the share)")
    sdpa = ""
    if SDPA in rec["dtypes"]:
        sdpa = (" With PyTorch's fused fp32 attention instead of the split-bf16 kernel "
                "(STP_INT_ATTENTION=sdpa) the integer path runs at " + "; ".join(
                    f"{model}: {_g(table.loc[(model, SDPA), share] / table.loc[(model, 'fp32'), share])}x "
                    f"the share and {_g(table.loc[(model, SDPA), top] / table.loc[(model, 'fp32'), top])}x "
                    f"the largest difference" for model in table.index.get_level_values("model").unique())
                + ".")
    exact = (table.xs(INT8, level="dtype")["currents differing from exact (share)"] == 0).all()
    device = rec.get("provenance", {}).get("device", "?")
    return (f"On {device}, against float64, the integer path runs at " + "; ".join(parts) + ". "
            f"Its first-layer currents are {'all' if exact else 'not all'} the exact values rounded once. "
            f"The bar (no more than fp32 on both counts) holds for {met} of {len(parts)} models.{sdpa} With "
            f"{int(table['examples'].max())} examples per model and one flipped spike cascading through "
            f"every later rate, a single model's ratio moves by chance; the membranes, softmax and "
            f"LayerNorms round in fp32 on every path.")


def integer_path_summary(record: dict) -> str:
    """The integer path of a 1-bit record against bf16 and issue 12's targets, in words (Markdown):
    its speed-up per width beside bf16's, how much slower or faster than bf16 it runs, the int8
    matmul peak against bf16's, and which dtype issue 12's rule makes the default."""
    if INT8 not in record_dtypes(record):
        return f"`{record.get('name', '?')}` has no int8 results (not a `--binary` run)."
    t = dtype_table(record)
    int8, bf16 = t.xs(INT8, level="dtype"), t.xs("bf16", level="dtype")
    speed, ratio = int8["speed-up vs reference loop"], int8["throughput / bf16 throughput"]

    def versus(w):
        r = ratio[w]
        return NO_METRIC if not isinstance(r, float) else (f"{_g(1 / r)}x slower than bf16" if r < 1
                                                             else f"{_g(r)}x bf16's throughput")
    runs = "; ".join(f"at width {w}, {_g(speed[w])}x the reference loop (bf16: "
                     f"{_g(bf16['speed-up vs reference loop'].get(w))}x), {versus(w)}" for w in int8.index)
    missed = [w for w in int8.index if int8.loc[w, "met?"] == NOT_MET]
    target = ("met at every width" if set(int8["met?"]) == {MET}
              else f"not met at width{'s' if len(missed) > 1 else ''} {' and '.join(missed)}" if missed else "not judged (numbers missing)")
    peaks, prov = record.get("peaks", {}), record.get("provenance", {})
    i8, b16 = peaks.get(f"matmul_{INT8}_tflops"), peaks.get("matmul_bf16_tflops")
    peak = (f" The measured int8 matmul peak (`torch._int_mm`, n = {record.get('setup', {}).get('peak_n', '?')}) "
            f"is {_g(i8)} TOP/s, {_g(i8 / b16)}x the bf16 matmul's {_g(b16)} TFLOP/s." if i8 and b16 else "")
    above = [w for w in int8.index if i8 and isinstance(bf16["achieved TFLOP/s"].get(w), float)
             and bf16["achieved TFLOP/s"][w] > i8]
    if above:
        peak += (f" At width{'s' if len(above) > 1 else ''} {' and '.join(above)} bf16 simulates at "
                 + " and ".join(f"{_g(bf16['achieved TFLOP/s'][w])}" for w in above)
                 + " TFLOP/s, above that peak, so there the integer path could not match bf16 even at the full "
                   "int8 peak.")
    timed = [w for w in int8.index if isinstance(ratio[w], float)]
    default = [w for w in timed if ratio[w] >= T_INT_DEFAULT + T_INT_TIE]
    second = {w: profile_ratio(record, w) for w in timed}           # a second timing disagrees:
    tied = [w for w in timed if abs(ratio[w] - T_INT_DEFAULT) < T_INT_TIE
            or (w in default and (second[w] or float("inf")) < T_INT_DEFAULT + T_INT_TIE)]
    default = [w for w in default if w not in tied]
    shown = lambda w: f"at width {w} this record has int8 at {ratio[w]:.3f}x bf16's throughput" + (
        f" and the profile of the same commit (`profile_sim_cuda`, a second timing) at "
        f"{second[w]:.3f}x" if second.get(w) is not None else "")
    tie = (f"The two tie: {'; '.join(map(shown, tied))}. A difference within {T_INT_TIE * 100:g} % "
           f"(`T_INT_TIE`, about how much one dtype's time moves between runs here) in either timing "
           f"does not show the integer path at least as fast. " if tied else "")
    rule = (tie + "By issue 12's rule (the integer path is the default for 1-bit models on CUDA wherever it "
            "is at least as fast as bf16) " + (
                f"it would be the default at width {', '.join(default)}." if default
                else "bf16 stays the default, and int8 stays selectable through the "
                     "API (`simulate(dtype=torch.int8)`).") + (
        f" The paper profile simulates every 1-bit model in int8 (`binary_sim_dtype`), decided on an "
        f"earlier record that had it ahead at every width and kept for its exactness (the deviations "
        f"page)." if set(default) != set(timed) and PROFILES["paper"].get("binary_sim_dtype") == "int8"
        else ""))
    return (f"On {prov.get('device', '?')} (torch {prov.get('torch', '?')}) the integer path runs {runs}. "
            f"Issue 12's target of >= {T_INT:g}x the reference loop is {target}.{peak} {rule}")


PROFILE_RECORD = RESULTS / "profile_sim_cuda.json"


def profile_ratio(bench: dict, width: str, path: str | Path = PROFILE_RECORD) -> float | None:
    """The dense int8 run's throughput over bf16's in the profile record (wall times), where it
    profiled ``width`` at the bench record's commit; else None."""
    prof = read_bench_file(Path(path))
    commit = lambda r: r.get("provenance", {}).get("git_commit")
    if isinstance(prof, str) or prof.get("width") != width or commit(prof) != commit(bench):
        return None
    runs = prof.get("runs", {})
    return runs["dense_bf16"]["wall_ms"] / runs["dense_int8"]["wall_ms"] if {
        "dense_bf16", "dense_int8"} <= set(runs) else None
#: The integer path's attention kernel's name (stpcore.snn.spike_attention) in a profile.
SPLIT_KERNEL = "_spike_attention_kernel"
#: Kernel groups of a simulation profile as (label, substrings of the kernel name); first match wins.
KERNEL_GROUPS = (
    ("int8 product + LIF (Triton)", ("_binary_linear_lif_kernel",)),
    ("int8 product (Triton)", ("_binary_linear_kernel",)),
    ("attention", ("fmha", "sdpa", "flash", "attention")),
    ("float product (cuBLAS)", ("nvjet", "gemm", "cutlass", "xmma")),
    ("LayerNorm-LIF (Triton)", ("_norm_lif_kernel",)),
    ("LIF scan (Triton)", ("_lif_scan_kernel",)),
    ("spike counts", ("_sum_time_kernel", "reduce_kernel")),
    ("Bernoulli sampling (Eq. 11)", ("bernoulli",)),
    ("casts and copies", ("copy", "Memcpy", "Cat", "gather", "index")),
)
OTHER = "other"


def kernel_group(name: str) -> str:
    """The :data:`KERNEL_GROUPS` label of a kernel name, or ``"other"``."""
    return next((label for label, keys in KERNEL_GROUPS if any(k in name for k in keys)), OTHER)


def profile_table(path: str | Path = PROFILE_RECORD) -> pd.DataFrame | str:
    """Milliseconds per kernel group (rows) of each profiled simulation (columns: pruning setting
    and dtype), then the kernels' sum, the wall time and the gap between them (launches and host
    work), from ``bench/profile_sim.py``'s record; or a line saying it is missing."""
    rec = read_bench_file(Path(path))
    if isinstance(rec, str):
        return rec + " (run `python bench/profile_sim.py --device cuda --size paper` on a GPU)"
    return _profile_frame(rec)


def _profile_frame(rec: dict) -> pd.DataFrame:
    cols = {}
    for run, r in rec["runs"].items():
        ms = {label: 0.0 for label, _ in KERNEL_GROUPS} | {OTHER: 0.0}
        for name, k in r["kernels"].items():
            ms[kernel_group(name)] += k["ms"]
        ms |= {"all kernels": r["kernel_ms"], "wall": r["wall_ms"],
               "wall minus kernels": r["wall_ms"] - r["kernel_ms"]}
        cols[run.replace("_", " ")] = ms
    return pd.DataFrame(cols).round(1).rename_axis("ms per simulation")


#: The host's kernel-launch calls in a profile's ``host_ops`` (CUDA runtime and driver).
LAUNCH_OPS = ("cudaLaunchKernel", "cuLaunchKernelEx", "cuLaunchKernel")


def idle_reading(runs: dict) -> str:
    """Where the dense runs' devices waited (``bench/profile_sim.py``'s ``device_gaps`` fields,
    absent from older records): idle time inside the profiled span, the longest single gap, and
    the kernel launches the host issued meanwhile."""
    parts = []
    for name in ("dense_int8", "dense_bf16"):
        r = runs.get(name, {})
        if "device_idle_ms" not in r:
            return ""
        launches = sum(v["calls"] for k, v in r.get("host_ops", {}).items() if k in LAUNCH_OPS)
        longest = max((g["ms"] for g in r.get("longest_gaps", [])), default=0.0)
        parts.append(f"{name.split('_')[1]} {_g(r['device_idle_ms'])} of {_g(r['device_span_ms'])} ms, "
                     f"the longest gap {_g(longest)} ms" + (f", {launches} launches" if launches else ""))
    split = {n.split("_")[1]: runs[n]["host_split"] for n in ("dense_int8", "dense_bf16")
             if "core_graph_ms" in runs[n].get("host_split", {})}
    where = "; ".join(f"{d}: {_g(h['prepare_ms'])} ms preparing the weights, the executor {_g(h['core_eager_ms'])} "
                      f"ms eagerly and {_g(h['core_graph_ms'])} ms as one CUDA graph, which has no launches: "
                      f"{_g(h['core_eager_ms'] - h['core_graph_ms'])} ms of launch cost" for d, h in split.items())
    return (f"Under the profiler the device sat idle inside the run for {'; '.join(parts)}: no single "
            f"wait but many short ones, where the host, issuing one launch per kernel and elementwise "
            f"operation, falls behind the device (the profiler itself slows the host, so the wall "
            f"times above, measured without it, show less). " + (
                f"Timed apart ({where}). The preparation (the weights binarised, split and cast in a "
                f"few hundred small kernels, every call) is what `cache_weights()` saves in "
                f"evaluation. " if split else ""))


def profile_reading(path: str | Path = PROFILE_RECORD, bench: dict | None = None,
                    gemm_path: str | Path = GEMM_RECORD) -> str:
    """The profile in words: where the dense int8 simulation's time goes, against bf16; what the
    Bernoulli sampling costs the temporally pruned runs; and the fastest the integer path could
    be under issue 12's constraints (every product at the measured int8 peak of ``bench``, a
    1-bit bench record, and the attention at fp32 accuracy, as measured and at the peak of the
    units it runs on), as a multiple of the reference loop, and with the products at the rate of
    the fastest exact product in the GEMM record at ``gemm_path`` (cuBLASLt's fp8)."""
    rec = read_bench_file(Path(path))
    if isinstance(rec, str):
        return profile_table(path)
    table = _profile_frame(rec)
    i8, b16 = table["dense int8"], table["dense bf16"]
    top = i8.drop(["all kernels", "wall", "wall minus kernels"]).sort_values(ascending=False)
    parts = ", ".join(f"{label} {_g(ms)} ms" for label, ms in top.items() if ms >= 0.05 * i8["all kernels"])
    text = (f"On {rec['provenance'].get('device', '?')} at width {rec['width']} the dense int8 simulation "
            f"takes {_g(i8['wall'])} ms ({_g(i8['all kernels'])} ms in kernels: {parts}); bf16 takes "
            f"{_g(b16['wall'])} ms. ")
    text += idle_reading(rec["runs"])
    samp = "Bernoulli sampling (Eq. 11)"
    temporal = [c for c in table.columns if c.startswith("temporal")]
    text += ("In the temporally pruned runs (Eq. 11's executor) drawing the Bernoulli input spikes takes "
             + ", ".join(f"{_g(table.loc[samp, c])} of {_g(table.loc['wall', c])} ms ({c.split()[1]})"
                         for c in temporal) + ": time the AC count does not see. ")
    draws = {c: rec["runs"][c.replace(" ", "_")].get("bernoulli_draws") for c in temporal}
    if all(draws.values()) and all(table.loc[samp, c] > 0 for c in temporal):
        rate = [n / table.loc[samp, c] / 1e6 for c, n in draws.items()]      # per ms / 1e6: G/s
        lo, hi = _g(min(rate)), _g(max(rate))
        text += (f"Those runs draw {_g(next(iter(draws.values())) / 1e9)} G spikes, "
                 f"{lo if lo == hi else f'{lo}-{hi}'} G per second: one Philox4x32-10 evaluation (ten "
                 f"rounds of two 32-bit multiplies) per four draws, fixed work as long as the draws "
                 f"are `torch.bernoulli`'s. ")
    setup, peaks = rec["setup"], (bench or {}).get("peaks", {})
    ref = ((bench or {}).get("widths", {}).get(rec["width"], {}).get("simulation", {}).get("reference_s"))
    split = any(SPLIT_KERNEL in name for name in rec["runs"]["dense_int8"]["kernels"])
    peak_key = "matmul_bf16_tflops" if split else "matmul_fp32_tflops"
    if peaks.get("matmul_int8_tflops") and peaks.get(peak_key) and ref:
        hidden, inter = map(int, rec["width"].split("/"))
        tokens, steps = setup["batch"] * setup["seq"], setup["timesteps"] * setup["layers"]
        lin_ms = 2 * tokens * (4 * hidden ** 2 + 2 * hidden * inter) * steps / peaks["matmul_int8_tflops"] / 1e9
        att_ms = (3 if split else 1) * 2 * tokens * 2 * setup["seq"] * hidden * steps / peaks[peak_key] / 1e9
        products = i8["int8 product + LIF (Triton)"] + i8["int8 product (Triton)"]
        rest = i8["all kernels"] - products - i8["attention"]
        practical = lin_ms + i8["attention"] + rest
        how = (f"as three bf16 tensor-core products each (the split-bf16 kernel, as accurate as fp32), "
               f"{_g(att_ms)} ms at the measured bf16 matmul peak ({_g(peaks[peak_key])} TFLOP/s)" if split else
               f"in fp32, {_g(att_ms)} ms at the measured fp32 matmul peak ({_g(peaks[peak_key])} TFLOP/s)")
        text += (f"Ceilings for the integer path, against the reference loop's {ref:.2f} s: its linear layers at "
                 f"the measured int8 peak ({_g(peaks['matmul_int8_tflops'])} TOP/s) take {_g(lin_ms)} ms and the "
                 f"attention {how}: with nothing else, {_g(ref * 1e3 / (lin_ms + att_ms))}x. With the products at "
                 f"the int8 peak but the attention ({_g(i8['attention'])} ms) and every other kernel ({_g(rest)} ms) "
                 f"as measured, {_g(ref * 1e3 / practical)}x. So issue 12's 30x needs nearly every kernel at its "
                 f"device peak.")
        fp8 = read_bench_file(Path(gemm_path))
        square = None if isinstance(fp8, str) else next(
            (r for r in fp8["shapes"] if not r["t"] and r.get("fp8_exact") and "fp8_scaled_mm" in r), None)
        if square:
            top = square["fp8_scaled_mm"]["tera_ops_per_s"]
            fast = lin_ms * peaks["matmul_int8_tflops"] / top
            text += (f" The fastest exact product measured is cuBLASLt's fp8 one ({top:.0f} TOP/s on the "
                     f"{square['M']}^3 square, exact on these values: the products section): at that rate the "
                     f"linear layers take {_g(fast)} ms, and with the attention and every other kernel as "
                     f"measured the integer path would run {_g(ref * 1e3 / (fast + i8['attention'] + rest))}x.")
    return text
