"""The least-squares fix: exact scales where the answer is known, the normal equations match a direct solve."""

import copy

import pytest
import torch

from trimbert.compress.lstsq import fit_scales, fold_scales
from trimbert.compress.masks import MaskPlan
from trimbert.model.gates import gated

EVERY_HEAD = list(range(4))
EVERY_NEURON = list(range(64))


def _plan(heads=None, neurons=None):
    heads = {b: (heads or {}).get(b, EVERY_HEAD) for b in range(4)}
    neurons = {b: (neurons or {}).get(b, EVERY_NEURON) for b in range(4)}
    return MaskPlan(
        heads={b: torch.tensor(kept, dtype=torch.long) for b, kept in heads.items()},
        neurons={b: torch.tensor(kept, dtype=torch.long) for b, kept in neurons.items()},
        head_total=dict.fromkeys(range(4), 4),
        width_total=dict.fromkeys(range(4), 64),
        predicted_ms=0.0,
        budget_ms=0.0,
        kept_importance=0.0,
        removed_importance=0.0,
    )


def _fix(scales, block, part):
    return next(fix for fix in scales.fixes if fix.block == block and fix.part == part)


def _duplicate_neuron(model, block, source, copy_to):
    layer = model.bert.encoder.layer[block]
    with torch.no_grad():
        layer.intermediate.dense.weight[copy_to] = layer.intermediate.dense.weight[source]
        layer.intermediate.dense.bias[copy_to] = layer.intermediate.dense.bias[source]
        layer.output.dense.weight[:, copy_to] = layer.output.dense.weight[:, source]


def test_a_removed_copy_of_a_neuron_doubles_the_neuron(tiny_model, tiny_batch):
    tiny_model.double()
    _duplicate_neuron(tiny_model, 0, source=5, copy_to=7)
    before = copy.deepcopy(tiny_model.state_dict())
    kept = [j for j in EVERY_NEURON if j != 7]
    scales = fit_scales(tiny_model, _plan(neurons={0: kept}), [tiny_batch], damp=0.0)
    expected = torch.ones(64, dtype=torch.float64)
    expected[5], expected[7] = 2.0, 0.0
    assert torch.allclose(scales.neurons[0], expected, atol=1e-7)
    fix = _fix(scales, 0, "ffn")
    assert fix.applied and fix.units == 63 and fix.before > 0 and fix.after < 1e-9 * fix.before
    # the rest of the model then gets exactly the original inputs: nothing to change
    for block in (1, 2, 3):
        assert torch.allclose(scales.neurons[block], torch.ones(64, dtype=torch.float64), atol=1e-6)
        assert torch.allclose(scales.heads[block], torch.ones(4, dtype=torch.float64), atol=1e-6)
    assert [(fix.block, fix.part) for fix in scales.fixes] == [(b, part) for b in range(4) for part in ("attn", "ffn")]
    assert all(before[key].equal(value) for key, value in tiny_model.state_dict().items())
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in tiny_model.modules())


def test_a_removed_copy_of_a_head_doubles_the_head(tiny_model, tiny_batch):
    tiny_model.double()
    layer = tiny_model.bert.encoder.layer[1]
    with torch.no_grad():
        for projection in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
            projection.weight[8:16] = projection.weight[0:8]
            projection.bias[8:16] = projection.bias[0:8]
        layer.attention.output.dense.weight[:, 8:16] = layer.attention.output.dense.weight[:, 0:8]
    scales = fit_scales(tiny_model, _plan(heads={1: [0, 2, 3]}), [tiny_batch], damp=0.0)
    assert torch.allclose(scales.heads[1], torch.tensor([2.0, 0.0, 1.0, 1.0], dtype=torch.float64), atol=1e-7)
    fix = _fix(scales, 1, "attn")
    assert fix.applied and fix.units == 3 and fix.before > 0 and fix.after < 1e-9 * fix.before


def test_the_scales_are_the_least_squares_solution_over_real_tokens(tiny_model, tiny_batch):
    tiny_model.double()
    kept = list(range(0, 64, 2)) + [1, 3]
    scales = fit_scales(tiny_model, _plan(neurons={0: kept}), [tiny_batch], damp=0.0)
    layer = tiny_model.bert.encoder.layer[0]
    found = []
    handle = layer.output.register_forward_pre_hook(lambda module, inputs: found.append(inputs[0]))
    with torch.no_grad():
        tiny_model(**tiny_batch)
    handle.remove()
    tokens = tiny_batch["attention_mask"].bool()
    act = found[0][tokens]  # [real tokens, 64]
    weight = layer.output.dense.weight.detach()  # [H, 64]
    index = torch.tensor(sorted(kept))
    design = (act[:, index, None] * weight.T[index][None]).permute(0, 2, 1).reshape(-1, len(kept))
    target = (act @ weight.T).reshape(-1)  # the original FFN's output minus its bias
    solution = torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
    assert torch.allclose(scales.neurons[0][index], solution, atol=1e-8)
    assert scales.neurons[0][[j for j in EVERY_NEURON if j not in kept]].abs().sum() == 0
    residual = design @ solution - target
    fix = _fix(scales, 0, "ffn")
    assert fix.after == pytest.approx(float(residual.square().mean()), rel=1e-6)
    assert fix.before == pytest.approx(float((design.sum(1) - target).square().mean()), rel=1e-6)


def test_every_applied_fix_lowers_the_error_and_a_blow_up_is_skipped(tiny_model, tiny_batch):
    plan = _plan(heads={0: [1, 2], 2: [0]}, neurons={b: list(range(b, 64, 3)) for b in range(4)})
    scales = fit_scales(tiny_model, plan, [tiny_batch])
    assert len(scales.fixes) == 8 and scales.seconds > 0
    assert all(fix.after <= fix.before for fix in scales.fixes)
    assert all(fix.after == fix.before and fix.reason for fix in scales.fixes if not fix.applied)
    tiny_model.double()
    _duplicate_neuron(tiny_model, 0, source=5, copy_to=7)
    kept = [j for j in EVERY_NEURON if j != 7]
    guarded = fit_scales(tiny_model, _plan(neurons={0: kept}), [tiny_batch], damp=0.0, max_scale=1.5)
    fix = _fix(guarded, 0, "ffn")
    assert not fix.applied and fix.reason.startswith("a scale of 2 is outside ±1.5") and fix.after == fix.before
    assert torch.equal(guarded.neurons[0], _plan(neurons={0: kept}).neuron_masks()[0])


def test_folded_scales_compute_what_the_gates_do(tiny_model, tiny_batch):
    plan = _plan(heads={0: [1, 2], 3: [3]}, neurons={1: list(range(20)), 2: list(range(10, 64))})
    scales = fit_scales(tiny_model, plan, [tiny_batch])
    with torch.no_grad(), gated(tiny_model) as gates:
        for block in range(4):
            gates.heads[block].copy_(scales.heads[block])
            gates.neurons[block].copy_(scales.neurons[block])
        expected = tiny_model(**tiny_batch).logits
    folded = copy.deepcopy(tiny_model)
    fold_scales(folded, scales)
    with torch.no_grad():
        assert torch.allclose(folded(**tiny_batch).logits, expected, atol=1e-6)
