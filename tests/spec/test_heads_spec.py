"""Attention heads in the trim vocabulary: the spec field, its dict form, the request syntax, resolution."""

import pytest

from trimbert.errors import TrimbertError
from trimbert.spec import (
    HeadSelection,
    TrimRequest,
    TrimSpec,
    parse_heads,
    resolve_heads,
    resolve_spec,
    validate_spec,
)


def test_heads_are_normalized_sorted_pairs_and_a_dict():
    spec = TrimSpec(heads={3: 8, 0: 4})
    assert spec.heads == ((0, 4), (3, 8))
    assert spec.head_counts == {0: 4, 3: 8}
    assert TrimSpec(heads=[(3, 8), (0, 4)]) == spec
    assert not spec.is_empty
    assert TrimSpec().head_counts == {}
    with pytest.raises(TrimbertError, match=r"^trim spec: bad heads \{\"0\": 4.5\} \(expected block -> heads kept"):
        TrimSpec(heads={0: 4.5})


def test_dict_form_writes_heads_only_when_set():
    assert "heads" not in TrimSpec(drop_ffn=(1,)).to_dict()
    spec = TrimSpec(heads={0: 4, 3: 8}, notes={"heads_rule": "magnitude"})
    data = spec.to_dict()
    assert data["heads"] == {"0": 4, "3": 8}
    assert TrimSpec.from_dict(data) == spec
    assert TrimSpec.from_dict(data).notes == {"heads_rule": "magnitude"}


@pytest.mark.parametrize("value", [{"0": 4.5}, {"0": 0}, {"0": True}, {"x": 4}, [4], {"0": "4"}])
def test_from_dict_refuses_bad_heads(value):
    with pytest.raises(TrimbertError) as caught:
        TrimSpec.from_dict({"heads": value}, where="spec.json: trim_spec")
    assert str(caught.value).startswith(
        'spec.json: trim_spec.heads: expected an object of block -> heads kept (whole numbers, at least 1, e.g. {"0": 8}), got '
    )


@pytest.mark.parametrize(
    ("heads", "label"),
    [
        ({0: 8, 1: 8}, "heads=8"),
        ({0: 8, 1: 8, 2: 8, 3: 4}, "heads=8[0-2],4[3]"),
    ],
)
def test_summary(heads, label):
    assert TrimSpec(heads=heads).summary() == label
    assert TrimSpec(drop_layers=(5,), ffn_width={0: 768}, heads=heads).summary() == f"layers-[5] ffn-width=768 {label}"


def test_request_keeps_the_cli_syntax():
    assert TrimRequest(heads=8).heads == "8"
    assert TrimRequest(heads={0: 4, 3: 8}).heads == "0:4,3:8"
    assert TrimRequest(heads={0: 4, "3": [0, 2, 5]}).heads == "0:4,3=0+2+5"
    assert TrimRequest.from_spec(TrimSpec(heads={1: 6})).heads == "1:6"
    assert TrimRequest.from_spec(TrimSpec(drop_ffn=(1,))).heads is None
    for bad in (True, {0: 4.5}, {0: [1.0]}, [4]):
        with pytest.raises(TrimbertError, match="^--heads: expected"):
            TrimRequest(heads=bad)


def test_parse_heads_forms():
    current = dict.fromkeys(range(4), 12)
    assert parse_heads("8", 4, current) == HeadSelection(counts={0: 8, 1: 8, 2: 8, 3: 8}, explicit={})
    assert parse_heads(" 0:4 , 3:8 ", 4, current) == HeadSelection(counts={0: 4, 3: 8}, explicit={})
    assert parse_heads("3=5+0+2", 4, current) == HeadSelection(counts={3: 3}, explicit={3: (0, 2, 5)})
    assert parse_heads("0:4,3=0+2+5", 4, current) == HeadSelection(counts={0: 4, 3: 3}, explicit={3: (0, 2, 5)})
    assert parse_heads({1: 2, "2": [7]}, 4, current) == HeadSelection(counts={1: 2, 2: 1}, explicit={2: (7,)})
    assert parse_heads(6, 4, {0: 12, 2: 8}, drop_layers={1, 3}) == HeadSelection(counts={0: 6, 2: 6}, explicit={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x", "--heads: unknown head selection 'x' (use a number like 8, block:count pairs like 0:4,3:8, or block=heads like 3=0+2+5)"),
        ("3=", "--heads: unknown head selection '3=' (use a number like 8, block:count pairs like 0:4,3:8, or block=heads like 3=0+2+5)"),
        ("8,3:2", "--heads: '8' among per-block heads: a bare count is for every block and stands alone (write block:count, e.g. 0:4)"),
        ("0:0", "--heads: block 0 must keep at least one head (got 0)"),
        ("0", "--heads: block 0 must keep at least one head (got 0)"),
        ("0:12", "--heads: block 0 keeps 12 heads: must be fewer than the number of attention heads (12)"),
        ("12", "--heads: block 0 keeps 12 heads: must be fewer than the number of attention heads (12)"),
        ("1:4", "--heads: block 1 keeps 4 heads: must be fewer than its current 4"),
        ("3=0+1+2+3", "--heads: block 3 keeps 4 heads: must be fewer than its current 4"),
        ("3=1+1", "--heads: head 1 of block 3 given more than once"),
        ("3=4", "--heads: block 3 has no head 4 (its 4 heads are 0-3)"),
        ("3=-1", "--heads: block 3 has no head -1 (its 4 heads are 0-3)"),
        ("6:2", "--heads: block index 6 out of range for a 6-block model"),
        ("-1:2", "--heads: negative block index -1"),
        ("5:2", "--heads: block 5 was removed with --drop-layers and cannot be named"),
        ("0:2,0=1", "--heads: block 0 given more than once"),
    ],
)
def test_resolution_errors_are_one_line(text, message):
    applied = resolve_spec(6, None, drop_layers="5", heads="1:4,3:4", num_attention_heads=12)
    with pytest.raises(TrimbertError) as caught:
        resolve_spec(6, applied, heads=text, num_attention_heads=12)
    assert str(caught.value) == message


def test_resolving_needs_the_head_count():
    with pytest.raises(TrimbertError, match=r"^--heads: the model's number of attention heads is needed"):
        resolve_spec(6, None, heads="8")
    assert resolve_spec(6, None, drop_ffn="1").heads == ()  # not needed without --heads


def test_heads_compose_with_what_was_applied():
    first = resolve_spec(6, None, heads="0:8,3:8,4:6", num_attention_heads=12)
    assert first.head_counts == {0: 8, 3: 8, 4: 6}
    again = resolve_spec(6, first, heads="0:4,1:10", num_attention_heads=12)
    assert again.head_counts == {0: 4, 1: 10, 3: 8, 4: 6}
    assert resolve_spec(6, first, drop_layers="3", num_attention_heads=12).head_counts == {0: 8, 4: 6}
    uniform = resolve_spec(6, first, drop_layers="3", heads="5", num_attention_heads=12)
    assert uniform.head_counts == {0: 5, 1: 5, 2: 5, 4: 5, 5: 5}
    assert resolve_spec(6, first, drop_ffn="0,3", num_attention_heads=12).head_counts == first.head_counts


def test_resolve_heads_names_what_the_request_prunes_now():
    first = resolve_spec(6, None, heads="0:8", num_attention_heads=12)
    request = TrimRequest(drop_layers="1", heads="0=1+7,2:3")
    assert resolve_heads(6, first, request, num_attention_heads=12) == HeadSelection(
        counts={0: 2, 2: 3}, explicit={0: (1, 7)}
    )
    assert resolve_heads(6, first, TrimRequest(drop_ffn="1"), num_attention_heads=12) == HeadSelection({}, {})
    with pytest.raises(TrimbertError, match="^--heads: block 0 has no head 8 "):
        resolve_heads(6, first, TrimRequest(heads="0=8"), num_attention_heads=12)


def test_validate_spec_checks_heads():
    assert validate_spec(TrimSpec(heads={0: 4}), 6, num_attention_heads=12) == TrimSpec(heads={0: 4})
    for spec, message in [
        (TrimSpec(heads={6: 4}), "trim spec: heads names block 6, which is not in this model"),
        (TrimSpec(drop_layers=(2,), heads={2: 4}), "trim spec: heads names block 2, which is not in this model"),
        (TrimSpec(heads={0: 12}), "trim spec: bad head count 12 for block 0"),
        (TrimSpec(heads={0: 0}), "trim spec: bad head count 0 for block 0"),
    ]:
        with pytest.raises(TrimbertError) as caught:
            validate_spec(spec, 6, num_attention_heads=12)
        assert str(caught.value) == message
