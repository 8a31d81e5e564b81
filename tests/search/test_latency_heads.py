"""The latency predictor and attention heads: the attn_heads feature, its exact fit, the refusal of
heads by a predictor whose probes pruned none (cached ones from before heads too), and the linear costs."""

import hashlib
import json
import random
from dataclasses import replace

import pytest

from trimbert.errors import TrimbertError
from trimbert.search.latency import cached_predictor, measure_specs, probe_specs
from trimbert.search.predictor import Conditions, LinearCosts, Predictor, fit_predictor, spec_features
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimSpec, encoder_layernorms

CONDITIONS = Conditions(
    runtime="pytorch", device="cpu", batch_size=1, seq_len=128, threads=2, model_shape={"num_attention_heads": 12}
)
COSTS = {"const": 1.0, "blocks": 0.3, "attn_heads": 0.6, "ffns": 0.1, "ffn_neurons": 1.3, "layernorms": 0.02, "attn:relu": 0.1}
SPACE = SearchSpace(6, 1536, widths=(768, 384), normalizers=("softmax", "relu"), max_drop_layers=2, num_attention_heads=12, heads=(9, 6))


def _true_ms(spec, extra=None):
    features = spec_features(spec, 6, 1536, 12)
    return sum({**COSTS, **(extra or {})}.get(name, 0.0) * value for name, value in features.items())


def _counts(spec):
    """The counts LinearCosts.ms takes, counted from the spec itself."""
    kept = spec.kept_layers(6)
    ffns = [block for block in kept if block not in spec.drop_ffn]
    return {
        "blocks": len(kept),
        "heads": sum(spec.head_counts.get(block, 12) for block in kept),
        "ffns": len(ffns),
        "neurons": sum(spec.ffn_widths.get(block, 1536) for block in ffns),
        "layernorms": len(encoder_layernorms(6, spec.drop_ffn, spec.drop_layers)) - len(spec.layernorm),
        "attention": spec.attention,
    }


def test_attn_heads_counts_each_present_block_by_its_share_of_heads():
    spec = TrimSpec(drop_layers=(5,), heads={0: 6, 2: 3})
    features = spec_features(spec, 6, 1536, 12)
    assert (features["blocks"], features["attn_heads"], features["pruned_heads"]) == (5.0, 3.75, 1.25)  # 0.5 + 0.25 + 3
    untouched = spec_features(TrimSpec(drop_layers=(4, 5)), 6, 1536)
    assert (untouched["attn_heads"], untouched["pruned_heads"]) == (4.0, 0.0)
    with pytest.raises(TrimbertError, match="a spec with heads needs the model's number of attention heads"):
        spec_features(spec, 6, 1536)


def test_probes_prune_heads_and_the_fit_recovers_the_head_cost():
    probes = probe_specs(SPACE, 20, seed=0)
    corners = probe_specs(SPACE, 2, seed=0)
    assert corners[4] == TrimSpec(heads=dict.fromkeys(range(6), 6))  # every block at half its heads, after the widths
    assert corners[-1] == TrimSpec(drop_layers=(4, 5)) and len(corners) == 8
    assert sum(bool(spec.heads) for spec in probes[len(corners):]) >= 6  # random specs of the space prune heads too
    predictor = fit_predictor([(spec, _true_ms(spec)) for spec in probes], 6, 1536, CONDITIONS, num_attention_heads=12)
    assert predictor.form == "linear" and predictor.num_attention_heads == 12 and "pruned_heads" not in predictor.fixed
    for name, cost in COSTS.items():
        assert predictor.coefficients[name] == pytest.approx(cost, abs=1e-9)
    unseen = TrimSpec(drop_layers=(2,), heads={0: 9, 5: 6}, ffn_width={1: 384}, attention="relu")
    assert predictor.predict(unseen) == pytest.approx(_true_ms(unseen))


def test_linear_costs_are_exact_for_the_linear_form():
    probes = probe_specs(SPACE, 20, seed=0)
    predictor = fit_predictor([(spec, _true_ms(spec)) for spec in probes], 6, 1536, CONDITIONS, num_attention_heads=12)
    costs = predictor.linear_costs()
    assert isinstance(costs, LinearCosts) and not costs.refitted
    assert costs.const_ms == pytest.approx(1.0) and costs.block_ms == pytest.approx(0.3)
    assert costs.head_ms == pytest.approx(0.6 / 12) and costs.neuron_ms == pytest.approx(1.3 / 1536)
    assert costs.ffn_ms == pytest.approx(0.1) and costs.layernorm_ms == pytest.approx(0.02)
    assert costs.normalizer_ms == pytest.approx({"relu": 0.1})
    assert costs.fixed == tuple(f"attn:{name}" for name in ("relu-len", "sigmoid", "softermax", "squared-relu"))
    rng = random.Random(5)
    for spec in [TrimSpec(), *(SPACE.random_spec(rng) for _ in range(30))]:
        assert costs.ms(**_counts(spec)) == pytest.approx(predictor.predict(spec), rel=1e-12)
    assert costs.to_dict()["head_ms"] == costs.head_ms
    with pytest.raises(TrimbertError, match="not fitted for attention 'sigmoid'"):
        costs.ms(blocks=6, heads=72, ffns=6, neurons=6 * 1536, layernorms=12, attention="sigmoid")


def test_the_per_width_form_refuses_linear_costs_unless_refitted():
    slow = {"ffn@768": 2.0}  # not linear in the width
    probes = probe_specs(SPACE, 24, seed=1)
    rows = [(spec, _true_ms(spec, slow)) for spec in probes]
    predictor = fit_predictor(rows, 6, 1536, CONDITIONS, num_attention_heads=12)
    predictor.probes = [{"spec": spec.to_dict(), "measured_ms": ms} for spec, ms in rows]
    assert predictor.form == "per-width"
    with pytest.raises(TrimbertError, match=r"the per-width form.*linear_costs\(refit=True\)"):
        predictor.linear_costs()
    refitted = predictor.linear_costs(refit=True)
    linear = fit_predictor(rows, 6, 1536, CONDITIONS, num_attention_heads=12, form="linear")
    assert linear.form == "linear" and refitted == replace(linear.linear_costs(), refitted=True)


def test_a_predictor_whose_probes_pruned_no_heads_refuses_specs_with_heads():
    space = SearchSpace(6, 1536, widths=(768,), max_drop_layers=2, num_attention_heads=12)
    probes = probe_specs(space, 12, seed=0)
    assert not any(spec.heads for spec in probes)
    predictor = fit_predictor([(spec, _true_ms(spec)) for spec in probes], 6, 1536, CONDITIONS, num_attention_heads=12)
    # attn_heads moved with blocks in every probe: not fitted; the block cost holds both
    assert "attn_heads" not in predictor.coefficients and predictor.fixed["pruned_heads"] == 0.0
    assert predictor.coefficients["blocks"] == pytest.approx(0.9)
    assert predictor.predict(TrimSpec(drop_layers=(1, 2))) == pytest.approx(_true_ms(TrimSpec(drop_layers=(1, 2))))
    with pytest.raises(TrimbertError, match=r"not fitted for pruned_heads \(no probe varied it"):
        predictor.predict(TrimSpec(heads={0: 6}))
    assert predictor.linear_costs().fixed[-1] == "pruned_heads"


def test_a_predictor_cached_before_heads_loads_and_refuses_heads(tmp_path):
    space = SearchSpace(6, 1536, widths=(768,), max_drop_layers=1)
    probes = probe_specs(space, 8, seed=0)
    fitted = fit_predictor([(spec, _true_ms(spec)) for spec in probes], 6, 1536, CONDITIONS, num_attention_heads=12)
    old = fitted.to_dict()
    # the file an older trimbert wrote: no num_attention_heads, no pruned_heads, no attn_heads feature
    del old["num_attention_heads"], old["fixed"]["pruned_heads"]
    old["baseline_ms"] = _true_ms(TrimSpec())
    identity = json.dumps({"conditions": CONDITIONS.key(), "space": {
        "num_layers": 6, "intermediate_size": 1536, "widths": [768], "normalizers": ["softmax"],
        "max_drop_layers": 1, "layernorms": True, "drop_ffn": True}}, sort_keys=True)
    (tmp_path / f"latency-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json").write_text(json.dumps(old))

    def build():
        raise AssertionError("the cached predictor should have been used")

    loaded, cached = cached_predictor(tmp_path, CONDITIONS, space, build)
    assert cached and loaded.num_attention_heads == 12  # from conditions.model_shape
    assert loaded.fixed["pruned_heads"] == 0.0
    assert loaded.predict(TrimSpec(drop_layers=(5,))) == pytest.approx(fitted.predict(TrimSpec(drop_layers=(5,))))
    with pytest.raises(TrimbertError, match="not fitted for pruned_heads"):
        loaded.predict(TrimSpec(heads={3: 6}))
    unknown = Predictor.from_dict({**old, "conditions": {**old["conditions"], "model_shape": {"layers": 6}}})
    assert unknown.num_attention_heads == 0
    with pytest.raises(TrimbertError, match="not fitted for pruned_heads .it does not know the model's head count"):
        unknown.predict(TrimSpec(heads={3: 6}))


def test_head_pruned_specs_are_timed(tiny_model, tmp_path):
    conditions = Conditions(runtime="pytorch", device="cpu", batch_size=2, seq_len=8, threads=1, model_shape={"layers": 4})
    specs = [TrimSpec(), TrimSpec(heads=dict.fromkeys(range(4), 2))]
    # timing a head-pruned trim is what this tests: it asserts only what no machine load changes (which specs were
    # timed, and that each took some time), never a time or a ratio of times
    measured = measure_specs(tiny_model, specs, conditions, repeats=3, warmup=1, work_dir=tmp_path)
    assert [item["summary"] for item in measured] == ["untrimmed", "heads=2"]
    assert [TrimSpec.from_dict(item["spec"]) for item in measured] == specs
    assert all(item["measured_ms"] > 0 for item in measured)
