"""The cut analysis: each FFN, LayerNorm and head cut alone, measured against the untouched model."""

import copy
import math

import pytest
import torch
from conftest import tiny_config, write_sst2
from transformers import BertForSequenceClassification

import trimbert
from trimbert.data.source import DataSource
from trimbert.data.tasks import get_task
from trimbert.errors import TrimbertError
from trimbert.importance.cut import analyze, analyze_blocks
from trimbert.importance.similarity import linear_cka, mean_cosine
from trimbert.model.attention import NORMALIZERS
from trimbert.model.heads import has_task_head


def _final(model, batch):
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        return model(**batch, output_hidden_states=True).hidden_states[-1][mask]


# --- analyze_blocks -----------------------------------------------------------------------------


def test_analyze_blocks_hidden_state_measure(tiny_model, tiny_batch):
    before = {name: tensor.clone() for name, tensor in tiny_model.state_dict().items()}
    _final(tiny_model, tiny_batch)  # transformers hooks the blocks to collect hidden states at the first such pass
    hooks = {name: len(module._forward_hooks) for name, module in tiny_model.named_modules()}
    tiny_model.train()
    result = analyze_blocks(tiny_model, [tiny_batch])
    assert tiny_model.training  # mode restored
    for name, tensor in tiny_model.state_dict().items():  # the model is untouched
        assert torch.equal(tensor, before[name]), name
    assert {name: len(module._forward_hooks) for name, module in tiny_model.named_modules()} == hooks  # gates gone
    assert result.measure == "cka" and result.base_loss is None
    assert [row.index for row in result.blocks] == [0, 1, 2, 3]
    assert sorted(result.ranking) == [0, 1, 2, 3]
    importance = result.ffn_importance()
    assert [importance[i] for i in result.ranking] == sorted(importance.values())
    assert set(result.attention) == set(NORMALIZERS)
    assert result.tokens == int(tiny_batch["attention_mask"].sum())
    for row in result.blocks:
        assert len(row.heads) == 4
        for effect in (row.ffn, row.ln_attn, row.ln_ffn, row.ln_both, *row.heads):
            assert effect is not None
            assert effect.importance == pytest.approx(1 - effect.cka)
            assert -1e-9 <= effect.importance <= 1 and effect.loss_delta is None
    assert sorted(result.layernorm_ranking) == sorted(f"{i}.{k}" for i in range(4) for k in ("attn", "ffn"))
    heads = result.head_importance()
    assert sorted(result.head_ranking) == sorted(f"{b}.{h}" for b in range(4) for h in range(4))
    ranked = [float(heads[int(b)][int(h)]) for b, h in (name.split(".") for name in result.head_ranking)]
    assert ranked == sorted(ranked)
    data = result.to_dict()
    assert data["ranking"] == list(result.ranking) and len(data["blocks"]) == 4
    assert data["head_ranking"] == list(result.head_ranking) and len(data["blocks"][1]["heads"]) == 4


def test_analyze_blocks_matches_a_real_trim(tiny_model, tiny_batch):
    """The FFN effect is exactly what trim(drop_ffn=i) does to the final hidden states; a head's is what
    trim(heads=...) keeping the block's other heads does."""
    result = analyze_blocks(tiny_model, [tiny_batch], layernorms=False, attention=False)
    assert result.attention == {} and all(row.ln_attn is None for row in result.blocks)
    base = _final(tiny_model, tiny_batch)
    trimmed = _final(trimbert.trim(copy.deepcopy(tiny_model), drop_ffn="2"), tiny_batch)
    assert result.blocks[2].ffn.cka == pytest.approx(linear_cka(base, trimmed), abs=1e-12)
    pruned = _final(trimbert.trim(copy.deepcopy(tiny_model), heads="1=0+1+3"), tiny_batch)
    head = result.blocks[1].heads[2]  # a random model's head changes little: compare 1 − CKA, not CKA
    assert head.importance == pytest.approx(1 - linear_cka(base, pruned), rel=1e-6) and head.importance > 1e-7
    assert head.cosine == pytest.approx(mean_cosine(base, pruned), abs=1e-12)


def test_analyze_blocks_loss_measure_with_a_head(tiny_model, tiny_batch):
    with torch.no_grad():  # head 1 of block 2 writes nothing: cutting it changes nothing at all
        tiny_model.bert.encoder.layer[2].attention.output.dense.weight[:, 8:16] = 0.0
    batch = {**tiny_batch, "labels": torch.tensor([0, 2, 1])}
    result = analyze_blocks(tiny_model, [batch], has_head=True, layernorms=False, attention=False)
    assert result.measure == "loss"
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(tiny_model(**tiny_batch).logits, batch["labels"])
    assert result.base_loss == pytest.approx(float(expected), rel=1e-5)
    for row in result.blocks:
        assert row.ffn.importance == row.ffn.loss_delta
        assert math.isfinite(row.ffn.importance)
        assert all(effect.importance == effect.loss_delta for effect in row.heads)
    assert result.blocks[2].heads[1].loss_delta == 0.0
    assert sum(effect.loss_delta == 0.0 for row in result.blocks for effect in row.heads) == 1
    with pytest.raises(TrimbertError, match="has_head=True needs labels in every batch"):
        analyze_blocks(tiny_model, [tiny_batch], has_head=True)


def test_analyze_blocks_skips_what_is_already_gone(tiny_model, tiny_batch):
    trimmed = trimbert.trim(tiny_model, drop_ffn="1", layernorm="0.attn", heads="3=2")
    result = analyze_blocks(trimmed, [tiny_batch], attention=False)
    assert result.blocks[1].ffn is None and result.blocks[1].ln_ffn is None
    assert result.blocks[0].ln_attn is None and result.blocks[0].ln_both is None
    assert result.blocks[0].ln_ffn is not None
    assert sorted(result.ranking) == [0, 2, 3]
    assert result.blocks[3].heads is None and [len(row.heads) for row in result.blocks[:3]] == [4, 4, 4]
    assert result.notes["skipped"] == {"heads 3": "the block's last head (a trim keeps at least one)"}
    assert sorted(result.head_ranking) == sorted(f"{b}.{h}" for b in range(3) for h in range(4))
    assert sorted(result.importance().heads) == [0, 1, 2]


def test_analyze_blocks_without_heads_or_with_ungatable_layernorms(tiny_model, tiny_batch):
    result = analyze_blocks(tiny_model, [tiny_batch], layernorms=False, attention=False, heads=False)
    assert all(row.heads is None for row in result.blocks) and result.head_ranking == ()
    affine = trimbert.trim(
        copy.deepcopy(tiny_model), layernorm="0.attn", layernorm_replacement="affine", calibration_batches=[tiny_batch]
    )
    result = analyze_blocks(affine, [tiny_batch], layernorms=False, attention=False)
    assert all(row.heads is None for row in result.blocks)
    assert result.notes["skipped"]["heads"] == "gates: a model with affine or DyT LayerNorm replacements cannot be gated"


def test_analyze_blocks_needs_data(tiny_model):
    with pytest.raises(TrimbertError, match="analysis needs at least one batch of data"):
        analyze_blocks(tiny_model, [])


def test_the_common_importance_of_an_analysis(tiny_model, tiny_batch):
    result = analyze_blocks(tiny_model, [tiny_batch], attention=False)
    found = result.importance()
    assert found.rule == "cut" and found.objective == "cka" and found.samples == 3
    assert found.ffn == result.ffn_importance() and found.ffn_ranking() == result.ranking
    assert found.layernorm == {f"{b}.attn": result.blocks[b].ln_attn.importance for b in range(4)} | {
        f"{b}.ffn": result.blocks[b].ln_ffn.importance for b in range(4)
    }
    assert found.heads[3].tolist() == [effect.importance for effect in result.blocks[3].heads]
    assert found.neurons == {} and found.blocks == {}


# --- analyze() on saved checkpoints ------------------------------------------------------------


def test_analyze_same_seed_same_ranking(tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=48)
    source = DataSource(task="sst2", data_dir=str(data))
    first = analyze(str(tiny_checkpoint), source, samples=16, seed=3, max_length=32, batch_size=5)
    second = analyze(str(tiny_checkpoint), source, samples=16, seed=3, max_length=32, batch_size=5)
    assert first.measure == "cka"  # a bare encoder
    assert first.samples == 16 and first.seed == 3 and first.task == "sst2"
    assert first.ranking == second.ranking and first.head_ranking == second.head_ranking
    assert len(first.head_ranking) == 8  # 2 blocks of 4 heads
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
    result = analyze(str(tmp_path / "clf"), DataSource(task="sst2", data_dir=str(data)), samples=12, heads=False)
    # an untrained 2-label head (weights of std 0.02) gives logits near 0: a loss near ln 2
    assert result.measure == "loss" and result.base_loss == pytest.approx(math.log(2), abs=0.05)
    assert all(row.ffn.importance == row.ffn.loss_delta for row in result.blocks)
    assert result.head_ranking == ()
    forced = analyze(
        str(tmp_path / "clf"), DataSource(task="sst2", data_dir=str(data)), samples=12, has_head=False, heads=False
    )
    assert forced.measure == "cka"
