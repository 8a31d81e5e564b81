"""The gradient of the importance objective with respect to every gate, batch by batch: what the
Taylor and Fisher rules are computed from.

:func:`gate_gradients` installs the multiplicative gates of :mod:`trimbert.model.gates` (every gate
at 1, with gradients; the model's weights get none and are not changed, dropout is off), runs one
backward pass of :func:`~trimbert.importance.objective.gate_objective` per batch and keeps each
batch's gradient with respect to every gate of the groups asked for.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.importance.objective import gate_objective
from trimbert.measure.size import model_device, model_mode
from trimbert.model.gates import gated

GROUPS = ("blocks", "ffn", "layernorm", "neurons", "heads")


@dataclass
class GateGradients:
    """Per-batch gate gradients: ``grads[group][unit]`` is a float64 CPU tensor ``[batches, *gate shape]``
    (``group`` one of :data:`GROUPS`). ``rows``: sequences used; ``seconds``: wall time."""

    grads: dict[str, dict[Any, torch.Tensor]]
    rows: int
    seconds: float


def check_batches(batches: Sequence[Mapping[str, torch.Tensor]], has_head: bool, rule: str) -> None:
    """One-line errors for a sample the rule ``rule`` cannot measure on."""
    if not batches:
        raise TrimbertError(f"{rule}: no batches to measure on")
    if not all(isinstance(batch, Mapping) and "input_ids" in batch for batch in batches):
        raise TrimbertError(f"{rule}: expected batches as dicts of input_ids, attention_mask (and labels)")
    if has_head and not all("labels" in batch for batch in batches):
        raise TrimbertError(f"{rule} with a task head needs labels in every batch")


def gate_gradients(
    model: nn.Module,
    batches: Sequence[Mapping[str, torch.Tensor]],
    *,
    has_head: bool,
    seed: int,
    groups: Sequence[str] = GROUPS,
    rule: str = "importance",
) -> GateGradients:
    """Every batch's gradient of the objective with respect to the gates of ``groups`` (module docstring).

    ``batches``: dicts of ``input_ids``, ``attention_mask`` (``token_type_ids``; ``labels`` when
    ``has_head``), moved to the model's device. ``seed`` draws the projections of the head-less
    objective; ``rule`` names the caller in errors.
    """
    check_batches(batches, has_head, rule)
    start = time.perf_counter()
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    found: dict[str, dict[Any, list[torch.Tensor]]] = {group: {} for group in groups}
    rows = 0
    try:
        with model_mode(model, train=False), gated(model) as gates:
            gates.require_grad(True)
            for batch in batches:
                batch = {key: value.to(device) for key, value in batch.items()}
                rows += int(batch["input_ids"].shape[0])
                gate_objective(model, batch, has_head, generator).backward()
                for group in groups:
                    for key, gate in getattr(gates, group).items():
                        grad = gate.grad if gate.grad is not None else torch.zeros_like(gate)
                        found[group].setdefault(key, []).append(grad.detach().double().cpu())
                for gate in gates.tensors():
                    gate.grad = None
            gates.require_grad(False)
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
    return GateGradients(
        grads={group: {key: torch.stack(grads) for key, grads in units.items()} for group, units in found.items()},
        rows=rows,
        seconds=time.perf_counter() - start,
    )
