"""Fine-tune and evaluate (trimmed) BERT models on GLUE tasks or users' own data, through the HF Trainer.

:func:`finetune` loads a checkpoint with a sequence-classification (or regression) head, trims it on
the fly if asked, trains with dynamic padding, linear warm-up and decay, evaluates at the end (or per
epoch), and writes to ``out``: the fine-tuned model as a trimbert checkpoint, its tokenizer, and
``metrics.json`` (a :class:`~trimbert.report.records.Record`). The Trainer (with accelerate) handles the
device: CPU, one GPU with bf16 when it supports it, or several GPUs under ``torchrun`` /
``accelerate launch`` with no code change (only the main process writes the output folder).

Two ways to recover what trimming cost without pretraining:

- ``drop_ffn="auto:N"`` (:mod:`trimbert.importance.cut`): before trimming, the FFN of each block is removed
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    set_seed,
)

from trimbert.core.io import conditions, write_json_atomic
from trimbert.core.outputs import atomic_output_dir, check_output_dir
from trimbert.core.rank import is_main_process
from trimbert.data.metrics import main_metric_key
from trimbert.data.sampling import subsample, tokenize
from trimbert.data.source import DataSource, evaluation_source
from trimbert.errors import TrimbertError
from trimbert.measure.size import (
    check_seq_len,
    count_parameters,
    disk_bytes,
    encoder_parameters,
    flops_per_sequence,
)
from trimbert.model import checkpoint
from trimbert.model.heads import has_task_head
from trimbert.model.structure import applied_spec
from trimbert.pipeline import apply_trim
from trimbert.report.records import Record, Training
from trimbert.spec import TrimRequest
from trimbert.train.distill import DistillationTrainer, load_teacher
from trimbert.train.settings import DistillSettings, FinetuneSettings
from trimbert.train.trainer import METRICS_FILE, Evaluator, make_trainer


def prepare(model_source: str, source: DataSource, settings: FinetuneSettings):
    """Load data and model and tokenize: ``(task, tokenizer, model with a new seeded head, tokenized
    train and eval splits)``. Everything that can fail on user input fails here."""
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
    model = checkpoint.load(model_source, head="sequence-classification", config_overrides=overrides, new_head_ok=True)
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
    request: TrimRequest | None = None,
    variant: str | None = None,
    force: bool = False,
    progress: bool = True,
    teacher: str | Path | None = None,
    distill: DistillSettings | None = None,
    auto_samples: int = 256,
    portable: bool = False,
) -> Record:
    """Fine-tune ``model_source`` (trimmed on the fly as ``request`` asks) and write ``out``.

    ``request.drop_ffn="auto:N"`` drops the N FFNs that matter least, ``layernorm_replacement="affine"``
    fits its maps, and the data rules of ``importance`` (taylor, fisher) rank the FFNs, neurons and heads
    to cut, on ``auto_samples`` training rows (drawn with ``settings.seed``; see
    :func:`trimbert.pipeline.apply_trim`). What they measure: with a ``teacher``, the teacher's task
    loss; else, when ``model_source`` already has a trained head for this task (a fine-tuned checkpoint,
    :func:`~trimbert.model.heads.has_task_head`), its task loss; else (a base checkpoint, whose head is
    new and random) the change of the final hidden states. ``teacher``: a fine-tuned run folder
    for the same task; the model then trains with
    :func:`~trimbert.train.distill.distillation_loss` (weights from ``distill``, default
    :class:`~trimbert.train.settings.DistillSettings`). In a distributed run every process trains;
    only the main one writes ``out`` and gets the full record. ``portable``: also write the modeling code
    of a trim that plain BERT cannot describe (see :func:`trimbert.model.checkpoint.save`).
    """
    settings = settings or FinetuneSettings()
    request = request or TrimRequest()
    if distill is not None and teacher is None:
        raise TrimbertError("distillation settings need a teacher (--teacher RUN_DIR)")
    if teacher is not None:
        distill = distill or DistillSettings()
    if request.auto_count is not None and auto_samples < 1:
        raise TrimbertError(f"auto:N analysis needs at least 1 sample, got {auto_samples}")
    inputs = tuple(item for item in (model_source, teacher, source.train, source.validation, source.data_dir) if item)
    out = check_output_dir(out, force, inputs=inputs)
    task, tokenizer, model, encoded = prepare(model_source, source, settings)
    loaded_teacher = None
    if teacher is not None:
        loaded_teacher = load_teacher(teacher, task, model, tokenizer, settings, distill)
    model, trim_info = apply_trim(
        model,
        request,
        dataset=encoded["train"],
        tokenizer=tokenizer,
        has_head=(request.auto_count is not None or request.ranks_on_data)
        and has_task_head(model_source, task.num_labels, task.is_regression),
        samples=auto_samples,
        seed=settings.seed,
        max_length=settings.max_length,
        batch_size=settings.eval_batch_size,
        ranker=loaded_teacher.model if loaded_teacher is not None else None,
    )
    variant = variant or Path(out).name
    trained = _train(model, task, tokenizer, encoded, settings, progress, loaded_teacher, distill)
    if not is_main_process():
        return Record(kind="finetune", variant=variant, model=model_source)
    record = _record(model_source, variant, out, task, source, settings, encoded, trained)
    if "auto_drop" in trim_info:
        record.training.auto_drop = trim_info["auto_drop"]
    if loaded_teacher is not None:
        record.training.distill = {
            "teacher": loaded_teacher.path,
            "settings": distill.to_dict(),
            "teacher_record": loaded_teacher.recorded,
        }
    with atomic_output_dir(out, force) as staging:
        checkpoint.write_checkpoint(trained.model, staging, tokenizer=tokenizer, portable=portable)
        record.disk_bytes = disk_bytes(staging)
        write_json_atomic(staging / METRICS_FILE, record.to_dict())
    return record


@dataclass
class _Trained:
    model: nn.Module  # on the CPU, float32, eval mode
    metrics: dict[str, float]
    train_time_s: float
    eval_time_s: float
    train_loss: float
    history: list[dict[str, Any]]
    args: Any  # the Trainer's TrainingArguments


def _train(model, task, tokenizer, encoded, settings, progress, loaded_teacher, distill) -> _Trained:
    """Train with the Trainer (distilling when there is a teacher), then evaluate every eval split."""
    eval_sets = {split: encoded[split] for split in task.eval_splits}
    evaluator = Evaluator(task, eval_sets)
    trainer_kwargs: dict[str, Any] = {}
    if loaded_teacher is not None:
        trainer_kwargs = dict(
            trainer_class=DistillationTrainer,
            teacher=loaded_teacher.model,
            distill=distill,
            task_is_regression=task.is_regression,
        )
    with tempfile.TemporaryDirectory(prefix="trimbert-train-") as work_dir:
        trainer = make_trainer(
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
    model = trainer.model.module if isinstance(trainer.model, nn.DataParallel) else trainer.model
    return _Trained(
        model=model.cpu().float().eval(),
        metrics=metrics,
        train_time_s=train_time,
        eval_time_s=eval_time,
        train_loss=float(train_output.training_loss),
        history=history,
        args=trainer.args,
    )


def _record(model_source, variant, out, task, source, settings, encoded, trained: _Trained) -> Record:
    model = trained.model
    spec = applied_spec(model)
    return Record(
        kind="finetune",
        variant=variant,
        model=model_source,
        trim=spec.to_dict() if not spec.is_empty else {},
        trim_summary=spec.summary(),
        task=task.name,
        metrics=trained.metrics,
        main_metric=main_metric_key(task),
        params=count_parameters(model),
        encoder_params=encoder_parameters(model),
        flops_per_seq=float(flops_per_sequence(model, settings.max_length)),
        seq_len=settings.max_length,
        batch_size=settings.batch_size,
        train_time_s=trained.train_time_s,
        train_samples_per_s=len(encoded["train"]) * settings.epochs / trained.train_time_s,
        eval_time_s=trained.eval_time_s,
        seed=settings.seed,
        path=str(out),
        conditions=conditions(
            device=str(trained.args.device),
            seed=settings.seed,
            world_size=trained.args.world_size,
            bf16=trained.args.bf16,
        ),
        training=Training(
            settings=settings.to_dict(),
            data=source.describe(),
            train_rows=len(encoded["train"]),
            eval_rows={split: len(encoded[split]) for split in task.eval_splits},
            train_loss=trained.train_loss,
            log_history=trained.history,
            label_names=list(task.label_names),
        ),
    )


def source_for_run(
    run_dir: str, *, task: str | None = None, data_dir: str | None = None, validation: str | None = None
) -> DataSource:
    """The data to evaluate a run on: ``task`` if given, else the data source its metrics.json recorded
    (see :func:`trimbert.data.source.evaluation_source`)."""
    if task is not None:
        return DataSource(task=task, data_dir=data_dir)
    recorded_file = Path(run_dir) / METRICS_FILE
    if not recorded_file.is_file():
        raise TrimbertError(f"{run_dir} has no {METRICS_FILE}: say which data to evaluate on with --task")
    try:
        recorded = Record.from_dict(json.loads(recorded_file.read_text()))
    except (ValueError, TypeError) as error:
        raise TrimbertError(f"corrupt {recorded_file}: {error}") from error
    data = recorded.training.data if recorded.training else {}
    return evaluation_source(data, data_dir=data_dir, validation=validation, where=run_dir)


def evaluate(
    model_dir: str,
    source: DataSource,
    *,
    settings: FinetuneSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a fine-tuned checkpoint on a task's eval split(s): metrics, eval time, row counts."""
    settings = settings or FinetuneSettings()
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
    evaluator = Evaluator(task, {split: encoded[split] for split in task.eval_splits})
    with tempfile.TemporaryDirectory(prefix="trimbert-eval-") as work_dir:
        trainer = make_trainer(model, settings, work_dir, tokenizer, evaluator, progress=progress)
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
