"""Fisher scores: the squared per-batch gradient of each head and neuron gate, and nothing in the model changes."""

import copy

import pytest
import torch
from conftest import tiny_config
from transformers import BertForSequenceClassification

from trimbert.errors import TrimbertError
from trimbert.importance.fisher import HIDDEN_FISHER, TASK_LOSS, fisher_scores
from trimbert.model.gates import gated


def _labelled(batch, labels=(0, 2, 1)):
    return {**batch, "labels": torch.tensor(labels)}


def _loss(model, batch):
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    return torch.nn.functional.cross_entropy(model(**inputs).logits, batch["labels"])


def test_scores_have_one_value_per_head_and_neuron_and_leave_the_model_as_it_was(tiny_model, tiny_batch):
    before = copy.deepcopy(tiny_model.state_dict())
    batches = [_labelled(tiny_batch), _labelled(tiny_batch, (1, 1, 0))]
    found = fisher_scores(tiny_model, batches, has_head=True)
    assert found.objective == TASK_LOSS and found.rows == 6 and found.seconds > 0
    assert sorted(found.heads) == sorted(found.neurons) == [0, 1, 2, 3]
    assert all(scores.shape == (4,) and scores.dtype == torch.float64 for scores in found.heads.values())
    assert all(scores.shape == (64,) for scores in found.neurons.values())
    assert all(grads.shape == (2, 4) for grads in found.head_grads.values())
    assert all(grads.shape == (2, 64) for grads in found.neuron_grads.values())
    assert sorted(found.ffns) == [0, 1, 2, 3] and all(grads.shape == (2,) for grads in found.ffn_grads.values())
    assert all(score.shape == () and score > 0 for score in found.ffns.values())
    assert torch.equal(found.ffns[1], found.ffn_grads[1].square().sum())
    assert all((scores >= 0).all() and scores.sum() > 0 for scores in (*found.heads.values(), *found.neurons.values()))
    assert torch.equal(found.heads[2], found.head_grads[2].square().sum(0))
    assert all(before[key].equal(value) for key, value in tiny_model.state_dict().items())
    assert all(parameter.requires_grad and parameter.grad is None for parameter in tiny_model.parameters())
    assert not tiny_model.training
    assert not any(module._forward_hooks for module in tiny_model.modules())


def test_a_score_is_the_sum_over_batches_of_the_squared_loss_derivative(tiny_model, tiny_batch):
    tiny_model.double()
    batches = [_labelled(tiny_batch), _labelled(tiny_batch, (2, 0, 0))]
    found = fisher_scores(tiny_model, batches, has_head=True)
    step = 1e-6
    expected_head, expected_neuron, expected_ffn = 0.0, 0.0, 0.0
    with torch.no_grad(), gated(tiny_model) as gates:
        for batch in batches:
            base = _loss(tiny_model, batch)
            gates.heads[1][2] = 1 - step
            expected_head += float((base - _loss(tiny_model, batch)) / step) ** 2
            gates.reset()
            gates.neurons[3][10] = 1 - step
            expected_neuron += float((base - _loss(tiny_model, batch)) / step) ** 2
            gates.reset()
            gates.ffn[2].fill_(1 - step)  # the whole FFN, its bias and LayerNorm with it
            expected_ffn += float((base - _loss(tiny_model, batch)) / step) ** 2
            gates.reset()
    assert float(found.heads[1][2]) == pytest.approx(expected_head, rel=1e-4)
    assert float(found.neurons[3][10]) == pytest.approx(expected_neuron, rel=1e-4)
    assert float(found.ffns[2]) == pytest.approx(expected_ffn, rel=1e-4)
    assert float(found.ffns[2]) != pytest.approx(float(found.neurons[2].sum()), rel=0.05)


def test_units_that_write_nothing_score_zero_with_and_without_a_head(tiny_model, tiny_batch):
    with torch.no_grad():
        tiny_model.bert.encoder.layer[1].output.dense.weight[:, 5] = 0.0
        tiny_model.bert.encoder.layer[2].attention.output.dense.weight[:, 8:16] = 0.0  # head 1 (size 8)
    for has_head, batch in ((True, _labelled(tiny_batch)), (False, tiny_batch)):
        found = fisher_scores(tiny_model, [batch], has_head=has_head, seed=1)
        assert found.neurons[1][5] == 0.0 and (found.neurons[1] > 0).sum() == 63
        assert found.heads[2][1] == 0.0 and (found.heads[2] > 0).sum() == 3


def test_without_a_head_the_projections_are_seeded(tiny_model, tiny_batch):
    first = fisher_scores(tiny_model, [tiny_batch], has_head=False, seed=4)
    again = fisher_scores(tiny_model, [tiny_batch], has_head=False, seed=4)
    other = fisher_scores(tiny_model, [tiny_batch], has_head=False, seed=5)
    assert first.objective == HIDDEN_FISHER
    assert torch.equal(first.neurons[0], again.neurons[0]) and torch.equal(first.heads[3], again.heads[3])
    assert not torch.equal(first.neurons[0], other.neurons[0])


def test_a_regression_head_scores_with_the_squared_error(tiny_batch):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(num_labels=1)).eval().double()
    batch = {**tiny_batch, "labels": torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)}
    found = fisher_scores(model, [batch], has_head=True)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    step = 1e-6
    with torch.no_grad(), gated(model) as gates:
        base = torch.nn.functional.mse_loss(model(**inputs).logits.squeeze(-1), batch["labels"])
        gates.neurons[0][3] = 1 - step
        moved = torch.nn.functional.mse_loss(model(**inputs).logits.squeeze(-1), batch["labels"])
    assert float(found.neurons[0][3]) == pytest.approx(float((base - moved) / step) ** 2, rel=1e-4)


def test_refuses_empty_or_unlabelled_samples(tiny_model, tiny_batch):
    with pytest.raises(TrimbertError, match="no batches"):
        fisher_scores(tiny_model, [], has_head=False)
    with pytest.raises(TrimbertError, match="needs labels"):
        fisher_scores(tiny_model, [tiny_batch], has_head=True)
