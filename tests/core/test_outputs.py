"""Output paths: --force replaces only what trimbert wrote, ~ is expanded once, inputs are protected,
unwritable places and OS errors are one line, and staging folders of dead runs are cleaned."""

import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from trimbert.core import outputs
from trimbert.core.outputs import (
    MARKER_FILE,
    atomic_output_dir,
    check_output_dir,
    check_output_path,
    read_marker,
    remove_stale_staging,
)
from trimbert.errors import TrimbertError
from trimbert.model.checkpoint import save
from trimbert.model.structure import STOCK_SPEC_KEY

REFUSED_FOLDER = "refusing to replace a folder trimbert did not write (no .trimbert.json); remove it yourself or choose another --out"
REFUSED_FILE = (
    "refusing to replace a file trimbert did not write (not a trimbert records file); "
    "remove it yourself or choose another --out"
)


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _user_folder(path: Path) -> Path:
    (path / "docs").mkdir(parents=True)
    (path / "docs" / "thesis.txt").write_text("precious")
    (path / ".bashrc").write_text("alias ll='ls -l'")
    return path


def _refused(call, message: str) -> None:
    with pytest.raises(TrimbertError) as caught:
        call()
    assert str(caught.value) == message


def test_force_refuses_a_folder_trimbert_did_not_write(tmp_path):
    home = _user_folder(tmp_path / "home")
    before = _listing(home)
    _refused(lambda: check_output_dir(home, force=True), f"--out {home}: {REFUSED_FOLDER}")
    with pytest.raises(TrimbertError, match=r"already exists \(use --force to replace it\)"):
        check_output_dir(home, force=False)
    (home / "metrics.json").write_text('{"accuracy": 0.9}')  # a metrics.json that is no trimbert record
    before = _listing(home)
    _refused(lambda: check_output_dir(home, force=True), f"--out {home}: {REFUSED_FOLDER}")
    assert _listing(home) == before


@pytest.mark.parametrize(
    "name, content",
    [
        (MARKER_FILE, {"written_by": "trimbert", "version": "0.1.0", "command": "trimbert trim minilm --out x"}),
        ("metrics.json", {"kind": "finetune", "variant": "run", "model": "m", "schema_version": 1}),
        ("heal.json", {"kind": "heal", "variant": "healed", "model": "m", "schema_version": 1}),
        ("export.json", {"source": "run", "output": "logits", "opset": 17, "int8": False}),
        ("search.json", {"predictor": {}, "candidates": [], "best": {}}),
        ("config.json", {"model_type": "trimbert", "trim_spec": {"drop_ffn": [1]}}),
        ("config.json", {"model_type": "bert", "trimbert_trim_spec": {"drop_ffn": [1]}}),
    ],
)
def test_force_replaces_a_folder_trimbert_wrote(tmp_path, name, content):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / name).write_text(json.dumps(content))
    assert check_output_dir(folder, force=True) == folder


def test_force_replaces_an_empty_folder_an_earlier_sweep_and_an_earlier_report(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty", force=True) == tmp_path / "empty"
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "results.jsonl").write_text(json.dumps({"kind": "sweep", "variant": "b", "schema_version": 1}) + "\n")
    assert check_output_dir(sweep, force=True) == sweep
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# trimbert report — sst2\n")
    assert check_output_dir(report, force=True) == report
    (report / "report.md").write_text("# my report\n")
    _refused(lambda: check_output_dir(report, force=True), f"--out {report}: {REFUSED_FOLDER}")


def test_a_file_output_replaces_only_trimbert_records(tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "data"}')
    _refused(lambda: check_output_path(mine, force=True), f"--out {mine}: {REFUSED_FILE}")
    assert mine.read_text() == '{"my": "data"}'
    records = tmp_path / "bench.json"
    records.write_text(json.dumps([{"kind": "bench", "variant": "a", "schema_version": 1}]))
    assert check_output_path(records, force=True) == records
    (tmp_path / "folder").mkdir()
    _refused(
        lambda: check_output_path(tmp_path / "folder", force=True),
        f"--out {tmp_path / 'folder'} is a folder; give a file name for the output",
    )


def test_tilde_is_expanded_once_and_the_home_folder_is_refused(tmp_path, monkeypatch, tiny_model):
    home = _user_folder(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    before = _listing(home)
    _refused(lambda: check_output_dir("~", force=True), f"--out ~: {REFUSED_FOLDER}")
    _refused(lambda: save(tiny_model, "~", force=True), f"--out ~: {REFUSED_FOLDER}")
    assert _listing(home) == before
    assert check_output_dir("~/new", force=False) == home / "new"
    assert save(tiny_model, "~/new") == home / "new"  # the path checked is the path written
    assert (home / "new" / "model.safetensors").is_file() and not (tmp_path / "cwd" / "~").exists()


def test_an_output_that_is_or_holds_an_input_is_refused(tmp_path):
    data = tmp_path / "corpus"
    data.mkdir()
    (data / "ok.txt").write_text("a text\n")
    for out, item in ((data, data / "ok.txt"), (tmp_path, data), (data, data)):
        _refused(
            lambda out=out, item=item: check_output_dir(out, force=True, inputs=(None, "minilm", item)),
            f"--out {out}: it holds the input {item}; write the output elsewhere",
        )
    assert (data / "ok.txt").read_text() == "a text\n"
    assert check_output_dir(tmp_path / "new", force=True, inputs=(data, None, "")) == tmp_path / "new"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_an_unwritable_place_is_one_line(tmp_path, monkeypatch):
    _refused(lambda: check_output_dir("/proc/x", force=False), "--out /proc/x: cannot write in /proc (no such file or directory)")
    _refused(lambda: check_output_path("/proc/x.json", force=True), "--out /proc/x.json: cannot write in /proc (no such file or directory)")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    _refused(
        lambda: check_output_dir(tmp_path / "out", force=False),
        f"--out {tmp_path / 'out'}: cannot write in {tmp_path} (read-only file system)",
    )
    assert list(tmp_path.iterdir()) == []


def test_the_written_folder_is_marked_and_an_os_error_is_one_line(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as staging:
        (staging / "a.txt").write_text("new")
    marker = read_marker(out)
    assert marker["written_by"] == "trimbert" and marker["version"] == trimbert_version()
    assert sorted(path.name for path in out.iterdir()) == [MARKER_FILE, "a.txt"]

    with pytest.raises(TrimbertError) as caught, atomic_output_dir(out, force=True):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value) == f"--out {out}: could not write the output: no space left on device"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # no staging folder left
    assert (out / "a.txt").read_text() == "new"  # the old output is kept


def trimbert_version() -> str:
    from importlib.metadata import version

    return version("trimbert")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_rerun_removes_the_staging_folders_of_dead_runs_only(tmp_path):
    host = outputs._host()
    dead = _dead_pid()
    names = {
        "dead tmp": f".out.tmp-{host}-{dead}-abc12345",
        "dead old": f".out.old-{host}-{dead}-xyz_6789",
        "live": f".out.tmp-{host}-{os.getpid()}-live0000",
        "other machine": f".out.tmp-elsewhere-{dead}-abc12345",
        "no pid (an earlier trimbert)": ".out.tmp-k2j4h5g6",
        "another output's": f".out2.tmp-{host}-{dead}-abc12345",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{")  # a half-written checkpoint
    removed = remove_stale_staging(tmp_path / "out")
    assert sorted(path.name for path in removed) == sorted([names["dead tmp"], names["dead old"]])
    left = {path.name for path in tmp_path.iterdir()}
    assert left == {names[key] for key in names if not key.startswith("dead")}
    with atomic_output_dir(tmp_path / "out2") as staging:  # a rerun of another output cleans its own
        assert staging.name.startswith(f".out2.tmp-{host}-{os.getpid()}-")
    assert names["another output's"] not in {path.name for path in tmp_path.iterdir()}


@pytest.mark.parametrize("out", ["", " ", ".", "..", "./"])
def test_an_output_that_names_no_folder_is_refused(out):
    with pytest.raises(TrimbertError, match=r"give a name for the output folder, not the current folder"):
        check_output_dir(out, force=True)


def test_the_current_folder_an_ancestor_or_a_holder_of_the_input_is_refused(tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for out in (str(work), str(tmp_path / "a")):
        with pytest.raises(TrimbertError, match=r"the current folder or one of its ancestors cannot be the output"):
            check_output_dir(out, force=True)
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    with pytest.raises(TrimbertError, match=r"it holds the input"):
        check_output_dir(tmp_path / "models", force=True, inputs=(str(model),))


def test_an_output_under_a_file_or_without_permission_is_refused_before_work(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrimbertError, match=r"is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "run", force=False)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(TrimbertError, match=r"cannot write in .* \(permission denied\)"):
        check_output_path(tmp_path / "new" / "out.json", force=False)


def test_the_marker_recognizes_a_trim_saved_as_plain_bert_by_the_models_key(tmp_path):
    assert outputs._STOCK_SPEC_KEY == STOCK_SPEC_KEY  # outputs cannot import the model layer; the key is copied
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", STOCK_SPEC_KEY: {"layers": 2}}))
    assert outputs.written_by_trimbert(tmp_path)
