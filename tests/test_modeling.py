import json

import torch
import transformers

import trimbert
from trimbert.modeling import TrimBertConfig


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
