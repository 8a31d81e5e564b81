"""Fine-tune and evaluate (trimmed) BERT models on GLUE tasks or users' own data, through the HF Trainer.

:func:`finetune` loads a checkpoint with a sequence-classification (or regression) head, trims it on
the fly if asked, trains with dynamic padding, linear warm-up and decay, evaluates at the end (or per
epoch), and writes to ``out``: the fine-tuned model as a trimbert checkpoint, its tokenizer, and
``metrics.json`` (a :class:`~trimbert.records.Record`). The Trainer (with accelerate) handles the
device: CPU, one GPU with bf16 when it supports it, or several GPUs under ``torchrun`` /
``accelerate launch`` with no code change (only the main process writes the output folder).

Two ways to recover what trimming cost without pretraining:

- ``drop_ffn="auto:N"`` (:mod:`trimbert.analyze`): before trimming, the FFN of each block is removed
  in turn on a sample of the training data and the N whose removal changes the model least are
  dropped; the chosen blocks and their scores are recorded in the saved trim spec (``notes``) and in
  ``metrics.json``.
- ``teacher=<run folder>`` (:class:`DistillationTrainer`): the trimmed student learns from a model
  already fine-tuned on the same task (usually the untrimmed baseline) as well as from the labels;
  see :class:`DistillSettings` and :func:`distillation_loss`.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    PrinterCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from trimbert import checkpoint
from trimbert.data import TaskInfo, get_task, load_glue, load_user_data, subsample, tokenize
from trimbert.errors import TrimbertError
from trimbert.measure import check_seq_len, count_parameters, encoder_parameters, flops_per_sequence
from trimbert.metrics import compute_metrics
from trimbert.pipeline import TrimOptions, apply_trim
from trimbert.records import Record, conditions, write_json_atomic
from trimbert.surgery import applied_spec

METRICS_FILE = "metrics.json"


@dataclass
class FinetuneSettings:
    """Training hyper-parameters (the CLI's common options)."""

    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    seed: int = 42
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    eval_each_epoch: bool = False

    def check(self) -> None:
        if self.epochs <= 0:
            raise TrimbertError(f"--epochs must be positive, got {self.epochs}")
        if self.lr <= 0:
            raise TrimbertError(f"--lr must be positive, got {self.lr}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise TrimbertError("--batch-size must be at least 1")
        if not 0 <= self.warmup_ratio < 1:
            raise TrimbertError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_length < 2:
            raise TrimbertError(f"--max-length must be at least 2, got {self.max_length}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrimbertError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


@dataclass
class DataSource:
    """Where the data comes from: a GLUE task (local ``data_dir``, ``$TRIMBERT_GLUE_DIR`` or the Hub),
    or the user's own train/validation files with named columns."""

    task: str | None = None
    data_dir: str | None = None
    train: str | None = None
    validation: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    task_type: str | None = None

    def load(self):
        """``(DatasetDict, TaskInfo)``; fails before any training if anything is missing or wrong."""
        if self.train is not None:
            if self.task is not None:
                raise TrimbertError("give either --task (GLUE) or --train (your own data), not both")
            if not self.text_column or not self.label_column:
                raise TrimbertError("--train needs --text-column and --label-column")
            return load_user_data(
                self.train,
                self.validation,
                text_column=self.text_column,
                text_pair_column=self.text_pair_column,
                label_column=self.label_column,
                task_type=self.task_type,
            )
        if self.task is None:
            raise TrimbertError("give --task (a GLUE task) or --train with your own data file")
        info = get_task(self.task)
        return load_glue(info, self.data_dir), info

    def describe(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def _metric_key(split: str, name: str, splits: tuple[str, ...]) -> str:
    """``accuracy`` for a task with one eval split; ``matched_accuracy`` etc. for MNLI's two."""
    if len(splits) == 1:
        return name
    return f"{split.removeprefix('validation_')}_{name}"


def main_metric_key(task: TaskInfo) -> str:
    return _metric_key(task.eval_splits[0], task.main_metric, task.eval_splits)


def _predictions(task: TaskInfo, logits: np.ndarray) -> np.ndarray:
    if task.is_regression:
        return np.asarray(logits).reshape(-1)
    return np.asarray(logits).argmax(axis=-1)


def _training_arguments(
    settings: FinetuneSettings, work_dir: str, *, progress: bool, has_eval: bool
) -> TrainingArguments:
    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=work_dir,
        num_train_epochs=settings.epochs,
        learning_rate=settings.lr,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=settings.weight_decay,
        lr_scheduler_type="linear",
        seed=settings.seed,
        data_seed=settings.seed,
        eval_strategy="epoch" if settings.eval_each_epoch and has_eval else "no",
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        bf16=use_bf16,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


class _Evaluator:
    """Evaluates a Trainer's model on every eval split of a task and names the metrics."""

    def __init__(self, task: TaskInfo, eval_sets: dict[str, Any]) -> None:
        self.task = task
        self.eval_sets = eval_sets

    def compute(self, prediction: EvalPrediction) -> dict[str, float]:
        logits = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        return compute_metrics(self.task, _predictions(self.task, logits), prediction.label_ids)

    def run(self, trainer: Trainer) -> tuple[dict[str, float], float]:
        metrics: dict[str, float] = {}
        start = time.perf_counter()
        for split, dataset in self.eval_sets.items():
            result = trainer.evaluate(eval_dataset=dataset, metric_key_prefix="eval")
            for name in self.task.metric_names:
                metrics[_metric_key(split, name, self.task.eval_splits)] = float(result[f"eval_{name}"])
        return metrics, time.perf_counter() - start


def _make_trainer(
    model: nn.Module,
    settings: FinetuneSettings,
    work_dir: str,
    tokenizer: Any,
    evaluator: _Evaluator,
    *,
    progress: bool,
    train_dataset: Any = None,
    eval_dataset: Any = None,
    trainer_class: type[Trainer] = Trainer,
    **trainer_kwargs: Any,
) -> Trainer:
    """A Trainer with dynamic padding and the task's metrics; quiet on stdout without ``progress``."""
    trainer = trainer_class(
        model=model,
        args=_training_arguments(settings, work_dir, progress=progress, has_eval=eval_dataset is not None),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=evaluator.compute,
        **trainer_kwargs,
    )
    if not progress:
        trainer.remove_callback(PrinterCallback)  # it prints log dicts on stdout
    return trainer


@dataclass
class DistillSettings:
    """Weights and temperature of the distillation loss (see :func:`distillation_loss`).

    ``loss = alpha_ce · task loss + alpha_kd · KL(softmax(t/T) ‖ softmax(s/T)) · T² + alpha_hidden · hidden MSE``

    ``temperature`` (T) softens both distributions; the T² factor keeps the KD gradient on the scale of
    the task loss. For regression tasks the KD term is the MSE between student and teacher outputs
    (no temperature). ``alpha_hidden`` weighs the mean squared difference between the output of each
    block the student and the teacher both have (block i against block i; padding tokens excluded;
    the hidden sizes must match). A weight of 0 skips its term (and, for ``alpha_hidden``, the hidden
    states are not even returned).
    """

    temperature: float = 2.0
    alpha_ce: float = 0.5
    alpha_kd: float = 0.5
    alpha_hidden: float = 0.0

    def check(self) -> None:
        if not self.temperature > 0:
            raise TrimbertError(f"--distill-temperature must be positive, got {self.temperature}")
        for name in ("alpha_ce", "alpha_kd", "alpha_hidden"):
            value = getattr(self, name)
            if not value >= 0:
                raise TrimbertError(f"--distill-{name.replace('_', '-')} must be >= 0, got {value}")
        if self.alpha_ce + self.alpha_kd + self.alpha_hidden <= 0:
            raise TrimbertError(
                "distillation needs at least one positive weight (alpha_ce, alpha_kd, alpha_hidden)"
            )


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


def _hidden_mse(
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
        hidden = _hidden_mse(student_hidden, tuple(h.detach() for h in teacher_hidden), attention_mask, pairs)
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
        names = record.extra.get("label_names")
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
    teacher_tokenizer = checkpoint.load_tokenizer(path)
    if teacher_tokenizer is not None and teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise TrimbertError(f"--teacher: {teacher} uses a different tokenizer (vocabulary) than the student")
    if model.config.vocab_size != student.config.vocab_size:
        raise TrimbertError(
            f"--teacher: vocabulary sizes differ (teacher {model.config.vocab_size}, "
            f"student {student.config.vocab_size})"
        )
    if distill.alpha_hidden > 0 and model.config.hidden_size != student.config.hidden_size:
        raise TrimbertError(
            f"--teacher: hidden-state distillation needs equal hidden sizes (teacher {model.config.hidden_size}, "
            f"student {student.config.hidden_size}); set alpha_hidden to 0"
        )
    return _Teacher(model=model.eval(), path=str(teacher), recorded=recorded)


def _prepare(model_source: str, source: DataSource, settings: FinetuneSettings):
    """Load data and model and tokenize; everything that can fail on user input fails here."""
    settings.check()
    dataset, task = source.load()
    tokenizer = checkpoint.load_tokenizer(model_source)
    if tokenizer is None:
        raise TrimbertError(f"no tokenizer found with {model_source}")
    config = checkpoint.load_config(checkpoint.resolve_source(model_source))
    check_seq_len(config, settings.max_length)
    overrides: dict[str, Any] = {"num_labels": task.num_labels}
    if task.is_regression:
        overrides["problem_type"] = "regression"
    else:
        overrides["problem_type"] = "single_label_classification"
        overrides["id2label"] = dict(enumerate(task.label_names))
        overrides["label2id"] = {name: index for index, name in enumerate(task.label_names)}
    set_seed(settings.seed)  # the new classification head is initialized from the seeded RNG
    model = checkpoint.load(model_source, head="sequence-classification", config_overrides=overrides)
    train_set = subsample(dataset["train"], settings.max_train_samples, settings.seed)
    eval_sets = {
        split: subsample(dataset[split], settings.max_eval_samples, settings.seed)
        for split in task.eval_splits
    }
    from datasets import DatasetDict

    encoded = tokenize(DatasetDict({"train": train_set, **eval_sets}), tokenizer, settings.max_length)
    return task, tokenizer, model, encoded


def finetune(
    model_source: str,
    source: DataSource,
    out: str | Path,
    *,
    settings: FinetuneSettings | None = None,
    drop_ffn: str | None = None,
    attention: str | None = None,
    layernorm: str | None = None,
    drop_layers: str | None = None,
    ffn_width: str | int | None = None,
    layernorm_replacement: str | None = None,
    variant: str | None = None,
    force: bool = False,
    progress: bool = True,
    teacher: str | Path | None = None,
    distill: DistillSettings | None = None,
    auto_samples: int = 256,
) -> Record:
    """Fine-tune ``model_source`` (trimmed on the fly if options are given) and write ``out``.

    The trim options are those of :class:`trimbert.pipeline.TrimOptions`. ``drop_ffn="auto:N"`` drops
    the N FFNs that matter least, and ``layernorm_replacement="affine"`` fits its maps, on
    ``auto_samples`` training rows (drawn with ``settings.seed``; see :func:`trimbert.pipeline.apply_trim`). ``teacher``: a fine-tuned run folder for the
    same task; the model then trains with :func:`distillation_loss` (weights from ``distill``,
    default :class:`DistillSettings`).
    """
    from trimbert.analyze import has_task_head

    settings = settings or FinetuneSettings()
    settings.check()
    if distill is not None and teacher is None:
        raise TrimbertError("distillation settings need a teacher (--teacher RUN_DIR)")
    if teacher is not None:
        distill = distill or DistillSettings()
        distill.check()
    if TrimOptions(drop_ffn=drop_ffn).auto_count is not None and auto_samples < 1:
        raise TrimbertError(f"auto:N analysis needs at least 1 sample, got {auto_samples}")
    out = checkpoint.check_output_dir(out, force)
    task, tokenizer, model, encoded = _prepare(model_source, source, settings)
    loaded_teacher = None
    if teacher is not None:
        loaded_teacher = load_teacher(teacher, task, model, tokenizer, settings, distill)
    options = TrimOptions(drop_ffn, attention, layernorm, drop_layers, ffn_width, layernorm_replacement)
    model, trim_info = apply_trim(
        model,
        options,
        dataset=encoded["train"],
        tokenizer=tokenizer,
        has_head=options.auto_count is not None and has_task_head(model_source, task),
        samples=auto_samples,
        seed=settings.seed,
        max_length=settings.max_length,
        batch_size=settings.eval_batch_size,
    )
    auto_info = trim_info.get("auto_drop")
    eval_sets = {split: encoded[split] for split in task.eval_splits}
    evaluator = _Evaluator(task, eval_sets)
    trainer_kwargs: dict[str, Any] = {}
    if loaded_teacher is not None:
        trainer_kwargs = dict(
            trainer_class=DistillationTrainer,
            teacher=loaded_teacher.model,
            distill=distill,
            task_is_regression=task.is_regression,
        )
    with tempfile.TemporaryDirectory(prefix="trimbert-train-") as work_dir:
        trainer = _make_trainer(
            model,
            settings,
            work_dir,
            tokenizer,
            evaluator,
            progress=progress,
            train_dataset=encoded["train"],
            eval_dataset=eval_sets[task.eval_splits[0]],
            **trainer_kwargs,
        )
        start = time.perf_counter()
        train_output = trainer.train()
        train_time = time.perf_counter() - start
        metrics, eval_time = evaluator.run(trainer)
        history = [entry for entry in trainer.state.log_history if "eval_loss" in entry or "loss" in entry]
        model = trainer.model
        if not trainer.is_world_process_zero():
            return Record(kind="finetune", variant=variant or Path(out).name, model=model_source)
    model = (
        model.cpu().float().eval()
        if not isinstance(model, nn.DataParallel)
        else model.module.cpu().float().eval()
    )
    spec = applied_spec(model)
    record = Record(
        kind="finetune",
        variant=variant or Path(out).name,
        model=model_source,
        trim=spec.to_dict() if not spec.is_empty else {},
        trim_summary=spec.summary(),
        task=task.name,
        metrics=metrics,
        main_metric=main_metric_key(task),
        params=count_parameters(model),
        encoder_params=encoder_parameters(model),
        flops_per_seq=float(flops_per_sequence(model, settings.max_length)),
        seq_len=settings.max_length,
        batch_size=settings.batch_size,
        train_time_s=train_time,
        train_samples_per_s=len(encoded["train"]) * settings.epochs / train_time,
        eval_time_s=eval_time,
        seed=settings.seed,
        path=str(out),
        conditions=conditions(
            device=str(trainer.args.device),
            seed=settings.seed,
            world_size=trainer.args.world_size,
            bf16=trainer.args.bf16,
        ),
        extra={
            "settings": asdict(settings),
            "data": source.describe(),
            "train_rows": len(encoded["train"]),
            "eval_rows": {split: len(dataset) for split, dataset in eval_sets.items()},
            "train_loss": float(train_output.training_loss),
            "log_history": history,
            "label_names": list(task.label_names),
        },
    )
    if auto_info is not None:
        record.extra["auto_drop"] = auto_info
    if loaded_teacher is not None:
        record.extra["distill"] = {
            "teacher": loaded_teacher.path,
            "settings": asdict(distill),
            "teacher_record": loaded_teacher.recorded,
        }
    with checkpoint.atomic_output_dir(out, force) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        from trimbert.measure import disk_bytes

        record.disk_bytes = disk_bytes(staging)
        write_json_atomic(staging / METRICS_FILE, record.to_dict())
    return record


def source_for_run(
    run_dir: str, *, task: str | None = None, data_dir: str | None = None, validation: str | None = None
) -> DataSource:
    """The data to evaluate a run on: ``task`` if given, else the data source its metrics.json recorded
    (so users' own data keeps the label mapping of training); ``validation`` replaces the eval file."""
    if task is not None:
        return DataSource(task=task, data_dir=data_dir)
    recorded_file = Path(run_dir) / METRICS_FILE
    if not recorded_file.is_file():
        raise TrimbertError(f"{run_dir} has no {METRICS_FILE}: say which data to evaluate on with --task")
    try:
        recorded = Record.from_dict(json.loads(recorded_file.read_text()))
    except (ValueError, TypeError) as error:
        raise TrimbertError(f"corrupt {recorded_file}: {error}") from error
    source = DataSource(**recorded.extra.get("data", {}))
    if data_dir is not None:
        source.data_dir = data_dir
    if validation is not None:
        if source.train is None:
            raise TrimbertError(
                "--validation is for runs trained on your own files; use --task/--data-dir for GLUE"
            )
        source.validation = validation
    return source


def evaluate(
    model_dir: str,
    source: DataSource,
    *,
    settings: FinetuneSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a fine-tuned checkpoint on a task's eval split(s): metrics, eval time, row counts."""
    settings = settings or FinetuneSettings()
    settings.check()
    dataset, task = source.load()
    model = checkpoint.load(model_dir)
    if not hasattr(model, "classifier"):
        raise TrimbertError(f"{model_dir} has no classification head: fine-tune it first (trimbert finetune)")
    if model.config.num_labels != task.num_labels:
        raise TrimbertError(
            f"{model_dir} predicts {model.config.num_labels} labels but task {task.name} has {task.num_labels}"
        )
    check_seq_len(model.config, settings.max_length)
    tokenizer = checkpoint.load_tokenizer(model_dir)
    if tokenizer is None:
        raise TrimbertError(f"no tokenizer in {model_dir}")
    from datasets import DatasetDict

    eval_sets = {
        split: subsample(dataset[split], settings.max_eval_samples, settings.seed)
        for split in task.eval_splits
    }
    encoded = tokenize(DatasetDict(eval_sets), tokenizer, settings.max_length)
    evaluator = _Evaluator(task, {split: encoded[split] for split in task.eval_splits})
    with tempfile.TemporaryDirectory(prefix="trimbert-eval-") as work_dir:
        trainer = _make_trainer(model, settings, work_dir, tokenizer, evaluator, progress=progress)
        metrics, eval_time = evaluator.run(trainer)
    spec = applied_spec(model)
    return {
        "model": model_dir,
        "task": task.name,
        "metrics": metrics,
        "main_metric": main_metric_key(task),
        "eval_time_s": eval_time,
        "eval_rows": {split: len(dataset) for split, dataset in eval_sets.items()},
        "trim": spec.to_dict() if not spec.is_empty else {},
        "trim_summary": spec.summary(),
        "conditions": conditions(device=str(trainer.args.device)),
    }
