"""auto:N (the N least important FFNs, by the cut analysis or Taylor scores) and the neuron orders of widths."""

import re

import pytest
import torch

import trimbert
from trimbert.errors import TrimbertError
from trimbert.importance.cut import analyze_blocks
from trimbert.importance.scores import Importance
from trimbert.importance.select import auto_drop, auto_spec, check_auto_count, measure_name
from trimbert.importance.taylor import taylor_importance


def test_auto_spec_drops_the_n_smallest_and_records_the_scores():
    found = Importance(rule="cut", ffn={0: 0.5, 1: 0.01, 2: 0.3, 3: 0.02, 4: 0.9, 5: 0.0}, objective="cka", samples=16)
    assert auto_spec(found, 1).drop_ffn == (5,)
    assert auto_spec(found, 3).drop_ffn == (1, 3, 5)
    assert auto_spec(found, 6).drop_ffn == (0, 1, 2, 3, 4, 5)
    for bad in (0, -1, 7):
        with pytest.raises(TrimbertError, match=re.escape(f"--drop-ffn: auto:{bad} needs 1 <= N <= 6 (FFNs")):
            auto_spec(found, bad)
    spec = auto_spec(found, 2, seed=3)
    assert spec.drop_ffn == (1, 5)
    assert spec.notes == {
        "drop_ffn_rule": "auto:2",
        "measure": "cka",
        "ffn_importance": {"0": 0.5, "1": 0.01, "2": 0.3, "3": 0.02, "4": 0.9, "5": 0.0},
        "ffn_ranking": [5, 1, 3, 2, 0, 4],
        "analysis_samples": 16,
        "analysis_seed": 3,
    }
    assert "analysis_seed" not in auto_spec(found, 2).notes
    assert measure_name(Importance(rule="taylor", objective="task-loss")) == "taylor (task-loss)"


def test_check_auto_count_counts_the_ffns_left(tiny_model):
    check_auto_count(4, tiny_model)
    with pytest.raises(TrimbertError, match=re.escape("--drop-ffn: auto:5 needs 1 <= N <= 4: the 4-block model has 4 FFN(s) left")):
        check_auto_count(5, tiny_model)
    trimmed = trimbert.trim(tiny_model, drop_ffn="1", drop_layers="3")
    check_auto_count(2, trimmed)
    with pytest.raises(TrimbertError, match=re.escape("auto:3 needs 1 <= N <= 2: the 3-block model has 2 FFN(s) left (1 already dropped)")):
        check_auto_count(3, trimmed)


def test_auto_drop_by_the_cut_analysis_composes_with_other_trims(tiny_model, tiny_batch):
    spec = auto_drop(tiny_model, 2, [tiny_batch], seed=7)
    expected = tuple(sorted(analyze_blocks(tiny_model, [tiny_batch]).ranking[:2]))
    assert spec.drop_ffn == expected
    assert spec.notes["measure"] == "cka" and spec.notes["analysis_seed"] == 7
    model = trimbert.trim(trimbert.trim(tiny_model, spec), attention="relu", layernorm="half")
    applied = model.config.spec
    assert applied.drop_ffn == expected and applied.attention == "relu"
    # "half" of the 6 LayerNorms left: the attention LayerNorms of the blocks that keep their FFN first
    attention_first = [block for block in range(4) if block not in expected] + list(expected)
    assert applied.layernorm == tuple(sorted(f"{block}.attn" for block in attention_first[:3]))
    assert applied.notes["drop_ffn_rule"] == "auto:2"
    for bad in (0, 5):
        with pytest.raises(TrimbertError, match=rf"auto:{bad} needs 1 <= N <= 4"):
            auto_drop(tiny_model, bad, [tiny_batch])


def test_auto_drop_by_taylor_scores(tiny_model, tiny_batch):
    batch = {**tiny_batch, "labels": torch.tensor([0, 2, 1])}
    spec = auto_drop(tiny_model, 2, [batch], rule="taylor", has_head=True, seed=0)
    found = taylor_importance(tiny_model, [batch], has_head=True, seed=0)
    assert spec.drop_ffn == found.least_important_ffns(2)
    assert spec.notes["measure"] == "taylor (task-loss)" and spec.notes["ffn_ranking"] == list(found.ffn_ranking())
    with pytest.raises(TrimbertError, match=re.escape("--drop-ffn auto:N ranks whole FFNs by cut or taylor, not 'fisher'")):
        auto_drop(tiny_model, 2, [batch], rule="fisher")
