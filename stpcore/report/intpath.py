"""The integer simulation path (issue 12) on the benchmarks page: its exactness against a float64
simulation (``bench/exactness.py``, on CPU and on CUDA), its products at the simulator's GEMM
shapes (``bench/gemm_int8.py``), and its speed in a 1-bit bench record against bf16 and the
issue's targets (:func:`integer_path_summary`)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..runs.records import REPO_ROOT
from .benchmarks import (INT8, MET, NOT_MET, T_INT, T_INT_DEFAULT, T_INT_TIE, _g, dtype_table,
                         record_dtypes)
from .tables import NO_METRIC

RESULTS = REPO_ROOT / "bench" / "results"
EXACTNESS_RECORDS = {"cpu": RESULTS / "exactness_cpu.json", "cuda": RESULTS / "exactness_cuda.json"}
EXACTNESS_COLUMNS = {"frac_currents_differing": "currents differing from exact (share)",
                     "max_abs_current_diff": "largest current difference",
                     "frac_rates_differing": "rates differing from float64 (share)",
                     "max_abs_asr_diff": "largest rate difference",
                     "predictions_equal_float64": "predictions equal to float64"}
#: The exactness record's name for the integer path with PyTorch's attention (bench/exactness.py).
SDPA = "int8_sdpa"
GEMM_RECORD = RESULTS / "gemm_int8_cuda.json"
GEMM_COLUMNS = {"int_mm_rowmajor": "torch._int_mm, row-major weight",
                "int_mm_colmajor": "torch._int_mm, column-major weight",
                "binary_linear": "stpcore binary_linear (current written)",
                "binary_linear_lif": "stpcore binary_linear_lif (spikes written)",
                "bf16_matmul": "bf16 product",
                "fp8_scaled_mm": "cuBLASLt fp8 product, fp32 out (no epilogue)"}


def _load(path: Path) -> dict | str:
    return json.loads(path.read_text()) if path.is_file() else f"no record at {path}"


def exactness_table(path: str | Path = EXACTNESS_RECORDS["cpu"]) -> pd.DataFrame | str:
    """Per model and simulation dtype: how far its first-layer currents and its rates are from a
    float64 simulation of the same model (``bench/exactness.py``'s record), or a line saying
    the record is missing."""
    rec = _load(Path(path))
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
    rec = _load(Path(path))
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


def gemm_table(path: str | Path = GEMM_RECORD) -> pd.DataFrame | str:
    """Per GEMM shape ``(t, M, K, N)``: tera-operations per second of each product in
    ``bench/gemm_int8.py``'s record, whether stpcore's currents were exact, or a line saying the
    record is missing."""
    rec = _load(Path(path))
    if isinstance(rec, str):
        return rec + " (run `python bench/gemm_int8.py` on a GPU)"
    rows = [{"t": r["t"], "M": r["M"], "K": r["K"], "N": r["N"], "currents exact": r["exact"],
             **{label + " (TOP/s)": round(r[key]["tera_ops_per_s"]) if key in r else NO_METRIC
                for key, label in GEMM_COLUMNS.items()}} for r in rec["shapes"]]
    return pd.DataFrame(rows).set_index(["t", "M", "K", "N"])


def gemm_reading(path: str | Path = GEMM_RECORD) -> str:
    """The simulator's shapes (``t > 0``) in words: stpcore's product against cuBLAS int8 and
    bf16, and what fusing the LIF scan costs on top of the product."""
    rec = _load(Path(path))
    if isinstance(rec, str):
        return rec
    shapes = [r for r in rec["shapes"] if r["t"] and r["K"] % 16 == 0 and r["N"] % 16 == 0]
    odd = [r for r in rec["shapes"] if r["t"] and (r["K"] % 16 or r["N"] % 16)]
    ms = lambda r, k: r[k]["ms"]
    span = lambda f: f"{_g(min(map(f, shapes)))}-{_g(max(map(f, shapes)))}"
    square = next((r for r in rec["shapes"] if not r["t"]), None)
    peak = (f" On the {square['M']}^3 square the column-major `torch._int_mm` reaches "
            f"{_g(square['int_mm_colmajor']['tera_ops_per_s'])} TOP/s against bf16's "
            f"{_g(square['bf16_matmul']['tera_ops_per_s'])} TFLOP/s, and a row-major weight drops it to "
            f"{_g(square['int_mm_rowmajor']['tera_ops_per_s'])}." if square else "")
    everywhere = all(r["exact"] for r in rec["shapes"])
    exact = f"The currents are {'exact at every shape' if everywhere else 'NOT exact at every shape'}."
    beats = sum(ms(r, "binary_linear") < ms(r, "bf16_matmul") for r in shapes)
    cublas = lambda r: ms(r, "int_mm_colmajor") / ms(r, "bf16_matmul")
    versus = (("At every simulator shape they take longer than bf16" if not beats else
               f"At {beats} of {len(shapes)} simulator shapes they beat bf16") + (
        f"; cuBLAS int8 takes {span(cublas)}x bf16's time at every one: at these shapes (M large, K "
        f"and N a few hundred to a few thousand) int8 products as such are not faster than bf16's "
        f"on this device." if all(cublas(r) > 1 for r in shapes) else
        "; cuBLAS int8 beats bf16 at some of them, so stpcore's kernels leave speed unused."))
    rate = lambda r: _g(r["binary_linear"]["tera_ops_per_s"])
    twin = lambda r: next((q for q in shapes if q["M"] == r["M"] and q["N"] == r["N"]
                           and 0 < q["K"] - r["K"] < 16), None)
    aligned = "".join(
        f" At K = {r['K']}, not a multiple of 16, `binary_linear` runs at {rate(r)} TOP/s"
        + (f" against {rate(twin(r))} at K = {twin(r)['K']}" if twin(r) else "")
        + ": Triton vectorises int8 rows only when they are 16-byte aligned, so pruned widths are "
          "padded to 16 for the integer path (`stpcore.snn.layer.ALIGN`)." for r in odd)
    return (f"At the simulator's aligned shapes (a block of {shapes[0]['t']} steps, M = {shapes[0]['M']} rows) "
            f"stpcore's `binary_linear` takes {span(lambda r: ms(r, 'binary_linear') / ms(r, 'bf16_matmul'))}x "
            f"the bf16 product's time and {span(lambda r: ms(r, 'binary_linear') / ms(r, 'int_mm_colmajor'))}x "
            f"cuBLAS int8's; with the LIF scan fused behind it (`binary_linear_lif`, int8 spikes out) "
            f"{span(lambda r: ms(r, 'binary_linear_lif') / ms(r, 'binary_linear'))}x the product alone, "
            f"which saves writing and re-reading the fp32 currents.{peak} {exact} {versus}{aligned}"
            f"{fp8_reading(shapes, square)}{tile_reading(shapes)}")


def fp8_reading(shapes: list, square: dict | None) -> str:
    """What cuBLASLt's fp8 product of the same 0/1 and +-1 values says about the tensor cores'
    headroom (``fp8_scaled_mm``, ``fp8_exact`` in the record; empty where they are absent)."""
    timed = [r for r in shapes if "fp8_scaled_mm" in r]
    if not timed:
        return ""
    ms = lambda r, k: r[k]["ms"]
    exact = all(r.get("fp8_exact") for r in timed + ([square] if square and "fp8_exact" in square else []))
    lo, hi = (f(ms(r, "binary_linear") / ms(r, "fp8_scaled_mm") for r in timed) for f in (min, max))
    top = (f" ({square['fp8_scaled_mm']['tera_ops_per_s']:.0f} TOP/s on the square)"
           if square and "fp8_scaled_mm" in square else "")
    return (f" The same 0/1 spikes and +-1 signs as fp8 (e4m3) through cuBLASLt's `_scaled_mm` with "
            f"fp32 output{top} {'gave the exact integer sums at every shape, including the largest (all ones)' if exact else 'were NOT exact at every shape'}"
            f", and `binary_linear` takes {_g(lo)}-{_g(hi)}x its time (it also forms and writes "
            f"the current): the tensor cores can multiply these values faster than stpcore's Triton "
            f"kernels do, but cuBLASLt cannot run the LIF scan behind its product.")


def tile_key(tile: dict) -> str:
    """A tile dict (``int_kernels._tile``) as the sweep's key, ``(BLOCK_M, BLOCK_N, BLOCK_K,
    num_warps, num_stages)``."""
    return str(tuple(tile[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages")))


def tile_reading(shapes: list[dict]) -> str:
    """The tile sweep (``tiles`` of the shapes that have one) in words: how far the fixed tile of
    each kernel is from the best tile tried, at its worst shape, and whether every tile gave
    the same output."""
    swept = [r for r in shapes if "tiles" in r]
    if not swept:
        return ""
    parts, same = [], all(c["same"] for r in swept for cells in r["tiles"].values() for c in cells.values())
    for kernel in GEMM_COLUMNS:
        rows = [r for r in swept if kernel in r["tiles"] and r["configs"].get(kernel)]
        if rows:
            over = {(r["K"], r["N"]): r["tiles"][kernel][tile_key(r["configs"][kernel])]["ms"]
                    / min(c["ms"] for c in r["tiles"][kernel].values()) for r in rows}
            (k, n), worst = max(over.items(), key=lambda kv: kv[1])
            tried = len(rows[0]["tiles"][kernel])
            parts.append(f"`{kernel}`'s is the fastest of {tried} tiles at every shape" if worst < 1.005
                         else f"`{kernel}`'s is {_g(100 * (worst - 1))} % slower than the best of "
                              f"{tried} tiles at its worst shape (K = {k}, N = {n})")
    return (f" The kernels' tiles are fixed per shape (`int_kernels._tile`), not autotuned; of the "
            f"tiles swept at these shapes, {' and '.join(parts)}; every tile gave "
            f"{'the same outputs' if same else 'NOT the same outputs'}.")


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
    second = {w: profile_ratio(record, w) for w in default}         # a second timing disagrees:
    tied = [w for w in timed if abs(ratio[w] - T_INT_DEFAULT) < T_INT_TIE
            or (second.get(w) or float("inf")) < T_INT_DEFAULT + T_INT_TIE]
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
                     "API (`simulate(dtype=torch.int8)`)."))
    return (f"On {prov.get('device', '?')} (torch {prov.get('torch', '?')}) the integer path runs {runs}. "
            f"Issue 12's target of >= {T_INT:g}x the reference loop is {target}.{peak} {rule}")


PROFILE_RECORD = RESULTS / "profile_sim_cuda.json"


def profile_ratio(bench: dict, width: str, path: str | Path = PROFILE_RECORD) -> float | None:
    """The dense int8 run's throughput over bf16's in the profile record (wall times), where it
    profiled ``width`` at the bench record's commit; else None."""
    prof = _load(Path(path))
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
    rec = _load(Path(path))
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
    rec = _load(Path(path))
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
        fp8 = _load(Path(gemm_path))
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
