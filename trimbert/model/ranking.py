"""Data-free ranking of FFN neurons and attention heads: weight-magnitude scores and top-k selection.

The primitives a trim needs to choose what it keeps without data (:func:`trimbert.model.trim.trim`
narrows an FFN to its ``N`` most important neurons, prunes a block to its ``n`` most important heads):
:func:`magnitude_importance` / :func:`head_magnitude_importance` score the units by their weights,
:func:`select_neurons` / :func:`select_heads` keep the top ``k`` of any scores, :func:`descending`
orders them. Ties go to the lower index everywhere. Data-driven scores live in :mod:`trimbert.importance`,
which builds on these.
"""

from __future__ import annotations

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.model.structure import block_heads, head_size


def magnitude_importance(layer: nn.Module) -> torch.Tensor:
    """Weight-magnitude importance of each intermediate neuron ``j`` of a BERT block's FFN.

    ``||W_in[j, :]||_2 * ||W_out[:, j]||_2`` with ``W_in = intermediate.dense.weight`` (``[I, H]``,
    row ``j`` feeds neuron ``j``) and ``W_out = output.dense.weight`` (``[H, I]``, column ``j`` is what
    neuron ``j`` writes). Biases are not counted. Returns a float tensor of shape ``[I]``.
    """
    try:
        w_in = layer.intermediate.dense.weight
        w_out = layer.output.dense.weight
    except AttributeError as error:
        raise TrimbertError("--ffn-width: this block has no FFN to narrow") from error
    with torch.no_grad():
        return w_in.detach().float().norm(dim=1) * w_out.detach().float().norm(dim=0)


def head_magnitude_importance(layer: nn.Module) -> torch.Tensor:
    """Weight-magnitude importance of each current attention head ``h`` of a BERT block.

    ``||W_V[h]||_F * ||W_O[:, h]||_F`` with ``W_V[h]`` the rows of ``attention.self.value.weight``
    (``[n·d, H]``) that compute head ``h``'s values and ``W_O[:, h]`` the columns of
    ``attention.output.dense.weight`` (``[H, n·d]``) that read head ``h``'s context (``d`` the head
    size). Biases are not counted. Returns a float tensor of shape ``[n]``.
    """
    size, count = head_size(layer), block_heads(layer)
    with torch.no_grad():
        w_v = layer.attention.self.value.weight.detach().float().reshape(count, size, -1)
        w_o = layer.attention.output.dense.weight.detach().float().reshape(-1, count, size)
        return w_v.flatten(1).norm(dim=1) * w_o.transpose(0, 1).flatten(1).norm(dim=1)


def descending(scores: torch.Tensor) -> torch.Tensor:
    """Indices from the highest score to the lowest (ties: lower index first), on the CPU."""
    return torch.argsort(torch.as_tensor(scores).detach().flatten().double().cpu(), descending=True, stable=True)


def _most_important(importance: torch.Tensor, count: int, flag: str, units: str) -> torch.Tensor:
    """Indices of the ``count`` highest scores, ascending; ties towards the lower index."""
    importance = torch.as_tensor(importance).detach().flatten()
    if not 1 <= count <= importance.numel():
        raise TrimbertError(f"{flag}: cannot keep {count} of {importance.numel()} {units}")
    return descending(importance)[:count].sort().values


def select_neurons(importance: torch.Tensor, width: int) -> torch.Tensor:
    """Indices of the ``width`` most important neurons, in ascending (original) order.

    Ties are broken towards the lower index. ``1 <= width <= len(importance)``.
    """
    return _most_important(importance, width, "--ffn-width", "neurons")


def select_heads(importance: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` most important heads, in ascending (original) order.

    Ties are broken towards the lower index. ``1 <= count <= len(importance)``.
    """
    return _most_important(importance, count, "--heads", "heads")
