"""The mask search keeps the most Fisher importance a linear cost allows; rearrangement swaps within blocks."""

import itertools

import numpy as np
import pytest
import torch

from trimbert.compress.cost import LinearCost
from trimbert.compress.masks import greedy_rearrange, rearrange, search_masks
from trimbert.errors import TrimbertError
from trimbert.importance.fisher import FisherScores

HEADS = {0: [5.0, 1.0, 0.5], 1: [0.2, 3.0, 0.1]}
NEURONS = {0: [4.0, 0.3, 2.0, 0.05], 1: [0.6, 0.4, 0.01, 0.02]}


def _scores(heads=HEADS, neurons=NEURONS, ffns=None):
    return FisherScores(
        heads={b: torch.tensor(v, dtype=torch.float64) for b, v in heads.items()},
        neurons={b: torch.tensor(v, dtype=torch.float64) for b, v in neurons.items()},
        head_grads={},
        neuron_grads={},
        rows=0,
        seconds=0.0,
        objective="task-loss",
        ffns={b: torch.tensor(v, dtype=torch.float64) for b, v in (ffns or {}).items()},
    )


def _kept(plan):
    heads = {b: kept.tolist() for b, kept in plan.heads.items()}
    neurons = {b: kept.tolist() for b, kept in plan.neurons.items()}
    return heads, neurons


def test_the_budget_goes_to_the_highest_scored_units_with_one_head_per_block():
    # one unit = 1 ms: the best head of each block, the best neuron of each FFN, then 2 ms for the
    # next best units anywhere: neuron 2 of FFN 0 (2.0) and head 1 of block 0 (1.0)
    plan = search_masks(_scores(), LinearCost(fixed_ms=0.0, per_head_ms=1.0, per_neuron_ms=1.0), 6.0)
    assert _kept(plan) == ({0: [0, 1], 1: [1]}, {0: [0, 2], 1: [0]})
    assert plan.head_counts == {0: 2, 1: 1} and plan.ffn_width == {0: 2, 1: 1} and plan.drop_ffn == ()
    assert plan.predicted_ms == 6.0 and plan.budget_ms == 6.0
    assert plan.kept_importance == pytest.approx(15.6)
    assert plan.removed_importance == pytest.approx(sum(map(sum, HEADS.values())) + sum(map(sum, NEURONS.values())) - 15.6)
    assert plan.head_masks()[0].tolist() == [1.0, 1.0, 0.0]
    assert plan.neuron_masks()[1].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_an_ffn_is_dropped_when_its_fixed_cost_buys_more_elsewhere():
    cost = LinearCost(fixed_ms=0.0, per_head_ms=1.0, per_neuron_ms=1.0, per_ffn_ms=1.0)
    plan = search_masks(_scores(), cost, 7.0)
    # keeping FFN 1 costs 1 ms + its best neuron (0.6): dropping it buys neuron 2 of FFN 0 and two heads
    assert _kept(plan) == ({0: [0, 1, 2], 1: [1]}, {0: [0, 2], 1: []})
    assert plan.drop_ffn == (1,) and plan.ffn_width == {0: 2} and plan.head_counts == {1: 1}
    assert plan.predicted_ms == 7.0 and plan.kept_importance == pytest.approx(15.5)
    # Kwon's nested drops (least total importance first) find the same plan
    assert _kept(search_masks(_scores(), cost, 7.0, exact_ffns=1)) == _kept(plan)


def test_a_dropped_ffn_is_charged_its_ffn_gate_score_not_its_neurons_sum():
    cost = LinearCost(fixed_ms=0.0, per_head_ms=1.0, per_neuron_ms=1.0, per_ffn_ms=1.0)
    total = sum(map(sum, HEADS.values())) + sum(map(sum, NEURONS.values()))  # 17.18; FFN 1's neurons: 1.03
    # dropping FFN 1 removes 1.68 by its neurons (the test above); at a drop score of 1.5 it removes
    # 1.68 - 1.03 + 1.5 = 2.15, still less than keeping it (2.58): dropped
    cheap = search_masks(_scores(ffns={1: 1.5}), cost, 7.0)
    assert _kept(cheap) == ({0: [0, 1, 2], 1: [1]}, {0: [0, 2], 1: []})
    assert cheap.removed_importance == pytest.approx(2.15) and cheap.kept_importance == pytest.approx(15.5)
    # at 5.0 it would remove 5.65: FFN 1 keeps its best neuron, the last ms buys neuron 2 of FFN 0
    dear = search_masks(_scores(ffns={1: 5.0}), cost, 7.0)
    assert _kept(dear) == ({0: [0], 1: [1]}, {0: [0, 2], 1: [0]}) and dear.drop_ffn == ()
    assert dear.kept_importance == pytest.approx(14.6) and dear.removed_importance == pytest.approx(total - 14.6)
    # Kwon's nested drops order the FFNs by their drop scores: FFN 0 (0.1) goes before FFN 1 (5.0)
    nested = search_masks(_scores(ffns={0: 0.1, 1: 5.0}), cost, 7.0, exact_ffns=1)
    assert _kept(nested) == _kept(search_masks(_scores(ffns={0: 0.1, 1: 5.0}), cost, 7.0))
    assert nested.drop_ffn == (0,)
    with pytest.raises(TrimbertError, match="block 1's FFN score is not finite"):
        search_masks(_scores(ffns={1: float("nan")}), cost, 7.0)
    with pytest.raises(TrimbertError, match="FFN score for a block without neuron scores"):
        search_masks(_scores(ffns={2: 1.0}), cost, 7.0)


def test_widths_are_multiples_of_the_group_size():
    # groups of 2: FFN 0 = (4+2, 0.3+0.05), FFN 1 = (0.6+0.4, 0.02+0.01); 2 ms left buy two heads (1.5)
    plan = search_masks(_scores(), LinearCost(fixed_ms=0.0, per_head_ms=1.0, per_neuron_ms=1.0), 8.0, multiple=2)
    assert _kept(plan) == ({0: [0, 1, 2], 1: [1]}, {0: [0, 2], 1: [0, 1]})
    assert plan.ffn_width == {0: 2, 1: 2} and plan.head_counts == {1: 1}
    with pytest.raises(TrimbertError, match="not a multiple of 3"):
        search_masks(_scores(), LinearCost(fixed_ms=0.0), 8.0, multiple=3)


def test_the_smallest_plan_keeps_one_head_per_block_and_a_smaller_budget_is_refused():
    cost = LinearCost(fixed_ms=0.5, per_head_ms=1.0, per_neuron_ms=1.0, per_ffn_ms=1.0)
    plan = search_masks(_scores(), cost, 2.5)
    assert _kept(plan) == ({0: [0], 1: [1]}, {0: [], 1: []}) and plan.drop_ffn == (0, 1)
    with pytest.raises(TrimbertError, match=r"no plan fits 2.490 ms \(the smallest costs 2.500 ms"):
        search_masks(_scores(), cost, 2.49)
    keeping = LinearCost(fixed_ms=0.5, per_head_ms=1.0, per_neuron_ms=1.0, per_ffn_ms=1.0, can_drop_ffn=False)
    with pytest.raises(TrimbertError, match="the smallest costs 6.500 ms"):
        search_masks(_scores(), keeping, 6.0)
    assert _kept(search_masks(_scores(), keeping, 6.5)) == ({0: [0], 1: [1]}, {0: [0], 1: [0]})


def test_heads_the_cost_cannot_price_are_all_kept():
    cost = LinearCost(fixed_ms=0.0, per_head_ms=1.0, per_neuron_ms=1.0, can_prune_heads=False)
    plan = search_masks(_scores(), cost, 8.0)
    assert _kept(plan) == ({0: [0, 1, 2], 1: [0, 1, 2]}, {0: [0, 2], 1: []}) and plan.head_counts == {}


def _brute_force(heads, neurons, cost, budget, multiple, ffns=None):
    """The least importance any plan within the budget removes (every subset of every block; a dropped
    FFN removes its drop score, ``ffns``, where given)."""
    best = np.inf
    total = sum(map(sum, heads.values())) + sum(map(sum, neurons.values()))
    extra = {b: (ffns or {}).get(b, sum(values)) - sum(values) for b, values in neurons.items()}
    head_options = [
        [(len(s), sum(values[i] for i in s)) for r in range(1, len(values) + 1) for s in itertools.combinations(range(len(values)), r)]
        for values in heads.values()
    ]
    neuron_options = [
        [(len(s), sum(values[i] for i in s)) for r in range(0, len(values) + 1, multiple) for s in itertools.combinations(range(len(values)), r)]
        for values in neurons.values()
    ]
    for head_choice in itertools.product(*head_options):
        for neuron_choice in itertools.product(*neuron_options):
            kept_ffns = [b for b, (count, _) in zip(neurons, neuron_choice, strict=True) if count]
            ms = cost.ms(sum(c for c, _ in head_choice), sum(c for c, _ in neuron_choice), kept_ffns)
            if ms <= budget + 1e-9:
                kept = sum(v for _, v in head_choice) + sum(v for _, v in neuron_choice)
                best = min(best, total - kept + sum(extra[b] for b in neurons if b not in kept_ffns))
    return best


@pytest.mark.parametrize(("multiple", "drop_scores"), [(1, False), (2, False), (1, True)])
def test_the_search_finds_the_best_plan_of_all(multiple, drop_scores):
    rng = np.random.default_rng(7)
    for _ in range(12):
        heads = {b: list(rng.random(3)) for b in range(2)}
        neurons = {b: list(rng.random(4)) for b in range(2)}
        ffns = {b: float(rng.uniform(0.0, 4.0)) for b in range(2)} if drop_scores else None
        cost = LinearCost(
            fixed_ms=0.5,
            per_head_ms=float(rng.uniform(0.1, 1.0)),
            per_neuron_ms=float(rng.uniform(0.05, 0.5)),
            per_ffn_ms=float(rng.uniform(0.0, 1.0)),
            ffn_ms_by_block={1: float(rng.uniform(0.0, 1.0))},
        )
        full = cost.ms(6, 8, [0, 1])
        budget = float(rng.uniform(cost.ms(2, 0, []), full))
        plan = search_masks(_scores(heads, neurons, ffns), cost, budget, multiple=multiple)
        assert plan.predicted_ms <= budget + 1e-9
        assert all(len(kept) >= 1 for kept in plan.heads.values())
        assert all(len(kept) % multiple == 0 for kept in plan.neurons.values())
        best = _brute_force(heads, neurons, cost, budget, multiple, ffns)
        assert plan.removed_importance == pytest.approx(best, abs=1e-12)


def test_greedy_rearrangement_removes_units_whose_gradients_cancel():
    # the two lowest diagonal scores (units 0 and 1) push the loss the same way; unit 2 cancels them
    grads = torch.tensor([[1.0, 1.0, -1.1], [0.0, 0.0, 0.0]])
    assert greedy_rearrange(grads, 2).tolist() == [1, 2]
    assert greedy_rearrange(grads, 0).tolist() == [] and greedy_rearrange(grads, 3).tolist() == [0, 1, 2]


def _kwon_greedy_rearrange(grads, removed):
    """prune/rearrange.py of WoosukKwon/retraining-free-pruning, as published (the removed units)."""
    grads = grads.permute(1, 0).contiguous()
    _, indices = grads.pow(2).sum(dim=1).sort(descending=False, stable=True)
    indices = indices.tolist()
    masked = indices[:removed]
    for index in indices[removed:]:
        masked.append(index)
        vectors = grads[masked]
        lengths = (vectors.sum(dim=0) - vectors).pow(2).sum(dim=1)
        del masked[int(lengths.argmin())]
    return sorted(masked)


def test_the_rearrangement_is_kwons():
    generator = torch.Generator().manual_seed(3)
    for units, removed in ((12, 5), (40, 30), (64, 1)):
        grads = torch.randn(6, units, generator=generator, dtype=torch.float64)
        assert greedy_rearrange(grads, removed).tolist() == _kwon_greedy_rearrange(grads, removed)


def test_rearranging_a_plan_keeps_its_counts_and_latency():
    scores = FisherScores.from_grads(
        {0: torch.tensor([[1.0, 0.2], [0.5, 0.0]])},
        {0: torch.tensor([[1.0, 1.0, -1.1], [0.0, 0.0, 0.0]])},
    )
    cost = LinearCost(fixed_ms=0.0, per_head_ms=0.0, per_neuron_ms=1.0)
    plan = search_masks(scores, cost, 1.0)
    assert _kept(plan) == ({0: [0, 1]}, {0: [2]})  # the highest diagonal score
    moved = rearrange(plan, scores, cost)
    assert _kept(moved) == ({0: [0, 1]}, {0: [0]})
    assert moved.predicted_ms == plan.predicted_ms and moved.ffn_width == plan.ffn_width
    assert moved.kept_importance == pytest.approx(1.25 + 0.04 + 1.0)  # both heads, then neuron 0
