"""Read GLUE tasks: a local ``glue_data/`` folder in the original TSV formats, or the Hub.

The TSV reader is driven by each task's :class:`~trimbert.data.tasks.TsvFormat` and handles the real
files' quirks (quoting, missing labels, extra columns). Without a local folder the Hub's
``nyu-mll/glue`` is used through ``datasets`` (online users).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import datasets

from trimbert.data.tasks import GLUE_DIR_ENV, HUB_DATASET, TaskInfo, as_task, task_features
from trimbert.errors import TrimbertError


@contextmanager
def open_text(path: Path) -> Iterator[TextIO]:
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
    info = as_task(task)
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
    info = as_task(task)
    folder = resolve_glue_dir(info, data_dir)
    if folder is None:
        return _load_glue_from_hub(info)
    features = task_features(info)
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
    with open_text(path) as handle:
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
                columns["label"].append(parse_score(raw_label, path, reader.line_num))
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
    columns = list(task_features(task))
    return datasets.DatasetDict(
        {split: hub[split].rename_columns(renames).select_columns(columns) for split in task.splits}
    )


def parse_score(value: Any, path: Path, line: int) -> float:
    number = as_number(value)
    if number is None:
        raise TrimbertError(f"{path} line {line}: label {value!r} is not a number (regression)")
    return number


def as_number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
