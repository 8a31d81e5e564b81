"""Attention normalizers: cheaper replacements for the softmax in self-attention.

Each normalizer is an attention function with the signature transformers expects and is registered
with ``transformers.AttentionInterface`` under the name ``trimbert_<name>`` (``-`` becomes ``_``), with
a boolean padding mask (``AttentionMaskInterface``, the same mask format ``sdpa`` uses). A model uses
one with ``model.set_attn_implementation("trimbert_relu")``; :mod:`trimbert.modeling` does that from
the saved trim spec. ``softmax`` is not registered here: it leaves the model's own (fastest)
implementation in place.

Common to all: ``s = (q @ k^T) * scaling`` are the scores, ``m`` the key mask (1 = real token,
0 = padding), ``n`` the number of real keys in the row. Padding keys get exactly zero weight; a fully
padded row gets all-zero weights (never NaN). The normalization runs in float32 and the weights are
cast back to the value dtype, so float32 and bfloat16 both work; gradients flow through every formula.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from trimbert.errors import TrimbertError
from trimbert.spec import SOFTMAX

_EPS = 1e-6


@dataclass(frozen=True)
class Normalizer:
    name: str  # user-facing name ("relu")
    function: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor
    ]  # (scores, mask, n) -> weights
    rows_sum_to_one: bool  # whether the formula promises rows summing to 1 (where a row has any weight)
    formula: str

    @property
    def implementation(self) -> str:
        """The name registered with transformers' AttentionInterface."""
        return "trimbert_" + self.name.replace("-", "_")


def relu_normalize(scores: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``w = relu(s) * m / sum_k(relu(s) * m)``; a row with no positive score gets all zeros.

    Rows sum to 1 wherever some real key has a positive score.
    """
    positive = torch.relu(scores) * mask
    return positive / positive.sum(dim=-1, keepdim=True).clamp_min(_EPS)


def relu_len_normalize(scores: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``w = relu(s) * m / n``: divide by the number of real keys; no reduction over the scores.

    Rows do not sum to 1 (the cheapest variant: one elementwise op and a per-sequence constant).
    """
    return torch.relu(scores) * mask / count.clamp_min(1.0)


def sigmoid_normalize(scores: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``w = sigmoid(s - log n) * m`` (sigmoid attention with the -log n bias; no reduction).

    Rows do not sum to 1; the bias keeps their expected sum near 1 at initialization.
    """
    return torch.sigmoid(scores - torch.log(count.clamp_min(1.0))) * mask


def softermax_normalize(scores: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``w = 2^(s - max_k s) * m / sum_k(2^(s - max_k s) * m)``: softmax with base 2 (Softermax).

    Rows sum to 1 wherever the row has a real key.
    """
    lowest = torch.finfo(scores.dtype).min
    row_max = torch.where(mask.bool(), scores, lowest).amax(dim=-1, keepdim=True)
    powered = torch.exp2(torch.where(mask.bool(), scores - row_max, 0.0)) * mask
    return powered / powered.sum(dim=-1, keepdim=True).clamp_min(_EPS)


def squared_relu_normalize(scores: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``w = relu(s)^2 * m / sum_k(relu(s)^2 * m)``: a degree-2 polynomial instead of the exponent.

    Rows sum to 1 wherever some real key has a positive score.
    """
    squared = torch.relu(scores).square() * mask
    return squared / squared.sum(dim=-1, keepdim=True).clamp_min(_EPS)


NORMALIZERS: dict[str, Normalizer] = {
    normalizer.name: normalizer
    for normalizer in (
        Normalizer("relu", relu_normalize, True, "relu(s)·m / Σ relu(s)·m"),
        Normalizer("relu-len", relu_len_normalize, False, "relu(s)·m / n"),
        Normalizer("sigmoid", sigmoid_normalize, False, "sigmoid(s − log n)·m"),
        Normalizer("softermax", softermax_normalize, True, "2^(s − max s)·m / Σ 2^(s − max s)·m"),
        Normalizer("squared-relu", squared_relu_normalize, True, "relu(s)²·m / Σ relu(s)²·m"),
    )
}


def available_normalizers() -> list[str]:
    """Every name ``--attention`` accepts, ``softmax`` first."""
    return [SOFTMAX, *NORMALIZERS]


def check_normalizer(name: str) -> str:
    """Return ``name`` if it is a known normalizer, else raise a one-line :class:`TrimbertError`."""
    if name != SOFTMAX and name not in NORMALIZERS:
        raise TrimbertError(
            f"--attention: unknown normalizer {name!r} (choose from {', '.join(available_normalizers())})"
        )
    return name


def implementation_name(name: str) -> str | None:
    """The AttentionInterface key of normalizer ``name``; None for softmax (keep the model's own)."""
    check_normalizer(name)
    return None if name == SOFTMAX else NORMALIZERS[name].implementation


def _key_mask(attention_mask: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
    """A float32 {0,1} mask broadcastable to ``scores`` from a boolean or additive attention mask."""
    if attention_mask is None:
        return torch.ones((1, 1, 1, scores.shape[-1]), dtype=torch.float32, device=scores.device)
    if attention_mask.dtype == torch.bool:
        return attention_mask.to(torch.float32)
    # An additive mask: 0 where attended, a very negative number where masked.
    return (attention_mask > torch.finfo(attention_mask.dtype).min / 2).to(torch.float32)


def _make_attention_function(normalizer: Normalizer):
    def attention_forward(
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if scaling is None:
            scaling = query.size(-1) ** -0.5
        scores = torch.matmul(query, key.transpose(2, 3)).float() * scaling
        mask = _key_mask(attention_mask, scores)
        mask = mask.expand(scores.shape[0], 1, scores.shape[2], scores.shape[3])
        count = mask.sum(dim=-1, keepdim=True)
        weights = normalizer.function(scores, mask, count).to(value.dtype)
        weights = nn.functional.dropout(weights, p=dropout, training=module.training)
        output = torch.matmul(weights, value).transpose(1, 2).contiguous()
        return output, weights

    attention_forward.__name__ = f"{normalizer.implementation}_attention_forward"
    attention_forward.__doc__ = (
        f"Attention with the {normalizer.name!r} normalizer: w = {normalizer.formula}."
    )
    return attention_forward


ATTENTION_FUNCTIONS = {name: _make_attention_function(normalizer) for name, normalizer in NORMALIZERS.items()}


def register_all() -> None:
    """Register every normalizer with transformers (idempotent; runs on ``import trimbert``)."""
    for name, normalizer in NORMALIZERS.items():
        AttentionInterface.register(normalizer.implementation, ATTENTION_FUNCTIONS[name])
        AttentionMaskInterface.register(normalizer.implementation, sdpa_mask)


def expected_row_sum_one(name: str) -> bool:
    """Whether normalizer ``name`` promises rows that sum to 1 (softmax does)."""
    return name == SOFTMAX or NORMALIZERS[check_normalizer(name)].rows_sum_to_one
