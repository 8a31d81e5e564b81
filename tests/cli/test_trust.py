"""Hostile inputs at the command line: nothing is lost, nothing half-written, errors are one line."""

import json
import os

import pytest
from conftest import write_sst2

import trimbert.model.checkpoint


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_out_empty_or_dot_with_force_deletes_nothing(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("precious")
    for out, problem in (
        ("", "'.': give a name for the output folder, not the current folder"),
        (".", "'.': give a name for the output folder, not the current folder"),
        (str(tmp_path), f"{tmp_path}: the current folder or one of its ancestors cannot be the output"),
    ):
        code, _, err = run_cli("trim", "minilm", "--out", out, "--drop-ffn", "1", "--force")
        assert code == 2
        assert _one_line(err) == f"error: --out {problem}"
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_out_that_holds_the_input_is_refused(run_cli, tiny_checkpoint):
    code, _, err = run_cli("trim", tiny_checkpoint, "--out", tiny_checkpoint.parent, "--drop-ffn", "1", "--force")
    assert code == 2 and "it holds the input" in _one_line(err)
    assert (tiny_checkpoint / "model.safetensors").is_file()


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(run_cli, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(trimbert.model.checkpoint, "load", broken)
    code, _, err = run_cli("inspect", "minilm")
    assert code == 1
    assert _one_line(err) == "error: unexpected RuntimeError: boom second line (run with --debug for the traceback)"
    with pytest.raises(RuntimeError, match="boom"):
        run_cli("--debug", "inspect", "minilm")


def test_finetune_into_an_unwritable_place_fails_before_training(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    data = write_sst2(tmp_path / "SST-2")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    out = tmp_path / "locked" / "run"
    code, _, err = run_cli("finetune", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--out", out)
    assert code == 2 and "permission denied" in _one_line(err) and not out.exists()


def test_bench_out_is_checked_before_benchmarking(run_cli, tiny_checkpoint, tmp_path):
    existing = tmp_path / "bench.json"
    existing.write_text("keep")
    code, _, err = run_cli("bench", tiny_checkpoint, "--repeats", "1", "--warmup", "0", "--out", existing)
    assert code == 2 and "already exists (use --force" in _one_line(err)
    assert existing.read_text() == "keep"
    code, _, err = run_cli("bench", tiny_checkpoint, "--repeats", "1", "--warmup", "0", "--out", tmp_path)
    assert code == 2 and "already exists" in _one_line(err)
    code, _, err = run_cli("bench", tiny_checkpoint, "--out", existing, "--force")  # --force: only trimbert's records
    assert code == 2 and _one_line(err) == (
        f"error: --out {existing}: refusing to replace a file trimbert did not write (not a trimbert records file); "
        "remove it yourself or choose another --out"
    )
    assert existing.read_text() == "keep"
    existing.write_text(json.dumps([{"kind": "bench", "variant": "old", "schema_version": 1}]))
    code, _, err = run_cli(
        "bench", tiny_checkpoint, "--repeats", "1", "--warmup", "0", "--seq-len", "8", "--out", existing, "--force"
    )
    assert code == 0, err
    assert json.loads(existing.read_text())[0]["kind"] == "bench"


def test_report_out_that_is_a_file_is_refused(run_cli, tmp_path):
    (tmp_path / "report.md").write_text("keep")
    code, _, err = run_cli("report", tmp_path, "--out", tmp_path / "report.md")
    assert code == 2 and "is a file; the report needs a folder" in _one_line(err)
    assert (tmp_path / "report.md").read_text() == "keep"


def test_trim_fails_on_an_unreadable_tokenizer(run_cli, tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    code, _, err = run_cli("trim", tiny_checkpoint, "--out", broken, "--drop-ffn", "1")
    assert code == 0, err
    (broken / "tokenizer.json").write_text("{not json")
    code, _, err = run_cli("trim", broken, "--out", tmp_path / "again", "--drop-ffn", "0")
    assert code == 2 and "unreadable tokenizer" in _one_line(err)
    assert not (tmp_path / "again").exists()


def test_bad_settings_in_a_recipe_fail_the_dry_run(run_cli, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[model]\nsource = "minilm"\n[data]\ntask = "sst2"\n[finetune]\nepochs = inf\n'
        '[[variants]]\nname = "baseline"\n'
    )
    code, _, err = run_cli("sweep", recipe, "--out", tmp_path / "out", "--dry-run")
    assert code == 2
    assert _one_line(err) == f"error: {recipe}: finetune.epochs: must be a finite number, got inf"


def test_bench_errors_start_with_the_error_line(run_cli):
    code, _, err = run_cli("bench", "/nonexistent-model")
    assert code == 2 and err.splitlines()[0] == "error: checkpoint folder /nonexistent-model does not exist"
