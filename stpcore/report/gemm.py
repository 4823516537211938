"""The integer path's products alone on the benchmarks page: ``bench/gemm_int8.py``'s record of
stpcore's Triton kernels, cuBLAS int8, bf16 and fp8 products at the simulator's GEMM shapes, as
a table and in words (with the tile sweep behind the kernels' fixed tiles)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .benchmarks import BENCH_RESULTS, _g, read_bench_file
from .tables import NO_METRIC

GEMM_RECORD = BENCH_RESULTS / "gemm_int8_cuda.json"
GEMM_COLUMNS = {"int_mm_rowmajor": "torch._int_mm, row-major weight",
                "int_mm_colmajor": "torch._int_mm, column-major weight",
                "binary_linear": "stpcore binary_linear (current written)",
                "binary_linear_persistent": "stpcore binary_linear, persistent",
                "binary_linear_lif": "stpcore binary_linear_lif (spikes written)",
                "bf16_matmul": "bf16 product",
                "fp8_scaled_mm": "cuBLASLt fp8 product, fp32 out (no epilogue)",
                "binary_linear_fp8": "stpcore binary_linear, fp8 operands",
                "binary_linear_lif_fp8": "stpcore binary_linear_lif, fp8 operands"}


#: The products of :data:`GEMM_COLUMNS` that are alternatives to the integer path's own kernels
#: (:func:`gemm_table`'s second table): cuBLASLt's fp8 product, and stpcore's kernels on fp8
#: operands and a persistent ``binary_linear``, both timed in the record at 0dbfeb3 and removed.
ALTERNATIVES = ("binary_linear_persistent", "fp8_scaled_mm", "binary_linear_fp8",
                "binary_linear_lif_fp8")


def gemm_table(path: str | Path = GEMM_RECORD, alternatives: bool = False) -> pd.DataFrame | str:
    """Per GEMM shape ``(t, M, K, N)``: tera-operations per second of each product in
    ``bench/gemm_int8.py``'s record, whether stpcore's currents were exact, or a line saying the
    record is missing. The int8 and bf16 products, or with ``alternatives`` those of
    :data:`ALTERNATIVES` (and whether fp8 gave the exact sums)."""
    rec = read_bench_file(Path(path))
    if isinstance(rec, str):
        return rec + " (run `python bench/gemm_int8.py` on a GPU)"
    columns = {k: v for k, v in GEMM_COLUMNS.items() if (k in ALTERNATIVES) == alternatives}
    flag = ("fp8_exact", "fp8 sums exact") if alternatives else ("exact", "currents exact")
    rows = [{"t": r["t"], "M": r["M"], "K": r["K"], "N": r["N"], flag[1]: r.get(flag[0], NO_METRIC),
             **{label + " (TOP/s)": round(r[key]["tera_ops_per_s"]) if key in r else NO_METRIC
                for key, label in columns.items()}} for r in rec["shapes"]]
    return pd.DataFrame(rows).set_index(["t", "M", "K", "N"])


def gemm_reading(path: str | Path = GEMM_RECORD) -> str:
    """The simulator's shapes (``t > 0``) in words: stpcore's product against cuBLAS int8 and
    bf16, and what fusing the LIF scan costs on top of the product."""
    rec = read_bench_file(Path(path))
    if isinstance(rec, str):
        return rec
    shapes = [r for r in rec["shapes"] if r["t"] and r["K"] % 16 == 0 and r["N"] % 16 == 0]
    odd = [r for r in rec["shapes"] if r["t"] and (r["K"] % 16 or r["N"] % 16)]
    ms = lambda r, k: r[k]["ms"]
    span = lambda f: _span(list(map(f, shapes)))
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
            f"{persistent_reading(shapes)}{fp8_reading(shapes, square)}{tile_reading(shapes)}")


def fp8_reading(shapes: list, square: dict | None) -> str:
    """What cuBLASLt's fp8 product of the same 0/1 and +-1 values says about the tensor cores'
    headroom (``fp8_scaled_mm``, ``fp8_exact`` in the record; empty where they are absent)."""
    timed = [r for r in shapes if "fp8_scaled_mm" in r]
    if not timed:
        return ""
    ms = lambda r, k: r[k]["ms"]
    exact = all(r.get("fp8_exact") for r in timed + ([square] if square and "fp8_exact" in square else []))
    over = _span([ms(r, "binary_linear") / ms(r, "fp8_scaled_mm") for r in timed])
    top = (f" ({square['fp8_scaled_mm']['tera_ops_per_s']:.0f} TOP/s on the square)"
           if square and "fp8_scaled_mm" in square else "")
    return (f" The same 0/1 spikes and +-1 signs as fp8 (e4m3) through cuBLASLt's `_scaled_mm` with "
            f"fp32 output{top} {'gave the exact integer sums at every shape, including the largest (all ones)' if exact else 'were NOT exact at every shape'}"
            f", and `binary_linear` takes {over}x its time (it also forms and writes "
            f"the current): the tensor cores can multiply these values faster than stpcore's Triton "
            f"kernels do, but cuBLASLt cannot run the LIF scan behind its product."
            f"{fp8_kernels_reading(timed)}")


def fp8_kernels_reading(shapes: list) -> str:
    """stpcore's own kernels on fp8 operands (``binary_linear_fp8``, ``binary_linear_lif_fp8``:
    the record at 0dbfeb3, whose fp8 path was removed after it as no faster) against the same
    kernels on int8, in words; empty where the record has no such timing."""
    pairs = [(k, k + "_fp8") for k in ("binary_linear", "binary_linear_lif")]
    spans = {k: [r[k]["ms"] / r[f]["ms"] for r in shapes if f in r and k in r] for k, f in pairs}
    if not any(spans.values()):
        return ""
    same = all(r.get("fp8_kernels_equal") for r in shapes if "fp8_kernels_equal" in r)
    span = lambda v: _g(min(v)) if _g(min(v)) == _g(max(v)) else _span(v)
    said = "; ".join(f"`{k}` {span(v)}x" for k, v in spans.items() if v)
    return (f" stpcore's own kernels on those fp8 operands (fp32 accumulation; tried at this record's "
            f"commit, then removed) ran at these speeds "
            f"against the same kernels on int8 (int8 time / fp8 time, above 1 where fp8 is faster): "
            f"{said}, and their currents and spikes "
            f"{'equal the int8 kernels bit for bit at every shape' if same else 'DIFFER from the int8 kernels'}.")


def persistent_reading(shapes: list) -> str:
    """A persistent ``binary_linear`` against the default kernel (``binary_linear_persistent``,
    ``persistent_equal``: the record at 0dbfeb3, whose kernel was removed after it as slower), in
    words; empty where the record has no such timing."""
    ratio = [r["binary_linear"]["ms"] / r["binary_linear_persistent"]["ms"]
             for r in shapes if "binary_linear_persistent" in r]
    if not ratio:
        return ""
    same = all(r.get("persistent_equal", False) for r in shapes if "binary_linear_persistent" in r)
    return (f" A persistent `binary_linear` (one program per SM walking the tiles, currents stored "
            f"through TMA; tried at this record's commit, then removed) ran at "
            f"{_span(ratio)}x the default kernel's speed, with "
            f"{'the same currents at every shape' if same else 'DIFFERENT currents'}.")


def _span(values: list[float]) -> str:
    """``min-max`` of ``values`` as :func:`~stpcore.report.benchmarks._g` writes numbers."""
    return f"{_g(min(values))}-{_g(max(values))}"


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
