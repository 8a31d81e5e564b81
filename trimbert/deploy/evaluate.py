"""Evaluating an exported model (fp32 or int8) on a task's dev split(s) in ONNX Runtime or OpenVINO.

The same data, tokenization and metrics as :func:`trimbert.train.finetune.evaluate` (the PyTorch
path), so the accuracy of an exported model — above all what int8 quantization costs — is comparable
with the fine-tuned model's own figure.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from trimbert.data.batches import make_batches
from trimbert.data.metrics import compute_metrics, main_metric_key, metric_key, predictions_from_logits
from trimbert.data.sampling import subsample, tokenize
from trimbert.data.source import DataSource
from trimbert.deploy.runners import load_exported, measured_on
from trimbert.errors import TrimbertError


def evaluate_onnx(
    folder: str | Path,
    source: DataSource,
    *,
    int8: bool = False,
    openvino: bool = False,
    max_length: int = 128,
    batch_size: int = 64,
    max_eval_samples: int | None = None,
    seed: int = 42,
    threads: int | None = None,
) -> dict[str, Any]:
    """Metrics of the export in ``folder`` on ``source``'s eval split(s), with eval time and row counts
    (the keys of :func:`trimbert.train.finetune.evaluate`'s result, plus ``runtime``): ONNX Runtime's
    model, or with ``openvino`` OpenVINO's; with ``int8`` the int8 one."""
    runtime = ("openvino" if openvino else "onnxruntime") + ("-int8" if int8 else "")
    model = load_exported(folder, runtime, threads=threads)
    if model.output_name != "logits":
        raise TrimbertError(f"{folder} holds an encoder without a task head: export a fine-tuned run")
    if model.tokenizer is None:
        raise TrimbertError(f"no tokenizer in {folder}")
    dataset, task = source.load()
    labels = getattr(model.config, "num_labels", None)
    if labels != task.num_labels:
        raise TrimbertError(f"{folder} predicts {labels} labels but task {task.name} has {task.num_labels}")
    positions = model.config.max_position_embeddings
    if max_length > positions:
        raise TrimbertError(f"sequence length {max_length} exceeds the model's max_position_embeddings {positions}")
    from datasets import DatasetDict

    eval_sets = {split: subsample(dataset[split], max_eval_samples, seed) for split in task.eval_splits}
    encoded = tokenize(DatasetDict(eval_sets), model.tokenizer, max_length)
    metrics: dict[str, float] = {}
    start = time.perf_counter()
    for split in task.eval_splits:
        logits, references = [], []
        for batch in make_batches(encoded[split], model.tokenizer, batch_size):
            logits.append(model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")))
            references.append(batch["labels"].numpy())
        result = compute_metrics(task, predictions_from_logits(task, np.concatenate(logits)), np.concatenate(references))
        for name in task.metric_names:
            metrics[metric_key(split, name, task.eval_splits)] = result[name]
    return {
        "model": str(folder),
        "runtime": model.runtime,
        "task": task.name,
        "metrics": metrics,
        "main_metric": main_metric_key(task),
        "eval_time_s": time.perf_counter() - start,
        "eval_rows": {split: len(rows) for split, rows in eval_sets.items()},
        "trim": model.info.get("trim", {}),
        "trim_summary": model.info.get("trim_summary", "untrimmed"),
        "conditions": measured_on(model.runtime, threads),
    }
