"""Sweeps that compress: a ``compress`` variant runs trimbert compress on another variant's fine-tuned run
and its record (accuracy in the target runtime, paired speed-up over U*) sits beside the others."""

from __future__ import annotations

import json

import pytest
from test_sweep import recipe_text

import trimbert.search.latency
import trimbert.sweep.compressing
from trimbert.compress import stages as compress_stages
from trimbert.core.io import read_jsonl
from trimbert.errors import TrimbertError
from trimbert.report.records import SCHEMA_VERSION, Record
from trimbert.sweep.plan import RESULTS_FILE, plan_sweep
from trimbert.sweep.recipe import load_recipe
from trimbert.sweep.run import run_sweep

FINETUNE = {"epochs": 1, "lr": 1e-3, "batch_size": 16, "max_length": 16, "seed": 7, "warmup_ratio": 0.0}
BENCH = {"batch_size": 2, "seq_len": 16, "repeats": 2, "warmup": 1, "threads": 1, "device": "cpu", "max_seconds": 0.001}
COMPRESS = {"speedup": 1.3, "samples": 16, "seq_len": 16, "batch_size": 2, "threads": 1, "probes": 5, "bench_seconds": 1.0}
# As tests/compress/test_job_methods.py: the probes' latencies recorded (ms of the tiny model's parts: fixed,
# per block, a block's heads, an FFN's fixed part, its neurons, a LayerNorm), the stages that export and time
# in every runtime given (tests/compress/test_job.py runs them); the predictor and the compression run.
COSTS = {"const": 1.0, "block": 0.5, "heads": 1.5, "ffn": 0.5, "neurons": 2.0, "layernorm": 0.1}
REFERENCE = {"accuracy": {"pytorch": 0.5, "onnxruntime": 0.5}, "latency_ms": {"pytorch": 4.0, "onnxruntime": 2.0},
             "u_star": "onnxruntime", "target": "onnx", "metric": "accuracy"}
EVALUATED = {"runtime": "onnxruntime", "metric": "accuracy", "value": 0.625, "metrics": {"accuracy": 0.625}}
BENCHED = {"u_star": "onnxruntime", "u_star_accuracy": 0.5, "latency_ms": 1.5, "untrimmed_latency_ms": {"onnxruntime": 2.0},
           "speedup": 1.31, "low": 1.25, "high": 1.37, "stable": True, "other_cpu": 0.0}


def recorded_ms(spec) -> float:
    layers, heads, intermediate = 2, 4, 64
    ms = COSTS["const"]
    for block in spec.kept_layers(layers):
        ms += COSTS["block"] + COSTS["heads"] * spec.head_counts.get(block, heads) / heads + COSTS["layernorm"]
        if block not in spec.drop_ffn:
            ms += COSTS["ffn"] + COSTS["layernorm"] + COSTS["neurons"] * spec.ffn_widths.get(block, intermediate) / intermediate
    return ms


@pytest.fixture
def quick(monkeypatch):
    def measure_specs(model, specs, conditions, **_):
        return [{"spec": spec.to_dict(), "summary": spec.summary(), "measured_ms": recorded_ms(spec),
                 "p10_ms": recorded_ms(spec), "p90_ms": recorded_ms(spec)} for spec in specs]

    monkeypatch.setattr(trimbert.search.latency, "measure_specs", measure_specs)
    for stage, result in (("reference", REFERENCE), ("export", {"runtime": "onnxruntime"}), ("evaluate", EVALUATED), ("bench", BENCHED)):
        monkeypatch.setattr(compress_stages.Stages, stage, lambda self, job, result=result: dict(result))
    # the compression's check of its first pass (export and time it beside U*): it meets the 1.3x asked
    checked = {"asked": 1.3, "measured": 1.31, "latency_ms": 1.5, "speedup": 1.31, "low": 1.25, "high": 1.37,
               "stable": True, "check_seconds": 1.0}
    monkeypatch.setattr(compress_stages.Stages, "_check", lambda self, job: dict(checked))


@pytest.fixture
def sst2(tmp_path):
    from conftest import write_sst2

    return write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=8)


def _write(tmp_path, tiny_checkpoint, sst2, variants):
    path = tmp_path / "compress.toml"
    path.write_text(recipe_text(tiny_checkpoint, {"task": "sst2", "data_dir": str(sst2)}, variants, finetune=FINETUNE, bench=BENCH))
    return path


def test_a_sweep_compresses_the_baseline_and_records_it(tmp_path, tiny_checkpoint, sst2, quick, monkeypatch):
    jobs = []
    real = trimbert.sweep.compressing.run_compress
    monkeypatch.setattr(trimbert.sweep.compressing, "run_compress", lambda *a, **k: jobs.append(a) or real(*a, **k))
    path = _write(tmp_path, tiny_checkpoint, sst2, [{"name": "small", "compress": COMPRESS}, {"name": "baseline"}])
    recipe = load_recipe(path)
    assert [v.name for v in recipe.order()] == ["baseline", "small"] and recipe.baseline.name == "baseline"
    assert [p.unit.name for p in plan_sweep(recipe, tmp_path / "none", only="small")] == ["baseline-seed7", "small-seed7"]
    out = tmp_path / "out"
    result = run_sweep(path, out)
    assert result.ok and result.done == ["baseline-seed7", "small-seed7"]
    assert [(str(a[0]), str(a[2])) for a in jobs] == [(str(out / "runs" / "baseline-seed7"), str(out / "runs" / "small-seed7"))]
    stages = json.loads((out / "runs" / "small-seed7" / "compress.json").read_text())["stages"]
    row = next(r for r in read_jsonl(out / RESULTS_FILE) if r["variant"] == "small")
    # written in the current schema, not upgraded from version 1 when read
    assert row["schema_version"] == SCHEMA_VERSION and row["paired"] and not {k for k in row["extra"] if k.startswith("paired")}
    assert sorted(row["extra"]) == ["compress_from", "compress_settings", "compress_time_s", "compress_u_star_accuracy"]
    record = Record.from_dict(row)
    assert record.status == "ok" and record.kind == "sweep" and record.seed == 7
    assert (record.metrics, record.main_metric, record.latency_ms) == ({"accuracy": 0.625}, "accuracy", 1.5)
    assert record.conditions["runtime"] == record.export.runtime == "onnxruntime"
    assert record.u_star == "baseline@ort"  # the input model in U*'s runtime, as compress measured it
    speedup = record.speedup()
    assert (speedup.ratio, speedup.low, speedup.high, speedup.stable) == (1.31, 1.25, 1.37, True)
    assert record.sweep.recipe_hash == recipe.fingerprint(recipe.variant("small"), 7)
    assert record.trim == stages["compress"]["spec"] and record.trim_summary != "untrimmed"  # the compression's trim
    assert [p["measured"] for p in stages["compress"]["passes"]] == [1.31]  # checked once, met the target: kept
    table = {row.variant: row for row in result.table.rows}
    assert "small" in table
    # resumed: nothing runs again; the input fine-tuned again (another lr): the compress starts over
    assert run_sweep(path, out).skipped == ["baseline-seed7", "small-seed7"] and len(jobs) == 1
    changed = _write(tmp_path, tiny_checkpoint, sst2, [{"name": "small", "compress": COMPRESS}, {"name": "baseline", "finetune": {"lr": 2e-3}}])
    plan = plan_sweep(load_recipe(changed), out)
    assert [(p.unit.name, p.action, p.reason) for p in plan] == [
        ("baseline-seed7", "run", "recipe changed"), ("small-seed7", "run", "recipe changed")]


@pytest.mark.parametrize(
    ("variants", "key", "problem"),
    [
        ([{"name": "small", "compress": {"speedup": 1.5}, "drop_ffn": "1"}], "variants[1].compress",
         "compresses the fine-tuned model of another variant (from): remove drop_ffn"),
        ([{"name": "small", "compress": {"speedup": 1.5, "from": "basline"}}], "variants[1].compress.from",
         "unknown variant 'basline' (variants: baseline, small); did you mean 'baseline'?"),
        ([{"name": "small", "compress": {"speedup": 1.5, "runtime": "tensorrt"}}], "variants[1].compress.runtime",
         "expected 'auto', 'onnx', 'onnx-int8', 'openvino' or 'openvino-int8', got 'tensorrt'"),
        ([{"name": "small", "compress": {"runtime": "onnx"}}], "variants[1].compress",
         "give one target: --speedup X (over U*) or --latency-ms X"),
        ([{"name": "small", "compress": {"speedup": 1.5}}, {"name": "kd", "drop_ffn": "1", "teacher": "small"}],
         "variants[2].teacher", "'small' is a compress variant: distil from a fine-tuned variant"),
    ],
)
def test_bad_compress_variants_are_one_line_errors(tmp_path, tiny_checkpoint, sst2, variants, key, problem):
    path = _write(tmp_path, tiny_checkpoint, sst2, [{"name": "baseline"}, *variants])
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path)
    assert str(raised.value) == f"{path}: {key}: {problem}"


def test_a_compress_variant_needs_something_to_compress(tmp_path, tiny_checkpoint, sst2):
    path = _write(tmp_path, tiny_checkpoint, sst2, [{"name": "ffn", "drop_ffn": "1"}, {"name": "small", "compress": {"speedup": 1.5}}])
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path)
    assert str(raised.value) == f'{path}: variants[1].compress.from: missing: no untrimmed variant to compress: say which (from = "<variant>")'
    path = _write(tmp_path, tiny_checkpoint, sst2, [{"name": "ffn", "drop_ffn": "1"}, {"name": "small", "compress": {"speedup": 1.5, "from": "ffn"}}])
    recipe = load_recipe(path)
    assert recipe.needs(recipe.variant("small")) == ["ffn"] and [u.name for u in recipe.units()] == ["ffn-seed7", "small-seed7"]
