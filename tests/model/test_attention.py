import pytest
import torch
from transformers import AttentionInterface

import trimbert  # noqa: F401  (registers the normalizers)
from trimbert.errors import TrimbertError
from trimbert.model.attention import ATTENTION_FUNCTIONS, NORMALIZERS, implementation_name
from trimbert.spec import NORMALIZER_NAMES, available_normalizers


class _Module(torch.nn.Module):
    pass


def _inputs(dtype, requires_grad=False):
    torch.manual_seed(0)
    batch, heads, length, dim = 3, 2, 6, 8
    query = torch.randn(batch, heads, length, dim, dtype=dtype, requires_grad=requires_grad)
    key = torch.randn(batch, heads, length, dim, dtype=dtype, requires_grad=requires_grad)
    value = torch.randn(batch, heads, length, dim, dtype=dtype, requires_grad=requires_grad)
    keep = torch.ones(batch, length, dtype=torch.bool)
    keep[1, 4:] = False  # two padding keys
    keep[2, :] = False  # a fully padded sequence
    mask = keep[:, None, None, :].expand(batch, 1, length, length)
    return query, key, value, mask


@pytest.mark.parametrize("name", list(NORMALIZERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_normalizer_contract(name, dtype):
    query, key, value, mask = _inputs(dtype)
    output, weights = ATTENTION_FUNCTIONS[name](_Module().eval(), query, key, value, mask, scaling=0.5)
    assert output.shape == (3, 6, 2, 8)
    assert output.dtype == dtype
    assert not torch.isnan(output).any() and not torch.isnan(weights).any()
    # Padding keys get exactly zero weight; a fully padded row is all zeros.
    assert torch.equal(weights[1, :, :, 4:], torch.zeros_like(weights[1, :, :, 4:]))
    assert torch.equal(weights[2], torch.zeros_like(weights[2]))
    assert (weights >= 0).all()
    if NORMALIZERS[name].rows_sum_to_one:
        sums = weights[:2].float().sum(-1)
        scores = (query[:2].float() @ key[:2].float().transpose(2, 3)) * 0.5
        has_weight = (
            (scores.masked_fill(~mask[:2], -1.0) > 0).any(-1)
            if name != "softermax"
            else torch.ones_like(sums, dtype=torch.bool)
        )
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        assert torch.allclose(sums[has_weight], torch.ones_like(sums[has_weight]), atol=tolerance)


@pytest.mark.parametrize("name", list(NORMALIZERS))
def test_normalizer_gradients_flow(name):
    query, key, value, mask = _inputs(torch.float32, requires_grad=True)
    output, _ = ATTENTION_FUNCTIONS[name](_Module().train(), query, key, value, mask, scaling=0.5)
    output.sum().backward()
    for tensor in (query, key, value):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


def test_formulas_by_hand():
    scores = torch.tensor([[[[1.0, -2.0, 3.0, 0.5]]]])
    keep = torch.tensor([[[[True, True, True, False]]]])
    identity = torch.eye(4)[None, None]
    # With value = identity and query @ key^T = scores, the weights are the output rows.
    query = scores
    key = identity
    relu = ATTENTION_FUNCTIONS["relu"](_Module(), query, key, identity, keep, scaling=1.0)[1]
    assert torch.allclose(relu, torch.tensor([[[[0.25, 0.0, 0.75, 0.0]]]]))
    relu_len = ATTENTION_FUNCTIONS["relu-len"](_Module(), query, key, identity, keep, scaling=1.0)[1]
    assert torch.allclose(relu_len, torch.tensor([[[[1 / 3, 0.0, 1.0, 0.0]]]]))
    sigmoid = ATTENTION_FUNCTIONS["sigmoid"](_Module(), query, key, identity, keep, scaling=1.0)[1]
    expected = torch.sigmoid(torch.tensor([1.0, -2.0, 3.0]) - torch.log(torch.tensor(3.0)))
    assert torch.allclose(sigmoid[0, 0, 0, :3], expected) and sigmoid[0, 0, 0, 3] == 0
    softermax = ATTENTION_FUNCTIONS["softermax"](_Module(), query, key, identity, keep, scaling=1.0)[1]
    powers = torch.tensor([2.0**1, 2.0**-2, 2.0**3])
    assert torch.allclose(softermax[0, 0, 0, :3], powers / powers.sum()) and softermax[0, 0, 0, 3] == 0
    squared = ATTENTION_FUNCTIONS["squared-relu"](_Module(), query, key, identity, keep, scaling=1.0)[1]
    assert torch.allclose(squared, torch.tensor([[[[0.1, 0.0, 0.9, 0.0]]]]))  # relu(s)² = 1, 0, 9 (of 10)


def test_registered_with_transformers():
    for name, normalizer in NORMALIZERS.items():
        assert normalizer.implementation in AttentionInterface._global_mapping
        assert implementation_name(name) == normalizer.implementation
    assert implementation_name("softmax") is None
    assert available_normalizers() == ["softmax", *NORMALIZER_NAMES]
    assert tuple(NORMALIZERS) == NORMALIZER_NAMES == ("relu", "relu-len", "sigmoid", "softermax", "squared-relu")
    with pytest.raises(TrimbertError, match="unknown normalizer"):
        implementation_name("tanh")


@pytest.mark.parametrize("name", list(NORMALIZERS))
def test_model_padding_invariance(name, tiny_model, tiny_batch):
    """A padded sequence gives the same logits as the same sequence without padding."""
    model = trimbert.trim(tiny_model, attention=name)
    with torch.no_grad():
        padded = model(**tiny_batch).logits[1]
        alone = model(input_ids=tiny_batch["input_ids"][1:2, :7]).logits[0]
    assert torch.allclose(padded, alone, atol=1e-5)


@pytest.mark.parametrize("name", list(NORMALIZERS))
def test_inference_path_equals_training_path(name):
    """At inference the normalizers work in place; the result must not change."""
    query, key, value, mask = _inputs(torch.float32)
    module = _Module().eval()
    output, weights = ATTENTION_FUNCTIONS[name](module, query, key, value, mask, scaling=0.5)
    with torch.inference_mode():
        fast_output, fast_weights = ATTENTION_FUNCTIONS[name](module, query, key, value, mask, scaling=0.5)
    assert torch.allclose(output, fast_output, atol=1e-6)
    assert torch.allclose(weights, fast_weights, atol=1e-6)
