"""Evaluating an export through ONNX Runtime gives the PyTorch evaluation's metrics."""

import pytest
import torch
from conftest import tiny_config, write_sst2
from transformers import BertForSequenceClassification

import trimbert
from trimbert.data.source import DataSource
from trimbert.deploy.evaluate import evaluate_onnx
from trimbert.deploy.export import export_onnx
from trimbert.errors import TrimbertError
from trimbert.train.finetune import evaluate
from trimbert.train.settings import FinetuneSettings


@pytest.fixture
def classifier_dir(tmp_path, minilm_dir):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(vocab_size=30522, num_labels=2, max_position_embeddings=128))
    model = trimbert.trim(model.eval(), drop_ffn="1", attention="relu-len")
    return trimbert.save(model, tmp_path / "run", tokenizer=trimbert.load_tokenizer(minilm_dir))


def test_onnx_metrics_equal_pytorch_metrics(classifier_dir, tmp_path):
    source = DataSource(task="sst2", data_dir=str(write_sst2(tmp_path / "SST-2", dev_rows=40)))
    export_onnx(trimbert.load(classifier_dir), tmp_path / "onnx", tokenizer=trimbert.load_tokenizer(classifier_dir), int8=True)
    settings = FinetuneSettings(max_length=32, eval_batch_size=8)
    expected = evaluate(str(classifier_dir), source, settings=settings, progress=False)
    result = evaluate_onnx(tmp_path / "onnx", source, max_length=32, batch_size=8)
    assert result["metrics"] == expected["metrics"]
    assert result["eval_rows"] == {"validation": 40} and result["runtime"] == "onnxruntime"
    assert result["trim_summary"] == expected["trim_summary"] and result["main_metric"] == "accuracy"
    int8 = evaluate_onnx(tmp_path / "onnx", source, int8=True, max_length=32, max_eval_samples=10)
    assert int8["runtime"] == "onnxruntime-int8" and int8["eval_rows"] == {"validation": 10}
    assert int8["conditions"]["runtime"] == "onnxruntime-int8" and "onnxruntime" in int8["conditions"]


def test_mismatched_task_and_bare_encoders_are_refused(classifier_dir, tmp_path, tiny_checkpoint):
    rte = DataSource(task="rte", data_dir=str(tmp_path))
    export_onnx(trimbert.load(classifier_dir), tmp_path / "onnx", tokenizer=trimbert.load_tokenizer(classifier_dir))
    sst2 = DataSource(task="sst2", data_dir=str(write_sst2(tmp_path / "SST-2")))
    with pytest.raises(TrimbertError, match="sequence length 500 exceeds the model's max_position_embeddings 128"):
        evaluate_onnx(tmp_path / "onnx", sst2, max_length=500)
    export_onnx(trimbert.load(tiny_checkpoint), tmp_path / "bare", tokenizer=trimbert.load_tokenizer(tiny_checkpoint))
    with pytest.raises(TrimbertError, match="holds an encoder without a task head: export a fine-tuned run"):
        evaluate_onnx(tmp_path / "bare", sst2)
    (tmp_path / "RTE").mkdir()
    with pytest.raises(TrimbertError, match=r"--data-dir: .*RTE/train\.tsv does not exist \(task rte needs it\)"):
        evaluate_onnx(tmp_path / "onnx", rte)
