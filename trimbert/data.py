"""GLUE task registry, data loading and tokenization.

Every loader returns a :class:`datasets.DatasetDict` with the same columns: ``text_a`` (str),
``text_b`` (str, pair tasks only) and ``label`` (a ``ClassLabel`` id for classification, a float32 for
regression). The splits are ``train`` plus the task's eval splits (``validation``, or for MNLI
``validation_matched`` and ``validation_mismatched``).

Where :func:`load_glue` finds GLUE data, first match wins:

1. its ``data_dir`` argument: a task folder (``glue_data/SST-2``) or a ``glue_data/`` root holding it;
2. the environment variable ``TRIMBERT_GLUE_DIR``, pointing at a ``glue_data/`` root;
3. the Hugging Face Hub dataset ``nyu-mll/glue``.

Local files are the TSVs that ``download_glue_data.py`` writes; :data:`GLUE_TASKS` describes each
task's layout (files, header, columns, label strings) and one generic reader follows it.
Label ids follow the ClassLabel order of ``nyu-mll/glue`` for every task.

Users' own data sets (CSV, TSV, JSON Lines) load with :func:`load_user_data`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

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


def _as_task(task: str | TaskInfo) -> TaskInfo:
    return get_task(task) if isinstance(task, str) else task


def _features(task: TaskInfo) -> datasets.Features:
    columns: dict[str, Any] = {"text_a": datasets.Value("string")}
    if task.text_b is not None:
        columns["text_b"] = datasets.Value("string")
    if task.is_regression:
        columns["label"] = datasets.Value("float32")
    else:
        columns["label"] = datasets.ClassLabel(names=list(task.label_names))
    return datasets.Features(columns)


@contextmanager
def _open_text(path: Path) -> Iterator[TextIO]:
    """Open a UTF-8 text file (BOM allowed) for the csv module; turn decoding problems into TrimbertError."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            yield handle
    except UnicodeDecodeError:
        raise TrimbertError(f"{path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise TrimbertError(f"{path} cannot be parsed: {exc}") from None


# ---------------------------------------------------------------------------------------------- GLUE


def resolve_glue_dir(task: str | TaskInfo, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder holding ``task``'s TSV files, or None when the data must come from the Hub.

    ``data_dir`` (else ``$TRIMBERT_GLUE_DIR``) may be the task folder itself or a ``glue_data/`` root
    that holds the task folder.
    """
    info = _as_task(task)
    source = ""
    if data_dir is None:
        data_dir = os.environ.get(GLUE_DIR_ENV) or None
        if data_dir is None:
            return None
        source = f" (from {GLUE_DIR_ENV})"
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise TrimbertError(f"GLUE data folder {folder}{source} does not exist")
    if (folder / info.local_dir).is_dir():
        return folder / info.local_dir
    if any((folder / file_name).is_file() for _, file_name in info.tsv.files):
        return folder
    raise TrimbertError(
        f"GLUE data folder {folder}{source} holds neither a {info.local_dir}/ task folder "
        f"nor the {info.local_dir} files ({', '.join(name for _, name in info.tsv.files)})"
    )


def load_glue(task: str | TaskInfo, data_dir: str | os.PathLike | None = None) -> datasets.DatasetDict:
    """Load a GLUE task's train and eval splits with the uniform columns.

    From ``data_dir`` or ``$TRIMBERT_GLUE_DIR`` when one is given (see :func:`resolve_glue_dir`),
    else from the Hugging Face Hub dataset ``nyu-mll/glue``.
    """
    info = _as_task(task)
    folder = resolve_glue_dir(info, data_dir)
    if folder is None:
        return _load_glue_from_hub(info)
    features = _features(info)
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(_read_glue_file(folder / file_name, info), features=features)
            for split, file_name in info.tsv.files
        }
    )


def _read_glue_file(path: Path, task: TaskInfo) -> dict[str, list]:
    """Read one GLUE TSV file into uniform columns, following ``task.tsv``."""
    layout = task.tsv
    if not path.is_file():
        raise TrimbertError(f"{task.name}: required file {path} is missing")
    label_ids = {raw: index for index, raw in enumerate(layout.raw_labels)}
    columns: dict[str, list] = {"text_a": []}
    if layout.text_b_column is not None:
        columns["text_b"] = []
    columns["label"] = []
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        num_fields = len(next(reader, [])) if layout.has_header else layout.num_fields
        if num_fields and num_fields < layout.min_fields:
            raise TrimbertError(
                f"{path} has {num_fields} columns but {task.name} files have at least {layout.min_fields}: "
                f"is this the {task.local_dir} data?"
            )
        for fields in reader:
            if not fields:
                continue
            if len(fields) != num_fields:
                if layout.skip_malformed:
                    continue
                raise TrimbertError(
                    f"{path} line {reader.line_num}: expected {num_fields} tab-separated fields, found {len(fields)}"
                )
            raw_label = fields[layout.label_column]
            if label_ids:
                if raw_label not in label_ids:
                    raise TrimbertError(
                        f"{path} line {reader.line_num}: label {raw_label!r} is not one of "
                        f"{', '.join(layout.raw_labels)} ({task.name})"
                    )
                columns["label"].append(label_ids[raw_label])
            else:
                columns["label"].append(_parse_score(raw_label, path, reader.line_num))
            columns["text_a"].append(fields[layout.text_a_column])
            if layout.text_b_column is not None:
                columns["text_b"].append(fields[layout.text_b_column])
    if not columns["label"]:
        raise TrimbertError(f"{path} is empty (no data rows)")
    return columns


def _load_glue_from_hub(task: TaskInfo) -> datasets.DatasetDict:
    try:
        hub = datasets.load_dataset(HUB_DATASET, task.hub_name)
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrimbertError(
            f"cannot load {HUB_DATASET} ({task.hub_name}) from the Hugging Face Hub: {reason}; "
            f"pass a glue_data folder as data dir or set {GLUE_DIR_ENV}"
        ) from exc
    renames = {task.text_a: "text_a"}
    if task.text_b is not None:
        renames[task.text_b] = "text_b"
    columns = list(_features(task))
    return datasets.DatasetDict(
        {split: hub[split].rename_columns(renames).select_columns(columns) for split in task.splits}
    )


def _parse_score(value: Any, path: Path, line: int) -> float:
    number = _as_number(value)
    if number is None:
        raise TrimbertError(f"{path} line {line}: label {value!r} is not a number (regression)")
    return number


def _as_number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---------------------------------------------------------------------------------------- user data


def load_user_data(
    train: str | os.PathLike,
    validation: str | os.PathLike | None = None,
    *,
    text_column: str,
    text_pair_column: str | None = None,
    label_column: str,
    task_type: str | None = None,
) -> tuple[datasets.DatasetDict, TaskInfo]:
    """Load a user's CSV, TSV or JSON Lines files (by extension: .csv, .tsv, .jsonl, .json).

    ``task_type`` is ``"classification"``, ``"regression"`` or None to decide from the train labels:
    regression when they are all numbers and some are not integers. Classification labels are sorted
    (numerically when all are integers, else as strings) and numbered in that order; their names are
    kept in the returned ``TaskInfo.label_names``. Without a validation file, a fixed 10% of train is
    held out as ``validation``.
    """
    if task_type not in (None, *TASK_TYPES):
        raise TrimbertError(f"unknown task type {task_type!r}; use one of {', '.join(TASK_TYPES)}")
    train_path = Path(train)
    columns = [text_column, *([text_pair_column] if text_pair_column else []), label_column]
    train_rows = _read_user_file(train_path, columns, label_column)
    train_labels = [row[label_column] for _, row in train_rows]

    if task_type == "regression" or (task_type is None and _looks_like_regression(train_labels)):
        label_names: tuple[str, ...] = ()
        encode_label = _parse_score
    else:
        label_names, encode_label = _classification_labels(train_labels, train_path)

    task = _user_task(train_path.stem, text_column, text_pair_column, label_names)
    features = _features(task)

    def to_dataset(path: Path, rows: list[tuple[int, dict[str, Any]]]) -> datasets.Dataset:
        data: dict[str, list] = {"text_a": [str(row[text_column]) for _, row in rows]}
        if text_pair_column:
            data["text_b"] = [str(row[text_pair_column]) for _, row in rows]
        data["label"] = [encode_label(row[label_column], path, line) for line, row in rows]
        return datasets.Dataset.from_dict(data, features=features)

    train_set = to_dataset(train_path, train_rows)
    if validation is not None:
        validation_path = Path(validation)
        validation_set = to_dataset(validation_path, _read_user_file(validation_path, columns, label_column))
        return datasets.DatasetDict(train=train_set, validation=validation_set), task
    if len(train_set) < 2:
        raise TrimbertError(
            f"{train_path} has {len(train_set)} row; holding out validation rows needs at least 2"
        )
    held_out = train_set.train_test_split(test_size=HOLDOUT_FRACTION, seed=HOLDOUT_SEED)
    return datasets.DatasetDict(train=held_out["train"], validation=held_out["test"]), task


def _user_task(name: str, text_a: str, text_b: str | None, label_names: tuple[str, ...]) -> TaskInfo:
    if not label_names:
        metric_config, metric_names, main_metric = "user-regression", ("pearson", "spearmanr"), "spearmanr"
    elif len(label_names) == 2:
        metric_config, metric_names, main_metric = "user-binary", ("accuracy", "f1"), "accuracy"
    else:
        metric_config, metric_names, main_metric = "user-multiclass", ("accuracy",), "accuracy"
    return TaskInfo(
        name=name,
        text_a=text_a,
        text_b=text_b,
        label_names=label_names,
        is_regression=not label_names,
        metric_names=metric_names,
        main_metric=main_metric,
        metric_config=metric_config,
    )


def _looks_like_regression(labels: list[Any]) -> bool:
    numbers = [_as_number(label) for label in labels]
    return all(number is not None for number in numbers) and any(
        not number.is_integer() for number in numbers
    )


def _classification_labels(
    labels: list[Any], train_path: Path
) -> tuple[tuple[str, ...], Callable[[Any, Path, int], int]]:
    """Label names in id order, and a function mapping a raw label (with its file and line) to its id."""
    numbers = [_as_number(label) for label in labels]
    if all(number is not None and number.is_integer() for number in numbers):

        def key(value: Any) -> int | str:
            number = _as_number(value)
            return int(number) if number is not None and number.is_integer() else str(value).strip()

    else:

        def key(value: Any) -> int | str:
            return str(value).strip()

    values = sorted({key(label) for label in labels})
    if len(values) < 2:
        raise TrimbertError(
            f"{train_path} has only one label value ({values[0]}); classification needs at least two"
        )
    label_names = tuple(str(value) for value in values)
    ids = {value: index for index, value in enumerate(values)}

    def encode(value: Any, path: Path, line: int) -> int:
        if key(value) not in ids:
            raise TrimbertError(
                f"{path} line {line}: label {value!r} is not among the train labels ({', '.join(label_names)})"
            )
        return ids[key(value)]

    return label_names, encode


def _read_user_file(path: Path, columns: list[str], label_column: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs of a user's data file, with every named column present."""
    if not path.is_file():
        raise TrimbertError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        records, found = _read_delimited(path, "," if suffix == ".csv" else "\t")
    elif suffix in (".jsonl", ".json"):
        records, found = _read_json_lines(path)
    else:
        raise TrimbertError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv, .jsonl or .json")
    if not records:
        raise TrimbertError(f"{path} is empty (no data rows)")
    for column in columns:
        if column not in found:
            raise TrimbertError(f"{path} has no column {column!r}; its columns are: {', '.join(found)}")
    for line, record in records:
        for column in columns:
            if record.get(column) is None:
                raise TrimbertError(f"{path} line {line}: no value in column {column!r}")
        if str(record[label_column]).strip() == "":
            raise TrimbertError(f"{path} line {line}: empty label in column {label_column!r}")
    return records


def _read_delimited(path: Path, delimiter: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    with _open_text(path) as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        records = [(reader.line_num, row) for row in reader]
        return records, list(reader.fieldnames or [])


def _read_json_lines(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    records = []
    with _open_text(path) as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise TrimbertError(f"{path} line {line}: not valid JSON Lines ({exc.msg})") from None
            if not isinstance(record, dict):
                raise TrimbertError(
                    f"{path} line {line}: expected a JSON object, found {type(record).__name__}"
                )
            records.append((line, record))
    found = list(dict.fromkeys(key for _, record in records for key in record))
    return records, found


# ----------------------------------------------------------------------------------- preprocessing


def subsample(dataset: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    """``n`` rows of ``dataset`` drawn by shuffling with ``seed``; unchanged when n is None or >= its size."""
    if n is None or n >= len(dataset):
        return dataset
    if n < 1:
        raise TrimbertError(f"cannot subsample to {n} rows; the number must be at least 1")
    return dataset.shuffle(seed=seed).select(range(n))


def tokenize(dataset_dict: datasets.DatasetDict, tokenizer: Any, max_length: int) -> datasets.DatasetDict:
    """Tokenize the uniform text columns into input_ids, attention_mask, token_type_ids and labels.

    Sequences are truncated to ``max_length`` and left unpadded (a collator pads each batch).
    """
    column_names = next(iter(dataset_dict.values())).column_names
    text_columns = [column for column in ("text_a", "text_b") if column in column_names]

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(
            batch["text_a"],
            batch.get("text_b"),
            truncation=True,
            max_length=max_length,
            return_token_type_ids=True,
        )

    encoded = dataset_dict.map(encode, batched=True, remove_columns=text_columns)
    return encoded.rename_column("label", "labels")
