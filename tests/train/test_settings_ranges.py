"""Settings whose values cannot be meant are refused at once (issue 27, item 1b): epochs that overflow
the Trainer's step count, more threads than the machine has CPUs."""

import pytest
from conftest import write_sst2

import trimbert.core.settings
from trimbert.core.settings import available_cpus
from trimbert.errors import TrimbertError
from trimbert.measure.bench import BenchSettings
from trimbert.search.settings import SearchSettings
from trimbert.train.settings import MAX_EPOCHS, FinetuneSettings


@pytest.mark.parametrize(("epochs", "shown"), [(1e308, "1e+308"), (1001.0, "1001.0")])
def test_epochs_beyond_the_bound_are_refused(epochs, shown):
    with pytest.raises(TrimbertError) as raised:
        FinetuneSettings(epochs=epochs)
    assert str(raised.value) == f"--epochs: must be at most 1000.0, got {shown}"
    assert FinetuneSettings(epochs=MAX_EPOCHS).epochs == MAX_EPOCHS


def test_finetune_refuses_absurd_epochs_before_loading_anything(run_cli, tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=8, dev_rows=4)
    code, _, err = run_cli("finetune", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--epochs", "1e308",
                           "--out", tmp_path / "run")
    assert (code, err.strip()) == (2, "error: --epochs: must be at most 1000.0, got 1e+308")
    assert not (tmp_path / "run").exists()


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(trimbert.core.settings, "available_cpus", lambda: 2)


@pytest.mark.parametrize("settings", [BenchSettings, lambda **values: SearchSettings(speedup=1.5, **values)])
def test_more_threads_than_cpus_are_refused(two_cpus, settings):
    with pytest.raises(TrimbertError) as raised:
        settings(threads=1000)
    assert str(raised.value) == "--threads: this machine has 2 CPUs, got 1000"
    assert settings(threads=2).threads == 2


def test_bench_refuses_more_threads_than_cpus(two_cpus, run_cli, tiny_checkpoint):
    code, _, err = run_cli("bench", tiny_checkpoint, "--threads", "1000", "--device", "cpu")
    assert (code, err.strip()) == (2, "error: --threads: this machine has 2 CPUs, got 1000")


def test_the_cpus_counted_are_those_this_process_may_use():
    assert 1 <= available_cpus() <= (__import__("os").cpu_count() or 1)
