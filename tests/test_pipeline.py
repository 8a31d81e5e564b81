"""apply_trim: the data-driven steps of a trim (auto:N, Taylor widths, a fine-tuned ranker) and what it records."""

import copy

import pytest
import torch

from trimbert.errors import TrimbertError
from trimbert.importance.taylor import taylor_importance
from trimbert.model.structure import applied_spec
from trimbert.model.trim import trim
from trimbert.pipeline import apply_trim
from trimbert.spec import TrimRequest, TrimSpec


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
