"""Fisher information of every attention head and every FFN neuron of a loaded model (Kwon et al. 2022).

:func:`fisher_scores` reads each batch's gradient of the importance objective with respect to every
head gate and every neuron gate (:mod:`trimbert.importance.gradients`; every gate at 1, the weights
unchanged). A unit's score is the empirical Fisher information of its mask, ``Σ_batches (∂L/∂m)²``
(Kwon's ``compute_fisher_info``: the gradients are per batch, as in the paper's code). The per-batch
gradients are kept too: :func:`trimbert.compress.masks.rearrange` needs the block-diagonal Fisher
``Σ_batches g gᵀ`` of each block. Each present FFN's gate (``g · output(f, h) + (1 − g) · h``, what dropping
the whole FFN does: its output bias and LayerNorm go too) is scored the same way (``ffns``): the sum of
its neurons' scores misses that (by 5-77× on the last FFNs of MiniLM on SST-2 and MRPC).

The objective ``L`` (:mod:`trimbert.importance.objective`):

- with a fine-tuned task head (``has_head=True``): the task loss on the batch's ``labels``
  (cross-entropy, or MSE for a one-output regression head), as Kwon does;
- without one (a bare encoder, or an untrained head): the log-likelihood of a Gaussian observation
  model centred on the last hidden state, ``y ~ N(h, I)``, with ``y`` sampled from the model itself:
  ``∂ log p(y)/∂m = (y − h)·∂h/∂m = v·∂h/∂m`` with ``v`` a fresh standard normal vector per real token
  (padding gets none). The squared gradient is then an unbiased Monte-Carlo estimate of the *true*
  Fisher ``‖J δ‖²`` of that model (the squared change of the final hidden states, to second order the
  MSE to the unpruned model), which needs no labels and no perturbation of the model. It is what
  :func:`trimbert.importance.taylor.taylor_importance` uses without a head (seeded the same way).

Scores are float64 tensors on the CPU, in the original block numbering; dropout is off throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from trimbert.importance.gradients import gate_gradients
from trimbert.importance.objective import HIDDEN_FISHER, TASK_LOSS
from trimbert.importance.scores import Importance

__all__ = ["HIDDEN_FISHER", "TASK_LOSS", "FisherScores", "fisher_scores"]


@dataclass
class FisherScores:
    """Fisher information per unit (higher = removing it costs more), original block numbering.

    ``heads``/``neurons``: block -> 1-d float64 scores, one per current head / FFN neuron;
    ``head_grads``/``neuron_grads``: block -> ``[batches, units]`` per-batch gradients (``heads[b]`` is
    ``head_grads[b].square().sum(0)``). ``rows``: sequences used; ``seconds``: wall time;
    ``objective``: :data:`TASK_LOSS` or :data:`HIDDEN_FISHER`. ``ffns``: block -> 0-d score of dropping
    the whole FFN (its gate's Fisher information), ``ffn_grads``: block -> ``[batches]``; empty when not measured.
    """

    heads: dict[int, torch.Tensor]
    neurons: dict[int, torch.Tensor]
    head_grads: dict[int, torch.Tensor]
    neuron_grads: dict[int, torch.Tensor]
    rows: int
    seconds: float
    objective: str
    ffns: dict[int, torch.Tensor] = field(default_factory=dict)
    ffn_grads: dict[int, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def from_grads(
        cls,
        head_grads: Mapping[int, torch.Tensor],
        neuron_grads: Mapping[int, torch.Tensor],
        *,
        rows: int = 0,
        seconds: float = 0.0,
        objective: str = TASK_LOSS,
        ffn_grads: Mapping[int, torch.Tensor] | None = None,
    ) -> FisherScores:
        """Scores from per-batch gradients (``[batches, units]`` per block; ``[batches]`` per FFN gate)."""
        heads = {int(block): torch.as_tensor(grads).double().cpu() for block, grads in head_grads.items()}
        neurons = {int(block): torch.as_tensor(grads).double().cpu() for block, grads in neuron_grads.items()}
        ffns = {int(block): torch.as_tensor(grads).double().cpu().reshape(-1) for block, grads in (ffn_grads or {}).items()}
        return cls(
            heads={block: grads.square().sum(0) for block, grads in heads.items()},
            neurons={block: grads.square().sum(0) for block, grads in neurons.items()},
            head_grads=heads,
            neuron_grads=neurons,
            rows=rows,
            seconds=seconds,
            objective=objective,
            ffns={block: grads.square().sum() for block, grads in ffns.items()},
            ffn_grads=ffns,
        )

    def importance(self) -> Importance:
        """The scores as the common :class:`~trimbert.importance.scores.Importance` (heads and neurons)."""
        return Importance(
            rule="fisher", neurons=dict(self.neurons), heads=dict(self.heads), objective=self.objective, samples=self.rows
        )


def fisher_scores(
    model: nn.Module,
    batches: Sequence[Mapping[str, torch.Tensor]],
    *,
    has_head: bool,
    seed: int = 0,
) -> FisherScores:
    """The Fisher information of every head, FFN neuron and FFN of ``model`` on ``batches`` (module docstring).

    ``batches``: dicts of ``input_ids``, ``attention_mask`` (``token_type_ids``; ``labels`` when
    ``has_head``), moved to the model's device. The weights are not changed and get no gradients;
    ``seed`` draws the projections of the head-less objective.
    """
    found = gate_gradients(model, batches, has_head=has_head, seed=seed, groups=("heads", "neurons", "ffn"), rule="fisher")
    return FisherScores.from_grads(
        found.grads["heads"],
        found.grads["neurons"],
        ffn_grads=found.grads["ffn"],
        rows=found.rows,
        seconds=found.seconds,
        objective=TASK_LOSS if has_head else HIDDEN_FISHER,
    )
