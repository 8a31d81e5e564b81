"""Recipe keys are the declared-once settings: the same validation as the CLI, errors naming the file
and the key path."""

import re

import pytest
from conftest import write_sst2
from transformers import BertConfig

from trimbert.errors import TrimbertError
from trimbert.spec import TrimRequest
from trimbert.sweep.recipe import load_recipe


def _recipe(tmp_path, finetune: str = "", bench: str = "", variant: str = "") -> str:
    data = write_sst2(tmp_path / "SST-2")
    path = tmp_path / "r.toml"
    path.write_text(
        f'[model]\nsource = "bert-base-uncased"\n[data]\ntask = "sst2"\ndata_dir = "{data}"\n'
        f"[finetune]\n{finetune}\n[bench]\n{bench}\n"
        f'[[variants]]\nname = "baseline"\n[[variants]]\nname = "v"\ndrop_ffn = "1"\n{variant}\n'
    )
    return path


@pytest.mark.parametrize(
    ("section", "text", "message"),
    [
        ("finetune", "epochs = inf", "finetune.epochs: must be a finite number, got inf"),
        ("finetune", "lr = nan", "finetune.lr: must be a finite number, got nan"),
        ("finetune", "lr = -1", "finetune.lr: must be greater than 0.0, got -1"),
        ("finetune", 'epochs = "3"', "finetune.epochs: expected a number, got '3'"),
        ("finetune", "epoch = 3", "finetune.epoch: unknown key (known: epochs, lr,"),
        ("bench", "repeats = 0", "bench.repeats: must be at least 1, got 0"),
        ("bench", 'mode = "fast"', "bench.mode: expected 'infer' or 'train', got 'fast'"),
        ("variant", "finetune = { warmup_ratio = 1.0 }", "variants[1].finetune.warmup_ratio: must be less than 1.0"),
        ("variant", 'teacher = "baseline"\ndistill = { temperature = nan }', "variants[1].distill.temperature: must be a finite"),
    ],
)
def test_bad_settings_in_a_recipe_name_the_file_and_key(tmp_path, section, text, message):
    path = _recipe(tmp_path, **{section: text})
    with pytest.raises(TrimbertError, match=re.escape(f"{path}: {message}")):
        load_recipe(path, config=BertConfig())


def test_a_good_recipe_carries_one_request_per_variant(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, finetune="epochs = 2", variant='attention = "relu"'), config=BertConfig())
    assert recipe.finetune.epochs == 2.0
    assert recipe.variant("v").trim == TrimRequest(drop_ffn="1", attention="relu")
    assert recipe.variant("baseline").trim == TrimRequest()
