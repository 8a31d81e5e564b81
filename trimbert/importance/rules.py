"""The one way to score a model's units: :func:`score` runs an importance rule by name and returns
its :class:`~trimbert.importance.scores.Importance`.

The rules (higher = more important, original block numbering):

- ``magnitude`` (:mod:`~trimbert.importance.magnitude`): FFN neurons and heads by their weights; no data;
- ``taylor`` (:mod:`~trimbert.importance.taylor`): every unit by the gradient of its gate;
- ``fisher`` (:mod:`~trimbert.importance.fisher`): FFN neurons and heads by the Fisher information of
  their masks (Kwon et al. 2022);
- ``cut`` (:mod:`~trimbert.importance.cut`): FFNs, LayerNorms and heads by cutting each out and
  measuring the change (task loss, or 1 − CKA of the final hidden states).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.importance.cut import analyze_blocks
from trimbert.importance.fisher import fisher_scores
from trimbert.importance.magnitude import magnitude
from trimbert.importance.scores import Importance
from trimbert.importance.taylor import taylor_importance

RULES = ("magnitude", "taylor", "fisher", "cut")
CUT_UNITS = ("ffn", "layernorm", "heads")


def score(
    model: nn.Module,
    rule: str,
    batches: Sequence[dict[str, torch.Tensor]] | None = None,
    *,
    has_head: bool = False,
    seed: int = 0,
    units: Collection[str] = CUT_UNITS,
) -> Importance:
    """The scores of ``model``'s units by ``rule`` (one of :data:`RULES`) on ``batches``.

    Every rule but ``magnitude`` needs ``batches`` (dicts of ``input_ids``, ``attention_mask``, and
    ``labels`` when ``has_head``: the model's head is fine-tuned for them, and the task loss is the
    objective). ``seed`` draws the head-less projections of ``taylor`` and ``fisher``. ``units``: what
    the ``cut`` rule cuts (FFNs always; each cut is a pass over the sample); the other rules score
    all their units at once. The model is left as it was.
    """
    if rule not in RULES:
        raise TrimbertError(f"importance: unknown rule {rule!r} (choose from {', '.join(RULES)})")
    if rule == "magnitude":
        return magnitude(model)
    if batches is None:
        raise TrimbertError(f"importance: the {rule} rule needs a sample of data to measure on")
    if rule == "taylor":
        return taylor_importance(model, batches, has_head=has_head, seed=seed)
    if rule == "fisher":
        return fisher_scores(model, batches, has_head=has_head, seed=seed).importance()
    unknown = set(units) - set(CUT_UNITS)
    if unknown:
        raise TrimbertError(f"importance: the cut rule cuts {', '.join(CUT_UNITS)}, not {', '.join(sorted(unknown))}")
    analysis = analyze_blocks(
        model, batches, has_head=has_head, layernorms="layernorm" in units, attention=False, heads="heads" in units
    )
    return analysis.importance()
