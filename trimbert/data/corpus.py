"""Unlabeled text for healing: read a corpus from a file, a glue_data/ folder or a Hub dataset.

:func:`read_corpus` accepts a text file (one text per line), a CSV/TSV/JSONL file with a text column,
a ``glue_data/`` folder or one task folder of it (every text of every task's *training* file found:
both sentences of pair tasks, deduplicated; dev files are left out, since dev texts are what a healed
model is evaluated on), or a Hub dataset id (``wikitext`` with
``--corpus-config wikitext-103-raw-v1``, online users). Empty lines are dropped; an empty corpus is an
error. :func:`corpus_fingerprint` identifies the texts (recorded with a healed model).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

from trimbert.data.files import allow_long_fields, read_delimited
from trimbert.data.tasks import GLUE_TASKS
from trimbert.errors import TrimbertError

_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
_TEXT_SUFFIXES = (".txt", ".text", ".raw")


def read_corpus(
    source: str | Path,
    *,
    text_column: str | None = None,
    config: str | None = None,
    max_texts: int | None = None,
    seed: int = 0,
) -> list[str]:
    """The texts of ``source`` (module docstring), shuffled with ``seed`` and cut to ``max_texts``."""
    path = Path(source).expanduser()
    if path.is_dir():
        texts = _glue_texts(path)
    elif path.is_file():
        texts = _file_texts(path, text_column)
    elif str(source).startswith((".", "/", "~")) or path.suffix:
        raise TrimbertError(f"corpus {source} does not exist")
    else:
        texts = _hub_texts(str(source), text_column, config)
    texts = list(dict.fromkeys(text.strip() for text in texts if text and text.strip()))
    if not texts:
        raise TrimbertError(f"corpus {source} holds no text")
    random.Random(seed).shuffle(texts)
    if max_texts is not None:
        if max_texts < 1:
            raise TrimbertError(f"--corpus-texts must be at least 1, got {max_texts}")
        texts = texts[:max_texts]
    return texts


def corpus_fingerprint(texts: list[str]) -> str:
    """A short hash of the texts in order (what a healed model was trained on)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


def _file_texts(path: Path, text_column: str | None) -> list[str]:
    suffix = path.suffix.lower()
    try:
        if suffix in _TABLE_SUFFIXES or suffix in (".jsonl", ".json"):
            if text_column is None:
                raise TrimbertError(f"corpus {path} is a table: say which column holds the text (--text-column)")
            rows = _jsonl_rows(path) if suffix in (".jsonl", ".json") else _table_rows(path, _TABLE_SUFFIXES[suffix])
            if rows and text_column not in rows[0]:
                raise TrimbertError(f"corpus {path} has no column {text_column!r}; its columns are: {', '.join(rows[0])}")
            return [str(row.get(text_column) or "") for row in rows]
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise TrimbertError(f"corpus {path} is not UTF-8 text: {error.reason}") from error


def _table_rows(path: Path, delimiter: str) -> list[dict[str, str]]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    return [row for _, row in read_delimited(path, delimiter, quoting=quoting)[0]]


def _jsonl_rows(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as error:
            raise TrimbertError(f"corpus {path} line {number}: not JSON ({error})") from error
    return rows


def _glue_texts(folder: Path) -> list[str]:
    """Every text column of every GLUE training file under ``folder`` (a glue_data/ folder or one task's)."""
    texts: list[str] = []
    found = False
    for task in GLUE_TASKS.values():
        if task.tsv is None or task.local_dir is None:
            continue
        if (folder / task.local_dir).is_dir():
            task_dir = folder / task.local_dir
        elif folder.name == task.local_dir:
            task_dir = folder
        else:
            continue
        columns = [c for c in (task.tsv.text_a_column, task.tsv.text_b_column) if c is not None]
        for split, name in task.tsv.files:
            if split != "train" or not (task_dir / name).is_file():
                continue
            found = True
            allow_long_fields()
            with open(task_dir / name, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
            for row in rows[1:] if task.tsv.has_header else rows:
                texts.extend(row[column] for column in columns if column < len(row))
    if not found:
        raise TrimbertError(f"corpus folder {folder} holds no GLUE task files (expected glue_data/ or one task folder)")
    return texts


def _hub_texts(name: str, text_column: str | None, config: str | None) -> list[str]:
    try:
        import datasets

        dataset = datasets.load_dataset(name, config, split="train")
    except Exception as error:  # offline, unknown id, missing config: datasets raises many types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrimbertError(f"could not load the corpus {name!r} from the Hub: {first}") from error
    column = text_column or ("text" if "text" in dataset.column_names else None)
    if column is None or column not in dataset.column_names:
        raise TrimbertError(
            f"corpus {name!r} has no column {text_column or 'text'!r}; its columns are: {', '.join(dataset.column_names)}"
        )
    return list(dataset[column])
