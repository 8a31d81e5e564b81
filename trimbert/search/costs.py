"""What a search's units of work cost on this machine, and how many rows its task has.

:func:`measure_costs` times the units of a search's work here, on the task's own rows: a few training
steps of the untrimmed model, a batch through it in eval mode, a probe head refitted on features of the
score rows' size, the load of data and model (:class:`Costs`); :func:`count_rows` counts the task's rows
(:class:`Workload`). :func:`trimbert.search.budget.plan_search` multiplies them out into a plan.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trimbert.train.settings import FinetuneSettings


@dataclass(frozen=True)
class Costs:
    """Seconds each unit of a search's work takes here (measured by :func:`measure_costs`, or recorded)."""

    step_s: float  # one training step of the untrimmed model (the fine-tune's batch size, the task's rows)
    row_s: float  # one row through the untrimmed model in eval mode (a scored row)
    probe_row_s: float  # refitting the probe head, per score row (the probe scorer)
    load_s: float  # loading the data and the model (each fine-tune does)
    measure_s: float = 0.0  # what measuring these took


@dataclass(frozen=True)
class Workload:
    """How much data and how many hand-made patterns there are."""

    train_rows: int  # the training split
    validation_rows: int  # the first eval split (scores fall back to it when no training row is spare)
    eval_rows: int  # rows a fine-tune evaluates on at its end (every eval split, after --max-eval-samples)
    patterns: int  # hand-made patterns the search scores first (those predicted in the window)
    all_patterns: int  # every hand-made pattern of the space (all reported after a search without a budget)



def measure_costs(model_source: str, source: Any, finetune: FinetuneSettings, *, score_rows: int,
                  clock: Callable[[], float] = time.perf_counter) -> tuple[Costs, Workload]:
    """Time the units of a search's work here, on the task's own rows (see the module docstring), and
    count its rows. The hand-made pattern counts of the returned workload are 0 (the caller knows them)."""
    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding

    from trimbert.measure.size import model_device
    from trimbert.search.estimator import _probe_predictions
    from trimbert.train.finetune import prepare

    start = clock()
    work = count_rows(source, finetune)
    sample = min(work.train_rows, max(3 * finetune.batch_size, min(finetune.eval_batch_size, 256)))
    task, tokenizer, model, encoded = prepare(model_source, source, finetune.updated(max_train_samples=sample, max_eval_samples=1))
    load_s = clock() - start  # reading the data (twice: a fine-tune reads it once, and tokenizes more) and the model
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    collate = DataCollatorWithPadding(tokenizer)
    rows = [{key: row[key] for key in ("input_ids", "attention_mask", "token_type_ids", "labels") if key in row}
            for row in encoded["train"]]
    batches = [collate(rows[index : index + finetune.batch_size])
               for index in range(0, min(len(rows), 3 * finetune.batch_size), finetune.batch_size)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=finetune.lr)
    model.train()
    times = []
    for batch in batches:  # the first warms up
        begin = clock()
        loss = model(**{key: value.to(device) for key, value in batch.items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((clock() - begin) * finetune.batch_size / len(batch["input_ids"]))  # a full batch's time
    step_s = statistics.median(times[1:] or times)
    model.eval()
    scored = collate(rows[: finetune.eval_batch_size])
    with torch.inference_mode():
        begin = clock()
        output = model(**{key: value.to(model_device(model)) for key, value in scored.items() if key != "labels"})
        if device.type == "cuda":
            torch.cuda.synchronize()
        row_s = (clock() - begin) / len(scored["input_ids"])
    classes, hidden = int(output.logits.shape[-1]), int(model.config.hidden_size)
    del model, optimizer
    generator = np.random.default_rng(0)
    count = max(score_rows, 20)
    features = generator.normal(size=(count, hidden))  # the probe's cost depends on the shape, not the values
    labels = generator.normal(size=count) if task.is_regression else np.arange(count) % max(classes, 2)
    begin = clock()
    _probe_predictions(task, features, labels)
    probe_row_s = (clock() - begin) / count
    costs = Costs(step_s=step_s, row_s=row_s, probe_row_s=probe_row_s, load_s=load_s, measure_s=clock() - start)
    return costs, work


def count_rows(source: Any, finetune: FinetuneSettings) -> Workload:
    """The rows of the task (the hand-made pattern counts are 0: the caller knows them)."""
    dataset, task = source.load()
    eval_rows = sum(
        len(dataset[split]) if finetune.max_eval_samples is None else min(len(dataset[split]), finetune.max_eval_samples)
        for split in task.eval_splits
    )
    return Workload(train_rows=len(dataset["train"]), validation_rows=len(dataset[task.eval_splits[0]]),
                    eval_rows=eval_rows, patterns=0, all_patterns=0)
