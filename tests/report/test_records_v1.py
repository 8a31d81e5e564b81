"""Version-1 records (written by trimbert before the typed schema, kept in tests/fixtures/records-v1)
load, upgrade to the exact typed values, and report exactly as they did when they were written."""

import dataclasses
import json
from pathlib import Path

import pytest

from trimbert.report.aggregate import build_rows
from trimbert.report.collect import collect_records
from trimbert.report.records import SCHEMA_VERSION, Record
from trimbert.report.render import render_markdown
from trimbert.report.tables import csv_text

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "records-v1"
FOLDERS = ("bench", "sweep-runtimes", "sweep-heal", "sweep-search", "finetune")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name", FOLDERS)
def test_a_version_1_folder_reports_what_it_reported_before(name):
    table = build_rows(collect_records([V1 / name]))

    assert render_markdown(table) == (V1 / "expected" / f"{name}.md").read_text()
    assert csv_text(table) == (V1 / "expected" / f"{name}.csv").read_text()
    rows = json.loads(json.dumps([dataclasses.asdict(row) for row in table.rows], sort_keys=True))
    assert rows == json.loads((V1 / "expected" / f"{name}.json").read_text())


@pytest.mark.parametrize("name", FOLDERS)
def test_an_upgraded_record_written_again_reads_back_the_same(name):
    for record in collect_records([V1 / name]):
        again = Record.from_dict(json.loads(json.dumps(record.to_dict())))
        assert again == record and again.schema_version == SCHEMA_VERSION == 2
        assert again.extra == {}  # every version-1 key has its typed place
