"""A recipe variant may prune attention heads (``heads = 8`` or ``heads = "0:4,3:8"``): resolved against
the model when the recipe is read, refused in one line naming the key, and passed on to the fine-tune;
a search table may search head counts (``heads_choices``)."""

import pytest
from conftest import write_sst2
from transformers import BertConfig

import trimbert.sweep.run
from trimbert.errors import TrimbertError
from trimbert.search.settings import SearchSettings
from trimbert.spec import TrimRequest
from trimbert.sweep.recipe import load_recipe
from trimbert.sweep.run import run_sweep

FINETUNE = 'epochs = 1\nlr = 1e-3\nbatch_size = 16\nmax_length = 16\nseed = 7\nwarmup_ratio = 0.0'
BENCH = 'batch_size = 2\nseq_len = 16\nrepeats = 2\nwarmup = 1\nthreads = 1\ndevice = "cpu"\nmax_seconds = 0.001'


def _recipe(tmp_path, variant: str, model: str = "bert-base-uncased") -> str:
    data = write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=8)
    path = tmp_path / "r.toml"
    path.write_text(
        f'[model]\nsource = "{model}"\n[data]\ntask = "sst2"\ndata_dir = "{data}"\n[finetune]\n{FINETUNE}\n[bench]\n{BENCH}\n'
        f'[[variants]]\nname = "baseline"\n[[variants]]\nname = "v"\n{variant}\n'
    )
    return path


@pytest.mark.parametrize(
    ("text", "request_heads", "heads"),
    [
        ("heads = 8", "8", dict.fromkeys(range(12), 8)),
        ('heads = "0:4,3:8"', "0:4,3:8", {0: 4, 3: 8}),
        ('heads = "6"\ndrop_layers = "10-11"', "6", dict.fromkeys(range(10), 6)),  # dropped blocks keep no heads
    ],
)
def test_a_variant_prunes_heads(tmp_path, text, request_heads, heads):
    variant = load_recipe(_recipe(tmp_path, text), config=BertConfig()).variant("v")
    assert variant.trim.heads == request_heads
    assert variant.spec.head_counts == heads


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("heads = 12", "block 0 keeps 12 heads: must be fewer than the number of attention heads (12) (variant 'v')"),
        ('heads = "0:0"', "block 0 must keep at least one head (got 0) (variant 'v')"),
        ('heads = "12:4"', "block index 12 out of range for a 12-block model (variant 'v')"),
        ("heads = true", 'expected a string in the CLI syntax (e.g. "alternate"), got a boolean'),
    ],
)
def test_a_bad_head_count_names_the_key(tmp_path, text, problem):
    path = _recipe(tmp_path, text)
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path, config=BertConfig())
    assert str(raised.value) == f"{path}: variants[1].heads: {problem}"


def test_the_heads_reach_the_fine_tune(tmp_path, tiny_checkpoint, monkeypatch):
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(trimbert.sweep.run, "finetune", fake)
    path = _recipe(tmp_path, 'heads = "0:2,1=0+3"', model=str(tiny_checkpoint))
    result = run_sweep(path, tmp_path / "sweep", only=["v"])
    assert result.failed == ["v-seed7"]
    assert seen["request"] == TrimRequest(heads="0:2,1=0+3")


def test_a_search_table_may_search_head_counts(tmp_path):
    path = _recipe(tmp_path, 'search = { speedup = 1.2, heads_choices = "6,9" }')
    # resolved: every search setting spelled out (what the search folder is keyed by)
    assert load_recipe(path, config=BertConfig()).variant("v").search == SearchSettings(speedup=1.2, heads_choices="6,9").to_dict()
    path = _recipe(tmp_path, 'search = { speedup = 1.2, heads_choices = "six" }')
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path, config=BertConfig())
    assert str(raised.value) == (
        f"{path}: variants[1].search.heads_choices: 'six' is not a head count (a whole number of heads, at least 1), got 'six'"
    )
