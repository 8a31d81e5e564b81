"""A version-1 record (tests/fixtures/records-v1, written by trimbert before the typed schema) upgrades
to the exact typed values: every key of its ``extra`` in its sub-record, nothing left over."""

import json
from pathlib import Path

from trimbert.report.records import (
    BenchRun,
    Export,
    HealCost,
    PairedRatio,
    PairedRatios,
    Record,
    SearchCost,
    SweepUnit,
    Timing,
    Training,
)
from trimbert.report.upgrade import upgrade_v1

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "records-v1"


def _line(path, variant, index=0):
    return [row for row in map(json.loads, path.read_text().splitlines()) if row["variant"] == variant][index]


def _ratio(figures, **more):
    return PairedRatio(figures["ratio"], figures["low"], figures["high"], figures["stable"], **more)


def test_a_bench_record_upgrades_its_nested_ratios_and_times():
    raw = next(row for row in json.loads((V1 / "bench" / "bench.json").read_text()) if row["variant"] == "trimmed")
    extra = raw["extra"]

    record = Record.from_dict(raw)

    full = ("rounds", "confidence", "tolerance", "other_cpu")
    assert record.paired == {
        reference: PairedRatios(
            latency=_ratio(ratios["latency"], **{key: ratios["latency"][key] for key in full}),
            train_step=_ratio(ratios["train step"], **{key: ratios["train step"][key] for key in full})
            if "train step" in ratios else None,
        )
        for reference, ratios in extra["paired_vs"].items()
    }
    assert set(record.paired) == {"baseline", "baseline@ort", "baseline@ort-int8"}
    # v1's "paired" named U* (baseline@ort-int8) but held the training step against the PyTorch baseline
    assert record.u_star == extra["paired"]["baseline"] == "baseline@ort-int8" and record.int8_reference is None
    assert record.speedup().ratio == extra["paired"]["latency"]["ratio"]
    assert record.speedup("train step").ratio == extra["paired"]["train step"]["ratio"]
    assert record.paired["baseline"].train_step.ratio == extra["paired"]["train step"]["ratio"]
    assert record.timing == Timing(
        times_ms=extra["times_ms"], p10_ms=extra["p10_ms"], p90_ms=extra["p90_ms"], other_cpu=extra["other_cpu"],
        train_times_ms=extra["times_ms_train"], train_p10_ms=extra["p10_ms_train"],
        train_p90_ms=extra["p90_ms_train"], train_other_cpu=extra["other_cpu_train"],
    )
    assert (record.bench, record.export, record.training, record.sweep, record.extra) == (None, None, None, None, {})
    assert record.latency_ms == raw["latency_ms"] and record.schema_version == 2


def test_a_sweep_runtime_record_upgrades_its_flat_ratios_export_and_provenance():
    raw = _line(V1 / "sweep-runtimes" / "results.jsonl", "ffn@ort-int8")
    extra, bench = raw["extra"], raw["extra"]["bench"]

    record = Record.from_dict(raw)

    assert record.paired == {
        reference: PairedRatios(latency=_ratio(figures)) for reference, figures in extra["paired_vs"].items()
    }
    assert record.u_star == "baseline@ort-int8" and record.int8_reference is None
    assert record.speedup() == PairedRatio(1.0276923272160148, 1.0163114149766925, 1.039073239455337, True)
    assert record.export == Export(runtime="onnxruntime-int8", eval_conditions=extra["eval_conditions"])
    assert record.timing == Timing(times_ms=bench["times_ms"], p10_ms=bench["p10_ms"], p90_ms=bench["p90_ms"], train_times_ms=None)
    assert record.bench == BenchRun(
        settings=bench["settings"], attention_choice=bench["attention_choice"],
        reference_times_ms=bench["baseline_times_ms"], reference_train_times_ms=None,
    )
    assert record.training == Training(
        settings=extra["settings"], data=extra["data"], train_rows=16, eval_rows={"validation": 8},
        train_loss=0.6931494474411011, log_history=extra["log_history"], label_names=["negative", "positive"],
    )
    assert record.sweep == SweepUnit(
        recipe=extra["recipe"], recipe_hash="1a2496885135e2f2", unit="ffn-seed7", run_dir=extra["run_dir"],
        finetune_hash="cc8c98e8593c85c6", recipe_entry=extra["recipe_entry"], finetune_reused=False,
        finetune_conditions=extra["finetune_conditions"], finetune_flops_per_seq=460928.0, finetune_seq_len=16,
        finetune_batch_size=16,
    )
    assert record.extra == {}  # paired_flop_ideal and paired_baseline_latency_ms are dropped (derived)


def test_heal_and_search_costs_upgrade():
    healed = Record.from_dict(_line(V1 / "sweep-heal" / "results.jsonl", "ffn-healed"))
    assert healed.heal == HealCost(
        time_s=0.462420612000642, tokens=88, loss_before=0.00011593483213800937, loss_after=8.757309115026146e-05,
        dir="/tmp/pytest-of-root/pytest-54/test_a_sweep_heals_once_for_ev0/out/heal/eae6d37437a55f7e", reused=False,
    )
    searched = Record.from_dict(_line(V1 / "sweep-search" / "results.jsonl", "searched"))
    assert searched.search == SearchCost(
        dir="/tmp/pytest-of-root/pytest-54/test_a_sweep_searches_once_and0/out/search/77a3df9a87e693a4",
        time_s=4.453029125003013, target_speedup=1.01, predicted_speedup=1.0020366126776363, estimate=1.0, reused=False,
    )
    raw = json.loads((V1 / "sweep-heal" / "heal" / "c5fab258ccdb659b" / "heal.json").read_text())
    record = Record.from_dict(raw)
    extra = raw["extra"]
    assert record.heal == HealCost(
        time_s=extra["heal_time_s"], tokens=extra["tokens"], loss_before=extra["loss_before"],
        loss_after=extra["loss_after"], teacher=extra["teacher"], corpus=extra["corpus"],
        corpus_fingerprint="d078068e007a2bb8", corpus_texts=12, tokens_per_s=extra["tokens_per_s"],
        settings=extra["settings"],
    )
    assert record.training is None and record.extra == {}


def test_a_finetune_record_upgrades_its_training():
    raw = json.loads((V1 / "finetune" / "metrics.json").read_text())
    record = Record.from_dict(raw)
    assert record.training == Training(**raw["extra"])
    assert record.sweep is None and record.timing is None and record.paired == {} and record.extra == {}


def test_the_sweeps_flat_int8_and_train_step_ratios_upgrade():
    extra = {
        "paired_baseline": "b@ort", "paired_speedup": 1.5, "paired_speedup_interval": [1.4, 1.6],
        "paired_speedup_stable": True, "paired_train_step_speedup": 1.2, "paired_train_step_speedup_interval": [1.1, 1.3],
        "paired_train_step_speedup_stable": False, "paired_int8_baseline": "b@ort-int8", "paired_int8_speedup": 1.8,
        "paired_int8_speedup_interval": [1.7, 1.9], "paired_int8_speedup_stable": True,
        "paired_int8_baseline_latency_ms": 3.0, "unknown": 1,
    }
    upgraded = upgrade_v1({"schema_version": 1, "kind": "sweep", "variant": "t@ort-int8", "model": "m", "extra": extra})
    assert upgraded["paired"] == {
        "b@ort": {
            "latency": {"ratio": 1.5, "low": 1.4, "high": 1.6, "stable": True, "rounds": None, "confidence": None,
                        "tolerance": None, "other_cpu": None},
            "train_step": {"ratio": 1.2, "low": 1.1, "high": 1.3, "stable": False, "rounds": None, "confidence": None,
                           "tolerance": None, "other_cpu": None},
        },
        "b@ort-int8": {
            "latency": {"ratio": 1.8, "low": 1.7, "high": 1.9, "stable": True, "rounds": None, "confidence": None,
                        "tolerance": None, "other_cpu": None},
            "train_step": None,
        },
    }
    assert (upgraded["u_star"], upgraded["int8_reference"], upgraded["extra"]) == ("b@ort", "b@ort-int8", {"unknown": 1})
    record = Record.from_dict({"schema_version": 1, "kind": "sweep", "variant": "t@ort-int8", "model": "m", "extra": extra})
    assert record.int8_speedup() == PairedRatio(1.8, 1.7, 1.9, True)
    assert record.speedup("train step") == PairedRatio(1.2, 1.1, 1.3, False) and extra["paired_speedup"] == 1.5
