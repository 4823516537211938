"""Data-parallel training (two gloo processes on CPU) and quiet progress bars in logs."""
from __future__ import annotations

import io
import os
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader

from stpcore.train import loop

from conftest import make_batch, make_tiny_model

WORLD = 2
ROWS = 6                        # one global batch of 6 rows: 3 per rank


# ---------------------------------------------------------------------------- helpers
def _rows() -> list[dict]:
    batch = make_batch(seed=0, batch=ROWS)
    return [{k: v[i] for k, v in batch.items()} for i in range(ROWS)]


def _collate(rows: list[dict]) -> dict:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def _train_one_step(capture: dict) -> tuple[nn.Module, nn.Module]:
    """One ``fit`` step of a tiny SpikingBERT with a learnable threshold (own param group) and a
    KD-style projection in ``extra_modules``; ``capture`` gets the clipped gradients."""
    model = make_tiny_model()
    model.train()
    th = model.spiking_bert.thresholds
    th.requires_grad_(True)
    torch.manual_seed(7)
    proj = nn.Linear(2, 2)

    def loss_fn(m, batch, **kw):
        out = m(**loop.model_inputs(batch), labels=batch["labels"], **kw)
        return out.loss + 0.1 * proj(out.logits).pow(2).mean(), out

    named = [(f"model.{n}", p) for n, p in model.named_parameters()] + \
            [(f"proj.{n}", p) for n, p in proj.named_parameters()]

    def on_step(step):
        capture.update({n: p.grad.detach().clone() for n, p in named if p.grad is not None})

    loader = DataLoader(_rows(), batch_size=ROWS, shuffle=False, collate_fn=_collate)
    loop.fit(model, loader, epochs=1, lr=1e-3, loss_fn=loss_fn, device="cpu", progress=False,
             select_best=False, extra_modules=(proj,), extra_lr=1e-3,
             param_groups=[{"params": [th], "lr": 1e-2}], on_step=on_step)
    return model, proj


def _state(model, proj) -> dict:
    out = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    out.update({f"proj.{k}": v.detach().clone() for k, v in proj.state_dict().items()})
    return out


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        grads = {}
        model, proj = _train_one_step(grads)
        # the seeded shuffle of a real loader is split into disjoint shards covering the data
        shuffled = DataLoader(list(range(10)), batch_size=4, shuffle=True,
                              generator=torch.Generator().manual_seed(3))
        sharded = loop.shard_loader(shuffled)
        sharded.sampler.set_epoch(1)
        torch.save({"state": _state(model, proj), "grads": grads,
                    "indices": list(sharded.sampler), "batch_size": sharded.batch_size},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------- data parallel
def test_two_rank_step_matches_one_process_step_on_the_union(tmp_path):
    mp.spawn(_worker, args=(WORLD, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    # (a) after the step both ranks hold the same weights, bit for bit
    for k, v in ranks[0]["state"].items():
        assert torch.equal(v, ranks[1]["state"][k]), k
    # (b) the averaged gradient is the gradient of one process on the union batch, and the
    # update the same (AdamW: within float tolerance)
    ref_grads = {}
    ref_state = _state(*_train_one_step(ref_grads))
    assert not dist.is_initialized()
    assert set(ranks[0]["grads"]) == set(ref_grads)
    assert "model.spiking_bert.thresholds" in ref_grads and "proj.weight" in ref_grads
    for k, g in ref_grads.items():
        torch.testing.assert_close(ranks[0]["grads"][k], g, rtol=1e-4, atol=1e-7, msg=k)
    moved = 0
    for k, v in ref_state.items():
        torch.testing.assert_close(ranks[0]["state"][k], v, rtol=1e-5, atol=1e-6, msg=k)
        moved += int(not torch.equal(v, _state(make_tiny_model(), nn.Linear(2, 2)).get(k, v)))
    assert moved > 0
    # the sampler shards: disjoint, covering all rows, half the batch per rank
    a, b = ranks[0]["indices"], ranks[1]["indices"]
    assert sorted(a + b) == list(range(10)) and ranks[0]["batch_size"] == 2


def test_single_process_helpers_are_no_ops():
    assert loop.world_size() == 1 and loop.rank() == 0 and loop.is_main_process()
    loop.barrier()
    batches = [make_batch(0)]
    assert loop.shard_loader(batches) is batches
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    loop.average_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))


def test_pick_device_honours_local_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loop.pick_device() == torch.device("cuda:1")
    monkeypatch.delenv("LOCAL_RANK")
    assert loop.pick_device() == torch.device("cuda")


# ---------------------------------------------------------------------------- progress bars
class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def quiet_env(monkeypatch):
    for name in ("CI", "TQDM_DISABLE", "TQDM_MININTERVAL", "TQDM_MINITERS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _updates(text: str) -> int:
    return sum(1 for part in text.replace("\n", "\r").split("\r") if "it/s" in part or "s/it" in part
               or "%" in part)


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return SimpleNamespace(logits=self.lin(x))


def _fit_linear(n: int = 200, progress: bool = True):
    batches = [{"x": torch.randn(4, 2), "labels": torch.randint(0, 2, (4,))} for _ in range(n)]

    def loss_fn(m, b):
        out = m(b["x"])
        return nn.functional.cross_entropy(out.logits, b["labels"]), out
    loop.fit(_Linear(), batches, epochs=1, lr=1e-3, loss_fn=loss_fn, device="cpu",
             progress=progress, select_best=False)


def test_progress_in_a_log_is_at_most_one_line_per_5_percent(quiet_env, capsys):
    _fit_linear(200)
    err = capsys.readouterr().err
    assert 1 <= _updates(err) <= 22, err[-500:]


def test_progress_is_a_bar_on_a_terminal(quiet_env):
    kw = loop.progress_kwargs(True, 200, file=_Tty())
    assert kw["disable"] is False and "miniters" not in kw
    kw = loop.progress_kwargs(True, 200, file=io.StringIO())
    assert kw["disable"] is False and kw["miniters"] == 10


@pytest.mark.parametrize("name", ["TQDM_DISABLE", "CI"])
def test_no_progress_with_tqdm_disable_or_ci(quiet_env, capsys, name):
    quiet_env.setenv(name, "1")
    _fit_linear(50)
    assert capsys.readouterr().err == ""
    assert loop.progress_kwargs(True, 50, file=_Tty()) == {"disable": True}


def test_no_progress_when_asked(quiet_env, capsys):
    _fit_linear(20, progress=False)
    assert capsys.readouterr().err == ""
