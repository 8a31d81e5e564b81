"""Teachers that cannot teach are refused before any work: heal and distillation, library and CLI."""

import shutil

import pytest
import torch
from conftest import tiny_config, write_sst2
from transformers import BertForSequenceClassification, BertModel

import trimbert
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.train.finetune import finetune
from trimbert.train.heal import heal
from trimbert.train.settings import FinetuneSettings, HealSettings

FAST = HealSettings(steps=2, batch_size=4, held_out=4, max_length=16)


@pytest.fixture
def trimmed(tmp_path, tiny_checkpoint):
    return trimbert.save(trimbert.trim(trimbert.load(tiny_checkpoint), drop_ffn="1"), tmp_path / "trimmed")


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"text number {i} of the corpus\n" for i in range(20)))
    return path


def _heal_error(trimmed, teacher, corpus, out, settings=FAST) -> str:
    with pytest.raises(TrimbertError) as raised:
        heal(str(trimmed), str(teacher), str(corpus), out, settings=settings, progress=False)
    assert not out.exists()
    return str(raised.value)


def test_heal_refuses_a_teacher_trimmed_exactly_like_the_student(tmp_path, trimmed, corpus):
    assert _heal_error(trimmed, trimmed, corpus, tmp_path / "out") == (
        f"heal: the teacher {trimmed} is trimmed exactly like {trimmed} (ffn-[1]): nothing to heal towards; "
        "give the untrimmed model it was trimmed from"
    )
    copy = shutil.copytree(trimmed, tmp_path / "copy")
    assert _heal_error(trimmed, copy, corpus, tmp_path / "out") == (
        f"heal: the teacher {copy} is trimmed exactly like {trimmed} (ffn-[1]): nothing to heal towards; "
        "give the untrimmed model it was trimmed from"
    )


def test_heal_accepts_a_teacher_trimmed_less(tmp_path, tiny_checkpoint, corpus):
    """A teacher trimmed less than the student (its FFN 1 dropped, not its softmax) still has something to teach."""
    tokenizer = trimbert.load_tokenizer(tiny_checkpoint)
    base = trimbert.load(tiny_checkpoint)
    student = trimbert.save(trimbert.trim(base, drop_ffn="1", attention="relu"), tmp_path / "student", tokenizer=tokenizer)
    teacher = trimbert.save(trimbert.trim(trimbert.load(tiny_checkpoint), drop_ffn="1"), tmp_path / "teacher")
    record = heal(str(student), str(teacher), str(corpus), tmp_path / "out", settings=FAST, progress=False)
    assert record.heal.loss_before > 0 and (tmp_path / "out" / "heal.json").is_file()


def test_heal_refuses_a_teacher_of_another_vocabulary_or_tokenizer(tmp_path, trimmed, corpus, minilm_dir):
    torch.manual_seed(0)
    small = BertModel(tiny_config(vocab_size=1000, num_hidden_layers=2, max_position_embeddings=128))
    trimbert.save(small, tmp_path / "vocab1000")
    assert _heal_error(trimmed, tmp_path / "vocab1000", corpus, tmp_path / "out") == (
        "heal: vocabulary sizes differ (trimmed 30522, teacher 1000); the teacher must use the same tokenizer"
    )
    other = trimbert.load_tokenizer(minilm_dir)
    other.add_tokens(["zzqqx"])  # the same vocabulary size in config.json, another tokenizer
    trimbert.save(_tiny_base(), tmp_path / "othertok", tokenizer=other)
    student = trimbert.save(
        trimbert.trim(_tiny_base(), drop_ffn="1"), tmp_path / "student", tokenizer=trimbert.load_tokenizer(minilm_dir)
    )
    assert _heal_error(student, tmp_path / "othertok", corpus, tmp_path / "out") == (
        "heal: the teacher uses a different tokenizer (vocabulary) than the trimmed"
    )
    short = BertModel(tiny_config(vocab_size=30522, num_hidden_layers=2, max_position_embeddings=8))
    trimbert.save(short, tmp_path / "short")
    assert _heal_error(trimmed, tmp_path / "short", corpus, tmp_path / "out") == (
        "sequence length 16 exceeds the model's max_position_embeddings 8"
    )


def _tiny_base():
    torch.manual_seed(0)
    return BertModel(tiny_config(vocab_size=30522, num_hidden_layers=2, max_position_embeddings=128))


def test_heal_steps_and_tokens_are_one_or_the_other(run_cli, tmp_path, trimmed, tiny_checkpoint, corpus):
    assert HealSettings().steps == 300 and HealSettings(tokens=10).steps is None
    with pytest.raises(TrimbertError) as raised:
        HealSettings(steps=5, tokens=10)
    assert str(raised.value) == "--tokens: a token budget sets the steps: give steps or tokens, not both, got 10"
    args = ("heal", trimmed, "--teacher", tiny_checkpoint, "--corpus", corpus, "--out", tmp_path / "out")
    code, stdout, err = run_cli(*args, "--steps", "5", "--tokens", "10")
    assert code == 2 and stdout == ""
    assert err.strip().splitlines() == ["error: --tokens: a token budget sets the steps: give steps or tokens, not both, got 10"]
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli(
        "search", "minilm", "--task", "sst2", "--speedup", "1.3", "--heal-steps", "5", "--heal-tokens", "10",
        "--out", tmp_path / "search",
    )
    assert code == 2
    assert err.strip().splitlines() == [
        "error: --heal-tokens: a token budget sets the steps: give steps or tokens, not both, got 10"
    ]
    assert not (tmp_path / "search").exists()


def _classifier(path, *, vocab_size=30522, hidden_size=32, tokenizer=None):
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=2, max_position_embeddings=128, num_labels=2
    )
    return trimbert.save(BertForSequenceClassification(config), path, tokenizer=tokenizer)


def test_distillation_refuses_a_teacher_of_another_vocabulary_tokenizer_or_hidden_size(
    tmp_path, tiny_checkpoint, minilm_dir
):
    from trimbert.train.settings import DistillSettings

    data = write_sst2(tmp_path / "SST-2", train_rows=8, dev_rows=4)
    other = trimbert.load_tokenizer(minilm_dir)
    other.add_tokens(["zzqqx"])
    cases = [
        (_classifier(tmp_path / "vocab1000", vocab_size=1000), None,
         "vocabulary sizes differ (student 30522, teacher 1000); the teacher must use the same tokenizer"),
        (_classifier(tmp_path / "othertok", tokenizer=other), None,
         "the teacher uses a different tokenizer (vocabulary) than the student"),
        (_classifier(tmp_path / "hidden64", hidden_size=64), DistillSettings(alpha_hidden=1.0),
         "hidden sizes differ (student 32, teacher 64); hidden-state distillation needs them equal: set alpha_hidden to 0"),
    ]
    for teacher, distill, problem in cases:
        with pytest.raises(TrimbertError) as raised:
            finetune(
                str(tiny_checkpoint),
                DataSource(task="sst2", data_dir=str(data)),
                tmp_path / "student",
                settings=FinetuneSettings(epochs=1, batch_size=4, max_length=16),
                teacher=str(teacher),
                distill=distill,
                progress=False,
            )
        assert str(raised.value) == f"--teacher {teacher}: {problem}"
        assert not (tmp_path / "student").exists()
