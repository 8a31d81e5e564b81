"""Sweeps that search: the search table checked, one search for every seed, the searched trim fine-tuned."""

from __future__ import annotations

import json

import pytest
from recorded_latency import recorded_speedup, use_recorded_latency
from test_sweep import ok_records, recipe_text

import trimbert.sweep.searching
from trimbert.errors import TrimbertError
from trimbert.spec import TrimSpec
from trimbert.sweep.recipe import load_recipe
from trimbert.sweep.run import run_sweep
from trimbert.sweep.searching import SEARCH_DIR

SEARCH = {
    "speedup": 1.01, "score_rows": 10, "population": 2, "generations": 1, "probes": 5, "repeats": 3,
    "max_drop_layers": 1, "seq_len": 16, "threads": 1,
}


@pytest.fixture
def sst2(tmp_path):
    from conftest import write_sst2

    return write_sst2(tmp_path / "SST-2", train_rows=40, dev_rows=8)  # 24 rows trained on, 16 to score


def _write(tmp_path, tiny_checkpoint, sst2, variants):
    finetune = {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 16, "max_train_samples": 24, "warmup_ratio": 0.0}
    path = tmp_path / "search.toml"
    path.write_text(recipe_text(tiny_checkpoint, {"task": "sst2", "data_dir": str(sst2)}, variants, finetune=finetune, top={"seeds": [1, 2]}))
    return path


@pytest.mark.parametrize(
    ("variant", "key", "problem"),
    [
        ({"name": "x", "drop_ffn": "1", "search": {"speedup": 1.2}}, "variants[1].search", "the search chooses the whole trim: remove drop_ffn"),
        ({"name": "x", "search": {}}, "variants[1].search", "give exactly one target"),
        ({"name": "x", "search": {"speedup": 1.2, "populaton": 3}}, "variants[1].search.populaton", "did you mean 'population'"),
        ({"name": "x", "search": {"speedup": 0.5}}, "variants[1].search.speedup", "must be at least 1.0"),
    ],
)
def test_bad_search_tables_are_one_line_errors(tmp_path, tiny_checkpoint, sst2, variant, key, problem):
    path = _write(tmp_path, tiny_checkpoint, sst2, [{"name": "baseline"}, variant])
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: {key}") and problem in message, message


def test_a_sweep_searches_once_and_fine_tunes_the_searched_trim(tmp_path, tiny_checkpoint, sst2, monkeypatch):
    probe_runs = use_recorded_latency(monkeypatch)  # the predictor fitted on recorded timings, not this machine's
    searches = []
    real = trimbert.sweep.searching.search
    monkeypatch.setattr(trimbert.sweep.searching, "search", lambda *a, **k: searches.append(a[2]) or real(*a, **k))
    path = _write(tmp_path, tiny_checkpoint, sst2, [{"name": "baseline"}, {"name": "searched", "search": SEARCH}])
    recipe = load_recipe(path)
    assert recipe.baseline.name == "baseline" and not recipe.variant("searched").untrimmed
    result = run_sweep(path, tmp_path / "out")
    assert result.ok and len(searches) == 1 and len(probe_runs) == 1  # the probes timed once, for both seeds
    folder = searches[0]
    best = json.loads((folder / "best.json").read_text())
    records = ok_records(tmp_path / "out")["searched"]
    assert [r["search"]["reused"] for r in records] == [False, True]
    assert {r["search"]["dir"] for r in records} == {str(folder)}
    assert folder.parent == tmp_path / "out" / SEARCH_DIR and (tmp_path / "out" / SEARCH_DIR / "cache").is_dir()
    summary = TrimSpec.from_dict(best["trim_spec"]).summary()
    assert all(r["trim_summary"] == summary for r in records)
    assert records[0]["search"]["estimate"] == best["estimate"]
    assert records[0]["search"]["time_s"] > 0
    # the recorded timings predict the winner inside the search's window: 5% under the 1.01x target to 10% over it
    searched = json.loads((folder / "search.json").read_text())
    assert searched["best"]["predicted_speedup"] == pytest.approx(recorded_speedup(TrimSpec.from_dict(best["trim_spec"])))
    assert 1.01 * 0.95 <= searched["best"]["predicted_speedup"] <= 1.01 * 1.1
    assert run_sweep(path, tmp_path / "out").skipped and len(searches) == 1
