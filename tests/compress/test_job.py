"""trimbert compress's job: stages end to end on a tiny fine-tuned-looking model, resume, U* choice."""

import json

import pytest
import torch
from transformers import BertForSequenceClassification

from tests.conftest import GLUE_DIR, tiny_config
from tests.recorded_latency import recorded_ms, use_recorded_latency
from trimbert.compress import job as compress_job
from trimbert.compress import stages as compress_stages
from trimbert.compress.job import STAGES, _finetune_settings, open_job, run_compress
from trimbert.compress.report import write_report
from trimbert.compress.settings import CompressSettings
from trimbert.compress.stages import u_star
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.model import checkpoint
from trimbert.spec import TrimSpec
from trimbert.train.settings import FinetuneSettings


@pytest.fixture
def tiny_run(tmp_path, minilm_dir):
    return make_tiny_run(tmp_path, minilm_dir)


def make_tiny_run(tmp_path, minilm_dir, **changes):
    """A 2-block classifier with a 'trained' SST-2 head and the MiniLM tokenizer, saved like a run folder
    (its fine-tune settings with ``changes``)."""
    torch.manual_seed(0)
    config = tiny_config(vocab_size=30522, num_hidden_layers=2, num_labels=2, max_position_embeddings=128)
    model = BertForSequenceClassification(config).eval()
    folder = tmp_path / "tiny-run"
    checkpoint.write_checkpoint(model, folder, tokenizer=checkpoint.load_tokenizer(minilm_dir))
    settings = {"max_length": 32, "max_eval_samples": 64, "epochs": 1.0, "max_train_samples": 32, **changes}
    (folder / "metrics.json").write_text(json.dumps({"kind": "finetune", "variant": "tiny", "model": "x", "extra": {"settings": settings}}))
    return folder


SOURCE = DataSource(task="sst2", data_dir=str(GLUE_DIR))
# replans 0: the latency predictor trusted (tests/compress/test_replan.py checks the re-plans; the end-to-end test
# below runs one real check)
SETTINGS = CompressSettings(speedup=1.02, samples=16, seq_len=16, batch_size=2, threads=1, probes=5,
                            bench_seconds=1.0, replans=0)


def test_u_star_is_the_fastest_runtime_within_half_a_point():
    accuracy = {"pytorch": 0.80, "onnxruntime": 0.80, "onnxruntime-int8": 0.797, "openvino-int8": 0.78}
    latency = {"pytorch": 40.0, "onnxruntime": 30.0, "onnxruntime-int8": 20.0, "openvino-int8": 10.0}
    assert u_star(accuracy, latency) == "onnxruntime-int8"
    assert u_star({**accuracy, "openvino-int8": 0.796}, latency) == "openvino-int8"


def test_compress_runs_every_stage_and_resumes_after_a_failure(tiny_run, tmp_path, monkeypatch):
    """Every stage runs for real but the predictor's, fitted on recorded probe timings. The reference and bench
    stages time the model in every runtime: that is what they are for, so only what no machine load changes is
    asserted of them (U*'s choice by its own rule, a speed-up inside its own interval), never a time."""
    out = tmp_path / "job"
    cache = tmp_path / "cache"
    probe_runs = use_recorded_latency(monkeypatch)

    def broken_export(self, job):
        raise RuntimeError("disk full")

    monkeypatch.setattr(compress_stages.Stages, "export", broken_export)
    settings = SETTINGS.updated(replans=1)
    with pytest.raises(RuntimeError):
        run_compress(str(tiny_run), SOURCE, out, settings, cache_dir=cache)
    saved = json.loads((out / "compress.json").read_text())
    assert list(saved["stages"]) == ["reference", "predictor", "compress"]
    assert len(probe_runs) == 1 and saved["stages"]["compress"]["untrimmed_predicted_ms"] == pytest.approx(recorded_ms(TrimSpec()))
    monkeypatch.undo()

    def never(self, job):
        raise AssertionError("a finished stage ran again")

    for stage in ("reference", "predictor", "compress"):
        monkeypatch.setattr(compress_stages.Stages, stage, never)
    said = []
    job = run_compress(str(tiny_run), SOURCE, out, settings, cache_dir=cache, on_progress=lambda s, m: said.append((s, m)))
    assert list(job.stages) == [stage for stage in STAGES if stage != "recover"]
    assert said[:3] == [(stage, "done before (resumed)") for stage in ("reference", "predictor", "compress")]
    reference = job.stages["reference"]
    assert set(reference["accuracy"]) == {"pytorch", *compress_stages.installed_runtimes()}
    # --runtime auto: U*'s runtime (an export: ONNX Runtime fp32 when U* is PyTorch itself)
    assert compress_stages.DEPLOY_RUNTIME[reference["target"]] == reference["u_star"] or (
        reference["u_star"], reference["target"]) == ("pytorch", "onnx")
    spec = job.stages["compress"]["spec"]
    assert spec.get("heads") or spec.get("ffn_width") or spec.get("drop_ffn")  # something was removed
    # one real check: the compressed model exported and timed beside U*; a second pass only if it measured short
    first, *more = job.stages["compress"]["passes"]
    assert first["low"] <= first["speedup"] <= first["high"] and first["asked"] == 1.02 and first["measured"] == first["speedup"]
    assert len(more) == (first["speedup"] < 1.02 * 0.98) and job.stages["compress"]["check_seconds"] == first["check_seconds"]
    if more:
        assert more[0]["budget_ms"] == pytest.approx(first["budget_ms"] * first["speedup"] / 1.02) and "speedup" not in more[0]
    loaded = checkpoint.load(out / "compressed")
    assert loaded.config.trim_spec["heads" if "heads" in spec else "drop_ffn"] == spec["heads" if "heads" in spec else "drop_ffn"]
    assert (out / "model" / "model.onnx").is_file()
    bench = job.stages["bench"]
    assert bench["u_star"] == u_star(reference["accuracy"], bench["untrimmed_latency_ms"])
    assert bench["low"] <= bench["speedup"] <= bench["high"]
    summary = write_report(out, job)
    assert summary["speedup"] == bench["speedup"] and summary["value"] == job.stages["evaluate"]["value"]
    assert "| U* | untrimmed in " in (out / "report.md").read_text()
    steps = [f"{first['speedup']:.2f}× at {first['budget_ms']:.2f} ms"] + [f"kept unchecked at {p['budget_ms']:.2f} ms" for p in more]
    assert ("passes (speed-up vs U* in a short check, under the budget)", " → ".join(steps)) in summary["rows"]
    assert ("checks wall time", f"{first['check_seconds']:.0f} s") in summary["rows"]


def test_a_rerun_keeps_the_stages_whose_settings_did_not_change(tiny_run, tmp_path):
    out = tmp_path / "job"
    job = open_job(out, str(tiny_run), SOURCE, SETTINGS, force=False)
    job.stages = {stage: {"fingerprint": job.stage_fingerprint(stage)} for stage in ("reference", "predictor", "compress", "export")}
    compress_job._save(out, job)
    assert list(open_job(out, str(tiny_run), SOURCE, SETTINGS, force=False).stages) == ["reference", "predictor", "compress", "export"]
    # another target: the reference and the predictor stay
    assert list(open_job(out, str(tiny_run), SOURCE, SETTINGS.updated(speedup=2.0), force=False).stages) == ["reference", "predictor"]
    # a recovery added: the compression stays too, the export of its output does not
    assert list(open_job(out, str(tiny_run), SOURCE, SETTINGS.updated(recover="distill"), force=False).stages) == [
        "reference", "predictor", "compress"]
    assert list(open_job(out, str(tiny_run), SOURCE, SETTINGS.updated(seq_len=32), force=False).stages) == []


def test_another_model_in_the_same_folder_is_refused_without_force(tiny_run, tmp_path, minilm_dir):
    out = tmp_path / "job"
    open_job(out, str(tiny_run), SOURCE, SETTINGS, force=False)
    with pytest.raises(TrimbertError, match="holds a compress of another model or data; use --force"):
        open_job(out, str(minilm_dir), SOURCE, SETTINGS, force=False)
    assert open_job(out, str(minilm_dir), SOURCE, SETTINGS, force=True).stages == {}


def test_a_model_without_a_task_head_is_refused(tmp_path, minilm_dir):
    with pytest.raises(TrimbertError, match="has no trained sst2 head: compress a fine-tuned model"):
        run_compress(str(minilm_dir), SOURCE, tmp_path / "job", SETTINGS, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "job").exists()


def test_settings_need_exactly_one_target():
    with pytest.raises(TrimbertError, match="give one target"):
        CompressSettings(runtime="onnx")
    with pytest.raises(TrimbertError, match="give one target"):
        CompressSettings(speedup=1.5, latency_ms=3.0)
    with pytest.raises(TrimbertError, match="--search-minutes: only with --method search"):
        CompressSettings(speedup=1.5, search_minutes=5.0)


def test_the_input_runs_settings_are_read_from_its_metrics_json(tiny_run, tmp_path):
    assert _finetune_settings(str(tiny_run)) == FinetuneSettings(max_length=32, max_eval_samples=64, epochs=1.0,
                                                                 max_train_samples=32)
    assert _finetune_settings(str(tmp_path)) == FinetuneSettings()  # a plain model folder: the defaults
    (tiny_run / "metrics.json").write_text("{not json")
    with pytest.raises(TrimbertError, match=r"^\S+/tiny-run/metrics.json: unreadable \(Expecting property name"):
        _finetune_settings(str(tiny_run))
    (tiny_run / "metrics.json").write_text(json.dumps({"kind": "finetune", "variant": "v", "model": "m", "extra": {"settings": {"epochs": -1.0}}}))
    with pytest.raises(TrimbertError, match=r"tiny-run/metrics.json: its fine-tune settings are not valid \(--epochs"):
        _finetune_settings(str(tiny_run))
