"""Hostile data files: a missing-value label is refused by its line, a long corpus cell is read."""

import json

import pytest

from trimbert.data.corpus import read_corpus
from trimbert.data.files import load_user_data
from trimbert.errors import TrimbertError

LONG = "word " * 60_000  # 300 KB: more than the csv module's default field limit (131,072 characters)


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t")])
def test_the_corpus_reader_takes_a_cell_longer_than_the_csv_field_limit(tmp_path, suffix, delimiter):
    path = tmp_path / f"corpus{suffix}"
    path.write_text(f"id{delimiter}text\n1{delimiter}{LONG}\n2{delimiter}a short text\n", encoding="utf-8")
    texts = read_corpus(path, text_column="text")
    assert sorted(len(text) for text in texts) == [len("a short text"), len(LONG.strip())]


def _jsonl(path, labels):
    path.write_text("".join(json.dumps({"text": f"text {i}", "label": label}) + "\n" for i, label in enumerate(labels)))
    return path


@pytest.mark.parametrize(
    "label, shown",
    [(float("nan"), "nan"), (float("inf"), "inf"), ("NaN", "'NaN'"), ("nan", "'nan'")],
)
def test_a_nan_label_in_jsonl_is_refused_by_its_line(tmp_path, label, shown):
    path = _jsonl(tmp_path / "train.jsonl", [0, 1, 0, label, 1])
    with pytest.raises(TrimbertError) as raised:
        load_user_data(path, text_column="text", label_column="label")
    assert str(raised.value) == f"{path} line 4: label {shown} in column 'label' is not a value (NaN or infinity)"


def test_a_nan_label_in_csv_or_the_validation_file_is_refused(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,pos\nb,neg\nc,NaN\n")
    with pytest.raises(TrimbertError) as raised:
        load_user_data(train, text_column="text", label_column="label")
    assert str(raised.value) == f"{train} line 4: label 'NaN' in column 'label' is not a value (NaN or infinity)"
    good = _jsonl(tmp_path / "good.jsonl", [0.5, 1.5, 2.5])
    validation = _jsonl(tmp_path / "dev.jsonl", [0.5, float("nan")])
    with pytest.raises(TrimbertError) as raised:
        load_user_data(good, validation, text_column="text", label_column="label", task_type="regression")
    assert str(raised.value) == f"{validation} line 2: label nan in column 'label' is not a value (NaN or infinity)"


def test_null_and_empty_labels_stay_refused_and_true_labels_load(tmp_path):
    path = _jsonl(tmp_path / "null.jsonl", [0, None, 1])
    with pytest.raises(TrimbertError) as raised:
        load_user_data(path, text_column="text", label_column="label")
    assert str(raised.value) == f"{path} line 2: no value in column 'label'"
    path = _jsonl(tmp_path / "empty.jsonl", [0, " ", 1])
    with pytest.raises(TrimbertError) as raised:
        load_user_data(path, text_column="text", label_column="label")
    assert str(raised.value) == f"{path} line 2: empty label in column 'label'"
    data, task = load_user_data(_jsonl(tmp_path / "ok.jsonl", ["neg", "pos"] * 5), text_column="text", label_column="label")
    assert task.label_names == ("neg", "pos") and len(data["train"]) + len(data["validation"]) == 10


def test_finetune_refuses_a_nan_label_in_one_line(run_cli, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n{"text": "c", "label": NaN}\n')
    code, stdout, err = run_cli(
        "finetune", "minilm", "--train", path, "--text-column", "text", "--label-column", "label", "--out", tmp_path / "run"
    )
    assert code == 2 and stdout == ""
    assert err.strip().splitlines() == [
        f"error: {path} line 3: label nan in column 'label' is not a value (NaN or infinity)"
    ]
    assert not (tmp_path / "run").exists()
