import json

import torch
import transformers

import trimbert
from trimbert.model.modeling import TrimBertConfig


def test_save_and_auto_load_round_trip(minilm_dir, tmp_path, tiny_batch):
    model = trimbert.load(minilm_dir, head="sequence-classification", config_overrides={"num_labels": 2})
    trimmed = trimbert.trim(model, drop_ffn="alternate", attention="relu", layernorm="half")
    out = trimbert.save(trimmed, tmp_path / "trimmed", tokenizer=trimbert.load_tokenizer(minilm_dir))
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "trimbert"
    assert saved["trim_spec"] == trimmed.config.spec.to_dict()
    assert saved["architectures"] == ["TrimBertForSequenceClassification"]
    assert (out / "model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file()

    with torch.no_grad():
        expected = trimmed(**tiny_batch).logits
    auto = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(auto).__name__ == "TrimBertForSequenceClassification"
    assert auto.config.spec == trimmed.config.spec
    assert auto.config._attn_implementation == "trimbert_relu"
    via_load = trimbert.load(out)
    assert via_load.config.spec == trimmed.config.spec
    with torch.no_grad():
        assert torch.equal(auto(**tiny_batch).logits, expected)
        assert torch.equal(via_load(**tiny_batch).logits, expected)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer("a test")["input_ids"] == trimbert.load_tokenizer(minilm_dir)("a test")["input_ids"]


def test_trimmed_weights_are_smaller_on_disk(minilm, tmp_path):
    full = trimbert.save(trimbert.trim(minilm), tmp_path / "full")
    trimmed = trimbert.save(trimbert.trim(minilm, drop_ffn="0,1"), tmp_path / "trimmed")
    full_bytes = (full / "model.safetensors").stat().st_size
    trimmed_bytes = (trimmed / "model.safetensors").stat().st_size
    assert full_bytes - trimmed_bytes >= 2 * 1_182_336 * 4


def test_load_untrimmed_checkpoint_is_plain_bert(minilm_dir):
    model = trimbert.load(minilm_dir)
    assert type(model) is transformers.BertModel


def test_requested_attention_cannot_override_normalizer(tiny_model, tmp_path, tiny_batch):
    trimmed = trimbert.trim(tiny_model, attention="softermax")
    out = trimbert.save(trimmed, tmp_path / "m")
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(out, attn_implementation="sdpa")
    assert loaded.config._attn_implementation == "trimbert_softermax"


def test_config_class_registered():
    assert transformers.AutoConfig.for_model("trimbert").__class__ is TrimBertConfig


def test_softmax_trim_keeps_fast_attention(tiny_model):
    trimmed = trimbert.trim(tiny_model, drop_ffn="0")
    assert trimmed.config._attn_implementation == tiny_model.config._attn_implementation == "sdpa"


def _sentences_batch(minilm_dir, sentences):
    tokenizer = trimbert.load_tokenizer(minilm_dir)
    return dict(tokenizer(sentences, padding=True, return_tensors="pt"))


def test_drop_layers_ffn_width_affine_round_trip(minilm_dir, tmp_path, tiny_batch):
    model = trimbert.load(minilm_dir, head="sequence-classification", config_overrides={"num_labels": 2})
    calibration = _sentences_batch(minilm_dir, ["a short calibration sentence", "another one, a bit longer"])
    trimmed = trimbert.trim(
        model,
        drop_layers="1,4",
        ffn_width=768,
        drop_ffn="3",
        layernorm="half",
        layernorm_replacement="affine",
        calibration_batches=[calibration],
        attention="relu",
    )
    assert trimmed.config.num_hidden_layers == 4
    out = trimbert.save(trimmed, tmp_path / "trimmed", tokenizer=trimbert.load_tokenizer(minilm_dir))
    saved = json.loads((out / "config.json").read_text())
    assert saved["num_hidden_layers"] == 4
    assert saved["trim_spec"]["drop_layers"] == [1, 4]
    assert saved["trim_spec"]["ffn_width"] == {"0": 768, "2": 768, "5": 768}
    assert saved["trim_spec"]["layernorm_replacement"] == "affine"
    assert saved["trim_spec"] == trimmed.config.spec.to_dict()

    with torch.no_grad():
        expected = trimmed(**tiny_batch).logits
    auto = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    via_load = trimbert.load(out)
    for loaded in (auto, via_load):
        assert type(loaded).__name__ == "TrimBertForSequenceClassification"
        assert loaded.config.spec == trimmed.config.spec
        assert loaded.config.spec.notes == trimmed.config.spec.notes
        assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in trimmed.parameters())
        with torch.no_grad():
            assert torch.equal(loaded(**tiny_batch).logits, expected)
    # The base model alone loads the same encoder.
    base = transformers.AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.equal(
            base(**tiny_batch).last_hidden_state, trimmed.base_model(**tiny_batch).last_hidden_state
        )


def test_dyt_round_trip_keeps_trained_alpha(tiny_model, tmp_path, tiny_batch):
    trimmed = trimbert.trim(tiny_model, drop_ffn="1", layernorm="half", layernorm_replacement="dyt").eval()
    with torch.no_grad():  # as if healed: alpha, weight and bias moved away from their start
        for name, parameter in trimmed.named_parameters():
            if "LayerNorm" in name and ".attention." in name:
                parameter.add_(torch.rand_like(parameter))
        expected = trimmed(**tiny_batch).logits
    out = trimbert.save(trimmed, tmp_path / "m")
    loaded = trimbert.load(out).eval()
    assert loaded.config.spec == trimmed.config.spec and loaded.config.spec.layernorm_replacement == "dyt"
    with torch.no_grad():
        assert torch.equal(loaded(**tiny_batch).logits, expected)


def test_tiny_drop_layers_ffn_width_round_trip(tiny_model, tmp_path, tiny_batch):
    trimmed = trimbert.trim(tiny_model, drop_layers="0", ffn_width="1:10,3:5")
    out = trimbert.save(trimmed, tmp_path / "m")
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert loaded.config.spec == trimmed.config.spec
    assert loaded.base_model.encoder.layer[0].intermediate.dense.weight.shape == (10, 32)
    assert loaded.base_model.encoder.layer[2].output.dense.weight.shape == (32, 5)
    with torch.no_grad():
        assert torch.equal(loaded(**tiny_batch).logits, trimmed(**tiny_batch).logits)
    # And trimming the loaded model again composes in the original numbering.
    again = trimbert.trim(loaded, drop_layers="3")
    assert again.config.spec.drop_layers == (0, 3)
    assert again.config.spec.ffn_widths == {1: 10}
    assert again.config.num_hidden_layers == 2


def test_trimbert_config_built_directly_has_the_trimmed_structure():
    from trimbert.model.modeling import TrimBertModel
    from trimbert.model.structure import AffineNorm

    config = TrimBertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        trim_spec={
            "drop_layers": [0],
            "ffn_width": {"2": 7},
            "layernorm": ["1.attn"],
            "layernorm_replacement": "affine",
        },
    )
    model = TrimBertModel(config)
    layers = model.encoder.layer
    assert len(layers) == 2
    assert layers[1].intermediate.dense.weight.shape == (7, 16)
    affine = layers[0].attention.output.LayerNorm
    assert isinstance(affine, AffineNorm)
    assert torch.equal(affine.weight, torch.ones(16)) and torch.equal(affine.bias, torch.zeros(16))
