"""compress_model: the trimmed model has the plan's structure and computes what the gated, scaled model does."""

import copy
import json

import pytest
import torch
from conftest import tiny_config
from transformers import BertModel

from trimbert.compress import LinearCost, compress_model, model_units
from trimbert.errors import TrimbertError
from trimbert.model.gates import gated
from trimbert.model.structure import DroppedFFN, encoder_layers
from trimbert.spec import TrimSpec, encoder_layernorms

COST = LinearCost(fixed_ms=1.0, per_head_ms=0.01, per_neuron_ms=0.002, per_ffn_ms=0.05)
FULL_MS = COST.ms(16, 256, range(4))
BUDGET_MS = 1.0 + 0.35 * (FULL_MS - 1.0)


def _labelled(batch, labels):
    return {**batch, "labels": torch.tensor(labels)}


def _inputs(batch):
    return {key: value for key, value in batch.items() if key != "labels"}


def _simulate(model, report, batch):
    """``model`` (uncompressed) with the gates at the plan's masks times the fitted scales."""
    with torch.no_grad(), gated(model) as gates:
        for block, scales in report.scales.heads.items():
            gates.heads[block].copy_(scales)
        for block in gates.neurons:
            if block in report.plan.drop_ffn:
                gates.ffn[block].fill_(0.0)
            else:
                gates.neurons[block].copy_(report.scales.neurons[block])
        return model(**_inputs(batch))


def test_the_trimmed_model_has_the_plans_structure_and_the_gated_models_outputs(tiny_model, tiny_batch):
    batches = [_labelled(tiny_batch, [0, 2, 1]), _labelled(tiny_batch, [1, 1, 0])]
    reference = copy.deepcopy(tiny_model)
    trimmed, report = compress_model(tiny_model, batches, COST, BUDGET_MS, has_head=True, multiple=4)
    plan = report.plan
    assert plan.head_counts and plan.ffn_width and plan.drop_ffn  # every kind of cut is exercised
    assert report.spec.head_counts == plan.head_counts
    assert report.spec.ffn_widths == plan.ffn_width
    assert report.spec.drop_ffn == plan.drop_ffn
    assert report.spec.notes["heads_rule"] == "scores" and report.spec.notes["ffn_width_rule"] == "scores"
    layers, originals = encoder_layers(trimmed), encoder_layers(reference)
    for block in range(4):
        heads = plan.heads[block]
        assert layers[block].attention.self.query.out_features == 8 * len(heads)
        columns = (heads[:, None] * 8 + torch.arange(8)).flatten()
        factors = report.scales.heads[block][heads].float().repeat_interleave(8)
        expected = originals[block].attention.output.dense.weight[:, columns] * factors
        assert torch.allclose(layers[block].attention.output.dense.weight, expected)
        neurons = plan.neurons[block]
        if len(neurons) == 0:
            assert isinstance(layers[block].output, DroppedFFN)
            continue
        assert len(neurons) % 4 == 0 and layers[block].intermediate.dense.out_features == len(neurons)
        assert torch.equal(layers[block].intermediate.dense.weight, originals[block].intermediate.dense.weight[neurons])
        factors = report.scales.neurons[block][neurons].float()
        assert torch.allclose(layers[block].output.dense.weight, originals[block].output.dense.weight[:, neurons] * factors)
    with torch.no_grad():
        assert torch.allclose(trimmed(**_inputs(tiny_batch)).logits, _simulate(reference, report, tiny_batch).logits, atol=1e-6)
    assert report.predicted_ms <= BUDGET_MS
    assert report.predicted_ms == pytest.approx(COST.ms(*model_units(trimmed).totals))
    assert report.fisher.rows == 6 and report.fisher.seconds > 0 and report.scales.seconds > 0
    assert report.search_seconds >= 0 and report.rearranged
    assert [(fix.block, fix.part) for fix in report.fixes] == [
        (b, part) for b in range(4) for part in (("attn",) if b in plan.drop_ffn else ("attn", "ffn"))
    ]
    summary = json.loads(json.dumps(report.summary()))
    assert summary["spec"] == report.spec.to_dict() and summary["rows"] == 6 and len(summary["fixes"]) == len(report.fixes)


def _additive(spec):
    """An additive latency model of the 4-block tiny encoder (4 heads, 64 neurons per block)."""
    heads = sum(spec.head_counts.get(block, 4) for block in range(4))
    ffns = [block for block in range(4) if block not in spec.drop_ffn]
    neurons = sum(spec.ffn_widths.get(block, 64) for block in ffns)
    layernorms = len(encoder_layernorms(4, spec.drop_ffn)) - len(spec.layernorm)
    return 1.0 + 0.02 * heads + 0.003 * neurons + 0.04 * len(ffns) + 0.01 * layernorms


def test_a_bare_encoder_compressed_to_a_latency_models_budget(tiny_batch):
    torch.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    reference = copy.deepcopy(model)
    budget = 0.6 * _additive(TrimSpec())
    trimmed, report = compress_model(model, [tiny_batch], _additive, budget, has_head=False)
    assert report.fisher.objective == "hidden-gaussian"
    assert report.predicted_ms == pytest.approx(_additive(report.spec)) and report.predicted_ms <= budget
    with torch.no_grad():
        expected = _simulate(reference, report, tiny_batch).last_hidden_state
        assert torch.allclose(trimmed(**tiny_batch).last_hidden_state, expected, atol=1e-5)


def test_without_the_fix_the_scales_are_the_masks(tiny_model, tiny_batch):
    batches = [_labelled(tiny_batch, [0, 2, 1])]
    reference = copy.deepcopy(tiny_model)
    trimmed, report = compress_model(
        tiny_model, batches, COST, BUDGET_MS, has_head=True, fix=False, rearrange_masks=False
    )
    assert report.fixes == [] and not report.rearranged
    assert all(torch.equal(report.scales.heads[b], mask) for b, mask in report.plan.head_masks().items())
    with torch.no_grad():
        assert torch.allclose(trimmed(**_inputs(tiny_batch)).logits, _simulate(reference, report, tiny_batch).logits, atol=1e-6)


def test_bad_budgets_are_refused(tiny_model, tiny_batch):
    batches = [_labelled(tiny_batch, [0, 2, 1])]
    for budget in (0, -1.0, "3", True):
        with pytest.raises(TrimbertError, match="positive number of ms"):
            compress_model(tiny_model, batches, COST, budget, has_head=True)
    with pytest.raises(TrimbertError, match="no plan fits"):
        compress_model(tiny_model, batches, COST, 1.01, has_head=True)
