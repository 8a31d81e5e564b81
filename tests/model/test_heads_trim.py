"""Physical attention-head pruning: the surgery, its structure, the gates that simulate it, save and load."""

import copy

import pytest
import torch

import trimbert
from trimbert.errors import TrimbertError
from trimbert.model.gates import gated, install_gates
from trimbert.model.ranking import head_magnitude_importance, select_heads
from trimbert.model.structure import (
    block_module,
    encoder_layers,
    head_counts,
    head_rows,
)
from trimbert.model.trim import trim
from trimbert.spec import TrimSpec


def _hidden(model, batch):
    with torch.no_grad():
        return model.base_model(**batch).last_hidden_state


def _scores(model, seed=3):
    torch.manual_seed(seed)
    return {block: torch.rand(model.config.num_attention_heads) for block in range(model.config.num_hidden_layers)}


def _order(scores):
    return {block: torch.argsort(values, descending=True, stable=True) for block, values in scores.items()}


def test_magnitude_importance_is_the_documented_product(tiny_model):
    layer = encoder_layers(tiny_model)[1]
    size = 8  # hidden 32, 4 heads
    w_v = layer.attention.self.value.weight
    w_o = layer.attention.output.dense.weight
    expected = torch.stack(
        [w_v[h * size : (h + 1) * size].norm() * w_o[:, h * size : (h + 1) * size].norm() for h in range(4)]
    )
    torch.testing.assert_close(head_magnitude_importance(layer), expected)


def test_select_heads_keeps_the_best_in_original_order():
    assert select_heads(torch.tensor([0.5, 3.0, 1.0, 3.0]), 2).tolist() == [1, 3]
    assert select_heads(torch.tensor([2.0, 2.0, 2.0]), 2).tolist() == [0, 1]  # ties: lower index
    assert head_rows(torch.tensor([0, 2]), 3).tolist() == [0, 1, 2, 6, 7, 8]
    with pytest.raises(TrimbertError, match="^--heads: cannot keep 0 of 4 heads$"):
        select_heads(torch.ones(4), 0)


def test_kept_heads_move_their_weights(tiny_model):
    source = copy.deepcopy(tiny_model)
    scores = {1: torch.tensor([0.1, 0.9, 0.2, 0.8])}
    trimmed = trim(tiny_model, heads="1:2", head_importance=scores)
    attention, output = block_module(trimmed, 1).attention, block_module(source, 1).attention
    rows = torch.tensor([8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31])  # heads 1 and 3
    for name in ("query", "key", "value"):
        new, old = getattr(attention.self, name), getattr(output.self, name)
        assert tuple(new.weight.shape) == (16, 32)
        assert new.weight.equal(old.weight[rows]) and new.bias.equal(old.bias[rows])
    assert tuple(attention.output.dense.weight.shape) == (32, 16)
    assert attention.output.dense.weight.equal(output.output.dense.weight[:, rows])
    assert attention.output.dense.bias.equal(output.output.dense.bias)  # the output bias stays
    assert (attention.self.num_attention_heads, attention.self.all_head_size) == (2, 16)
    assert head_counts(trimmed) == {0: 4, 1: 2, 2: 4, 3: 4}
    assert trimmed.config.trim_spec["heads"] == {"1": 2}
    assert trimmed.config.trim_spec["notes"] == {"heads_rule": "scores"}
    assert trimmed.config.num_attention_heads == 4  # the config keeps the original count


def test_explicit_heads_are_exactly_the_ones_kept(tiny_model, tiny_batch):
    source = copy.deepcopy(tiny_model)
    trimmed = trim(tiny_model, heads="0:3,2=3+0")
    assert trimmed.config.trim_spec["heads"] == {"0": 3, "2": 2}
    assert trimmed.config.trim_spec["notes"] == {"heads_rule": "explicit and magnitude"}
    kept = block_module(trimmed, 2).attention.self.value.weight
    assert kept.equal(block_module(source, 2).attention.self.value.weight[head_rows(torch.tensor([0, 3]), 8)])
    # Indices name the block's CURRENT heads: keep its second one of the two left (original head 3).
    again = trim(trimmed, heads="2=1")
    assert again.config.trim_spec["notes"] == {"heads_rule": "explicit and magnitude, then explicit"}
    assert block_module(again, 2).attention.self.value.weight.equal(
        block_module(source, 2).attention.self.value.weight[24:32]
    )
    with torch.no_grad(), gated(source) as gates:
        order = {0: torch.argsort(head_magnitude_importance(block_module(source, 0)), descending=True, stable=True)}
        gates.apply(TrimSpec.from_dict(again.config.trim_spec), head_order={**order, 2: torch.tensor([3])})
        torch.testing.assert_close(_hidden(source, tiny_batch), _hidden(again, tiny_batch), rtol=1e-5, atol=1e-5)


SPECS = [
    TrimSpec(heads={0: 1, 2: 3}),
    TrimSpec(heads=dict.fromkeys(range(4), 2)),
    TrimSpec(heads={1: 2, 3: 1}, ffn_width={1: 20, 3: 40}),
    TrimSpec(heads={0: 2, 3: 3}, drop_ffn=(0, 2)),
    TrimSpec(heads={1: 1, 3: 2}, drop_layers=(0, 2), layernorm=("1.attn",), attention="relu"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.summary())
def test_gated_heads_compute_what_the_trim_builds(tiny_model, tiny_batch, spec):
    scores = _scores(tiny_model)
    neurons = {block: torch.rand(64) for block in range(4)}
    trimmed = trim(
        copy.deepcopy(tiny_model),
        spec,
        head_importance=scores,
        ffn_importance=neurons if spec.ffn_width else None,
    )
    assert trimmed.config.trim_spec["heads"] == {str(block): count for block, count in spec.heads}
    with torch.no_grad(), gated(tiny_model) as gates:
        plain = _hidden(tiny_model, tiny_batch)
        gates.apply(spec, _order(neurons), head_order=_order(scores))
        simulated, logits = _hidden(tiny_model, tiny_batch), tiny_model(**tiny_batch).logits
    expected = _hidden(trimmed, tiny_batch)
    torch.testing.assert_close(simulated, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, trimmed(**tiny_batch).logits, rtol=1e-5, atol=1e-5)
    assert (plain - expected).abs().max() > 1e-2  # the trim changed the model


def test_gated_heads_on_a_pruned_model_and_gates_at_one(tiny_model, tiny_batch):
    pruned = trim(tiny_model, heads="1:2", drop_layers="0")
    before = _hidden(pruned, tiny_batch)
    gates = install_gates(pruned)
    assert {block: tuple(gate.shape) for block, gate in gates.heads.items()} == {1: (2,), 2: (4,), 3: (4,)}
    assert _hidden(pruned, tiny_batch).equal(before)
    with pytest.raises(TrimbertError, match=r"^gates: no head order for block 1 \(pruned to 1 heads\)$"):
        gates.apply(TrimSpec(heads={1: 1}))
    with pytest.raises(TrimbertError, match="^gates: this model has no attention 0 to remove$"):
        gates.apply(TrimSpec(heads={0: 1}), head_order={0: torch.arange(4)})
    gates.require_grad(True)
    assert all(tensor.requires_grad for tensor in gates.heads.values())
    gates.apply(TrimSpec(heads={2: 1}), head_order={2: torch.tensor([3, 0, 1, 2])})
    assert gates.heads[2].tolist() == [0.0, 0.0, 0.0, 1.0]
    gates.reset()
    assert gates.heads[2].tolist() == [1.0] * 4
    gates.remove()
    assert _hidden(pruned, tiny_batch).equal(before)


def test_minilm_heads_gates_and_counts(minilm, tiny_batch):
    source = copy.deepcopy(minilm)
    params = sum(parameter.numel() for parameter in minilm.parameters())
    trimmed = trim(minilm, heads="8")
    # Each head removed: Q, K, V rows (3·32·384 + 3·32) and output columns (384·32); 6 blocks × 4 heads.
    assert params - sum(parameter.numel() for parameter in trimmed.parameters()) == 24 * (4 * 384 * 32 + 3 * 32)
    assert head_counts(trimmed) == dict.fromkeys(range(6), 8)
    assert tuple(block_module(trimmed, 5).attention.self.query.weight.shape) == (256, 384)
    assert trimmed.config.trim_spec == {
        "drop_ffn": [],
        "attention": "softmax",
        "layernorm": [],
        "heads": {str(block): 8 for block in range(6)},
        "notes": {"heads_rule": "magnitude"},
    }
    order = {
        block: torch.argsort(head_magnitude_importance(layer), descending=True, stable=True)
        for block, layer in enumerate(encoder_layers(source))
    }
    with torch.no_grad(), gated(source) as gates:
        gates.apply(TrimSpec(heads=dict.fromkeys(range(6), 8)), head_order=order)
        torch.testing.assert_close(source(**tiny_batch).last_hidden_state, trimmed(**tiny_batch).last_hidden_state, rtol=1e-4, atol=1e-4)


def test_minilm_heads_compose_with_other_trims(minilm, tiny_batch):
    source = copy.deepcopy(minilm)
    scores = _scores(minilm, seed=5)
    trimmed = trim(minilm, heads="0:4,2=0+5+11,4:1", ffn_width="1:768", drop_ffn="3", drop_layers="5", head_importance=scores)
    assert trimmed.config.trim_spec["heads"] == {"0": 4, "2": 3, "4": 1}
    assert head_counts(trimmed) == {0: 4, 1: 12, 2: 3, 3: 12, 4: 1}
    neurons = {1: torch.argsort(torch.as_tensor(
        encoder_layers(source)[1].intermediate.dense.weight.float().norm(dim=1)
        * encoder_layers(source)[1].output.dense.weight.float().norm(dim=0)), descending=True, stable=True)}
    head_order = {**_order(scores), 2: torch.tensor([0, 5, 11])}
    with torch.no_grad(), gated(source) as gates:
        gates.apply(TrimSpec.from_dict(trimmed.config.trim_spec), neurons, head_order=head_order)
        torch.testing.assert_close(source(**tiny_batch).last_hidden_state, trimmed(**tiny_batch).last_hidden_state, rtol=1e-4, atol=1e-4)


def test_save_and_load_round_trip(tiny_model, tiny_batch, tmp_path):
    trimmed = trim(tiny_model, heads="0=1+2,3:1", ffn_width="3:16", drop_layers="1")
    trimbert.save(trimmed, tmp_path / "pruned")
    loaded = trimbert.load(tmp_path / "pruned")
    assert type(loaded).__name__ == "TrimBertForSequenceClassification"
    assert head_counts(loaded) == {0: 2, 2: 4, 3: 1}
    assert loaded.config.trim_spec == trimmed.config.trim_spec
    with torch.no_grad():
        assert loaded(**tiny_batch).logits.equal(trimmed(**tiny_batch).logits)
    again = trim(loaded, heads="0:1")  # a loaded pruned model prunes further
    assert head_counts(again) == {0: 1, 2: 4, 3: 1}


def test_pruned_model_trains(tiny_model, tiny_batch):
    trimmed = trim(tiny_model, heads="2").train()
    loss = trimmed(**tiny_batch, labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    assert block_module(trimmed, 0).attention.self.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heads": "4"}, "--heads: block 0 keeps 4 heads: must be fewer than the number of attention heads (4)"),
        ({"heads": "0=4"}, "--heads: block 0 has no head 4 (its 4 heads are 0-3)"),
        ({"drop_ffn": "1", "head_importance": {0: torch.ones(4)}}, "head_importance: only used with --heads (no heads given)"),
        ({"heads": "0:2", "head_importance": {1: torch.ones(4)}}, "head_importance: no scores for block 0 (pruned by --heads)"),
        ({"heads": "0:2", "head_importance": {0: torch.ones(3)}}, "head_importance: block 0 needs 4 scores (one per head), got shape (3,)"),
        ({"heads": "0:2", "head_importance": {0: torch.tensor([1.0, float("nan"), 0, 0])}}, "head_importance: block 0 has non-finite scores"),
        ({"heads": "0:2", "head_importance": {9: torch.ones(4)}}, "head_importance: block index 9 out of range for a 4-block model"),
        ({"heads": "0:2", "head_importance": [torch.ones(4)]}, "head_importance: expected a dict block -> 1-D tensor of head scores"),
    ],
)
def test_errors(tiny_model, kwargs, message):
    with pytest.raises(TrimbertError) as caught:
        trim(tiny_model, **kwargs)
    assert str(caught.value) == message


def test_explicit_blocks_need_no_scores(tiny_model):
    trimmed = trim(tiny_model, heads="0=1", head_importance={})
    assert trimmed.config.trim_spec["notes"] == {"heads_rule": "explicit"}
