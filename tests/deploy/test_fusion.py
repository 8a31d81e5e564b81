"""ONNX Runtime's fusions fire on every softmax structural trim, and the fused graph handles padding."""

import json

import numpy as np
import pytest
import torch

import trimbert
from trimbert.deploy.export import export_onnx
from trimbert.deploy.fusion import can_fuse, fusable_attention
from trimbert.deploy.runtime import load_onnx


def _copy(model):
    import copy

    return copy.deepcopy(model)


# (trim, fused operators expected of the 4-block tiny model)
CASES = [
    ({}, {"Attention": 4, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 8, "BiasGelu": 4}),
    ({"drop_ffn": "1,3"}, {"Attention": 4, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 6, "BiasGelu": 2}),
    ({"ffn_width": "0:16,2:48"}, {"Attention": 4, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 8, "BiasGelu": 4}),
    ({"drop_layers": "0,2"}, {"Attention": 2, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 4, "BiasGelu": 2}),
]


@pytest.mark.parametrize(("trim", "expected"), CASES, ids=["untrimmed", "drop-ffn", "ffn-width", "drop-layers"])
def test_fusions_fire_for_each_softmax_structural_trim(tiny_model, tmp_path, trim, expected):
    model = trimbert.trim(_copy(tiny_model), **trim) if trim else tiny_model
    result = export_onnx(model, tmp_path / "out", fuse=True)
    assert result.fused_ops == expected
    assert result.unfused_reason is None
    info = json.loads((tmp_path / "out" / "export.json").read_text())
    assert (info["graph"], info["fused_ops"]) == ("fused", expected)
    # padded rows: real tokens and whole rows match PyTorch
    ids = torch.randint(0, 100, (3, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 1:] = 0
    onnx_model = load_onnx(tmp_path / "out")
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits.numpy()
    assert np.abs(onnx_model(ids.numpy(), mask.numpy()) - reference).max() < 1e-5


@pytest.mark.parametrize(
    ("trim", "reason"),
    [({"attention": "relu"}, "attention relu is not softmax"), ({"layernorm": "half"}, "LayerNorms are stripped")],
)
def test_other_normalizers_and_stripped_layernorms_export_unfused(tiny_model, tmp_path, trim, reason):
    model = trimbert.trim(_copy(tiny_model), **trim)
    assert can_fuse(model) == reason
    result = export_onnx(model, tmp_path / "out", fuse=True)
    assert (result.fused_ops, result.unfused_reason) == ({}, reason)
    assert json.loads((tmp_path / "out" / "export.json").read_text())["graph"] == "plain"


def test_the_plain_graph_is_the_default(tiny_model, tmp_path):
    result = export_onnx(tiny_model, tmp_path / "out")
    assert (result.fused_ops, result.unfused_reason) == ({}, None)
    assert json.loads((tmp_path / "out" / "export.json").read_text())["graph"] == "plain"


def test_fusable_attention_is_the_same_math_and_is_undone(tiny_model):
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    model = tiny_model.to(torch.float32)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=additive).logits
        with fusable_attention(model) as switched:
            during = model(input_ids=ids, attention_mask=additive).logits
        after = model(input_ids=ids, attention_mask=additive).logits
    assert switched == 4
    assert torch.allclose(before, during, atol=1e-6)
    assert torch.equal(before, after)
    assert all("forward" not in vars(module) for module in model.modules())
