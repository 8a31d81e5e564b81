"""Property-based: any string given to a trim option either resolves to a valid spec or raises
TrimbertError, never any other exception."""

from hypothesis import given, settings
from hypothesis import strategies as st

from trimbert.errors import TrimbertError
from trimbert.spec import (
    TrimRequest,
    encoder_layernorms,
    ln_sort_key,
    parse_blocks,
    parse_ffn_width,
    parse_heads,
    parse_layernorm,
    resolve_spec,
    validate_spec,
)

# Text made of the characters the syntax uses, plus anything else.
SYNTAX = st.text(alphabet="0123456789,-:.=+ alternatefirstlasnoheffnaut", max_size=20)
ANY = st.one_of(SYNTAX, st.text(max_size=20))
DEPTH = st.integers(min_value=1, max_value=12)


@settings(max_examples=300, deadline=None)
@given(ANY, DEPTH)
def test_block_selections(text, depth):
    try:
        blocks = parse_blocks(text, depth)
    except TrimbertError:
        return
    assert list(blocks) == sorted(set(blocks)) and all(0 <= b < depth for b in blocks)


@settings(max_examples=300, deadline=None)
@given(ANY, DEPTH)
def test_layernorm_selections(text, depth):
    try:
        names = parse_layernorm(text, depth, ())
    except TrimbertError:
        return
    assert len(set(names)) == len(names)
    assert set(names) <= set(encoder_layernorms(depth, ()))  # only LayerNorms the model has
    assert list(names) == sorted(names, key=ln_sort_key)


@settings(max_examples=300, deadline=None)
@given(ANY, DEPTH)
def test_ffn_widths(text, depth):
    try:
        widths = parse_ffn_width(text, depth, dict.fromkeys(range(depth), 64), intermediate_size=64)
    except TrimbertError:
        return
    assert all(0 <= block < depth and 1 <= width < 64 for block, width in widths.items())


@settings(max_examples=300, deadline=None)
@given(ANY, DEPTH)
def test_heads(text, depth):
    try:
        chosen = parse_heads(text, depth, dict.fromkeys(range(depth), 4), num_attention_heads=4)
    except TrimbertError:
        return
    assert all(0 <= block < depth and 1 <= count < 4 for block, count in chosen.counts.items())
    for block, heads in chosen.explicit.items():
        assert list(heads) == sorted(set(heads)) and len(heads) == chosen.counts[block]
        assert all(0 <= head < 4 for head in heads)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={key: ANY for key in TrimRequest.keys()},
    ),
    DEPTH,
)
def test_whole_requests_resolve_to_valid_specs_or_fail_cleanly(options, depth):
    try:
        spec = resolve_spec(depth, None, TrimRequest(**options), intermediate_size=64, num_attention_heads=4)
    except TrimbertError:
        return
    assert validate_spec(spec, depth, intermediate_size=64, num_attention_heads=4) == spec
