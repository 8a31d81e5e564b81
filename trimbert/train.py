"""Fine-tune and evaluate (trimmed) BERT models on GLUE tasks or users' own data, through the HF Trainer.

:func:`finetune` loads a checkpoint with a sequence-classification (or regression) head, trims it on
the fly if asked, trains with dynamic padding, linear warm-up and decay, evaluates at the end (or per
epoch), and writes to ``out``: the fine-tuned model as a trimbert checkpoint, its tokenizer, and
``metrics.json`` (a :class:`~trimbert.records.Record`). The Trainer (with accelerate) handles the
device: CPU, one GPU with bf16 when it supports it, or several GPUs under ``torchrun`` /
``accelerate launch`` with no code change (only the main process writes the output folder).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
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
from trimbert.records import Record, conditions, write_json_atomic
from trimbert.surgery import applied_spec, trim

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
    variant: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Record:
    """Fine-tune ``model_source`` (trimmed on the fly if options are given) and write ``out``."""
    settings = settings or FinetuneSettings()
    out = checkpoint.check_output_dir(out, force)
    task, tokenizer, model, encoded = _prepare(model_source, source, settings)
    if any(option is not None for option in (drop_ffn, attention, layernorm)):
        model = trim(model, drop_ffn=drop_ffn, attention=attention, layernorm=layernorm)
    eval_sets = {split: encoded[split] for split in task.eval_splits}
    evaluator = _Evaluator(task, eval_sets)
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
