import json

import pytest
import torch
from conftest import write_sst2

import trimbert
from trimbert.errors import TrimbertError
from trimbert.train import DataSource, FinetuneSettings, evaluate, finetune

FAST = dict(epochs=6, lr=2e-3, batch_size=8, max_length=32, seed=7, warmup_ratio=0.0)


def test_finetune_writes_a_reloadable_trimmed_run(tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2")
    out = tmp_path / "run"
    record = finetune(
        str(tiny_checkpoint),
        DataSource(task="sst2", data_dir=str(data)),
        out,
        settings=FinetuneSettings(**FAST),
        drop_ffn="1",
        attention="relu",
        progress=False,
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["kind"] == "finetune" and saved["task"] == "sst2"
    assert saved["trim"]["drop_ffn"] == [1] and saved["trim"]["attention"] == "relu"
    assert saved["main_metric"] == "accuracy"
    assert set(saved["metrics"]) == {"accuracy"}
    assert saved["extra"]["train_rows"] == 64 and saved["extra"]["eval_rows"] == {"validation": 24}
    for key in (
        "train_time_s",
        "train_samples_per_s",
        "eval_time_s",
        "params",
        "disk_bytes",
        "flops_per_seq",
    ):
        assert saved[key] > 0, key
    for key in ("torch", "transformers", "device", "threads", "seed", "git_commit", "date"):
        assert key in saved["conditions"], key
    assert saved["conditions"]["seed"] == 7
    # The easy signal is learned (chance is 0.5 on these 24 balanced rows).
    assert record.metrics["accuracy"] >= 0.75
    model = trimbert.load(out)
    assert type(model).__name__ == "TrimBertForSequenceClassification"
    assert model.config.spec.drop_ffn == (1,)
    assert model.config.id2label == {0: "negative", 1: "positive"} or model.config.num_labels == 2
    again = evaluate(
        str(out),
        DataSource(task="sst2", data_dir=str(data)),
        settings=FinetuneSettings(max_length=32),
        progress=False,
    )
    assert again["metrics"] == record.metrics
    assert (out / "tokenizer.json").is_file()


def test_same_seed_same_metrics(tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2")
    settings = FinetuneSettings(**{**FAST, "epochs": 1, "lr": 2e-4})
    runs = [
        finetune(
            str(tiny_checkpoint),
            DataSource(task="sst2", data_dir=str(data)),
            tmp_path / f"run{i}",
            settings=settings,
            progress=False,
        )
        for i in range(2)
    ]
    assert runs[0].metrics == runs[1].metrics
    assert runs[0].extra["train_loss"] == runs[1].extra["train_loss"]
    first = trimbert.load(tmp_path / "run0")
    second = trimbert.load(tmp_path / "run1")
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_user_csv_with_string_labels(tiny_checkpoint, tmp_path):
    rows = ["text,label"] + [
        f"{'great fun' if i % 3 else 'awful bore'} {i},{'pos' if i % 3 else 'neg'}" for i in range(30)
    ]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "reviews_dev.csv").write_text("\n".join(rows[:10]) + "\n")
    record = finetune(
        str(tiny_checkpoint),
        DataSource(
            train=str(tmp_path / "reviews.csv"),
            validation=str(tmp_path / "reviews_dev.csv"),
            text_column="text",
            label_column="label",
        ),
        tmp_path / "run",
        settings=FinetuneSettings(**FAST),
        progress=False,
    )
    assert record.task == "reviews"
    model = trimbert.load(tmp_path / "run")
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert set(record.metrics) == {"accuracy", "f1"}
    result = evaluate(
        str(tmp_path / "run"),
        DataSource(**record.extra["data"]),
        settings=FinetuneSettings(max_length=32),
        progress=False,
    )
    assert result["metrics"] == record.metrics


def test_regression_head_for_stsb(tiny_checkpoint, tmp_path):
    folder = tmp_path / "STS-B"
    folder.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    lines = [header] + [
        f"{i}\tmain-news\tx\t2012\t{i}\tnone\tnone\ta cat sits {i}\ta cat {'sits' if i % 2 else 'runs'}\t{(i % 6) * 0.8:.3f}"
        for i in range(20)
    ]
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("\n".join(lines) + "\n")
    record = finetune(
        str(tiny_checkpoint),
        DataSource(task="stsb", data_dir=str(folder)),
        tmp_path / "run",
        settings=FinetuneSettings(**FAST),
        progress=False,
    )
    assert set(record.metrics) == {"pearson", "spearmanr"}
    model = trimbert.load(tmp_path / "run")
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"


def test_max_length_beyond_positions_fails_before_training(tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2")
    with pytest.raises(TrimbertError, match="exceeds"):
        finetune(
            str(tiny_checkpoint),
            DataSource(task="sst2", data_dir=str(data)),
            tmp_path / "run",
            settings=FinetuneSettings(max_length=129),
            progress=False,
        )
    assert not (tmp_path / "run").exists()


def test_minilm_learns_real_sst2(glue_dir, tmp_path):
    """The bundled MiniLM on real SST-2 (small budget): well above chance, untrimmed and FFN-trimmed."""
    settings = FinetuneSettings(
        epochs=1, lr=1e-4, batch_size=32, max_length=64, max_train_samples=1200, max_eval_samples=400
    )
    source = DataSource(task="sst2", data_dir=str(glue_dir / "SST-2"))
    base = finetune("minilm", source, tmp_path / "base", settings=settings, progress=False)
    trimmed = finetune(
        "minilm", source, tmp_path / "trim", settings=settings, drop_ffn="alternate", progress=False
    )
    assert base.metrics["accuracy"] >= 0.75, base.metrics
    assert trimmed.metrics["accuracy"] >= 0.72, trimmed.metrics
    assert trimmed.params == base.params - 3 * 1_182_336
