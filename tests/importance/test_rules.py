"""score(): every importance rule through one call, each returning the common Importance."""

import re

import pytest
import torch

from trimbert.errors import TrimbertError
from trimbert.importance.cut import analyze_blocks
from trimbert.importance.fisher import fisher_scores
from trimbert.importance.magnitude import magnitude
from trimbert.importance.rules import RULES, score
from trimbert.importance.taylor import taylor_importance


def _labelled(batch):
    return {**batch, "labels": torch.tensor([0, 2, 1])}


def test_each_rule_gives_what_its_module_computes(tiny_model, tiny_batch):
    batch = _labelled(tiny_batch)
    assert RULES == ("magnitude", "taylor", "fisher", "cut")
    found = score(tiny_model, "magnitude")
    assert found.rule == "magnitude" and torch.equal(found.heads[1], magnitude(tiny_model).heads[1])
    found = score(tiny_model, "taylor", [batch], has_head=True)
    assert found.rule == "taylor" and found.ffn == taylor_importance(tiny_model, [batch], has_head=True).ffn
    found = score(tiny_model, "fisher", [tiny_batch], seed=2)
    fisher = fisher_scores(tiny_model, [tiny_batch], has_head=False, seed=2)
    assert found.rule == "fisher" and found.objective == "hidden-gaussian" and found.samples == 3
    assert torch.equal(found.neurons[3], fisher.neurons[3]) and torch.equal(found.heads[0], fisher.heads[0])
    found = score(tiny_model, "cut", [batch], has_head=True, units=("ffn",))
    cut = analyze_blocks(tiny_model, [batch], has_head=True, layernorms=False, attention=False, heads=False)
    assert found.rule == "cut" and found.objective == "loss"
    assert found.ffn == cut.ffn_importance() and found.layernorm == {} and found.heads == {}
    found = score(tiny_model, "cut", [tiny_batch], units=("ffn", "heads"))
    assert sorted(found.heads) == [0, 1, 2, 3] and found.layernorm == {}


def test_refusals_are_one_line(tiny_model, tiny_batch):
    with pytest.raises(TrimbertError, match=re.escape("importance: unknown rule 'random' (choose from magnitude, taylor, fisher, cut)")):
        score(tiny_model, "random")
    with pytest.raises(TrimbertError, match="^importance: the taylor rule needs a sample of data to measure on$"):
        score(tiny_model, "taylor")
    with pytest.raises(TrimbertError, match="^importance: the cut rule cuts ffn, layernorm, heads, not neurons$"):
        score(tiny_model, "cut", [tiny_batch], units=("ffn", "neurons"))
