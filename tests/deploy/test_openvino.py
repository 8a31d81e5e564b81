"""OpenVINO export (fp32 IR and NNCF int8), loading, evaluating, and the missing extra."""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_config, write_sst2
from transformers import BertForSequenceClassification

import trimbert
from trimbert.deploy.export import export_onnx, random_batches
from trimbert.deploy.openvino import OV_FP32_FILE, OV_INT8_FILE, load_openvino
from trimbert.deploy.runners import load_exported
from trimbert.errors import TrimbertError

MISSING = "the OpenVINO runtime needs openvino and nncf: pip install 'trimbert[openvino]'"


def test_openvino_fp32_matches_pytorch_and_int8_is_checked(tiny_model, tmp_path):
    result = export_onnx(tiny_model, tmp_path / "out", int8=True, openvino=True)
    files = set(result.files)
    assert {OV_FP32_FILE, "model.bin", OV_INT8_FILE, "model.int8.bin", "model.onnx", "model.int8.onnx"} <= files
    check = result.openvino_check
    assert check.fp32_max_rel_diff <= 1e-4
    assert check.int8_measure == "prediction agreement"
    info = json.loads((tmp_path / "out" / "export.json").read_text())
    assert info["openvino"] is True and info["openvino_check"]["int8_value"] == check.int8_value
    ids = torch.randint(0, 100, (3, 16), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[2, 4:] = 0
    with torch.no_grad():
        reference = tiny_model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits.numpy()
    fp32 = load_openvino(tmp_path / "out", threads=1)
    assert fp32.runtime == "openvino"
    assert np.abs(fp32(ids.numpy(), mask.numpy()) - reference).max() < 1e-4
    int8 = load_exported(tmp_path / "out", "openvino-int8", threads=1)
    assert int8.runtime == "openvino-int8"
    # the recorded int8 agreement is the share of the check rows whose argmax int8 leaves unchanged
    same = rows = 0
    for batch in random_batches(tiny_model.config):
        with torch.no_grad():
            expected = tiny_model(**batch).logits.argmax(-1).numpy()
        same += int((int8(batch["input_ids"].numpy(), batch["attention_mask"].numpy()).argmax(-1) == expected).sum())
        rows += len(expected)
    assert check.int8_value == same / rows


def test_a_folder_without_openvino_files_is_one_error(tiny_model, tmp_path):
    export_onnx(tiny_model, tmp_path / "out")
    with pytest.raises(TrimbertError, match=r"has no model\.xml \(export with --openvino\)$"):
        load_openvino(tmp_path / "out")
    (tmp_path / "out" / "model.xml").write_text("<net")  # truncated IR
    with pytest.raises(TrimbertError, match=r"^OpenVINO cannot load .*model\.xml: "):
        load_openvino(tmp_path / "out")


def test_export_and_evaluate_openvino_from_the_command_line(run_cli, tmp_path, minilm_dir):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(vocab_size=30522, num_labels=2, max_position_embeddings=128))
    run = trimbert.save(model.eval(), tmp_path / "run", tokenizer=trimbert.load_tokenizer(minilm_dir))
    data = write_sst2(tmp_path / "SST-2")
    out = tmp_path / "export"
    code, stdout, err = run_cli(
        "export", run, "--out", out, "--openvino", "--int8", "--task", "sst2", "--data-dir", data,
        "--samples", "20", "--calibration-rows", "16", "--fuse",
    )
    assert code == 0, err
    assert "OpenVINO fp32 max |diff| / max |PyTorch|" in stdout and "OpenVINO int8 prediction agreement" in stdout
    assert "ONNX Runtime graph fused: 4 Attention, 1 EmbedLayerNormalization" in stdout
    for flags, runtime in (((), "onnxruntime"), (("--openvino",), "openvino"), (("--openvino", "--int8"), "openvino-int8")):
        code, stdout, err = run_cli("evaluate", out, *flags, "--json", "--max-length", "32")
        assert code == 0, err
        result = json.loads(stdout)
        assert result["runtime"] == runtime and result["eval_rows"] == {"validation": 24}
        assert result["conditions"]["runtime"] == runtime


def test_missing_openvino_extra_is_one_line(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    code, _, err = run_cli("export", tiny_checkpoint, "--out", tmp_path / "x", "--openvino")
    assert (code, err.strip()) == (2, f"error: {MISSING}")
    code, _, err = run_cli("bench", tiny_checkpoint, "--runtime", "openvino", "--device", "cpu")
    assert (code, err.strip()) == (2, f"error: {MISSING}")
    assert not (tmp_path / "x").exists()
