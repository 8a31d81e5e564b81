"""Tests of trimbert.report: collecting records, building rows, Pareto fronts, rendering, writing."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import statistics

import matplotlib.image
import pytest
from rich.console import Console

from trimbert.errors import TrimbertError
from trimbert.report.aggregate import build_rows, merge_records
from trimbert.report.collect import collect_records
from trimbert.report.pareto import pareto_front
from trimbert.report.records import PairedRatio, PairedRatios, Record
from trimbert.report.render import render_markdown, render_table, write_report
from trimbert.report.tables import load_results_csv, load_results_json

BASE_PARAMS = 22_713_216
FFN_PARAMS = 19_166_208
FFN_TRIM = {"drop_ffn": [1, 3, 5]}
NORM_TRIM = {"attention_normalizer": "relu"}
BENCH_SETUP = {
    "batch_size": 32,
    "seq_len": 128,
    "conditions": {"device": "cpu", "date": "2025-01-01T00:00:00+00:00"},
}


def summary(trim: dict) -> str:
    """A short summary like TrimSpec.summary() gives."""
    return ", ".join(f"{key}={value}" for key, value in trim.items()) or "untrimmed"


def finetune(variant="baseline", *, trim=None, accuracy=0.82, seed=42, task="sst2", **fields) -> Record:
    trim = trim or {}
    values = {
        "metrics": {"accuracy": accuracy},
        "main_metric": "accuracy",
        "params": BASE_PARAMS if not trim else FFN_PARAMS,
        "disk_bytes": 90_866_120 if not trim else 76_680_000,
        "flops_per_seq": 2.9e9 if not trim else 2.4e9,
        "train_time_s": 300.0 if not trim else 240.0,
        **fields,
    }
    return Record(
        kind="finetune",
        variant=variant,
        model="minilm",
        trim=trim,
        trim_summary=summary(trim),
        task=task,
        seed=seed,
        **values,
    )


def bench(variant="baseline", *, trim=None, latency_ms=40.0, side_by_side=True, **fields) -> Record:
    """A bench record; a trimmed one was measured side by side with the 40 ms baseline (``bench --vs``):
    its paired ratio is 40 / latency with a ±2% interval, unless ``side_by_side`` is False."""
    trim = trim or {}
    values = {"params": BASE_PARAMS if not trim else FFN_PARAMS, **BENCH_SETUP, **fields}
    if trim and side_by_side:
        ratio = 40.0 / latency_ms
        interval = PairedRatio(ratio, low=0.98 * ratio, high=1.02 * ratio, stable=True, rounds=20)
        values.setdefault("paired", {"baseline": PairedRatios(latency=interval)})
        values.setdefault("u_star", "baseline")
    return Record(
        kind="bench",
        variant=variant,
        model=f"runs/{variant}",
        trim=trim,
        trim_summary=summary(trim),
        latency_ms=latency_ms,
        **values,
    )


def sweep(
    variant="ffn-alternate", *, trim=FFN_TRIM, accuracy=0.80, latency_ms=30.0, seed=1, **fields
) -> Record:
    """A sweep record benched side by side with the 40 ms baseline (paired ratio 40 / latency, ±2%)."""
    record = finetune(variant, trim=trim, accuracy=accuracy, seed=seed, latency_ms=latency_ms, **BENCH_SETUP)
    record.kind = "sweep"
    if trim:
        ratio = 40.0 / latency_ms
        record.paired = {"baseline": PairedRatios(latency=PairedRatio(ratio, 0.98 * ratio, 1.02 * ratio, True))}
        record.u_star = "baseline"
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))


def standard_records() -> list[Record]:
    """Baseline and two trimmed variants, each a fine-tune plus a bench record."""
    return [
        finetune("baseline"),
        bench("baseline", latency_ms=40.0),
        finetune("ffn-alternate", trim=FFN_TRIM, accuracy=0.80),
        bench("ffn-alternate", trim=FFN_TRIM, latency_ms=30.0),
        finetune("relu-attention", trim=NORM_TRIM, accuracy=0.78, params=BASE_PARAMS),
        bench("relu-attention", trim=NORM_TRIM, latency_ms=45.0, params=BASE_PARAMS),
    ]


def without_paired_vs(rows):
    """The rows as results.csv holds them: without the ratios against every untrimmed runtime."""
    return [dataclasses.replace(row, paired_vs={}) for row in rows]


def row_of(table, variant):
    return next(row for row in table.rows if row.variant == variant)


# --------------------------------------------------------------------------------------------------
# collect_records


def test_collect_finds_run_bench_and_sweep_records_and_ignores_other_json(tmp_path):
    run = tmp_path / "runs" / "baseline"
    write_json(run / "metrics.json", finetune().to_dict())
    write_json(run / "config.json", {"model_type": "bert", "hidden_size": 384})
    write_json(run / "tokenizer.json", {"version": "1.0", "model": {"type": "WordPiece"}})
    write_json(run / "checkpoint-100" / "trainer_state.json", {"global_step": 100})
    write_json(run / "eval_results.json", {"eval_accuracy": 0.82})
    write_json(tmp_path / "bench" / "one.json", bench("ffn-alternate", trim=FFN_TRIM).to_dict())
    write_json(
        tmp_path / "bench" / "vs.json",
        [bench("relu-attention", trim=NORM_TRIM).to_dict(), bench("baseline").to_dict()],
    )
    write_jsonl(tmp_path / "sweep" / "results.jsonl", [sweep(seed=1), sweep(seed=2)])
    write_json(tmp_path / "report" / "results.json", [{"variant": "baseline", "kind": "bench"}])

    records = collect_records([tmp_path])

    found = sorted((r.kind, r.variant, r.seed) for r in records)
    assert found == [
        ("bench", "baseline", None),
        ("bench", "ffn-alternate", None),
        ("bench", "relu-attention", None),
        ("finetune", "baseline", 42),
        ("sweep", "ffn-alternate", 1),
        ("sweep", "ffn-alternate", 2),
    ]
    assert all(isinstance(r, Record) for r in records)


def test_collect_accepts_files_given_explicitly(tmp_path):
    write_json(tmp_path / "bench.json", bench().to_dict())
    write_jsonl(tmp_path / "shard.jsonl", [sweep()])

    records = collect_records([tmp_path / "bench.json", tmp_path / "shard.jsonl"])

    assert [(r.kind, r.variant) for r in records] == [("bench", "baseline"), ("sweep", "ffn-alternate")]


def test_collect_merges_sweep_shards_and_keeps_the_latest_duplicate(tmp_path):
    old = {"device": "cpu", "date": "2025-01-01T00:00:00+00:00"}
    new = {"device": "cpu", "date": "2025-01-02T00:00:00+00:00"}
    write_jsonl(
        tmp_path / "shard-0" / "results.jsonl",
        [
            sweep("ffn-alternate", seed=1, accuracy=0.80),
            sweep("relu-attention", trim=NORM_TRIM, seed=1, status="failed", error="CUDA out of memory"),
            sweep("relu-attention", trim=NORM_TRIM, seed=1, accuracy=0.78),  # re-run: later line wins
            sweep("wide", trim={"x": 1}, seed=1, accuracy=0.70, conditions=new),
        ],
    )
    write_jsonl(
        tmp_path / "shard-1" / "results.jsonl",
        [
            sweep("ffn-alternate", seed=2, accuracy=0.81),
            sweep("wide", trim={"x": 1}, seed=1, accuracy=0.60, conditions=old),  # older date loses
        ],
    )

    records = collect_records([tmp_path / "shard-0", tmp_path / "shard-1"])

    found = [(r.variant, r.seed, r.status, r.metrics["accuracy"]) for r in records]
    assert found == [
        ("ffn-alternate", 1, "ok", 0.80),
        ("relu-attention", 1, "ok", 0.78),
        ("wide", 1, "ok", 0.70),
        ("ffn-alternate", 2, "ok", 0.81),
    ]


def test_collect_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    write_jsonl(path, [sweep()])
    with open(path, "a") as handle:
        handle.write('{"kind": "sweep", "variant": "half-writ')

    assert [r.variant for r in collect_records([tmp_path])] == ["ffn-alternate"]


def test_collect_raises_for_a_path_without_records(tmp_path):
    write_json(tmp_path / "config.json", {"model_type": "bert"})
    write_json(tmp_path / "tokenizer.json", {"version": "1.0"})
    write_json(tmp_path / "other.json", {"variant": "no kind"})
    (tmp_path / "train.json").write_text('{"text": "a"}\n{"text": "b"}\n')  # JSON lines data: not records
    (tmp_path / "blob.json").write_bytes(b"\x00\xff\x80 not text")
    write_json(tmp_path / ".hidden" / "metrics.json", finetune().to_dict())

    with pytest.raises(TrimbertError, match=r"no trimbert records found under .*"):
        collect_records([tmp_path])


def test_collect_raises_for_a_missing_path(tmp_path):
    with pytest.raises(TrimbertError, match=re.escape(f"{tmp_path / 'nope'} does not exist")):
        collect_records([tmp_path / "nope"])


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("metrics.json", '{"kind": "finetune", "variant": '),
        ("results.jsonl", '{"kind": "sweep", "variant": "a"}\n{not json}\n'),
        ("bench-out.json", 'Loading model...\n{"kind": "bench", "variant": "a"}'),
    ],
)
def test_collect_raises_for_corrupt_json_naming_the_file(tmp_path, name, text):
    path = tmp_path / "run" / name
    path.parent.mkdir()
    path.write_text(text)

    with pytest.raises(TrimbertError, match="corrupt JSON") as caught:
        collect_records([tmp_path])
    assert str(path) in str(caught.value)


def test_collect_raises_for_a_record_missing_required_fields(tmp_path):
    write_json(tmp_path / "metrics.json", {"schema_version": 1, "kind": "finetune", "variant": "a"})

    with pytest.raises(TrimbertError, match="invalid trimbert record"):
        collect_records([tmp_path])


# --------------------------------------------------------------------------------------------------
# merge_records and build_rows


def test_build_rows_combines_finetune_and_bench_and_compares_with_the_baseline():
    table = build_rows(standard_records())

    assert table.baseline == "baseline"
    assert table.task == "sst2"
    assert table.main_metric == "accuracy"
    assert [row.variant for row in table.rows] == ["baseline", "ffn-alternate", "relu-attention"]
    base, ffn, relu = table.rows
    assert base.is_baseline and not ffn.is_baseline
    assert base.delta_points == 0.0
    assert (base.params_ratio, base.speedup, base.flops_reduction) == (1.0, 1.0, 1.0)
    assert base.train_speedup is None  # no training step was timed side by side

    assert ffn.metrics == {"accuracy": 0.80}  # from the fine-tune
    assert ffn.latency_ms == 30.0  # from the bench
    assert (ffn.batch_size, ffn.seq_len, ffn.device) == (32, 128, "cpu")
    assert ffn.delta_points == pytest.approx(-2.0, abs=1e-12)
    assert ffn.params == FFN_PARAMS
    assert ffn.params_ratio == FFN_PARAMS / BASE_PARAMS
    assert ffn.flops_reduction == 2.9e9 / 2.4e9
    assert ffn.speedup == 40.0 / 30.0  # the paired ratio of bench --vs
    assert (ffn.speedup_low, ffn.speedup_high, ffn.speedup_stable) == (0.98 * (40.0 / 30.0), 1.02 * (40.0 / 30.0), True)
    assert ffn.train_speedup is None  # fine-tune wall times (300 s vs 240 s) are not a paired ratio
    assert ffn.seeds == 1
    assert ffn.metrics_std == {} and ffn.latency_std is None

    assert relu.delta_points == pytest.approx(-4.0, abs=1e-12)
    assert relu.speedup == 40.0 / 45.0
    assert relu.params_ratio == 1.0


def test_pareto_marks_use_latency_and_skip_dominated_rows():
    table = build_rows(standard_records())

    assert table.pareto_cost == "relative_latency"  # 1 / speedup: the same order as latency here
    assert {row.variant: row.pareto for row in table.rows} == {
        "baseline": True,  # most accurate
        "ffn-alternate": True,  # fastest
        "relu-attention": False,  # less accurate and slower than the baseline
    }


def test_pareto_falls_back_to_parameters_without_latency():
    records = [r for r in standard_records() if r.kind == "finetune"]

    table = build_rows(records)

    assert table.pareto_cost == "params"
    assert {row.variant: row.pareto for row in table.rows} == {
        "baseline": True,
        "ffn-alternate": True,
        "relu-attention": False,  # same parameters as the baseline, less accurate
    }


def test_several_seeds_give_mean_and_standard_deviation():
    accuracies, latencies, times = [0.80, 0.81, 0.806], [30.0, 31.0, 29.5], [240.0, 250.0, 236.0]
    records = [finetune("baseline", seed=1), bench("baseline")]
    records += [
        sweep(seed=seed, accuracy=acc, latency_ms=lat, train_time_s=t)
        for seed, acc, lat, t in zip([1, 2, 3], accuracies, latencies, times, strict=True)
    ]

    row = row_of(build_rows(records), "ffn-alternate")

    assert row.seeds == 3
    assert row.metrics["accuracy"] == statistics.mean(accuracies)
    assert row.metrics_std["accuracy"] == statistics.stdev(accuracies)
    assert (row.latency_ms, row.latency_std) == (statistics.mean(latencies), statistics.stdev(latencies))
    assert (row.train_time_s, row.train_time_std) == (statistics.mean(times), statistics.stdev(times))
    assert row.delta_points == pytest.approx(100 * (statistics.mean(accuracies) - 0.82), abs=1e-12)
    ratios = [40.0 / latency for latency in latencies]
    assert row.speedup == statistics.mean(ratios)  # the mean of the per-seed paired ratios
    # the widest interval: the lowest seed's low end, the highest seed's high end
    assert (row.speedup_low, row.speedup_high) == (min(0.98 * r for r in ratios), max(1.02 * r for r in ratios))


def test_failed_rows_are_kept_with_their_error_and_left_out_of_the_pareto_front():
    records = [
        *standard_records(),
        sweep("tiny", trim={"layers": 2}, seed=1, status="failed", error="CUDA out of memory", metrics={}),
        sweep("ffn-alternate", seed=2, status="failed", error="NaN loss", metrics={}, latency_ms=1.0),
    ]

    table = build_rows(records)

    tiny = row_of(table, "tiny")
    assert (tiny.status, tiny.error, tiny.failed, tiny.pareto) == ("failed", "CUDA out of memory", 1, False)
    assert tiny.metrics == {} and tiny.delta_points is None and tiny.latency_ms is None
    ffn = row_of(table, "ffn-alternate")
    assert (ffn.status, ffn.failed, ffn.error, ffn.seeds) == ("ok", 1, "NaN loss", 1)
    assert ffn.metrics == {"accuracy": 0.80}


def test_a_failed_row_is_never_on_the_front_even_when_it_looks_best():
    records = [
        *standard_records(),
        sweep("magic", trim={"x": 1}, accuracy=0.99, latency_ms=1.0, status="failed"),
    ]

    table = build_rows(records)

    assert not row_of(table, "magic").pareto
    assert row_of(table, "ffn-alternate").pareto


def test_a_sweep_line_replaces_the_finetune_record_of_the_same_run():
    records = [finetune("ffn-alternate", trim=FFN_TRIM, seed=1, accuracy=0.79), sweep(seed=1, accuracy=0.79)]

    (row,) = merge_records(records)

    assert row.seeds == 1 and row.latency_ms == 30.0


def test_records_of_one_variant_with_different_trims_are_an_error():
    with pytest.raises(TrimbertError, match="'ffn-alternate' has records with different trims"):
        merge_records([finetune("ffn-alternate", trim=FFN_TRIM), bench("ffn-alternate", trim=NORM_TRIM)])


def test_mixed_tasks_without_task_are_an_error():
    records = [*standard_records(), finetune("baseline", task="mrpc", metrics={"f1": 0.88}, main_metric="f1")]

    with pytest.raises(TrimbertError, match=r"several tasks found \(mrpc, sst2\); pick one with --task"):
        build_rows(records)


def test_task_filters_records_and_bench_records_join():
    mrpc = {"metrics": {"f1": 0.88, "accuracy": 0.84}, "main_metric": "f1"}
    records = [*standard_records(), finetune("baseline", task="mrpc", **mrpc)]

    table = build_rows(records, task="mrpc")

    assert table.task == "mrpc" and table.main_metric == "f1"
    assert table.metric_names == ["f1", "accuracy"]
    base, ffn, relu = table.rows
    assert base.metrics == {"f1": 0.88, "accuracy": 0.84} and base.latency_ms == 40.0
    assert ffn.metrics == {} and ffn.latency_ms == 30.0  # bench only: no metric for mrpc
    assert ffn.delta_points is None and ffn.speedup == 40.0 / 30.0
    assert [row.pareto for row in table.rows] == [True, False, False]


def test_unknown_task_is_an_error():
    with pytest.raises(TrimbertError, match=r"no records for task 'qnli' \(tasks found: sst2\)"):
        build_rows(standard_records(), task="qnli")


def test_baseline_option_picks_the_reference():
    table = build_rows(standard_records(), baseline="ffn-alternate")

    assert table.baseline == "ffn-alternate"
    assert [row.variant for row in table.rows] == ["ffn-alternate", "baseline", "relu-attention"]
    base = row_of(table, "baseline")
    assert base.delta_points == pytest.approx(2.0, abs=1e-12)
    assert base.speedup is None  # never measured side by side with ffn-alternate as the baseline
    assert base.params_ratio == BASE_PARAMS / FFN_PARAMS


def test_unknown_baseline_is_an_error_listing_the_variants():
    with pytest.raises(
        TrimbertError, match="unknown baseline 'base'; variants: baseline, ffn-alternate, relu-attention"
    ):
        build_rows(standard_records(), baseline="base")


def test_several_untrimmed_variants_prefer_the_one_named_baseline():
    records = [finetune("bert-base-copy", accuracy=0.83), *standard_records()]

    assert build_rows(records).baseline == "baseline"
    assert build_rows(records[:1] + [finetune("again", accuracy=0.81)]).baseline == "bert-base-copy"


def test_without_an_untrimmed_variant_there_is_no_baseline():
    records = [r for r in standard_records() if r.variant != "baseline"]

    table = build_rows(records)

    assert table.baseline is None
    assert all(row.delta_points is None and row.speedup is None for row in table.rows)
    assert any("--baseline" in note for note in table.notes)


def test_latencies_measured_differently_are_noted():
    records = [*standard_records()[:2], bench("ffn-alternate", trim=FFN_TRIM, batch_size=8)]

    (note,) = build_rows(records).notes

    assert note.startswith(
        "latencies were measured under different conditions (cpu, batch 32, seq 128; cpu, batch 8"
    )


def test_no_records_is_an_error():
    with pytest.raises(TrimbertError, match="no trimbert records"):
        build_rows([])


# --------------------------------------------------------------------------------------------------
# pareto_front


def test_pareto_front_drops_a_dominated_point():
    assert pareto_front([(0.82, 40.0), (0.80, 30.0), (0.78, 45.0)]) == [0, 1]


def test_pareto_front_dominance_needs_one_strict_improvement():
    assert pareto_front([(0.80, 30.0), (0.80, 35.0)]) == [0]  # same metric, costlier
    assert pareto_front([(0.80, 30.0), (0.79, 30.0)]) == [0]  # same cost, worse


def test_pareto_front_keeps_ties():
    assert pareto_front([(0.80, 30.0), (0.80, 30.0), (0.70, 40.0)]) == [0, 1]


def test_pareto_front_single_point_and_empty():
    assert pareto_front([(0.5, 1.0)]) == [0]
    assert pareto_front([]) == []


def test_pareto_front_all_on_the_frontier():
    points = [(0.70, 10.0), (0.75, 20.0), (0.80, 30.0), (0.82, 40.0)]
    assert pareto_front(points) == [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------------
# render_table and write_report


def rendered_text(table) -> str:
    console = Console(record=True, width=200)
    console.print(render_table(table))
    return console.export_text()


def test_render_table_shows_variants_values_and_stars_only_pareto_rows():
    records = [*standard_records(), sweep(seed=2, accuracy=0.81, latency_ms=31.0)]

    text = rendered_text(build_rows(records))

    body = [line for line in text.splitlines() if line.startswith("│")]
    first_cells = {line.split("│")[1].strip(): line for line in body}
    assert set(first_cells) == {"baseline ★", "ffn-alternate ★", "relu-attention"}
    assert "0.805 ± 0.007" in first_cells["ffn-alternate ★"]  # mean ± std of 0.80 and 0.81
    assert "-2.00" not in first_cells["ffn-alternate ★"] and "-1.50" in first_cells["ffn-alternate ★"]
    assert "1.31×" in first_cells["ffn-alternate ★"]  # speedup 40 / 30.5
    assert "22.71" in first_cells["baseline ★"]
    assert "★ = Pareto-optimal on accuracy vs latency" in text
    assert "Baseline: baseline." in text


def test_render_table_shows_failed_rows_with_their_error():
    records = [*standard_records(), sweep("tiny", trim={"x": 1}, status="failed", error="out of memory")]

    text = rendered_text(build_rows(records))

    assert "failed: out of" in text and "memory" in text


def test_long_errors_are_shortened_to_one_line_in_tables_but_kept_in_the_csv(tmp_path):
    error = "Traceback (most recent call last):\n" + "  File x.py\n" * 20 + "RuntimeError: boom"
    table = build_rows([*standard_records(), sweep("tiny", trim={"x": 1}, status="failed", error=error)])

    line = next(line for line in render_markdown(table).splitlines() if line.startswith("| tiny"))

    assert "failed: Traceback (most recent call last): File x.py File x.py" in line and line.endswith("… |")
    written = write_report(table, tmp_path)
    assert row_of(table, "tiny").error == error
    assert load_results_csv(written["csv"]) == without_paired_vs(table.rows)


def test_render_table_does_not_interpret_markup_in_names():
    text = rendered_text(build_rows([finetune("[bold]odd[/bold]")]))

    assert "[bold]odd[/bold]" in text


def test_write_report_writes_every_file_and_they_round_trip(tmp_path):
    records = [*standard_records(), sweep(seed=2, accuracy=0.81, latency_ms=31.0)]
    records.append(sweep("tiny", trim={"layers": 2}, status="failed", error="CUDA out of memory", metrics={}))
    table = build_rows(records)

    written = write_report(table, tmp_path / "out")

    assert set(written) == {"markdown", "csv", "json", "metric_vs_latency", "metric_vs_params"}
    assert {path.name for path in written.values()} == {
        "report.md",
        "results.csv",
        "results.json",
        "metric_vs_latency.png",
        "metric_vs_params.png",
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written.values())
    assert load_results_csv(written["csv"]) == without_paired_vs(table.rows)
    assert load_results_json(written["json"]) == table.rows


def test_results_csv_holds_raw_numbers_and_the_trim_spec(tmp_path):
    table = build_rows(standard_records())

    written = write_report(table, tmp_path)

    with open(written["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    ffn = next(row for row in rows if row["variant"] == "ffn-alternate")
    assert ffn["params"] == str(FFN_PARAMS)
    assert ffn["metric:accuracy"] == "0.8"
    assert ffn["latency_ms"] == "30.0"
    assert float(ffn["speedup"]) == 40.0 / 30.0
    assert json.loads(ffn["trim"]) == FFN_TRIM
    assert ffn["pareto"] == "true"
    assert json.loads(written["json"].read_text())[1]["trim"] == FFN_TRIM


def test_write_report_plots_are_png_images(tmp_path):
    written = write_report(build_rows(standard_records()), tmp_path)

    for kind in ("metric_vs_latency", "metric_vs_params"):
        data = written[kind].read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
        image = matplotlib.image.imread(written[kind])
        assert image.shape == (600, 840, 4)  # figsize (7, 5) at dpi 120, RGBA


def test_report_md_names_every_variant_the_baseline_and_the_plots(tmp_path):
    table = build_rows(standard_records())

    written = write_report(table, tmp_path)

    text = written["markdown"].read_text()
    for variant in ("baseline", "ffn-alternate", "relu-attention"):
        assert f"| {variant}" in text
    assert "| variant | trim | accuracy | Δ pts |" in text
    assert "Baseline: baseline." in text
    assert "speedup and train speedup = baseline value / this value" in text
    assert "![metric vs latency](metric_vs_latency.png)" in text
    assert "![metric vs params](metric_vs_params.png)" in text


def test_write_report_skips_the_latency_plot_without_latency(tmp_path):
    table = build_rows([r for r in standard_records() if r.kind == "finetune"])

    written = write_report(table, tmp_path)

    assert "metric_vs_latency" not in written and "metric_vs_params" in written
    assert not (tmp_path / "metric_vs_latency.png").exists()
    assert "metric_vs_latency.png" not in written["markdown"].read_text()


def test_write_report_of_bench_records_only_writes_tables_without_plots(tmp_path):
    table = build_rows([bench("baseline"), bench("ffn-alternate", trim=FFN_TRIM, latency_ms=30.0)])

    written = write_report(table, tmp_path)

    assert set(written) == {"markdown", "csv", "json"}
    assert load_results_csv(written["csv"]) == without_paired_vs(table.rows)


def test_markdown_escapes_pipes_in_cells():
    text = render_markdown(build_rows([finetune("a|b")]))

    assert "| a\\|b ★ |" in text


# --------------------------------------------------------------------------------------------------
# Paired speedups (a sweep benches each variant side by side with the untrimmed model)


def paired(variant="ffn-alternate", *, speedup, trim=FFN_TRIM, seed=1, latency_ms=30.0, **fields) -> Record:
    record = sweep(variant, trim=trim, seed=seed, latency_ms=latency_ms, **fields)
    record.paired = {"baseline": PairedRatios(latency=PairedRatio(speedup))}
    record.u_star = "baseline"
    return record


def test_a_paired_speedup_is_preferred_over_the_ratio_of_separate_latencies():
    # Separately measured: 40 ms / 30 ms = 1.33x; measured side by side in the sweep: 1.5x.
    records = [finetune("baseline"), bench("baseline", latency_ms=40.0), paired(speedup=1.5)]

    table = build_rows(records)

    ffn = row_of(table, "ffn-alternate")
    assert ffn.paired_speedup == 1.5 and ffn.speedup == 1.5
    assert row_of(table, "baseline").speedup == 1.0
    assert any("paired" in line for line in render_markdown(table).splitlines())


def test_paired_speedups_are_averaged_over_seeds_and_need_every_timed_record():
    records = [finetune("baseline"), bench("baseline", latency_ms=40.0)]
    table = build_rows([*records, paired(speedup=1.4, seed=1), paired(speedup=1.6, seed=2)])
    assert row_of(table, "ffn-alternate").speedup == pytest.approx(1.5)

    unpaired = sweep(seed=3, latency_ms=20.0)
    unpaired.paired, unpaired.u_star = {}, None  # a seed without a paired ratio: no speed-up at all, not one of separate latencies
    table = build_rows([*records, paired(speedup=1.4, seed=1), unpaired])
    ffn = row_of(table, "ffn-alternate")
    assert ffn.paired_speedup is None and ffn.speedup is None
    assert ffn.latency_ms == statistics.mean([30.0, 20.0])


def test_a_trimmed_baseline_ignores_the_paired_speedups():
    records = [
        finetune("baseline"),
        bench("baseline", latency_ms=40.0),
        paired(speedup=1.5),
        paired("relu-attention", trim=NORM_TRIM, speedup=0.9, latency_ms=45.0),
    ]

    table = build_rows(records, baseline="relu-attention")

    # Neither the ratio to the untrimmed model nor one of separately measured latencies (45 / 30).
    assert row_of(table, "ffn-alternate").speedup is None


def test_paired_speedups_round_trip_through_the_csv_and_json(tmp_path):
    table = build_rows([finetune("baseline"), bench("baseline", latency_ms=40.0), paired(speedup=1.5)])

    written = write_report(table, tmp_path)

    assert load_results_csv(written["csv"]) == without_paired_vs(table.rows)
    assert load_results_json(written["json"]) == table.rows
    with open(written["csv"], newline="") as handle:
        rows = {row["variant"]: row for row in csv.DictReader(handle)}
    assert rows["ffn-alternate"]["paired_speedup"] == "1.5" and rows["baseline"]["paired_speedup"] == ""


def test_pareto_and_plot_use_paired_speedups_over_raw_latencies(tmp_path):
    """Variants benched at different moments: raw latencies disagree, the paired ratios decide."""
    from trimbert.report.records import Record

    def sweep(variant, trim, accuracy, latency, paired):
        return Record(
            kind="sweep",
            variant=variant,
            model="minilm",
            trim=trim,
            task="sst2",
            metrics={"accuracy": accuracy},
            main_metric="accuracy",
            latency_ms=latency,
            params=100,
            seq_len=64,
            batch_size=8,
            paired={"baseline": PairedRatios(latency=PairedRatio(paired, 0.9 * paired, 1.1 * paired, paired != 1.4))},
            u_star="baseline",  # ffn: an interval wider than the tolerance (unstable)
        )

    records = [
        sweep("baseline", {}, 0.80, 1500.0, 1.0),  # benched while the machine was busy
        sweep("relu", {"attention": "relu"}, 0.79, 70.0, 1.0),  # raw: 21x faster; paired: same speed
        sweep("ffn", {"drop_ffn": [1]}, 0.78, 60.0, 1.4),
    ]
    table = build_rows(records)
    assert {row.variant: row.speedup for row in table.rows} == {"baseline": 1.0, "relu": 1.0, "ffn": 1.4}
    assert {row.variant: row.pareto for row in table.rows} == {"baseline": True, "relu": False, "ffn": True}
    ffn = row_of(table, "ffn")
    assert (ffn.speedup_low, ffn.speedup_high, ffn.speedup_stable) == (0.9 * 1.4, 1.1 * 1.4, False)
    assert "1.40× [1.26–1.54] unstable" in render_markdown(table)
    written = write_report(table, tmp_path)
    assert written["metric_vs_latency"].read_bytes().startswith(b"\x89PNG")


def test_a_models_runtimes_follow_its_pytorch_row():
    names = ["b@ort", "b@ort-int8", "b", "a@ort-int8", "a@ort", "a", "c"]
    records = [Record(kind="bench", variant=name, model="m", latency_ms=1.0) for name in names]
    assert [row.variant for row in merge_records(records)] == ["b", "b@ort", "b@ort-int8", "a", "a@ort", "a@ort-int8", "c"]
