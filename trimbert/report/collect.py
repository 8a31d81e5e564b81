"""Find the records under files and folders: the report's input.

:func:`collect_records` reads every ``*.json`` and ``*.jsonl`` file under the given paths and keeps
the objects that are records (:func:`trimbert.report.records.is_record`: a known ``kind``, a
``variant`` and a ``schema_version``; a file holds one record, a list of records, or one record a
line), upgraded to the current version by :meth:`Record.from_dict`. Files of other JSON (model
configs, tokenizers, trainer state, a report's own ``results.json``) hold no records and are passed
over; the names Hugging Face and the report give such files are skipped unread, and so is a walked
file too big to be a record file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trimbert.core.io import read_jsonl
from trimbert.errors import TrimbertError
from trimbert.report.records import Record, is_record

# Files that never hold records, skipped unread: Hugging Face model/tokenizer/trainer files, the report's output.
SKIPPED_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "trainer_state.json",
        "results.json",
    }
)
# A ``*.json`` met while walking that is bigger than this is data, not a record file.
MAX_WALKED_JSON_BYTES = 32 << 20
# Names that always hold records: corrupt JSON in them is an error, not another kind of file.
RECORD_FILES = frozenset({"metrics.json", "heal.json", "results.jsonl"})


def collect_records(paths: Iterable[str | Path]) -> list[Record]:
    """The trimbert records under ``paths`` (files or folders, walked recursively, hidden ones skipped).

    Entries with the same kind, variant, task and seed (a sweep shard run twice, a baseline benched
    twice) are deduplicated, keeping the latest by ``conditions["date"]``, then by reading order.

    Raises :class:`TrimbertError` for a path that does not exist or holds no records, for a records
    file that is not valid JSON, and for a record object that is malformed.
    """
    records: list[Record] = []
    for path in map(Path, paths):
        if not path.exists():
            raise TrimbertError(f"{path} does not exist")
        found = _records_in_file(path, explicit=True) if path.is_file() else _records_in_folder(path)
        if not found:
            raise TrimbertError(
                f"no trimbert records found under {path} "
                "(looked for fine-tune metrics.json, heal.json, bench --out *.json and sweep results.jsonl files)"
            )
        records.extend(found)
    return _deduplicate(records)


def _records_in_folder(folder: Path) -> list[Record]:
    records: list[Record] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            if name.startswith(".") or name in SKIPPED_FILES:
                continue
            if name.endswith(".jsonl") or (
                name.endswith(".json") and path.is_file() and path.stat().st_size <= MAX_WALKED_JSON_BYTES
            ):
                records.extend(_records_in_file(path, explicit=False))
    return records


def _records_in_file(path: Path, *, explicit: bool) -> list[Record]:
    """The records of one file. Corrupt JSON is an error when the file is meant to hold records: given
    explicitly, named like a record file (:data:`RECORD_FILES`), or mentioning "kind" and "variant"
    (a bench ``--out`` file cut short); else it is some other file."""
    try:
        if path.suffix == ".jsonl":
            items: list[Any] = read_jsonl(path)
        else:
            raw = path.read_bytes()
            try:
                data = json.loads(raw)
            except ValueError:
                if explicit or path.name in RECORD_FILES or (b'"kind"' in raw and b'"variant"' in raw):
                    raise
                return []
            items = data if isinstance(data, list) else [data]
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError
        raise TrimbertError(f"corrupt JSON in records file {path}: {exc}") from None
    except OSError as exc:
        raise TrimbertError(f"cannot read {path}: {exc.strerror or exc}") from None
    records = []
    for item in items:
        if is_record(item):
            try:
                records.append(Record.from_dict(item))
            except TypeError as exc:
                raise TrimbertError(f"invalid trimbert record in {path}: {exc}") from None
    return records


def _deduplicate(records: list[Record]) -> list[Record]:
    """Keep one record per (kind, variant, task, seed): the latest, at the first one's position."""
    kept: dict[tuple[Any, ...], Record] = {}
    for record in records:
        key = (record.kind, record.variant, record.task, record.seed)
        if key not in kept or _date(record) >= _date(kept[key]):
            kept[key] = record
    return list(kept.values())


def _date(record: Record) -> str:
    return str((record.conditions or {}).get("date") or "")
