"""Sweeps with ONNX Runtime: each unit exported and evaluated there, one record per runtime."""
# ruff: noqa: F811  (the fixtures imported from test_sweep are parameters here)

from __future__ import annotations

import pytest
from test_sweep import BENCH, make_recipe, sst2  # noqa: F401  (fixtures)

from trimbert.core.io import read_jsonl
from trimbert.data.source import DataSource
from trimbert.deploy.evaluate import evaluate_onnx
from trimbert.errors import TrimbertError
from trimbert.sweep.plan import RESULTS_FILE, plan_sweep
from trimbert.sweep.recipe import load_recipe
from trimbert.sweep.run import run_sweep

RUNTIMES = {**BENCH, "runtimes": ["pytorch", "onnxruntime", "onnxruntime-int8"]}
TWO = [{"name": "baseline"}, {"name": "ffn", "drop_ffn": "1"}]


def test_every_runtime_gets_a_record_with_the_exported_models_accuracy(make_recipe, tmp_path, sst2):  # noqa: F811
    recipe, out = make_recipe(TWO, bench=RUNTIMES), tmp_path / "sweep"
    result = run_sweep(recipe, out)
    assert result.ok and result.done == ["baseline-seed7", "ffn-seed7"]
    rows = read_jsonl(out / RESULTS_FILE)
    # a unit's ONNX Runtime records first, its own record last (its presence means the unit is complete)
    assert [row["variant"] for row in rows] == [
        "baseline@ort", "baseline@ort-int8", "baseline", "ffn@ort", "ffn@ort-int8", "ffn",
    ]
    by_name = {row["variant"]: row for row in rows}
    assert all(row["status"] == "ok" for row in rows)
    assert {name: row["conditions"]["runtime"] for name, row in by_name.items()} == {
        "baseline": "pytorch", "baseline@ort": "onnxruntime", "baseline@ort-int8": "onnxruntime-int8",
        "ffn": "pytorch", "ffn@ort": "onnxruntime", "ffn@ort-int8": "onnxruntime-int8",
    }
    source = DataSource(task="sst2", data_dir=str(sst2))
    export = out / "runs" / "ffn-seed7" / "onnx"
    int8 = evaluate_onnx(export, source, int8=True, max_length=16)
    assert by_name["ffn@ort-int8"]["metrics"] == int8["metrics"]
    assert by_name["ffn@ort"]["metrics"] == evaluate_onnx(export, source, max_length=16)["metrics"]
    assert by_name["ffn@ort"]["train_step_ms"] is None and by_name["ffn"]["latency_ms"] is not None
    # ratios against U* (the untrimmed model in its fastest runtime, int8 included), and int8 also
    # against the untrimmed model in the same int8 runtime
    fastest = by_name["ffn"]["u_star"]
    assert fastest in ("baseline", "baseline@ort", "baseline@ort-int8")
    assert {by_name[name]["u_star"] for name in ("ffn", "ffn@ort", "ffn@ort-int8")} == {fastest}
    if fastest != "baseline@ort-int8":
        assert by_name["ffn@ort-int8"]["int8_reference"] == "baseline@ort-int8"
        assert by_name["ffn@ort-int8"]["paired"]["baseline@ort-int8"]["latency"]["ratio"] > 0
    # the baseline's own runtimes were timed in the baseline unit's own bench run, whose fastest runtime
    # (its reference) may differ from the one of the ffn unit's run: exactly one has no ratio, the
    # others are paired with it
    untrimmed = {"baseline", "baseline@ort", "baseline@ort-int8"}
    own = [name for name in sorted(untrimmed) if by_name[name]["u_star"] is None]
    assert len(own) == 1
    for other in untrimmed - set(own):
        assert by_name[other]["u_star"] == own[0]
    notes = " ".join(result.table.notes)
    assert (
        "speed-ups are against U*, the untrimmed model at its fastest deployment measured (within 0.5 points of "
        "its fp32 metric where the runtimes' accuracies are known: "
    ) in notes
    stars = {row.paired_baseline for row in result.table.rows if row.speedup is not None and row.paired_baseline}
    assert stars and stars <= untrimmed
    for star in stars:  # each reference named with its accuracy
        assert f"{star}, accuracy {by_name[star]['metrics']['accuracy']:.4f}" in notes
    for name in ("ffn", "ffn@ort", "ffn@ort-int8", *untrimmed):  # ratios vs every untrimmed runtime, by report name
        assert set(by_name[name]["paired"]) == untrimmed - {name}
    assert {row.variant for row in result.table.rows} == set(by_name)
    assert {item.action for item in plan_sweep(load_recipe(recipe), out)} == {"skip"}  # resumable


def test_export_table_exports_and_evaluates_without_timing_onnx(make_recipe, tmp_path):
    recipe = make_recipe([{"name": "baseline"}, {"name": "ffn", "drop_ffn": "1", "export": {"int8": True}}])
    loaded = load_recipe(recipe)
    assert loaded.export_for(loaded.variant("baseline")) is None
    assert loaded.export_for(loaded.variant("ffn")).int8 is True
    with_table = load_recipe(make_recipe(TWO, top={"export": {"int8": False}}, name="r2.toml"))
    assert with_table.export_for(with_table.variant("ffn")).int8 is False
    assert "export" in with_table.entry(with_table.variant("ffn"), 7)  # part of the fingerprint
    assert "export" not in loaded.entry(loaded.variant("baseline"), 7)  # old fingerprints unchanged
    out = tmp_path / "sweep"
    assert run_sweep(recipe, out).ok
    names = [row["variant"] for row in read_jsonl(out / RESULTS_FILE)]
    assert names == ["baseline", "ffn"]  # exported and evaluated, but timed in PyTorch only
    assert (out / "runs" / "ffn-seed7" / "onnx" / "model.int8.onnx").is_file()
    assert not (out / "runs" / "baseline-seed7" / "onnx").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bench": {**BENCH, "runtimes": ["onnxruntime"]}}, "bench.runtimes: must include pytorch"),
        ({"bench": {**BENCH, "runtimes": ["tensorrt"]}}, "bench.runtimes"),
        ({"top": {"export": {"int8": "yes"}}}, "export.int8"),
        ({"variants": [{"name": "b"}, {"name": "f", "drop_ffn": "1", "export": {"opset": 9}}]}, r"variants\[1\]\.export\.opset"),
    ],
)
def test_bad_runtime_and_export_tables(make_recipe, options, message):
    variants = options.pop("variants", TWO)
    with pytest.raises(TrimbertError, match=message):
        load_recipe(make_recipe(variants, **options))


def test_only_the_variants_with_an_export_table_run_in_onnx_runtime(make_recipe, tmp_path):
    variants = [{"name": "baseline", "export": {}}, {"name": "ffn", "drop_ffn": "1"}, {"name": "ffn0", "drop_ffn": "0", "export": {}}]
    recipe = load_recipe(make_recipe(variants, bench={**BENCH, "runtimes": ["pytorch", "onnxruntime"]}))
    assert [recipe.export_for(variant) is not None for variant in recipe.variants] == [True, False, True]
    out = tmp_path / "sweep"
    assert run_sweep(recipe, out).ok
    rows = read_jsonl(out / RESULTS_FILE)
    assert [row["variant"] for row in rows] == ["baseline@ort", "baseline", "ffn", "ffn0@ort", "ffn0"]
    # ffn ran in PyTorch only, but beside the baseline in both fp32 runtimes: its reference is the faster one
    ffn = next(row for row in rows if row["variant"] == "ffn")
    assert ffn["u_star"] in ("baseline", "baseline@ort") and ffn["paired"][ffn["u_star"]]["latency"]["ratio"] > 0
    assert ffn["bench"]["settings"]["runtimes"] == ["pytorch", "onnxruntime"]
