"""apply_trim: the data-driven steps of a trim (auto:N, widths and heads by importance, a fine-tuned ranker) and what it records."""

import copy

import pytest
import torch

from trimbert.errors import TrimbertError
from trimbert.importance.fisher import fisher_scores
from trimbert.importance.rules import score
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
    assert info["importance"]["rule"] == "taylor" and info["importance"]["objective"] == "task-loss"
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
        (TrimRequest(drop_ffn="1", importance="taylor"), "only used with --ffn-width, --heads N or --drop-ffn auto:N"),
        (TrimRequest(heads="1=0+2", importance="fisher"), r"named heads like 3=0\+2\+5 are not ranked"),
        (TrimRequest(drop_ffn="auto:1", importance="magnitude"), "auto:N ranks whole FFNs by data"),
        (TrimRequest(drop_ffn="auto:1", importance="fisher"), "--importance fisher: auto:N ranks whole FFNs by data"),
    ],
)
def test_importance_is_refused_where_nothing_is_ranked(tiny_model, request_, message):
    with pytest.raises(TrimbertError, match=message):
        apply_trim(tiny_model, request_)


def test_unknown_rule_is_one_line():
    with pytest.raises(TrimbertError) as caught:
        TrimRequest(importance="bogus")
    assert str(caught.value) == "--importance: unknown rule 'bogus' (choose from magnitude, taylor, fisher)"
    assert TrimSpec().is_empty


def _kept_heads(model, original, block):
    """The heads of ``original``'s block that ``model``'s block kept, read off the query weights."""
    size = original.config.hidden_size // original.config.num_attention_heads
    query = model.bert.encoder.layer[block].attention.self.query.weight
    rows = original.bert.encoder.layer[block].attention.self.query.weight.reshape(-1, size, query.shape[1])
    return [head for head in range(len(rows)) if any(rows[head].equal(kept) for kept in query.reshape(-1, size, query.shape[1]))]


@pytest.mark.parametrize("has_head", [True, False])
@pytest.mark.parametrize(
    ("rule", "direct"),
    [
        ("fisher", lambda model, batches, has_head: fisher_scores(model, batches, has_head=has_head, seed=0).importance()),
        ("taylor", lambda model, batches, has_head: taylor_importance(model, batches, has_head=has_head, seed=0)),
    ],
)
def test_heads_by_count_keep_the_top_scores_of_the_rule(tiny_model, monkeypatch, rule, direct, has_head):
    rows = _dataset()
    monkeypatch.setattr("trimbert.pipeline.sample_batches", fake_batches)
    expected = direct(copy.deepcopy(tiny_model), fake_batches(rows, None), has_head)
    by_magnitude = score(tiny_model, "magnitude").head_order()
    assert any(expected.head_order()[b][:2].sort().values.tolist() != by_magnitude[b][:2].sort().values.tolist() for b in range(4))
    model, info = apply_trim(
        copy.deepcopy(tiny_model), TrimRequest(heads=2, importance=rule), dataset=rows, tokenizer=object(), has_head=has_head
    )
    for block in range(4):
        assert _kept_heads(model, tiny_model, block) == sorted(expected.head_order()[block][:2].tolist())
    objective = expected.objective
    assert applied_spec(model).notes == {"heads_rule": f"{rule} ({objective})"}
    assert info["importance"]["rule"] == rule and info["sample"] == {"rows": 12, "seed": 0}


def test_named_heads_ignore_importance_and_widths_share_the_scores(tiny_model, monkeypatch):
    rows = _dataset()
    monkeypatch.setattr("trimbert.pipeline.sample_batches", fake_batches)
    expected = fisher_scores(copy.deepcopy(tiny_model), fake_batches(rows, None), has_head=True, seed=0).importance()
    request = TrimRequest(heads="0:1,2=1+3", ffn_width="1:16", importance="fisher")
    model, _ = apply_trim(copy.deepcopy(tiny_model), request, dataset=rows, tokenizer=object(), has_head=True)
    assert _kept_heads(model, tiny_model, 0) == [int(expected.head_order()[0][0])]
    assert _kept_heads(model, tiny_model, 2) == [1, 3]
    kept = expected.neuron_order()[1][:16].sort().values
    torch.testing.assert_close(
        model.bert.encoder.layer[1].intermediate.dense.weight, tiny_model.bert.encoder.layer[1].intermediate.dense.weight[kept]
    )
    assert applied_spec(model).notes == {"heads_rule": "explicit and fisher (task-loss)", "ffn_width_rule": "fisher (task-loss)"}


def test_magnitude_scores_keep_what_trim_keeps_by_default(tiny_model):
    model, info = apply_trim(copy.deepcopy(tiny_model), TrimRequest(heads=2, ffn_width=16, importance="magnitude"))
    default = trim(copy.deepcopy(tiny_model), heads=2, ffn_width=16)
    assert model.state_dict().keys() == default.state_dict().keys()
    assert all(model.state_dict()[key].equal(value) for key, value in default.state_dict().items())
    assert applied_spec(model).notes == {"heads_rule": "magnitude", "ffn_width_rule": "magnitude"}
    assert info["importance"]["rule"] == "magnitude" and "sample" not in info


def test_an_earlier_scores_note_is_not_renamed(tiny_model, monkeypatch):
    rows = _dataset()
    monkeypatch.setattr("trimbert.pipeline.sample_batches", fake_batches)
    earlier = trim(copy.deepcopy(tiny_model), ffn_width=32, ffn_importance={b: torch.arange(64.0) for b in range(4)})
    model, _ = apply_trim(earlier, TrimRequest(heads=3, importance="taylor"), dataset=rows, tokenizer=object(), has_head=True)
    assert applied_spec(model).notes == {"ffn_width_rule": "scores", "heads_rule": "taylor (task-loss)"}


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


def test_a_fine_tuned_ranker_chooses_the_heads_by_fisher(tiny_model, monkeypatch):
    rows = _dataset()
    monkeypatch.setattr("trimbert.pipeline.sample_batches", fake_batches)
    torch.manual_seed(11)
    from transformers import BertForSequenceClassification

    from tests.conftest import tiny_config

    teacher = BertForSequenceClassification(tiny_config(num_labels=3)).eval()
    expected = fisher_scores(copy.deepcopy(teacher), fake_batches(rows, None), has_head=True, seed=0).importance().head_order()
    own = fisher_scores(copy.deepcopy(tiny_model), fake_batches(rows, None), has_head=False, seed=0).importance().head_order()
    assert any(expected[b][:2].sort().values.tolist() != own[b][:2].sort().values.tolist() for b in range(4))
    request = TrimRequest(heads=2, importance="fisher")
    model, info = apply_trim(copy.deepcopy(tiny_model), request, dataset=rows, tokenizer=object(), ranker=teacher)
    assert [_kept_heads(model, tiny_model, b) for b in range(4)] == [sorted(expected[b][:2].tolist()) for b in range(4)]
    assert info["ranked_on"] == "teacher" and applied_spec(model).notes == {"heads_rule": "fisher (task-loss)"}
