"""Taylor importance: exact first-order scores with a head, second-order without."""

import copy

import pytest
import torch

from trimbert.errors import TrimbertError
from trimbert.importance.taylor import taylor_importance
from trimbert.model.gates import gated


def _labelled(batch):
    return {**batch, "labels": torch.tensor([0, 2, 1])}


def _loss(model, batch):
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    return torch.nn.functional.cross_entropy(model(**inputs).logits, batch["labels"])


def test_task_scores_are_the_loss_derivative_of_each_gate(tiny_model, tiny_batch):
    batch = _labelled(tiny_batch)
    tiny_model.double()
    found = taylor_importance(tiny_model, [batch], has_head=True)
    assert found.rule == "taylor" and found.objective == "task-loss" and found.samples == 3
    assert sorted(found.ffn) == [0, 1, 2, 3] and sorted(found.blocks) == [0, 1, 2, 3]
    assert len(found.layernorm) == 8 and all(v.shape == (64,) for v in found.neurons.values())
    assert all(v.shape == (4,) for v in found.heads.values())
    step = 1e-6
    with torch.no_grad(), gated(tiny_model) as gates:
        base = _loss(tiny_model, batch)
        gates.ffn[2].fill_(1 - step)
        moved_ffn = _loss(tiny_model, batch)
        gates.reset()
        gates.heads[1][3] = 1 - step
        moved_head = _loss(tiny_model, batch)
    assert found.ffn[2] == pytest.approx(abs(float(base - moved_ffn)) / step, rel=1e-4)
    assert float(found.heads[1][3]) == pytest.approx(abs(float(base - moved_head)) / step, rel=1e-4)


def test_a_neuron_or_head_that_writes_nothing_scores_zero(tiny_model, tiny_batch):
    with torch.no_grad():
        tiny_model.bert.encoder.layer[1].output.dense.weight[:, 5] = 0.0
        tiny_model.bert.encoder.layer[2].attention.output.dense.weight[:, 8:16] = 0.0  # head 1 (size 8)
    for has_head, batch in ((True, _labelled(tiny_batch)), (False, tiny_batch)):
        found = taylor_importance(tiny_model, [batch], has_head=has_head, seed=1)
        assert found.neurons[1][5] == 0.0
        assert (found.neurons[1] > 0).sum() == 63
        assert found.heads[2][1] == 0.0 and (found.heads[2] > 0).sum() == 3


def test_without_a_head_scores_are_squared_projections_and_seeded(tiny_model, tiny_batch):
    first = taylor_importance(tiny_model, [tiny_batch], has_head=False, seed=4)
    again = taylor_importance(tiny_model, [tiny_batch], has_head=False, seed=4)
    other = taylor_importance(tiny_model, [tiny_batch], has_head=False, seed=5)
    assert first.objective == "hidden-projection"
    assert first.ffn == again.ffn and first.ffn != other.ffn
    assert all(value >= 0 for value in first.ffn.values())


def test_scoring_leaves_the_model_as_it_was(tiny_model, tiny_batch):
    before = copy.deepcopy(tiny_model.state_dict())
    taylor_importance(tiny_model, [_labelled(tiny_batch)], has_head=True)
    assert all(before[key].equal(value) for key, value in tiny_model.state_dict().items())
    assert all(parameter.requires_grad and parameter.grad is None for parameter in tiny_model.parameters())
    assert not tiny_model.training
    assert not any(module._forward_hooks for module in tiny_model.modules())


def test_refuses_empty_or_unlabelled_samples(tiny_model, tiny_batch):
    with pytest.raises(TrimbertError, match="^taylor importance: no batches to measure on$"):
        taylor_importance(tiny_model, [], has_head=False)
    with pytest.raises(TrimbertError, match="^taylor importance with a task head needs labels in every batch$"):
        taylor_importance(tiny_model, [tiny_batch], has_head=True)
