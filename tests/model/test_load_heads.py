"""A fine-tuned checkpoint must bring its task head: a missing one is refused, never a random head."""

import pytest
import torch
from conftest import tiny_config, write_sst2
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification, BertModel

import trimbert
from trimbert.errors import TrimbertError
from trimbert.model import checkpoint


def _classifier(path, tokenizer=None):
    """A tiny 2-label classifier saved as a fine-tuned run would be (architectures: ...ForSequenceClassification)."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        tiny_config(vocab_size=30522, num_hidden_layers=2, max_position_embeddings=128, num_labels=2)
    )
    trimbert.save(model, path, tokenizer=tokenizer)
    return path


def _drop_weights(folder, prefix):
    weights = load_file(str(folder / "model.safetensors"))
    kept = {key: value for key, value in weights.items() if not key.startswith(prefix)}
    assert len(kept) < len(weights)
    save_file(kept, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _headless(tmp_path, minilm_dir):
    run = _classifier(tmp_path / "run", trimbert.load_tokenizer(minilm_dir))
    _drop_weights(run, "classifier.")
    return run


def _refusal(run) -> str:
    return (
        f"{run}: the checkpoint lacks its task head (classifier.bias, classifier.weight) though config.json says "
        "BertForSequenceClassification; refusing to use a random head"
    )


def test_a_fine_tuned_checkpoint_without_its_head_is_refused(tmp_path, minilm_dir):
    run = _headless(tmp_path, minilm_dir)
    with pytest.raises(TrimbertError) as raised:
        trimbert.load(run)
    assert str(raised.value) == _refusal(run)
    with pytest.raises(TrimbertError) as raised:  # naming the same head is loading it as itself
        checkpoint.load(run, head="sequence-classification")
    assert str(raised.value) == _refusal(run)
    # fine-tuning trains a head: a new one is fine there; the encoder alone needs no head
    model = checkpoint.load(run, head="sequence-classification", new_head_ok=True)
    assert isinstance(model, BertForSequenceClassification)
    assert isinstance(checkpoint.load(run, head="base"), BertModel)


def test_a_missing_pooler_under_a_classifier_is_refused_too(tmp_path):
    run = _classifier(tmp_path / "run")
    _drop_weights(run, "bert.pooler.")
    with pytest.raises(TrimbertError) as raised:
        trimbert.load(run)
    assert str(raised.value) == (
        f"{run}: the checkpoint lacks its task head (bert.pooler.dense.bias, bert.pooler.dense.weight) though "
        "config.json says BertForSequenceClassification; refusing to use a random head"
    )


def test_intact_and_base_checkpoints_load_as_before(tmp_path, tiny_checkpoint):
    intact = _classifier(tmp_path / "run")
    assert trimbert.load(intact).classifier.weight.shape == (2, 32)
    # a base checkpoint gets a new head for fine-tuning (its config names no task head)
    model = checkpoint.load(tiny_checkpoint, head="sequence-classification", config_overrides={"num_labels": 2})
    assert isinstance(model, BertForSequenceClassification)


def test_evaluate_and_export_refuse_a_headless_run_in_one_line(run_cli, tmp_path, minilm_dir):
    run = _headless(tmp_path, minilm_dir)
    data = write_sst2(tmp_path / "SST-2", train_rows=8, dev_rows=4)
    code, stdout, err = run_cli("evaluate", run, "--task", "sst2", "--data-dir", data, "--max-length", "16")
    assert code == 2 and err.strip().splitlines() == [f"error: {_refusal(run)}"] and stdout == ""
    code, _, err = run_cli("export", run, "--out", tmp_path / "onnx")
    assert code == 2 and err.strip().splitlines() == [f"error: {_refusal(run)}"]
    assert not (tmp_path / "onnx").exists()


def test_a_headless_run_is_refused_as_a_teacher(tmp_path, minilm_dir, tiny_checkpoint):
    from trimbert.data.source import DataSource
    from trimbert.train.finetune import finetune
    from trimbert.train.settings import FinetuneSettings

    run = _headless(tmp_path, minilm_dir)
    data = write_sst2(tmp_path / "SST-2", train_rows=8, dev_rows=4)
    with pytest.raises(TrimbertError) as raised:
        finetune(
            str(tiny_checkpoint),
            DataSource(task="sst2", data_dir=str(data)),
            tmp_path / "student",
            settings=FinetuneSettings(epochs=1, batch_size=4, max_length=16),
            teacher=str(run),
            progress=False,
        )
    assert str(raised.value) == _refusal(run)
    assert not (tmp_path / "student").exists()
