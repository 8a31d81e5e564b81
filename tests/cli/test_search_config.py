"""``trimbert search --config FILE``: the settings from a TOML file (the same models as the flags), flags given win."""

import pytest
from conftest import write_sst2

import trimbert.search.run
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.search.settings import SearchSettings
from trimbert.train.settings import FinetuneSettings


@pytest.fixture
def searched(monkeypatch):
    """The settings the search would run with (it stops right there)."""
    seen = {}

    def stop(model, source, out, *, settings, finetune, **options):
        seen.update(model=model, source=source, settings=settings, finetune=finetune)
        raise TrimbertError("stopped before searching")

    monkeypatch.setattr(trimbert.search.run, "search", stop)
    return seen


def test_the_file_fills_the_settings_and_flags_win(tmp_path, run_cli, searched, tiny_checkpoint):
    data = write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=8)
    config = tmp_path / "search.toml"
    config.write_text(f'speedup = 1.5\nruntime = "onnx"\nprobes = 5\n[data]\ntask = "sst2"\ndata_dir = "{data}"\n'
                      "[finetune]\nepochs = 2\nmax_length = 16\n")
    code, _, err = run_cli("search", tiny_checkpoint, "--out", tmp_path / "out", "--config", config, "--probes", "7", "--lr", "1e-3")
    assert (code, err.strip()) == (2, "error: stopped before searching")
    assert searched["settings"] == SearchSettings(speedup=1.5, runtime="onnx", probes=7)
    assert searched["finetune"] == FinetuneSettings(epochs=2, max_length=16, lr=1e-3)
    assert searched["source"] == DataSource(task="sst2", data_dir=str(data))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("speedup = 0.5\n", "speedup: must be at least 1.0, got 0.5"),
        ('speedup = 1.5\nprobes = "many"\n', "probes: expected an integer, got 'many'"),
        ("speedup = 1.5\npopulaton = 3\n", "populaton: unknown key (known: speedup, latency_ms, "),
        ("speedup = 1.5\n[finetune]\nwarmup_ratio = 0.5\n", "finetune.warmup_ratio: unknown key (known: epochs, lr, "),
        ("speedup = 1.5\nlatency_ms = 3.0\n", "give exactly one target: --speedup X or --latency-ms X"),
        ("speedup = 1.5\ndata = 3\n", "data: expected a table, got 3"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_key(tmp_path, run_cli, searched, tiny_checkpoint, text, problem):
    config = tmp_path / "search.toml"
    config.write_text(text)
    code, _, err = run_cli("search", tiny_checkpoint, "--task", "sst2", "--out", tmp_path / "out", "--config", config)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {config}: {problem}"), err
    assert searched == {}


def test_a_missing_file_is_one_line(tmp_path, run_cli, tiny_checkpoint):
    code, _, err = run_cli("search", tiny_checkpoint, "--out", tmp_path / "out", "--config", tmp_path / "nope.toml")
    assert (code, err.strip()) == (2, f"error: --config: {tmp_path / 'nope.toml'} does not exist")
