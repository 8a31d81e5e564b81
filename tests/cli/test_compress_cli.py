"""``trimbert compress`` from the command line: one-line errors for bad values, before any work."""

import pytest
from conftest import write_sst2

from tests.compress.test_job import make_tiny_run


def _one_line_error(code, err):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--units", "neurons"), "error: --units: expected 'heads+ffn', 'heads' or 'ffn', got 'neurons'"),
        (("--width-multiple", "0"), "error: --width-multiple: must be at least 1, got 0"),
        (("--method", "evolve"), "error: --method: expected 'retraining-free' or 'search', got 'evolve'"),
        (("--recover", "heal"), "error: --recover: expected 'none', 'distill' or 'heal+distill', got 'heal'"),
        (("--heal-steps", "0"), "error: --heal-steps: must be at least 1, got 0"),
        (("--method", "search", "--units", "heads"),
         "error: --units: only --method retraining-free removes one kind of unit; the search trims both"),
    ],
)
def test_bad_values_are_one_line_errors(run_cli, tmp_path, options, message):
    code, _, err = run_cli("compress", "minilm", "--task", "sst2", "--speedup", "1.5", "--out", tmp_path / "out", *options)
    assert _one_line_error(code, err) == message
    assert not (tmp_path / "out").exists()


def test_an_unreadable_metrics_json_of_the_input_run_is_a_one_line_error(run_cli, tmp_path, minilm_dir):
    run = make_tiny_run(tmp_path, minilm_dir)
    (run / "metrics.json").write_text("{half a record")
    data = write_sst2(tmp_path / "SST-2")
    code, _, err = run_cli("compress", run, "--task", "sst2", "--data-dir", data, "--speedup", "1.5", "--out", tmp_path / "out")
    line = _one_line_error(code, err)
    assert line.startswith(f"error: {run / 'metrics.json'}: unreadable (")
    assert not (tmp_path / "out").exists()
