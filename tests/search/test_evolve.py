"""The evolutionary search: only feasible specs, the best found, the Pareto front, the deadline."""

import time

import pytest

from trimbert.errors import TrimbertError
from trimbert.search.evolve import Candidate, SearchResult, choose_finalist, evolve, pareto_front
from trimbert.search.predictor import Conditions, Predictor
from trimbert.search.space import SearchSpace, fixed_patterns
from trimbert.spec import TrimSpec

CONDITIONS = Conditions(runtime="pytorch", device="cpu", batch_size=1, seq_len=8, threads=1, model_shape={})
SPACE = SearchSpace(4, 64, widths=(48, 32, 16), normalizers=("softmax", "relu"), max_drop_layers=1)
# 1 ms per block, 1 ms per full FFN: the untrimmed model takes 9 ms
COSTS = {"const": 1.0, "blocks": 1.0, "ffns": 0.0, "ffn_neurons": 1.0, "layernorms": 0.0, "attn:relu": 0.0}
PREDICTOR = Predictor(CONDITIONS, 4, 64, COSTS, list(COSTS), baseline_ms=9.0)


def accuracy(spec: TrimSpec) -> float:
    """A made-up accuracy: blocks 0 and 1 matter, FFN 3 does not, relu costs 0.01."""
    score = 1.0 - 0.2 * sum(block in (0, 1) for block in spec.drop_layers) - 0.1 * len(spec.drop_layers)
    score -= sum(0.05 for block in spec.drop_ffn if block != 3)
    score -= sum((64 - width) / 640 for block, width in spec.ffn_width if block != 3)
    return score - 0.01 * (spec.attention == "relu") - 0.001 * len(spec.layernorm)


def test_finds_the_best_feasible_spec():
    result = evolve(SPACE, accuracy, PREDICTOR, min_speedup=1.25, patterns=fixed_patterns(SPACE), generations=10, seed=1)
    assert all(candidate.predicted_speedup >= 1.25 for candidate in result.candidates)
    # dropping FFN 3 alone gives 9/8 = 1.125x; the best trim at >= 1.25x also drops FFN 3 and narrows another
    # FFN to 16 neurons or drops it: 1.0 - 0.05 = 0.95 (drop FFN 2, 9/7 = 1.29x)
    assert result.best.estimate == pytest.approx(0.95)
    assert result.best.spec.drop_ffn[-1] == 3 and not result.best.spec.drop_layers
    assert len({candidate.spec for candidate in result.candidates}) == len(result.candidates)
    assert result.stopped == "generations" and result.generations == 10
    assert any(candidate.origin.startswith("pattern: ") for candidate in result.candidates)


def test_deadline_stops_the_search():
    result = evolve(SPACE, accuracy, PREDICTOR, min_speedup=1.1, deadline=time.monotonic() - 1)
    assert result.candidates == [] and result.best is None and result.stopped == "deadline"


def test_an_impossible_target_finds_nothing():
    result = evolve(SPACE, accuracy, PREDICTOR, min_speedup=50.0)
    assert result.best is None and result.stopped == "space exhausted"


def test_bad_effort_is_refused():
    with pytest.raises(TrimbertError, match="population >= 2"):
        evolve(SPACE, accuracy, PREDICTOR, min_speedup=1.1, population=1)


def _candidate(ms, estimate):
    return Candidate(TrimSpec(drop_ffn=(int(ms),)), ms, 9 / ms, estimate, "random", 0)


def test_pareto_front_keeps_the_undominated_fastest_first():
    items = [_candidate(5, 0.80), _candidate(6, 0.85), _candidate(6.5, 0.84), _candidate(7, 0.85), _candidate(8, 0.90), _candidate(4, 0.70)]
    front = pareto_front(items)
    assert [(c.predicted_ms, c.estimate) for c in front] == [(4, 0.70), (5, 0.80), (6, 0.85), (8, 0.90)]


def test_a_window_keeps_every_candidate_between_the_target_and_the_overshoot():
    # 9/7 = 1.29x (one FFN dropped or two narrowed by 32) is inside [1.25, 1.3]; 9/6 = 1.5x is not
    result = evolve(SPACE, accuracy, PREDICTOR, min_speedup=1.25, max_speedup=1.3, patterns=fixed_patterns(SPACE), seed=1)
    assert result.candidates and all(1.25 <= candidate.predicted_speedup <= 1.3 for candidate in result.candidates)
    assert {round(candidate.predicted_ms, 6) for candidate in result.candidates} == {7.0}
    assert result.best.estimate == pytest.approx(0.95)
    unbounded = evolve(SPACE, accuracy, PREDICTOR, min_speedup=1.25, patterns=fixed_patterns(SPACE), seed=1)
    assert max(candidate.predicted_speedup for candidate in unbounded.candidates) > 1.3


def test_finalists_are_rescored_and_the_best_fresh_score_wins():
    items = [_candidate(5, 0.90), _candidate(6, 0.89), _candidate(7, 0.88), _candidate(8, 0.70)]
    items[3].origin = "pattern: drop-ffn last:1"
    result = SearchResult(items, items[0], 1, 0.0, "generations")
    fresh = {5: 0.80, 6: 0.86, 7: 0.86, 8: 0.87}  # the search's best was lucky; the pattern is best afresh
    finalists = choose_finalist(result, lambda spec: fresh[spec.drop_ffn[0]], finalists=2)
    assert [c.predicted_ms for c in finalists] == [8, 6, 5]  # the 2 best by estimate and the pattern, best first
    assert result.best is items[3] and items[3].final_estimate == pytest.approx(0.87)
    assert items[2].final_estimate is None  # third by estimate, not a pattern: not re-scored
    fresh[8] = 0.86
    result = SearchResult(items, items[0], 1, 0.0, "generations")
    assert choose_finalist(result, lambda spec: fresh[spec.drop_ffn[0]], finalists=3)[0] is items[1]  # a tie: the faster
    untouched = SearchResult(items, items[0], 1, 0.0, "generations")
    assert choose_finalist(untouched, lambda spec: 0.0, finalists=0) == [] and untouched.best is items[0]

