import copy
import math
import re

import pytest
import torch
from conftest import tiny_config, write_sst2
from transformers import BertForSequenceClassification

import trimbert
from trimbert.analyze import (
    AnalysisResult,
    BlockRow,
    Effect,
    analyze,
    analyze_blocks,
    auto_spec,
    check_auto_count,
    choose_ffn_blocks,
    mean_cosine,
    resolve_auto_drop,
)
from trimbert.data.batches import make_batches
from trimbert.data.source import DataSource
from trimbert.data.tasks import get_task
from trimbert.errors import TrimbertError
from trimbert.model.attention import NORMALIZERS
from trimbert.model.calibrate import linear_cka
from trimbert.model.heads import has_task_head
from trimbert.spec import parse_auto

# --- linear CKA ---------------------------------------------------------------------------------


def test_linear_cka_is_one_for_identical_inputs():
    torch.manual_seed(0)
    x = torch.randn(200, 16)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x.clone()) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    torch.manual_seed(0)
    x = torch.randn(300, 12)
    y = x @ torch.randn(12, 20) + 0.5 * torch.randn(300, 20)  # related, not identical
    reference = linear_cka(x, y)
    assert 0.2 < reference < 0.99
    q, _ = torch.linalg.qr(torch.randn(20, 20, dtype=torch.float64))
    rotated = (y.double() @ q).float()
    assert linear_cka(x, rotated) == pytest.approx(reference, abs=1e-6)
    assert linear_cka(x, 7.5 * y) == pytest.approx(reference, abs=1e-9)
    assert linear_cka(0.01 * x, y) == pytest.approx(reference, abs=1e-9)
    assert linear_cka(y, x) == pytest.approx(reference, abs=1e-12)  # symmetric
    # orthogonal transform and scaling of x itself: still identical up to rotation and scale
    q12, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    assert linear_cka(x, 3.0 * (x.double() @ q12)) == pytest.approx(1.0, abs=1e-9)
    # shifts do not matter either (columns are centered)
    assert linear_cka(x + 5.0, y - 2.0) == pytest.approx(reference, abs=1e-6)


def test_linear_cka_low_for_unrelated_inputs_and_checks_shapes():
    torch.manual_seed(0)
    x, y = torch.randn(2000, 8), torch.randn(2000, 8)
    assert linear_cka(x, y) < 0.05
    with pytest.raises(
        ValueError, match=re.escape("linear_cka needs (n, d) matrices with the same n, got (2000, 8) and (10, 8)")
    ):
        linear_cka(x, y[:10])
    assert mean_cosine(x, x) == pytest.approx(1.0)
    assert mean_cosine(x, -x) == pytest.approx(-1.0)


# --- analyze_blocks -----------------------------------------------------------------------------


def test_analyze_blocks_hidden_state_measure(tiny_model, tiny_batch):
    before = {name: tensor.clone() for name, tensor in tiny_model.state_dict().items()}
    tiny_model.train()
    result = analyze_blocks(tiny_model, [tiny_batch])
    assert tiny_model.training  # mode restored
    for name, tensor in tiny_model.state_dict().items():  # the model is untouched
        assert torch.equal(tensor, before[name]), name
    assert result.measure == "cka" and result.base_loss is None
    assert [row.index for row in result.blocks] == [0, 1, 2, 3]
    assert sorted(result.ranking) == [0, 1, 2, 3]
    importance = result.ffn_importance()
    assert [importance[i] for i in result.ranking] == sorted(importance.values())
    assert set(result.attention) == set(NORMALIZERS)
    assert result.tokens == int(tiny_batch["attention_mask"].sum())
    for row in result.blocks:
        for effect in (row.ffn, row.ln_attn, row.ln_ffn, row.ln_both):
            assert effect is not None
            assert effect.importance == pytest.approx(1 - effect.cka)
            assert -1e-9 <= effect.importance <= 1 and effect.loss_delta is None
    assert sorted(result.layernorm_ranking) == sorted(f"{i}.{k}" for i in range(4) for k in ("attn", "ffn"))
    data = result.to_dict()
    assert data["ranking"] == list(result.ranking) and len(data["blocks"]) == 4


def test_analyze_blocks_matches_a_real_trim(tiny_model, tiny_batch):
    """The FFN effect is exactly what trim(drop_ffn=i) does to the final hidden states."""
    result = analyze_blocks(tiny_model, [tiny_batch], layernorms=False, attention=False)
    assert result.attention == {} and all(row.ln_attn is None for row in result.blocks)
    mask = tiny_batch["attention_mask"].bool()
    with torch.no_grad():
        base = tiny_model(**tiny_batch, output_hidden_states=True).hidden_states[-1][mask]
        cut = trimbert.trim(copy.deepcopy(tiny_model), drop_ffn="2")
        trimmed = cut(**tiny_batch, output_hidden_states=True).hidden_states[-1][mask]
    assert result.blocks[2].ffn.cka == pytest.approx(linear_cka(base, trimmed), abs=1e-12)


def test_analyze_blocks_loss_measure_with_a_head(tiny_model, tiny_batch):
    batch = {**tiny_batch, "labels": torch.tensor([0, 2, 1])}
    result = analyze_blocks(tiny_model, [batch], has_head=True, layernorms=False, attention=False)
    assert result.measure == "loss"
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(tiny_model(**tiny_batch).logits, batch["labels"])
    assert result.base_loss == pytest.approx(float(expected), rel=1e-5)
    for row in result.blocks:
        assert row.ffn.importance == row.ffn.loss_delta
        assert math.isfinite(row.ffn.importance)
    with pytest.raises(TrimbertError, match="has_head=True needs labels in every batch"):
        analyze_blocks(tiny_model, [tiny_batch], has_head=True)


def test_analyze_blocks_skips_what_is_already_gone(tiny_model, tiny_batch):
    trimmed = trimbert.trim(tiny_model, drop_ffn="1", layernorm="0.attn")
    result = analyze_blocks(trimmed, [tiny_batch], attention=False)
    assert result.blocks[1].ffn is None and result.blocks[1].ln_ffn is None
    assert result.blocks[0].ln_attn is None and result.blocks[0].ln_both is None
    assert result.blocks[0].ln_ffn is not None
    assert sorted(result.ranking) == [0, 2, 3]
    check_auto_count(3, trimmed)
    with pytest.raises(TrimbertError, match="1 <= N <= 3"):
        check_auto_count(4, trimmed)


def test_analyze_blocks_needs_data(tiny_model):
    with pytest.raises(TrimbertError, match="analysis needs at least one batch of data"):
        analyze_blocks(tiny_model, [])


# --- choosing -----------------------------------------------------------------------------------


def _result(importances: dict[int, float]) -> AnalysisResult:
    rows = [BlockRow(index, ffn=Effect(value, 1 - value, 1.0)) for index, value in importances.items()]
    ranking = tuple(sorted(importances, key=lambda i: (importances[i], i)))
    return AnalysisResult(measure="cka", blocks=rows, attention={}, ranking=ranking, layernorm_ranking=())


def test_choose_ffn_blocks_picks_the_n_smallest():
    result = _result({0: 0.5, 1: 0.01, 2: 0.3, 3: 0.02, 4: 0.9, 5: 0.0})
    assert choose_ffn_blocks(result, 1) == (5,)
    assert choose_ffn_blocks(result, 3) == (1, 3, 5)
    assert choose_ffn_blocks(result, 6) == (0, 1, 2, 3, 4, 5)
    for bad in (0, -1, 7):
        with pytest.raises(TrimbertError, match=re.escape(f"--drop-ffn: auto:{bad} needs 1 <= N <= 6 (FFNs")):
            choose_ffn_blocks(result, bad)
    spec = auto_spec(result, 2)
    assert spec.drop_ffn == (1, 5)
    assert spec.notes["drop_ffn_rule"] == "auto:2" and spec.notes["measure"] == "cka"
    assert spec.notes["ffn_importance"]["4"] == 0.9


def test_parse_auto():
    assert parse_auto("auto:3") == 3
    assert parse_auto("AUTO:2") == 2
    assert parse_auto("auto:0") == 0  # checked against the model later
    for other in (None, "alternate", "1,3", "last:2"):
        assert parse_auto(other) is None
    for bad in ("auto", "auto:", "auto:x", "auto:1.5"):
        with pytest.raises(TrimbertError, match=re.escape(f"--drop-ffn: {bad!r}: use auto:N with N the number of FFNs to drop")):
            parse_auto(bad)


def test_resolve_auto_drop_returns_a_spec_that_composes(tiny_model, tiny_batch):
    spec = resolve_auto_drop(tiny_model, 2, [tiny_batch])
    expected = tuple(sorted(analyze_blocks(tiny_model, [tiny_batch]).ranking[:2]))
    assert spec.drop_ffn == expected
    model = trimbert.trim(trimbert.trim(tiny_model, spec), attention="relu", layernorm="half")
    applied = model.config.spec
    assert applied.drop_ffn == expected and applied.attention == "relu"
    # "half" of the 6 LayerNorms left: the attention LayerNorms of the blocks that keep their FFN first
    attention_first = [block for block in range(4) if block not in expected] + list(expected)
    assert applied.layernorm == tuple(sorted(f"{block}.attn" for block in attention_first[:3]))
    assert applied.notes["drop_ffn_rule"] == "auto:2"
    for bad in (0, 5):
        with pytest.raises(TrimbertError, match=rf"auto:{bad} needs 1 <= N <= 4"):
            resolve_auto_drop(tiny_model, bad, [tiny_batch])


# --- analyze() on saved checkpoints ------------------------------------------------------------


def test_analyze_same_seed_same_ranking(tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=48)
    source = DataSource(task="sst2", data_dir=str(data))
    first = analyze(str(tiny_checkpoint), source, samples=16, seed=3, max_length=32, batch_size=5)
    second = analyze(str(tiny_checkpoint), source, samples=16, seed=3, max_length=32, batch_size=5)
    assert first.measure == "cka"  # a bare encoder
    assert first.samples == 16 and first.seed == 3 and first.task == "sst2"
    assert first.ranking == second.ranking
    assert first.ffn_importance() == second.ffn_importance()
    assert first.to_dict() == {**second.to_dict(), "time_s": first.time_s}
    with pytest.raises(TrimbertError, match="--samples must be at least 1, got 0"):
        analyze(str(tiny_checkpoint), source, samples=0)
    with pytest.raises(TrimbertError, match="no trained classification head"):
        analyze(str(tiny_checkpoint), source, samples=8, has_head=True)


def test_has_task_head_and_loss_measure(tiny_checkpoint, tmp_path):
    sst2 = get_task("sst2")
    assert not has_task_head(str(tiny_checkpoint), sst2.num_labels, sst2.is_regression)
    torch.manual_seed(0)
    classifier = BertForSequenceClassification(
        tiny_config(vocab_size=30522, num_hidden_layers=2, max_position_embeddings=128, num_labels=2)
    )
    trimbert.save(classifier, tmp_path / "clf", tokenizer=trimbert.load_tokenizer(tiny_checkpoint))
    assert has_task_head(str(tmp_path / "clf"), sst2.num_labels, sst2.is_regression)
    assert not has_task_head(
        str(tmp_path / "clf"), get_task("mnli").num_labels, get_task("mnli").is_regression
    )  # 3 labels
    assert not has_task_head(
        str(tmp_path / "clf"), get_task("stsb").num_labels, get_task("stsb").is_regression
    )  # regression
    data = write_sst2(tmp_path / "SST-2")
    result = analyze(str(tmp_path / "clf"), DataSource(task="sst2", data_dir=str(data)), samples=12)
    # an untrained 2-label head (weights of std 0.02) gives logits near 0: a loss near ln 2
    assert result.measure == "loss" and result.base_loss == pytest.approx(math.log(2), abs=0.05)
    assert all(row.ffn.importance == row.ffn.loss_delta for row in result.blocks)
    forced = analyze(
        str(tmp_path / "clf"), DataSource(task="sst2", data_dir=str(data)), samples=12, has_head=False
    )
    assert forced.measure == "cka"


def test_make_batches_groups_by_length(tiny_checkpoint):
    from datasets import Dataset

    tokenizer = trimbert.load_tokenizer(tiny_checkpoint)
    texts = ["a b c d e f g h", "a", "a b c d", "a b"]
    encoded = Dataset.from_dict(dict(tokenizer(texts)))
    batches = make_batches(encoded, tokenizer, batch_size=2)
    assert [batch["input_ids"].shape[1] for batch in batches] == [4, 10]
    assert int(sum(batch["attention_mask"].sum() for batch in batches)) == sum(
        len(ids) for ids in encoded["input_ids"]
    )
