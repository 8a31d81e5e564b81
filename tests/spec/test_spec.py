import pytest

from trimbert.errors import TrimbertError
from trimbert.spec import (
    TrimSpec,
    encoder_layernorms,
    parse_blocks,
    parse_layernorm,
    resolve_spec,
    validate_spec,
)


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


# ------------------------------------------------------------------ drop_layers


def test_drop_layers_resolves_in_original_numbering():
    spec = resolve_spec(6, drop_layers="4,5")
    assert spec.drop_layers == (4, 5)
    assert spec.kept_layers(6) == (0, 1, 2, 3)
    assert spec.original_num_layers(4) == 6
    # Patterns are resolved in the original numbering and skip dropped blocks.
    assert resolve_spec(6, spec, drop_ffn="alternate").drop_ffn == (1, 3)
    assert resolve_spec(6, spec, drop_ffn="all").drop_ffn == (0, 1, 2, 3)
    assert resolve_spec(6, spec, layernorm="attn").layernorm == ("0.attn", "1.attn", "2.attn", "3.attn")
    # half counts the LayerNorms that exist: 4 blocks, 8 LayerNorms, 4 stripped.
    assert resolve_spec(6, spec, layernorm="half").layernorm == ("0.attn", "1.attn", "2.attn", "3.attn")


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        ({"drop_layers": "6"}, "--drop-layers: block index 6 out of range for a 6-block model"),
        ({"drop_layers": "-1"}, "--drop-layers: negative block index"),
        ({"drop_layers": "1,1"}, "--drop-layers: block index 1 given more than once"),
        ({"drop_layers": "all"}, "--drop-layers: cannot drop every block"),
        ({"drop_layers": "0-5"}, "--drop-layers: cannot drop every block"),
        ({"drop_layers": "odd"}, "--drop-layers: unknown block selection"),
        ({"drop_layers": "2", "drop_ffn": "2"}, "--drop-ffn: block 2 was removed with --drop-layers"),
        (
            {"drop_layers": "2", "layernorm": "2.attn"},
            "--layernorm: LayerNorm 2.attn does not exist .*drop-layers",
        ),
        ({"drop_layers": "2", "ffn_width": "2:8"}, "--ffn-width: block 2 was removed with --drop-layers"),
    ],
)
def test_drop_layers_errors(request_, words):
    with pytest.raises(TrimbertError, match=words):
        resolve_spec(6, intermediate_size=16, **request_)


def test_drop_layers_composes():
    first = resolve_spec(6, drop_ffn="1,3", layernorm="3.attn,4.ffn", ffn_width="0:8", intermediate_size=16)
    # Dropping a block whose FFN was dropped is allowed; what the spec said about it goes with it.
    second = resolve_spec(6, first, drop_layers="3,0")
    assert second.drop_layers == (0, 3)
    assert second.drop_ffn == (1,)
    assert second.layernorm == ("4.ffn",)
    assert second.ffn_width == ()
    with pytest.raises(TrimbertError, match="--drop-layers: block 3 is already dropped"):
        resolve_spec(6, second, drop_layers="3")
    with pytest.raises(TrimbertError, match="--drop-ffn: block 0 was removed"):
        resolve_spec(6, second, drop_ffn="0")
    with pytest.raises(TrimbertError, match="cannot drop every block"):
        resolve_spec(6, second, drop_layers="1,2,4,5")


def test_parse_blocks_with_dropped_blocks():
    assert parse_blocks("first:3", 6, dropped=(1,)) == (0, 2)
    assert parse_blocks("last:2", 6, dropped=(5,)) == (4,)
    with pytest.raises(TrimbertError, match="block 1 was removed with --drop-layers"):
        parse_blocks("0-2", 6, dropped=(1,))


# ------------------------------------------------------------------ ffn_width


def test_ffn_width_forms():
    assert resolve_spec(3, ffn_width=8, intermediate_size=16).ffn_widths == {0: 8, 1: 8, 2: 8}
    assert resolve_spec(3, ffn_width="8", intermediate_size=16).ffn_widths == {0: 8, 1: 8, 2: 8}
    assert resolve_spec(3, ffn_width="2:4,0:8", intermediate_size=16).ffn_widths == {0: 8, 2: 4}
    assert resolve_spec(3, ffn_width={1: 3}, intermediate_size=16).ffn_width == ((1, 3),)
    # An int applies to the blocks that still have an FFN.
    assert resolve_spec(3, drop_ffn="1", ffn_width=8, intermediate_size=16).ffn_widths == {0: 8, 2: 8}


@pytest.mark.parametrize(
    ("width", "words"),
    [
        (16, "--ffn-width: width 16 must be less than the intermediate size \\(16\\)"),
        (17, "must be less than the intermediate size"),
        (0, "--ffn-width: width 0 must be at least 1"),
        (-3, "width -3 must be at least 1"),
        ("wide", "--ffn-width: unknown width 'wide'"),
        ("5:8", "--ffn-width: block index 5 out of range"),
        ("1:8", "--ffn-width: block 1 has no FFN"),
        ("0:8,0:4", "--ffn-width: block 0 given more than once"),
        (True, "--ffn-width: expected a width"),
    ],
)
def test_ffn_width_errors(width, words):
    with pytest.raises(TrimbertError, match=words):
        resolve_spec(3, drop_ffn="1", ffn_width=width, intermediate_size=16)


def test_ffn_width_composes_by_narrowing_further():
    first = resolve_spec(3, ffn_width=8, intermediate_size=16)
    second = resolve_spec(3, first, ffn_width="1:4", intermediate_size=16)
    assert second.ffn_widths == {0: 8, 1: 4, 2: 8}
    with pytest.raises(
        TrimbertError, match="width 8 must be less than the current FFN width of block 0 \\(8\\)"
    ):
        resolve_spec(3, first, ffn_width=8, intermediate_size=16)
    # Dropping a narrowed FFN forgets its width.
    assert resolve_spec(3, second, drop_ffn="1").ffn_widths == {0: 8, 2: 8}


# ------------------------------------------------------------------ LayerNorm replacement


def test_layernorm_replacement():
    spec = resolve_spec(4, layernorm="half", layernorm_replacement="affine")
    assert spec.layernorm_replacement == "affine"
    assert spec.summary() == "ln-4(affine)"
    # No stripped LayerNorm: the replacement is the default.
    assert resolve_spec(4, layernorm_replacement="affine").layernorm_replacement == "identity"
    # More LayerNorms of an affine model are affine too; mixing is refused.
    assert resolve_spec(4, spec, layernorm="0.ffn").layernorm_replacement == "affine"
    with pytest.raises(
        TrimbertError, match="--layernorm-replacement: this model's stripped LayerNorms use 'affine'"
    ):
        resolve_spec(4, spec, layernorm="0.ffn", layernorm_replacement="identity")
    with pytest.raises(TrimbertError, match="--layernorm-replacement: unknown replacement 'scale'"):
        resolve_spec(4, layernorm="half", layernorm_replacement="scale")


# ------------------------------------------------------------------ dict form, labels, validation


def test_new_fields_dict_round_trip_and_labels():
    spec = TrimSpec(
        drop_ffn=(1,),
        layernorm=("0.attn", "2.attn"),
        drop_layers=(4, 5),
        ffn_width={0: 768, 2: 768, 3: 512},
        layernorm_replacement="affine",
        notes={"ffn_width_rule": "magnitude"},
    )
    data = spec.to_dict()
    assert data["drop_layers"] == [4, 5]
    assert data["ffn_width"] == {"0": 768, "2": 768, "3": 512}
    assert data["layernorm_replacement"] == "affine"
    assert TrimSpec.from_dict(data) == spec
    assert TrimSpec.from_dict(data).notes == {"ffn_width_rule": "magnitude"}
    assert spec.summary() == "layers-[4-5] ffn-[1] ffn-width=768[0,2],512[3] ln-2(affine)"
    assert TrimSpec(ffn_width={0: 768}).summary() == "ffn-width=768"
    assert TrimSpec(drop_layers=(4, 5)).summary() == "layers-[4-5]"
    assert not TrimSpec(drop_layers=(1,)).is_empty
    assert not TrimSpec(ffn_width={1: 8}).is_empty
    hash(spec)


def test_old_specs_keep_their_dict_form():
    spec = TrimSpec(drop_ffn=(1, 3), attention="relu", layernorm=("0.attn",))
    assert set(spec.to_dict()) == {"drop_ffn", "attention", "layernorm"}
    assert TrimSpec.from_dict({"drop_ffn": [1], "attention": "softmax", "layernorm": []}).drop_layers == ()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (TrimSpec(drop_layers=(0, 1, 2, 3)), "every block is dropped"),
        (TrimSpec(drop_layers=(4,)), "out of range"),
        (TrimSpec(drop_layers=(1,), drop_ffn=(1,)), "drop_ffn names block 1, which is dropped"),
        (TrimSpec(drop_ffn=(1,), ffn_width={1: 8}), "ffn_width names block 1"),
        (TrimSpec(ffn_width={1: 64}), "bad FFN width 64"),
        (TrimSpec(drop_layers=(2,), layernorm=("2.attn",)), "LayerNorm 2.attn does not exist"),
        (TrimSpec(layernorm=("2.attn",), layernorm_replacement="scale"), "unknown replacement"),
    ],
)
def test_validate_spec_errors(spec, words):
    with pytest.raises(TrimbertError, match=words):
        validate_spec(spec, 4, intermediate_size=64)


def test_encoder_layernorms_without_dropped_blocks():
    assert encoder_layernorms(3, (0,), (1,)) == ["0.attn", "2.attn", "2.ffn"]
