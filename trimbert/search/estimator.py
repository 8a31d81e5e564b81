"""Accuracy estimates for many candidate trims without training each one.

One-shot (AutoTinyBERT's idea on a pretrained checkpoint): the untrimmed model is fine-tuned once
on the task as a weight-sharing *super-model*: before every training step a random sub-trim of the
search space is switched on with :mod:`trimbert.model.gates` (dropped blocks, dropped FFNs, FFNs narrowed
to a prefix of their neurons sorted by importance, so widths nest, attention heads pruned to a prefix of
their heads sorted by the same scores, as ``trim --heads N --importance <rule>`` keeps them, stripped
LayerNorms, the normalizer);
a quarter of the steps train the whole model (the sandwich rule's largest network). A candidate is
then scored by switching its gates on and evaluating a held-out sample of the task's rows, with no
further training.

The score rows are training rows the fine-tune did not see (the rows after the first
``max_train_samples`` of the seeded shuffle), so the estimate is not tuned on the dev set the
searched model is finally judged on; when the training split has no rows to spare, validation rows
are used and the result says so. The *final* rows, when asked for, are the spare training rows after
those: fresh rows the search never looked at, to re-score its finalists without the winner's curse (the
best of many noisy estimates is biased upwards; a fresh score of it is not).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import TrainerCallback

from trimbert.data.batches import make_batches, sample_batches
from trimbert.data.metrics import compute_metrics, predictions_from_logits
from trimbert.data.sampling import tokenize
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.importance.rules import score as score_units
from trimbert.importance.scores import Importance
from trimbert.measure.size import model_device, model_mode
from trimbert.model.gates import Gates, install_gates
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimSpec
from trimbert.train.finetune import prepare
from trimbert.train.settings import FinetuneSettings
from trimbert.train.trainer import Evaluator, make_trainer

SCORERS = ("head", "probe")
FULL_MODEL_SHARE = 0.25  # share of super-model steps that train the whole model (sandwich rule)


class SubTrimSampler(TrainerCallback):
    """Before each training step, switch on a random sub-trim of ``space`` (or the whole model)."""

    def __init__(
        self, space: SearchSpace, order: dict[int, torch.Tensor], seed: int,
        head_order: dict[int, torch.Tensor] | None = None,
    ) -> None:
        self.space = space
        self.order = order
        self.head_order = head_order or {}
        self.rng = random.Random(seed)
        self.gates: Gates | None = None
        self.drawn = 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.gates = install_gates(model)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.rng.random() < FULL_MODEL_SHARE:
            self.gates.reset()
        else:
            self.gates.apply(self.space.random_spec(self.rng), self.order, head_order=self.head_order)
            self.drawn += 1

    def on_train_end(self, args, state, control, **kwargs):
        if self.gates is not None:
            self.gates.remove()


class StopAt(TrainerCallback):
    """Stop training once ``clock()`` reaches ``deadline`` (a budget's bound on the super-model's fine-tune)."""

    def __init__(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = deadline
        self.clock = clock
        self.stopped: tuple[int, int] | None = None  # (steps done, steps planned) when it stopped training

    def on_step_end(self, args, state, control, **kwargs):
        if self.clock() >= self.deadline and state.global_step < state.max_steps:
            control.should_training_stop = True
            self.stopped = (state.global_step, state.max_steps)


@dataclass
class Estimator:
    """A trained (super-)model with gates, and a held-out sample to score candidates on."""

    model: nn.Module
    task: Any
    batches: list[dict[str, torch.Tensor]]
    order: dict[int, torch.Tensor]
    score_split: str
    score_rows: int
    train_time_s: float
    info: dict[str, Any] = field(default_factory=dict)
    scorer: str = "probe"
    final_batches: list[dict[str, torch.Tensor]] | None = None  # fresh rows for the finalists (None: no spare rows)
    final_rows: int = 0
    cache: dict[tuple[TrimSpec, str, str], float] = field(default_factory=dict)
    gates: Gates | None = None
    score_time_s: float = 0.0
    last: tuple[tuple[TrimSpec, str], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None  # latest outputs
    head_order: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> heads, most important first

    def score(self, spec: TrimSpec, scorer: str | None = None, rows: str = "search") -> float:
        """The task's main metric of the model with ``spec`` switched on, on the score rows
        (``rows="search"``) or on the fresh final rows (``rows="final"``).

        ``scorer`` (default: the estimator's): ``"head"`` reads the super-model's own classifier;
        ``"probe"`` refits a linear head on the masked model's pooled features (2-fold cross-validated
        over the score rows: logistic regression, or ridge for regression), so a trim that only moves
        the features the head expects is not punished for what fine-tuning would re-learn at once.
        """
        scorer = scorer or self.scorer
        if scorer not in SCORERS:
            raise TrimbertError(f"--scorer: unknown scorer {scorer!r} (choose from {', '.join(SCORERS)})")
        batches = {"search": self.batches, "final": self.final_batches}.get(rows)
        if batches is None:
            raise TrimbertError(f"the estimator has no {rows!r} rows to score on")
        if (spec, scorer, rows) in self.cache:
            return self.cache[(spec, scorer, rows)]
        start = time.perf_counter()
        if self.last is None or self.last[0] != (spec, rows):  # both scorers of one spec share one pass
            if self.gates is None:
                self.gates = install_gates(self.model)
            self.gates.apply(spec, self.order, head_order=self.head_order)
            self.last = ((spec, rows), self._outputs(batches))
        logits, features, labels = self.last[1]
        if scorer == "probe":
            predictions = _probe_predictions(self.task, features, labels)
        else:
            predictions = predictions_from_logits(self.task, logits)
        value = compute_metrics(self.task, predictions, labels)[self.task.main_metric]
        self.cache[(spec, scorer, rows)] = value
        self.score_time_s += time.perf_counter() - start
        return value

    def known(self, spec: TrimSpec) -> dict[str, float]:
        """The scores of ``spec`` on the search rows computed so far, by scorer (nothing is computed)."""
        return {scorer: self.cache[(spec, scorer, "search")] for scorer in SCORERS if (spec, scorer, "search") in self.cache}

    def _outputs(self, batches: list[dict[str, torch.Tensor]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return model_outputs(self.model, batches)

    def close(self) -> None:
        if self.gates is not None:
            self.gates.remove()
            self.gates = None


def model_outputs(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, the classifier's input features and the labels of every row of ``batches``."""
    device = model_device(model)
    logits, features, labels = [], [], []
    head = getattr(model, "classifier", None)
    handle = head.register_forward_pre_hook(lambda module, args: features.append(args[0].float().cpu().numpy())) if head else None
    try:
        with torch.inference_mode(), model_mode(model, train=False):
            for batch in batches:
                inputs = {key: value.to(device) for key, value in batch.items() if key != "labels"}
                logits.append(model(**inputs).logits.float().cpu().numpy())
                labels.append(batch["labels"].numpy())
    finally:
        if handle is not None:
            handle.remove()
    return np.concatenate(logits), np.concatenate(features) if features else np.empty(0), np.concatenate(labels)


def model_metric(model: nn.Module, task: Any, batches: list[dict[str, torch.Tensor]]) -> float:
    """The task's main metric of ``model`` (its own head) on ``batches``: how a verified finalist is judged."""
    logits, _, labels = model_outputs(model, batches)
    return compute_metrics(task, predictions_from_logits(task, logits), labels)[task.main_metric]


def _probe_predictions(task: Any, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Predictions of a linear head refitted on ``features``, each row predicted by a head fitted on the
    other fold (2 folds, seeded): logistic regression, or ridge regression for a regression task. A fold
    whose training half holds one class only predicts that class."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if task.is_regression:
        folds, targets = KFold(2, shuffle=True, random_state=0), labels.astype(float)
    else:
        targets = labels.astype(int)
        stratify = np.bincount(targets).min() >= 2 if len(targets) else False
        folds = StratifiedKFold(2, shuffle=True, random_state=0) if stratify else KFold(2, shuffle=True, random_state=0)
    predictions = np.zeros(len(targets), dtype=targets.dtype)
    for train, held in folds.split(features, targets):
        if not task.is_regression and len(np.unique(targets[train])) < 2:
            predictions[held] = targets[train][0]
            continue
        head = Ridge() if task.is_regression else LogisticRegression(max_iter=500)
        predictions[held] = make_pipeline(StandardScaler(), head).fit(features[train], targets[train]).predict(features[held])
    return predictions


def score_rows(
    source: DataSource, tokenizer: Any, settings: FinetuneSettings, rows: int, final_rows: int = 0
) -> tuple[Any, Any | None, str]:
    """Rows to score candidates on (training rows the fine-tune does not use, else validation rows), and
    up to ``final_rows`` fresh training rows after those for the finalists (None when fewer than
    ``min(final_rows, 100)`` are left, or none were asked for)."""
    from datasets import DatasetDict

    dataset, task = source.load()
    train = dataset["train"]
    used = len(train) if settings.max_train_samples is None else min(settings.max_train_samples, len(train))
    shuffled = train.shuffle(seed=settings.seed)
    if len(train) - used >= min(rows, 100):
        end = min(len(train), used + rows)
        parts = {"score": shuffled.select(range(used, end))}
        split = "train (rows not trained on)"
        if final_rows and len(train) - end >= min(final_rows, 100):
            parts["final"] = shuffled.select(range(end, min(len(train), end + final_rows)))
    else:
        validation = dataset[task.eval_splits[0]]
        parts = {"score": validation.shuffle(seed=settings.seed).select(range(min(rows, len(validation))))}
        split = f"{task.eval_splits[0]} (no spare training rows)"
    encoded = tokenize(DatasetDict(parts), tokenizer, settings.max_length)
    return encoded["score"], encoded.get("final"), split


def unit_scores(model: nn.Module, encoded_train: Any, tokenizer: Any, settings: FinetuneSettings, importance: str, samples: int) -> Importance:
    """The scores of every FFN neuron and attention head by rule ``importance``, computed once: their
    :meth:`~Importance.neuron_order` and :meth:`~Importance.head_order` are what ``--ffn-width N`` and
    ``--heads N`` with ``--importance <rule>`` keep when fine-tuning from this checkpoint with the same seed
    (the same sample, the same scores: :func:`trimbert.pipeline.apply_trim`, as ``finetune --spec best.json``
    applies the search's winner)."""
    batches = None if importance == "magnitude" else sample_batches(
        encoded_train,
        tokenizer,
        samples=samples,
        seed=settings.seed,
        max_length=settings.max_length,
        batch_size=settings.eval_batch_size,
        tokenized=True,
    )
    return score_units(model, importance, batches, has_head=False, seed=settings.seed)


def build_estimator(
    model_source: str,
    source: DataSource,
    space: SearchSpace,
    *,
    scorer: str = "probe",
    settings: FinetuneSettings,
    importance: str = "taylor",
    rows: int = 1000,
    final_rows: int = 0,
    importance_samples: int = 256,
    progress: bool = False,
    stop_at: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Estimator:
    """Fine-tune ``model_source`` on the task as the super-model and return the estimator.
    ``stop_at``: a ``clock()`` time at which the fine-tune stops, done or not (``info["stopped_early"]`` says where)."""
    task, tokenizer, model, encoded = prepare(model_source, source, settings)
    found = unit_scores(model, encoded["train"], tokenizer, settings, importance, importance_samples)
    order = found.neuron_order()
    heads = found.head_order() if space.heads else {}
    held, final, split = score_rows(source, tokenizer, settings, rows, final_rows)
    sampler = SubTrimSampler(space, order, settings.seed, head_order=heads)
    stopper = StopAt(stop_at, clock) if stop_at is not None else None
    callbacks = [callback for callback in (sampler, stopper) if callback is not None]
    with tempfile.TemporaryDirectory(prefix="trimbert-search-") as work_dir:
        trainer = make_trainer(
            model,
            settings,
            work_dir,
            tokenizer,
            Evaluator(task, {}),
            progress=progress,
            train_dataset=encoded["train"],
            callbacks=callbacks or None,
        )
        start = time.perf_counter()
        trainer.train()
        train_time = time.perf_counter() - start
    trained = trainer.model.module if isinstance(trainer.model, nn.DataParallel) else trainer.model
    return Estimator(
        model=trained.eval(),
        task=task,
        batches=make_batches(held, tokenizer, batch_size=settings.eval_batch_size),
        order=order,
        score_split=split,
        score_rows=len(held),
        train_time_s=train_time,
        info={"train_rows": len(encoded["train"]), "sub_trims_drawn": sampler.drawn, "importance": importance,
              "stopped_early": None if stopper is None or stopper.stopped is None
              else {"step": stopper.stopped[0], "of": stopper.stopped[1]}},
        scorer=scorer,
        final_batches=None if final is None else make_batches(final, tokenizer, batch_size=settings.eval_batch_size),
        final_rows=0 if final is None else len(final),
        head_order=heads,
    )
