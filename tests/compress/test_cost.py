"""The linear cost: read off an additive latency model exactly, refused for one that is not additive."""

import pytest

from trimbert.compress.cost import LinearCost, linear_cost, model_units
from trimbert.errors import TrimbertError
from trimbert.model.trim import trim
from trimbert.search.predictor import Conditions, Predictor
from trimbert.spec import TrimSpec, encoder_layernorms

# the tiny model: 4 blocks of 4 heads, FFNs of 64 neurons


def _counts(spec):
    heads = sum(spec.head_counts.get(block, 4) for block in range(4))
    ffns = [block for block in range(4) if block not in spec.drop_ffn]
    neurons = sum(spec.ffn_widths.get(block, 64) for block in ffns)
    layernorms = len(encoder_layernorms(4, spec.drop_ffn)) - len(spec.layernorm)
    return heads, neurons, ffns, layernorms


def _additive(spec):
    heads, neurons, ffns, layernorms = _counts(spec)
    return 2.0 + 0.1 * heads + 0.001 * neurons + 0.3 * len(ffns) + 0.05 * layernorms


def test_ms_is_the_line():
    line = LinearCost(fixed_ms=1.0, per_head_ms=0.5, per_neuron_ms=0.01, per_ffn_ms=0.2, ffn_ms_by_block={3: 0.1})
    assert line.ms(heads=3, neurons=100, ffns=[0, 2]) == pytest.approx(1.0 + 1.5 + 1.0 + 0.4)
    assert line.ms(heads=3, neurons=100, ffns=[0, 3]) == pytest.approx(1.0 + 1.5 + 1.0 + 0.3)
    assert line.ms(heads=3, neurons=100, ffns=2) == pytest.approx(1.0 + 1.5 + 1.0 + 0.4)


def test_the_costs_of_an_additive_model_are_read_exactly(tiny_model):
    line = linear_cost(_additive, tiny_model)
    assert line.per_head_ms == pytest.approx(0.1)
    assert line.per_neuron_ms == pytest.approx(0.001)
    assert line.per_ffn_ms == pytest.approx(0.35) and line.ffn_ms_by_block == {}  # the FFN and its LayerNorm
    assert line.can_drop_ffn and line.can_prune_heads
    assert line.fixed_ms == pytest.approx(2.0 + 0.05 * 4)  # the attention LayerNorms
    spec = TrimSpec(drop_ffn=(2,), ffn_width={0: 10, 3: 33}, heads={1: 2, 3: 1})
    heads, neurons, ffns, _ = _counts(spec)
    assert line.ms(heads, neurons, ffns) == pytest.approx(_additive(spec))
    assert linear_cost(line, tiny_model) is line


def test_a_trimmed_model_is_priced_from_where_it_stands(tiny_model):
    trimmed = trim(tiny_model, drop_ffn=[1], ffn_width={0: 32}, heads={2: 2})
    assert model_units(trimmed).heads == {0: 4, 1: 4, 2: 2, 3: 4}
    assert model_units(trimmed).widths == {0: 32, 2: 64, 3: 64}
    line = linear_cost(_additive, trimmed)
    assert line.ms(*model_units(trimmed).totals) == pytest.approx(_additive(TrimSpec(drop_ffn=(1,), ffn_width={0: 32}, heads={2: 2})))


def test_an_ffn_whose_layernorm_was_stripped_saves_less_when_dropped(tiny_model):
    trimmed = trim(tiny_model, layernorm=["2.ffn"])
    line = linear_cost(_additive, trimmed)
    assert line.ffn_ms(0) == pytest.approx(0.35) and line.ffn_ms(2) == pytest.approx(0.3)
    assert line.ms(*model_units(trimmed).totals) == pytest.approx(_additive(TrimSpec(layernorm=("2.ffn",))))


def test_a_latency_predictor_of_the_linear_form_is_read_exactly(tiny_model):
    conditions = Conditions(runtime="pytorch", device="cpu", batch_size=1, seq_len=8, threads=1, model_shape={})
    costs = {"const": 1.0, "blocks": 0.5, "ffns": 0.2, "ffn_neurons": 0.64, "layernorms": 0.01}
    predictor = Predictor(conditions=conditions, num_layers=4, intermediate_size=64, coefficients=costs, fitted=list(costs))
    line = linear_cost(predictor, tiny_model)
    assert line.per_head_ms == 0.0  # no head cost: heads cost nothing, or cannot be priced
    assert line.per_neuron_ms == pytest.approx(0.01)
    assert line.per_ffn_ms == pytest.approx(0.21)
    spec = TrimSpec(drop_ffn=(0, 3), ffn_width={1: 7})
    heads, neurons, ffns, _ = _counts(spec)
    assert line.ms(heads, neurons, ffns) == pytest.approx(predictor.predict(spec))


def test_a_model_that_cannot_price_a_pruned_head_keeps_every_head(tiny_model):
    def no_heads(spec):
        if spec.heads:
            raise TrimbertError("latency predictor: not fitted for pruned_heads")
        return _additive(spec)

    line = linear_cost(no_heads, tiny_model)
    assert not line.can_prune_heads and line.per_head_ms == 0.0 and line.can_drop_ffn


def test_a_model_that_cannot_price_a_dropped_ffn_keeps_every_ffn(tiny_model):
    def no_drops(spec):
        if spec.drop_ffn:
            raise TrimbertError("latency predictor: not fitted for ffns")
        return _additive(spec)

    line = linear_cost(no_drops, tiny_model)
    assert not line.can_drop_ffn and line.per_ffn_ms == 0.0 and line.can_prune_heads
    assert line.per_neuron_ms == pytest.approx(0.001)


def test_a_cost_that_is_not_additive_is_refused(tiny_model):
    def quadratic(spec):
        heads, neurons, ffns, _ = _counts(spec)
        return 1.0 + 1e-4 * neurons**2 + 0.1 * heads + 0.2 * len(ffns)

    with pytest.raises(TrimbertError, match="not additive"):
        linear_cost(quadratic, tiny_model)
    with pytest.raises(TrimbertError, match="must be a LinearCost"):
        linear_cost(3.0, tiny_model)
