"""The CLI's options are generated from the declared-once settings and from TrimRequest."""

import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from trimbert.cli import app
from trimbert.cli.options import Group, trim_request, with_options
from trimbert.core.settings import Settings
from trimbert.errors import TrimbertError
from trimbert.measure.bench import BenchSettings
from trimbert.spec import TrimRequest
from trimbert.train.settings import DistillSettings, FinetuneSettings

TRIM_FLAGS = {item.metadata["flag"] for item in TrimRequest.options()}

def _flags(command: str) -> set[str]:
    click_command = typer.main.get_command(app).commands[command]
    return {flag for param in click_command.params for flag in param.opts if flag.startswith("--")}

def test_finetune_has_every_trim_data_finetune_and_distill_option():
    expected = (
        TRIM_FLAGS
        | {FinetuneSettings.flag(name) for name in FinetuneSettings.model_fields}
        | {DistillSettings.flag(name) for name in DistillSettings.model_fields}
        | {
            "--task",
            "--data-dir",
            "--train",
            "--validation",
            "--text-column",
            "--text-pair-column",
            "--label-column",
            "--task-type",
            "--label-names",
        }
        | {"--out", "--samples", "--teacher", "--variant", "--portable", "--force", "--json", "--spec"}
    )
    assert _flags("finetune") == expected
    assert "--distill-alpha-hidden" in expected and "--eval-batch-size" in expected

def test_trim_has_every_trim_option_and_its_data_sample():
    assert _flags("trim") == TRIM_FLAGS | {
        "--out",
        "--task",
        "--data-dir",
        "--samples",
        "--seed",
        "--max-length",
        "--portable",
        "--force",
        "--spec",
    }

def test_bench_has_every_bench_setting():
    settings = {BenchSettings.flag(name) for name in BenchSettings.model_fields}
    assert settings == {
        "--batch-size",
        "--seq-len",
        "--mode",
        "--repeats",
        "--warmup",
        "--device",
        "--threads",
        "--also-train",
        "--tolerance",
        "--max-seconds",
        "--max-other-cpu",
        "--runtime",
    }
    assert _flags("bench") == settings | {"--vs", "--name", "--vs-name", "--out", "--force", "--json"}

def test_evaluate_takes_a_subset_with_its_own_flag_for_the_eval_batch_size():
    assert _flags("evaluate") == {
        "--max-length",
        "--max-eval-samples",
        "--batch-size",
        "--seed",
        "--task",
        "--data-dir",
        "--validation",
        "--int8",
        "--openvino",
        "--json",
    }

class _Demo(Settings):
    ratio: float = Field(0.5, gt=0, description="A ratio.")
    count: int | None = Field(None, ge=1, description="A count.")
    loud: bool = Field(False, description="Shout.")

def _demo_app(seen: dict) -> typer.Typer:
    demo = typer.Typer()

    @demo.command()
    @with_options(Group("settings", _Demo), trim_request())
    def run(name: str, settings: _Demo, request: TrimRequest) -> None:
        seen.update(name=name, settings=settings, request=request)

    return demo

def test_a_declared_setting_becomes_a_validated_option():
    seen: dict = {}
    result = CliRunner().invoke(
        _demo_app(seen), ["x", "--ratio", "2", "--count", "3", "--loud", "--drop-ffn", "1,3"]
    )
    assert result.exit_code == 0, result.output
    assert seen == {
        "name": "x",
        "settings": _Demo(ratio=2.0, count=3, loud=True),
        "request": TrimRequest(drop_ffn="1,3"),
    }
    result = CliRunner().invoke(_demo_app(seen), ["x", "--help"])
    assert "A ratio." in result.output and "--layernorm-replacement" in result.output

def test_a_bad_value_is_a_one_line_error_naming_the_flag():
    result = CliRunner().invoke(_demo_app({}), ["x", "--ratio", "nan"])
    assert isinstance(result.exception, TrimbertError)
    assert str(result.exception) == "--ratio: must be a finite number, got nan"

@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "nan"], "error: --epochs: must be a finite number, got nan"),
        (["--lr", "inf"], "error: --lr: must be a finite number, got inf"),
        (["--warmup-ratio", "1.5"], "error: --warmup-ratio: must be less than 1.0, got 1.5"),
        (["--distill-temperature", "0"], "error: --distill-temperature: must be greater than 0.0, got 0.0"),
    ],
)
def test_finetune_refuses_non_finite_and_out_of_range_values_before_any_work(run_cli, tmp_path, args, message):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("finetune", "minilm", "--task", "sst2", "--out", out, *args)
    assert code == 2 and stderr.strip() == message and not out.exists()
