"""Retraining-free compression end to end: Fisher scores, mask search, least-squares fix, physical trim.

:func:`compress_model` is Kwon et al. 2022 ("A Fast Post-Training Pruning Framework for
Transformers") on a loaded model: :func:`~trimbert.importance.fisher.fisher_scores` on a sample,
:func:`~trimbert.compress.masks.search_masks` under a latency budget (then
:func:`~trimbert.compress.masks.rearrange`), :func:`~trimbert.compress.lstsq.fit_scales` on the same
sample, the scales folded into the output projections (:func:`~trimbert.compress.lstsq.fold_scales`)
and :func:`trimbert.model.trim.trim` keeping exactly the chosen heads and neurons (their masks are
passed as the importance scores). No weight is trained.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trimbert.compress.cost import LinearCost, linear_cost
from trimbert.compress.lstsq import DAMP, MAX_SCALE, LayerFix, Scales, fit_scales, fold_scales
from trimbert.compress.masks import EXACT_FFNS, MaskPlan, rearrange, search_masks
from trimbert.errors import TrimbertError
from trimbert.importance.fisher import FisherScores, fisher_scores
from trimbert.model.structure import applied_spec
from trimbert.model.trim import trim
from trimbert.spec import TrimSpec


@dataclass
class CompressReport:
    """What :func:`compress_model` chose and how long each stage took.

    ``spec``: the trimmed model's spec; ``plan``: the kept heads and neurons (indices among the
    model's units before compression); ``cost``: the linear cost searched with; ``predicted_ms``:
    its prediction for the plan; ``scales``: the fitted scales (``scales.fixes``: each sub-layer's
    reconstruction error before and after); ``fisher``: the scores (``fisher.rows``, ``fisher.seconds``).
    """

    spec: TrimSpec
    plan: MaskPlan
    cost: LinearCost
    predicted_ms: float
    budget_ms: float
    fisher: FisherScores
    scales: Scales
    search_seconds: float
    rearranged: bool

    @property
    def fixes(self) -> list[LayerFix]:
        return self.scales.fixes

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the spec, the plan's counts, the latency, the stage times and the fixes."""
        return {
            "spec": self.spec.to_dict(),
            "summary": self.spec.summary(),
            "plan": self.plan.summary(),
            "cost": {
                "fixed_ms": self.cost.fixed_ms,
                "per_head_ms": self.cost.per_head_ms,
                "per_neuron_ms": self.cost.per_neuron_ms,
                "per_ffn_ms": self.cost.per_ffn_ms,
                "can_drop_ffn": self.cost.can_drop_ffn,
            },
            "predicted_ms": self.predicted_ms,
            "budget_ms": self.budget_ms,
            "objective": self.fisher.objective,
            "rows": self.fisher.rows,
            "fisher_seconds": self.fisher.seconds,
            "search_seconds": self.search_seconds,
            "lstsq_seconds": self.scales.seconds,
            "rearranged": self.rearranged,
            "fixes": [
                {"block": f.block, "part": f.part, "units": f.units, "before": f.before, "after": f.after,
                 "applied": f.applied, "reason": f.reason}
                for f in self.fixes
            ],
        }


def _reads_first_token(model: nn.Module) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


def _plain_scales(plan: MaskPlan) -> Scales:
    masks = plan.neuron_masks()
    return Scales(heads=plan.head_masks(), neurons={b: masks[b] for b, kept in plan.neurons.items() if len(kept)})


def compress_model(
    model: nn.Module,
    batches: Sequence[Mapping[str, torch.Tensor]],
    cost: Any,
    budget_ms: float,
    *,
    has_head: bool,
    multiple: int = 1,
    rearrange_masks: bool = True,
    fix: bool = True,
    damp: float = DAMP,
    max_scale: float = MAX_SCALE,
    seed: int = 0,
    exact_ffns: int = EXACT_FFNS,
    scores: FisherScores | None = None,
) -> tuple[nn.Module, CompressReport]:
    """Compress ``model`` to a predicted ``budget_ms`` without retraining; returns the trimmed model and a report.

    ``batches``: the sample (dicts of ``input_ids``, ``attention_mask``, ``labels`` when ``has_head``),
    used for the Fisher scores and the least-squares fix. ``cost``: a
    :class:`~trimbert.compress.cost.LinearCost`, or an additive latency model (``predict(spec) -> ms``, e.g.
    a :class:`trimbert.search.predictor.Predictor` of the linear form) read by
    :func:`~trimbert.compress.cost.linear_cost`. ``has_head``: score with the task loss (a fine-tuned
    head) or the head-less hidden-state Fisher. ``multiple``: kept FFN widths are multiples of it.
    ``rearrange_masks``: Kwon's per-block rearrangement; ``fix``: the least-squares scales (the last
    block's FFN is fitted on the first token for a sequence classifier); ``damp``/``max_scale``: the
    solver's ridge and blow-up guard. ``scores``: Fisher scores of this model computed before (a second pass
    at another budget reuses the first pass's ``report.fisher``; they must be of the untouched weights). Like :func:`~trimbert.model.trim.trim`, ``model`` must not be
    used afterwards (the scales are written into its weights, which the trimmed model takes over).
    """
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) or not budget_ms > 0:
        raise TrimbertError(f"compress: the latency budget must be a positive number of ms, not {budget_ms!r}")
    line = linear_cost(cost, model)
    if scores is None:
        scores = fisher_scores(model, batches, has_head=has_head, seed=seed)
    start = time.perf_counter()
    plan = search_masks(scores, line, float(budget_ms), multiple=multiple, exact_ffns=exact_ffns)
    if rearrange_masks:
        plan = rearrange(plan, scores, line)
    search_seconds = time.perf_counter() - start
    if fix:
        scales = fit_scales(
            model, plan, batches, damp=damp, max_scale=max_scale, last_first_token=has_head and _reads_first_token(model)
        )
    else:
        scales = _plain_scales(plan)
    fold_scales(model, scales)
    heads, widths, drop = plan.head_counts, plan.ffn_width, plan.drop_ffn
    head_masks, neuron_masks = plan.head_masks(), plan.neuron_masks()
    trimmed = trim(
        model,
        heads=heads or None,
        head_importance={b: head_masks[b] for b in heads} if heads else None,
        ffn_width=widths or None,
        ffn_importance={b: neuron_masks[b] for b in widths} if widths else None,
        drop_ffn=list(drop) or None,
    )
    report = CompressReport(
        spec=applied_spec(trimmed),
        plan=plan,
        cost=line,
        predicted_ms=plan.predicted_ms,
        budget_ms=float(budget_ms),
        fisher=scores,
        scales=scales,
        search_seconds=search_seconds,
        rearranged=rearrange_masks,
    )
    return trimmed, report
