"""Importance: the orders and rankings every rule's scores give."""

import re

import pytest
import torch

from trimbert.errors import TrimbertError
from trimbert.importance.scores import Importance


def test_orders_most_important_first_ties_to_the_lower_index():
    found = Importance(
        rule="taylor",
        neurons={0: torch.tensor([0.5, 2.0, 0.5, 3.0])},
        heads={1: torch.tensor([1.0, 1.0, 4.0]), 2: torch.tensor([0.0, 0.0])},
    )
    assert {block: order.tolist() for block, order in found.neuron_order().items()} == {0: [3, 1, 0, 2]}
    assert {block: order.tolist() for block, order in found.head_order().items()} == {1: [2, 0, 1], 2: [0, 1]}


def test_ffn_ranking_and_the_least_important_ffns():
    found = Importance(rule="cut", ffn={0: 3.0, 1: 1.0, 2: 1.0, 3: 0.5}, objective="cka", samples=8)
    assert found.ffn_ranking() == (3, 1, 2, 0)
    assert found.least_important_ffns(2) == (1, 3)
    assert found.least_important_ffns(4) == (0, 1, 2, 3)
    for bad in (0, -1, 5):
        with pytest.raises(TrimbertError, match=re.escape(f"--drop-ffn: auto:{bad} needs 1 <= N <= 4 (FFNs the model has left)")):
            found.least_important_ffns(bad)


def test_summary_is_json_ready():
    found = Importance(
        rule="taylor", neurons={0: torch.ones(3)}, ffn={0: 1.5}, layernorm={"0.attn": 0.25}, blocks={0: 2.0},
        objective="task-loss", samples=12,
    )
    assert found.summary() == {
        "rule": "taylor",
        "objective": "task-loss",
        "samples": 12,
        "ffn": {"0": 1.5},
        "layernorm": {"0.attn": 0.25},
        "blocks": {"0": 2.0},
    }
