"""``trim`` that would change nothing is refused in one line (exit 2, nothing written); ``finetune`` of
the same empty request fine-tunes the untrimmed model, as it should."""

import json

import pytest
from conftest import write_sst2

import trimbert
from trimbert.model.structure import applied_spec

NOTHING = "error: the trim changes nothing (give --drop-ffn, --attention, --layernorm, --drop-layers, --ffn-width or --heads)\n"


def test_trim_without_a_trim_option_is_refused_before_any_work(run_cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert run_cli("trim", tiny_checkpoint, "--out", out) == (2, "", NOTHING)
    assert not out.exists()
    assert run_cli("trim", tiny_checkpoint, "--out", out, "--portable", "--seed", "3") == (2, "", NOTHING)
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "given"),
    [
        (("--attention", "softmax"), "--attention softmax leaves"),
        (("--drop-ffn", "none"), "--drop-ffn none leaves"),
        (("--drop-ffn", "none", "--layernorm", "none"), "--drop-ffn none --layernorm none leave"),
        (("--layernorm", "none", "--layernorm-replacement", "dyt"), "--layernorm none --layernorm-replacement dyt leave"),
    ],
)
def test_trim_options_that_change_nothing_are_refused_and_write_nothing(run_cli, tiny_checkpoint, tmp_path, options,
                                                                       given):
    out = tmp_path / "out"
    code, stdout, err = run_cli("trim", tiny_checkpoint, "--out", out, *options)
    assert (code, stdout, err) == (2, "", f"error: the trim changes nothing: {given} {tiny_checkpoint} as it is\n")
    assert not out.exists()


def test_a_no_op_trim_over_an_earlier_output_leaves_it_as_it_was(run_cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert run_cli("trim", tiny_checkpoint, "--out", out, "--attention", "relu")[0] == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    code, stdout, err = run_cli("trim", out, "--out", tmp_path / "again", "--attention", "relu")
    assert (code, stdout, err) == (2, "", f"error: the trim changes nothing: --attention relu leaves {out} as it is\n")
    assert not (tmp_path / "again").exists()
    code, _, err = run_cli("trim", tiny_checkpoint, "--out", out, "--force", "--drop-ffn", "none")
    assert (code, err) == (2, f"error: the trim changes nothing: --drop-ffn none leaves {tiny_checkpoint} as it is\n")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


@pytest.mark.parametrize(
    "data",
    [
        {"trim_spec": {}},
        {"trim_spec": {"attention": "softmax"}},
        {"trim_spec": {"drop_ffn": [], "attention": "softmax", "layernorm": []}, "importance": None,
         "summary": "untrimmed", "predicted_ms": 2.0, "predicted_speedup": 1.0},  # search's untrimmed winner
    ],
)
def test_trim_of_a_spec_file_that_changes_nothing_is_refused(run_cli, tiny_checkpoint, tmp_path, data):
    spec, out = tmp_path / "best.json", tmp_path / "out"
    spec.write_text(json.dumps(data))
    code, stdout, err = run_cli("trim", tiny_checkpoint, "--spec", spec, "--out", out)
    assert (code, stdout) == (2, "")
    assert err == f"error: --spec: {spec}: the trim changes nothing (its trim_spec is the untrimmed model)\n"
    assert not out.exists()


def test_trim_of_a_spec_the_model_has_already_is_refused(run_cli, tiny_checkpoint, tmp_path):
    spec, out = tmp_path / "best.json", tmp_path / "relu"
    assert run_cli("trim", tiny_checkpoint, "--out", out, "--attention", "relu")[0] == 0
    spec.write_text(json.dumps({"trim_spec": {"attention": "relu"}}))
    code, _, err = run_cli("trim", out, "--spec", spec, "--out", tmp_path / "again")
    assert (code, err) == (2, f"error: --spec: {spec}: the trim changes nothing ({out} has that trim already)\n")
    assert not (tmp_path / "again").exists()


def test_finetune_of_an_empty_spec_fine_tunes_the_untrimmed_model(run_cli, tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=8)
    spec = tmp_path / "best.json"
    spec.write_text(json.dumps({"trim_spec": {"drop_ffn": [], "attention": "softmax", "layernorm": []},
                                "importance": None}))
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        "finetune", tiny_checkpoint, "--spec", spec, "--task", "sst2", "--data-dir", data, "--out", out,
        "--epochs", "1", "--batch-size", "8", "--max-length", "16", "--json",
    )
    assert code == 0, err
    record = json.loads(stdout)
    assert record["trim"] == {} and record["trim_summary"] == "untrimmed"
    assert applied_spec(trimbert.load(out)).is_empty  # a plain BERT: no TrimBert config
