"""A look inside a shipped checkpoint: one GLUE example (a sentence or a sentence pair) through a
1-bit SpikingBERT on CPU, its prediction, a [CLS] spike raster and the population rates (the
tutorial's last section)."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch

from .plots import _new_figure, _themed


def encode_example(task: str, example: Mapping, max_length: int = 128,
                   teacher: str = "all-minilm-l6-v2") -> dict:
    """Tokenize one example of ``task`` (its text columns: one sentence, or a sentence pair) as a
    batch of 1: the model's tensors ``input_ids, attention_mask, token_type_ids`` and ``tokens``
    (the word pieces)."""
    from ..train.data import task_spec
    from ..train.teacher import load_tokenizer
    tok = load_tokenizer(teacher)
    enc = tok(*[example[c] for c in task_spec(task).text_columns], truncation=True,
              max_length=max_length, return_token_type_ids=True, return_tensors="pt")
    batch = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    batch["tokens"] = tok.convert_ids_to_tokens(enc["input_ids"][0])
    return batch


def simulate_with_spikes(model, batch: Mapping, layer: int = -1, population: str = "output",
                         token: int = 0):
    """Simulate ``batch`` (fp32, no autograd) and capture the spikes of one population of one
    layer for one token of the first example at every timestep (default: the last layer's
    output population for [CLS], what the classifier reads). The spikes are read by wrapping
    that layer's ``simulate_block`` for the duration of the call (the model is unchanged).
    Returns ``(SpikingOutput, spikes [T, width] as 0/1 floats)``."""
    target = model.spiking_bert.layers[layer]
    if not model.spiking_bert.config.uniform_timesteps:
        raise ValueError("simulate_with_spikes needs uniform timesteps (the unrolled executor)")
    captured, inner = [], target.simulate_block

    def block(*args, **kwargs):
        out = inner(*args, **kwargs)
        captured.append(out[population][:, 0, token].float().clone())
        return out
    target.simulate_block = block
    try:
        with torch.no_grad():
            out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                        implicit=False, record_traces=True)
    finally:
        del target.simulate_block
    return out, torch.cat(captured)


def running_asr(spikes: torch.Tensor) -> torch.Tensor:
    """Running average spiking rate ``[T, ...]``: spikes up to step t divided by t."""
    steps = torch.arange(1, spikes.shape[0] + 1, dtype=torch.float32).view(-1, *[1] * (spikes.dim() - 1))
    return spikes.float().cumsum(0) / steps


def population_rate_table(simulation) -> pd.DataFrame:
    """The six population rates (mean ASR over valid tokens) per encoder layer (rows) from a
    :class:`~stpcore.snn.model.Simulation` (the embedding population's is
    ``simulation.population_rates["embedding"]``)."""
    from ..snn.layer import POPULATIONS
    pop = simulation.population_rates
    return pd.DataFrame(pop["layers"], columns=list(POPULATIONS),
                        index=pd.Index([f"layer {l + 1}" for l in range(len(pop["layers"]))],
                                       name="layer")).round(3)


def pick_neurons(spikes: torch.Tensor, count: int = 16) -> list[int]:
    """``count`` neurons sorted by rate: one silent neuron (if any) and the rest evenly spaced
    over the rates of the neurons that fired."""
    rate = spikes.float().mean(0)
    order = torch.argsort(rate, stable=True)
    active = order[rate[order] > 0]
    silent = order[rate[order] == 0][:1]
    take = min(count - len(silent), len(active))
    idx = torch.linspace(0, len(active) - 1, take).round().long() if take > 0 else torch.zeros(0, dtype=torch.long)
    return [int(n) for n in silent] + [int(active[i]) for i in idx]


@_themed
def plot_cls_spikes(spikes: torch.Tensor, neurons: list[int], title: str = "[CLS], last layer, output population"):
    """(a) raster of ``neurons``' spikes over the timesteps; (b) running ASR of those neurons
    (thin) and of the whole population (thick): the rate the classifier reads at the end."""
    fig, (ax, bx) = _new_figure((11.0, 4.0), ncols=2)
    sel = spikes[:, neurons].numpy()
    for row in range(sel.shape[1]):
        t = np.flatnonzero(sel[:, row]) + 1
        ax.vlines(t, row + 0.6, row + 1.4, color="k", lw=0.8)
    ax.set_yticks(range(1, len(neurons) + 1), [str(n) for n in neurons], fontsize=7)
    ax.set_xlim(0, spikes.shape[0] + 1)
    ax.set_xlabel("timestep")
    ax.set_ylabel("neuron (sorted by rate)")
    ax.set_title(f"(a) spikes, {title}", fontsize=9)
    run = running_asr(spikes).numpy()
    steps = np.arange(1, spikes.shape[0] + 1)
    for n in neurons:
        bx.plot(steps, run[:, n], lw=0.6, alpha=0.6)
    bx.plot(steps, run.mean(1), color="k", lw=2.0, label=f"all {spikes.shape[1]} neurons (mean)")
    bx.set_xlabel("timestep t")
    bx.set_ylabel("running ASR (spikes / t)")
    bx.set_ylim(-0.02, 1.02)
    bx.legend(fontsize=8)
    bx.set_title("(b) running ASR: thin = the neurons in (a)", fontsize=9)
    fig.tight_layout()
    return fig


@_themed
def plot_population_rates(table: pd.DataFrame):
    """Heat map of :func:`population_rate_table` (layers x populations)."""
    data = table
    fig, (ax,) = _new_figure((7.5, 3.0), ncols=1)
    im = ax.imshow(data.values, cmap="viridis", vmin=0.0, aspect="auto")
    ax.grid(False)                      # the theme's grid would cross the cells
    ax.set_xticks(range(data.shape[1]), [c.replace("_", "\n") for c in data.columns], fontsize=8)
    ax.set_yticks(range(data.shape[0]), list(data.index), fontsize=8)
    for (r, c), v in np.ndenumerate(data.values):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8,
                color="w" if v < 0.6 * data.values.max() else "k")
    fig.colorbar(im, ax=ax, label="mean ASR")
    ax.set_title("population rates per layer (mean over the input's tokens)", fontsize=9)
    fig.tight_layout()
    return fig
