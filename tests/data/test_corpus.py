"""The unlabeled corpus reader: every source format, deduplication, shuffling, refusals."""

import json

import pytest
from conftest import write_sst2

from trimbert.data.corpus import corpus_fingerprint, read_corpus
from trimbert.errors import TrimbertError


def test_text_file_one_text_per_line_without_empty_lines_or_repeats(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("first text\n\n  second text  \nfirst text\nthird\n", encoding="utf-8")
    assert sorted(read_corpus(path)) == ["first text", "second text", "third"]


def test_tables_need_their_text_column(tmp_path):
    csv_file = tmp_path / "c.csv"
    csv_file.write_text('id,body\n1,"a, quoted text"\n2,plain\n', encoding="utf-8")
    assert sorted(read_corpus(csv_file, text_column="body")) == ["a, quoted text", "plain"]
    tsv = tmp_path / "c.tsv"
    tsv.write_text('body\tx\n"not quoted"\t1\n', encoding="utf-8")
    assert read_corpus(tsv, text_column="body") == ['"not quoted"']
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in ("one", "two")) + "\n", encoding="utf-8")
    assert sorted(read_corpus(jsonl, text_column="text")) == ["one", "two"]
    with pytest.raises(TrimbertError, match=r"c\.csv is a table: say which column holds the text \(--text-column\)"):
        read_corpus(csv_file)
    with pytest.raises(TrimbertError, match=r"c\.csv has no column 'text'; its columns are: id, body"):
        read_corpus(csv_file, text_column="text")


def test_a_glue_folder_gives_every_text_of_every_training_file(tmp_path):
    write_sst2(tmp_path / "SST-2", train_rows=8, dev_rows=4)  # 8 distinct sentences among them
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\na dev sentence \t1\n", encoding="utf-8")
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\tA premise.\tA hypothesis.\tentailment\n", encoding="utf-8"
    )
    texts = read_corpus(tmp_path)
    assert len(texts) == 8 + 2 and {"A premise.", "A hypothesis.", "truly delightful"} <= set(texts)
    assert "a dev sentence" not in texts  # dev texts are what a healed model is evaluated on
    assert len(read_corpus(tmp_path / "SST-2")) == 8  # one task folder alone
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrimbertError, match="holds no GLUE task files"):
        read_corpus(tmp_path / "empty")


def test_shuffle_and_cut_are_seeded(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n".join(f"text {i}" for i in range(50)), encoding="utf-8")
    first = read_corpus(path, seed=1)
    assert first == read_corpus(path, seed=1) and first != read_corpus(path, seed=2)
    assert sorted(first) == sorted(f"text {i}" for i in range(50))
    assert read_corpus(path, seed=1, max_texts=5) == first[:5]
    assert corpus_fingerprint(first) != corpus_fingerprint(first[::-1])


def test_empty_or_missing_corpora_are_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(TrimbertError, match=r"empty\.txt holds no text"):
        read_corpus(empty)
    with pytest.raises(TrimbertError, match=r"corpus .*nope\.txt does not exist"):
        read_corpus(tmp_path / "nope.txt")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(TrimbertError, match=r"b\.txt is not UTF-8 text"):
        read_corpus(binary)


def test_hub_corpus_offline_is_one_error():
    with pytest.raises(TrimbertError, match="could not load the corpus 'wikitext' from the Hub"):
        read_corpus("wikitext", config="wikitext-2-raw-v1")
