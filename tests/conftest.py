"""Shared fixtures. Everything runs offline: the Hub is never contacted."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import copy  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

import trimbert  # noqa: E402
from trimbert.model.checkpoint import bundled_model_path  # noqa: E402

GLUE_DIR = Path(__file__).resolve().parents[2] / "shared" / "glue"


def tiny_config(**overrides) -> BertConfig:
    values = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    values.update(overrides)
    return BertConfig(**values)


@pytest.fixture
def tiny_model():
    """A 4-block random BERT classifier (3 labels), in eval mode, seeded."""
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config(num_labels=3)).eval()


def make_tiny_batch() -> dict[str, torch.Tensor]:
    """Three rows of 10 random ids for the tiny models, two of them padded (seeded)."""
    torch.manual_seed(1)
    input_ids = torch.randint(5, 100, (3, 10))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    attention_mask[2, 4:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.fixture
def tiny_batch():
    return make_tiny_batch()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return bundled_model_path()


@pytest.fixture(scope="session")
def _minilm_session(minilm_dir):
    return trimbert.load(minilm_dir)


@pytest.fixture
def minilm(_minilm_session):
    """A private copy of the bundled MiniLM (BertModel), eval mode."""
    return copy.deepcopy(_minilm_session)


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: returns (exit_code, stdout, stderr)."""
    from trimbert.cli import main

    def run(*args: str):
        capsys.readouterr()
        try:
            main([str(arg) for arg in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def glue_dir() -> Path:
    if not GLUE_DIR.is_dir():
        pytest.skip(f"GLUE data not found at {GLUE_DIR} (the shared/glue folder beside the repo)")
    return GLUE_DIR


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, minilm_dir) -> Path:
    """A tiny random BERT (2 blocks, hidden 32) saved with the bundled MiniLM tokenizer."""
    from transformers import BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-bert"
    model = BertModel(tiny_config(vocab_size=30522, num_hidden_layers=2, max_position_embeddings=128))
    trimbert.save(model, path, tokenizer=trimbert.load_tokenizer(minilm_dir))
    return path


def write_sst2(folder: Path, train_rows: int = 64, dev_rows: int = 24) -> Path:
    """An SST-2 task folder in the real format, with an easily learnable signal."""
    folder.mkdir(parents=True, exist_ok=True)
    good = [
        "a wonderful , moving film",
        "great acting and a lovely story",
        "truly delightful",
        "superb and warm",
    ]
    bad = ["a dull , boring mess", "terrible acting and an awful plot", "painfully bad", "tedious and ugly"]
    for name, count in (("train.tsv", train_rows), ("dev.tsv", dev_rows)):
        lines = ["sentence\tlabel"]
        for index in range(count):
            label = index % 2
            text = (good if label else bad)[index // 2 % 4]
            lines.append(f"{text} \t{label}")
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder
