import pytest

from trimbert.errors import TrimbertError
from trimbert.spec import TrimSpec, encoder_layernorms, parse_blocks, parse_layernorm, resolve_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,3,5", (1, 3, 5)),
        ("6-11", (6, 7, 8, 9, 10, 11)),
        ("0-2,7", (0, 1, 2, 7)),
        ("5,0", (0, 5)),
        ("alternate", (1, 3, 5, 7, 9, 11)),
        ("first:3", (0, 1, 2)),
        ("last:2", (10, 11)),
        ("all", tuple(range(12))),
        ("none", ()),
    ],
)
def test_parse_blocks_patterns(text, expected):
    assert parse_blocks(text, 12) == expected


def test_alternate_on_odd_depth():
    assert parse_blocks("alternate", 6) == (1, 3, 5)
    assert parse_blocks("alternate", 5) == (1, 3)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("12", "block index 12 out of range for a 12-block model"),
        ("3-12", "block index 12 out of range"),
        ("-1", "negative block index"),
        ("1,3,1", "block index 1 given more than once"),
        ("0-3,2", "block index 2 given more than once"),
        ("evens", "unknown block selection 'evens'"),
        ("first:0", "first:0"),
        ("last:13", "last:13"),
        ("5-2", "runs backwards"),
        ("", "empty block selection"),
    ],
)
def test_parse_blocks_errors(text, words):
    with pytest.raises(TrimbertError, match=words):
        parse_blocks(text, 12)


def test_layernorm_half_on_untrimmed_strips_every_attention_layernorm():
    assert parse_layernorm("half", 6, ()) == tuple(f"{i}.attn" for i in range(6))


def test_layernorm_half_with_dropped_ffns_follows_the_documented_rule():
    # 6 blocks, FFN of 1,3,5 dropped: 9 LayerNorms remain, half = 4:
    # attention LNs of kept-FFN blocks (0, 2, 4) first, then of dropped-FFN blocks (1).
    assert parse_layernorm("half", 6, (1, 3, 5)) == ("0.attn", "1.attn", "2.attn", "4.attn")


def test_layernorm_half_counts_only_existing_layernorms():
    already = ("0.attn", "1.attn", "2.attn")
    # 12 exist, 3 stripped before: 9 remain, half of those = 4 more.
    assert parse_layernorm("half", 6, (), already) == ("0.ffn", "3.attn", "4.attn", "5.attn")


def test_layernorm_selections():
    assert parse_layernorm("ffn", 3, (1,)) == ("0.ffn", "2.ffn")
    assert parse_layernorm("attn", 2, ()) == ("0.attn", "1.attn")
    assert parse_layernorm("all", 2, (0,)) == ("0.attn", "1.attn", "1.ffn")
    assert parse_layernorm("3.ffn,0.attn", 4, ()) == ("0.attn", "3.ffn")
    assert parse_layernorm("none", 4, ()) == ()


@pytest.mark.parametrize(
    ("text", "drop", "words"),
    [
        ("1.ffn", (1,), "does not exist"),
        ("9.attn", (), "out of range"),
        ("quarter", (), "unknown selection 'quarter'"),
        ("0.attn,0.attn", (), "more than once"),
    ],
)
def test_layernorm_errors(text, drop, words):
    with pytest.raises(TrimbertError, match=words):
        parse_layernorm(text, 4, drop)


def test_resolve_composes_and_refuses_redrop():
    first = resolve_spec(6, drop_ffn="alternate", attention="relu", layernorm="half")
    assert first == TrimSpec(
        drop_ffn=(1, 3, 5), attention="relu", layernorm=("0.attn", "1.attn", "2.attn", "4.attn")
    )
    second = resolve_spec(6, first, drop_ffn="0")
    assert second.drop_ffn == (0, 1, 3, 5)
    assert second.attention == "relu"
    assert second.layernorm == first.layernorm
    with pytest.raises(TrimbertError, match="block 3 is already dropped"):
        resolve_spec(6, first, drop_ffn="3")


def test_dropping_an_ffn_removes_its_stripped_layernorm_from_the_spec():
    first = resolve_spec(4, layernorm="ffn")
    second = resolve_spec(4, first, drop_ffn="2")
    assert second.layernorm == ("0.ffn", "1.ffn", "3.ffn")


def test_unknown_normalizer():
    with pytest.raises(TrimbertError, match="unknown normalizer 'tanh'"):
        resolve_spec(4, attention="tanh")


def test_dict_round_trip_and_summary():
    spec = TrimSpec(drop_ffn=(0, 1, 2, 3, 7), attention="relu", layernorm=("0.attn", "4.ffn"))
    assert TrimSpec.from_dict(spec.to_dict()) == spec
    assert spec.summary() == "ffn-[0-3,7] attn=relu ln-2"
    assert TrimSpec().summary() == "untrimmed"
    assert TrimSpec().is_empty
    with pytest.raises(TrimbertError, match="unknown trim spec key"):
        TrimSpec.from_dict({"drop": [1]})


def test_encoder_layernorms_order():
    assert encoder_layernorms(2, (1,)) == ["0.attn", "0.ffn", "1.attn"]
