"""``trimbert export``, ``evaluate`` of an export folder, and ``bench --runtime`` from the command line."""

import json
import sys

import torch
from conftest import tiny_config, write_sst2
from transformers import BertForSequenceClassification

import trimbert


def _one_line_error(code, err, message):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0] == f"error: {message}"


def _classifier(tmp_path, minilm_dir):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(vocab_size=30522, num_labels=2, max_position_embeddings=128))
    return trimbert.save(trimbert.trim(model.eval(), drop_ffn="0"), tmp_path / "run", tokenizer=trimbert.load_tokenizer(minilm_dir))


def test_export_then_evaluate_fp32_and_int8(run_cli, tmp_path, minilm_dir):
    run = _classifier(tmp_path, minilm_dir)
    data = write_sst2(tmp_path / "SST-2")
    out = tmp_path / "onnx"
    code, stdout, err = run_cli("export", run, "--out", out, "--int8", "--task", "sst2", "--data-dir", data, "--samples", "20")
    assert code == 0, err
    assert "rows (dev texts)" in stdout and "int8 prediction agreement" in stdout
    info = json.loads((out / "export.json").read_text())
    assert info["data"]["task"] == "sst2" and info["check"]["rows"] == 20  # 20 of the 24 dev rows
    # the export remembers its data: evaluate needs no --task
    code, stdout, err = run_cli("evaluate", out, "--json", "--max-length", "32")
    assert code == 0, err
    fp32 = json.loads(stdout)
    assert fp32["runtime"] == "onnxruntime" and fp32["eval_rows"] == {"validation": 24}
    code, stdout, err = run_cli("evaluate", out, "--int8", "--json", "--max-length", "32")
    assert code == 0, err
    assert json.loads(stdout)["runtime"] == "onnxruntime-int8"
    code, _, err = run_cli("evaluate", run, "--int8", "--task", "sst2", "--data-dir", data)
    _one_line_error(code, err, f"--int8 is for export folders (trimbert export); {run} is not one")
    code, _, err = run_cli("export", run, "--out", out)
    assert code == 2 and "exists" in err and "--force" in err


def test_export_without_data_checks_on_random_ids_and_evaluate_needs_a_task(run_cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "onnx"
    code, stdout, err = run_cli("export", tiny_checkpoint, "--out", out, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["output"] == "last_hidden_state" and result["check"]["rows"] == 32  # 4 random batches of 8
    assert json.loads((out / "export.json").read_text())["data"] is None
    code, _, err = run_cli("evaluate", out)
    _one_line_error(code, err, f"{out} records no training data: say which data to evaluate on with --task")
    code, _, err = run_cli("export", tiny_checkpoint, "--out", tmp_path / "x", "--data-dir", tmp_path)
    _one_line_error(code, err, "--data-dir needs --task (which task's texts to check on)")


def test_missing_extra_is_one_line(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    message = "ONNX export and runtime need onnx and onnxruntime: pip install 'trimbert[onnx]'"
    code, _, err = run_cli("export", tiny_checkpoint, "--out", tmp_path / "x")
    _one_line_error(code, err, message)
    code, _, err = run_cli("bench", tiny_checkpoint, "--runtime", "onnxruntime", "--device", "cpu")
    _one_line_error(code, err, message)
    assert not (tmp_path / "x").exists()


def test_bench_runtimes(run_cli, tiny_checkpoint):
    code, stdout, err = run_cli(
        "bench", tiny_checkpoint, "--vs", tiny_checkpoint, "--name", "same", "--runtime", "pytorch",
        "--runtime", "onnxruntime-int8", "--device", "cpu", "--batch-size", "2", "--seq-len", "8",
        "--repeats", "3", "--warmup", "1", "--max-seconds", "1", "--json",
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert [record["variant"] for record in report["records"]] == ["same", "same@ort-int8", "baseline", "baseline@ort-int8"]
    # every unit against U* (the baseline's faster runtime in this run); int8 also against the baseline's int8
    star = report["u_star"]
    assert star in ("baseline", "baseline@ort-int8")
    pairs = {(c["variant"], c["versus"]) for c in report["comparisons"] if c["quantity"] == "latency"}
    units = ["same", "same@ort-int8", "baseline", "baseline@ort-int8"]
    same_int8 = {("same@ort-int8", "baseline@ort-int8")} if star == "baseline" else set()
    assert pairs == {(name, star) for name in units if name != star} | same_int8
    code, _, err = run_cli("bench", tiny_checkpoint, "--runtime", "tensorrt")
    assert code == 2 and "--runtime" in err and "tensorrt" in err
