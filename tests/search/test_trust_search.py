"""``trimbert search`` on inputs it cannot mean (issue 27): a target the untrimmed model meets already, a
latency cache with times that are not positive, a --cache-dir that is a file, --widths above 1."""

import json
import re

import pytest
from conftest import write_sst2
from recorded_latency import recorded_ms, use_recorded_latency

from trimbert.errors import TrimbertError
from trimbert.search.latency import cached_predictor, untrusted
from trimbert.search.predictor import Conditions, Predictor
from trimbert.search.settings import SearchSettings
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimSpec

FAST = ("--probes", "6", "--repeats", "3", "--max-drop-layers", "1", "--batch-size", "1", "--seq-len", "16", "--threads", "1")
CONDITIONS = Conditions(runtime="pytorch", device="cpu", batch_size=1, seq_len=16, threads=1, model_shape={"layers": 2})
MET = re.compile(
    r"error: --latency-ms 100000: the untrimmed model already meets it \(predicted (\d+\.\d\d) ms for a batch of 1 × 16 "
    r"tokens\): nothing to trim; aim below \1 ms"
)


@pytest.fixture
def data(tmp_path):
    return write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=4)


def test_a_latency_the_untrimmed_model_meets_is_refused_and_a_cache_with_negative_times_is_measured_again(
    run_cli, tiny_checkpoint, tmp_path, data, monkeypatch
):
    probe_runs = use_recorded_latency(monkeypatch)  # the probes' timings recorded: 10.4 ms for the untrimmed model
    args = ("search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--latency-ms", "100000", *FAST,
            "--cache-dir", tmp_path / "cache", "--out", tmp_path / "s")
    code, stdout, err = run_cli(*args)
    assert code == 2 and (match := MET.fullmatch(err.strip())), err
    assert match.group(1) == "10.40" and len(probe_runs) == 1
    assert not (tmp_path / "s").exists() and "plan" not in stdout  # refused before anything was trained
    [cache] = (tmp_path / "cache" / "latency").glob("latency-*.json")
    tampered = json.loads(cache.read_text())
    for probe in tampered["probes"]:
        probe["measured_ms"] = -abs(probe["measured_ms"]) * 1000
    tampered["baseline_ms"] = -23375.0
    tampered["coefficients"] = {name: -abs(value) * 1000 for name, value in tampered["coefficients"].items()}
    cache.write_text(json.dumps(tampered))
    code, _, err = run_cli(*args)
    assert code == 2 and (match := MET.fullmatch(err.strip())), err
    assert match.group(1) == "10.40" and len(probe_runs) == 2  # the probes measured again
    measured = json.loads(cache.read_text())
    assert measured["baseline_ms"] == recorded_ms(TrimSpec())
    assert [probe["measured_ms"] for probe in measured["probes"]] == [
        recorded_ms(TrimSpec.from_dict(probe["spec"])) for probe in measured["probes"]]  # the cache entry replaced


def test_a_speedup_of_one_is_met_by_the_untrimmed_model():
    with pytest.raises(TrimbertError) as raised:
        SearchSettings(speedup=1.0)
    assert str(raised.value) == "a speed-up of 1.0 is met by the untrimmed model: nothing to trim (aim above 1.0)"


def _predictor(**changes) -> Predictor:
    probes = [{"spec": TrimSpec().to_dict(), "summary": "untrimmed", "measured_ms": 2.0, "p10_ms": 1.9, "p90_ms": 2.1},
              {"spec": TrimSpec(drop_ffn=(0,)).to_dict(), "summary": "ffn-[0]", "measured_ms": 1.5, "p10_ms": 1.4, "p90_ms": 1.6}]
    values = dict(conditions=CONDITIONS, num_layers=2, intermediate_size=64, coefficients={"const": 1.0, "ffns": 0.5},
                  fitted=["const", "ffns"], probes=probes, baseline_ms=2.0)
    return Predictor(**{**values, **changes})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"baseline_ms": -23375.0}, "baseline_ms is -23375.0"),
        ({"baseline_ms": 0.0}, "baseline_ms is 0.0"),
        ({"coefficients": {"const": float("nan"), "ffns": 0.5}}, "the cost const is nan"),
        ({"coefficients": {"const": -3.0, "ffns": 0.5}}, "it predicts -2.00 ms for untrimmed"),
    ],
)
def test_a_predictor_is_trusted_only_with_positive_finite_times(changes, reason):
    assert untrusted(_predictor(**changes)) == reason


def test_a_cached_predictor_with_a_negative_probe_time_is_measured_again(tmp_path):
    space = SearchSpace(2, 64, widths=(32,))
    built = []

    def build(predictor=None):
        built.append(1)
        return predictor or _predictor()

    cached_predictor(tmp_path, CONDITIONS, space, build)
    [path] = tmp_path.glob("latency-*.json")
    data = json.loads(path.read_text())
    data["probes"][1]["measured_ms"] = -1.5
    path.write_text(json.dumps(data))
    predictor, cached = cached_predictor(tmp_path, CONDITIONS, space, build)
    assert (cached, len(built)) == (False, 2) and predictor.probes[1]["measured_ms"] == 1.5
    assert json.loads(path.read_text())["probes"][1]["measured_ms"] == 1.5  # the cache entry replaced
    assert cached_predictor(tmp_path, CONDITIONS, space, build)[1] is True


def test_a_cache_dir_that_is_a_file_is_refused_in_one_line(run_cli, tiny_checkpoint, tmp_path, data):
    (tmp_path / "file").write_text("not a folder")
    base = ("search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--speedup", "1.5", *FAST, "--out", tmp_path / "s")
    code, _, err = run_cli(*base, "--cache-dir", tmp_path / "file")
    assert (code, err.strip()) == (2, f"error: --cache-dir: {tmp_path / 'file'} is a file, not a folder")
    code, _, err = run_cli(*base, "--cache-dir", tmp_path / "file" / "sub")
    assert (code, err.strip()) == (2, f"error: --cache-dir: {tmp_path / 'file' / 'sub'} cannot be a folder: {tmp_path / 'file'} is a file")
    assert not (tmp_path / "s").exists()


def test_widths_above_one_are_refused_before_anything_runs(run_cli, tiny_checkpoint, tmp_path, data):
    code, _, err = run_cli("search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--speedup", "1.5",
                           "--widths", "0.5,2.0", "--cache-dir", tmp_path / "cache", "--out", tmp_path / "s")
    assert (code, err.strip()) == (
        2, "error: --widths: '2.0' is neither a fraction between 0 and 1 (0.5) nor a whole number of neurons (512), got '0.5,2.0'"
    )
    assert not (tmp_path / "s").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("widths", "expected"),
    [("0.5", (32,)), ("0.75,0.25", (48, 16)), ("12", (12,)), ("1e-1", (6,))],
)
def test_widths_are_fractions_below_one_or_neuron_counts(widths, expected):
    assert SearchSettings(speedup=1.5, widths=widths).width_list(64) == expected


@pytest.mark.parametrize(
    ("widths", "problem"),
    [
        ("1.0", "'1.0' is neither a fraction between 0 and 1 (0.5) nor a whole number of neurons (512)"),
        ("512.0", "'512.0' is neither a fraction between 0 and 1 (0.5) nor a whole number of neurons (512)"),
        ("-0.5", "'-0.5' is neither a fraction between 0 and 1 (0.5) nor a whole number of neurons (512)"),
        ("nan", "'nan' is neither a fraction between 0 and 1 (0.5) nor a whole number of neurons (512)"),
        ("0", "'0': a narrowed FFN keeps at least 1 neuron"),
        (" , ", "give at least one width (a fraction such as 0.5 or a neuron count such as 512)"),
    ],
)
def test_bad_widths_are_refused_by_the_settings(widths, problem):
    with pytest.raises(TrimbertError) as raised:
        SearchSettings(speedup=1.5, widths=widths)
    assert str(raised.value) == f"--widths: {problem}, got {widths!r}"
