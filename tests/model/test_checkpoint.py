"""Loading is strict and saving is safe: no silently random weights, no pickle, saved files get the umask's
permissions (the output-path checks are tested in tests/core/test_outputs.py)."""

import json
import os
import stat

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification

import trimbert
from trimbert.errors import TrimbertError
from trimbert.model.checkpoint import load, load_tokenizer, save
from trimbert.model.heads import has_task_head, weight_names


@pytest.fixture
def saved(tmp_path, minilm_dir):
    """A 4-block random BERT classifier saved with the bundled tokenizer."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(vocab_size=30522, max_position_embeddings=128, num_labels=2))
    return save(model, tmp_path / "clf", tokenizer=trimbert.load_tokenizer(minilm_dir))


def test_a_checkpoint_missing_whole_blocks_is_refused(saved):
    weights = load_file(saved / "model.safetensors")
    kept = {key: value for key, value in weights.items() if ".layer.3." not in key and ".layer.2." not in key}
    save_file(kept, saved / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(TrimbertError, match=r"lacks 32 weight\(s\) the model needs \(bert\.encoder\.layer\.2\."):
        load(saved)


def test_a_config_deeper_than_its_weights_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 8}))
    with pytest.raises(TrimbertError, match=r"lacks 64 weight\(s\) .*refusing to fill them with random values"):
        load(saved)


def test_a_config_shallower_than_its_weights_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 2}))
    with pytest.raises(TrimbertError, match=r"has 32 weight\(s\) its config does not use"):
        load(saved)


def test_a_missing_task_head_is_the_expected_exception(tiny_checkpoint):
    model = load(tiny_checkpoint, head="sequence-classification", config_overrides={"num_labels": 2})
    assert type(model).__name__ == "BertForSequenceClassification"  # classifier newly initialized
    assert model.classifier.out_features == 2
    saved = load_file(tiny_checkpoint / "model.safetensors")
    loaded = model.bert.state_dict()
    assert set(saved) == set(loaded)  # only the head is new; the encoder is the checkpoint's own
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name


def test_pickle_only_weights_are_refused_with_how_to_convert(saved):
    state = load_file(saved / "model.safetensors")
    (saved / "model.safetensors").unlink()
    torch.save(state, saved / "pytorch_model.bin")
    for action in (lambda: load(saved), lambda: weight_names(saved)):
        with pytest.raises(TrimbertError, match=r"holds only pickle weights .*save_pretrained"):
            action()


def test_a_truncated_safetensors_file_is_one_line_everywhere(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(TrimbertError, match=r"could not load the weights of"):
        load(saved)
    (saved / "model.safetensors").write_bytes(b"\x10")
    with pytest.raises(TrimbertError, match=r"unreadable weights"):
        has_task_head(saved, 2, False)


def test_an_unreadable_tokenizer_is_an_error_and_a_missing_one_is_none(saved, tmp_path):
    (saved / "tokenizer.json").write_text("{not json")
    with pytest.raises(TrimbertError, match=r"unreadable tokenizer"):
        load_tokenizer(saved)
    bare = tmp_path / "bare"
    save(BertForSequenceClassification(tiny_config()), bare)
    assert load_tokenizer(bare) is None


def test_outputs_get_the_permissions_the_umask_gives(tmp_path, tiny_model):
    old = os.umask(0o022)
    try:
        out = save(tiny_model, tmp_path / "saved")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()} == {0o644}
