"""Weight-magnitude importance of every FFN neuron and attention head: the rule that needs no data.

:func:`magnitude` scores each neuron by ``||W_in[j, :]|| · ||W_out[:, j]||`` and each head by
``||W_V[h]||_F · ||W_O[:, h]||_F`` (:mod:`trimbert.model.ranking`, what ``trim --ffn-width`` and
``trim --heads`` keep by default); a dropped FFN has no neuron scores.
"""

from __future__ import annotations

import torch
from torch import nn

from trimbert.importance.scores import Importance
from trimbert.model.ranking import head_magnitude_importance, magnitude_importance
from trimbert.model.structure import DroppedFFN, block_positions, encoder_layers


def magnitude(model: nn.Module) -> Importance:
    """Weight-magnitude scores of every FFN neuron and every attention head (no data)."""
    layers = encoder_layers(model)
    positions = block_positions(model)
    return Importance(
        rule="magnitude",
        neurons={
            block: magnitude_importance(layers[position])
            for block, position in positions.items()
            if not isinstance(layers[position].output, DroppedFFN)
        },
        heads={block: head_magnitude_importance(layers[position]) for block, position in positions.items()},
    )


def head_order(model: nn.Module) -> dict[int, torch.Tensor]:
    """The attention heads of each block present, most important first by weight magnitude (ties to
    the lower index): a prefix of ``n`` is the set ``trim(heads=n)`` keeps."""
    return magnitude(model).head_order()
