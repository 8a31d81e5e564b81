"""Magnitude importance: the weight norms of every FFN neuron and head, what trim keeps without data."""

import torch

import trimbert
from trimbert.importance.magnitude import head_order, magnitude
from trimbert.model.structure import encoder_layers


def test_scores_are_the_weight_norm_products(tiny_model):
    found = magnitude(tiny_model)
    layer = tiny_model.bert.encoder.layer[2]
    w_in, w_out = layer.intermediate.dense.weight, layer.output.dense.weight
    assert found.rule == "magnitude" and found.samples == 0 and found.ffn == {}
    assert sorted(found.neurons) == sorted(found.heads) == [0, 1, 2, 3]
    torch.testing.assert_close(found.neurons[2][7], w_in[7].norm() * w_out[:, 7].norm())
    w_v, w_o = layer.attention.self.value.weight, layer.attention.output.dense.weight
    torch.testing.assert_close(found.heads[2][1], w_v[8:16].norm() * w_o[:, 8:16].norm())
    assert found.neurons[0][found.neuron_order()[0][0]] == found.neurons[0].max()


def test_a_dropped_ffn_has_no_neuron_scores_and_a_head_prefix_is_what_trim_keeps(tiny_model):
    trimmed = trimbert.trim(tiny_model, drop_ffn="1", drop_layers="0")
    found = magnitude(trimmed)
    assert sorted(found.neurons) == [2, 3] and sorted(found.heads) == [1, 2, 3]
    order = head_order(trimmed)
    pruned = trimbert.trim(trimmed, heads=2)
    for block in (1, 2, 3):
        kept = order[block][:2].sort().values
        source = encoder_layers(trimmed)[block - 1].attention.self.value.weight.reshape(4, 8, -1)[kept].flatten(0, 1)
        torch.testing.assert_close(encoder_layers(pruned)[block - 1].attention.self.value.weight, source)
