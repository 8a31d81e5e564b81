import pytest

import trimbert
from trimbert.errors import TrimbertError
from trimbert.measure.bench import BenchSettings, bench_models

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
    assert len(model_record.extra["times_ms"]) == 3
    assert base_record.conditions["attention_implementation"] in ("sdpa", "eager")
    assert report.attention_choice["baseline"]["chosen"] == base_record.conditions["attention_implementation"]
    latency = next(c for c in report.comparisons if c.quantity == "latency")
    assert latency.ratio == pytest.approx(base_record.latency_ms / model_record.latency_ms)
    assert latency.flop_ideal == pytest.approx(base_record.flops_per_seq / model_record.flops_per_seq)
    assert latency.quotient == pytest.approx(latency.ratio / latency.flop_ideal)


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
    with pytest.raises(TrimbertError, match="exceeds"):
        bench_models({"m": (tiny_model, "m")}, BenchSettings(seq_len=65))


def _copy(model):
    import copy

    return copy.deepcopy(model)
