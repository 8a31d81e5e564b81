"""ONNX export of every trim, the check against PyTorch, int8, and loading an export folder."""

import copy
import json
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_config
from transformers import BertForSequenceClassification, BertModel

import trimbert
import trimbert.deploy.export
from trimbert.deploy.export import FP32_TOLERANCE, export_onnx, random_batches
from trimbert.deploy.runtime import EXPORT_FILE, FP32_FILE, INT8_FILE, load_onnx, require_onnxruntime
from trimbert.errors import TrimbertError
from trimbert.spec import NORMALIZER_NAMES

TRIMS = {
    "untrimmed": {},
    "drop-ffn": {"drop_ffn": "1,3"},
    "ffn-width": {"ffn_width": "24"},
    "uneven-ffn-width": {"ffn_width": "0:16,2:40"},
    "drop-layers": {"drop_layers": "1,2"},
    "layernorm-identity": {"layernorm": "half"},
    "layernorm-all": {"layernorm": "all"},
    "layernorm-dyt": {"layernorm": "all", "layernorm_replacement": "dyt"},
    **{f"attention-{name}": {"attention": name} for name in NORMALIZER_NAMES},
    "full": {"drop_ffn": "alternate", "attention": "relu", "layernorm": "half"},
}


def _padded_inputs(batch: int, tokens: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 100, (batch, tokens), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, tokens // 3 :] = 0  # one padded row at a length never traced
    types = torch.zeros_like(ids)
    types[:, tokens // 2 :] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _assert_matches_pytorch(model, folder):
    onnx_model = load_onnx(folder)
    for batch, tokens, seed in ((1, 5, 0), (3, 23, 1), (6, 64, 2)):
        inputs = _padded_inputs(batch, tokens, seed)
        with torch.inference_mode():
            expected = model(**inputs).logits.numpy()
        got = onnx_model(*(inputs[name].numpy() for name in ("input_ids", "attention_mask", "token_type_ids")))
        assert got.shape == expected.shape == (batch, 3)
        assert np.abs(got - expected).max() <= FP32_TOLERANCE


@pytest.mark.parametrize("options", TRIMS.values(), ids=TRIMS.keys())
def test_every_trim_exports_and_matches_pytorch_at_any_shape(tiny_model, tmp_path, options):
    model = trimbert.trim(tiny_model, **options) if options else tiny_model
    result = export_onnx(model, tmp_path / "out")
    assert result.output == "logits" and result.check.rows == 32
    assert result.check.fp32_max_abs_diff <= FP32_TOLERANCE
    assert result.check.int8_measure is None and set(result.files) == {FP32_FILE}
    _assert_matches_pytorch(model, tmp_path / "out")


def test_affine_layernorm_replacement_exports(tiny_model, tiny_batch, tmp_path):
    model = trimbert.trim(
        tiny_model, layernorm="all", layernorm_replacement="affine", calibration_batches=[tiny_batch]
    )
    export_onnx(model, tmp_path / "out")
    _assert_matches_pytorch(model, tmp_path / "out")


def test_int8_export_folder_and_record(tmp_path, minilm_dir):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(vocab_size=30522, num_labels=3)).eval()
    model = trimbert.trim(model, drop_ffn="1")
    tokenizer = trimbert.load_tokenizer(minilm_dir)
    result = export_onnx(model, tmp_path / "out", tokenizer=tokenizer, int8=True, info={"source": "tiny"})
    files = {path.name for path in (tmp_path / "out").iterdir()}
    assert {FP32_FILE, INT8_FILE, EXPORT_FILE, "config.json", "tokenizer.json"} <= files
    check = result.check
    assert check.int8_measure == "prediction agreement"
    assert check.int8_value * check.rows == round(check.int8_value * check.rows)  # a share of the 32 rows
    assert check.int8_ok == (check.int8_value >= 0.99)
    assert result.files[INT8_FILE] < result.files[FP32_FILE]
    int8_ops = {node.op_type for node in onnx.load(tmp_path / "out" / INT8_FILE).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= int8_ops  # int8 weights, activations quantized per run
    record = json.loads((tmp_path / "out" / EXPORT_FILE).read_text())
    assert record["source"] == "tiny" and record["output"] == "logits" and record["int8"] is True
    assert record["trim"]["drop_ffn"] == [1] and record["trim_summary"] == model.config.spec.summary()
    assert record["check"]["fp32_max_abs_diff"] == check.fp32_max_abs_diff
    assert record["files"] == result.files
    int8 = load_onnx(tmp_path / "out", int8=True)
    assert int8.int8 and int8.runtime == "onnxruntime-int8"
    assert int8.predict(["a fine film", "a dull one"], max_length=16).shape == (2, 3)
    pairs = int8.predict([("first text", "second text")], max_length=16)
    assert pairs.shape == (1, 3)


def test_a_bare_encoder_exports_its_hidden_states(tmp_path):
    torch.manual_seed(0)
    encoder = BertModel(tiny_config(num_hidden_layers=2)).eval()
    result = export_onnx(encoder, tmp_path / "out", int8=True)
    assert result.output == "last_hidden_state" and result.check.int8_measure == "mean cosine"
    onnx_model = load_onnx(tmp_path / "out")
    inputs = _padded_inputs(2, 9, 3)
    with torch.inference_mode():
        expected = encoder(**inputs).last_hidden_state.numpy()
    got = onnx_model(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
    assert got.shape == (2, 9, 32) and np.abs(got - expected).max() <= FP32_TOLERANCE


def test_regression_int8_check_is_a_correlation(tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(num_labels=1)).eval()
    result = export_onnx(model, tmp_path / "out", int8=True)
    # Pearson's r of the int8 model's scores with PyTorch's on the check sample (the default: random_batches),
    # computed here from the saved int8 model: centred, not a cosine of the raw scores
    int8_model = load_onnx(tmp_path / "out", int8=True)
    sample = random_batches(model.config)
    with torch.inference_mode():
        reference = np.concatenate([model(**batch).logits.numpy().reshape(-1) for batch in sample]).astype(np.float64)
    feeds = [(batch["input_ids"].numpy(), batch["attention_mask"].numpy(), batch["token_type_ids"].numpy()) for batch in sample]
    scores = np.concatenate([int8_model(*feed).reshape(-1) for feed in feeds]).astype(np.float64)
    centred, centred_reference = scores - scores.mean(), reference - reference.mean()
    r = (centred @ centred_reference) / np.sqrt((centred @ centred) * (centred_reference @ centred_reference))
    assert result.check.int8_measure == "correlation" and result.check.rows == len(reference) == 32
    assert result.check.int8_value == pytest.approx(r, abs=1e-6)
    assert result.check.int8_ok == (r >= trimbert.deploy.export.INT8_AGREEMENT)


def test_a_mismatch_fails_and_writes_nothing(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(trimbert.deploy.export, "FP32_TOLERANCE", -1.0)  # no difference is small enough
    with pytest.raises(TrimbertError, match=r"ONNX Runtime's logits differ from PyTorch's by .*nothing was written"):
        export_onnx(tiny_model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_keeps_the_callers_model(tiny_model, tmp_path):
    before = copy.deepcopy(tiny_model.state_dict())
    bf16 = copy.deepcopy(tiny_model).to(torch.bfloat16)
    export_onnx(bf16, tmp_path / "out")  # exported from a float32 copy
    assert next(bf16.parameters()).dtype == torch.bfloat16
    assert all(torch.equal(before[key], value) for key, value in tiny_model.state_dict().items())


def test_random_batches_pad_every_row_to_at_least_one_token():
    sample = random_batches(tiny_config(), batches=3, batch_size=5, seq_len=100, seed=1)
    assert len(sample) == 3
    for batch in sample:
        assert batch["input_ids"].shape == (5, 64)  # clipped to max_position_embeddings
        assert int(batch["input_ids"].max()) < 100
        lengths = batch["attention_mask"].sum(dim=1)
        assert bool((lengths >= 1).all())
        assert torch.equal(batch["attention_mask"], (torch.arange(64) < lengths[:, None]).long())
    assert not torch.equal(sample[0]["input_ids"], random_batches(tiny_config(), seed=2)[0]["input_ids"][:5])


def test_load_onnx_refuses_what_is_not_an_export(tiny_model, tmp_path):
    with pytest.raises(TrimbertError, match=f"{tmp_path} is not an ONNX export folder"):
        load_onnx(tmp_path)
    export_onnx(tiny_model, tmp_path / "out")
    with pytest.raises(TrimbertError, match=r"has no model\.int8\.onnx \(export with --int8\)"):
        load_onnx(tmp_path / "out", int8=True)
    (tmp_path / "out" / FP32_FILE).write_bytes(b"not a graph")
    with pytest.raises(TrimbertError, match="ONNX Runtime cannot load"):
        load_onnx(tmp_path / "out")


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(TrimbertError, match=r"need onnx and onnxruntime: pip install 'trimbert\[onnx\]'"):
        require_onnxruntime()


def test_a_failing_run_is_one_error(tiny_model, tmp_path):
    export_onnx(tiny_model, tmp_path / "out")
    with pytest.raises(TrimbertError, match=r"ONNX Runtime failed on .*model\.onnx: .*indices element out of data bounds"):
        load_onnx(tmp_path / "out")(np.array([[1, 2, 500]]))  # a token id beyond the vocabulary of 100
