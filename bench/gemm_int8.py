"""The integer path's products on CUDA: ``torch._int_mm`` (both weight layouts), stpcore's Triton
kernels and a bf16 product of the same shape, at the simulator's GEMM shapes.

    PYTHONPATH=. python bench/gemm_int8.py          # one H200: about 30 s

For each shape ``(M, K, N)`` (``M = t B N`` rows of a time-folded block, K the fan-in, N the
fan-out; plus an 8192^3 square for the peaks): the median of 5 timed calls (``bench_sim.Timer``:
CUDA events, after 3 warm-up calls) of

* ``int_mm_rowmajor``: ``torch._int_mm(x, w)`` with a row-major ``[K, N]`` weight;
* ``int_mm_colmajor``: ``torch._int_mm(x, signs.t())``, the column-major weight cuBLASLt takes;
* ``binary_linear``: :func:`stpcore.snn.int_kernels.binary_linear` (int32 accumulation and the
  fp32 current, one FMA, written);
* ``binary_linear_lif``: :func:`stpcore.snn.int_kernels.binary_linear_lif` over the ``t`` steps of
  the block (product, current and LIF, int8 spikes written), where the shape has a ``t``;
* ``bf16_matmul``: ``x @ w.t()`` in bf16;
* ``fp8_scaled_mm``: ``torch._scaled_mm`` (cuBLASLt) of the same 0/1 and +-1 values as
  ``float8_e4m3fn``, unit scales, fp32 out: the integer product without stpcore's epilogue, where
  K is a multiple of 16 (cuBLASLt's condition). ``fp8_exact``: whether it equals the int32
  product on these inputs and on all-ones spikes against all-plus signs (the largest sum, K).

It first checks, at every shape, that ``binary_linear`` equals ``alpha * acc + bias`` computed in
float64 from the exact integer product and rounded once. At the simulator's shapes it then
times each kernel at every tile of :data:`TILES` (``tiles``: ms per tile, and whether the output
equals the default tile's), the evidence for ``int_kernels._tile``'s fixed choice (``configs``).
Writes ``bench/results/gemm_int8_cuda.json`` (numbers, tiles, provenance).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sim import Timer  # noqa: E402

from stpcore.runs.records import (REPO_ROOT, SOURCE_SHA256, atomic_write_json,  # noqa: E402
                                  describe_device, git_commit)
from stpcore.snn.int_kernels import (GROUP_M, TILE_KEYS, _tile, binary_linear,  # noqa: E402
                                     binary_linear_lif)

#: (t, B N, K, N): a time chunk of 32 steps at batch 32 x 128 tokens; t = 0 marks the square.
#: The last two: a spatially pruned intermediate population (60 % of 3072 neurons) padded to a
#: multiple of 8 (1848) and of 16 (1856, ``stpcore.snn.layer.ALIGN``), feeding the output layer.
SHAPES = [(0, 8192, 8192, 8192), (32, 4096, 768, 768), (32, 4096, 768, 3072),
          (32, 4096, 3072, 768), (32, 4096, 384, 384), (32, 4096, 384, 1536), (32, 4096, 1536, 384),
          (32, 4096, 1848, 768), (32, 4096, 1856, 768)]

#: Candidate tiles per kernel, ``(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages)``.
TILES = {"binary_linear": [(128, 128, 64, 4, 4), (128, 128, 128, 8, 3), (256, 128, 128, 8, 3),
                           (128, 256, 128, 8, 3), (128, 128, 64, 8, 4)],
         "binary_linear_lif": [(128, 64, 128, 4, 4), (128, 64, 128, 4, 3), (64, 128, 128, 4, 4),
                               (64, 64, 128, 4, 3), (128, 128, 128, 8, 3), (128, 64, 64, 4, 4)]}


def as_tile(m: int, n: int, k: int, warps: int, stages: int) -> dict:
    return dict(zip(TILE_KEYS, (m, n, k, GROUP_M, warps, stages)))


def sweep_tiles(fns: dict, timer, rounds: int = 5) -> dict:
    """``{kernel: {tile: {"ms", "same"}}}``: each kernel of ``fns`` (``name: tile -> output``)
    at each of its :data:`TILES`, ``ms`` the median over ``rounds`` rounds that time every tile
    in turn (so that a drifting clock moves all tiles alike), ``same`` whether the output equals
    the default tile's."""
    out = {}
    for name, fn in fns.items():
        ref = _flat(fn(None))
        calls = {str(tile): (lambda tile=tile: fn(as_tile(*tile))) for tile in TILES[name]}
        same = {key: bool(all(torch.equal(a, b) for a, b in zip(_flat(call()), ref)))
                for key, call in calls.items()}
        times = {key: [] for key in calls}
        for _ in range(rounds):
            for key, call in calls.items():
                times[key].append(1e3 * timer(call, 3, warmup=1))
        out[name] = {key: {"ms": sorted(t)[len(t) // 2], "same": same[key]} for key, t in times.items()}
    return out


def _flat(value) -> list:
    return [value] if isinstance(value, torch.Tensor) else [v for x in value for v in _flat(x)]


FP8 = torch.float8_e4m3fn


def fp8_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b^T`` of fp8 ``a [M, K]`` and ``b [N, K]`` through cuBLASLt, unit scales, fp32 out."""
    one = torch.ones((), device=a.device)
    return torch._scaled_mm(a, b.t(), one, one, out_dtype=torch.float32)


def fp8_exact(x8, w8, flat, signs) -> bool:
    """Whether cuBLASLt's fp8 product equals the exact int32 one, on the data and on the
    largest sums (all-ones rows against all-plus signs)."""
    ones, plus = torch.ones_like(x8[:64]), torch.ones_like(w8)
    return bool(torch.equal(fp8_product(x8, w8), torch._int_mm(flat, signs.t()).float())
                and torch.equal(fp8_product(ones, plus),
                                torch.full((64, w8.shape[0]), float(w8.shape[1]), device="cuda")))


def make_data(t: int, m: int, k: int, n: int, gen: torch.Generator):
    x = (torch.rand(max(t, 1), m, k, generator=gen, device="cuda") < 0.2).to(torch.int8)
    signs = torch.randint(-1, 2, (n, k), generator=gen, device="cuda", dtype=torch.int8)
    alpha = torch.rand(n, generator=gen, device="cuda") * 0.1
    return x, signs, alpha, torch.randn(n, generator=gen, device="cuda")


def main() -> dict:
    start, gen = time.perf_counter(), torch.Generator(device="cuda").manual_seed(0)
    timer = Timer(torch.device("cuda"))
    rows = []
    for t, m, k, n in SHAPES:
        x, signs, alpha, bias = make_data(t, m, k, n, gen)
        flat = x.reshape(-1, k)
        exact = (alpha.double() * (flat.double() @ signs.double().t()) + bias.double()).float()
        row = {"t": t, "M": flat.shape[0], "K": k, "N": n,
               "exact": bool(torch.equal(binary_linear(flat, signs, alpha, bias), exact))}
        del exact
        w_row, xb, wb = signs.t().contiguous(), flat.to(torch.bfloat16), signs.to(torch.bfloat16)
        vth = torch.tensor(1.0, device="cuda")
        fns = {"int_mm_rowmajor": lambda: torch._int_mm(flat, w_row),
               "int_mm_colmajor": lambda: torch._int_mm(flat, signs.t()),
               "binary_linear": lambda: binary_linear(flat, signs, alpha, bias),
               "bf16_matmul": lambda: xb @ wb.t()}
        if k % 16 == 0:
            x8, w8 = flat.to(FP8), signs.to(FP8)
            fns["fp8_scaled_mm"] = lambda: fp8_product(x8, w8)
            row["fp8_exact"] = fp8_exact(x8, w8, flat, signs)
        if t:
            fns["binary_linear_lif"] = lambda: binary_linear_lif(x, signs, alpha, bias, vth)
        for name, fn in fns.items():
            ms = 1e3 * timer(fn, 5, warmup=3)
            row[name] = {"ms": ms, "tera_ops_per_s": 2 * flat.shape[0] * n * k / ms / 1e9}
        row["configs"] = {"binary_linear": _tile(False), "binary_linear_lif": _tile(True) if t else None}
        if t:
            row["tiles"] = sweep_tiles({
                "binary_linear": lambda tile: binary_linear(flat, signs, alpha, bias, tile),
                "binary_linear_lif": lambda tile: binary_linear_lif(x, signs, alpha, bias, vth, tile=tile)},
                timer)
        rows.append(row)
        print(f"t={t:>2} M={row['M']:>6} K={k:>4} N={n:>4} exact={row['exact']} | "
              + " | ".join(f"{name} {row[name]['ms']:.3f} ms {row[name]['tera_ops_per_s']:.0f} T/s"
                           for name in fns), flush=True)
        del x, flat, w_row, xb, wb, fns
        torch.cuda.empty_cache()
    record = {"name": "gemm_int8", "shapes": rows,
              "provenance": {**git_commit(), "source_sha256": SOURCE_SHA256,
                             "device": describe_device(torch.device("cuda")),
                             "torch": torch.__version__, "triton": __import__("triton").__version__,
                             "wall_time_s": time.perf_counter() - start}}
    path = REPO_ROOT / "bench" / "results" / "gemm_int8_cuda.json"
    atomic_write_json(path, record)
    print(f"wrote {path.relative_to(REPO_ROOT)}")
    return record


if __name__ == "__main__":
    main()
