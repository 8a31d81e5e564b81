"""Several processes (torchrun on CPU, gloo): every process trains, only the main one writes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_sst2

pytestmark = pytest.mark.slow

_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    process = subprocess.Popen(
        [*command, "-m", "trimbert", *args],
        cwd=cwd,
        env=_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its worker processes can be killed with it
    )
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish in 240 s: {stderr[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_two_process_finetune_writes_one_run_folder(tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2")
    out = tmp_path / "run"
    done = _torchrun(
        "finetune", str(tiny_checkpoint), "--task", "sst2", "--data-dir", str(data), "--out", str(out),
        "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--drop-ffn", "1", "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["SST-2", "run"]  # no staging leftovers
    record = json.loads((out / "metrics.json").read_text())
    assert record["conditions"]["world_size"] == 2
    assert record["trim"]["drop_ffn"] == [1] and record["training"]["train_rows"] == 64
    assert done.stdout.count('"kind": "finetune"') == 1  # only the main process reports


def test_two_process_sweep_writes_one_record_per_unit(tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[model]\nsource = "{tiny_checkpoint}"\n[data]\ntask = "sst2"\ndata_dir = "{data}"\n'
        "[finetune]\nepochs = 1\nbatch_size = 8\nmax_length = 16\n"
        '[bench]\nbatch_size = 2\nseq_len = 16\nrepeats = 2\nwarmup = 1\ndevice = "cpu"\nmax_seconds = 0.001\n'
        '[[variants]]\nname = "baseline"\n[[variants]]\nname = "ffn"\ndrop_ffn = "1"\n'
    )
    done = _torchrun("sweep", str(recipe), "--out", str(tmp_path / "sweep"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted((r["variant"], r["status"]) for r in records) == [("baseline", "ok"), ("ffn", "ok")]
    assert all(r["conditions"].get("world_size") is None for r in records)  # bench conditions: rank 0 only
    assert all(r["sweep"]["finetune_conditions"]["world_size"] == 2 for r in records)


def test_two_process_finetune_into_an_existing_folder_is_refused_by_each_process(tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2")
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    done = _torchrun(
        "finetune", str(tiny_checkpoint), "--task", "sst2", "--data-dir", str(data), "--out", str(out), "--epochs", "1",
        cwd=tmp_path,
    )
    lines = done.stderr.splitlines()
    # Each process says why before any exits (the launcher stops the others when one exits); the
    # ChildFailedError that torchrun itself then raises is the launcher's, with no trimbert frame in it.
    assert lines.count(f"error: output folder {out} already exists (use --force to replace it)") == 2, done.stderr[-3000:]
    assert done.returncode != 0
    assert not [line for line in lines if line.lstrip().startswith('File "') and "/trimbert/" in line], done.stderr
    assert [path.name for path in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["SST-2", "existing"]
