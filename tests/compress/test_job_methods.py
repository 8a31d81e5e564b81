"""trimbert compress's job: --method search, --recover heal+distill, the fingerprints, resuming inside recover.

The reference, export, evaluate and bench stages are stubbed (tests/compress/test_job.py runs them) and the
latency predictor is fitted on recorded timings, so each test runs only what it checks.
"""

import json

import pytest
import torch

import trimbert.search.latency
import trimbert.search.run
from tests.compress.test_job import SETTINGS, SOURCE, make_tiny_run
from tests.conftest import write_sst2
from trimbert.compress import stages as compress_stages
from trimbert.compress.job import STAGES, _save, open_job, run_compress
from trimbert.compress.job import _finetune_settings as compress_job_settings
from trimbert.compress.report import summarize
from trimbert.compress.state import STAGE_SETTINGS, digest
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.model import checkpoint
from trimbert.search.costs import Costs, count_rows
from trimbert.spec import TrimSpec

# recorded costs (ms) of the tiny model's parts: fixed, per block, a block's heads, an FFN's fixed part, its
# neurons, a LayerNorm: the untrimmed 2-block model costs 1 + 2 × (0.5 + 1.5 + 0.5 + 2.0 + 2 × 0.1) = 10.4 ms
COSTS = {"const": 1.0, "block": 0.5, "heads": 1.5, "ffn": 0.5, "neurons": 2.0, "layernorm": 0.1}
REFERENCE = {"accuracy": {"pytorch": 0.5, "onnxruntime": 0.5}, "latency_ms": {"pytorch": 4.0, "onnxruntime": 2.0},
             "u_star": "onnxruntime", "target": "onnx", "metric": "accuracy"}
SMALL_SEARCH = {"score_rows": 16, "final_rows": 24, "population": 3, "generations": 1, "finalists": 2}


@pytest.fixture
def tiny_run(tmp_path, minilm_dir):
    return make_tiny_run(tmp_path, minilm_dir)


def recorded_ms(spec: TrimSpec) -> float:
    layers, heads, intermediate = 2, 4, 64
    ms = COSTS["const"]
    for block in spec.kept_layers(layers):
        ms += COSTS["block"] + COSTS["heads"] * spec.head_counts.get(block, heads) / heads + COSTS["layernorm"]
        if block not in spec.drop_ffn:
            ms += COSTS["ffn"] + COSTS["layernorm"] + COSTS["neurons"] * spec.ffn_widths.get(block, intermediate) / intermediate
    return ms


@pytest.fixture
def small_source(tmp_path):
    """An SST-2 folder of 96 training rows (8 distinct sentences) and 16 dev rows."""
    return DataSource(task="sst2", data_dir=str(write_sst2(tmp_path / "SST-2", train_rows=96, dev_rows=16)))


@pytest.fixture
def quick(monkeypatch):
    """Recorded probe timings and search work costs; the reference stage's result given; export, evaluate
    and bench stubbed; the search's effort small. Returns the stages each run ran, in order."""
    ran = []
    recorded_costs = Costs(step_s=0.1, row_s=0.001, probe_row_s=0.001, load_s=1.0)
    monkeypatch.setattr(trimbert.search.run, "measure_costs",
                        lambda model, source, finetune, **_: (recorded_costs, count_rows(source, finetune)))

    def measure_specs(model, specs, conditions, **_):
        return [{"spec": spec.to_dict(), "summary": spec.summary(), "measured_ms": recorded_ms(spec),
                 "p10_ms": recorded_ms(spec), "p90_ms": recorded_ms(spec)} for spec in specs]

    monkeypatch.setattr(trimbert.search.latency, "measure_specs", measure_specs)
    monkeypatch.setitem(compress_stages.SEARCH_OVERRIDES, "verify", 0)
    for key, value in SMALL_SEARCH.items():
        monkeypatch.setitem(compress_stages.SEARCH_OVERRIDES, key, value)

    def stub(stage, result):
        def run(self, job):
            ran.append(stage)
            return dict(result)
        monkeypatch.setattr(compress_stages.Stages, stage, run)

    def recording(stage):
        real = getattr(compress_stages.Stages, stage)

        def run(self, job):
            ran.append(stage)
            return real(self, job)
        monkeypatch.setattr(compress_stages.Stages, stage, run)

    stub("reference", REFERENCE)
    for stage in ("predictor", "compress", "recover"):
        recording(stage)
    for stage in ("export", "evaluate", "bench"):
        stub(stage, {})
    return ran


def _run(tiny_run, source, out, settings, said=None):
    return run_compress(str(tiny_run), source, out, settings, cache_dir=out.parent / "cache",
                        on_progress=None if said is None else lambda stage, message: said.append((stage, message)))


def test_method_search_trims_the_model_to_the_searchs_winner_reusing_reference_and_predictor(tiny_run, small_source,
                                                                                             tmp_path, quick):
    out = tmp_path / "job"
    settings = SETTINGS.updated(speedup=1.2)
    first = _run(tiny_run, small_source, out, settings)
    assert first.stages["compress"]["method"] == "retraining-free"
    predictor = first.stages["predictor"]["predictor"]
    quick.clear()
    said = []
    job = _run(tiny_run, small_source, out, settings.updated(method="search"), said)
    assert quick == ["compress", "export", "evaluate", "bench"]  # another --method: the reference and the predictor stay
    assert said[:2] == [("reference", "done before (resumed)"), ("predictor", "done before (resumed)")]
    compressed = job.stages["compress"]
    searched = json.loads((out / "search" / "search.json").read_text())
    winner = TrimSpec.from_dict(searched["best"]["spec"])
    assert compressed["method"] == "search" and TrimSpec.from_dict(compressed["spec"]) == winner
    assert compressed["summary"] == winner.summary() and not winner.is_empty
    assert checkpoint.load(out / "compressed").config.spec == winner  # the input model trimmed to it
    # the search ran with the job's predictor, under the job's budget: 1.2x over U* (the target runtime is U*'s)
    assert compressed["predictor_reused"] is True and searched["predictor"]["probes"] == predictor["probes"]
    assert searched["target_speedup"] == 1.2 and searched["speedup_window"] == [1.2, pytest.approx(1.32)]
    assert compressed["untrimmed_predicted_ms"] == pytest.approx(10.4)
    assert compressed["budget_ms"] == pytest.approx(10.4 / 1.2)
    assert compressed["predicted_ms"] == pytest.approx(recorded_ms(winner)) and compressed["predicted_ms"] <= compressed["budget_ms"]
    assert compressed["candidates"] == len(searched["candidates"]) and compressed["search_seconds"] > 0
    # each block: all or 2 of the 4 heads, the FFN at 64, 32 or dropped (the predictor's probe space)
    assert set(winner.head_counts.values()) <= {2} and set(winner.ffn_widths.values()) <= {32} and not winner.drop_layers
    summary = summarize(_finished(job))
    assert summary["method"] == "search" and summary["trim"] == compressed["spec"]
    assert ("compress wall time (evolutionary search)", f"{compressed['search_seconds']:.0f} s") in summary["rows"]


def test_the_search_is_told_the_target_runtimes_speedup_over_the_untrimmed_model(tiny_run, tmp_path):
    # U* is int8, twice as fast as the fp32 target: 1.5x over U* is 3x over the untrimmed model in the target
    reference = {**REFERENCE, "latency_ms": {"onnxruntime": 4.0, "onnxruntime-int8": 2.0}, "u_star": "onnxruntime-int8"}
    job = open_job(tmp_path / "job", str(tiny_run), SOURCE, SETTINGS.updated(speedup=1.5, method="search"), force=False)
    job.stages["reference"] = reference
    config = checkpoint.load_config(str(tiny_run))
    stages = compress_stages.Stages(str(tiny_run), SOURCE, None, None, None, SETTINGS.updated(speedup=1.5, method="search"),
                                    None, tmp_path, tmp_path, lambda stage, message: None)
    searched = stages.search_settings(job, config)
    assert (searched.speedup, searched.latency_ms, searched.runtime) == (3.0, None, "onnx")
    assert (searched.widths, searched.heads_choices, searched.max_drop_layers, searched.undershoot) == ("32", "2", 0, 0.0)
    assert searched.budget_minutes is None
    stages.settings = SETTINGS.updated(speedup=1.5, method="search", search_minutes=12.0)
    assert stages.search_settings(job, config).budget_minutes == 12.0
    stages.settings = SETTINGS.updated(speedup=None, latency_ms=4.0, method="search")
    assert (stages.search_settings(job, config).speedup, stages.search_settings(job, config).latency_ms) == (None, 4.0)
    stages.settings = SETTINGS.updated(speedup=1.5, method="search")
    job.stages["reference"] = {**reference, "latency_ms": {"onnxruntime": 1.0, "onnxruntime-int8": 2.0}}
    with pytest.raises(TrimbertError, match=r"--speedup 1.5 over U\* \(onnxruntime-int8\): the untrimmed model in onnxruntime is"):
        stages.search_settings(job, config)


def test_fingerprints_keep_what_the_changed_settings_do_not_touch(tiny_run, tmp_path):
    out = tmp_path / "job"
    job = open_job(out, str(tiny_run), SOURCE, SETTINGS, force=False)

    def kept(settings):
        saved = open_job(out, str(tiny_run), SOURCE, settings, force=False)
        saved.stages = {stage: {"fingerprint": saved.stage_fingerprint(stage)} for stage in STAGES}
        _save(out, saved)
        return lambda changed: list(open_job(out, str(tiny_run), SOURCE, changed, force=False).stages)

    after = kept(SETTINGS)
    assert after(SETTINGS.updated(method="search")) == ["reference", "predictor"]
    assert after(SETTINGS.updated(recover="heal+distill")) == ["reference", "predictor", "compress"]
    assert after(SETTINGS.updated(heal_steps=7)) == list(STAGES)  # no heal to redo
    assert after(SETTINGS.updated(replans=2)) == ["reference", "predictor"]  # checked passes: another compression
    after = kept(SETTINGS.updated(method="search"))
    assert after(SETTINGS.updated(method="search", samples=64, width_multiple=8, replans=3)) == list(STAGES)  # retraining-free only
    assert after(SETTINGS.updated(method="search", speedup=1.5)) == ["reference", "predictor"]
    assert after(SETTINGS.updated(method="search", search_minutes=5.0)) == ["reference", "predictor"]
    after = kept(SETTINGS.updated(recover="heal+distill"))
    assert after(SETTINGS.updated(recover="heal+distill", heal_steps=7)) == ["reference", "predictor", "compress"]
    # a retraining-free job with --replans 0 has the fingerprints of a job written before --method, --heal-steps and
    # --replans existed
    old = {"reference": STAGE_SETTINGS["reference"], "predictor": STAGE_SETTINGS["predictor"],
           "compress": ("speedup", "latency_ms", "samples", "units", "width_multiple"), "recover": ("recover",)}
    names = [name for stage in old.values() for name in stage]
    assert job.stage_fingerprint("bench") == digest(
        {"model": job.model, "data": job.data, "settings": {name: job.settings[name] for name in names}})


def test_heal_then_distill_resumes_after_a_failure_in_recover(minilm_dir, small_source, tmp_path, quick, monkeypatch):
    out = tmp_path / "job"
    settings = SETTINGS.updated(recover="heal+distill", heal_steps=3)
    # batches of 8: 4 distillation steps (the first, warming up, at learning rate 0)
    tiny_run = make_tiny_run(tmp_path, minilm_dir, batch_size=8)

    def full_disk(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(compress_stages, "finetune", full_disk)  # the distillation fails after the heal
    said = []
    with pytest.raises(RuntimeError, match="disk full"):
        _run(tiny_run, small_source, out, settings, said)
    assert list(json.loads((out / "compress.json").read_text())["stages"]) == ["reference", "predictor", "compress"]
    texts = compress_stages.training_texts(small_source.load()[0]["train"])
    assert len(texts) == 8  # write_sst2's sentences, each once
    assert ("recover", f"healing 3 steps on {len(texts):,} training sentences") in said
    monkeypatch.undo()
    monkeypatch.setattr(trimbert.search.latency, "measure_specs", None)  # nothing is timed again
    monkeypatch.setattr(compress_stages, "heal", full_disk)  # nor healed again
    for stage in ("export", "evaluate", "bench"):
        monkeypatch.setattr(compress_stages.Stages, stage, lambda self, job: {})
    said = []
    job = _run(tiny_run, small_source, out, settings, said)
    assert said[:3] == [(stage, "done before (resumed)") for stage in ("reference", "predictor", "compress")]
    assert ("recover", "heal done before (resumed)") in said and ("recover", "distilling healed/ from the input model") in said
    steps = job.stages["recover"]["steps"]
    assert list(steps) == ["heal", "distill"] and steps["distill"]["from"] == "healed"
    assert steps["heal"]["steps"] == 3 and steps["heal"]["texts"] == len(texts) and steps["heal"]["tokens"] > 0
    assert steps["distill"]["metrics"] == job.stages["recover"]["metrics"] and steps["distill"]["seconds"] > 0
    recorded = json.loads((out / "healed" / "heal.json").read_text())
    assert recorded["kind"] == "heal" and recorded["heal"]["loss_after"] == steps["heal"]["loss_after"]
    compressed, healed = checkpoint.load(out / "compressed"), checkpoint.load(out / "healed")
    recovered = checkpoint.load(out / "recovered")
    assert healed.config.spec == compressed.config.spec == recovered.config.spec
    assert torch.equal(healed.classifier.weight, compressed.classifier.weight)  # the heal keeps the task head
    encoder = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(healed.state_dict()[encoder], compressed.state_dict()[encoder])
    assert not torch.equal(recovered.state_dict()[encoder], healed.state_dict()[encoder])
    assert healed.config.trim_spec["notes"]["heal"]["settings"]["steps"] == 3
    summary = summarize(_finished(job))
    assert list(summary["recover_seconds"]) == ["heal", "distill"]
    assert ("recover: heal", f"{steps['heal']['seconds']:.0f} s") in summary["rows"]


def _finished(job):
    """The job with the stubbed stages' figures filled in, for the report."""
    job.stages["reference"] = {**REFERENCE, **job.stages["reference"]}
    job.stages["evaluate"] = {"runtime": "onnxruntime", "metric": "accuracy", "value": 0.5, "seconds": 1.0}
    job.stages["bench"] = {"u_star": "onnxruntime", "u_star_accuracy": 0.5, "latency_ms": 1.0, "speedup": 1.1,
                           "low": 1.0, "high": 1.2, "stable": True, "seconds": 1.0}
    return job


def test_the_distillation_runs_with_the_jobs_seed_and_the_input_runs_other_settings(tiny_run, tmp_path, monkeypatch):
    seen = []

    def finetune(model, source, out, settings, **kwargs):
        seen.append(settings)
        raise RuntimeError("stop")

    monkeypatch.setattr(compress_stages, "finetune", finetune)
    finetuned = compress_job_settings(tiny_run)
    stages = compress_stages.Stages(str(tiny_run), SOURCE, None, None, None, SETTINGS.updated(recover="distill", seed=7),
                                    finetuned, tmp_path, tmp_path, lambda stage, message: None)
    with pytest.raises(RuntimeError, match="stop"):
        stages.recover(None)
    assert seen[0].seed == 7 and finetuned.seed == 42
    assert seen[0].to_dict() == {**finetuned.to_dict(), "seed": 7}  # max_length 32, 32 rows, 1 epoch: the input run's
