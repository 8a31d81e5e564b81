import statistics

import pytest

import trimbert
from trimbert.errors import TrimbertError
from trimbert.measure.bench import BenchSettings, bench_models
from trimbert.measure.load import CpuWatch
from trimbert.measure.stats import paired_ratio
from trimbert.report.records import PairedRatio, PairedRatios

FAST = BenchSettings(batch_size=2, seq_len=16, repeats=3, warmup=1, threads=1)


def test_side_by_side_records_and_ratios(tiny_model):
    trimmed = trimbert.trim(_copy(tiny_model), drop_ffn="0,1")
    report = bench_models(
        {"trimmed": (trimmed, "t"), "baseline": (tiny_model, "b")}, FAST, baseline="baseline"
    )
    model_record, base_record = report.records
    assert (model_record.variant, base_record.variant) == ("trimmed", "baseline")
    assert model_record.kind == base_record.kind == "bench"
    assert model_record.trim["drop_ffn"] == [0, 1] and base_record.trim == {}
    assert model_record.params == base_record.params - 2 * (2 * 32 * 64 + 64 + 32 + 2 * 32)
    assert model_record.flops_per_seq < base_record.flops_per_seq
    rounds = len(model_record.timing.times_ms)
    assert rounds % 3 == 0 and rounds == len(base_record.timing.times_ms)  # re-measured in runs of 3
    assert base_record.conditions["attention_implementation"] in ("sdpa", "eager")
    assert report.attention_choice["baseline"]["chosen"] == base_record.conditions["attention_implementation"]
    latency = next(c for c in report.comparisons if c.quantity == "latency")
    expected = paired_ratio(base_record.timing.times_ms, model_record.timing.times_ms)
    assert (latency.ratio, latency.low, latency.high, latency.rounds) == (
        expected.ratio,
        expected.low,
        expected.high,
        rounds,
    )
    assert latency.stable == (expected.stable(FAST.tolerance) and latency.other_cpu <= FAST.max_other_cpu)
    assert latency.flop_ideal == pytest.approx(base_record.flops_per_seq / model_record.flops_per_seq)
    assert latency.quotient == pytest.approx(latency.ratio / latency.flop_ideal)
    assert model_record.u_star == "baseline" and model_record.int8_reference is None
    assert model_record.paired == {
        "baseline": PairedRatios(
            latency=PairedRatio(**vars(expected), stable=latency.stable, tolerance=0.05, other_cpu=latency.other_cpu)
        )
    }
    assert model_record.speedup() == model_record.paired["baseline"].latency and model_record.speedup("train step") is None
    assert base_record.paired == {} and base_record.u_star is None
    assert model_record.timing.other_cpu == latency.other_cpu and model_record.timing.train_times_ms is None
    throughput = next(c for c in report.comparisons if c.quantity == "throughput")
    assert (throughput.ratio, throughput.low, throughput.high) == (latency.ratio, latency.low, latency.high)


def test_a_wide_interval_is_remeasured_until_the_time_limit_then_marked_unstable(tiny_model):
    trimmed = trimbert.trim(_copy(tiny_model), drop_ffn="0")
    models = {"trimmed": (trimmed, "t"), "baseline": (tiny_model, "b")}
    impossible = FAST.updated(tolerance=1e-9, max_seconds=0.5)  # no real interval is that narrow
    report = bench_models(models, impossible, baseline="baseline")
    latency = next(c for c in report.comparisons if c.quantity == "latency")
    assert latency.rounds > 3 and latency.rounds % 3 == 0 and not latency.stable
    assert report.records[0].speedup().stable is False
    once = bench_models(models, FAST.updated(tolerance=1e-9, max_seconds=1e-6), baseline="baseline")
    assert next(c for c in once.comparisons if c.quantity == "latency").rounds == 3  # no time to re-measure


def test_also_train_times_training_steps_side_by_side(tiny_model):
    trimmed = trimbert.trim(_copy(tiny_model), drop_ffn="0,1")
    settings = FAST.updated(also_train=True, max_seconds=1e-6)
    report = bench_models({"trimmed": (trimmed, "t"), "baseline": (tiny_model, "b")}, settings, baseline="baseline")
    model_record, base_record = report.records
    assert model_record.latency_ms > 0 and model_record.train_step_ms > 0
    assert len(model_record.timing.train_times_ms) == 3
    step = next(c for c in report.comparisons if c.quantity == "train step")
    expected = paired_ratio(base_record.timing.train_times_ms, model_record.timing.train_times_ms)
    assert (step.ratio, step.low, step.high) == (expected.ratio, expected.low, expected.high)
    assert model_record.speedup("train step") == model_record.paired["baseline"].train_step
    assert model_record.paired["baseline"].train_step.ratio == expected.ratio and model_record.u_star == "baseline"


def test_normalizer_model_keeps_its_attention(tiny_model):
    trimmed = trimbert.trim(_copy(tiny_model), attention="relu")
    report = bench_models({"relu": (trimmed, "r")}, FAST)
    assert report.records[0].conditions["attention_implementation"] == "trimbert_relu"
    assert report.comparisons == []


def test_train_mode_measures_step_time(tiny_model):
    report = bench_models(
        {"m": (tiny_model, "m")}, BenchSettings(batch_size=2, seq_len=16, repeats=2, warmup=1, mode="train")
    )
    record = report.records[0]
    assert record.train_step_ms > 0 and record.latency_ms is None


def test_seq_len_beyond_positions(tiny_model):
    with pytest.raises(TrimbertError, match="sequence length 65 exceeds the model's max_position_embeddings 64"):
        bench_models({"m": (tiny_model, "m")}, BenchSettings(seq_len=65))


def _copy(model):
    import copy

    return copy.deepcopy(model)


def test_a_busy_machine_flags_even_a_narrow_interval(tiny_model, monkeypatch):
    trimmed = trimbert.trim(_copy(tiny_model), drop_ffn="0")
    monkeypatch.setattr(CpuWatch, "stop", lambda self: 0.5)  # other processes took half the CPUs
    report = bench_models(
        {"trimmed": (trimmed, "t"), "baseline": (tiny_model, "b")},
        FAST.updated(tolerance=0.99, max_seconds=1e-6),  # any interval is narrow enough
        baseline="baseline",
    )
    latency = next(c for c in report.comparisons if c.quantity == "latency")
    assert (latency.stable, latency.other_cpu) == (False, 0.5)
    assert report.records[0].speedup().stable is False
    assert report.records[0].timing.other_cpu == 0.5


def test_runtimes_are_timed_side_by_side_against_u_star(tiny_model):
    trimmed = trimbert.trim(_copy(tiny_model), drop_ffn="0,1")
    settings = FAST.updated(runtimes=["pytorch", "onnxruntime", "onnxruntime-int8"], device="cpu")
    report = bench_models({"trimmed": (trimmed, "t"), "baseline": (tiny_model, "b")}, settings, baseline="baseline")
    names = [record.variant for record in report.records]
    assert names == ["trimmed", "trimmed@ort", "trimmed@ort-int8", "baseline", "baseline@ort", "baseline@ort-int8"]
    records = {record.variant: record for record in report.records}
    assert {name: record.conditions["runtime"] for name, record in records.items()} == {
        "trimmed": "pytorch",
        "trimmed@ort": "onnxruntime",
        "trimmed@ort-int8": "onnxruntime-int8",
        "baseline": "pytorch",
        "baseline@ort": "onnxruntime",
        "baseline@ort-int8": "onnxruntime-int8",
    }
    rounds = len(records["baseline"].timing.times_ms)
    assert all(len(record.timing.times_ms) == rounds for record in report.records)  # one alternating run
    # U*: the baseline in whichever runtime measured fastest, int8 included
    untrimmed = ("baseline", "baseline@ort", "baseline@ort-int8")
    reference = min(untrimmed, key=lambda name: statistics.median(records[name].timing.times_ms))
    assert report.u_star == reference
    latency = [c for c in report.comparisons if c.quantity == "latency"]
    same_int8 = {("trimmed@ort-int8", "baseline@ort-int8")} if reference != "baseline@ort-int8" else set()
    expected_pairs = {(name, reference) for name in names if name != reference} | same_int8
    assert {(c.variant, c.versus) for c in latency} == expected_pairs
    for comparison in latency:
        ratio = paired_ratio(records[comparison.versus].timing.times_ms, records[comparison.variant].timing.times_ms)
        assert comparison.ratio == ratio.ratio
    if same_int8:
        assert records["trimmed@ort-int8"].int8_reference == "baseline@ort-int8"
    else:
        assert records["trimmed@ort-int8"].int8_reference is None
    assert records["trimmed@ort-int8"].u_star == reference
    # every unit is also paired with every runtime of the baseline (for a report that re-bases U*)
    for name, record in records.items():
        assert set(record.paired) == set(untrimmed) - {name}
        for versus, ratios in record.paired.items():
            assert ratios.latency.ratio == paired_ratio(records[versus].timing.times_ms, record.timing.times_ms).ratio
            assert ratios.train_step is None
    assert records["trimmed@ort-int8"].disk_bytes < records["trimmed@ort"].disk_bytes
    assert report.attention_choice.keys() == {"trimmed", "baseline"}  # PyTorch models only


def test_onnxruntime_is_for_cpu_inference(tiny_model):
    models = {"m": (tiny_model, "m")}
    with pytest.raises(TrimbertError, match="--mode train times PyTorch only"):
        bench_models(models, FAST.updated(runtimes=["onnxruntime"], mode="train", device="cpu"))
    with pytest.raises(TrimbertError, match=r"runs on the CPU here; use --device cpu \(not cuda\)"):
        bench_models(models, FAST.updated(runtimes=["onnxruntime"], device="cuda"))
    report = bench_models(models, FAST.updated(runtimes=["onnxruntime"], also_train=True, device="cpu"))
    assert [record.variant for record in report.records] == ["m@ort"]
    assert report.records[0].train_step_ms is None  # also_train times the PyTorch models only


def test_u_star_is_the_baseline_in_its_fastest_runtime_of_any_precision():
    from types import SimpleNamespace

    from trimbert.measure.pairing import references as _references
    from trimbert.measure.pairing import u_star

    units = {
        name: SimpleNamespace(variant=name.split("@")[0], runtime=runtime)
        for name, runtime in (
            ("trim", "pytorch"), ("trim@ov-int8", "openvino-int8"), ("trim@ort-int8", "onnxruntime-int8"),
            ("base", "pytorch"), ("base@ort", "onnxruntime"), ("base@ort-int8", "onnxruntime-int8"),
            ("base@ov-int8", "openvino-int8"),
        )
    }
    times = {"trim": [5.0], "trim@ov-int8": [1.0], "trim@ort-int8": [2.0], "base": [9.0, 8.0, 10.0],
             "base@ort": [7.0], "base@ort-int8": [4.0], "base@ov-int8": [3.0, 2.0, 30.0]}  # medians: 9, 7, 4, 3
    assert u_star(units, times, "base") == "base@ov-int8"
    assert set(_references(units, times, "base")) == {
        ("trim", "base@ov-int8"), ("trim@ov-int8", "base@ov-int8"), ("trim@ort-int8", "base@ov-int8"),
        ("base", "base@ov-int8"), ("base@ort", "base@ov-int8"), ("base@ort-int8", "base@ov-int8"),
        ("trim@ort-int8", "base@ort-int8"),  # int8 models also against the baseline in their own int8 runtime
    }
    times["base@ort"] = [0.5]
    assert u_star(units, times, "base") == "base@ort"
    assert u_star(units, times, "missing") is None and _references(units, times, None) == []


def test_wide_ratios_are_re_measured_until_narrow_or_out_of_time_by_the_clock(monkeypatch):
    """``measure_paired``'s loop driven by recorded timings and a fake clock (1 s per run), not by this machine."""
    from types import SimpleNamespace

    import trimbert.measure.pairing as bench
    from trimbert.measure.benchmark import summarize

    # run 1: per-round ratios 2, 1, 1.25 (wide); every later run: 2, 2, 2. Over 12 rounds the interval is [2, 2].
    runs = [{"base": [10.0, 10.0, 10.0], "trim": [5.0, 10.0, 8.0]}] + [{"base": [10.0] * 3, "trim": [5.0] * 3}] * 9
    assert not paired_ratio(runs[0]["base"] + runs[1]["base"] * 2, runs[0]["trim"] + runs[1]["trim"] * 2).stable(0.05)
    assert paired_ratio(runs[0]["base"] + runs[1]["base"] * 3, runs[0]["trim"] + runs[1]["trim"] * 3).stable(0.05)
    units = {name: SimpleNamespace(variant=name, runtime="pytorch", timed=name) for name in ("trim", "base")}

    def measure(max_seconds):
        now, warmups = [100.0], []

        def benchmark(modules, *, mode, repeats, warmup, batch_size, seq_len, **_):
            assert set(modules) == {"trim", "base"} and repeats == 3
            warmups.append(warmup)
            now[0] += 1.0  # each run takes a second of the fake clock
            recorded = runs[len(warmups) - 1]
            return {name: summarize(recorded[name], mode=mode, batch_size=batch_size, seq_len=seq_len, peak_memory_bytes=None)
                    for name in modules}

        monkeypatch.setattr(bench, "benchmark", benchmark)
        monkeypatch.setattr(bench, "_clock", lambda: now[0])
        settings = FAST.updated(warmup=2, tolerance=0.05, max_seconds=max_seconds)
        results, ratios, star, principal = bench.measure_paired(units, settings, "infer", "base", None)
        return results, ratios, star, principal, warmups

    results, ratios, star, principal, warmups = measure(max_seconds=60)
    assert warmups == [2, 1, 1, 1]  # narrow after the 4th run; warm-up is 1 round once the models are warm
    assert results["trim"].times_ms == [5.0, 10.0, 8.0] + [5.0] * 9 and results["base"].times_ms == [10.0] * 12
    assert ratios[("trim", "base")] == paired_ratio([10.0] * 12, results["trim"].times_ms)
    assert ratios[("trim", "base")].stable(0.05) and (star, principal) == ("base", {("trim", "base")})

    results, ratios, *_, warmups = measure(max_seconds=2.5)  # out of time after the 3rd run (3 s >= 2.5 s)
    assert warmups == [2, 1, 1] and len(results["trim"].times_ms) == 9
    assert not ratios[("trim", "base")].stable(0.05)
