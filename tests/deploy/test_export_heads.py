"""Head-pruned models export: ONNX Runtime's fused graph has one Attention per block with that block's
head count, and the fused, plain and OpenVINO fp32 exports compute what PyTorch does, padded rows too."""

import copy
import json

import numpy as np
import onnx
import pytest
import torch

import trimbert
from trimbert.deploy.export import export_onnx
from trimbert.deploy.openvino import load_openvino
from trimbert.deploy.runtime import load_onnx

# (trim, each block's heads afterwards) of the 4-block, 4-head tiny model
TINY_HEADS = ("0:2,1:1,3=0+3", [2, 1, 4, 2])


def _inputs(vocab: int, rows: int = 3, tokens: int = 20):
    ids = torch.randint(0, vocab, (rows, tokens), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 1:] = 0  # a row of one real token
    return ids, mask


def _reference(model, ids, mask) -> np.ndarray:
    with torch.no_grad():
        output = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    return (output.logits if hasattr(output, "logits") else output.last_hidden_state).numpy()


def _attention_heads(path) -> list[int]:
    """The num_heads attribute of each fused Attention node, in graph order."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return [
        next(attribute.i for attribute in node.attribute if attribute.name == "num_heads")
        for node in graph.node
        if node.op_type == "Attention"
    ]


def _heads_of(model) -> list[int]:
    return [int(layer.attention.self.num_attention_heads) for layer in model.base_model.encoder.layer]


def test_the_fused_graph_has_an_attention_per_block_with_its_head_count(tiny_model, tmp_path):
    request, heads = TINY_HEADS
    model = trimbert.trim(copy.deepcopy(tiny_model), heads=request)
    assert _heads_of(model) == heads
    result = export_onnx(model, tmp_path / "out", fuse=True)
    assert result.unfused_reason is None
    assert result.fused_ops == {"Attention": 4, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 8, "BiasGelu": 4}
    info = json.loads((tmp_path / "out" / "export.json").read_text())
    assert (info["graph"], info["fused_ops"]) == ("fused", result.fused_ops)
    assert _attention_heads(tmp_path / "out" / "model.onnx") == heads
    ids, mask = _inputs(100)
    ort = load_onnx(tmp_path / "out")
    assert np.abs(ort(ids.numpy(), mask.numpy()) - _reference(model, ids, mask)).max() < 1e-4


def test_the_plain_graph_of_a_head_pruned_model_round_trips(tiny_model, tmp_path):
    model = trimbert.trim(copy.deepcopy(tiny_model), heads=TINY_HEADS[0], drop_ffn="1")
    result = export_onnx(model, tmp_path / "out")
    assert (result.fused_ops, result.unfused_reason) == ({}, None)
    assert json.loads((tmp_path / "out" / "export.json").read_text())["graph"] == "plain"
    assert _attention_heads(tmp_path / "out" / "model.onnx") == []
    ids, mask = _inputs(100)
    ort = load_onnx(tmp_path / "out")
    assert np.abs(ort(ids.numpy(), mask.numpy()) - _reference(model, ids, mask)).max() < 1e-4


def test_a_head_pruned_minilm_fuses_with_its_per_block_head_counts(minilm, tmp_path):
    model = trimbert.trim(minilm, heads="0:6,2:9,5:1", drop_layers="4")
    heads = [6, 12, 9, 12, 1]
    assert _heads_of(model) == heads
    result = export_onnx(model, tmp_path / "out", fuse=True)
    assert result.fused_ops["Attention"] == 5  # one per block present
    assert _attention_heads(tmp_path / "out" / "model.onnx") == heads
    ids, mask = _inputs(1000, tokens=24)
    ort = load_onnx(tmp_path / "out")
    assert np.abs(ort(ids.numpy(), mask.numpy()) - _reference(model, ids, mask)).max() < 1e-4


def test_openvino_fp32_of_a_head_pruned_model_matches_pytorch(tiny_model, tmp_path):
    pytest.importorskip("openvino")
    model = trimbert.trim(copy.deepcopy(tiny_model), heads=TINY_HEADS[0])
    result = export_onnx(model, tmp_path / "out", openvino=True)
    assert result.openvino_check.fp32_max_rel_diff <= 1e-4
    ids, mask = _inputs(100, tokens=16)
    fp32 = load_openvino(tmp_path / "out", threads=1)
    assert np.abs(fp32(ids.numpy(), mask.numpy()) - _reference(model, ids, mask)).max() < 1e-4
