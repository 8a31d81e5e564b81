"""How alike two representations of the same tokens are: linear CKA and the mean cosine.

The cut analysis (:mod:`trimbert.importance.cut`) compares the final hidden states of a model with and
without a cut with these; tests compare calibrated LayerNorm replacements with them too.
"""

from __future__ import annotations

import torch
from torch import nn


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same ``n`` examples (rows), features in columns.

    ``x``: ``(n, d1)``, ``y``: ``(n, d2)``. Columns are centered, then
    ``CKA = ||Yᵀ X||²_F / (||Xᵀ X||_F · ||Yᵀ Y||_F)`` (Kornblith et al., 2019), in float64. 1 for
    identical inputs, invariant to orthogonal transforms and isotropic scaling, in [0, 1]. A constant
    side gives 0, or 1 if both are constant.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear_cka needs (n, d) matrices with the same n, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm_x = torch.linalg.matrix_norm(x.T @ x)
    norm_y = torch.linalg.matrix_norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        return 1.0 if norm_x == norm_y else 0.0
    return float(cross / (norm_x * norm_y))


def mean_cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cosine similarity of corresponding rows of ``x`` and ``y`` (float64)."""
    return float(nn.functional.cosine_similarity(x.to(torch.float64), y.to(torch.float64), dim=-1).mean())
