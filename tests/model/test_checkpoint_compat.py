"""A checkpoint written by trimbert 0.1.0 (the flat package, before the layered layout) still loads,
with the same structure and the same outputs (tests/fixtures/checkpoint-v0.1.0: every trim kind)."""

import json
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

import trimbert
from trimbert.model.structure import AffineNorm, DroppedFFN

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint-v0.1.0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def _logits(model) -> torch.Tensor:
    inputs = {
        "input_ids": torch.tensor(EXPECTED["input_ids"]),
        "attention_mask": torch.tensor(EXPECTED["attention_mask"]),
    }
    with torch.no_grad():
        return model.eval()(**inputs).logits


def test_the_0_1_0_checkpoint_loads_with_its_spec_and_structure():
    model = trimbert.load(FIXTURE)
    spec = model.config.spec
    assert type(model).__name__ == "TrimBertForSequenceClassification"
    assert spec.drop_layers == (5,) and spec.drop_ffn == (1, 3)
    assert spec.ffn_widths == {0: 48, 2: 40}
    assert spec.attention == "relu-len" and spec.layernorm_replacement == "affine"
    assert spec.layernorm == ("0.attn", "1.attn", "2.attn", "4.attn")
    layers = model.bert.encoder.layer
    assert len(layers) == 5  # block 5 was dropped
    assert [isinstance(layer.output, DroppedFFN) for layer in layers] == [False, True, False, True, False]
    assert layers[0].intermediate.dense.out_features == 48 and layers[2].intermediate.dense.out_features == 40
    assert isinstance(layers[4].attention.output.LayerNorm, AffineNorm)  # block 4 sits at position 4
    assert model.config._attn_implementation == "trimbert_relu_len"


def test_the_0_1_0_checkpoint_gives_the_outputs_it_gave_when_saved():
    expected = torch.tensor(EXPECTED["logits"])
    for model in (trimbert.load(FIXTURE), AutoModelForSequenceClassification.from_pretrained(FIXTURE)):
        torch.testing.assert_close(_logits(model), expected, rtol=0, atol=1e-6)
