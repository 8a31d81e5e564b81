"""What data-driven importance is measured against: the task loss of a fine-tuned head, or, without
one, a random projection of the final hidden states.

:func:`task_loss` is the loss of a classification (cross-entropy) or regression (MSE) head;
:func:`gate_objective` is the scalar whose gradients with respect to the gates of
:mod:`trimbert.model.gates` the Taylor and Fisher rules read: the task loss on the batch's labels
(``has_head=True``), else ``Σ v·h`` over the real tokens' last hidden states ``h`` with ``v`` a fresh
standard normal vector per token drawn from ``generator`` (padding gets none). Its squared gradient
is an unbiased estimate of ``‖J δ‖²``, the squared change of the final hidden states, with no labels.
"""

from __future__ import annotations

import torch
from torch import nn

TASK_LOSS = "task-loss"
HIDDEN_PROJECTION = "hidden-projection"  # the Taylor rule's name for the head-less objective
HIDDEN_FISHER = "hidden-gaussian"  # the Fisher rule's name for it (a Gaussian observation model, y ~ N(h, I))


def is_regression(model: nn.Module) -> bool:
    """Whether ``model``'s head is a regression head (``problem_type`` says so, or one output)."""
    config = model.config
    return getattr(config, "problem_type", None) == "regression" or getattr(config, "num_labels", 2) == 1


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``logits`` against class ``labels``, or MSE for a regression head (float32)."""
    if regression:
        return nn.functional.mse_loss(logits.reshape(-1).float(), labels.reshape(-1).float(), reduction=reduction)
    return nn.functional.cross_entropy(logits.float(), labels.long(), reduction=reduction)


def gate_objective(
    model: nn.Module, batch: dict[str, torch.Tensor], has_head: bool, generator: torch.Generator
) -> torch.Tensor:
    """The scalar to differentiate for one batch (see the module docstring)."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    if has_head:
        return task_loss(model(**inputs).logits, batch["labels"], is_regression(model))
    hidden = model(**inputs, output_hidden_states=True).hidden_states[-1].float()
    direction = torch.randn(hidden.shape, generator=generator).to(hidden.device)
    mask = inputs.get("attention_mask")
    if mask is not None:
        direction = direction * mask.unsqueeze(-1).to(direction.dtype)
    return (hidden * direction).sum()
