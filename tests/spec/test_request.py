"""TrimRequest: the user's trim request, carried unchanged from the CLI and recipes to the surgery."""

import dataclasses

import pytest

from trimbert.errors import TrimbertError
from trimbert.spec import TrimRequest, TrimSpec, resolve_spec


def test_the_options_in_declaration_order_with_flags_and_help():
    assert TrimRequest.keys() == (
        "drop_ffn",
        "attention",
        "layernorm",
        "drop_layers",
        "ffn_width",
        "heads",
        "layernorm_replacement",
        "importance",
    )
    flags = [item.metadata["flag"] for item in TrimRequest.options()]
    assert flags == [
        "--drop-ffn",
        "--attention",
        "--layernorm",
        "--drop-layers",
        "--ffn-width",
        "--heads",
        "--layernorm-replacement",
        "--importance",
    ]
    assert all(item.metadata["help"].endswith(".") for item in TrimRequest.options())


def test_values_are_kept_in_the_cli_syntax():
    request = TrimRequest(drop_ffn=[1, 3, 5], ffn_width={0: 768, 3: 512}, drop_layers=(4, 5))
    assert request.drop_ffn == "1,3,5"
    assert request.ffn_width == "0:768,3:512"
    assert request.drop_layers == "4,5"
    assert TrimRequest(ffn_width=768).ffn_width == "768"
    assert request.to_dict() == {"drop_ffn": "1,3,5", "drop_layers": "4,5", "ffn_width": "0:768,3:512"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(drop_ffn=True), "--drop-ffn: expected a selection in the CLI syntax, not True"),
        (dict(ffn_width=False), "--ffn-width: expected a width or block:width pairs, not False"),
        (dict(attention=1.5), "--attention: expected a string in the CLI syntax, not 1.5"),
    ],
)
def test_values_of_the_wrong_kind_are_refused(values, message):
    with pytest.raises(TrimbertError, match=message):
        TrimRequest(**values)


def test_unknown_options_are_refused_by_from_dict():
    with pytest.raises(TrimbertError, match="unknown trim option\\(s\\): drop_heads"):
        TrimRequest.from_dict({"drop_heads": "1"})


def test_requested_auto_and_needs_data():
    assert not TrimRequest().requested
    assert TrimRequest(attention="relu").requested
    assert TrimRequest(drop_ffn="auto:3").auto_count == 3
    assert TrimRequest(drop_ffn="alternate").auto_count is None
    assert TrimRequest(drop_ffn="auto:3").needs_data
    assert TrimRequest(layernorm="half", layernorm_replacement="affine").needs_data
    assert not TrimRequest(layernorm="half", layernorm_replacement="identity").needs_data
    with pytest.raises(TrimbertError, match="use auto:N"):
        TrimRequest(drop_ffn="auto:x").auto_count  # noqa: B018
    rest = TrimRequest(drop_ffn="auto:2", attention="relu").without_auto()
    assert rest == TrimRequest(attention="relu")


@pytest.mark.parametrize(
    ("values", "ranks_units", "ranks_on_data", "needs_data"),
    [
        (dict(heads=2, importance="fisher"), True, True, True),
        (dict(heads="0:2,3=0+1", importance="taylor"), True, True, True),
        (dict(heads="3=0+1", importance="taylor"), False, False, False),  # named heads are not ranked
        (dict(ffn_width=16, importance="fisher"), True, True, True),
        (dict(heads=2, importance="magnitude"), True, False, False),
        (dict(drop_ffn="auto:1", importance="taylor"), False, True, True),
        (dict(heads=2), False, False, False),
    ],
)
def test_what_importance_ranks_and_whether_it_needs_data(values, ranks_units, ranks_on_data, needs_data):
    request = TrimRequest(**values)
    assert (request.ranks_units, request.ranks_on_data, request.needs_data) == (ranks_units, ranks_on_data, needs_data)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(importance="bogus"), "--importance: unknown rule 'bogus' (choose from magnitude, taylor, fisher)"),
        (dict(heads="3=0+1", importance="fisher"),
         "--importance: only used with --ffn-width, --heads N or --drop-ffn auto:N (named heads like 3=0+2+5 are not ranked)"),
        (dict(drop_ffn="auto:2", heads=2, importance="fisher"),
         "--importance fisher: auto:N ranks whole FFNs by data (the cut analysis, or --importance taylor); "
         "fisher ranks neurons and heads"),
    ],
)
def test_importance_errors_are_one_line(values, message):
    with pytest.raises(TrimbertError) as caught:
        TrimRequest(**values).check_importance()
    assert str(caught.value) == message
    TrimRequest(heads=2, importance="fisher").check_importance()  # heads by count are ranked


def test_a_request_resolves_like_the_same_keywords():
    request = TrimRequest(drop_ffn="alternate", attention="relu", layernorm="half", ffn_width="0:32")
    by_request = resolve_spec(6, None, request, intermediate_size=64)
    by_keywords = resolve_spec(
        6, drop_ffn="alternate", attention="relu", layernorm="half", ffn_width="0:32", intermediate_size=64
    )
    assert by_request == by_keywords
    assert by_request.drop_ffn == (1, 3, 5) and by_request.ffn_widths == {0: 32}
    with pytest.raises(TrimbertError, match="either a TrimRequest or trim options"):
        resolve_spec(6, None, request, drop_ffn="1")
    with pytest.raises(TrimbertError, match="auto:N is chosen from data"):
        resolve_spec(6, None, TrimRequest(drop_ffn="auto:2"))


def test_from_spec_reapplies_a_resolved_spec():
    spec = resolve_spec(
        6,
        drop_layers="5",
        drop_ffn="1,3",
        ffn_width="0:40",
        layernorm="half",
        layernorm_replacement="identity",
        attention="sigmoid",
        intermediate_size=64,
    )
    request = TrimRequest.from_spec(spec)
    assert resolve_spec(6, None, request, intermediate_size=64) == spec
    assert TrimRequest.from_spec(TrimSpec()) == TrimRequest()
    assert TrimRequest.from_spec(spec, "taylor") == dataclasses.replace(request, importance="taylor")
    assert TrimRequest.from_spec(TrimSpec(drop_ffn=(1,)), "taylor") == TrimRequest(drop_ffn="1")  # no widths: no rule
    # heads (counts) are ranked by the rule too, with or without widths, as the search ranked them
    assert TrimRequest.from_spec(TrimSpec(heads={0: 2, 3: 1}), "fisher") == TrimRequest(heads="0:2,3:1", importance="fisher")
    assert TrimRequest.from_spec(TrimSpec(heads={1: 2}), "magnitude").ranks_units


def test_the_request_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrimRequest().drop_ffn = "1"
