"""Attention normalizers: cheaper replacements for the softmax in self-attention.

Each normalizer is an attention function with the signature transformers expects and is registered
with ``transformers.AttentionInterface`` under the name ``trimbert_<name>`` (``-`` becomes ``_``), with
a boolean padding mask (``AttentionMaskInterface``, the same mask format ``sdpa`` uses). A model uses
one with ``model.set_attn_implementation("trimbert_relu")``; :mod:`trimbert.model.modeling` does that from
the saved trim spec. ``softmax`` is not registered here: it leaves the model's own (fastest)
implementation in place.

Common to all: ``s = (q @ k^T) * scaling`` are the scores, ``m`` the key mask (1 = real token,
0 = padding), ``n`` the number of real keys in the row. Padding keys get exactly zero weight; a fully
padded row gets all-zero weights (never NaN). The normalization runs in float32 and the weights are
cast back to the value dtype, so float32 and bfloat16 both work; gradients flow through every formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from trimbert.spec import NORMALIZER_NAMES, SOFTMAX, check_normalizer

_EPS = 1e-6
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class Normalizer:
    name: str  # user-facing name ("relu")
    # (scores, keep, count, inplace) -> weights; see the module docstring for the arguments.
    function: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | float, bool], torch.Tensor]
    rows_sum_to_one: bool  # whether the formula promises rows summing to 1 (where a row has any weight)
    formula: str

    @property
    def implementation(self) -> str:
        """The name registered with transformers' AttentionInterface."""
        return "trimbert_" + self.name.replace("-", "_")


# Each normalizer gets float32 ``scores`` [batch, heads, queries, keys], ``keep`` (a boolean mask
# broadcastable to the scores, True = real key; None = no padding), ``count`` (real keys per row:
# a tensor broadcastable to the scores, or a number), and ``inplace`` (True at inference, where
# the scores may be overwritten: fewer passes over the largest tensor of the layer, no copies).


def _zero_padding(weights: torch.Tensor, keep: torch.Tensor | None, inplace: bool) -> torch.Tensor:
    if keep is None:
        return weights
    return weights.masked_fill_(~keep, 0.0) if inplace else weights.masked_fill(~keep, 0.0)


def _row_normalize(weights: torch.Tensor, inplace: bool) -> torch.Tensor:
    total = weights.sum(dim=-1, keepdim=True).clamp_min_(_EPS)
    return weights.div_(total) if inplace else weights / total


def relu_normalize(scores, keep, count, inplace) -> torch.Tensor:
    """``w = relu(s) * m / sum_k(relu(s) * m)``; a row with no positive score gets all zeros.

    Rows sum to 1 wherever some real key has a positive score.
    """
    positive = _zero_padding(scores.relu_() if inplace else scores.relu(), keep, inplace)
    return _row_normalize(positive, inplace)


def relu_len_normalize(scores, keep, count, inplace) -> torch.Tensor:
    """``w = relu(s) * m / n``: divide by the number of real keys; no reduction over the scores.

    Rows do not sum to 1 (the cheapest variant: one elementwise op and a per-sequence constant).
    """
    positive = _zero_padding(scores.relu_() if inplace else scores.relu(), keep, inplace)
    return positive.div_(count) if inplace else positive / count


def sigmoid_normalize(scores, keep, count, inplace) -> torch.Tensor:
    """``w = sigmoid(s - log n) * m`` (sigmoid attention with the -log n bias; no reduction).

    Rows do not sum to 1; the bias keeps their expected sum near 1 at initialization.
    """
    bias = math.log(count) if isinstance(count, (int, float)) else torch.log(count)
    weights = scores.sub_(bias).sigmoid_() if inplace else torch.sigmoid(scores - bias)
    return _zero_padding(weights, keep, inplace)


def softermax_normalize(scores, keep, count, inplace) -> torch.Tensor:
    """``w = 2^(s - max_k s) * m / sum_k(2^(s - max_k s) * m)``: softmax with base 2 (Softermax).

    Rows sum to 1 wherever the row has a real key.
    """
    if keep is not None:
        scores = scores.masked_fill_(~keep, float("-inf")) if inplace else scores.masked_fill(~keep, float("-inf"))
    # The shift by the row max is a constant for the gradient (the ratio does not depend on it).
    # A fully padded row has max -inf: use 0 there, so that 2^(-inf) = 0 instead of NaN.
    row_max = scores.detach().amax(dim=-1, keepdim=True).nan_to_num_(neginf=0.0)
    if torch.onnx.is_in_onnx_export():  # ONNX has no exp2: 2^x = e^(x·ln 2)
        powered = torch.exp((scores - row_max) * _LN2)
    else:
        powered = scores.sub_(row_max).exp2_() if inplace else torch.exp2(scores - row_max)
    return _row_normalize(powered, inplace)


def squared_relu_normalize(scores, keep, count, inplace) -> torch.Tensor:
    """``w = relu(s)^2 * m / sum_k(relu(s)^2 * m)``: a degree-2 polynomial instead of the exponent.

    Rows sum to 1 wherever some real key has a positive score.
    """
    squared = scores.relu_().square_() if inplace else scores.relu().square()
    return _row_normalize(_zero_padding(squared, keep, inplace), inplace)


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


def implementation_name(name: str) -> str | None:
    """The AttentionInterface key of normalizer ``name``; None for softmax (keep the model's own)."""
    check_normalizer(name)
    return None if name == SOFTMAX else NORMALIZERS[name].implementation


def _keep_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """A boolean keep-mask (True = real key) from a boolean or additive attention mask."""
    if attention_mask is None or attention_mask.dtype == torch.bool:
        return attention_mask
    # An additive mask: 0 where attended, a very negative number where masked.
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


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
        # Scale the (smaller) queries rather than the scores; normalize in float32.
        scores = torch.matmul(query.float() * scaling, key.float().transpose(2, 3))
        keep = _keep_mask(attention_mask)
        count = keep.sum(dim=-1, keepdim=True, dtype=scores.dtype).clamp_min_(1) if keep is not None else float(key.shape[-2])
        inplace = not torch.is_grad_enabled()
        weights = normalizer.function(scores, keep, count, inplace).to(value.dtype)
        if dropout > 0.0 and module.training:
            weights = nn.functional.dropout(weights, p=dropout, training=True)
        output = torch.matmul(weights, value).transpose(1, 2).contiguous()
        return output, weights

    attention_forward.__name__ = f"{normalizer.implementation}_attention_forward"
    attention_forward.__doc__ = f"Attention with the {normalizer.name!r} normalizer: w = {normalizer.formula}."
    return attention_forward


if tuple(NORMALIZERS) != NORMALIZER_NAMES:  # the vocabulary (trimbert.spec) and the formulas must agree
    raise ImportError(f"attention normalizers {tuple(NORMALIZERS)} differ from trimbert.spec's {NORMALIZER_NAMES}")

ATTENTION_FUNCTIONS = {name: _make_attention_function(normalizer) for name, normalizer in NORMALIZERS.items()}


def register_all() -> None:
    """Register every normalizer with transformers (idempotent; runs on ``import trimbert``)."""
    for name, normalizer in NORMALIZERS.items():
        AttentionInterface.register(normalizer.implementation, ATTENTION_FUNCTIONS[name])
        AttentionMaskInterface.register(normalizer.implementation, sdpa_mask)


