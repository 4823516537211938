"""The prepared-weights cache (stpcore.snn.prepared): reused while nothing changes, rebuilt on
every kind of change it can see, off outside its block."""
import pytest
import torch

from stpcore.snn import prepared

from conftest import make_tiny_model, simulate
from test_model_simulation import same_rates


@pytest.fixture
def counted(monkeypatch):
    """Count the calls of prepare_weights."""
    calls = []
    real = prepared.prepare_weights

    def counting(*args):
        calls.append(args[1:])
        return real(*args)
    monkeypatch.setattr(prepared, "prepare_weights", counting)
    monkeypatch.setattr("stpcore.snn.model.prepare_weights", counting)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.int8])
def test_cached_simulation_is_the_uncached_one_and_prepares_once(counted, tiny_batch, dtype):
    model = make_tiny_model(binary_weights=True)
    bert = model.spiking_bert
    ref = simulate(model, tiny_batch, dtype=dtype)
    with bert.cache_weights() as b:
        assert b is bert and isinstance(bert.weight_cache, prepared.WeightCache)
        sims = [simulate(model, tiny_batch, dtype=dtype) for _ in range(3)]
    assert all(same_rates(ref, s) for s in sims)
    assert len(counted) == 2                    # the uncached call and the first cached one
    assert bert.weight_cache is None            # off again after the block
    simulate(model, tiny_batch, dtype=dtype)
    assert len(counted) == 3


def test_cache_is_rebuilt_after_in_place_updates_masks_and_binary_flags(counted, tiny_batch):
    model = make_tiny_model()
    bert = model.spiking_bert
    with bert.cache_weights():
        simulate(model, tiny_batch)
        with torch.no_grad():                   # as an optimiser step does
            bert.layers[0].intermediate.weight.mul_(-1.0)
        changed = simulate(model, tiny_batch)
        assert len(counted) == 2
        mask = torch.ones(2, 32)
        mask[1, :9] = 0
        bert.set_masks(neuron_mask=mask)
        masked = simulate(model, tiny_batch)
        bert.set_binary_weights(True)
        binary = simulate(model, tiny_batch)
        assert len(counted) == 4
    assert same_rates(changed, simulate(model, tiny_batch)) is False  # the masks changed since
    bert.set_masks()
    bert.set_binary_weights(False)
    with torch.no_grad():
        assert same_rates(changed, simulate(model, tiny_batch))
    bert.set_masks(neuron_mask=mask)
    assert same_rates(masked, simulate(model, tiny_batch))
    assert masked.rates[1]["intermediate"][..., :9].abs().sum() == 0
    bert.set_binary_weights(True)
    assert same_rates(binary, simulate(model, tiny_batch))


def test_cache_setting_nests_and_works_without_a_block(tiny_batch):
    bert = make_tiny_model().spiking_bert
    bert.cache_weights()                        # on at once, like torch.set_grad_enabled
    outer = bert.weight_cache
    assert isinstance(outer, prepared.WeightCache)
    with bert.cache_weights():
        assert bert.weight_cache is outer       # nested blocks share the outer cache
        with bert.cache_weights(False):
            assert bert.weight_cache is None
        assert bert.weight_cache is outer
    assert bert.weight_cache is outer
    bert.cache_weights(False)
    assert bert.weight_cache is None


def test_writes_through_data_are_not_seen(counted, tiny_batch):
    """The documented limit: ``tensor.data`` writes bump no version counter, so weights the cache
    derived (here 1-bit ones) go stale."""
    model = make_tiny_model(binary_weights=True)
    bert = model.spiking_bert
    with bert.cache_weights():
        before = simulate(model, tiny_batch)
        bert.layers[0].intermediate.weight.data.mul_(-1.0)
        stale = simulate(model, tiny_batch)
    assert len(counted) == 1 and same_rates(before, stale)
    assert not same_rates(stale, simulate(model, tiny_batch))


def test_evaluation_prepares_once_and_a_spiking_teacher_keeps_its_cache(counted):
    """evaluate() prepares the weights once for all its batches and leaves the cache off after;
    a Distiller turns its (frozen) spiking teacher's cache on while open, and close() or leaving
    its ``with`` block restores the teacher's setting."""
    from stpcore.train.distill import Distiller
    from stpcore.train.loop import evaluate
    from conftest import loader
    model = make_tiny_model()
    result = evaluate(model, loader(3), torch.device("cpu"))
    assert result["examples"] == 9 and len(counted) == 1
    assert model.spiking_bert.weight_cache is None
    teacher = make_tiny_model(seed=1)
    kd = Distiller(teacher, [1, 2], 16, "prediction")
    assert isinstance(teacher.spiking_bert.weight_cache, prepared.WeightCache)
    kd.close()
    kd.close()                                           # idempotent
    assert teacher.spiking_bert.weight_cache is None
    with Distiller(teacher, [1, 2], 16, "prediction") as kd:
        assert isinstance(teacher.spiking_bert.weight_cache, prepared.WeightCache)
    assert teacher.spiking_bert.weight_cache is None
