"""Exactness of the simulation dtypes (fp32, bf16, int8) against a float64 simulation.

    python bench/exactness.py                     # CPU: 2 cores, under 10 min (see provenance)
    python bench/exactness.py --examples 2 --random-steps 10      # quicker
    python bench/exactness.py --device cuda       # the CUDA paths (int8: the Triton kernels)

Each model is simulated with ``model.spiking_bert.simulate(..., dtype=...)`` in float64 (the
reference: every real-valued step in float64) and in each dtype; the record holds, per dtype, the
fraction of neuron ASRs (embedding and every population of every layer, every token) that differ
from the reference and the largest difference (``reference_loop.compare_rates``; on CUDA also
for int8 with PyTorch's fp32 attention, ``int8_sdpa``: :data:`VARIANTS`), how many
[CLS] predictions equal the reference's, and, for the six linear layers of layer 1 driven by the
same random spikes, the fraction of currents that differ from the float64 currents rounded once
to fp32 and the largest absolute difference. Two models:

* ``random_binary``: ``reference_loop.random_model`` (width 384/1536, 4 layers, 12 heads) switched
  to 1-bit weights, on a random batch;
* ``sst2_seed0`` and ``mrpc_seed0``: the shipped 1-bit checkpoints ``data/checkpoints/<task>-seed0``
  (T = 85 and 110) on the first dev examples of their task (GLUE from ``STP_GLUE_DIR`` or
  ``../shared/glue``).

Writes ``bench/results/exactness_<device type>.json`` (setup, numbers, provenance) and prints a table.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from unittest.mock import patch

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_loop import compare_rates, random_model  # noqa: E402

from stpcore.runs.checkpoints import load_checkpoint  # noqa: E402
from stpcore.snn.integer import compute_currents  # noqa: E402
from stpcore.runs.records import (REPO_ROOT, SOURCE_SHA256, atomic_write_json,  # noqa: E402
                                  describe_device, git_commit)
from stpcore.train.data import load_split, make_loader, tokenize  # noqa: E402
from stpcore.train.teacher import DEFAULT_TEACHER, load_tokenizer  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}
#: On CUDA also the integer path with PyTorch's fused fp32 attention instead of its split-bf16
#: kernel (``STP_INT_ATTENTION=sdpa``; on CPU both are the fp32 path's attention).
VARIANTS = {"int8_sdpa": ("int8", "sdpa")}
CHECKPOINTS = REPO_ROOT / "data" / "checkpoints"
RANDOM = dict(vocab_size=1000, hidden_size=384, intermediate_size=1536, num_hidden_layers=4,
              num_attention_heads=12)


@torch.no_grad()
def measure_currents(layer, rows: int = 512, rate: float = 0.2) -> dict:
    """Per dtype: the fraction of the currents of ``layer``'s six linear layers, driven by random
    spikes ``[rows, fan-in]``, that differ from ``alpha * (S @ sign^T) + b`` computed in float64
    and rounded once to fp32, and the largest absolute difference."""
    gen, device = torch.Generator().manual_seed(0), layer.query.weight.device
    exact, weights = layer.weights(torch.float64), {d: layer.weights(d) for d in DTYPES.values()}
    out = {name: {"differing": 0, "max_diff": 0.0, "currents": 0} for name in DTYPES}
    for n, (w64, b64) in exact.items():
        spikes = (torch.rand(rows, w64.shape[1], generator=gen) < rate).double().to(device)
        ref = (spikes @ w64.t() + b64).float()
        for name, dtype in DTYPES.items():
            got = compute_currents(spikes.to(dtype), weights[dtype][n]).float()
            x = out[name]
            x["differing"] += int((got != ref).sum())
            x["currents"] += ref.numel()
            x["max_diff"] = max(x["max_diff"], float((got - ref).abs().max()))
    return {name: {"frac_currents_differing": x["differing"] / x["currents"],
                   "max_abs_current_diff": x["max_diff"]} for name, x in out.items()}


@torch.no_grad()
def measure(model, batch: dict, device: torch.device) -> dict:
    """Per dtype: ASR agreement with the float64 simulation, equal [CLS] predictions, and the
    exactness of layer 1's currents (:func:`measure_currents`), with model and batch on ``device``."""
    model, batch = model.to(device), {k: v.to(device) for k, v in batch.items()}
    run = lambda dtype: model.spiking_bert.simulate(**batch, dtype=dtype)
    predict = lambda sim: model.classify(sim.rates[-1]["output"][:, 0]).argmax(-1)
    ref = run(torch.float64)
    as_ref = {"embedding": ref.embedding_rate, "layers": ref.rates}
    currents = measure_currents(model.spiking_bert.layers[0])
    out = {}
    for name, (dtype, attention) in runs(device).items():
        with patch.dict(os.environ, {"STP_INT_ATTENTION": attention}):
            sim = run(DTYPES[dtype])
        out[name] = {**compare_rates(sim, as_ref), **currents[dtype],
                     "predictions_equal_float64": int((predict(sim) == predict(ref)).sum())}
    return out


def runs(device: torch.device) -> dict:
    """``{name: (DTYPES key, STP_INT_ATTENTION)}`` measured on ``device``: :data:`DTYPES` with
    the default attention, and on CUDA :data:`VARIANTS`."""
    return ({n: (n, "split") for n in DTYPES}
            | (VARIANTS if device.type == "cuda" else {}))


def measure_random_model(examples: int, seq: int, steps: int, device: torch.device) -> tuple[dict, dict]:
    model = random_model(seed=0, timesteps=steps, **RANDOM)
    model.spiking_bert.set_binary_weights(True)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, RANDOM["vocab_size"], (examples, seq), generator=gen)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids)}
    setup = {**RANDOM, "weights": "random (reference_loop.random_model, seed 0), 1-bit",
             "batch": examples, "seq": seq, "timesteps": steps}
    return setup, measure(model.eval(), batch, device)


def measure_checkpoint(task: str, examples: int, device: torch.device) -> tuple[dict, dict]:
    folder = CHECKPOINTS / f"{task}-seed0"
    model = load_checkpoint(folder).eval()
    cfg = model.config
    tokenizer = load_tokenizer(cfg.word_embeddings_source or DEFAULT_TEACHER)
    dev = tokenize(load_split(task, "validation"), task, tokenizer)
    batch = next(iter(make_loader(dev, examples, shuffle=False, limit=examples)))
    batch.pop("labels")
    setup = {"checkpoint": str(folder.relative_to(REPO_ROOT)), "examples": examples,
             "split": f"{task} validation (first examples, padded to the longest)",
             "seq": int(batch["input_ids"].shape[1]), "tokens": int(batch["attention_mask"].sum()),
             "timesteps": cfg.timesteps, "hidden_size": cfg.hidden_size,
             "binary_weights": cfg.binary_weights}
    return setup, measure(model, batch, device)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=4, help="batch of each model")
    ap.add_argument("--random-seq", type=int, default=64, help="tokens per random example")
    ap.add_argument("--random-steps", type=int, default=85, help="T of the random model")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("highest")
    start = time.perf_counter()
    record = {"name": "exactness", "reference": "float64 simulation (simulate(dtype=float64))",
              "dtypes": list(runs(device)), "models": {}}
    cases = {"random_binary": lambda: measure_random_model(args.examples, args.random_seq,
                                                           args.random_steps, device),
             "sst2_seed0": lambda: measure_checkpoint("sst2", args.examples, device),
             "mrpc_seed0": lambda: measure_checkpoint("mrpc", args.examples, device)}
    for name, case in cases.items():
        setup, numbers = case()
        record["models"][name] = {"setup": setup, **numbers}
        print(f"{name}: {setup}")
        for d in record["dtypes"]:
            x = numbers[d]
            print(f"  {d:<9} ASRs differing {x['frac_rates_differing']:.3e}  max |dASR| "
                  f"{x['max_abs_asr_diff']:.4f}  predictions = float64 "
                  f"{x['predictions_equal_float64']}/{args.examples}  layer-1 currents "
                  f"differing {x['frac_currents_differing']:.3e} (max abs "
                  f"{x['max_abs_current_diff']:.1e})")
    record["provenance"] = {**git_commit(), "source_sha256": SOURCE_SHA256,
                            "device": describe_device(device),
                            "torch": torch.__version__, "threads": torch.get_num_threads(),
                            "load_average_1min_at_end": os.getloadavg()[0],
                            "wall_time_s": time.perf_counter() - start}
    path = REPO_ROOT / "bench" / "results" / f"exactness_{device.type}.json"
    atomic_write_json(path, record)
    print(f"wrote {path.relative_to(REPO_ROOT)} in {record['provenance']['wall_time_s']:.0f} s")
    return record


if __name__ == "__main__":
    main()
