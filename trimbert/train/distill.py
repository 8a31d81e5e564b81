"""Task distillation: a trimmed student learns from a fine-tuned teacher (soft labels, hidden states).

See :class:`~trimbert.train.settings.DistillSettings` for the loss and its weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    Trainer,
)

from trimbert.data.tasks import TaskInfo
from trimbert.errors import TrimbertError
from trimbert.measure.size import check_seq_len
from trimbert.model import checkpoint
from trimbert.model.structure import applied_spec
from trimbert.report.records import Record
from trimbert.train.settings import DistillSettings, FinetuneSettings
from trimbert.train.trainer import METRICS_FILE


def block_pairs(student: nn.Module, teacher: nn.Module) -> list[tuple[int, int]]:
    """``(student index, teacher index)`` into the ``hidden_states`` tuples of the blocks both have.

    Blocks are matched by their index in the original model (trim specs keep the original numbering
    when whole blocks are dropped): a student without blocks 1 and 3 compares its block 2 with the
    teacher's block 2. ``hidden_states[0]`` is the embeddings, so block at position ``p`` is ``p + 1``.
    """

    def positions(model: nn.Module) -> dict[int, int]:
        spec = applied_spec(model)
        dropped = set(getattr(spec, "drop_layers", ()) or ())
        present = model.config.num_hidden_layers
        kept = [index for index in range(present + len(dropped)) if index not in dropped]
        return {original: position + 1 for position, original in enumerate(kept)}

    student_positions, teacher_positions = positions(student), positions(teacher)
    return [
        (student_positions[block], teacher_positions[block])
        for block in sorted(set(student_positions) & set(teacher_positions))
    ]


def hidden_mse(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    attention_mask: torch.Tensor | None,
    pairs: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """Mean over block pairs of the per-element MSE of their outputs on real tokens.

    ``hidden_states`` tuples start with the embeddings: index ``i + 1`` is block ``i``'s output.
    ``pairs`` (see :func:`block_pairs`) defaults to block i against block i for every i both have.
    """
    if pairs is None:
        pairs = [(index, index) for index in range(1, min(len(student_hidden), len(teacher_hidden)))]
    if not pairs:
        raise TrimbertError("hidden-state distillation: the student and the teacher have no block in common")
    reference = student_hidden[pairs[0][0]]
    if attention_mask is None:
        mask = torch.ones(reference.shape[:2], dtype=torch.float32, device=reference.device)
    else:
        mask = attention_mask.to(device=reference.device, dtype=torch.float32)
    mask = mask.unsqueeze(-1)
    denominator = mask.sum().clamp_min(1.0) * reference.shape[-1]
    total = reference.new_zeros((), dtype=torch.float32)
    for student_index, teacher_index in pairs:
        student, teacher = student_hidden[student_index].float(), teacher_hidden[teacher_index].float()
        if student.shape != teacher.shape:
            raise TrimbertError(
                f"hidden-state distillation: hidden states differ in shape "
                f"(student {tuple(student.shape)}, teacher {tuple(teacher.shape)})"
            )
        total = total + ((student - teacher).square() * mask).sum() / denominator
    return total / len(pairs)


def distillation_loss(
    student_outputs: Any,
    teacher_outputs: Any,
    labels: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    settings: DistillSettings,
    task_is_regression: bool,
    pairs: list[tuple[int, int]] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The distillation loss of one batch and its parts (detached): ``ce``, ``kd``, ``hidden``.

    ``student_outputs`` / ``teacher_outputs``: model outputs with ``logits`` (and ``hidden_states``
    when ``settings.alpha_hidden > 0``). ``labels``: the task labels (needed when ``alpha_ce > 0``).
    Classification: ``ce`` is cross-entropy with the labels and ``kd`` is
    ``KL(softmax(t/T) ‖ softmax(s/T)) · T²`` (batch mean); regression: ``ce`` is the MSE with the
    labels and ``kd`` the MSE between the outputs. ``hidden`` is the MSE between the outputs of
    corresponding blocks on real tokens (``pairs`` of ``hidden_states`` indices, see
    :func:`block_pairs`; default block i against block i). A term whose weight is 0 is not computed.
    With ``alpha_ce = 0`` the loss is exactly 0 when the student's outputs equal the teacher's.
    """
    student_logits = student_outputs.logits.float()
    teacher_logits = teacher_outputs.logits.detach().float()
    loss = student_logits.new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    if settings.alpha_ce > 0:
        if labels is None:
            raise TrimbertError("distillation with alpha_ce > 0 needs labels")
        if task_is_regression:
            ce = nn.functional.mse_loss(student_logits.reshape(-1), labels.reshape(-1).float())
        else:
            ce = nn.functional.cross_entropy(
                student_logits.view(-1, student_logits.shape[-1]), labels.view(-1)
            )
        loss = loss + settings.alpha_ce * ce
        parts["ce"] = ce.detach()
    if settings.alpha_kd > 0:
        if task_is_regression:
            kd = nn.functional.mse_loss(student_logits.reshape(-1), teacher_logits.reshape(-1))
        else:
            temperature = settings.temperature
            # log_target: exp(t)·(t − s) is exactly 0 where the two log-distributions are equal.
            kd = nn.functional.kl_div(
                nn.functional.log_softmax(student_logits / temperature, dim=-1),
                nn.functional.log_softmax(teacher_logits / temperature, dim=-1),
                reduction="batchmean",
                log_target=True,
            ) * (temperature**2)
        loss = loss + settings.alpha_kd * kd
        parts["kd"] = kd.detach()
    if settings.alpha_hidden > 0:
        student_hidden = getattr(student_outputs, "hidden_states", None)
        teacher_hidden = getattr(teacher_outputs, "hidden_states", None)
        if student_hidden is None or teacher_hidden is None:
            raise TrimbertError("alpha_hidden > 0 needs the hidden states of student and teacher")
        hidden = hidden_mse(student_hidden, tuple(h.detach() for h in teacher_hidden), attention_mask, pairs)
        loss = loss + settings.alpha_hidden * hidden
        parts["hidden"] = hidden.detach()
    return loss, parts


class DistillationTrainer(Trainer):
    """A Trainer whose training loss is :func:`distillation_loss` against a frozen ``teacher``.

    The teacher is moved to the training device, kept in eval mode (no dropout) and run without
    gradients on the same batch. Evaluation uses the plain task loss (the student's own). The mean of
    each loss part over the logging period is added to the logs as ``distill_ce``/``distill_kd``/
    ``distill_hidden``.
    """

    loss_is_scaled_for_ga = False  # distillation_loss is a per-batch mean

    def __init__(
        self,
        *args: Any,
        teacher: nn.Module,
        distill: DistillSettings | None = None,
        task_is_regression: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.distill = distill or DistillSettings()
        self.task_is_regression = task_is_regression
        self.teacher = teacher.to(self.args.device).eval()
        self.teacher.requires_grad_(False)
        self.block_pairs = block_pairs(self.model, teacher) if self.distill.alpha_hidden > 0 else None
        if self.block_pairs == []:
            raise TrimbertError(
                "hidden-state distillation: the student and the teacher have no block in common"
            )
        self._part_sums: dict[str, torch.Tensor] = {}
        self._part_count = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        want_hidden = self.distill.alpha_hidden > 0
        labels = inputs.get("labels")
        model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
        outputs = model(**model_inputs, output_hidden_states=want_hidden, return_dict=True)
        self.teacher.eval()
        with torch.no_grad():
            teacher_outputs = self.teacher(**model_inputs, output_hidden_states=want_hidden, return_dict=True)
        loss, parts = distillation_loss(
            outputs,
            teacher_outputs,
            labels,
            inputs.get("attention_mask"),
            self.distill,
            self.task_is_regression,
            self.block_pairs,
        )
        for name, value in parts.items():
            self._part_sums[name] = self._part_sums.get(name, 0.0) + value
        self._part_count += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._part_count and "loss" in logs:
            for name, total in self._part_sums.items():
                logs[f"distill_{name}"] = round(float(total) / self._part_count, 6)
            self._part_sums = {}
            self._part_count = 0
        super().log(logs, start_time)


def check_teacher_fits(
    student: nn.Module,
    teacher: nn.Module,
    student_tokenizer: Any,
    teacher_tokenizer: Any,
    *,
    where: str,
    student_name: str = "student",
    same_hidden: bool = True,
    hidden_hint: str = "",
) -> None:
    """Refuse, before any training, a teacher that cannot read the student's inputs (another vocabulary
    size or tokenizer: its embeddings would be indexed with the wrong ids) or, with ``same_hidden`` (hidden
    states compared), has another hidden size: one line starting with ``where`` and naming the mismatch."""
    student_vocab, teacher_vocab = student.config.vocab_size, teacher.config.vocab_size
    if student_vocab != teacher_vocab:
        raise TrimbertError(
            f"{where}: vocabulary sizes differ ({student_name} {student_vocab}, teacher {teacher_vocab}); "
            "the teacher must use the same tokenizer"
        )
    if (
        student_tokenizer is not None
        and teacher_tokenizer is not None
        and student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab()
    ):
        raise TrimbertError(f"{where}: the teacher uses a different tokenizer (vocabulary) than the {student_name}")
    student_hidden, teacher_hidden = student.config.hidden_size, teacher.config.hidden_size
    if same_hidden and student_hidden != teacher_hidden:
        raise TrimbertError(
            f"{where}: hidden sizes differ ({student_name} {student_hidden}, teacher {teacher_hidden}){hidden_hint}"
        )


@dataclass
class _Teacher:
    model: nn.Module
    path: str
    recorded: dict[str, Any] = field(default_factory=dict)  # the teacher run's main metric etc.


def load_teacher(
    teacher: str | Path,
    task: TaskInfo,
    student: nn.Module,
    tokenizer: Any,
    settings: FinetuneSettings,
    distill: DistillSettings,
) -> _Teacher:
    """Load and check a teacher run folder: a fine-tuned classifier for the same task and labels,
    with the student's tokenizer (and hidden size, when hidden states are distilled)."""
    path = Path(teacher)
    if not path.is_dir():
        raise TrimbertError(
            f"--teacher: {teacher} is not a folder (give the output folder of a finetune run)"
        )
    recorded: dict[str, Any] = {}
    metrics_file = path / METRICS_FILE
    if metrics_file.is_file():
        try:
            record = Record.from_dict(json.loads(metrics_file.read_text()))
        except (ValueError, TypeError) as error:
            raise TrimbertError(f"--teacher: corrupt {metrics_file}: {error}") from error
        if record.task is not None and record.task != task.name:
            raise TrimbertError(f"--teacher: {teacher} was fine-tuned on {record.task}, not {task.name}")
        names = record.training.label_names if record.training else None
        if names is not None and list(names) != list(task.label_names):
            raise TrimbertError(
                f"--teacher: {teacher} was trained with labels {list(names)}, this task has {list(task.label_names)}"
            )
        recorded = {
            "task": record.task,
            "trim_summary": record.trim_summary,
            "metrics": record.metrics,
            "main_metric": record.main_metric,
        }
    model = checkpoint.load(path)
    if getattr(model, "classifier", None) is None:
        raise TrimbertError(f"--teacher: {teacher} has no classification head (give a fine-tuned run folder)")
    if model.config.num_labels != task.num_labels:
        raise TrimbertError(
            f"--teacher: {teacher} predicts {model.config.num_labels} label(s) but task {task.name} has "
            f"{task.num_labels}"
        )
    teacher_regression = (
        getattr(model.config, "problem_type", None) == "regression" or model.config.num_labels == 1
    )
    if teacher_regression != task.is_regression:
        raise TrimbertError(
            f"--teacher: {teacher} is a {'regression' if teacher_regression else 'classification'} "
            f"model; task {task.name} is not"
        )
    check_seq_len(model.config, settings.max_length)
    check_teacher_fits(
        student,
        model,
        tokenizer,
        checkpoint.load_tokenizer(path),
        where=f"--teacher {teacher}",
        same_hidden=distill.alpha_hidden > 0,  # soft labels alone need no equal hidden sizes
        hidden_hint="; hidden-state distillation needs them equal: set alpha_hidden to 0",
    )
    return _Teacher(model=model.eval(), path=str(teacher), recorded=recorded)
