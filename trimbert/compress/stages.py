"""The stages of a compress job (see :mod:`trimbert.compress.job`), each computing its result from the earlier ones'."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trimbert.compress.cost import LinearCost
from trimbert.compress.replan import compress_to_target
from trimbert.compress.settings import CompressSettings
from trimbert.core.io import write_json_atomic
from trimbert.data.batches import sample_batches
from trimbert.data.source import DataSource
from trimbert.deploy.evaluate import evaluate_onnx
from trimbert.deploy.export import export_onnx
from trimbert.deploy.runners import is_int8, is_openvino, require_runtimes
from trimbert.errors import TrimbertError
from trimbert.measure.bench import RUNTIME_SUFFIX, BenchSettings, bench_models
from trimbert.model import checkpoint
from trimbert.pipeline import apply_trim
from trimbert.report.ustar import WITHIN_POINTS
from trimbert.search.latency import DEPLOY_RUNTIME, build_predictor, cached_predictor
from trimbert.search.predictor import Conditions, Predictor, model_shape
from trimbert.search.run import search, search_space
from trimbert.search.settings import SearchSettings
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimRequest, TrimSpec
from trimbert.train.finetune import evaluate, finetune, prepare
from trimbert.train.heal import HEAL_FILE, heal
from trimbert.train.settings import DistillSettings, FinetuneSettings, HealSettings

EXPORTED = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
SEARCH_NAME = {deployed: name for name, deployed in DEPLOY_RUNTIME.items()}  # onnxruntime -> onnx, ...
CALIBRATION_ROWS = 300
REFERENCE_BENCH_S = 20.0  # the reference stage's bench, and each re-plan check's, at most this long
# --recover distill: soft labels, task loss and hidden states (the weights search --finetune distils with)
RECOVER_DISTILL = DistillSettings(alpha_hidden=1.0)
# --method search: trimbert search's defaults but for these. undershoot 0: the budget is a bound, as for the
# retraining-free method; verify 0: the finalists are re-scored on fresh rows, not fine-tuned (compress
# recovers its one winner with --recover instead).
SEARCH_OVERRIDES: dict[str, Any] = {"undershoot": 0.0, "verify": 0}
HEAL_STEP_FILE = "compress-step.json"  # in healed/: the heal sub-step's result and the fingerprint it was made for
Progress = Callable[[str, str], None]  # (stage, message)


def installed_runtimes() -> list[str]:
    """The exported runtimes whose packages are installed (ONNX Runtime always; OpenVINO with its extra)."""
    try:
        require_runtimes(["openvino"])
        return list(EXPORTED)
    except TrimbertError:
        return [name for name in EXPORTED if not is_openvino(name)]


def predictor_space(config: Any) -> SearchSpace:
    """The probe space of the job's latency predictor, which ``--method search`` searches too: per block,
    all or half of the heads, and the FFN at full width, at half width or dropped."""
    return SearchSpace(num_layers=config.num_hidden_layers, intermediate_size=config.intermediate_size,
                       widths=(config.intermediate_size // 2,), normalizers=("softmax",), max_drop_layers=0,
                       layernorms=False, num_attention_heads=config.num_attention_heads,
                       heads=(config.num_attention_heads // 2,))


@dataclass
class Stages:
    """One method per stage: ``stage(job) -> result`` (JSON-ready), reading the earlier stages' results in ``job``."""

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

    def _conditions(self, target: str, config: Any) -> Conditions:
        return Conditions(runtime=target, device="cpu", batch_size=self.settings.batch_size,
                          seq_len=self.settings.seq_len, threads=self.settings.threads, model_shape=model_shape(config))

    def reference(self, job: Any) -> dict[str, Any]:
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
        latency = {_runtime_of(record.variant): statistics.median(record.timing.times_ms) for record in report.records}
        star = u_star(accuracy, latency)
        target = SEARCH_NAME.get(star, "onnx") if self.settings.runtime == "auto" else self.settings.runtime
        if self.settings.runtime == "auto" and star == "pytorch":
            target = "onnx"  # compress deploys an export; PyTorch is timed as a reference only
        return {"accuracy": accuracy, "latency_ms": latency, "u_star": star, "target": target, "metric": self.task.main_metric}

    def predictor(self, job: Any) -> dict[str, Any]:
        model = checkpoint.load(self.model_source).eval()
        space = predictor_space(model.config)

        def build() -> Predictor:
            with tempfile.TemporaryDirectory(prefix="trimbert-probes-") as work:
                return build_predictor(model, space, self._conditions(job.stages["reference"]["target"], model.config),
                                       probes=self.settings.probes, work_dir=Path(work), seed=self.settings.seed)

        predictor, cached = cached_predictor(self.cache_dir, self._conditions(job.stages["reference"]["target"], model.config),
                                             space, build)
        return {"predictor": predictor.to_dict(), "cached": cached}

    def _behind(self, job: Any) -> float:
        """How much slower the untrimmed model runs in the target runtime than in U*'s (the reference bench)."""
        reference = job.stages["reference"]
        latency = reference["latency_ms"]
        return latency[DEPLOY_RUNTIME[reference["target"]]] / latency[reference["u_star"]]

    def compress(self, job: Any) -> dict[str, Any]:
        if self.settings.method == "search":
            return self._search(job)
        predictor = Predictor.from_dict(job.stages["predictor"]["predictor"])
        config = checkpoint.load_config(checkpoint.resolve_source(self.model_source))
        line = search_cost(predictor, config, self.settings.units)
        layers = config.num_hidden_layers
        untrimmed_ms = line.ms(config.num_attention_heads * layers, config.intermediate_size * layers, layers)
        if self.settings.latency_ms is not None:
            budget = self.settings.latency_ms
        else:  # the target runtime's untrimmed latency over U*'s, measured side by side in the reference stage
            budget = untrimmed_ms / (self.settings.speedup * self._behind(job))
        batches = sample_batches(self.dataset["train"], self.tokenizer, samples=self.settings.samples,
                                 seed=self.settings.seed, max_length=self.finetuned.max_length)
        self.say("compress", f"budget {budget:.2f} ms (untrimmed predicted {untrimmed_ms:.2f} ms) on {self.settings.samples} rows")
        result = compress_to_target(
            lambda: checkpoint.load(self.model_source).eval(), batches, line, budget, replans=self.settings.replans,
            save=lambda model: checkpoint.save(model, self.out / "compressed", tokenizer=self.tokenizer, force=True),
            check=lambda: self._check(job), say=lambda message: self.say("compress", message),
            seed=self.settings.seed, multiple=self.settings.width_multiple,
        )
        return {"method": "retraining-free", "untrimmed_predicted_ms": untrimmed_ms, **result}

    def _check(self, job: Any) -> dict[str, Any]:
        """``compressed/`` exported to the target runtime and timed side by side with the untrimmed model in U*'s
        runtime (a short bench): ``asked``/``measured`` are the target and the measurement as speeds (the
        speed-up over U*, or 1 / ms against ``--latency-ms``), with the paired speed-up and its interval."""
        reference = job.stages["reference"]
        target, star = DEPLOY_RUNTIME[reference["target"]], reference["u_star"]
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="trimbert-check-") as work:
            folder = Path(work) / "model"
            self._export(job, self.out / "compressed", folder)
            records = self._side_by_side(job, self.out / "compressed", folder, list(dict.fromkeys([target, star])),
                                         min(REFERENCE_BENCH_S, self.settings.bench_seconds), untrimmed_in=[star])
        measured, ratio = _versus(records, target, star)
        ms = statistics.median(measured.timing.times_ms)
        if self.settings.latency_ms is not None:
            asked, got = 1 / self.settings.latency_ms, 1 / ms
        else:
            asked, got = float(self.settings.speedup), ratio.ratio
        return {"asked": asked, "measured": got, "latency_ms": ms, "speedup": ratio.ratio, "low": ratio.low,
                "high": ratio.high, "stable": ratio.stable, "check_seconds": time.perf_counter() - start}

    def search_settings(self, job: Any, config: Any) -> SearchSettings:
        """``trimbert search``'s settings for this job: the job's target (``--speedup`` over U* as a speed-up over
        the untrimmed model in the target runtime), latency shape and predictor space; its own defaults else
        (but :data:`SEARCH_OVERRIDES`)."""
        space = predictor_space(config)
        if self.settings.latency_ms is not None:
            target: dict[str, Any] = {"latency_ms": self.settings.latency_ms}
        else:
            speedup = self.settings.speedup * self._behind(job)
            if speedup <= 1.0:
                reference = job.stages["reference"]
                raise TrimbertError(
                    f"--speedup {self.settings.speedup:g} over U* ({reference['u_star']}): the untrimmed model in "
                    f"{DEPLOY_RUNTIME[reference['target']]} is that fast already; aim higher or choose another --runtime"
                )
            target = {"speedup": speedup}
        return SearchSettings(
            **target, runtime=job.stages["reference"]["target"], device="cpu", batch_size=self.settings.batch_size,
            seq_len=self.settings.seq_len, threads=self.settings.threads, widths=str(space.widths[0]),
            heads_choices=str(space.heads[0]), normalizers="softmax", max_drop_layers=0, layernorms=False,
            probes=self.settings.probes, search_seed=self.settings.seed, budget_minutes=self.settings.search_minutes,
            **SEARCH_OVERRIDES,
        )

    def _search(self, job: Any) -> dict[str, Any]:
        """``--method search``: the evolutionary search with the job's predictor (handed to it through a cache
        of its own), its output kept in ``search/``; the input model trimmed to the winner (as ``finetune
        --spec`` applies a spec: narrowed FFNs keep the neurons the search ranked) into ``compressed/``."""
        predictor = Predictor.from_dict(job.stages["predictor"]["predictor"])
        config = checkpoint.load_config(checkpoint.resolve_source(self.model_source))
        settings = self.search_settings(job, config)
        untrimmed_ms = predictor.predict(TrimSpec())
        budget = settings.latency_ms if settings.latency_ms is not None else untrimmed_ms / settings.speedup
        self.say("compress", f"searching: budget {budget:.2f} ms (untrimmed predicted {untrimmed_ms:.2f} ms)")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="trimbert-compress-") as work:
            cache = Path(work) / "latency"
            cached_predictor(cache, self._conditions(settings.runtime, config), search_space(settings, config), lambda: predictor)
            report = search(self.model_source, self.source, self.out / "search", settings=settings, finetune=self.finetuned,
                            cache_dir=cache, force=True,
                            on_plan=lambda plan: [self.say("compress", line) for line in plan.describe()])
        seconds = time.perf_counter() - start
        best = report.result.best
        self.say("compress", f"the search chose {best.spec.summary()} in {seconds:.0f} s; trimming the input model to it")
        _, tokenizer, model, encoded = prepare(self.model_source, self.source, self.finetuned)
        trimmed, _ = apply_trim(model, TrimRequest.from_spec(best.spec, settings.importance), dataset=encoded["train"],
                                tokenizer=tokenizer, has_head=False, seed=self.finetuned.seed,
                                max_length=self.finetuned.max_length, batch_size=self.finetuned.eval_batch_size)
        checkpoint.save(trimmed, self.out / "compressed", tokenizer=self.tokenizer, force=True)
        return {"method": "search", "spec": best.spec.to_dict(), "summary": best.spec.summary(),
                "predicted_ms": best.predicted_ms, "predicted_speedup": best.predicted_speedup, "budget_ms": budget,
                "untrimmed_predicted_ms": untrimmed_ms, "estimate": best.estimate, "final_estimate": best.final_estimate,
                "importance": settings.importance, "predictor_reused": report.predictor_cached,
                "candidates": len(report.result.candidates), "generations": report.result.generations,
                "search_seconds": seconds, "search_dir": "search"}

    def recover(self, job: Any) -> dict[str, Any]:
        """``distill``: ``compressed/`` fine-tuned with the input model as teacher into ``recovered/`` (the input run's
        fine-tune settings but the job's ``--seed``);
        ``heal+distill``: healed first (:meth:`_heal`), the healed model distilled. Each sub-step's result and
        wall time under ``steps``."""
        steps: dict[str, Any] = {}
        start_from = self.out / "compressed"
        if self.settings.recover == "heal+distill":
            steps["heal"] = self._heal(job)
            start_from = self.out / "healed"
        self.say("recover", f"distilling {start_from.name}/ from the input model")
        start = time.perf_counter()
        record = finetune(str(start_from), self.source, self.out / "recovered", settings=self.finetuned.updated(seed=self.settings.seed),
                          teacher=self.model_source, distill=RECOVER_DISTILL, force=True, progress=False)
        steps["distill"] = {"seconds": time.perf_counter() - start, "from": start_from.name, "metrics": record.metrics,
                            "train_time_s": record.train_time_s}
        return {"steps": steps, "metrics": record.metrics, "train_time_s": record.train_time_s}

    def _heal(self, job: Any) -> dict[str, Any]:
        """``compressed/`` healed from the input model (:func:`trimbert.train.heal.heal`) on the task's training
        sentences, its task head kept, into ``healed/``; a heal already made for this job's settings is reused."""
        folder, fingerprint = self.out / "healed", job.stage_fingerprint("recover")
        try:
            done = json.loads((folder / HEAL_STEP_FILE).read_text())
            if done.get("fingerprint") == fingerprint:
                self.say("recover", "heal done before (resumed)")
                return done["result"]
        except (OSError, ValueError, AttributeError):
            pass
        texts = training_texts(self.dataset["train"])
        defaults = HealSettings()
        held_out = max(1, min(defaults.held_out, len(texts) // 10))
        settings = HealSettings(  # one pass: the heal reads (and tokenizes) only the texts its steps train on
            steps=self.settings.heal_steps, max_length=self.finetuned.max_length, held_out=held_out,
            corpus_texts=max(1, min(len(texts) - held_out, self.settings.heal_steps * defaults.batch_size)),
            seed=self.settings.seed,
        )
        self.say("recover", f"healing {settings.steps} steps on {len(texts):,} training sentences")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="trimbert-heal-") as work:
            corpus = Path(work) / "corpus.txt"
            corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
            record = heal(str(self.out / "compressed"), self.model_source, str(corpus), Path(work) / "encoder",
                          settings=settings, force=True, progress=False)
            model = checkpoint.load(self.out / "compressed").eval()  # the compressed classifier, its head trained
            encoder = checkpoint.load(Path(work) / "encoder", head="base")
            model.base_model.load_state_dict(encoder.state_dict())
            model.config.trim_spec = encoder.config.trim_spec  # with the heal's notes
            checkpoint.save(model, folder, tokenizer=self.tokenizer, force=True)
        write_json_atomic(folder / HEAL_FILE, record.to_dict())
        healed = record.heal
        result = {"seconds": time.perf_counter() - start, "steps": healed.settings["steps"], "tokens": healed.tokens,
                  "texts": len(texts), "heal_time_s": healed.time_s, "loss_before": healed.loss_before,
                  "loss_after": healed.loss_after, "dir": folder.name}
        write_json_atomic(folder / HEAL_STEP_FILE, {"fingerprint": fingerprint, "result": result})
        return result

    def _final(self, job: Any) -> Path:
        return self.out / ("recovered" if "recover" in job.stages else "compressed")

    def _export(self, job: Any, source: Path, folder: Path) -> Any:
        """The checkpoint ``source`` exported to the target runtime into ``folder`` (int8 calibrated on training rows)."""
        target = DEPLOY_RUNTIME[job.stages["reference"]["target"]]
        return export_onnx(checkpoint.load(str(source)).eval(), folder, tokenizer=self.tokenizer, int8=is_int8(target),
                           openvino=is_openvino(target), force=True,
                           calibration=self._calibration() if target == "openvino-int8" else None,
                           info={"source": str(source), "data": job.data, "runtime": target})

    def export(self, job: Any) -> dict[str, Any]:
        result = self._export(job, self._final(job), self.out / "model")
        return {"runtime": DEPLOY_RUNTIME[job.stages["reference"]["target"]], "files": result.files, "export_s": result.export_s}

    def evaluate(self, job: Any) -> dict[str, Any]:
        target = DEPLOY_RUNTIME[job.stages["reference"]["target"]]
        result = evaluate_onnx(self.out / "model", self.source, int8=is_int8(target), openvino=is_openvino(target),
                               **self._eval_options())
        return {"runtime": target, "metric": result["main_metric"], "value": _main_value(result),
                "metrics": result["metrics"]}

    def _side_by_side(self, job: Any, source: Path, export: Path, runtimes: list[str], seconds: float,
                      untrimmed_in: list[str] | None = None) -> dict[str, Any]:
        """The checkpoint ``source`` (exported in ``export``) in the target runtime and the untrimmed model in
        ``untrimmed_in`` (default: every one of ``runtimes``), timed side by side: variant -> record."""
        runtimes_of = {"compressed": [DEPLOY_RUNTIME[job.stages["reference"]["target"]]]}
        if untrimmed_in is not None:
            runtimes_of["untrimmed"] = untrimmed_in
        report = bench_models(
            {"compressed": (checkpoint.load(str(source)).eval(), str(source)),
             "untrimmed": (checkpoint.load(self.model_source).eval(), self.model_source)},
            self._bench_settings(runtimes, seconds), baseline="untrimmed",
            exports={"compressed": export, "untrimmed": self.out / "reference"}, runtimes_of=runtimes_of,
        )
        return {record.variant: record for record in report.records}

    def bench(self, job: Any) -> dict[str, Any]:
        reference = job.stages["reference"]
        target = DEPLOY_RUNTIME[reference["target"]]
        records = self._side_by_side(job, self._final(job), self.out / "model", ["pytorch", *installed_runtimes()],
                                     self.settings.bench_seconds)
        latency = {_runtime_of(name): statistics.median(record.timing.times_ms)
                   for name, record in records.items() if name.startswith("untrimmed")}
        star = u_star(reference["accuracy"], latency)
        measured, ratio = _versus(records, target, star)
        return {"u_star": star, "u_star_accuracy": reference["accuracy"][star], "latency_ms": statistics.median(measured.timing.times_ms),
                "untrimmed_latency_ms": latency, "speedup": ratio.ratio, "low": ratio.low, "high": ratio.high,
                "stable": ratio.stable, "other_cpu": measured.timing.other_cpu}


def _versus(records: dict[str, Any], target: str, star: str) -> tuple[Any, Any]:
    """The compressed model's record in ``target`` and its paired latency ratio against the untrimmed model in ``star``."""
    measured = records["compressed" + RUNTIME_SUFFIX[target]]
    return measured, measured.paired["untrimmed" + RUNTIME_SUFFIX[star]].latency


def training_texts(rows: Any) -> list[str]:
    """The task's training sentences (both of a pair), whitespace collapsed to one line each, each once."""
    columns = [name for name in ("text_a", "text_b") if name in rows.column_names]
    texts = (" ".join(str(text).split()) for name in columns for text in rows[name] if text)
    return list(dict.fromkeys(text for text in texts if text))


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
