"""The report's CSV and JSON files: write them and read them back (round trip).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trimbert.errors import TrimbertError
from trimbert.report.aggregate import ReportRow, ReportTable
from trimbert.report.columns import columns

# --------------------------------------------------------------------------------------------------
# CSV and JSON round trip

_ROW_FIELDS = {f.name: f for f in dataclasses.fields(ReportRow)}
# Optional text fields read back an empty cell as None; other non-text cells hold JSON values.
_TEXT_FIELDS = {name for name, f in _ROW_FIELDS.items() if str(f.type).startswith("str")}


def _csv_header(metric_names: Sequence[str]) -> list[str]:
    return [name for column in columns(metric_names) for name in column.fields]


def _csv_cell(row: ReportRow, name: str) -> str:
    if name.startswith(("metric:", "metric_std:")):
        prefix, metric = name.split(":", 1)
        value = (row.metrics if prefix == "metric" else row.metrics_std).get(metric)
    else:
        value = getattr(row, name)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def csv_text(table: ReportTable) -> str:
    header = _csv_header(table.metric_names)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_csv_cell(row, name) for name in header] for row in table.rows)
    return buffer.getvalue()


def _row_from_csv(cells: dict[str, str]) -> ReportRow:
    values: dict[str, Any] = {"metrics": {}, "metrics_std": {}}
    for name, cell in cells.items():
        if name.startswith(("metric:", "metric_std:")):
            prefix, metric = name.split(":", 1)
            if cell:
                values["metrics" if prefix == "metric" else "metrics_std"][metric] = json.loads(cell)
        elif name in _TEXT_FIELDS:
            values[name] = cell if cell or _ROW_FIELDS[name].type == "str" else None
        elif name in _ROW_FIELDS:
            values[name] = json.loads(cell) if cell else None
    return ReportRow(**values)


def load_results_csv(path: str | Path) -> list[ReportRow]:
    """Read the rows of a report's ``results.csv`` back (without ``paired_vs``, the ratios against every
    runtime of the untrimmed model: those are in ``results.json`` only)."""
    try:
        with open(path, newline="") as handle:
            return [_row_from_csv(cells) for cells in csv.DictReader(handle)]
    except OSError as exc:
        raise TrimbertError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise TrimbertError(f"{path} is not a trimbert results.csv: {exc}") from None


def load_results_json(path: str | Path) -> list[ReportRow]:
    """Read the rows of a report's ``results.json`` back."""
    try:
        rows = [ReportRow(**item) for item in json.loads(Path(path).read_text())]
        for row in rows:
            row.paired_vs = {reference: tuple(ratio) for reference, ratio in row.paired_vs.items()}
        return rows
    except OSError as exc:
        raise TrimbertError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise TrimbertError(f"{path} is not a trimbert results.json: {exc}") from None
