"""Users' files: labels of mixed kinds are refused unless named; long CSV cells are read whole."""

import json
import re

import pytest

from trimbert.data.files import load_user_data
from trimbert.errors import TrimbertError


def _jsonl(path, labels):
    path.write_text("".join(json.dumps({"text": f"row {i}", "label": label}) + "\n" for i, label in enumerate(labels)))
    return path


def _csv(path, labels):
    path.write_text("text,label\n" + "".join(f"row {i},{label}\n" for i, label in enumerate(labels)))
    return path


@pytest.mark.parametrize(
    ("writer", "labels", "message"),
    [
        (_jsonl, [1, "1", 0, 1], "labels mix JSON numbers (1), numbers written as text ('1')"),
        (_csv, ["1", "pos", "0", "neg", "2.5"], "labels mix numbers written as text ('1'), names ('pos')"),
        (_jsonl, [True, "yes", True, "no"], "labels mix true/false (True), names ('yes')"),
    ],
)
def test_labels_of_mixed_kinds_are_refused(tmp_path, writer, labels, message):
    path = writer(tmp_path / ("data.jsonl" if writer is _jsonl else "data.csv"), labels)
    with pytest.raises(TrimbertError, match=re.escape(message) + ".*--label-names"):
        load_user_data(path, text_column="text", label_column="label")


def test_label_names_say_what_mixed_labels_mean(tmp_path):
    path = _jsonl(tmp_path / "data.jsonl", [1, "1", 0, "0", 1.0, 0])
    data, task = load_user_data(
        path, path, text_column="text", label_column="label", label_names="0,1"
    )
    assert task.label_names == ("0", "1")
    assert data["train"]["label"] == [1, 1, 0, 0, 1, 0]
    with pytest.raises(TrimbertError, match=r"line 5: label 'pos' is not one of --label-names \(0, 1\)"):
        load_user_data(
            _jsonl(tmp_path / "bad.jsonl", [0, 1, 0, 1, "pos"]), text_column="text", label_column="label", label_names="0,1"
        )
    with pytest.raises(TrimbertError, match=r"--label-names: give at least two distinct names"):
        load_user_data(path, text_column="text", label_column="label", label_names="a,a")


def test_csv_cells_longer_than_the_csv_module_default_are_read(tmp_path):
    long_text = "word " * 40_000  # 200,000 characters > csv's default limit of 131,072
    path = tmp_path / "long.csv"
    path.write_text(f'text,label\n"{long_text}",pos\nshort,neg\n')
    data, _ = load_user_data(path, path, text_column="text", label_column="label")
    assert data["train"]["text_a"][0] == long_text
