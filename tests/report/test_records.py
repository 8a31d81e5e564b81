"""The version-2 record: its JSON object, what is a record, and keys from newer writers kept."""

import json

import pytest

from trimbert.report.records import SCHEMA_VERSION, PairedRatio, PairedRatios, Record, Timing, is_record


def test_a_record_writes_its_version_and_kind_first_and_reads_back_equal():
    record = Record(
        kind="bench", variant="t", model="m", latency_ms=2.0, timing=Timing(times_ms=[2.0, 2.1]),
        paired={"b": PairedRatios(latency=PairedRatio(1.5, 1.4, 1.6, True, rounds=2))}, u_star="b",
    )
    data = record.to_dict()
    assert list(data)[:2] == ["schema_version", "kind"] and data["schema_version"] == SCHEMA_VERSION == 2
    assert data["paired"] == {"b": {"latency": {"ratio": 1.5, "low": 1.4, "high": 1.6, "stable": True, "rounds": 2,
                                                "confidence": None, "tolerance": None, "other_cpu": None},
                                    "train_step": None}}
    assert Record.from_dict(json.loads(json.dumps(data))) == record
    assert record.speedup() == PairedRatio(1.5, 1.4, 1.6, True, rounds=2) and record.int8_speedup() is None


def test_keys_from_a_newer_writer_are_kept_in_extra_and_written_again():
    data = Record(kind="bench", variant="t", model="m", timing=Timing(times_ms=[1.0])).to_dict()
    data.update(schema_version=3, energy_j=4.5)
    data["timing"]["p50_ms"] = 1.0
    record = Record.from_dict(data)
    assert record.extra == {"energy_j": 4.5, "timing": {"p50_ms": 1.0}} and record.schema_version == 3
    assert record.timing == Timing(times_ms=[1.0])
    assert Record.from_dict(record.to_dict()).extra == {"energy_j": 4.5, "timing": {"p50_ms": 1.0}}


def test_malformed_records_are_type_errors():
    with pytest.raises(TypeError, match="schema_version must be an integer, not '2'"):
        Record.from_dict({"schema_version": "2", "kind": "bench", "variant": "t", "model": "m"})
    with pytest.raises(TypeError, match="timing must be a JSON object, not list"):
        Record.from_dict({"schema_version": 2, "kind": "bench", "variant": "t", "model": "m", "timing": [1.0]})
    with pytest.raises(TypeError):
        Record.from_dict({"schema_version": 2, "kind": "bench", "variant": "t"})  # no model


def test_is_record_needs_a_known_kind_a_variant_and_a_version():
    assert is_record({"schema_version": 1, "kind": "sweep", "variant": "a"})
    assert is_record({"schema_version": 2, "kind": "heal", "variant": "a"})
    assert not is_record({"kind": "sweep", "variant": "a"})  # no version: not written by trimbert
    assert not is_record({"schema_version": 2, "kind": "other", "variant": "a"})
    assert not is_record({"schema_version": 2, "kind": "bench", "variant": 3})
    assert not is_record([{"schema_version": 2, "kind": "bench", "variant": "a"}])
