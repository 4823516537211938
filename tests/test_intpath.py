"""The integer path's readings (stpcore.report.intpath): the bench summary against bf16, the
second timing from the profile, exactness against float64, the products alone and the profile's
kernel groups and ceilings."""
import json

import pytest

from stpcore.report import benchmarks, gemm, intpath

from test_benchmarks import _binary, _record


def test_dtype_table_and_integer_path_summary():
    rec = _binary(_record(True), 6.0)
    t = benchmarks.dtype_table(rec)
    assert list(t.index) == [(w, d) for w in ("768/3072", "384/1536") for d in ("fp32", "bf16", "int8")]
    assert t.loc[("384/1536", "int8"), "throughput / bf16 throughput"] == pytest.approx(6.0 / 25.0)
    assert t.loc[("384/1536", "bf16"), "throughput / bf16 throughput"] == "n/a"
    assert t.loc[("768/3072", "int8"), "met?"] == "no"
    text = intpath.integer_path_summary(rec)
    assert "5x slower than bf16" in text and "4.17x slower than bf16" in text     # 30/6, 25/6
    assert "0.171x the bf16 matmul" in text and "bf16 stays the default" in text   # 120 / 700
    assert "not met at widths 768/3072 and 384/1536" in text
    fast = intpath.integer_path_summary(_binary(_record(True), 40.0))
    assert "met at every width" in fast and "default at width 768/3072, 384/1536" in fast
    assert "no int8 results" in intpath.integer_path_summary(_record(True))
    tie = intpath.integer_path_summary(_binary(_record(True), 31.0))       # 31/30 and 31/25 of bf16
    assert ("The two tie: at width 768/3072 this record has int8 at 1.033x bf16's throughput. "
            "A difference within 5 %") in tie
    assert "it would be the default at width 384/1536." in tie
    assert "The paper profile simulates every 1-bit model in int8" in tie   # its binary_sim_dtype
    assert "The paper profile simulates" not in fast
    labels = {t.get_text() for t in benchmarks.plot_roofline(rec).axes[0].texts}
    assert {"int8 768/3072", "int8 384/1536"} <= labels


def test_a_second_timing_within_the_tie_keeps_bf16_the_default(tmp_path):
    """The profile of the same commit times the dense runs again; int8 beyond the tie in the bench
    but within it in the profile is a tie (and a profile of another commit or width is ignored)."""
    rec = _binary(_record(True), 31.0)                   # 31/30 (tie) and 31/25 of bf16's
    rec["provenance"] = {"git_commit": "abc"}
    path = tmp_path / "profile.json"

    def profile(commit="abc", width="384/1536", int8_ms=49.0):
        path.write_text(json.dumps({"width": width, "provenance": {"git_commit": commit}, "runs": {
            "dense_bf16": {"wall_ms": 50.0}, "dense_int8": {"wall_ms": int8_ms}}}))
    profile()
    assert intpath.profile_ratio(rec, "384/1536", path) == pytest.approx(50 / 49)
    for args in ({"commit": "other"}, {"width": "768/3072"}):
        profile(**args)
        assert intpath.profile_ratio(rec, "384/1536", path) is None
    profile()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(intpath, "PROFILE_RECORD", path)
        mp.setattr(intpath.profile_ratio, "__defaults__", (path,))
        text = intpath.integer_path_summary(rec)
        assert ("at width 384/1536 this record has int8 at 1.240x bf16's throughput and the profile of "
                "the same commit (`profile_sim_cuda`, a second timing) at 1.020x") in text
        assert "bf16 stays the default" in text
        profile(int8_ms=40.0)                            # 1.25x there too: the default at 384
        assert "it would be the default at width 384/1536." in intpath.integer_path_summary(rec)


def _exactness(path, int8_share, int8_top, currents=0.0):
    res = lambda share, top, cur: {"frac_currents_differing": cur, "max_abs_current_diff": cur,
                                   "frac_rates_differing": share, "max_abs_asr_diff": top,
                                   "predictions_equal_float64": 4}
    path.write_text(json.dumps({"dtypes": ["fp32", "bf16", "int8"], "provenance": {"device": "GPU X"},
                                "models": {"m": {"fp32": res(0.1, 0.05, 0.5), "bf16": res(0.3, 0.2, 1.0),
                                                 "int8": res(int8_share, int8_top, currents),
                                                 "setup": {"examples": 4}}}}))
    return path


@pytest.mark.parametrize("share, top, held", [(0.08, 0.05, 1), (0.12, 0.05, 0), (0.08, 0.06, 0),
                                               (0.08, 0.05 * (1 + 3e-7), 1)])   # fp32 last bit
def test_exactness_reading_judges_int8_against_fp32(tmp_path, share, top, held):
    text = intpath.exactness_reading(_exactness(tmp_path / "e.json", share, top))
    assert text.startswith("On GPU X") and f"holds for {held} of 1 models" in text
    assert f"m: {share / 0.1:.3g}x fp32's share" in text and "(bf16: 3x the share)" in text
    assert "currents are all the exact values" in text
    assert "not all the exact" in intpath.exactness_reading(_exactness(tmp_path / "f.json", share, top, 0.01))
    assert "no exactness record" in intpath.exactness_reading(tmp_path / "none.json")


def test_gemm_table_and_reading(tmp_path):
    cell = lambda ms: {"ms": ms, "tera_ops_per_s": 1.0 / ms}
    shape = lambda t, bl, bf16, lif=None, k=16, mm=1.0: {
        "t": t, "M": 64, "K": k, "N": 16, "exact": True, "int_mm_rowmajor": cell(4.0),
        "int_mm_colmajor": cell(mm), "binary_linear": cell(bl), "bf16_matmul": cell(bf16),
        **({"binary_linear_lif": cell(lif)} if lif else {})}
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"shapes": [shape(0, 1.0, 1.0), shape(2, 2.0, 1.0, 3.0, mm=1.25),
                                           shape(2, 1.5, 1.0, 1.5, k=32, mm=1.5),
                                           shape(2, 20.0, 1.0, 30.0, k=24)]}))
    table = gemm.gemm_table(path)
    assert table.loc[(0, 64, 16, 16), "stpcore binary_linear_lif (spikes written) (TOP/s)"] == "n/a"
    assert table.loc[(2, 64, 32, 16), "bf16 product (TOP/s)"] == 1
    text = gemm.gemm_reading(path)          # the unaligned K = 24 is left out of the spans
    assert "takes 1.5-2x the bf16 product's time" in text and "1-1.5x the product alone" in text
    assert "currents are exact at every shape" in text and "row-major weight drops it to 0.25" in text
    assert "At every simulator shape they take longer than bf16; cuBLAS int8 takes 1.25-1.5x" in text
    assert "At K = 24, not a multiple of 16, `binary_linear` runs at 0.05 TOP/s against 0.667 at K = 32" in text
    rec = json.loads(path.read_text())
    rec["shapes"][1]["int_mm_colmajor"] = cell(0.5)
    rec["shapes"][1]["exact"] = False
    path.write_text(json.dumps(rec))
    text = gemm.gemm_reading(path)
    assert "NOT exact at every shape" in text and "stpcore's kernels leave speed unused" in text
    assert "bench/gemm_int8.py" in str(gemm.gemm_table(tmp_path / "none.json"))
    assert "tiles" not in text
    tile = lambda m: {"BLOCK_M": m, "BLOCK_N": 64, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 4,
                      "num_stages": 3}
    for r, ms in zip(rec["shapes"][1:3], (1.1, 1.25)):      # the fixed tile (64) vs a faster one (128)
        r["configs"] = {"binary_linear": tile(64), "binary_linear_lif": tile(64)}
        r["tiles"] = {k: {gemm.tile_key(tile(64)): {"ms": ms, "same": True},
                          gemm.tile_key(tile(128)): {"ms": 1.0, "same": True}}
                      for k in ("binary_linear", "binary_linear_lif")}
    path.write_text(json.dumps(rec))
    text = gemm.gemm_reading(path)
    assert "`binary_linear`'s is 25 % slower than the best of 2 tiles at its worst shape (K = 32, N = 16)" in text
    for r in rec["shapes"][1:3]:
        r["tiles"]["binary_linear_lif"][gemm.tile_key(tile(64))]["ms"] = 1.0
    path.write_text(json.dumps(rec))
    assert "`binary_linear_lif`'s is the fastest of 2 tiles at every shape" in gemm.gemm_reading(path)
    assert "every tile gave the same outputs" in text
    rec["shapes"][2]["tiles"]["binary_linear"][gemm.tile_key(tile(128))]["same"] = False
    path.write_text(json.dumps(rec))
    assert "NOT the same outputs" in gemm.gemm_reading(path)
    assert "fp8" not in text
    for r, ms in zip(rec["shapes"][:3], (0.5, 0.8, 1.0)):
        r["fp8_scaled_mm"], r["fp8_exact"] = cell(ms), True
    path.write_text(json.dumps(rec))
    text = gemm.gemm_reading(path)
    assert "fp32 output (2 TOP/s on the square) gave the exact integer sums at every shape" in text
    assert "`binary_linear` takes 1.5-2.5x its time" in text
    alt = gemm.gemm_table(path, alternatives=True)
    assert alt.loc[(2, 64, 16, 16), "cuBLASLt fp8 product, fp32 out (no epilogue) (TOP/s)"] == 1
    assert alt.loc[(2, 64, 16, 16), "fp8 sums exact"] and "bf16 product (TOP/s)" not in alt
    rec["shapes"][0]["fp8_exact"] = False
    path.write_text(json.dumps(rec))
    assert "were NOT exact at every shape" in gemm.gemm_reading(path)
    assert "stpcore's own kernels on those fp8 operands" not in text
    for r, (bl, lif) in zip(rec["shapes"][1:3], ((1.0, 2.0), (1.5, 1.0))):   # int8: 2/1.5, 3/1.5
        r["binary_linear_fp8"], r["binary_linear_lif_fp8"] = cell(bl), cell(lif)
        r["fp8_kernels_equal"] = True
    path.write_text(json.dumps(rec))
    text = gemm.gemm_reading(path)
    assert "`binary_linear` 1-2x; `binary_linear_lif` 1.5x, and their currents and spikes equal" in text
    assert gemm.gemm_table(path, True).loc[(2, 64, 16, 16), "stpcore binary_linear, fp8 operands (TOP/s)"] == 1
    assert "persistent" not in text
    for r, ms in zip(rec["shapes"][1:3], (1.0, 1.0)):          # default: 2.0 and 1.5 ms
        r["binary_linear_persistent"], r["persistent_equal"] = cell(ms), True
    path.write_text(json.dumps(rec))
    assert "ran at 1.5-2x the default kernel's speed, with the same currents" in gemm.gemm_reading(path)
    rec["shapes"][2]["fp8_kernels_equal"] = False
    path.write_text(json.dumps(rec))
    assert "DIFFER from the int8 kernels" in gemm.gemm_reading(path)


def test_profile_table_groups_kernels_and_reading_computes_the_ceilings(tmp_path):
    k = lambda ms: {"ms": ms, "calls": 1}
    run = lambda wall, **kernels: {"wall_ms": wall, "kernel_ms": sum(v["ms"] for v in kernels.values()),
                                   "kernels": {name.replace("__", " "): v for name, v in kernels.items()}}
    rec = {"width": "8/16", "setup": {"batch": 1, "seq": 10, "timesteps": 5, "layers": 2},
           "provenance": {"device": "GPU"}, "runs": {
               "dense_bf16": run(10.0, nvjet_x=k(4.0), fmha_bf16=k(1.0), _lif_scan_kernel=k(2.0)),
               "dense_int8": run(20.0, _binary_linear_lif_kernel=k(6.0), _binary_linear_kernel=k(3.0),
                                 fmha_cutlassF_f32=k(5.0), _sum_time_kernel=k(1.0), mystery=k(0.5)),
               "temporal_int8": run(30.0, bernoulli_tensor_cuda_kernel=k(12.0), Memcpy__DtoD=k(1.0))}}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(rec))
    table = intpath.profile_table(path)
    assert table.loc["int8 product + LIF (Triton)", "dense int8"] == 6.0
    assert table.loc["attention", "dense int8"] == 5.0 and table.loc["other", "dense int8"] == 0.5
    assert table.loc["float product (cuBLAS)", "dense bf16"] == 4.0
    assert table.loc["casts and copies", "temporal int8"] == 1.0
    assert table.loc["wall minus kernels", "dense int8"] == 4.5
    # linear ops: 2 * 10 tokens * (4 * 64 + 2 * 128) * 10 steps = 102400, at 0.1024 TOP/s 1 us;
    # attention: 2 * 10 tokens * 2 * 10 * 8 * 10 steps = 32000 FLOPs, at 0.032 TFLOP/s 1 us
    bench = {"peaks": {"matmul_int8_tflops": 0.1024, "matmul_fp32_tflops": 0.032},
             "widths": {"8/16": {"simulation": {"reference_s": 0.6}}}}
    none = tmp_path / "none.json"
    text = intpath.profile_reading(path, bench, none)
    assert "takes 20 ms (15.5 ms in kernels: int8 product + LIF (Triton) 6 ms, attention 5 ms" in text
    assert "12 of 30 ms (int8)" in text
    assert "take 0.001 ms" in text and "0.001 ms at the measured fp32 matmul peak" in text
    assert "with nothing else, 3e+05x" in text                      # 600 ms / 0.002 ms
    assert "every other kernel (1.5 ms) as measured, 92.3x" in text   # 600 / (0.001 + 5 + 1.5)
    assert "Ceilings" not in intpath.profile_reading(path)          # no bench record: no ceilings
    assert "fp8" not in text and "G spikes" not in text    # no GEMM record, no draw count
    gemm = tmp_path / "g.json"                             # fp8 at 4x the int8 peak: 0.00025 ms
    square = {"t": 0, "M": 64, "fp8_exact": True, "fp8_scaled_mm": {"tera_ops_per_s": 0.4096}}
    gemm.write_text(json.dumps({"shapes": [square]}))
    rec["runs"]["temporal_int8"]["bernoulli_draws"] = 6e9          # in 12 ms: 500 G per second
    path.write_text(json.dumps(rec))
    text = intpath.profile_reading(path, bench, gemm)
    assert "draw 6 G spikes, 500 G per second: one Philox4x32-10" in text
    assert "cuBLASLt's fp8 one (0 TOP/s on the 64^3 square" in text
    assert "take 0.00025 ms, and with the attention and every other kernel as measured the integer path would run 92.3x" in text
    square["fp8_exact"] = False
    gemm.write_text(json.dumps({"shapes": [square]}))
    assert "fp8" not in intpath.profile_reading(path, bench, gemm)
    assert "bench/profile_sim.py" in intpath.profile_table(tmp_path / "none.json")
    # the split-bf16 attention: three bf16 products per product, 96000 FLOPs at 0.096 TFLOP/s 1 us
    kernels = rec["runs"]["dense_int8"]["kernels"]
    kernels[intpath.SPLIT_KERNEL] = kernels.pop("fmha_cutlassF_f32")
    path.write_text(json.dumps(rec))
    text = intpath.profile_reading(path, {**bench, "peaks": {**bench["peaks"], "matmul_bf16_tflops": 0.096}}, none)
    assert "three bf16 tensor-core products each" in text and "0.001 ms at the measured bf16 matmul peak" in text
    assert "with nothing else, 3e+05x" in text and "as measured, 92.3x" in text
    assert "sat idle" not in text                                     # an older record: no gaps
    gaps = lambda idle, span, longest, launches: {
        "device_idle_ms": idle, "device_span_ms": span, "longest_gaps": [{"ms": longest}, {"ms": 0.1}],
        "host_ops": {"cudaLaunchKernel": {"ms": 1.0, "calls": launches - 10},
                     "cuLaunchKernelEx": {"ms": 1.0, "calls": 10}, "aten::add": {"ms": 1.0, "calls": 99}}}
    rec["runs"]["dense_int8"].update(gaps(16.1, 69.8, 0.32, 826))
    rec["runs"]["dense_bf16"].update(gaps(9.6, 60.5, 0.35, 778))
    path.write_text(json.dumps(rec))
    text = intpath.profile_reading(path)
    assert ("idle inside the run for int8 16.1 of 69.8 ms, the longest gap 0.32 ms, 826 launches; "
            "bf16 9.6 of 60.5 ms, the longest gap 0.35 ms, 778 launches") in text
    assert "Timed apart" not in text                     # a record without the host split
    split = {"prepare_ms": 6.3, "core_eager_ms": 48.4, "core_graph_ms": 47.4, "graph_same_rates": True}
    for name in ("dense_int8", "dense_bf16"):
        rec["runs"][name]["host_split"] = split
    path.write_text(json.dumps(rec))
    assert ("Timed apart (int8: 6.3 ms preparing the weights, the executor 48.4 ms eagerly and 47.4 ms "
            "as one CUDA graph, which has no launches: 1 ms of launch cost; bf16: 6.3 ms") in \
        intpath.profile_reading(path)
