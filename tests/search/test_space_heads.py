"""Head counts in the search space: genes, sampling and variation, patterns, the checks, and a space
without head choices drawing exactly what it drew before heads could be searched."""

import random

import pytest

from trimbert.errors import TrimbertError
from trimbert.search.settings import SearchSettings
from trimbert.search.space import ALL_HEADS, Block, SearchSpace, fixed_patterns
from trimbert.spec import TrimSpec

SPACE = SearchSpace(6, 1536, widths=(768,), max_drop_layers=1, num_attention_heads=12, heads=(6, 9))


def test_head_genes_make_the_spec_they_say():
    assert SPACE.heads == (9, 6) and SPACE.head_choices() == (ALL_HEADS, 9, 6)
    blocks = [Block(heads=6), Block(ffn=0, heads=9), Block(present=False, heads=6), Block(heads=12), Block(), Block(ffn=768, heads=6)]
    spec = SPACE.spec(blocks)
    # every head (12 or ALL_HEADS) is no entry; a dropped block's heads go with it; a dropped FFN keeps its heads
    assert spec == TrimSpec(drop_ffn=(1,), drop_layers=(2,), ffn_width={5: 768}, heads={0: 6, 1: 9, 5: 6})
    genes, attention = SPACE.genes(spec)
    assert [block.heads for block in genes] == [6, 9, ALL_HEADS, ALL_HEADS, ALL_HEADS, 6]
    assert SPACE.spec(genes, attention) == spec


def test_random_specs_mutations_and_crosses_keep_to_the_head_choices():
    rng = random.Random(0)
    specs = [SPACE.random_spec(rng) for _ in range(200)]
    specs += [SPACE.mutate(spec, rng, 0.5) for spec in specs]
    specs += [SPACE.crossover(a, b, rng) for a, b in zip(specs, reversed(specs), strict=True)]
    assert all(SPACE.contains(spec) for spec in specs)
    assert {count for spec in specs for _, count in spec.heads} == {9, 6}
    assert any(not spec.heads for spec in specs)  # every head stays a choice
    assert all(block not in spec.drop_layers for spec in specs for block, _ in spec.heads)


def test_contains_refuses_head_counts_the_search_cannot_make():
    assert SPACE.contains(TrimSpec(heads={0: 6, 3: 9}))
    assert not SPACE.contains(TrimSpec(heads={0: 4}))
    assert not SearchSpace(6, 1536, widths=(768,)).contains(TrimSpec(heads={0: 6}))


def test_fixed_patterns_prune_every_block_to_each_head_count():
    patterns = fixed_patterns(SearchSpace(4, 64, drop_ffn=False, num_attention_heads=4, heads=(2,)))
    assert patterns == {"heads 2": TrimSpec(heads={0: 2, 1: 2, 2: 2, 3: 2})}


def test_a_space_without_head_choices_draws_what_it_drew_before():
    # the first specs of seed 3, as the space drew them before heads could be searched
    space = SearchSpace(6, 1536, widths=(768, 384), normalizers=("softmax", "relu"), max_drop_layers=2, num_attention_heads=12)
    rng = random.Random(3)
    assert [space.random_spec(rng) for _ in range(3)] == [
        TrimSpec(drop_ffn=(1, 4), layernorm=("2.ffn", "4.attn"), drop_layers=(0, 3), ffn_width={5: 768}),
        TrimSpec(drop_ffn=(3, 4), attention="relu", layernorm=("2.attn", "5.ffn"), ffn_width={0: 768, 1: 384, 2: 384, 5: 768}),
        TrimSpec(layernorm=("0.attn", "1.attn", "2.ffn"), drop_layers=(4, 5), ffn_width={0: 768, 1: 384, 2: 384, 3: 768}),
    ]
    # and its cache fingerprint has no head fields (cached predictors keep their keys)
    assert space.fingerprint() == {
        "num_layers": 6, "intermediate_size": 1536, "widths": (768, 384), "normalizers": ("softmax", "relu"),
        "max_drop_layers": 2, "layernorms": True, "drop_ffn": True,
    }
    assert SPACE.fingerprint()["heads"] == (9, 6) and SPACE.fingerprint()["num_attention_heads"] == 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_attention_heads": 12, "heads": (12,)}, "--heads-choices: 12 is not a smaller head count (1 <= heads < 12)"),
        ({"num_attention_heads": 12, "heads": (0,)}, "--heads-choices: 0 is not a smaller head count (1 <= heads < 12)"),
        ({"heads": (6,)}, "--heads-choices: the model's number of attention heads is needed (at least 2)"),
    ],
)
def test_bad_head_choices_are_one_line(kwargs, message):
    with pytest.raises(TrimbertError) as raised:
        SearchSpace(6, 1536, **kwargs)
    assert str(raised.value) == message


def test_heads_choices_setting():
    assert SearchSettings(speedup=1.5).head_list() == ()
    assert SearchSettings(speedup=1.5, heads_choices="9, 6").head_list() == (9, 6)
    assert SearchSettings.flag("heads_choices") == "--heads-choices"


@pytest.mark.parametrize(
    ("choices", "problem"),
    [
        ("6,x", "'x' is not a head count (a whole number of heads, at least 1)"),
        ("0", "'0' is not a head count (a whole number of heads, at least 1)"),
        ("0.5", "'0.5' is not a head count (a whole number of heads, at least 1)"),
        (" , ", "give at least one head count (e.g. 6,9)"),
    ],
)
def test_bad_heads_choices_are_refused_by_the_settings(choices, problem):
    with pytest.raises(TrimbertError) as raised:
        SearchSettings(speedup=1.5, heads_choices=choices)
    assert str(raised.value) == f"--heads-choices: {problem}, got {choices!r}"
