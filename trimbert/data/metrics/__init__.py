"""Task metrics, computed by the local ``evaluate`` module in ``trimbert/data/metrics/glue/glue.py``.

``evaluate.load("glue", ...)`` would fetch the metric from the Hugging Face Hub; this package ships
the same definitions and loads them by path, so evaluation works offline. ``evaluate`` copies the
script into its module cache (``$HF_MODULES_CACHE``, by default ``~/.cache/huggingface/modules``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import evaluate
import numpy as np

from trimbert.data.tasks import TaskInfo, get_task

GLUE_METRIC_PATH = Path(__file__).resolve().parent / "glue"


def load_metric(task: TaskInfo | str) -> evaluate.EvaluationModule:
    """The ``evaluate`` metric of a task (a TaskInfo, or a GLUE task name such as "sst2" or "SST-2")."""
    info = get_task(task) if isinstance(task, str) else task
    return evaluate.load(str(GLUE_METRIC_PATH), info.metric_config, keep_in_memory=True)


def compute_metrics(task: TaskInfo | str, predictions: Sequence, references: Sequence) -> dict[str, float]:
    """The task's metrics (``task.metric_names``) as plain floats.

    Predictions are label ids for classification and scores for regression. For MNLI call this once
    per eval split; the key is just ``"accuracy"``.
    """
    result = load_metric(task).compute(predictions=predictions, references=references)
    return {name: float(value) for name, value in result.items()}


def metric_key(split: str, name: str, splits: tuple[str, ...]) -> str:
    """``accuracy`` for a task with one eval split; ``matched_accuracy`` etc. for MNLI's two."""
    if len(splits) == 1:
        return name
    return f"{split.removeprefix('validation_')}_{name}"


def main_metric_key(task: TaskInfo) -> str:
    """The key of the metric that ranks variants, as :func:`metric_key` names it."""
    return metric_key(task.eval_splits[0], task.main_metric, task.eval_splits)


def predictions_from_logits(task: TaskInfo, logits: np.ndarray) -> np.ndarray:
    """Label ids (argmax) for classification, the scores themselves for regression."""
    if task.is_regression:
        return np.asarray(logits).reshape(-1)
    return np.asarray(logits).argmax(axis=-1)
