"""The HF Trainer as trimbert uses it: training arguments, dynamic padding, the task's metrics.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from transformers import (
    DataCollatorWithPadding,
    EvalPrediction,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

from trimbert.core.rank import no_gpu
from trimbert.data.metrics import compute_metrics, metric_key, predictions_from_logits
from trimbert.data.tasks import TaskInfo
from trimbert.train.settings import FinetuneSettings

METRICS_FILE = "metrics.json"


def _training_arguments(
    settings: FinetuneSettings, work_dir: str, *, progress: bool, has_eval: bool
) -> TrainingArguments:
    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=work_dir,
        use_cpu=no_gpu(),  # several CPU processes (torchrun) then train together over gloo
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


class Evaluator:
    """Evaluates a Trainer's model on every eval split of a task and names the metrics."""

    def __init__(self, task: TaskInfo, eval_sets: dict[str, Any]) -> None:
        self.task = task
        self.eval_sets = eval_sets

    def compute(self, prediction: EvalPrediction) -> dict[str, float]:
        logits = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        return compute_metrics(self.task, predictions_from_logits(self.task, logits), prediction.label_ids)

    def run(self, trainer: Trainer) -> tuple[dict[str, float], float]:
        metrics: dict[str, float] = {}
        start = time.perf_counter()
        for split, dataset in self.eval_sets.items():
            result = trainer.evaluate(eval_dataset=dataset, metric_key_prefix="eval")
            for name in self.task.metric_names:
                metrics[metric_key(split, name, self.task.eval_splits)] = float(result[f"eval_{name}"])
        return metrics, time.perf_counter() - start


def make_trainer(
    model: nn.Module,
    settings: FinetuneSettings,
    work_dir: str,
    tokenizer: Any,
    evaluator: Evaluator,
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

