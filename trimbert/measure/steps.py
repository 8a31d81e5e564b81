"""One timed step of a model: a forward pass or a full training step on a fixed random batch, and its clock.

A step runner holds a model's batch (random input ids from a fixed seed, so every model of a run sees
the same batch; a full attention mask) and, in train mode, its optimizer; :func:`time_step` times one
step, and on CUDA its peak extra memory. :func:`trimbert.measure.benchmark.benchmark` alternates them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from trimbert.deploy.runtime import ExportedModel
from trimbert.errors import TrimbertError
from trimbert.measure.size import model_device, model_mode

# Learning rate of the optimizer step timed in train mode: small, so the weights barely move.
_TRAIN_LEARNING_RATE = 1e-5

# Seed of the random input ids and labels: every model of a run sees the same batch.
_INPUT_SEED = 0


def make_runners(
    models: Mapping[str, nn.Module | ExportedModel],
    restore: contextlib.ExitStack,
    target: torch.device,
    *,
    batch_size: int,
    seq_len: int,
    train: bool,
) -> dict[str, StepRunner | ExportedRunner]:
    """A step runner per model; PyTorch models are moved to ``target`` in the right mode (``restore``
    puts their training flags back)."""
    runners: dict[str, StepRunner | ExportedRunner] = {}
    for name, model in models.items():
        if isinstance(model, ExportedModel):
            runners[name] = ExportedRunner(model, batch_size=batch_size, seq_len=seq_len)
            continue
        restore.enter_context(model_mode(model, train=train))
        model.to(target)
        runners[name] = StepRunner(model, batch_size=batch_size, seq_len=seq_len, train=train)
    return runners


class StepRunner:
    """One model's benchmark step (forward, or a full training step) on a fixed random batch."""

    def __init__(self, model: nn.Module, *, batch_size: int, seq_len: int, train: bool) -> None:
        self.model = model
        self.train = train
        device = model_device(model)
        generator = torch.Generator().manual_seed(_INPUT_SEED)
        vocab_size = getattr(model.config, "vocab_size", 2)
        self.input_ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator).to(device)
        self.attention_mask = torch.ones_like(self.input_ids)
        self.generator = generator
        self.labels: torch.Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        if train:
            trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
            if not trainable:
                raise TrimbertError(
                    f"{type(model).__name__} has no trainable parameters to time a train step"
                )
            self.optimizer = torch.optim.AdamW(trainable, lr=_TRAIN_LEARNING_RATE)

    def step(self) -> None:
        """Run one forward pass (infer) or training step (train)."""
        if not self.train:
            with torch.inference_mode():
                self.model(input_ids=self.input_ids, attention_mask=self.attention_mask)
            return
        outputs = self.model(input_ids=self.input_ids, attention_mask=self.attention_mask)
        self._loss(outputs).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _loss(self, outputs: Any) -> torch.Tensor:
        logits = getattr(outputs, "logits", None)
        if logits is not None:
            logits = logits.reshape(-1, logits.shape[-1])
            if self.labels is None:
                self.labels = self._random_labels(logits)
            if logits.shape[-1] == 1:
                return nn.functional.mse_loss(logits.squeeze(-1), self.labels)
            return nn.functional.cross_entropy(logits, self.labels)
        hidden = getattr(outputs, "last_hidden_state", None)
        if hidden is None:
            raise TrimbertError(f"{type(self.model).__name__} returns neither logits nor last_hidden_state")
        return hidden.float().mean()

    def _random_labels(self, logits: torch.Tensor) -> torch.Tensor:
        count, classes = logits.shape
        if classes == 1:
            labels = torch.rand(count, generator=self.generator, dtype=logits.dtype)
        else:
            labels = torch.randint(0, classes, (count,), generator=self.generator)
        return labels.to(logits.device)

    def resident_bytes(self) -> int:
        """Bytes the model holds between steps: parameters, buffers and optimizer state."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        if self.optimizer is not None:
            for state in self.optimizer.state.values():
                tensors.extend(value for value in state.values() if isinstance(value, torch.Tensor))
        return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


class ExportedRunner:
    """An exported model's benchmark step: one run on the batch :class:`StepRunner` uses."""

    def __init__(self, model: ExportedModel, *, batch_size: int, seq_len: int) -> None:
        self.model = model
        generator = torch.Generator().manual_seed(_INPUT_SEED)
        ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), generator=generator)
        self.input_ids = ids.numpy()
        self.attention_mask = torch.ones_like(ids).numpy()
        self.token_type_ids = torch.zeros_like(ids).numpy()

    def step(self) -> None:
        self.model(self.input_ids, self.attention_mask, self.token_type_ids)

    def resident_bytes(self) -> int:
        return 0


def time_step(step: Callable[[], None], device: torch.device) -> tuple[float, int | None]:
    """Run ``step`` once; return its milliseconds and, on CUDA, its peak extra memory in bytes."""
    if device.type != "cuda":
        start = time.perf_counter()
        step()
        return (time.perf_counter() - start) * 1000.0, None
    torch.cuda.synchronize(device)
    allocated_before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    step()
    torch.cuda.synchronize(device)
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    return elapsed_ms, torch.cuda.max_memory_allocated(device) - allocated_before
