"""Spec files (``--spec best.json``) and spec dicts are validated as the CLI options are: a value of the
wrong type is refused in one line naming the file and the key, never coerced (``[1.7]`` is not block 1)."""

import json

import pytest

import trimbert
from trimbert.errors import TrimbertError
from trimbert.search.evolve import Candidate
from trimbert.search.outputs import spec_file
from trimbert.spec import TrimRequest, TrimSpec, resolve_spec

EXPECT_BLOCKS = "expected a list of block indices (whole numbers from 0, each once, e.g. [1, 3])"
EXPECT_WIDTHS = 'expected an object of block -> width (whole numbers, width at least 1, e.g. {"0": 768})'
EXPECT_NAMES = 'expected a list of LayerNorm names (each once, e.g. ["0.attn", "3.ffn"])'


@pytest.mark.parametrize(
    ("trim_spec", "problem"),
    [
        ({"drop_ffn": 3}, f"drop_ffn: {EXPECT_BLOCKS}, got 3"),
        ({"drop_ffn": None}, f"drop_ffn: {EXPECT_BLOCKS}, got null"),
        ({"drop_ffn": ","}, f'drop_ffn: {EXPECT_BLOCKS}, got ","'),
        ({"drop_ffn": "13"}, f'drop_ffn: {EXPECT_BLOCKS}, got "13"'),  # was blocks 1 and 3
        ({"drop_ffn": True}, f"drop_ffn: {EXPECT_BLOCKS}, got true"),
        ({"drop_ffn": 1.5}, f"drop_ffn: {EXPECT_BLOCKS}, got 1.5"),
        ({"drop_ffn": [1.7]}, f"drop_ffn: {EXPECT_BLOCKS}, got [1.7]"),  # was block 1
        ({"drop_ffn": [True]}, f"drop_ffn: {EXPECT_BLOCKS}, got [true]"),  # was block 1
        ({"drop_ffn": ["1"]}, f'drop_ffn: {EXPECT_BLOCKS}, got ["1"]'),
        ({"drop_ffn": [-1]}, f"drop_ffn: {EXPECT_BLOCKS}, got [-1]"),
        ({"drop_ffn": [1, 1]}, f"drop_ffn: {EXPECT_BLOCKS}, got [1, 1]"),
        ({"drop_layers": [0.0]}, "drop_layers: expected a list of block indices (whole numbers from 0, each once, "
                                 "e.g. [4, 5]), got [0.0]"),
        ({"layernorm": 5}, f"layernorm: {EXPECT_NAMES}, got 5"),
        ({"layernorm": "half"}, f'layernorm: {EXPECT_NAMES}, got "half"'),
        ({"layernorm": ["0.attn", "zero.ffn"]}, f'layernorm: {EXPECT_NAMES}, got ["0.attn", "zero.ffn"]'),
        ({"ffn_width": 767.5}, f"ffn_width: {EXPECT_WIDTHS}, got 767.5"),
        ({"ffn_width": 768}, f"ffn_width: {EXPECT_WIDTHS}, got 768"),
        ({"ffn_width": {"0": 5.5}}, f'ffn_width: {EXPECT_WIDTHS}, got {{"0": 5.5}}'),  # was width 5
        ({"ffn_width": {"0": True}}, f'ffn_width: {EXPECT_WIDTHS}, got {{"0": true}}'),
        ({"ffn_width": {"0": 0}}, f'ffn_width: {EXPECT_WIDTHS}, got {{"0": 0}}'),
        ({"ffn_width": {"first": 8}}, f'ffn_width: {EXPECT_WIDTHS}, got {{"first": 8}}'),
        ({"ffn_width": {"01": 8}}, f'ffn_width: {EXPECT_WIDTHS}, got {{"01": 8}}'),
        ({"attention": "relu6"}, "attention: expected one of softmax, relu, relu-len, sigmoid, softermax, squared-relu, "
                                 'got "relu6"'),
        ({"attention": None}, "attention: expected one of softmax, relu, relu-len, sigmoid, softermax, squared-relu, "
                              "got null"),
        ({"layernorm": ["0.attn"], "layernorm_replacement": 1}, "layernorm_replacement: expected one of identity, "
                                                                "affine, dyt, got 1"),
        ({"drop_ffn": [1], "notes": [1, 2]}, "notes: expected an object, got [1, 2]"),
    ],
)
def test_a_spec_file_value_of_the_wrong_type_is_refused_naming_the_key(trim_spec, problem, tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"trim_spec": trim_spec}))
    with pytest.raises(TrimbertError) as caught:
        TrimRequest.from_spec_file(path)
    assert str(caught.value) == f"--spec: {path}: trim_spec.{problem}"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"trim_spec": {"drop_ffn": [1], "ffn_width": {"0": 8}}, "importance": "bogus"},
         'importance: expected one of magnitude, taylor, fisher or null, got "bogus"'),
        ({"trim_spec": {"drop_ffn": [1]}, "importance": "bogus"},  # no widths: was ignored silently
         'importance: expected one of magnitude, taylor, fisher or null, got "bogus"'),
        ({"trim_spec": {"drop_ffn": [1]}, "importance": 1},
         "importance: expected one of magnitude, taylor, fisher or null, got 1"),
        ({"trim_spec": {"drop_ffn": [1]}, "drop_ffn": True},  # beside trim_spec: was ignored silently
         "drop_ffn is a trim_spec key: put it inside the trim_spec object"),
        ({"trim_spec": {}, "ffn_width": 767.5}, "ffn_width is a trim_spec key: put it inside the trim_spec object"),
        ({"trim_spec": {"drop_ffn": [1], "importance": "taylor"}},
         "trim_spec: unknown trim spec key(s): importance (known: drop_ffn, attention, layernorm, drop_layers, "
         "ffn_width, heads, layernorm_replacement, notes)"),
        ({"trim_spec": {"layernorm_replacement": "affine"}},
         "trim_spec: layernorm_replacement 'affine' stands for stripped LayerNorms, but layernorm names none"),
    ],
)
def test_the_keys_around_the_trim_spec_are_checked(data, problem, tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TrimbertError) as caught:
        TrimRequest.from_spec_file(path)
    assert str(caught.value) == f"--spec: {path}: {problem}"


def test_nan_and_deep_nesting_in_a_spec_file_are_one_line_errors(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text('{"trim_spec": {"ffn_width": {"0": NaN}}}')
    with pytest.raises(TrimbertError) as caught:
        TrimRequest.from_spec_file(path)
    assert str(caught.value) == f'--spec: {path}: trim_spec.ffn_width: {EXPECT_WIDTHS}, got {{"0": NaN}}'
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TrimbertError, match=f"^--spec: cannot read {path}: maximum recursion depth exceeded"):
        TrimRequest.from_spec_file(path)


def test_a_best_json_written_by_search_loads_unchanged(tmp_path):
    spec = resolve_spec(
        6, drop_layers="5", drop_ffn="1,3", ffn_width="0:40,2:24", layernorm="half", layernorm_replacement="affine",
        attention="relu", intermediate_size=64,
    )
    best = Candidate(spec, predicted_ms=1.5, predicted_speedup=1.3, estimate=0.8, origin="evolved", generation=2,
                     final_estimate=0.75, verified=0.7)
    path = tmp_path / "best.json"
    path.write_text(json.dumps({**spec_file(best, "taylor"), "verified_run": "verify/finalist-0"}, indent=2) + "\n")
    request = TrimRequest.from_spec_file(path)
    assert request.importance == "taylor"
    assert resolve_spec(6, None, request, intermediate_size=64) == spec
    # the untrimmed winner (a target the untrimmed model meets) loads too: the empty request
    untrimmed = Candidate(TrimSpec(), predicted_ms=2.0, predicted_speedup=1.0, estimate=0.8, origin="pattern: none",
                          generation=0)
    path.write_text(json.dumps(spec_file(untrimmed, "magnitude")))
    assert TrimRequest.from_spec_file(path) == TrimRequest()


def test_the_config_of_a_saved_trim_loads_as_a_spec(tiny_model, tmp_path):
    trimmed = trimbert.trim(tiny_model, drop_ffn="1", ffn_width="0:8", layernorm="3.attn", attention="sigmoid")
    trimbert.save(trimmed, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert TrimSpec.from_dict(config["trim_spec"]) == trimmed.config.spec
    assert TrimRequest.from_spec_file(tmp_path / "model" / "config.json") == TrimRequest.from_spec(trimmed.config.spec)


def test_a_saved_config_with_a_coerced_value_is_refused():
    with pytest.raises(TrimbertError) as caught:
        TrimSpec.from_dict({"drop_ffn": [1.0], "attention": "softmax", "layernorm": []})
    assert str(caught.value) == f"trim spec: drop_ffn: {EXPECT_BLOCKS}, got [1.0]"
    with pytest.raises(TrimbertError) as caught:
        TrimSpec.from_dict([["drop_ffn", [1]]])
    assert str(caught.value) == 'trim spec: expected an object of trim keys, got [["drop_ffn", [1]]]'
    assert TrimSpec.from_dict({"ffn_width": {"3": 8, 0: 4}}).ffn_width == ((0, 4), (3, 8))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(drop_ffn=[1.7]), "--drop-ffn: expected a list of whole block indices, not [1.7]"),
        (dict(drop_ffn=[True]), "--drop-ffn: expected a list of whole block indices, not [True]"),
        (dict(drop_layers=["1,2"]), "--drop-layers: expected a list of whole block indices, not ['1,2']"),
        (dict(ffn_width={"0": 5.5}), "--ffn-width: expected block:width pairs of whole numbers, not {'0': 5.5}"),
        (dict(ffn_width={0: True}), "--ffn-width: expected block:width pairs of whole numbers, not {0: True}"),
        (dict(layernorm=[0]), "--layernorm: expected a list of LayerNorm names, not [0]"),
        (dict(layernorm=5), "--layernorm: expected a string in the CLI syntax, not 5"),
        (dict(attention=["relu"]), "--attention: expected a string in the CLI syntax, not ['relu']"),
    ],
)
def test_the_python_api_does_not_coerce_either(values, message):
    with pytest.raises(TrimbertError) as caught:
        TrimRequest(**values)
    assert str(caught.value) == message
    assert TrimRequest(ffn_width={"0": 8, 3: 4}).ffn_width == "0:8,3:4"
    assert TrimRequest(drop_ffn=3, layernorm=["0.attn", "1.ffn"]).to_dict() == {"drop_ffn": "3", "layernorm": "0.attn,1.ffn"}


@pytest.mark.parametrize(
    ("trim_spec", "problem"),
    [
        ({"drop_ffn": 3}, f"trim_spec.drop_ffn: {EXPECT_BLOCKS}, got 3"),
        ({"drop_ffn": [1.7]}, f"trim_spec.drop_ffn: {EXPECT_BLOCKS}, got [1.7]"),
        ({"ffn_width": {"0": 5.5}}, f'trim_spec.ffn_width: {EXPECT_WIDTHS}, got {{"0": 5.5}}'),
    ],
)
def test_trim_and_finetune_refuse_a_bad_spec_file_in_one_line(run_cli, tiny_checkpoint, tmp_path, trim_spec, problem):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"trim_spec": trim_spec}))
    for command in (("trim",), ("finetune", "--task", "sst2")):
        code, stdout, err = run_cli(*command, tiny_checkpoint, "--spec", path, "--out", tmp_path / "out")
        assert (code, stdout, err) == (2, "", f"error: --spec: {path}: {problem}\n")
        assert not (tmp_path / "out").exists()
