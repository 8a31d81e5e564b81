"""The search space: genes and specs convert both ways, sampling and variation stay inside the space."""

import random

import pytest

from trimbert.errors import TrimbertError
from trimbert.search.space import Block, SearchSpace, fixed_patterns
from trimbert.spec import TrimSpec

SPACE = SearchSpace(6, 1536, widths=(768, 1152, 384), normalizers=("softmax", "relu"), max_drop_layers=2)


def test_genes_make_the_spec_they_say():
    blocks = [
        Block(),
        Block(ffn=0, strip_attn=True, strip_ffn=True),  # a dropped FFN has no FFN LayerNorm to strip
        Block(present=False),
        Block(ffn=768, strip_ffn=True),
        Block(ffn=1536, strip_attn=True),
        Block(ffn=384),
    ]
    spec = SPACE.spec(blocks, "relu")
    assert spec == TrimSpec(
        drop_ffn=(1,), attention="relu", layernorm=("1.attn", "3.ffn", "4.attn"), drop_layers=(2,), ffn_width={3: 768, 5: 384}
    )
    genes, attention = SPACE.genes(spec)
    assert SPACE.spec(genes, attention) == spec
    assert SPACE.widths == (1152, 768, 384)
    assert SPACE.ffn_choices() == (1536, 1152, 768, 384, 0)


def test_random_specs_mutations_and_crosses_stay_in_the_space():
    rng = random.Random(0)
    specs = [SPACE.random_spec(rng) for _ in range(200)]
    specs += [SPACE.mutate(spec, rng, 0.5) for spec in specs]
    specs += [SPACE.crossover(a, b, rng) for a, b in zip(specs, reversed(specs), strict=True)]
    assert all(SPACE.contains(spec) for spec in specs)
    assert max(len(spec.drop_layers) for spec in specs) == 2
    assert {spec.attention for spec in specs} == {"softmax", "relu"}
    assert len(set(specs)) > 500


def test_contains_refuses_what_the_search_cannot_make():
    assert not SPACE.contains(TrimSpec(attention="sigmoid"))
    assert not SPACE.contains(TrimSpec(drop_layers=(0, 1, 2)))
    assert not SPACE.contains(TrimSpec(ffn_width={0: 1000}))
    assert not SPACE.contains(TrimSpec(layernorm=("0.attn",), layernorm_replacement="affine"))
    assert SPACE.contains(TrimSpec(ffn_width={0: 768}, drop_layers=(5,)))


def test_fixed_patterns():
    patterns = fixed_patterns(SearchSpace(4, 64, widths=(32,), max_drop_layers=1))
    assert patterns == {
        "drop-ffn first:1": TrimSpec(drop_ffn=(0,)),
        "drop-ffn last:1": TrimSpec(drop_ffn=(3,)),
        "drop-ffn first:2": TrimSpec(drop_ffn=(0, 1)),
        "drop-ffn last:2": TrimSpec(drop_ffn=(2, 3)),
        "drop-ffn first:3": TrimSpec(drop_ffn=(0, 1, 2)),
        "drop-ffn last:3": TrimSpec(drop_ffn=(1, 2, 3)),
        "drop-ffn alternate": TrimSpec(drop_ffn=(1, 3)),
        "ffn-width 32": TrimSpec(ffn_width={0: 32, 1: 32, 2: 32, 3: 32}),
        "drop-layers last:1": TrimSpec(drop_layers=(3,)),
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"widths": (1536,)}, "--widths: 1536 is not a narrower FFN width"),
        ({"normalizers": ("softmax", "tanh")}, "unknown normalizer 'tanh'"),
        ({"max_drop_layers": 6}, "--max-drop-layers: 6 is not between 0 and 5"),
    ],
)
def test_bad_spaces_are_one_line(kwargs, message):
    with pytest.raises(TrimbertError, match=message):
        SearchSpace(6, 1536, **kwargs)
