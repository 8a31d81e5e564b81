"""A sweep folder being marked by the other rank of a torchrun job is recognized, never taken for another output."""

import json

from trimbert.core import outputs
from trimbert.sweep import plan
from trimbert.sweep.plan import sweep_owner

SWEEP_MARK = {"written_by": "trimbert", "kind": "sweep", "model": "m", "task": "sst2"}


def test_a_marker_written_between_two_reads_is_the_sweep_s(tmp_path, monkeypatch):
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / outputs.MARKER_FILE).write_text(json.dumps(SWEEP_MARK))
    (folder / "recipe.toml").write_text("")
    reads = iter([None, SWEEP_MARK, SWEEP_MARK, SWEEP_MARK])  # not there yet, then there (the other rank)
    monkeypatch.setattr(outputs, "read_marker", lambda path: next(reads))
    assert sweep_owner(folder) == ("sweep", SWEEP_MARK)


def test_the_marker_is_written_atomically_and_its_temporary_file_counts_as_fresh(tmp_path, monkeypatch):
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / f".{outputs.MARKER_FILE}.abc123.tmp").write_text("{")  # what another rank is writing now
    (folder / plan.LOCK_FILE).write_text("")
    assert plan._fresh(folder)
    (folder / "recipe.toml").write_text("")
    assert not plan._fresh(folder)
    replaced = []
    real_replace = outputs.write_json_atomic.__globals__["os"].replace
    monkeypatch.setattr(outputs.write_json_atomic.__globals__["os"], "replace", lambda a, b: (replaced.append(b), real_replace(a, b)))
    outputs.write_marker(folder, kind="sweep")
    assert replaced == [folder / outputs.MARKER_FILE]
    assert outputs.read_marker(folder)["kind"] == "sweep"
