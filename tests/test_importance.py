"""Taylor importance: exact first-order scores with a head, second-order without, and the trims it ranks."""

import copy

import pytest
import torch

from trimbert.errors import TrimbertError
from trimbert.importance import magnitude, taylor_importance
from trimbert.model.gates import gated
from trimbert.model.structure import applied_spec
from trimbert.model.trim import trim
from trimbert.pipeline import apply_trim
from trimbert.spec import TrimRequest, TrimSpec


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
    step = 1e-6
    with torch.no_grad(), gated(tiny_model) as gates:
        base = _loss(tiny_model, batch)
        gates.ffn[2].fill_(1 - step)
        moved = _loss(tiny_model, batch)
    assert found.ffn[2] == pytest.approx(abs(float(base - moved)) / step, rel=1e-4)


def test_a_neuron_that_writes_nothing_scores_zero(tiny_model, tiny_batch):
    with torch.no_grad():
        tiny_model.bert.encoder.layer[1].output.dense.weight[:, 5] = 0.0
    for has_head, batch in ((True, _labelled(tiny_batch)), (False, tiny_batch)):
        found = taylor_importance(tiny_model, [batch], has_head=has_head, seed=1)
        assert found.neurons[1][5] == 0.0
        assert (found.neurons[1] > 0).sum() == 63


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


def test_refuses_empty_or_unlabelled_samples(tiny_model, tiny_batch):
    with pytest.raises(TrimbertError, match="no batches"):
        taylor_importance(tiny_model, [], has_head=False)
    with pytest.raises(TrimbertError, match="labelled batches"):
        taylor_importance(tiny_model, [tiny_batch], has_head=True)


def test_neuron_order_and_ranking(tiny_model):
    found = magnitude(tiny_model)
    order = found.neuron_order()[0]
    assert found.neurons[0][order[0]] == found.neurons[0].max()
    found.ffn = {0: 3.0, 1: 1.0, 2: 1.0, 3: 0.5}
    assert found.ffn_ranking() == (3, 1, 2, 0)
    assert found.least_important_ffns(2) == (1, 3)


class _Rows(list):
    column_names = ("input_ids", "attention_mask", "label")


def _dataset():
    torch.manual_seed(2)
    return _Rows({"input_ids": torch.randint(5, 100, (8,)).tolist(), "attention_mask": [1] * 8, "label": i % 3} for i in range(12))


def fake_batches(dataset, tokenizer, **kwargs):
    """What sample_batches would give for the rows of _dataset(): one labelled batch of all of them."""
    ids = torch.tensor([row["input_ids"] for row in dataset])
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([row["label"] for row in dataset])}]


def test_apply_trim_ranks_by_taylor_and_records_it(tiny_model, monkeypatch):
    rows = _dataset()

    monkeypatch.setattr("trimbert.pipeline.sample_batches", fake_batches)
    expected = taylor_importance(copy.deepcopy(tiny_model), fake_batches(rows, None), has_head=True, seed=0)
    model, info = apply_trim(
        copy.deepcopy(tiny_model), TrimRequest(ffn_width=16, importance="taylor"), dataset=rows, tokenizer=object(), has_head=True
    )
    spec = applied_spec(model)
    assert spec.ffn_widths == {0: 16, 1: 16, 2: 16, 3: 16}
    assert spec.notes["ffn_width_rule"] == "taylor (task-loss)"
    assert info["ffn_importance"]["rule"] == "taylor"
    kept = expected.neuron_order()[2][:16].sort().values
    torch.testing.assert_close(
        model.bert.encoder.layer[2].intermediate.dense.weight, tiny_model.bert.encoder.layer[2].intermediate.dense.weight[kept]
    )
    model, info = apply_trim(
        copy.deepcopy(tiny_model), TrimRequest(drop_ffn="auto:2", importance="taylor"), dataset=rows, tokenizer=object(), has_head=True
    )
    assert applied_spec(model).drop_ffn == expected.least_important_ffns(2)
    assert info["auto_drop"]["measure"] == "taylor (task-loss)"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (TrimRequest(drop_ffn="1", importance="taylor"), "only used with --ffn-width or --drop-ffn auto:N"),
        (TrimRequest(drop_ffn="auto:1", importance="magnitude"), "auto:N ranks whole FFNs by data"),
    ],
)
def test_importance_is_refused_where_nothing_is_ranked(tiny_model, request_, message):
    with pytest.raises(TrimbertError, match=message):
        apply_trim(tiny_model, request_)


def test_unknown_rule_is_one_line():
    with pytest.raises(TrimbertError, match="--importance: unknown rule 'fisher'"):
        TrimRequest(importance="fisher")
    assert TrimSpec().is_empty


def test_a_fine_tuned_ranker_ranks_by_its_task_loss(tiny_model, monkeypatch):
    rows = _dataset()

    monkeypatch.setattr("trimbert.pipeline.sample_batches", fake_batches)
    torch.manual_seed(11)
    from transformers import BertForSequenceClassification

    from tests.conftest import tiny_config

    teacher = BertForSequenceClassification(tiny_config(num_labels=3)).eval()
    expected = taylor_importance(copy.deepcopy(teacher), fake_batches(rows, None), has_head=True, seed=0)
    own = taylor_importance(copy.deepcopy(tiny_model), fake_batches(rows, None), has_head=False, seed=0)
    assert expected.least_important_ffns(2) != own.least_important_ffns(2)  # the ranker decides
    request = TrimRequest(drop_ffn="auto:2", importance="taylor")
    model, info = apply_trim(copy.deepcopy(tiny_model), request, dataset=rows, tokenizer=object(), ranker=teacher)
    assert applied_spec(model).drop_ffn == expected.least_important_ffns(2) and info["ranked_on"] == "teacher"
    with pytest.raises(TrimbertError, match="must have the structure of the model trimmed"):
        apply_trim(trim(copy.deepcopy(tiny_model), drop_ffn="0"), TrimRequest(ffn_width=8, importance="taylor"), dataset=rows,
                   tokenizer=object(), ranker=teacher)
