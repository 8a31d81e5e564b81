"""Taylor importance of every trimmable unit: FFN neurons, attention heads, FFNs, LayerNorms, blocks.

:func:`taylor_importance` reads the gradient of the importance objective with respect to every gate
(:mod:`trimbert.importance.gradients`; every gate at 1) and scores each unit by what removing it
changes, to the first order:

- with a fine-tuned task head (``has_head=True``): the task loss ``L`` (cross-entropy, or MSE for a
  regression head); a unit's score is ``Σ_batches |∂L/∂g|``, the first-order Taylor estimate of the loss
  change its removal causes, accumulated per batch (as TextPruner and Torch-Pruning's Taylor do). For an
  FFN neuron, ``∂L/∂mask_j`` is the |gradient × weight| of the neuron summed over its weights.
- without one (a pretrained encoder, or an untrained head): the loss is the heal loss against the
  model itself, whose first-order term vanishes (the gradient of a squared distance at zero distance
  is zero). Its second-order (Gauss–Newton) term for removing unit ``u`` is ``½‖J_u‖²``, the squared
  change of the final hidden states; that is estimated without labels as ``Σ_batches (∂(v·h)/∂g)²`` with
  ``v`` a fresh standard normal vector per token (``E[(v·Jδ)²] = ‖Jδ‖²``), ``h`` the last hidden state,
  padding excluded.

Scores: higher = more important. ``magnitude`` (:mod:`trimbert.importance.magnitude`) needs no data and
is the default of ``--ffn-width``; ``--importance taylor`` asks for these.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trimbert.importance.gradients import gate_gradients
from trimbert.importance.objective import HIDDEN_PROJECTION, TASK_LOSS
from trimbert.importance.scores import Importance


def taylor_importance(
    model: nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    *,
    has_head: bool,
    seed: int = 0,
) -> Importance:
    """Taylor scores of every unit of ``model`` on ``batches`` (see the module docstring).

    ``batches``: dicts of ``input_ids``, ``attention_mask`` (and ``labels`` when ``has_head``). The
    model's weights are not changed (their gradients are not even computed); dropout is off.
    """
    found = gate_gradients(model, batches, has_head=has_head, seed=seed, rule="taylor importance")

    def total(group: str) -> dict:
        return {key: (grads.abs() if has_head else grads.square()).sum(0) for key, grads in found.grads[group].items()}

    return Importance(
        rule="taylor",
        neurons={key: value.float() for key, value in total("neurons").items()},
        heads={key: value.float() for key, value in total("heads").items()},
        ffn={key: float(value) for key, value in total("ffn").items()},
        layernorm={key: float(value) for key, value in total("layernorm").items()},
        blocks={key: float(value) for key, value in total("blocks").items()},
        objective=TASK_LOSS if has_head else HIDDEN_PROJECTION,
        samples=found.rows,
    )
