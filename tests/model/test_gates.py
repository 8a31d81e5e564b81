"""Gates simulate trims exactly: gated outputs equal the trimmed model's, for every kind of unit."""

import copy

import pytest
import torch

from trimbert.errors import TrimbertError
from trimbert.model.gates import gated, install_gates
from trimbert.model.trim import trim
from trimbert.spec import TrimSpec


def _scores(model):
    torch.manual_seed(3)
    return {block: torch.rand(model.config.intermediate_size) for block in range(4)}


def _order(scores):
    return {block: torch.argsort(values, descending=True, stable=True) for block, values in scores.items()}


SPECS = [
    TrimSpec(drop_ffn=(1, 3)),
    TrimSpec(drop_layers=(2,)),
    TrimSpec(layernorm=("0.attn", "2.ffn")),
    TrimSpec(ffn_width={0: 20, 2: 40}),
    TrimSpec(attention="relu"),
    TrimSpec(drop_layers=(0,), drop_ffn=(1,), ffn_width={3: 10}, layernorm=("1.attn", "3.ffn"), attention="sigmoid"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.summary())
def test_gated_model_computes_what_the_trim_builds(tiny_model, tiny_batch, spec):
    scores = _scores(tiny_model)
    trimmed = trim(copy.deepcopy(tiny_model), spec, ffn_importance=scores if spec.ffn_width else None).eval()
    with torch.no_grad(), gated(tiny_model) as gates:
        gates.apply(spec, _order(scores))
        simulated = tiny_model(**tiny_batch).logits
        expected = trimmed(**tiny_batch).logits
    torch.testing.assert_close(simulated, expected, rtol=1e-5, atol=1e-5)


def test_gates_at_one_and_after_removal_leave_the_model_unchanged(tiny_model, tiny_batch):
    with torch.no_grad():
        before = tiny_model(**tiny_batch).logits
        with gated(tiny_model) as gates:
            assert tiny_model(**tiny_batch).logits.equal(before)
            gates.apply(TrimSpec(drop_ffn=(0,), attention="relu"))
            assert not tiny_model(**tiny_batch).logits.equal(before)
        assert tiny_model(**tiny_batch).logits.equal(before)
    assert tiny_model.config._attn_implementation != "trimbert_relu"


def test_gates_exist_only_for_units_the_model_has(tiny_model):
    trimmed = trim(tiny_model, drop_ffn="1", drop_layers="3", layernorm="0.attn")
    gates = install_gates(trimmed)
    assert sorted(gates.blocks) == [0, 1, 2]
    assert sorted(gates.ffn) == [0, 2]
    assert sorted(gates.neurons) == [0, 2]
    assert sorted(gates.layernorm) == ["0.ffn", "1.attn", "2.attn", "2.ffn"]
    with pytest.raises(TrimbertError, match="no FFN 1"):
        gates.apply(TrimSpec(drop_ffn=(1,)))
    with pytest.raises(TrimbertError, match="no neuron order for block 0"):
        gates.apply(TrimSpec(ffn_width={0: 8}))
    gates.remove()
    assert not gates.handles


def test_affine_replacement_cannot_be_simulated(tiny_model):
    gates = install_gates(tiny_model)
    with pytest.raises(TrimbertError, match="identity LayerNorm replacement only"):
        gates.apply(TrimSpec(layernorm=("0.attn",), layernorm_replacement="affine"))
