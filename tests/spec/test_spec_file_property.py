"""Property-based: any JSON value under any key of a spec file (``--spec``) is either refused with a
TrimbertError or accepted, and then it resolves to exactly the trim it says (ints stay ints: nothing
is coerced) or fails cleanly against the model. Never another exception."""

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trimbert
from trimbert.errors import TrimbertError
from trimbert.spec import (
    LN_REPLACEMENTS,
    TrimRequest,
    TrimSpec,
    available_normalizers,
    ln_sort_key,
    resolve_spec,
)

DEPTH, WIDTH = 2, 64  # the model the accepted specs are resolved against (tiny_checkpoint's shape)
NAMES = [f"{block}.{kind}" for block in range(-1, DEPTH + 1) for kind in ("attn", "ffn")]
WORDS = st.sampled_from(
    [*available_normalizers(), *LN_REPLACEMENTS, *NAMES, "", "1", "0", "-1", "1.5", "1,3", "all", "half", "magnitude", "taylor"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=WIDTH + 2),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1, max_value=WIDTH + 1).map(lambda x: float(round(x))),  # 1.0: an int-valued float
    WORDS,
    st.text(max_size=6),
)
KEYS = st.one_of(st.sampled_from(["0", "1", "2", "3", "4", "01", "-1", "1.0", " 1", "x"]), st.text(max_size=3))
ANY = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=8,
)
# Values close to valid ones for each key, so that many examples are accepted and resolved.
NEAR = {
    "drop_ffn": st.lists(SCALARS, max_size=4) | st.lists(st.integers(-1, DEPTH), max_size=3),
    "drop_layers": st.lists(SCALARS, max_size=3) | st.lists(st.integers(-1, DEPTH), max_size=2),
    "layernorm": st.lists(WORDS, max_size=3) | st.lists(st.sampled_from(NAMES), max_size=3),
    "ffn_width": st.dictionaries(KEYS, SCALARS, max_size=3)
    | st.dictionaries(st.sampled_from(["0", "1", "2", "3", "4"]), st.integers(-1, WIDTH + 1), max_size=3),
    "attention": WORDS,
    "layernorm_replacement": WORDS,
    "notes": st.dictionaries(st.text(max_size=4), ANY, max_size=3) | ANY,
}
# Valid values for each key (against the DEPTH-block model or not), so that many examples resolve.
VALID = {
    "drop_ffn": st.lists(st.integers(0, DEPTH), max_size=2, unique=True),
    "drop_layers": st.lists(st.integers(0, DEPTH), max_size=1, unique=True),
    "layernorm": st.lists(st.sampled_from(NAMES[2:-2]), max_size=2, unique=True),
    "ffn_width": st.dictionaries(st.sampled_from([str(block) for block in range(DEPTH + 1)]), st.integers(1, WIDTH),
                                 max_size=2),
    "attention": st.sampled_from(available_normalizers()),
    "layernorm_replacement": st.sampled_from(LN_REPLACEMENTS),
    "notes": st.dictionaries(st.text(max_size=4), ANY, max_size=2),
}


@st.composite
def trim_specs(draw) -> dict:
    """A trim_spec of valid values where one key (or none) holds any JSON value."""
    trim_spec = draw(st.fixed_dictionaries({}, optional=VALID))
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(NEAR)))
        trim_spec[key] = draw(st.one_of(ANY, NEAR[key]))
    return trim_spec


@st.composite
def spec_files(draw) -> dict:
    data = {"trim_spec": draw(trim_specs())}
    importance = st.one_of(st.sampled_from([None, "magnitude", "taylor", "fisher"]), ANY)
    data.update(draw(st.fixed_dictionaries({}, optional={"importance": importance, "summary": ANY})))
    if draw(st.sampled_from([False] * 9 + [True])):
        data["drop_ffn"] = draw(ANY)  # a trim key beside trim_spec
    return data


def _is_int(value) -> bool:
    return type(value) is int


def _meaning(trim_spec: dict) -> TrimSpec:
    """What an accepted trim_spec says, read without the code under test."""
    return TrimSpec(
        drop_ffn=tuple(sorted(trim_spec.get("drop_ffn", []))),
        attention=trim_spec.get("attention", "softmax"),
        layernorm=tuple(sorted(trim_spec.get("layernorm", []), key=ln_sort_key)),
        drop_layers=tuple(sorted(trim_spec.get("drop_layers", []))),
        ffn_width={int(block): width for block, width in trim_spec.get("ffn_width", {}).items()},
        layernorm_replacement=trim_spec.get("layernorm_replacement", "identity"),
    )


def _check_accepted(data: dict, request: TrimRequest) -> None:
    trim_spec = data["trim_spec"]
    # nothing was coerced: what was accepted has exactly the declared types
    assert "drop_ffn" not in data
    assert all(_is_int(index) and index >= 0 for key in ("drop_ffn", "drop_layers") for index in trim_spec.get(key, []))
    for block, width in trim_spec.get("ffn_width", {}).items():
        assert block == str(int(block)) and _is_int(width) and width >= 1
    assert trim_spec.get("attention", "softmax") in available_normalizers()
    assert trim_spec.get("layernorm_replacement", "identity") in LN_REPLACEMENTS
    assert isinstance(trim_spec.get("notes", {}), dict)
    assert data.get("importance") in (None, "magnitude", "taylor", "fisher")
    meant = _meaning(trim_spec)
    assert request.importance == (data.get("importance") if meant.ffn_width else None)
    try:
        resolved = resolve_spec(DEPTH, None, request, intermediate_size=WIDTH)
    except TrimbertError:
        return
    assert resolved == meant


@settings(max_examples=400, deadline=None)
@given(spec_files())
def test_any_json_under_any_spec_key_is_accepted_as_it_says_or_refused(data):
    data = json.loads(json.dumps(data))  # what a file holds (NaN and Infinity included)
    try:
        request = TrimRequest.from_spec_data(data, "spec.json")
    except TrimbertError as error:
        assert str(error).startswith("--spec: spec.json") and "\n" not in str(error)
        return
    _check_accepted(data, request)


@settings(max_examples=200, deadline=None)
@given(ANY)
def test_any_json_as_the_whole_file_or_the_trim_spec(value):
    for data in (value, {"trim_spec": value}):
        data = json.loads(json.dumps(data))
        try:
            request = TrimRequest.from_spec_data(data, "spec.json")
        except TrimbertError as error:
            assert str(error).startswith("--spec: spec.json") and "\n" not in str(error)
            continue
        _check_accepted(data, request)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("spec-property")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trim_specs())
def test_the_cli_refuses_in_one_line_or_writes_what_the_spec_says(run_cli, tiny_checkpoint, scratch, data):
    spec, out = scratch / "spec.json", scratch / "out"
    shutil.rmtree(out, ignore_errors=True)
    spec.write_text(json.dumps({"trim_spec": data}))
    code, stdout, err = run_cli("trim", tiny_checkpoint, "--spec", spec, "--out", out)
    if code == 2:
        assert stdout == "" and err.startswith("error: ") and err.count("\n") == 1, err
        assert not out.exists()
        return
    assert code == 0, err
    assert trimbert.load(out).config.spec == _meaning(data)
