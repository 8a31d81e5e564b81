"""The GLUE task table: one :class:`TaskInfo` per task drives every loader, metric and head.

Every loader returns a :class:`datasets.DatasetDict` with the same columns: ``text_a`` (str),
``text_b`` (str, pair tasks only) and ``label`` (a ``ClassLabel`` id for classification, a float32 for
regression). The splits are ``train`` plus the task's eval splits (``validation``, or for MNLI
``validation_matched`` and ``validation_mismatched``). Each task's :class:`TsvFormat` describes its
``glue_data/`` layout (files, header, columns, label strings) for :mod:`trimbert.data.glue`. Label ids
follow the ClassLabel order of ``nyu-mll/glue`` for every task. Users' own files:
:mod:`trimbert.data.files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets

from trimbert.errors import TrimbertError

GLUE_DIR_ENV = "TRIMBERT_GLUE_DIR"
HUB_DATASET = "nyu-mll/glue"
HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 42
TASK_TYPES = ("classification", "regression")


@dataclass(frozen=True)
class TsvFormat:
    """The layout of one GLUE task's files in a ``glue_data/`` task folder."""

    files: tuple[tuple[str, str], ...]  # (split, file name), train first
    has_header: bool
    text_a_column: int
    text_b_column: int | None
    label_column: int  # negative counts from the end: MNLI's gold_label is the last column
    raw_labels: tuple[str, ...]  # the label strings in the files, in label id order; () for float scores
    num_fields: int | None = None  # fields per row of a file without a header line
    skip_malformed: bool = False  # skip rows with the wrong number of fields (QQP) instead of failing

    @property
    def min_fields(self) -> int:
        """The fewest fields a row needs to hold the text and label columns."""
        columns = (self.text_a_column, self.text_b_column, self.label_column)
        return 1 + max(column for column in columns if column is not None and column >= 0)


@dataclass(frozen=True)
class TaskInfo:
    """Everything trimbert needs to know about one task (a GLUE task or a user's data set)."""

    name: str
    text_a: str  # source column of the first text (hub dataset column, or the user's column)
    text_b: str | None  # source column of the second text; None for single-sentence tasks
    label_names: tuple[str, ...]  # in label id order; () for regression
    is_regression: bool
    metric_names: tuple[str, ...]  # keys of compute_metrics' result (per eval split)
    main_metric: str  # the metric that ranks variants
    metric_config: str  # config name of the local GLUE evaluate module
    eval_splits: tuple[str, ...] = ("validation",)
    hub_name: str | None = None  # config of the nyu-mll/glue dataset
    local_dir: str | None = None  # task folder name in glue_data/
    tsv: TsvFormat | None = None

    @property
    def num_labels(self) -> int:
        """Output size of the classification head: 1 for regression."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def splits(self) -> tuple[str, ...]:
        """All split names a loader returns: ``train`` and the eval splits."""
        return ("train", *self.eval_splits)


_TRAIN_DEV = (("train", "train.tsv"), ("validation", "dev.tsv"))
_ENTAILMENT = ("entailment", "not_entailment")
_NLI = ("entailment", "neutral", "contradiction")
_BINARY = ("0", "1")  # label strings of the files with 0/1 labels


def _glue_task(
    name: str,
    *,
    local_dir: str,
    text_a: str,
    text_b: str | None,
    label_names: tuple[str, ...],
    metric_names: tuple[str, ...],
    main_metric: str,
    tsv: TsvFormat,
    eval_splits: tuple[str, ...] = ("validation",),
) -> TaskInfo:
    return TaskInfo(
        name=name,
        text_a=text_a,
        text_b=text_b,
        label_names=label_names,
        is_regression=not label_names,
        metric_names=metric_names,
        main_metric=main_metric,
        metric_config=name,
        eval_splits=eval_splits,
        hub_name=name,
        local_dir=local_dir,
        tsv=tsv,
    )


GLUE_TASKS: dict[str, TaskInfo] = {
    task.name: task
    for task in (
        _glue_task(
            "cola",
            local_dir="CoLA",
            text_a="sentence",
            text_b=None,
            label_names=("unacceptable", "acceptable"),
            metric_names=("matthews_correlation",),
            main_metric="matthews_correlation",
            tsv=TsvFormat(
                _TRAIN_DEV, has_header=False, num_fields=4, text_a_column=3, text_b_column=None, label_column=1,
                raw_labels=_BINARY,
            ),
        ),
        _glue_task(
            "sst2",
            local_dir="SST-2",
            text_a="sentence",
            text_b=None,
            label_names=("negative", "positive"),
            metric_names=("accuracy",),
            main_metric="accuracy",
            tsv=TsvFormat(
                _TRAIN_DEV, has_header=True, text_a_column=0, text_b_column=None, label_column=1,
                raw_labels=_BINARY,
            ),
        ),
        _glue_task(
            "mrpc",
            local_dir="MRPC",
            text_a="sentence1",
            text_b="sentence2",
            label_names=("not_equivalent", "equivalent"),
            metric_names=("accuracy", "f1"),
            main_metric="f1",
            tsv=TsvFormat(
                _TRAIN_DEV, has_header=True, text_a_column=3, text_b_column=4, label_column=0,
                raw_labels=_BINARY,
            ),
        ),
        _glue_task(
            "qqp",
            local_dir="QQP",
            text_a="question1",
            text_b="question2",
            label_names=("not_duplicate", "duplicate"),
            metric_names=("accuracy", "f1"),
            main_metric="f1",
            tsv=TsvFormat(
                _TRAIN_DEV, has_header=True, text_a_column=3, text_b_column=4, label_column=5,
                raw_labels=_BINARY, skip_malformed=True,
            ),
        ),
        _glue_task(
            "stsb",
            local_dir="STS-B",
            text_a="sentence1",
            text_b="sentence2",
            label_names=(),
            metric_names=("pearson", "spearmanr"),
            main_metric="spearmanr",
            tsv=TsvFormat(
                _TRAIN_DEV, has_header=True, text_a_column=7, text_b_column=8, label_column=9,
                raw_labels=(),
            ),
        ),
        _glue_task(
            "mnli",
            local_dir="MNLI",
            text_a="premise",
            text_b="hypothesis",
            label_names=_NLI,
            metric_names=("accuracy",),
            main_metric="accuracy",
            eval_splits=("validation_matched", "validation_mismatched"),
            tsv=TsvFormat(
                (
                    ("train", "train.tsv"),
                    ("validation_matched", "dev_matched.tsv"),
                    ("validation_mismatched", "dev_mismatched.tsv"),
                ),
                has_header=True, text_a_column=8, text_b_column=9, label_column=-1,
                raw_labels=_NLI,
            ),
        ),
        _glue_task(
            "qnli",
            local_dir="QNLI",
            text_a="question",
            text_b="sentence",
            label_names=_ENTAILMENT,
            metric_names=("accuracy",),
            main_metric="accuracy",
            tsv=TsvFormat(
                _TRAIN_DEV, has_header=True, text_a_column=1, text_b_column=2, label_column=3,
                raw_labels=_ENTAILMENT,
            ),
        ),
        _glue_task(
            "rte",
            local_dir="RTE",
            text_a="sentence1",
            text_b="sentence2",
            label_names=_ENTAILMENT,
            metric_names=("accuracy",),
            main_metric="accuracy",
            tsv=TsvFormat(
                _TRAIN_DEV, has_header=True, text_a_column=1, text_b_column=2, label_column=3,
                raw_labels=_ENTAILMENT,
            ),
        ),
        _glue_task(
            "wnli",
            local_dir="WNLI",
            text_a="sentence1",
            text_b="sentence2",
            label_names=("not_entailment", "entailment"),
            metric_names=("accuracy",),
            main_metric="accuracy",
            tsv=TsvFormat(
                _TRAIN_DEV, has_header=True, text_a_column=1, text_b_column=2, label_column=3,
                raw_labels=_BINARY,
            ),
        ),
    )
}  # fmt: skip


def get_task(name: str) -> TaskInfo:
    """The GLUE task called ``name``; case, hyphens and underscores do not matter ("SST-2", "sts_b")."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise TrimbertError(f"unknown GLUE task {name!r}; known tasks: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


def as_task(task: str | TaskInfo) -> TaskInfo:
    return get_task(task) if isinstance(task, str) else task


def task_features(task: TaskInfo) -> datasets.Features:
    columns: dict[str, Any] = {"text_a": datasets.Value("string")}
    if task.text_b is not None:
        columns["text_b"] = datasets.Value("string")
    if task.is_regression:
        columns["label"] = datasets.Value("float32")
    else:
        columns["label"] = datasets.ClassLabel(names=list(task.label_names))
    return datasets.Features(columns)
