"""The latency predictor: exact features, an exact fit of additive costs, the cache, the errors."""

import pytest

from trimbert.errors import TrimbertError
from trimbert.search.latency import cached_predictor, probe_specs
from trimbert.search.predictor import Conditions, Predictor, fit_predictor, spec_features
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimSpec

CONDITIONS = Conditions(runtime="pytorch", device="cpu", batch_size=1, seq_len=128, threads=2, model_shape={"layers": 6})
COSTS = {"const": 1.0, "blocks": 0.9, "ffns": 0.1, "ffn_neurons": 1.3, "layernorms": 0.02, "attn:relu": 0.1}


def _true_ms(spec):
    features = spec_features(spec, 6, 1536)
    return sum(COSTS.get(name, 0.0) * value for name, value in features.items())


def test_features_count_the_components():
    spec = TrimSpec(drop_layers=(5,), drop_ffn=(1,), ffn_width={0: 768}, layernorm=("0.attn", "2.ffn"), attention="relu")
    features = spec_features(spec, 6, 1536)
    assert features["const"] == 1.0 and features["blocks"] == 5.0 and features["ffns"] == 4.0
    assert features["ffn_neurons"] == 3.5  # 0.5 + 3 full FFNs
    assert features["layernorms"] == 7.0  # 5 attn + 4 ffn - 2 stripped
    assert features["attn:relu"] == 5.0 and features["attn:sigmoid"] == 0.0
    assert features["ffn@1536"] == 3.0 and features["ffn@768"] == 1.0 and "ffn@384" not in features


def test_fit_recovers_additive_costs_and_predicts_unseen_specs():
    space = SearchSpace(6, 1536, widths=(768, 384), normalizers=("softmax", "relu"), max_drop_layers=2)
    probes = probe_specs(space, 16, seed=0)
    assert probes[0] == TrimSpec() and len(probes) == len(set(probes)) == 16
    corners = probe_specs(space, 2, seed=0)
    assert corners == probes[:7] and corners[-1] == TrimSpec(drop_layers=(4, 5))
    assert corners[2:4] == [TrimSpec(ffn_width=dict.fromkeys(range(6), 768)), TrimSpec(ffn_width=dict.fromkeys(range(6), 384))]
    predictor = fit_predictor([(spec, _true_ms(spec)) for spec in probes], 6, 1536, CONDITIONS)
    assert predictor.fit_error["max"] < 1e-9 and predictor.form == "linear"  # a tie goes to the simpler form
    for name, cost in COSTS.items():
        assert predictor.coefficients[name] == pytest.approx(cost, abs=1e-9)
    unseen = TrimSpec(drop_layers=(2,), ffn_width={1: 384, 4: 768}, attention="relu", layernorm=("3.ffn",))
    assert predictor.predict(unseen) == pytest.approx(_true_ms(unseen))
    with pytest.raises(TrimbertError, match="not fitted for attn:sigmoid"):
        predictor.predict(TrimSpec(attention="sigmoid"))
    assert predictor.fixed["attn:sigmoid"] == 0.0


def test_a_width_that_costs_more_than_its_neurons_selects_the_per_width_form():
    space = SearchSpace(6, 1536, widths=(768, 384), normalizers=("softmax", "relu"), max_drop_layers=2)
    slow = {"ffn@768": 2.0}  # a kernel that is slow at 768 neurons: not linear in the width

    def true_ms(spec):
        features = spec_features(spec, 6, 1536)
        return _true_ms(spec) + sum(cost * features.get(name, 0.0) for name, cost in slow.items())

    probes = probe_specs(space, 20, seed=1)
    predictor = fit_predictor([(spec, true_ms(spec)) for spec in probes], 6, 1536, CONDITIONS)
    assert predictor.form == "per-width" and predictor.fit_error["loo_median"]["per-width"] < 1e-9
    assert predictor.fit_error["loo_median"]["linear"] > 0.01
    unseen = TrimSpec(drop_layers=(1,), ffn_width={0: 768, 2: 384}, attention="relu")
    assert predictor.predict(unseen) == pytest.approx(true_ms(unseen))
    with pytest.raises(TrimbertError, match="not fitted for ffn@1000"):
        predictor.predict(TrimSpec(ffn_width={0: 1000}))


def test_a_feature_no_probe_varied_goes_into_the_constant():
    rows = [(TrimSpec(drop_ffn=tuple(range(n))), 10.0 - n) for n in range(4)]  # 6 blocks in every probe
    predictor = fit_predictor(rows, 6, 1536, CONDITIONS)
    assert predictor.fixed["blocks"] == 6.0 and "blocks" not in predictor.coefficients
    assert predictor.predict(TrimSpec(drop_ffn=(0, 1, 2, 3, 4))) == pytest.approx(5.0)
    with pytest.raises(TrimbertError, match="not fitted for blocks"):
        predictor.predict(TrimSpec(drop_layers=(0,)))
    with pytest.raises(TrimbertError, match="at least 3"):
        fit_predictor([(TrimSpec(), 1.0)], 6, 1536, CONDITIONS)


def test_cache_builds_once_per_conditions_and_space(tmp_path):
    space = SearchSpace(6, 1536, widths=(768,))
    built = []

    def build():
        built.append(1)
        return Predictor(CONDITIONS, 6, 1536, {"const": 1.0}, ["const"], baseline_ms=1.0)

    first, cached_first = cached_predictor(tmp_path, CONDITIONS, space, build)
    second, cached_second = cached_predictor(tmp_path, CONDITIONS, space, build)
    assert (cached_first, cached_second, len(built)) == (False, True, 1)
    assert second == first
    other = Conditions(**{**CONDITIONS.__dict__, "batch_size": 8})
    cached_predictor(tmp_path, other, space, build)
    cached_predictor(tmp_path, CONDITIONS, SearchSpace(6, 1536, widths=(384,)), build)
    assert len(built) == 3
    for path in tmp_path.glob("latency-*.json"):
        path.write_text("{not json")
    _, cached = cached_predictor(tmp_path, CONDITIONS, space, build)
    assert not cached and len(built) == 4


@pytest.mark.parametrize("runtime", ["onnx-int8", "openvino", "openvino-int8"])
def test_specs_are_timed_in_the_exported_runtime_asked_for(tiny_model, tmp_path, runtime):
    from trimbert.search.latency import measure_specs

    conditions = Conditions(runtime=runtime, device="cpu", batch_size=2, seq_len=8, threads=1, model_shape={"layers": 4})
    specs = [TrimSpec(), TrimSpec(drop_ffn=(1, 3))]
    # timing in the exported runtime is what this tests: it asserts only what no machine load changes (which specs
    # were timed, that each took some time, which model files were timed), never a time or a ratio of times
    measured = measure_specs(tiny_model, specs, conditions, repeats=3, warmup=1, work_dir=tmp_path)
    assert [item["summary"] for item in measured] == ["untrimmed", "ffn-[1,3]"]
    assert all(item["measured_ms"] > 0 for item in measured)
    # each spec was exported with the runtime's model file: ONNX Runtime int8, OpenVINO fp32 or int8
    expected = {"onnx-int8": "model.int8.onnx", "openvino": "model.xml", "openvino-int8": "model.int8.xml"}[runtime]
    assert sorted(path.parent.name for path in tmp_path.glob(f"*/{expected}")) == ["probe-0", "probe-1"]
