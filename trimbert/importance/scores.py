"""What every importance rule returns: one score per unit, and the orders trims read off the scores.

:class:`Importance` holds the scores of a model's units in the original block numbering, higher =
more important (removing the unit costs more): FFN neurons and attention heads (one score per current
unit of each block), whole FFNs, LayerNorms and blocks. A rule fills the units it measures
(:mod:`~trimbert.importance.magnitude`: neurons and heads; :mod:`~trimbert.importance.taylor`: all;
:mod:`~trimbert.importance.fisher`: neurons and heads; :mod:`~trimbert.importance.cut`: FFNs, LayerNorms
and heads) and leaves the others empty.

The orders: a width ``N`` keeps the first ``N`` of :meth:`Importance.neuron_order` (what
:func:`~trimbert.model.ranking.select_neurons` keeps), ``n`` heads the first ``n`` of
:meth:`Importance.head_order`; ``auto:N`` drops :meth:`Importance.least_important_ffns`. Ties go to the
lower index everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from trimbert.errors import TrimbertError
from trimbert.model.ranking import descending


@dataclass
class Importance:
    """Scores per unit (higher = more important), original block numbering.

    ``neurons``/``heads``: block -> one score per current FFN neuron / attention head; ``ffn``/``blocks``:
    block -> score; ``layernorm``: name (``"3.attn"``) -> score. ``rule``: ``"magnitude"``, ``"taylor"``,
    ``"fisher"`` or ``"cut"``; ``objective``: what the rule measured against (``"task-loss"``,
    ``"hidden-projection"``, ``"hidden-gaussian"``; ``"loss"`` or ``"cka"`` for a cut analysis).
    ``samples``: rows of data the scores come from (0 for magnitude).
    """

    rule: str
    neurons: dict[int, torch.Tensor] = field(default_factory=dict)
    heads: dict[int, torch.Tensor] = field(default_factory=dict)
    ffn: dict[int, float] = field(default_factory=dict)
    layernorm: dict[str, float] = field(default_factory=dict)
    blocks: dict[int, float] = field(default_factory=dict)
    objective: str | None = None
    samples: int = 0

    def neuron_order(self) -> dict[int, torch.Tensor]:
        """For each FFN, its neurons from most to least important (ties: lower index first)."""
        return {block: descending(scores) for block, scores in self.neurons.items()}

    def head_order(self) -> dict[int, torch.Tensor]:
        """For each block, its heads from most to least important (ties: lower index first): a prefix of
        ``n`` is the set ``trim(heads=n, head_importance=self.heads)`` keeps."""
        return {block: descending(scores) for block, scores in self.heads.items()}

    def ffn_ranking(self) -> tuple[int, ...]:
        """FFN blocks from least to most important (ties: lower index first)."""
        return tuple(sorted(self.ffn, key=lambda block: (self.ffn[block], block)))

    def least_important_ffns(self, count: int) -> tuple[int, ...]:
        """The ``count`` FFN blocks with the lowest scores, sorted by index (``auto:count``)."""
        if not 0 < count <= len(self.ffn):
            raise TrimbertError(
                f"--drop-ffn: auto:{count} needs 1 <= N <= {len(self.ffn)} (FFNs the model has left)"
            )
        return tuple(sorted(self.ffn_ranking()[:count]))

    def summary(self) -> dict[str, Any]:
        """JSON-ready scores of the whole units (not the neurons or heads), for records and reports."""
        return {
            "rule": self.rule,
            "objective": self.objective,
            "samples": self.samples,
            "ffn": {str(block): score for block, score in self.ffn.items()},
            "layernorm": dict(self.layernorm),
            "blocks": {str(block): score for block, score in self.blocks.items()},
        }
