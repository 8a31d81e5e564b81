"""``trimbert compress``'s job: one fine-tuned model in, one deployable folder out, in resumable stages.

Stages, each recorded in ``<out>/compress.json`` when it finishes with the fingerprint of the settings
it depended on (:data:`STAGE_SETTINGS`): a re-run on the same model and data keeps the finished stages
up to the first whose settings changed (another ``--speedup`` reuses the reference and the predictor;
adding ``--recover distill`` reuses the compression too); another model or data is refused unless
``force``:

1. ``reference``: the untrimmed model exported to every installed runtime (``reference/``), each
   export's accuracy on the eval data, and a short side-by-side bench of them: U* is the fastest
   within :data:`~trimbert.report.ustar.WITHIN_POINTS` of the PyTorch fp32 accuracy; ``--runtime
   auto`` deploys where U* runs.
2. ``predictor``: the latency predictor of the target runtime at the latency shape, fitted on probe
   trims with heads, FFN widths and dropped FFNs (cached like ``trimbert search``'s).
3. ``compress``: :func:`~trimbert.compress.run.compress_model` on ``samples`` training rows under
   the budget (``--speedup`` over U*, converted through the reference bench's ratio between U* and
   the untrimmed model in the target runtime; or ``--latency-ms``); the trimmed checkpoint goes to
   ``compressed/``.
4. ``recover`` (``--recover distill``): fine-tune ``compressed/`` with the input model as teacher
   (the input run's own fine-tune settings) into ``recovered/``.
5. ``export``: the final model exported to the target runtime: ``model/``, the deployable folder.
6. ``evaluate``: the accuracy of ``model/`` in the target runtime.
7. ``bench``: the final model in the target runtime timed side by side with the untrimmed model in
   every runtime; the speed-up is the paired ratio against U* chosen in this run (fastest within the
   accuracy margin).

Library code: returns data and reports progress through a callback; the CLI prints.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trimbert.compress.cost import LinearCost
from trimbert.compress.run import compress_model
from trimbert.compress.settings import CompressSettings
from trimbert.core.io import write_json_atomic
from trimbert.core.outputs import atomic_output_dir, check_output_dir, read_marker, write_marker
from trimbert.data.batches import sample_batches
from trimbert.data.source import DataSource
from trimbert.deploy.evaluate import evaluate_onnx
from trimbert.deploy.export import export_onnx
from trimbert.deploy.runners import is_int8, is_openvino, require_runtimes
from trimbert.errors import TrimbertError
from trimbert.measure.bench import RUNTIME_SUFFIX, BenchSettings, bench_models
from trimbert.model import checkpoint
from trimbert.model.heads import has_task_head
from trimbert.report.ustar import WITHIN_POINTS
from trimbert.search.latency import DEPLOY_RUNTIME, build_predictor, cached_predictor
from trimbert.search.predictor import Conditions, Predictor, model_shape
from trimbert.search.space import SearchSpace
from trimbert.train.finetune import evaluate, finetune
from trimbert.train.settings import DistillSettings, FinetuneSettings

STATE_FILE = "compress.json"
STAGES = ("reference", "predictor", "compress", "recover", "export", "evaluate", "bench")
EXPORTED = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
SEARCH_NAME = {deployed: name for name, deployed in DEPLOY_RUNTIME.items()}  # onnxruntime -> onnx, ...
CALIBRATION_ROWS = 300
REFERENCE_BENCH_S = 20.0
# --recover distill: soft labels, task loss and hidden states (the weights search --finetune distils with)
RECOVER_DISTILL = DistillSettings(alpha_hidden=1.0)
Progress = Callable[[str, str], None]  # (stage, message)


# The settings each stage depends on (with those of the stages before it): a re-run keeps the finished
# stages whose settings did not change and redoes the rest.
STAGE_SETTINGS = {
    "reference": ("batch_size", "seq_len", "threads", "runtime", "bench_seconds"),
    "predictor": ("probes", "seed"),
    "compress": ("speedup", "latency_ms", "samples", "units", "width_multiple"),
    "recover": ("recover",),
    "export": (),
    "evaluate": (),
    "bench": (),
}


@dataclass
class CompressJob:
    """The state of a compress folder: inputs, settings and each finished stage's results (each with
    the fingerprint of what it depended on: :meth:`stage_fingerprint`)."""

    model: str
    data: dict[str, Any]
    settings: dict[str, Any]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def inputs(self) -> str:
        """The fingerprint of the model and data: another folder's job if it differs."""
        return _digest({"model": self.model, "data": self.data})

    def stage_fingerprint(self, stage: str) -> str:
        """Model, data and the settings of ``stage`` and of every stage before it."""
        names = [name for earlier in STAGES[: STAGES.index(stage) + 1] for name in STAGE_SETTINGS[earlier]]
        return _digest({"model": self.model, "data": self.data, "settings": {name: self.settings[name] for name in names}})

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "inputs": self.inputs, "model": self.model, "data": self.data,
                "settings": self.settings, "stages": self.stages}


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def installed_runtimes() -> list[str]:
    """The exported runtimes whose packages are installed (ONNX Runtime always; OpenVINO with its extra)."""
    try:
        require_runtimes(["openvino"])
        return list(EXPORTED)
    except TrimbertError:
        return [name for name in EXPORTED if not is_openvino(name)]


def open_job(out: Path, model: str, source: DataSource, settings: CompressSettings, force: bool) -> CompressJob:
    """The job of ``out``: resumed when ``out`` holds a compress of the same model and data (its finished
    stages kept up to the first whose settings changed), new otherwise (an existing ``out`` is replaced
    only with ``force`` and only if trimbert wrote it)."""
    job = CompressJob(model=model, data=source.to_dict(), settings=settings.to_dict())
    state = out / STATE_FILE
    if state.is_file() and (read_marker(out) or {}).get("command") == "compress":
        try:
            saved = json.loads(state.read_text())
        except ValueError as error:
            raise TrimbertError(f"{state}: unreadable ({error}); use --force to start over") from error
        if saved.get("inputs") == job.inputs:
            for stage, result in (saved.get("stages") or {}).items():  # the finished stages still valid, in order
                if stage not in STAGE_SETTINGS or result.get("fingerprint") != job.stage_fingerprint(stage):
                    break
                job.stages[stage] = result
            return job
        if not force:
            raise TrimbertError(
                f"--out {out}: it holds a compress of another model or data; use --force to start over, or another --out"
            )
    inputs = (model, source.train, source.validation, source.data_dir)
    check_output_dir(out, force, inputs=inputs)
    with atomic_output_dir(out, force, command="compress") as staging:
        write_json_atomic(staging / STATE_FILE, job.to_dict())
    return job


def _save(out: Path, job: CompressJob) -> None:
    write_json_atomic(out / STATE_FILE, job.to_dict())


def run_compress(
    model_source: str,
    source: DataSource,
    out: str | Path,
    settings: CompressSettings,
    *,
    force: bool = False,
    cache_dir: str | Path,
    on_progress: Progress | None = None,
) -> CompressJob:
    """Run (or resume) the stages of the module docstring; returns the job with every stage's results."""
    say = on_progress or (lambda stage, message: None)
    out = Path(out).expanduser()
    require_runtimes(["onnxruntime"] + (["openvino"] if settings.runtime.startswith("openvino") else []))
    dataset, task = source.load()
    if not has_task_head(model_source, task.num_labels, task.is_regression):
        raise TrimbertError(
            f"{model_source} has no trained {task.name} head: compress a fine-tuned model (trimbert finetune first)"
        )
    job = open_job(out, model_source, source, settings, force)
    write_marker(out, "compress")
    tokenizer = checkpoint.load_tokenizer(model_source)
    if tokenizer is None:
        raise TrimbertError(f"{model_source} has no tokenizer")
    finetuned = _finetune_settings(model_source)
    context = _Context(model_source, source, dataset, task, tokenizer, settings, finetuned, out, Path(cache_dir), say)
    for stage in STAGES:
        if stage in job.stages:
            say(stage, "done before (resumed)")
            continue
        if stage == "recover" and settings.recover == "none":
            continue
        say(stage, "started")
        start = time.perf_counter()
        result = getattr(context, stage)(job)
        result["seconds"] = time.perf_counter() - start
        result["fingerprint"] = job.stage_fingerprint(stage)
        job.stages[stage] = result
        _save(out, job)
        say(stage, f"done in {result['seconds']:.0f} s")
    return job


def _finetune_settings(model_source: str) -> FinetuneSettings:
    """The input run's fine-tune settings (a run folder records them), else the defaults."""
    record_file = Path(model_source) / "metrics.json"
    if record_file.is_file():
        try:
            recorded = json.loads(record_file.read_text()).get("extra", {}).get("settings")
            if isinstance(recorded, dict):
                return FinetuneSettings.build({k: v for k, v in recorded.items() if k in FinetuneSettings.model_fields})
        except (ValueError, TrimbertError):
            pass
    return FinetuneSettings()


@dataclass
class _Context:
    model_source: str
    source: DataSource
    dataset: Any
    task: Any
    tokenizer: Any
    settings: CompressSettings
    finetuned: FinetuneSettings
    out: Path
    cache_dir: Path
    say: Progress

    def _eval_options(self) -> dict[str, Any]:
        return {"max_length": self.finetuned.max_length, "max_eval_samples": self.finetuned.max_eval_samples,
                "seed": self.finetuned.seed}

    def _calibration(self) -> list:
        return sample_batches(self.dataset["train"], self.tokenizer, samples=CALIBRATION_ROWS, seed=self.settings.seed,
                              max_length=self.finetuned.max_length)

    def _bench_settings(self, runtimes: list[str], seconds: float) -> BenchSettings:
        return BenchSettings(batch_size=self.settings.batch_size, seq_len=self.settings.seq_len, device="cpu",
                             threads=self.settings.threads, runtimes=runtimes, max_seconds=seconds, repeats=10, warmup=2)

    def reference(self, job: CompressJob) -> dict[str, Any]:
        runtimes = installed_runtimes()
        folder = self.out / "reference"
        model = checkpoint.load(self.model_source).eval()
        export_onnx(model, folder, tokenizer=self.tokenizer, int8=True, openvino=any(map(is_openvino, runtimes)),
                    calibration=self._calibration(), force=True, info={"source": self.model_source, "data": job.data})
        accuracy = {"pytorch": _main_value(evaluate(self.model_source, self.source, settings=self.finetuned, progress=False))}
        for runtime in runtimes:
            self.say("reference", f"evaluating the untrimmed model in {runtime}")
            result = evaluate_onnx(folder, self.source, int8=is_int8(runtime), openvino=is_openvino(runtime), **self._eval_options())
            accuracy[runtime] = _main_value(result)
        self.say("reference", "timing the untrimmed model in every runtime side by side")
        report = bench_models({"untrimmed": (model, self.model_source)}, self._bench_settings(["pytorch", *runtimes], min(REFERENCE_BENCH_S, self.settings.bench_seconds)),
                              baseline="untrimmed", exports={"untrimmed": folder})
        latency = {_runtime_of(record.variant): statistics.median(record.extra["times_ms"]) for record in report.records}
        star = u_star(accuracy, latency)
        target = SEARCH_NAME.get(star, "onnx") if self.settings.runtime == "auto" else self.settings.runtime
        if self.settings.runtime == "auto" and star == "pytorch":
            target = "onnx"  # compress deploys an export; PyTorch is timed as a reference only
        return {"accuracy": accuracy, "latency_ms": latency, "u_star": star, "target": target, "metric": self.task.main_metric}

    def predictor(self, job: CompressJob) -> dict[str, Any]:
        target = job.stages["reference"]["target"]
        model = checkpoint.load(self.model_source).eval()
        config = model.config
        space = SearchSpace(num_layers=config.num_hidden_layers, intermediate_size=config.intermediate_size,
                            widths=(config.intermediate_size // 2,), normalizers=("softmax",), max_drop_layers=0,
                            layernorms=False, num_attention_heads=config.num_attention_heads,
                            heads=(config.num_attention_heads // 2,))
        conditions = Conditions(runtime=target, device="cpu", batch_size=self.settings.batch_size,
                                seq_len=self.settings.seq_len, threads=self.settings.threads, model_shape=model_shape(config))

        def build() -> Predictor:
            with tempfile.TemporaryDirectory(prefix="trimbert-probes-") as work:
                return build_predictor(model, space, conditions, probes=self.settings.probes, work_dir=Path(work),
                                       seed=self.settings.seed)

        predictor, cached = cached_predictor(self.cache_dir, conditions, space, build)
        return {"predictor": predictor.to_dict(), "cached": cached}

    def compress(self, job: CompressJob) -> dict[str, Any]:
        reference = job.stages["reference"]
        predictor = Predictor.from_dict(job.stages["predictor"]["predictor"])
        model = checkpoint.load(self.model_source).eval()
        line = search_cost(predictor, model.config, self.settings.units)
        config = model.config
        layers = config.num_hidden_layers
        untrimmed_ms = line.ms(config.num_attention_heads * layers, config.intermediate_size * layers, layers)
        if self.settings.latency_ms is not None:
            budget = self.settings.latency_ms
        else:
            target = DEPLOY_RUNTIME[reference["target"]]
            # the target runtime's untrimmed latency over U*'s, measured side by side in the reference stage
            behind = reference["latency_ms"][target] / reference["latency_ms"][reference["u_star"]]
            budget = untrimmed_ms / (self.settings.speedup * behind)
        batches = sample_batches(self.dataset["train"], self.tokenizer, samples=self.settings.samples,
                                 seed=self.settings.seed, max_length=self.finetuned.max_length)
        self.say("compress", f"budget {budget:.2f} ms (untrimmed predicted {untrimmed_ms:.2f} ms) on {self.settings.samples} rows")
        compressed, report = compress_model(model, batches, line, budget, has_head=True, seed=self.settings.seed,
                                            multiple=self.settings.width_multiple)
        checkpoint.save(compressed, self.out / "compressed", tokenizer=self.tokenizer, force=True)
        return {"budget_ms": budget, "untrimmed_predicted_ms": untrimmed_ms, **report.summary()}

    def recover(self, job: CompressJob) -> dict[str, Any]:
        record = finetune(str(self.out / "compressed"), self.source, self.out / "recovered", settings=self.finetuned,
                          teacher=self.model_source, distill=RECOVER_DISTILL, force=True, progress=False)
        return {"metrics": record.metrics, "train_time_s": record.train_time_s}

    def _final(self, job: CompressJob) -> Path:
        return self.out / ("recovered" if "recover" in job.stages else "compressed")

    def export(self, job: CompressJob) -> dict[str, Any]:
        target = DEPLOY_RUNTIME[job.stages["reference"]["target"]]
        model = checkpoint.load(str(self._final(job))).eval()
        calibration = self._calibration() if target == "openvino-int8" else None
        result = export_onnx(model, self.out / "model", tokenizer=self.tokenizer, int8=is_int8(target),
                             openvino=is_openvino(target), calibration=calibration, force=True,
                             info={"source": str(self._final(job)), "data": job.data, "runtime": target})
        return {"runtime": target, "files": result.files, "export_s": result.export_s}

    def evaluate(self, job: CompressJob) -> dict[str, Any]:
        target = DEPLOY_RUNTIME[job.stages["reference"]["target"]]
        result = evaluate_onnx(self.out / "model", self.source, int8=is_int8(target), openvino=is_openvino(target),
                               **self._eval_options())
        return {"runtime": target, "metric": result["main_metric"], "value": _main_value(result),
                "metrics": result["metrics"]}

    def bench(self, job: CompressJob) -> dict[str, Any]:
        reference = job.stages["reference"]
        target = DEPLOY_RUNTIME[reference["target"]]
        runtimes = ["pytorch", *installed_runtimes()]
        final = checkpoint.load(str(self._final(job))).eval()
        untrimmed = checkpoint.load(self.model_source).eval()
        report = bench_models(
            {"compressed": (final, str(self._final(job))), "untrimmed": (untrimmed, self.model_source)},
            self._bench_settings(runtimes, self.settings.bench_seconds), baseline="untrimmed",
            exports={"compressed": self.out / "model", "untrimmed": self.out / "reference"},
            runtimes_of={"compressed": [target]},
        )
        records = {record.variant: record for record in report.records}
        latency = {_runtime_of(name): statistics.median(record.extra["times_ms"])
                   for name, record in records.items() if name.startswith("untrimmed")}
        star = u_star(reference["accuracy"], latency)
        measured = records["compressed" + RUNTIME_SUFFIX[target]]
        ratio = measured.extra["paired_vs"]["untrimmed" + RUNTIME_SUFFIX[star]]["latency"]
        return {"u_star": star, "u_star_accuracy": reference["accuracy"][star], "latency_ms": statistics.median(measured.extra["times_ms"]),
                "untrimmed_latency_ms": latency, "speedup": ratio["ratio"], "low": ratio["low"], "high": ratio["high"],
                "stable": ratio["stable"], "other_cpu": measured.extra.get("other_cpu")}


def search_cost(predictor: Predictor, config: Any, units: str = "heads+ffn") -> LinearCost:
    """The mask search's linear cost from a fitted predictor's per-unit costs (a per-width predictor's
    linear refit): fixed = embeddings and head, each block's fixed part and attention LayerNorm; an FFN
    costs its fixed part and its LayerNorm (both go when it loses every neuron), plus its neurons.
    ``units="heads"`` prices only heads (the FFNs' cost moves into the fixed part, so every neuron
    stays); ``"ffn"`` only FFN neurons and whole FFNs."""
    costs = predictor.linear_costs(refit=True)
    blocks = config.num_hidden_layers
    fixed = costs.const_ms + (costs.block_ms + costs.layernorm_ms) * blocks
    heads, neurons, ffn = costs.head_ms, costs.neuron_ms, costs.ffn_ms + costs.layernorm_ms
    if units == "heads":
        fixed += (neurons * config.intermediate_size + ffn) * blocks
        neurons = ffn = 0.0
    elif units == "ffn":
        fixed += heads * config.num_attention_heads * blocks
        heads = 0.0
    return LinearCost(
        fixed_ms=fixed, per_head_ms=heads, per_neuron_ms=neurons, per_ffn_ms=ffn,
        can_drop_ffn="ffns" not in costs.fixed and units != "heads", can_prune_heads=units != "ffn",
    )


def u_star(accuracy: dict[str, float], latency: dict[str, float]) -> str:
    """The fastest runtime of the untrimmed model whose accuracy is within :data:`WITHIN_POINTS` of PyTorch fp32's."""
    floor = accuracy["pytorch"] - WITHIN_POINTS / 100
    accurate = [runtime for runtime in latency if accuracy.get(runtime) is not None and accuracy[runtime] >= floor]
    return min(accurate, key=latency.__getitem__)


def _runtime_of(variant: str) -> str:
    suffix = "@" + variant.partition("@")[2] if "@" in variant else ""
    return next(runtime for runtime, name in RUNTIME_SUFFIX.items() if name == suffix)


def _main_value(result: dict[str, Any]) -> float:
    return float(result["metrics"][result["main_metric"]])
