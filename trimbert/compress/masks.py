"""The mask search: which heads and FFN neurons to keep under a latency budget (Kwon et al. 2022, §4.1-4.2).

:func:`search_masks` follows Kwon's ``search_latency``: heads and neurons are ranked by their Fisher
information (:mod:`trimbert.importance.fisher`); for every number of heads kept (the globally highest
scored), the rest of the budget is filled with the highest scored neurons, and the combination that
keeps the most importance (removes the least) wins. Here the cost is a :class:`~trimbert.compress.cost.LinearCost`,
so for a given set of FFNs kept the filling is exact: each FFN's units are sorted, a unit's cost does
not depend on which it is, and the greedy fill is the knapsack optimum. Which FFNs to keep (an FFN
that keeps a neuron pays ``per_ffn_ms``; one that keeps none is dropped, ``drop_ffn``) is enumerated
exactly over all subsets when there are at most ``exact_ffns`` FFNs (12: BERT-base), else Kwon's way
(drop the ``k`` FFNs cheapest to drop, for every ``k``). Dropping an FFN removes its output bias and
LayerNorm too, which the sum of its neurons' diagonal scores does not see (it underestimated the loss
of dropping MiniLM's fifth FFN on MRPC 60-fold, and the model collapsed to one class): a dropped FFN
is charged the Fisher score of its FFN gate (``FisherScores.ffns``) where measured, else that sum.

Constraints: every block keeps at least one head (every head when the cost cannot price a pruned one) (its best one is kept first, like Kwon's per-layer
"base" units); an FFN that is kept keeps at least its best group of neurons. ``multiple``: each kept
FFN's width is a multiple of it (neurons are taken in groups of ``multiple``, a block's best first, a
group valued by the sum of its scores; kernels are often faster at widths that are multiples of 8 or
64); every FFN's current width must be a multiple of it. Ties: less importance removed, then the cheaper
plan, then the plan that keeps more FFNs.

:func:`rearrange` is Kwon's mask rearrangement (§4.2): within each block, with the number of heads
and neurons fixed, it greedily swaps which ones are removed to minimise the block-diagonal Fisher
estimate of the loss change, ``Σ_batches (Σ_removed g)²``, instead of the sum of the diagonal scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from trimbert.compress.cost import LinearCost
from trimbert.errors import TrimbertError
from trimbert.importance.fisher import FisherScores
from trimbert.model.ranking import descending

EXACT_FFNS = 12  # enumerate every subset of FFNs kept up to this many FFNs (2^12 subsets)


@dataclass
class MaskPlan:
    """Which units stay: ``heads`` block -> kept head indices, ``neurons`` FFN block -> kept neuron
    indices (ascending; empty: the FFN is dropped), among the model's CURRENT units, original block
    numbering. ``head_total``/``width_total``: the current counts; ``predicted_ms``: the cost of the
    plan; ``kept_importance``: the kept units' diagonal Fisher scores summed; ``removed_importance``: the
    removed heads' and neurons' scores, a dropped FFN counted by its drop score (:func:`drop_scores`)."""

    heads: dict[int, torch.Tensor]
    neurons: dict[int, torch.Tensor]
    head_total: dict[int, int]
    width_total: dict[int, int]
    predicted_ms: float
    budget_ms: float
    kept_importance: float
    removed_importance: float

    @property
    def head_counts(self) -> dict[int, int]:
        """Blocks that lose heads -> heads kept (the ``heads`` of a trim)."""
        return {b: len(kept) for b, kept in self.heads.items() if len(kept) < self.head_total[b]}

    @property
    def ffn_width(self) -> dict[int, int]:
        """FFNs narrowed -> neurons kept (the ``ffn_width`` of a trim)."""
        return {b: len(kept) for b, kept in self.neurons.items() if 0 < len(kept) < self.width_total[b]}

    @property
    def drop_ffn(self) -> tuple[int, ...]:
        """FFNs that keep no neuron (the ``drop_ffn`` of a trim)."""
        return tuple(sorted(b for b, kept in self.neurons.items() if len(kept) == 0))

    def head_masks(self) -> dict[int, torch.Tensor]:
        """Block -> 0/1 float64 mask over its current heads."""
        return {b: _mask(self.head_total[b], kept) for b, kept in self.heads.items()}

    def neuron_masks(self) -> dict[int, torch.Tensor]:
        """FFN block -> 0/1 float64 mask over its current neurons."""
        return {b: _mask(self.width_total[b], kept) for b, kept in self.neurons.items()}

    def summary(self) -> dict:
        """JSON-ready: the counts, the predicted latency and the importance kept and removed."""
        return {
            "heads": {str(b): count for b, count in self.head_counts.items()},
            "ffn_width": {str(b): width for b, width in self.ffn_width.items()},
            "drop_ffn": list(self.drop_ffn),
            "predicted_ms": self.predicted_ms,
            "budget_ms": self.budget_ms,
            "kept_importance": self.kept_importance,
            "removed_importance": self.removed_importance,
        }


def _mask(size: int, kept: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.float64)
    mask[kept.long()] = 1.0
    return mask


def _check_scores(scores: FisherScores, multiple: int) -> None:
    if not scores.heads:
        raise TrimbertError("compress: no head scores (every present block needs its heads scored)")
    if not set(scores.neurons) <= set(scores.heads):
        raise TrimbertError("compress: neuron scores for a block without head scores")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise TrimbertError(f"compress: the width multiple must be a whole number from 1, not {multiple!r}")
    for block, values in (*scores.heads.items(), *scores.neurons.items()):
        if not torch.isfinite(values.double()).all() or (values < 0).any():
            raise TrimbertError(f"compress: block {block} has scores that are not finite and non-negative")
    if not set(scores.ffns) <= set(scores.neurons):
        raise TrimbertError("compress: an FFN score for a block without neuron scores")
    for block, value in scores.ffns.items():
        if not torch.isfinite(value.double()).all() or (value < 0).any():
            raise TrimbertError(f"compress: block {block}'s FFN score is not finite and non-negative")
    for block, values in scores.neurons.items():
        if values.numel() % multiple:
            raise TrimbertError(
                f"compress: block {block}'s FFN has {values.numel()} neurons, not a multiple of {multiple}"
            )


def drop_scores(scores: FisherScores) -> dict[int, float]:
    """FFN block -> the estimated loss of dropping the whole FFN: its gate's Fisher score where measured,
    else the sum of its neurons' scores."""
    return {
        b: float(scores.ffns[b]) if b in scores.ffns else float(values.double().sum()) for b, values in scores.neurons.items()
    }


def _ffn_subsets(count: int, totals: np.ndarray, cost: LinearCost, exact_ffns: int) -> list[np.ndarray]:
    """Which FFNs to keep: every subset (most FFNs first), Kwon's nested drops, or all when none may go."""
    if not cost.can_drop_ffn or count == 0:
        return [np.ones(count, dtype=bool)]
    if count <= exact_ffns:
        codes = sorted(range(1 << count), key=lambda code: (-bin(code).count("1"), -code))
        return [np.array([(code >> i) & 1 for i in range(count)], dtype=bool) for code in codes]
    order = np.argsort(totals, kind="stable")
    subsets = []
    for dropped in range(count + 1):
        member = np.ones(count, dtype=bool)
        member[order[:dropped]] = False
        subsets.append(member)
    return subsets


def search_masks(
    scores: FisherScores,
    cost: LinearCost,
    budget_ms: float,
    *,
    multiple: int = 1,
    exact_ffns: int = EXACT_FFNS,
) -> MaskPlan:
    """The heads and neurons to keep within ``budget_ms`` (see the module docstring).

    ``scores``: Fisher scores of every present block's heads and every present FFN's neurons (only
    ``heads`` and ``neurons`` are read). Raises :class:`TrimbertError` when not even one head per
    block (and no FFN, or one group per FFN where FFNs cannot be dropped) fits the budget.
    """
    _check_scores(scores, multiple)
    if not math.isfinite(budget_ms):
        raise TrimbertError(f"compress: the latency budget must be a number of ms, not {budget_ms!r}")
    blocks = sorted(scores.heads)
    ffns = sorted(scores.neurons)
    head_order = {b: descending(scores.heads[b]).numpy() for b in blocks}
    head_values = {b: scores.heads[b].double().numpy()[head_order[b]] for b in blocks}
    # the heads beyond each block's best, globally by score (ties: block, then rank)
    rest = sorted(
        ((-float(head_values[b][rank]), b, rank) for b in blocks for rank in range(1, len(head_order[b]))),
    )
    head_prefix = np.concatenate([[0.0], np.cumsum([-value for value, _, _ in rest])])
    mandatory_heads = sum(float(head_values[b][0]) for b in blocks)
    head_counts = np.arange(len(rest) + 1) if cost.can_prune_heads else np.array([len(rest)])
    # the neuron groups beyond each FFN's best group, globally by value (ties: FFN, then rank)
    neuron_order = {b: descending(scores.neurons[b]).numpy() for b in ffns}
    group_values = {
        b: scores.neurons[b].double().numpy()[neuron_order[b]].reshape(-1, multiple).sum(1) for b in ffns
    }
    groups = sorted((-float(group_values[b][g]), f, g) for f, b in enumerate(ffns) for g in range(1, len(group_values[b])))
    values = np.array([-value for value, _, _ in groups])
    labels = np.array([f for _, f, _ in groups], dtype=int)
    first_groups = np.array([group_values[b][0] for b in ffns])
    totals = np.array([float(scores.neurons[b].double().sum()) for b in ffns])
    dropping = drop_scores(scores)
    extra = np.array([dropping[b] for b in ffns]) - totals  # what a dropped FFN costs beyond its neurons' scores
    ffn_ms = np.array([cost.ffn_ms(b) for b in ffns])
    tolerance = 1e-9 * max(1.0, abs(budget_ms))
    group_ms = cost.per_neuron_ms * multiple
    best: tuple[float, float] | None = None
    chosen: tuple[np.ndarray, int, int] | None = None
    cheapest = math.inf
    for member in _ffn_subsets(len(ffns), totals + extra, cost, exact_ffns):
        taken = values[member[labels]] if len(values) else values
        prefix = np.concatenate([[0.0], np.cumsum(taken)])
        kept_ffns = int(member.sum())
        spent = (  # per head count: everything but the neuron groups beyond each FFN's first
            cost.fixed_ms + cost.per_head_ms * (len(blocks) + head_counts)
            + cost.per_neuron_ms * multiple * kept_ffns + float(ffn_ms[member].sum())
        )
        left = budget_ms - spent
        if group_ms > 0:
            fill = np.clip(np.floor((left + tolerance) / group_ms), -1, len(taken)).astype(int)
            feasible = fill >= 0
            fill = np.maximum(fill, 0)
            cheapest = min(cheapest, float(spent.min()))
        else:
            fill = np.full(len(head_counts), len(taken))
            feasible = left - group_ms * len(taken) >= -tolerance
            cheapest = min(cheapest, float((spent + group_ms * len(taken)).min()))
        if not feasible.any():
            continue
        kept = head_prefix[head_counts] + prefix[fill] + mandatory_heads + float(first_groups[member].sum())
        kept -= float(extra[~member].sum())
        plan_ms = spent + group_ms * fill
        options = np.flatnonzero(feasible)
        option = int(options[np.lexsort((options, plan_ms[options], -kept[options]))[0]])
        candidate = (float(kept[option]), -float(plan_ms[option]))
        if best is None or candidate > best:
            best, chosen = candidate, (member, option, int(fill[option]))
    if chosen is None:
        raise TrimbertError(
            f"compress: no plan fits {budget_ms:.3f} ms (the smallest costs {cheapest:.3f} ms: "
            "one head per block and as few neurons as allowed)"
        )
    member, option, fill = chosen
    head_count = int(head_counts[option])
    kept_heads = {b: [int(head_order[b][0])] for b in blocks}
    for _, b, rank in rest[:head_count]:
        kept_heads[b].append(int(head_order[b][rank]))
    kept_groups = {b: (1 if member[f] else 0) for f, b in enumerate(ffns)}
    taken_groups = [(f, g) for _, f, g in groups if member[f]][:fill]
    for f, _ in taken_groups:
        kept_groups[ffns[f]] += 1
    kept_neurons = {b: neuron_order[b][: multiple * kept_groups[b]] for b in ffns}
    return _plan(scores, cost, budget_ms, kept_heads, kept_neurons)


def _plan(
    scores: FisherScores,
    cost: LinearCost,
    budget_ms: float,
    kept_heads: dict[int, list[int] | np.ndarray | torch.Tensor],
    kept_neurons: dict[int, list[int] | np.ndarray | torch.Tensor],
) -> MaskPlan:
    heads = {b: torch.as_tensor(np.asarray(kept, dtype=np.int64)).sort().values for b, kept in kept_heads.items()}
    neurons = {b: torch.as_tensor(np.asarray(kept, dtype=np.int64)).sort().values for b, kept in kept_neurons.items()}
    kept = sum(float(scores.heads[b].double()[i].sum()) for b, i in heads.items())
    kept += sum(float(scores.neurons[b].double()[i].sum()) for b, i in neurons.items())
    total = sum(float(v.double().sum()) for v in (*scores.heads.values(), *scores.neurons.values()))
    dropping = drop_scores(scores)
    total += sum(dropping[b] - float(scores.neurons[b].double().sum()) for b, i in neurons.items() if len(i) == 0)
    return MaskPlan(
        heads=heads,
        neurons=neurons,
        head_total={b: scores.heads[b].numel() for b in scores.heads},
        width_total={b: scores.neurons[b].numel() for b in scores.neurons},
        predicted_ms=cost.ms(
            sum(len(i) for i in heads.values()),
            sum(len(i) for i in neurons.values()),
            [b for b, i in neurons.items() if len(i)],
        ),
        budget_ms=budget_ms,
        kept_importance=kept,
        removed_importance=total - kept,
    )


def greedy_rearrange(grads: torch.Tensor, removed: int) -> torch.Tensor:
    """Kwon's ``greedy_rearrange`` for one block: ``grads`` ``[batches, units]``; which ``removed`` units
    to remove (ascending indices) so that ``Σ_batches (Σ_removed g)²`` is small. Starts from the
    ``removed`` lowest diagonal scores and, for every other unit in ascending score, adds it to the set
    and drops the member whose absence leaves the smallest joint estimate (ties: the lowest score)."""
    grads = grads.double().cpu()
    units = grads.shape[1]
    if removed <= 0 or removed >= units:
        return torch.arange(units)[: max(removed, 0)]
    order = torch.argsort(grads.square().sum(0), stable=True)
    norms = grads.square().sum(0)
    member = torch.zeros(units, dtype=torch.bool)
    member[order[:removed]] = True
    total = grads[:, member].sum(1)
    for index in order[removed:].tolist():
        member[index] = True
        total += grads[:, index]
        # ‖total − g_j‖² for every member j, looked at in score order (Kwon's list order)
        left = (total.square().sum() - 2 * (grads.T @ total) + norms)[order]
        left[~member[order]] = float("inf")
        drop = int(order[int(left.argmin())])
        member[drop] = False
        total -= grads[:, drop]
    return torch.nonzero(member).flatten()


def _kept_after(grads: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    units = grads.shape[1]
    removed = set(greedy_rearrange(grads, units - len(kept)).tolist())
    return torch.tensor([i for i in range(units) if i not in removed], dtype=torch.long)


def rearrange(plan: MaskPlan, scores: FisherScores, cost: LinearCost) -> MaskPlan:
    """``plan`` with each block's removed heads and neurons re-chosen by :func:`greedy_rearrange` (the
    counts, hence the predicted latency, stay). Needs the per-batch gradients of ``scores``."""
    heads = {
        b: _kept_after(scores.head_grads[b], kept) if b in scores.head_grads else kept for b, kept in plan.heads.items()
    }
    neurons = {
        b: _kept_after(scores.neuron_grads[b], kept) if b in scores.neuron_grads and len(kept) else kept
        for b, kept in plan.neurons.items()
    }
    return replace(_plan(scores, cost, plan.budget_ms, heads, neurons), predicted_ms=plan.predicted_ms)
