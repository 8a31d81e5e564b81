"""``trim --portable`` / ``finetune --portable`` write remote code; stock-BERT trims are saved as plain BERT."""

import json

import torch
from conftest import write_sst2
from transformers import BertModel

import trimbert
from trimbert.model.portable import auto_map, remote_code_files
from trimbert.model.structure import DroppedFFN


def _config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


def _py_files(folder) -> set[str]:
    return {path.name for path in folder.glob("*.py")}


def test_trim_portable_writes_auto_map_and_the_modeling_code(run_cli, tmp_path):
    out = tmp_path / "portable"
    code, stdout, err = run_cli(
        "trim", "minilm", "--out", out, "--drop-ffn", "alternate", "--attention", "relu", "--portable"
    )
    assert code == 0, err
    config = _config(out)
    assert config["model_type"] == "trimbert" and config["architectures"] == ["TrimBertModel"]
    assert config["auto_map"] == auto_map()
    assert config["auto_map"]["AutoModel"] == "modeling.TrimBertModel"
    assert config["auto_map"]["AutoConfig"] == "modeling.TrimBertConfig"
    files = remote_code_files()
    assert _py_files(out) == set(files)
    assert all((out / name).read_text() == text for name, text in files.items())
    assert "loads with trust_remote_code=True" in stdout
    assert trimbert.load(out).config.spec.drop_ffn == (1, 3, 5)
    # Without --portable: no code, no auto_map.
    plain = tmp_path / "plain"
    code, stdout, err = run_cli(
        "trim", "minilm", "--out", plain, "--drop-ffn", "alternate", "--attention", "relu"
    )
    assert code == 0, err
    assert "auto_map" not in _config(plain) and _py_files(plain) == set()
    assert "--portable to load without it" in stdout


def test_trim_ffn_width_is_saved_as_plain_bert_and_trims_again(run_cli, tmp_path, tiny_batch):
    out = tmp_path / "narrow"
    code, stdout, err = run_cli("trim", "minilm", "--out", out, "--ffn-width", "768")
    assert code == 0, err
    assert "saved as: plain BERT (loads with transformers alone)" in stdout
    config = _config(out)
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]
    assert config["num_hidden_layers"] == 6 and config["intermediate_size"] == 768
    assert config["trimbert_intermediate_size"] == 1536
    assert config["trimbert_trim_spec"]["ffn_width"] == {str(block): 768 for block in range(6)}
    assert "trim_spec" not in config and "auto_map" not in config and _py_files(out) == set()
    plain = BertModel.from_pretrained(out).eval()
    narrowed = trimbert.load(out)
    assert type(narrowed).__name__ == "TrimBertModel" and narrowed.config.intermediate_size == 1536
    with torch.no_grad():
        assert torch.equal(plain(**tiny_batch).last_hidden_state, narrowed(**tiny_batch).last_hidden_state)
    code, stdout, err = run_cli("inspect", out, "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["model_class"] == "TrimBertModel" and data["intermediate_size"] == 1536
    assert [block["ffn"] for block in data["blocks"]] == ["width 768"] * 6
    assert data["trim"]["ffn_width"] == {str(block): 768 for block in range(6)}


def test_stock_drop_layers_then_drop_ffn_keeps_the_original_numbering(run_cli, tmp_path, minilm, tiny_batch):
    first, second = tmp_path / "layers", tmp_path / "layers-ffn"
    code, stdout, err = run_cli("trim", "minilm", "--out", first, "--drop-layers", "0")
    assert code == 0, err
    config = _config(first)
    assert config["model_type"] == "bert" and config["num_hidden_layers"] == 5
    assert config["trimbert_trim_spec"]["drop_layers"] == [0]
    code, stdout, err = run_cli("inspect", first, "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["original_num_layers"] == 6 and data["dropped_layers"] == [0] and data["num_layers"] == 5
    code, stdout, err = run_cli("trim", first, "--out", second, "--drop-ffn", "1")
    assert code == 0, err
    assert _config(second)["model_type"] == "trimbert"
    model = trimbert.load(second)
    assert model.config.spec.drop_layers == (0,) and model.config.spec.drop_ffn == (1,)
    assert isinstance(model.encoder.layer[0].output, DroppedFFN)  # original block 1 is the first present
    assert not isinstance(model.encoder.layer[1].output, DroppedFFN)
    direct = trimbert.trim(minilm, drop_layers="0", drop_ffn="1")
    with torch.no_grad():
        assert torch.equal(model(**tiny_batch).last_hidden_state, direct(**tiny_batch).last_hidden_state)


def test_finetune_portable_writes_the_modeling_code(run_cli, tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=8)
    out = tmp_path / "run"
    common = [
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-length",
        "32",
        "--task",
        "sst2",
        "--data-dir",
        data,
    ]
    code, _, err = run_cli(
        "finetune",
        tiny_checkpoint,
        "--out",
        out,
        "--drop-ffn",
        "0",
        "--attention",
        "relu",
        "--portable",
        *common,
    )
    assert code == 0, err
    config = _config(out)
    assert config["model_type"] == "trimbert" and config["auto_map"] == auto_map()
    assert config["architectures"] == ["TrimBertForSequenceClassification"]
    assert _py_files(out) == set(remote_code_files())
    assert (out / "metrics.json").is_file() and (out / "tokenizer.json").is_file()
