"""--out at the command line: --force replaces only what trimbert wrote, every input is protected,
report and sweep keep a user's files, unwritable places are one line, SIGTERM cleans up."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import write_sst2

import trimbert.report.render
from trimbert.report.records import Record
from trimbert.sweep.plan import mark_sweep_folder
from trimbert.sweep.recipe import load_recipe

REFUSED = "refusing to replace a folder trimbert did not write (no .trimbert.json); remove it yourself or choose another --out"
NOT_HERE = "give a name for the output folder, not the current folder"


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _refused(run_cli, *args) -> str:
    code, _, err = run_cli(*args)
    assert code == 2, err
    return _one_line(err)


# --------------------------------------------------------------------------------------------------
# Item 0: --force never replaces a folder trimbert did not write (the home folder least of all)


def test_trim_out_home_with_force_is_refused_and_home_is_untouched(run_cli, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    (home / "docs" / "thesis.txt").write_text("precious")
    (home / ".bashrc").write_text("alias ll='ls -l'")
    monkeypatch.setenv("HOME", str(home))  # never the real home
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    before = _listing(home)
    for out in ("~", str(home), "~/"):
        shown = out.rstrip("/") if out != "~/" else "~"
        assert _refused(run_cli, "trim", "minilm", "--out", out, "--force", "--drop-ffn", "1") == f"error: --out {shown}: {REFUSED}"
    assert _listing(home) == before and sorted(p.name for p in home.iterdir()) == [".bashrc", "docs"]
    assert list((tmp_path / "cwd").iterdir()) == []  # no literal "~" folder either


def test_tilde_out_is_written_where_it_was_checked(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli("trim", tiny_checkpoint, "--out", "~/trimmed", "--drop-ffn", "1")
    assert code == 0, err
    assert f"→ {home / 'trimmed'}:" in stdout and (home / "trimmed" / "model.safetensors").is_file()
    assert json.loads((home / "trimmed" / ".trimbert.json").read_text())["written_by"] == "trimbert"
    code, _, err = run_cli("trim", tiny_checkpoint, "--out", "~/trimmed", "--drop-ffn", "0", "--force")
    assert code == 0, err  # trimbert's own folder: --force replaces it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


# --------------------------------------------------------------------------------------------------
# Item 1: every input of every command counts for the --out checks


def _holds(out, item) -> str:
    return f"error: --out {out}: it holds the input {item}; write the output elsewhere"


def test_every_input_is_protected_from_out(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_sst2(tmp_path / "D")
    write_sst2(tmp_path / "P" / "D")
    (tmp_path / "corp").mkdir()
    (tmp_path / "corp" / "ok.txt").write_text("a text\nanother text\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("text,label\na good film,1\na bad film,0\n")
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "best.json").write_text('{"trim_spec": {"drop_ffn": [1]}, "importance": null}')
    (tmp_path / "cache" / "latency").mkdir(parents=True)
    before = _listing(tmp_path)
    affine = ("--layernorm", "half", "--layernorm-replacement", "affine", "--task", "sst2")
    cases = [
        (("trim", "minilm", *affine, "--data-dir", "D", "--out", "D"), _holds("D", "D")),
        (("trim", "minilm", *affine, "--data-dir", "P/D", "--out", "P"), _holds("P", "P/D")),
        (("trim", "minilm", "--spec", "search/best.json", "--out", "search"), _holds("search", "search/best.json")),
        (("export", "minilm", "--task", "sst2", "--data-dir", "D", "--out", "D"), _holds("D", "D")),
        (("export", "minilm", "--task", "sst2", "--data-dir", "P/D", "--out", "P"), _holds("P", "P/D")),
        (("heal", tiny_checkpoint, "--teacher", "minilm", "--corpus", "corp/ok.txt", "--out", "corp"), _holds("corp", "corp/ok.txt")),
        (
            ("search", "minilm", "--train", "data/train.csv", "--text-column", "text", "--label-column", "label",
             "--speedup", "1.2", "--out", "data"),
            _holds("data", "data/train.csv"),
        ),
        (
            ("search", "minilm", "--task", "sst2", "--data-dir", "D", "--speedup", "1.2", "--cache-dir", "cache",
             "--out", "cache"),
            _holds("cache", "cache"),
        ),
        (
            ("finetune", "minilm", "--task", "sst2", "--data-dir", "D", "--spec", "search/best.json", "--out", "search"),
            _holds("search", "search/best.json"),
        ),
        (
            ("finetune", "minilm", "--train", "data/train.csv", "--text-column", "text", "--label-column", "label",
             "--out", "data"),
            _holds("data", "data/train.csv"),
        ),
    ]
    for args, message in cases:
        assert _refused(run_cli, *args, "--force") == message, args
    monkeypatch.setenv("TRIMBERT_GLUE_DIR", str(tmp_path / "P"))  # the GLUE folder used without --data-dir
    assert _refused(run_cli, "trim", "minilm", *affine, "--out", "P", "--force") == _holds("P", tmp_path / "P")
    assert _listing(tmp_path) == before


def test_a_sweep_folder_may_not_hold_the_recipe_or_its_data(run_cli, tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "S" / "SST-2")
    recipe = tmp_path / "S" / "r.toml"
    recipe.write_text(_recipe_text(tiny_checkpoint, data))
    before = _listing(tmp_path)
    out = tmp_path / "S"
    assert _refused(run_cli, "sweep", recipe, "--out", out, "--dry-run") == _holds(out, recipe)
    moved = tmp_path / "r.toml"
    recipe.rename(moved)
    assert _refused(run_cli, "sweep", moved, "--out", out) == _holds(out, data)
    assert sorted(_listing(tmp_path)) == sorted(name.replace("S/r.toml", "r.toml") for name in before)


# --------------------------------------------------------------------------------------------------
# Item 0b: report and sweep keep a user's files; ".", "" and ".." are refused


def _run_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    record = Record(kind="finetune", variant="base", model="m", task="sst2", metrics={"accuracy": 0.8}, main_metric="accuracy")
    (path / "metrics.json").write_text(json.dumps(record.to_dict()))
    return path


def test_report_keeps_a_users_files_and_refuses_the_current_folder(run_cli, tmp_path, monkeypatch):
    run = _run_folder(tmp_path / "run")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# my own notes\n")
    (mine / "results.csv").write_text("a,b\n")
    before = _listing(tmp_path)
    assert _refused(run_cli, "report", run, "--out", mine) == (
        f"error: --out {mine}: refusing to replace report.md, results.csv in a folder trimbert did not write "
        "(no .trimbert.json); remove them yourself or choose another --out"
    )
    monkeypatch.chdir(mine)
    assert _refused(run_cli, "report", ".") == (
        "error: report .: refusing to replace report.md, results.csv in a folder trimbert did not write "
        "(no .trimbert.json); remove them yourself or choose another --out"
    )
    for out, shown in ((".", "'.'"), ("", "'.'"), ("..", "'..'")):
        assert _refused(run_cli, "report", run, "--out", out) == f"error: --out {shown}: {NOT_HERE}"
    assert _listing(tmp_path) == before
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # a folder the report made is trimbert's: it is rewritten
        code, _, err = run_cli("report", run, "--out", "rep")
        assert code == 0, err
    assert {".trimbert.json", "report.md", "results.csv", "results.json"} <= {p.name for p in (tmp_path / "rep").iterdir()}
    code, _, err = run_cli("report", run)  # into the run folder, which trimbert wrote
    assert code == 0, err


def _recipe_text(model, data: Path) -> str:
    return (
        f'[model]\nsource = "{model}"\n[data]\ntask = "sst2"\ndata_dir = "{data}"\n'
        "[finetune]\nepochs = 1\nbatch_size = 8\nmax_length = 16\n"
        '[bench]\nbatch_size = 2\nseq_len = 16\nrepeats = 2\nwarmup = 1\ndevice = "cpu"\nmax_seconds = 0.001\n'
        '[[variants]]\nname = "baseline"\n'
    )


def test_sweep_keeps_a_users_files_and_another_recipes_folder(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    data = write_sst2(tmp_path / "SST-2", train_rows=8, dev_rows=4)
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text(_recipe_text(tiny_checkpoint, data))
    second.write_text(_recipe_text("minilm", data))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# my report\n")
    (mine / "recipe.toml").write_text("my recipe\n")
    sweep = tmp_path / "S"
    sweep.mkdir()
    mark_sweep_folder(load_recipe(first), sweep)  # what the first run of a.toml writes first
    legacy = tmp_path / "L"  # a sweep folder of an earlier trimbert, for another model
    legacy.mkdir()
    row = {"kind": "sweep", "variant": "baseline", "model": "minilm", "task": "sst2", "schema_version": 1, "extra": {"recipe": "other.toml"}}
    (legacy / "results.jsonl").write_text(json.dumps(row) + "\n")
    before = _listing(tmp_path)
    assert _refused(run_cli, "sweep", first, "--out", mine) == (
        f"error: --out {mine}: refusing to write a sweep into a folder trimbert did not write (no .trimbert.json); "
        "choose another --out"
    )
    for options in ((), ("--dry-run",)):
        assert _refused(run_cli, "sweep", second, "--out", sweep, *options) == (
            f"error: --out {sweep}: it holds the sweep of another recipe ({first}: {tiny_checkpoint} on sst2); "
            "give each recipe its own --out"
        )
    assert _refused(run_cli, "sweep", first, "--out", legacy, "--dry-run") == (
        f"error: --out {legacy}: it holds the sweep of another recipe (other.toml: minilm on sst2); give each recipe its own --out"
    )
    code, _, err = run_cli("sweep", first, "--out", sweep, "--dry-run")  # the same recipe resumes
    assert code == 0, err
    monkeypatch.chdir(tmp_path / "SST-2")
    for out, shown in ((".", "'.'"), ("", "'.'"), ("..", "'..'")):
        assert _refused(run_cli, "sweep", first, "--out", out, "--dry-run") == f"error: --out {shown}: {NOT_HERE}"
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------------------------------
# Item 4: unwritable places and OS errors on an output are one line, exit 2


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc and /sys")
def test_out_in_proc_or_sys_is_one_line(run_cli, tiny_checkpoint, tmp_path):
    run = _run_folder(tmp_path / "run")
    for place in ("/proc", "/sys"):
        for args in (
            ("trim", tiny_checkpoint, "--drop-ffn", "1", "--out", f"{place}/x"),
            ("export", tiny_checkpoint, "--out", f"{place}/x"),
            ("bench", tiny_checkpoint, "--out", f"{place}/x.json"),
            ("report", run, "--out", f"{place}/x"),
        ):
            line = _refused(run_cli, *args)
            assert re.fullmatch(rf"error: --out {args[-1]}: cannot write in {place} \([a-z ]+\)", line), line


def test_report_on_a_read_only_place_and_a_failing_write_are_one_line(run_cli, tmp_path, monkeypatch):
    run = _run_folder(tmp_path / "run")
    real_mkdtemp = tempfile.mkdtemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == tmp_path / "ro":
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkdtemp(*args, dir=dir, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    out = tmp_path / "ro" / "rep"
    assert _refused(run_cli, "report", run, "--out", out) == f"error: --out {out}: cannot write in {tmp_path / 'ro'} (read-only file system)"

    def full(table, folder):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "report.md"))

    monkeypatch.setattr(trimbert.report.render, "write_report", full)
    out = tmp_path / "rep"
    assert _refused(run_cli, "report", run, "--out", out) == (
        f"error: --out {out}: could not write the output: no space left on device ({out / 'report.md'})"
    )


# --------------------------------------------------------------------------------------------------
# Item 1d: SIGTERM cleans up like Ctrl-C: staging and temporary folders removed, "terminated", exit 143

_SLOW = '''
import sys, time
from pathlib import Path

ready, target, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
module = __import__(target, fromlist=[name])


def slow(*args, **kwargs):
    for arg in args[1:2]:  # the staging folder of write_checkpoint: a half-written checkpoint in it
        if isinstance(arg, (str, Path)) and Path(arg).is_dir():
            (Path(arg) / "config.json").write_text("{")
    ready.write_text("ready")
    while True:
        time.sleep(1)


setattr(module, name, slow)
from trimbert.cli import main

main(sys.argv[4:])
'''


def _terminated(tmp_path: Path, target: str, name: str, *args) -> subprocess.CompletedProcess:
    """Run the CLI with ``target.name`` replaced by a step that blocks, SIGTERM it once it blocks."""
    script, ready = tmp_path / "slow.py", tmp_path / "ready"
    script.write_text(_SLOW)
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TMPDIR": str(tmp_path / "tmp")}
    process = subprocess.Popen(
        [sys.executable, str(script), str(ready), target, name, *map(str, args)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), process.communicate(timeout=60)
        blocked = sorted(p.name for p in [*tmp_path.iterdir(), *(tmp_path / "tmp").iterdir()])
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(blocked, process.returncode, stdout, stderr)


def test_sigterm_removes_the_staging_folder(tmp_path, tiny_checkpoint):
    done = _terminated(tmp_path, "trimbert.model.checkpoint", "write_checkpoint",
                       "trim", tiny_checkpoint, "--out", "out", "--drop-ffn", "1")
    assert any(name.startswith(".out.tmp-") for name in done.args)  # it was there while the step ran
    assert done.returncode == 143 and done.stderr.strip() == "terminated", done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready", "slow.py", "tmp"]  # no out, no .out.tmp-*


def test_sigterm_removes_the_temporary_training_folder(tmp_path, tiny_checkpoint):
    data = write_sst2(tmp_path / "SST-2", train_rows=8, dev_rows=4)
    done = _terminated(tmp_path, "trimbert.train.finetune", "make_trainer",
                       "finetune", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--out", "run",
                       "--max-length", "16", "--json")
    assert any(name.startswith("trimbert-train-") for name in done.args)
    assert done.returncode == 143 and done.stderr.strip().splitlines()[-1] == "terminated", done.stderr
    assert not any(p.name.startswith("trimbert-") for p in (tmp_path / "tmp").iterdir())
    assert not (tmp_path / "run").exists()


def test_a_sweep_whose_report_cannot_be_written_keeps_its_records(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    import trimbert.sweep.run

    data = write_sst2(tmp_path / "SST-2", train_rows=8, dev_rows=4)
    recipe = tmp_path / "a.toml"
    recipe.write_text(_recipe_text(tiny_checkpoint, data))

    def full(table, folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trimbert.sweep.run, "write_report", full)
    code, _, err = run_cli("sweep", recipe, "--out", tmp_path / "S")
    assert code == 0, err
    assert err.strip().splitlines()[-1] == "warning: no report: [Errno 28] No space left on device"
    assert [json.loads(line)["status"] for line in (tmp_path / "S" / "results.jsonl").read_text().splitlines()] == ["ok"]
