"""Checkpoints that load without trimbert: stock-BERT trims saved as plain BERT, the rest with --portable code.

The loads without trimbert run in ONE subprocess (module fixture ``foreign``) in which ``import trimbert``
is blocked by a meta-path finder placed before the editable install's; the subprocess asserts that
the block works and that no trimbert module got imported, and returns each model's outputs.
"""

import copy
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
import torch
from conftest import make_tiny_batch, tiny_config
from transformers import BertForSequenceClassification

import trimbert
from trimbert import spec as spec_init
from trimbert.model import modeling
from trimbert.model.portable import REMOTE_FORMAT, auto_map, remote_code_files, saved_format
from trimbert.model.structure import DroppedFFN, applied_spec, block_positions, original_num_layers
from trimbert.spec import NORMALIZER_NAMES, trimspec

_FOREIGN = textwrap.dedent(
    """
    import sys


    class _NoTrimbert:
        def find_spec(self, name, path=None, target=None):
            if name == "trimbert" or name.startswith("trimbert."):
                raise ImportError(f"{name} is blocked in this process")
            return None


    sys.meta_path.insert(0, _NoTrimbert())
    try:
        import trimbert  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the guard failed: trimbert is importable")

    import json

    import torch
    import transformers

    job = json.loads(sys.argv[1])
    batch = torch.load(job["batch"])
    results = {}
    for name, case in job["cases"].items():
        kwargs = {"trust_remote_code": True} if case["remote"] else {}
        try:
            model = getattr(transformers, case["auto"]).from_pretrained(case["dir"], **kwargs).eval()
        except Exception as error:  # a folder that needs trimbert is refused
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        with torch.no_grad():
            output = model(**batch)
        config = transformers.AutoConfig.from_pretrained(case["dir"], **kwargs)
        results[name] = {
            "class": type(model).__name__,
            "module": type(model).__module__,
            "config_class": type(config).__name__,
            "attention": model.config._attn_implementation,
            "output": output.logits if hasattr(output, "logits") else output.last_hidden_state,
        }
    leaked = sorted(name for name, module in sys.modules.items() if name.split(".")[0] == "trimbert" and module)
    if leaked:
        raise SystemExit(f"trimbert modules were imported: {leaked}")
    torch.save(results, job["out"])
    """
)

FULL_TRIM = {"drop_ffn": "1,3", "attention": "relu", "layernorm": "half"}


def _tiny(num_labels: int = 3) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config(num_labels=num_labels)).eval()


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


# name -> (trim options, save(portable=...), Auto class, load with trust_remote_code)
CASES = {
    "width": (dict(ffn_width=40), False, "AutoModelForSequenceClassification", False),
    "layers": (dict(drop_layers="1,2"), True, "AutoModelForSequenceClassification", False),
    "layers-width": (dict(drop_layers="0", ffn_width=48), False, "AutoModelForSequenceClassification", False),
    "full-portable": (FULL_TRIM, True, "AutoModelForSequenceClassification", True),
    "full-portable-base": (FULL_TRIM, True, "AutoModel", True),
    "full-plain": (FULL_TRIM, False, "AutoModelForSequenceClassification", False),
    "full-plain-trusted": (FULL_TRIM, False, "AutoModelForSequenceClassification", True),
    "dyt": ({**FULL_TRIM, "layernorm_replacement": "dyt"}, True, "AutoModelForSequenceClassification", True),
    "heads": (dict(heads="0:1,2=1+3", ffn_width=40, drop_layers="3"), True, "AutoModelForSequenceClassification", True),
    **{
        f"attention-{name}": (
            dict(attention=name, drop_ffn="2"),
            True,
            "AutoModelForSequenceClassification",
            True,
        )
        for name in NORMALIZER_NAMES
    },
}


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Every case saved, its in-process outputs, and what a process without trimbert loaded from it."""
    root = tmp_path_factory.mktemp("portable")
    batch = make_tiny_batch()
    torch.save(batch, root / "batch.pt")
    saved, job = {}, {}
    for name, (options, portable, auto, remote) in CASES.items():
        trimmed = trimbert.trim(_tiny(), **options)
        folder = trimbert.save(trimmed, root / name, portable=portable)
        with torch.no_grad():
            output = (
                trimmed.base_model(**batch).last_hidden_state
                if auto == "AutoModel"
                else trimmed(**batch).logits
            )
        saved[name] = {"dir": folder, "model": trimmed, "expected": output}
        job[name] = {"dir": str(folder), "auto": auto, "remote": remote}
    env = {**os.environ, "HF_MODULES_CACHE": str(root / "hf-modules"), "HF_HUB_OFFLINE": "1"}
    payload = json.dumps({"batch": str(root / "batch.pt"), "out": str(root / "out.pt"), "cases": job})
    result = subprocess.run(
        [sys.executable, "-I", "-c", _FOREIGN, payload],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    loaded = torch.load(root / "out.pt")
    return {name: {**saved[name], "foreign": loaded[name]} for name in CASES}


def _config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


def _py_files(folder) -> set[str]:
    return {path.name for path in folder.glob("*.py")}


def test_uniform_ffn_width_is_saved_as_plain_bert_and_loads_without_trimbert(foreign):
    case = foreign["width"]
    config = _config(case["dir"])
    assert config["model_type"] == "bert"
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["num_hidden_layers"] == 4 and config["intermediate_size"] == 40
    assert config["trimbert_intermediate_size"] == 64
    assert config["trimbert_trim_spec"] == case["model"].config.spec.to_dict()
    assert config["trimbert_trim_spec"]["ffn_width"] == {"0": 40, "1": 40, "2": 40, "3": 40}
    assert "trim_spec" not in config and "auto_map" not in config
    assert _py_files(case["dir"]) == set()
    assert saved_format(case["dir"]) == "bert"
    loaded = case["foreign"]
    assert loaded["class"] == "BertForSequenceClassification" and loaded["config_class"] == "BertConfig"
    assert loaded["module"] == "transformers.models.bert.modeling_bert"
    torch.testing.assert_close(loaded["output"], case["expected"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["layers", "layers-width"])
def test_dropped_layers_are_saved_as_plain_bert_and_load_without_trimbert(foreign, name):
    case = foreign[name]
    spec = case["model"].config.spec
    config = _config(case["dir"])
    assert config["model_type"] == "bert"
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["num_hidden_layers"] == 4 - len(spec.drop_layers)
    assert config["trimbert_trim_spec"] == spec.to_dict()
    if name == "layers":  # portable=True changes nothing: plain BERT needs no code
        assert spec.drop_layers == (1, 2) and not spec.ffn_width
        assert config["intermediate_size"] == 64 and "trimbert_intermediate_size" not in config
    else:
        assert spec.drop_layers == (0,) and spec.ffn_widths == {1: 48, 2: 48, 3: 48}
        assert config["intermediate_size"] == 48 and config["trimbert_intermediate_size"] == 64
    assert _py_files(case["dir"]) == set() and "auto_map" not in config
    assert case["foreign"]["class"] == "BertForSequenceClassification"
    torch.testing.assert_close(case["foreign"]["output"], case["expected"], atol=1e-5, rtol=0)


def test_stock_weights_are_exactly_stock_bert_weights(foreign):
    for name in ("width", "layers", "layers-width"):
        model, info = BertForSequenceClassification.from_pretrained(
            foreign[name]["dir"], output_loading_info=True
        )
        assert all(not keys for keys in info.values()), (name, info)
        assert set(model.state_dict()) == set(foreign[name]["model"].state_dict())
        torch.testing.assert_close(_logits(model.eval(), make_tiny_batch()), foreign[name]["expected"], atol=0, rtol=0)


def test_full_trim_portable_loads_with_remote_code_without_trimbert(foreign):
    case = foreign["full-portable"]
    config = _config(case["dir"])
    assert config["model_type"] == "trimbert"
    assert config["architectures"] == ["TrimBertForSequenceClassification"]
    assert config["auto_map"] == auto_map()
    assert (
        config["auto_map"]["AutoModelForSequenceClassification"]
        == "modeling.TrimBertForSequenceClassification"
    )
    assert config["trim_spec"] == case["model"].config.spec.to_dict()
    files = remote_code_files()
    assert (
        _py_files(case["dir"]) == set(files) >= {"modeling.py", "attention.py", "structure.py", "trimspec.py"}
    )
    for name, text in files.items():
        assert (case["dir"] / name).read_text() == text
    assert saved_format(case["dir"]) == REMOTE_FORMAT
    loaded = case["foreign"]
    assert loaded["class"] == "TrimBertForSequenceClassification"
    assert loaded["module"].startswith("transformers_modules.") and loaded["module"].endswith(".modeling")
    assert loaded["config_class"] == "TrimBertConfig" and loaded["attention"] == "trimbert_relu"
    torch.testing.assert_close(loaded["output"], case["expected"], atol=1e-5, rtol=0)
    with_trimbert = _logits(trimbert.load(case["dir"]), make_tiny_batch())
    torch.testing.assert_close(loaded["output"], with_trimbert, atol=1e-6, rtol=0)


def test_portable_base_model_loads_through_auto_model(foreign):
    loaded = foreign["full-portable-base"]["foreign"]
    assert loaded["class"] == "TrimBertModel" and loaded["attention"] == "trimbert_relu"
    torch.testing.assert_close(loaded["output"], foreign["full-portable-base"]["expected"], atol=1e-5, rtol=0)
    # The remote classes really apply the trim: the untrimmed BERT's hidden states are far from these.
    with torch.no_grad():
        untrimmed = _tiny().base_model(**make_tiny_batch()).last_hidden_state
    assert (untrimmed - loaded["output"]).abs().max() > 1e-2  # 1000 times the tolerance above


def test_full_trim_without_portable_stays_trimbert_and_needs_trimbert(foreign):
    for name in ("full-plain", "full-plain-trusted"):
        case = foreign[name]
        config = _config(case["dir"])
        assert config["model_type"] == "trimbert" and "auto_map" not in config
        assert config["trim_spec"] == case["model"].config.spec.to_dict()
        assert _py_files(case["dir"]) == set()
        assert saved_format(case["dir"]) == "trimbert"
        assert "trimbert" in case["foreign"]["error"], case["foreign"]
        assert "class" not in case["foreign"]


def test_pruned_heads_load_portable(foreign):
    case = foreign["heads"]
    config = _config(case["dir"])
    assert config["model_type"] == "trimbert" and config["trim_spec"]["heads"] == {"0": 1, "2": 2}
    assert config["num_attention_heads"] == 4 and "auto_map" in config
    assert case["foreign"]["class"] == "TrimBertForSequenceClassification"
    torch.testing.assert_close(case["foreign"]["output"], case["expected"], atol=1e-5, rtol=0)


def test_dyt_replacement_loads_portable(foreign):
    case = foreign["dyt"]
    assert case["foreign"]["class"] == "TrimBertForSequenceClassification"
    torch.testing.assert_close(case["foreign"]["output"], case["expected"], atol=1e-5, rtol=0)
    # The remote code carries DynamicTanh and the weights its alphas (one per stripped LayerNorm).
    code = "".join(path.read_text() for path in case["dir"].glob("*.py"))
    assert "class DynamicTanh(" in code
    keys = safetensors.torch.load_file(case["dir"] / "model.safetensors").keys()
    assert sorted(key for key in keys if key.endswith(".alpha")) == [
        f"bert.encoder.layer.{block}.attention.output.LayerNorm.alpha" for block in range(3)  # "half" of 6
    ]


@pytest.mark.parametrize("name", NORMALIZER_NAMES)
def test_each_attention_normalizer_loads_portable(foreign, name):
    case = foreign[f"attention-{name}"]
    loaded = case["foreign"]
    assert loaded["class"] == "TrimBertForSequenceClassification"
    assert loaded["attention"] == "trimbert_" + name.replace("-", "_")
    torch.testing.assert_close(loaded["output"], case["expected"], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        loaded["output"], _logits(trimbert.load(case["dir"]), make_tiny_batch()), atol=1e-6, rtol=0
    )


def test_stock_save_reloads_through_trimbert_with_its_trim(foreign, tmp_path):
    case = foreign["layers-width"]
    model = trimbert.load(case["dir"])
    assert type(model).__name__ == "TrimBertForSequenceClassification"
    assert model.config.model_type == "trimbert" and model.config.intermediate_size == 64
    assert model.config.spec == case["model"].config.spec
    assert model.config.spec.notes == {"ffn_width_rule": "magnitude"}
    assert applied_spec(model) == case["model"].config.spec
    assert original_num_layers(model) == 4 and block_positions(model) == {1: 0, 2: 1, 3: 2}
    batch = make_tiny_batch()
    assert torch.equal(_logits(model, batch), case["expected"])
    # A further trim composes in the ORIGINAL numbering: block 1 is the first block present.
    again = trimbert.trim(model, drop_ffn="1")
    direct = trimbert.trim(copy.deepcopy(case["model"]), drop_ffn="1")
    assert again.config.spec == direct.config.spec
    assert again.config.spec.drop_layers == (0,) and again.config.spec.drop_ffn == (1,)
    assert again.config.spec.ffn_widths == {2: 48, 3: 48}
    assert isinstance(again.base_model.encoder.layer[0].output, DroppedFFN)
    assert torch.equal(_logits(again, batch), _logits(direct, batch))
    out = trimbert.save(again, tmp_path / "again")
    assert _config(out)["model_type"] == "trimbert"  # a dropped FFN needs TrimBert
    assert torch.equal(_logits(trimbert.load(out), batch), _logits(direct, batch))


def test_a_further_stock_trim_stays_plain_bert(foreign, tmp_path):
    model = trimbert.load(foreign["layers-width"]["dir"])
    again = trimbert.trim(model, drop_layers="3", ffn_width=30)
    out = trimbert.save(again, tmp_path / "again")
    config = _config(out)
    assert config["model_type"] == "bert" and config["num_hidden_layers"] == 2
    assert config["intermediate_size"] == 30 and config["trimbert_intermediate_size"] == 64
    assert config["trimbert_trim_spec"]["drop_layers"] == [0, 3]
    assert config["trimbert_trim_spec"]["ffn_width"] == {"1": 30, "2": 30}
    assert config["trimbert_trim_spec"]["notes"] == {"ffn_width_rule": "magnitude"}
    plain = BertForSequenceClassification.from_pretrained(out).eval()
    assert torch.equal(_logits(plain, make_tiny_batch()), _logits(again, make_tiny_batch()))


def test_a_plain_transformers_load_still_knows_its_trim(foreign):
    case = foreign["layers-width"]
    plain = BertForSequenceClassification.from_pretrained(case["dir"]).eval()
    assert type(plain) is BertForSequenceClassification
    assert applied_spec(plain) == case["model"].config.spec
    assert block_positions(plain) == {1: 0, 2: 1, 3: 2}
    again = trimbert.trim(plain, drop_ffn="2")
    direct = trimbert.trim(copy.deepcopy(case["model"]), drop_ffn="2")
    assert again.config.intermediate_size == 64 and again.config.spec == direct.config.spec
    assert not hasattr(again.config, "trimbert_trim_spec")
    assert torch.equal(_logits(again, make_tiny_batch()), _logits(direct, make_tiny_batch()))


@pytest.mark.parametrize(
    "options",
    [
        dict(ffn_width="1:10,3:5"),
        dict(ffn_width="0:40"),
        dict(drop_ffn="1"),
        dict(layernorm="0.attn"),
        dict(attention="sigmoid"),
        dict(heads=2),
    ],
)
def test_trims_stock_bert_cannot_describe_stay_trimbert(tmp_path, options):
    out = trimbert.save(trimbert.trim(_tiny(), **options), tmp_path / "m")
    config = _config(out)
    assert config["model_type"] == "trimbert" and "trimbert_trim_spec" not in config
    assert config["architectures"] == ["TrimBertForSequenceClassification"]


def test_untrimmed_bert_is_saved_unchanged(tmp_path):
    out = trimbert.save(_tiny(), tmp_path / "m", portable=True)
    config = _config(out)
    assert config["model_type"] == "bert" and "trimbert_trim_spec" not in config and "auto_map" not in config
    assert _py_files(out) == set()


def test_remote_code_is_generated_from_trimbert_sources():
    files = remote_code_files()
    assert set(files) == {
        "attention.py",
        "errors.py",
        "modeling.py",
        "parse.py",
        "request.py",
        "resolve.py",
        "spec.py",
        "structure.py",
        "trimspec.py",
    }
    # file -> (module, its trimbert imports made relative)
    rewrites = {
        "modeling.py": (
            modeling,
            {"model.attention": "attention", "model.structure": "structure", "spec.trimspec": "trimspec"},
        ),
        "trimspec.py": (trimspec, {"errors": "errors"}),
        "spec.py": (
            spec_init,
            {
                "spec.parse": "parse",
                "spec.request": "request",
                "spec.resolve": "resolve",
                "spec.trimspec": "trimspec",
            },
        ),
    }
    for name, (module, imports) in rewrites.items():
        expected = open(module.__file__, encoding="utf-8").read()
        for old, new in imports.items():
            assert f"from trimbert.{old} import" in expected
            expected = expected.replace(f"from trimbert.{old} import", f"from .{new} import")
        header = f"# Generated by trimbert {trimbert.__version__} from {module.__name__} (remote code of a --portable checkpoint).\n"
        assert files[name] == header + expected
    for name, text in files.items():
        assert not re.search(r"^\s*(from|import)\s+trimbert\b", text, flags=re.MULTILINE), name
    assert "\nregister_all()\n" in files["modeling.py"]  # the normalizers register on import
