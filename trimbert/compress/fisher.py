"""Fisher information of every attention head and every FFN neuron of a loaded model (Kwon et al. 2022).

:func:`fisher_scores` installs the multiplicative gates of :mod:`trimbert.model.gates` (every gate at
1, with gradients; the model's weights get none and are not changed), runs one backward pass per
batch and keeps each batch's gradient with respect to every head gate and every neuron gate. A unit's
score is the empirical Fisher information of its mask, ``Σ_batches (∂L/∂m)²`` (Kwon's
``compute_fisher_info``: the gradients are per batch, as in the paper's code). The per-batch gradients
are kept too: :func:`trimbert.compress.masks.rearrange` needs the block-diagonal Fisher
``Σ_batches g gᵀ`` of each block.

The objective ``L``:

- with a fine-tuned task head (``has_head=True``): the task loss on the batch's ``labels``
  (cross-entropy, or MSE for a one-output regression head), as Kwon does;
- without one (a bare encoder, or an untrained head): the log-likelihood of a Gaussian observation
  model centred on the last hidden state, ``y ~ N(h, I)``, with ``y`` sampled from the model itself:
  ``∂ log p(y)/∂m = (y − h)·∂h/∂m = v·∂h/∂m`` with ``v`` a fresh standard normal vector per real token
  (padding gets none). The squared gradient is then an unbiased Monte-Carlo estimate of the *true*
  Fisher ``‖J δ‖²`` of that model (the squared change of the final hidden states, to second order the
  MSE to the unpruned model), which needs no labels and no perturbation of the model. It is what
  :func:`trimbert.importance.taylor_importance` uses without a head (seeded the same way).

Scores are float64 tensors on the CPU, in the original block numbering; dropout is off throughout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.measure.size import model_device, model_mode
from trimbert.model.gates import gated

TASK_LOSS = "task-loss"
HIDDEN_FISHER = "hidden-gaussian"


@dataclass
class FisherScores:
    """Fisher information per unit (higher = removing it costs more), original block numbering.

    ``heads``/``neurons``: block -> 1-d float64 scores, one per current head / FFN neuron;
    ``head_grads``/``neuron_grads``: block -> ``[batches, units]`` per-batch gradients (``heads[b]`` is
    ``head_grads[b].square().sum(0)``). ``rows``: sequences used; ``seconds``: wall time;
    ``objective``: :data:`TASK_LOSS` or :data:`HIDDEN_FISHER`.
    """

    heads: dict[int, torch.Tensor]
    neurons: dict[int, torch.Tensor]
    head_grads: dict[int, torch.Tensor]
    neuron_grads: dict[int, torch.Tensor]
    rows: int
    seconds: float
    objective: str

    @classmethod
    def from_grads(
        cls,
        head_grads: Mapping[int, torch.Tensor],
        neuron_grads: Mapping[int, torch.Tensor],
        *,
        rows: int = 0,
        seconds: float = 0.0,
        objective: str = TASK_LOSS,
    ) -> FisherScores:
        """Scores from per-batch gradients (``[batches, units]`` per block)."""
        heads = {int(block): torch.as_tensor(grads).double().cpu() for block, grads in head_grads.items()}
        neurons = {int(block): torch.as_tensor(grads).double().cpu() for block, grads in neuron_grads.items()}
        return cls(
            heads={block: grads.square().sum(0) for block, grads in heads.items()},
            neurons={block: grads.square().sum(0) for block, grads in neurons.items()},
            head_grads=heads,
            neuron_grads=neurons,
            rows=rows,
            seconds=seconds,
            objective=objective,
        )


def _is_regression(model: nn.Module) -> bool:
    config = model.config
    return getattr(config, "problem_type", None) == "regression" or getattr(config, "num_labels", 2) == 1


def _objective(
    model: nn.Module, batch: dict[str, torch.Tensor], has_head: bool, generator: torch.Generator
) -> torch.Tensor:
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    if has_head:
        logits = model(**inputs).logits.float()
        labels = batch["labels"]
        if _is_regression(model):
            return nn.functional.mse_loss(logits.reshape(labels.shape), labels.float())
        return nn.functional.cross_entropy(logits, labels.long())
    hidden = model(**inputs, output_hidden_states=True).hidden_states[-1].float()
    direction = torch.randn(hidden.shape, generator=generator).to(hidden.device)
    mask = inputs.get("attention_mask")
    if mask is not None:
        direction = direction * mask.unsqueeze(-1).to(direction.dtype)
    return (hidden * direction).sum()


def _check_batches(batches: Sequence[Mapping[str, torch.Tensor]], has_head: bool) -> None:
    if not batches:
        raise TrimbertError("fisher: no batches to measure on")
    if not all(isinstance(batch, Mapping) and "input_ids" in batch for batch in batches):
        raise TrimbertError("fisher: expected batches as dicts of input_ids, attention_mask (and labels)")
    if has_head and not all("labels" in batch for batch in batches):
        raise TrimbertError("fisher with a task head needs labels in every batch")


def fisher_scores(
    model: nn.Module,
    batches: Sequence[Mapping[str, torch.Tensor]],
    *,
    has_head: bool,
    seed: int = 0,
) -> FisherScores:
    """The Fisher information of every head and FFN neuron of ``model`` on ``batches`` (module docstring).

    ``batches``: dicts of ``input_ids``, ``attention_mask`` (``token_type_ids``; ``labels`` when
    ``has_head``), moved to the model's device. The weights are not changed and get no gradients;
    ``seed`` draws the projections of the head-less objective.
    """
    _check_batches(batches, has_head)
    start = time.perf_counter()
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    head_grads: dict[int, list[torch.Tensor]] = {}
    neuron_grads: dict[int, list[torch.Tensor]] = {}
    rows = 0
    try:
        with model_mode(model, train=False), gated(model) as gates:
            gates.require_grad(True)
            groups = ((getattr(gates, "heads", {}), head_grads), (gates.neurons, neuron_grads))
            for batch in batches:
                batch = {key: value.to(device) for key, value in batch.items()}
                rows += int(batch["input_ids"].shape[0])
                _objective(model, batch, has_head, generator).backward()
                for gate_group, found in groups:
                    for block, gate in gate_group.items():
                        grad = gate.grad if gate.grad is not None else torch.zeros_like(gate)
                        found.setdefault(block, []).append(grad.detach().double().cpu())
                for gate in gates.tensors():
                    gate.grad = None
            gates.require_grad(False)
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
    return FisherScores.from_grads(
        {block: torch.stack(grads) for block, grads in head_grads.items()},
        {block: torch.stack(grads) for block, grads in neuron_grads.items()},
        rows=rows,
        seconds=time.perf_counter() - start,
        objective=TASK_LOSS if has_head else HIDDEN_FISHER,
    )
