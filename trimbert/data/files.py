"""Users' own data: CSV, TSV or JSON Lines files with named text and label columns.

Labels become a classification task (string or integer names, kept in order) or a regression
task; without a validation file a fixed share of the training rows is held out.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets

from trimbert.data.glue import as_number, open_text, parse_score
from trimbert.data.tasks import HOLDOUT_FRACTION, HOLDOUT_SEED, TASK_TYPES, TaskInfo, task_features
from trimbert.errors import TrimbertError

_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


def load_user_data(
    train: str | os.PathLike,
    validation: str | os.PathLike | None = None,
    *,
    text_column: str,
    text_pair_column: str | None = None,
    label_column: str,
    task_type: str | None = None,
    label_names: str | Sequence[str] | None = None,
) -> tuple[datasets.DatasetDict, TaskInfo]:
    """Load a user's CSV, TSV or JSON Lines files (by extension: .csv, .tsv, .jsonl, .json).

    ``task_type`` is ``"classification"``, ``"regression"`` or None to decide from the train labels:
    regression when they are all numbers and some are not integers. Classification labels are sorted
    (numerically when all are integers, else as strings) and numbered in that order; their names are
    kept in the returned ``TaskInfo.label_names``. Labels of mixed kinds (JSON numbers beside strings,
    or numbers beside names such as ``1, pos, 0, neg``) are refused: they would silently merge or split
    classes. ``label_names`` (``"neg,pos"`` or a list, in id order) says what the labels are instead:
    each label is matched by its text, and one that is not listed is an error. Without a validation
    file, a fixed 10% of train is held out as ``validation``.
    """
    if task_type not in (None, *TASK_TYPES):
        raise TrimbertError(f"unknown task type {task_type!r}; use one of {', '.join(TASK_TYPES)}")
    train_path = Path(train)
    columns = [text_column, *([text_pair_column] if text_pair_column else []), label_column]
    train_rows = _read_user_file(train_path, columns, label_column)
    train_labels = [row[label_column] for _, row in train_rows]

    if label_names is not None:
        if task_type == "regression":
            raise TrimbertError("--label-names is for classification, not regression")
        names, encode_label = _named_labels(label_names)
    elif task_type == "regression" or (task_type is None and _looks_like_regression(train_labels)):
        names, encode_label = (), parse_score
    else:
        _check_one_kind(train_labels, train_path)
        names, encode_label = _classification_labels(train_labels, train_path)

    task = _user_task(train_path.stem, text_column, text_pair_column, names)
    features = task_features(task)

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


def _label_kind(label: Any) -> str:
    if isinstance(label, bool):
        return "true/false"
    if isinstance(label, (int, float)):
        return "JSON numbers"
    return "numbers written as text" if as_number(label) is not None else "names"


def _check_one_kind(labels: list[Any], path: Path) -> None:
    """Refuse labels of mixed kinds, which would silently merge (``1`` and ``"1"``) or split classes."""
    examples: dict[str, Any] = {}
    for label in labels:
        examples.setdefault(_label_kind(label), label)
    if len(examples) > 1:
        shown = ", ".join(f"{kind} ({value!r})" for kind, value in examples.items())
        raise TrimbertError(
            f"{path}: labels mix {shown}; give --label-names (e.g. neg,pos) to say which labels there are"
        )


def _named_labels(label_names: str | Sequence[str]) -> tuple[tuple[str, ...], Callable[[Any, Path, int], int]]:
    names = [name.strip() for name in (label_names.split(",") if isinstance(label_names, str) else label_names)]
    if len(names) < 2 or any(not name for name in names) or len(set(names)) != len(names):
        raise TrimbertError(f"--label-names: give at least two distinct names, comma-separated, got {label_names!r}")
    ids = {name: index for index, name in enumerate(names)}

    def encode(value: Any, path: Path, line: int) -> int:
        text = str(value).strip()
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))
        if text not in ids:
            raise TrimbertError(f"{path} line {line}: label {value!r} is not one of --label-names ({', '.join(names)})")
        return ids[text]

    return tuple(names), encode


def _looks_like_regression(labels: list[Any]) -> bool:
    numbers = [as_number(label) for label in labels]
    return all(number is not None for number in numbers) and any(
        not number.is_integer() for number in numbers
    )


def _classification_labels(
    labels: list[Any], train_path: Path
) -> tuple[tuple[str, ...], Callable[[Any, Path, int], int]]:
    """Label names in id order, and a function mapping a raw label (with its file and line) to its id."""
    numbers = [as_number(label) for label in labels]
    if all(number is not None and number.is_integer() for number in numbers):

        def key(value: Any) -> int | str:
            number = as_number(value)
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
        records, found = read_delimited(path, "," if suffix == ".csv" else "\t")
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
        label = record[label_column]
        if str(label).strip() == "":
            raise TrimbertError(f"{path} line {line}: empty label in column {label_column!r}")
        if _is_missing_number(label):
            raise TrimbertError(
                f"{path} line {line}: label {label!r} in column {label_column!r} is not a value (NaN or infinity)"
            )
    return records


def _is_missing_number(value: Any) -> bool:
    """NaN or infinity, as a JSON number or as text (``NaN``, ``inf``): what tools write for a missing value,
    never a label (it would become a class "nan" or an infinite score)."""
    if isinstance(value, bool):
        return False
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def allow_long_fields() -> None:
    """Lift the csv module's field limit (131,072 characters by default, which refuses long texts)."""
    csv.field_size_limit(_FIELD_LIMIT)


def read_delimited(
    path: Path, delimiter: str, *, quoting: int = csv.QUOTE_MINIMAL
) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """``(line number, row)`` pairs and the header of a CSV/TSV file with a header line: UTF-8 (a BOM
    allowed), fields of any length (the csv module's default limit of 131,072 characters refuses long
    texts), an unreadable file a one-line :class:`TrimbertError`. Shared by the fine-tune data and the
    heal corpus readers."""
    allow_long_fields()
    with open_text(path) as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=quoting)
        records = [(reader.line_num, row) for row in reader]
        return records, list(reader.fieldnames or [])


def _read_json_lines(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    records = []
    with open_text(path) as handle:
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
