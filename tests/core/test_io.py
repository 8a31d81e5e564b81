"""Atomic file io: a reader never sees half a file or half a JSON line; a failed write keeps the old file."""

import json
import os
import stat

import pytest

from trimbert.core import io
from trimbert.core.io import append_jsonl_atomic, read_jsonl, write_json_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"accuracy": 0.5})

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "replace", refuse)
    with pytest.raises(OSError, match="No space left on device"):
        write_json_atomic(path, {"accuracy": 0.9})
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["metrics.json"]


def test_a_written_file_gets_the_permissions_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", [1])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_appended_lines_read_back_and_a_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "results.jsonl"
    append_jsonl_atomic(path, {"variant": "a"})
    append_jsonl_atomic(path, {"variant": "b"})
    with open(path, "a") as handle:
        handle.write('{"variant": "c"')  # a kill in the middle of a line
    assert read_jsonl(path) == [{"variant": "a"}, {"variant": "b"}]
