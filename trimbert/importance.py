"""Data-driven importance of every trimmable unit: Taylor scores of FFN neurons, FFNs, LayerNorms, blocks.

:func:`taylor_importance` runs the model on a sample with :mod:`trimbert.model.gates` installed (every
gate at 1, with gradients) and scores each unit by what removing it changes, to the first order:

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

Scores: higher = more important. ``magnitude`` (:func:`~trimbert.model.structure.magnitude_importance`)
needs no data and is the default of ``--ffn-width``; ``--importance taylor`` asks for these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.measure.size import model_device, model_mode
from trimbert.model.gates import gated
from trimbert.model.structure import DroppedFFN, block_positions, encoder_layers, magnitude_importance


@dataclass
class Importance:
    """Scores per unit (higher = more important), original block numbering.

    ``neurons``: block -> one score per current FFN neuron; ``ffn``/``blocks``: block -> score;
    ``layernorm``: name -> score. ``rule``: ``"taylor"`` or ``"magnitude"`` (neurons only);
    ``objective``: ``"task-loss"`` or ``"hidden-projection"`` (see the module docstring).
    """

    rule: str
    neurons: dict[int, torch.Tensor]
    ffn: dict[int, float] = field(default_factory=dict)
    layernorm: dict[str, float] = field(default_factory=dict)
    blocks: dict[int, float] = field(default_factory=dict)
    objective: str | None = None
    samples: int = 0

    def neuron_order(self) -> dict[int, torch.Tensor]:
        """For each FFN, its neurons from most to least important (ties: lower index first); a width
        ``N`` keeps the first ``N`` (what :func:`~trimbert.model.structure.select_neurons` keeps)."""
        return {
            block: torch.argsort(scores.double().cpu(), descending=True, stable=True)
            for block, scores in self.neurons.items()
        }

    def ffn_ranking(self) -> tuple[int, ...]:
        """FFN blocks from least to most important (ties: lower index first)."""
        return tuple(sorted(self.ffn, key=lambda block: (self.ffn[block], block)))

    def least_important_ffns(self, count: int) -> tuple[int, ...]:
        """The ``count`` FFN blocks with the lowest scores, sorted by index."""
        return tuple(sorted(self.ffn_ranking()[:count]))

    def summary(self) -> dict[str, Any]:
        """JSON-ready scores of the whole units (not the neurons), for records and reports."""
        return {
            "rule": self.rule,
            "objective": self.objective,
            "samples": self.samples,
            "ffn": {str(block): score for block, score in self.ffn.items()},
            "layernorm": dict(self.layernorm),
            "blocks": {str(block): score for block, score in self.blocks.items()},
        }


def magnitude(model: nn.Module) -> Importance:
    """Weight-magnitude scores of every FFN neuron (no data)."""
    layers = encoder_layers(model)
    neurons = {
        block: magnitude_importance(layers[position])
        for block, position in block_positions(model).items()
        if not isinstance(layers[position].output, DroppedFFN)
    }
    return Importance(rule="magnitude", neurons=neurons)


def _objective(model: nn.Module, batch: dict[str, torch.Tensor], has_head: bool, generator: torch.Generator):
    if has_head:
        labels = batch["labels"]
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        logits = model(**inputs).logits
        if logits.shape[-1] == 1:
            return nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float()), True
        return nn.functional.cross_entropy(logits.float(), labels.long()), True
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    outputs = model(**inputs, output_hidden_states=True)
    hidden = outputs.hidden_states[-1].float()
    direction = torch.randn(hidden.shape, generator=generator).to(hidden.device)
    mask = inputs.get("attention_mask")
    if mask is not None:
        direction = direction * mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * direction).sum(), False


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
    if not batches:
        raise TrimbertError("taylor importance: no batches to measure on")
    if has_head and not all("labels" in batch for batch in batches):
        raise TrimbertError("taylor importance with a task head needs labelled batches")
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    totals: dict[tuple[str, Any], torch.Tensor] = {}
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    rows = 0
    objective = "task-loss" if has_head else "hidden-projection"
    try:
        with model_mode(model, train=False), gated(model) as gates:
            gates.require_grad(True)
            groups = {"blocks": gates.blocks, "ffn": gates.ffn, "layernorm": gates.layernorm, "neurons": gates.neurons}
            for batch in batches:
                batch = {key: value.to(device) for key, value in batch.items()}
                rows += int(batch["input_ids"].shape[0])
                loss, first_order = _objective(model, batch, has_head, generator)
                loss.backward()
                for kind, group in groups.items():
                    for key, gate in group.items():
                        grad = gate.grad.detach().double().cpu()
                        value = grad.abs() if first_order else grad.square()
                        totals[(kind, key)] = totals.get((kind, key), 0) + value
                        gate.grad = None
            gates.require_grad(False)
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
    return Importance(
        rule="taylor",
        neurons={key: value.float() for (kind, key), value in totals.items() if kind == "neurons"},
        ffn={key: float(value) for (kind, key), value in totals.items() if kind == "ffn"},
        layernorm={key: float(value) for (kind, key), value in totals.items() if kind == "layernorm"},
        blocks={key: float(value) for (kind, key), value in totals.items() if kind == "blocks"},
        objective=objective,
        samples=rows,
    )
