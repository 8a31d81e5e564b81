"""``trimbert heal`` from the command line."""

import json

from conftest import write_sst2

import trimbert


def test_heal_cli_runs_and_refuses_bad_input_in_one_line(run_cli, tiny_checkpoint, tmp_path):
    corpus = write_sst2(tmp_path / "SST-2", train_rows=24, dev_rows=4)
    out = tmp_path / "healed"
    trimmed = tmp_path / "trimmed"
    trimbert.save(trimbert.trim(trimbert.load(tiny_checkpoint), drop_ffn="0"), trimmed)
    code, _, err = run_cli("heal", tiny_checkpoint, "--teacher", tiny_checkpoint, "--corpus", corpus, "--out", out)
    assert code == 2 and err.strip() == f"error: heal: {tiny_checkpoint} is not trimmed: nothing to heal (trim it first: trimbert trim)"
    code, stdout, err = run_cli(
        "heal", trimmed, "--teacher", tiny_checkpoint, "--corpus", corpus, "--out", out,
        "--steps", "2", "--batch-size", "2", "--held-out", "2", "--max-length", "16", "--json",
    )
    assert code == 0, err
    record = json.loads(stdout)
    assert record["kind"] == "heal" and record["trim"]["drop_ffn"] == [0]  # the tokenizer came from the teacher
    assert (out / "heal.json").is_file() and (out / "model.safetensors").is_file()
    code, _, err = run_cli("heal", trimmed, "--teacher", tiny_checkpoint, "--corpus", tmp_path / "no.txt", "--out", tmp_path / "x")
    assert code == 2 and err.strip() == f"error: corpus {tmp_path / 'no.txt'} does not exist"
    code, _, err = run_cli("heal", trimmed, "--teacher", tiny_checkpoint, "--corpus", corpus, "--out", tmp_path / "x", "--steps", "0")
    assert code == 2 and err.strip() == "error: --steps: must be at least 1, got 0"
    assert not (tmp_path / "x").exists()


def test_heal_cli_progressive_with_a_token_budget_prints_the_stages(run_cli, tiny_checkpoint, tmp_path):
    corpus = write_sst2(tmp_path / "SST-2", train_rows=24, dev_rows=4)
    trimmed = tmp_path / "trimmed"
    trimbert.save(trimbert.trim(trimbert.load(tiny_checkpoint), drop_ffn="0", layernorm="1.attn", layernorm_replacement="dyt"), trimmed)
    code, stdout, err = run_cli(
        "heal", trimmed, "--teacher", tiny_checkpoint, "--corpus", corpus, "--out", tmp_path / "healed",
        "--schedule", "progressive", "--tokens", "200", "--batch-size", "2", "--held-out", "2", "--max-length", "16",
        "--alpha-attention", "0.5",
    )
    assert code == 0, err
    assert "stage ffn" in stdout and "stage layernorm" in stdout and "stage attention" not in stdout
    settings = json.loads((tmp_path / "healed" / "heal.json").read_text())["heal"]["settings"]
    assert settings["schedule"] == "progressive" and settings["tokens"] == 200 and settings["alpha_attention"] == 0.5
    assert settings["steps"] >= 2  # from the budget: ceil(200 / (2 × mean tokens per text))
    code, _, err = run_cli("heal", trimmed, "--teacher", tiny_checkpoint, "--corpus", corpus, "--out", tmp_path / "x", "--schedule", "gradual")
    assert code == 2 and "--schedule" in err and "gradual" in err and len(err.strip().splitlines()) == 1
