"""``trimbert bench``: size, FLOPs and speed of a model, optionally side by side with a baseline.

Both models are loaded in one process and timed alternately after warm-up (see
:func:`trimbert.measure.benchmark`); every softmax model, the untrimmed baseline above all, first gets
its fastest attention implementation on the device (``sdpa`` or ``eager``, timed), so a speed-up is
never measured against a handicapped baseline. Each ratio is shown beside the FLOP-ideal ratio
(baseline FLOPs / model FLOPs) and their quotient (1.0 = the trim's FLOP savings fully realized).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from trimbert.core.io import conditions
from trimbert.deploy.export import export_onnx
from trimbert.deploy.runners import export_needs, load_exported, require_runtimes
from trimbert.deploy.runtime import RUNTIMES
from trimbert.errors import TrimbertError
from trimbert.measure import pairing
from trimbert.measure.bench_settings import (  # noqa: F401  (BenchSettings and the runtimes: imported from here too)
    INT8,
    OPENVINO,
    OPENVINO_INT8,
    ORT,
    PYTORCH,
    RUNTIME_FILE,
    RUNTIME_SUFFIX,
    BenchSettings,
)
from trimbert.measure.benchmark import fastest_attention
from trimbert.measure.load import CpuWatch
from trimbert.measure.pairing import ProgressCallback, u_star  # noqa: F401
from trimbert.measure.size import (
    check_seq_len,
    count_parameters,
    disk_bytes,
    encoder_parameters,
    flops_per_sequence,
    weights_bytes,
)
from trimbert.measure.stats import PairedRatio as Measured
from trimbert.model import checkpoint
from trimbert.model.structure import applied_spec
from trimbert.report.records import LATENCY, PairedRatio, PairedRatios, Record, Timing
from trimbert.spec.trimspec import SOFTMAX


@dataclass
class Comparison:
    """One measured ratio of a model against the baseline, beside what its FLOPs predict."""

    variant: str  # the model compared with the baseline
    quantity: str  # "latency", "throughput", "train step"
    baseline: float
    model: float
    ratio: float  # paired speed-up: median over rounds of baseline time / model time in the same round
    flop_ideal: float  # baseline FLOPs / model FLOPs
    quotient: float  # ratio / flop_ideal
    low: float  # the ratio's 95% bootstrap interval
    high: float
    stable: bool  # the interval lies within ± tolerance of the ratio, on a machine not busy otherwise
    rounds: int  # paired rounds behind the ratio
    other_cpu: float = 0.0  # share of the CPUs other processes used during the run
    versus: str = "baseline"  # the variant (and runtime) the ratio is against


@dataclass
class BenchReport:
    records: list[Record]  # the model first, then the baseline if any
    attention_choice: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # per variant: chosen impl + timings
    comparisons: list[Comparison] = field(default_factory=list)
    u_star: str | None = None  # the reference of the speed-ups: the baseline in its fastest runtime (infer mode)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": [record.to_dict() for record in self.records],
            "attention_choice": self.attention_choice,
            "comparisons": [vars(comparison) for comparison in self.comparisons],
            "u_star": self.u_star,
        }


def _describe(model: nn.Module, source: str, variant: str, settings: BenchSettings) -> Record:
    spec = applied_spec(model)
    folder = checkpoint.local_dir(checkpoint.resolve_source(source))
    return Record(
        kind="bench",
        variant=variant,
        model=source,
        trim=spec.to_dict() if not spec.is_empty else {},
        trim_summary=spec.summary(),
        params=count_parameters(model),
        encoder_params=encoder_parameters(model),
        disk_bytes=disk_bytes(folder) if folder else weights_bytes(model),
        flops_per_seq=float(flops_per_sequence(model, settings.seq_len)),
        seq_len=settings.seq_len,
        batch_size=settings.batch_size,
        path=str(Path(source)) if Path(source).exists() else None,
    )


def bench_models(
    models: dict[str, tuple[nn.Module, str]],
    settings: BenchSettings,
    *,
    baseline: str | None = None,
    on_step: ProgressCallback | None = None,
    exports: dict[str, Path] | None = None,
    runtimes_of: dict[str, list[str]] | None = None,
) -> BenchReport:
    """Measure already loaded ``models`` ({variant: (model, source)}) side by side.

    Every model runs in every runtime of ``settings.runtimes`` (ONNX Runtime models are exported to a
    temporary folder first, unless ``exports`` names its export folder already made, with the int8
    model where needed; ``runtimes_of`` narrows the runtimes of some variants); a model in ONNX Runtime is the variant ``name@ort`` (fp32) or
    ``name@ort-int8``. ``baseline`` names the variant the others are compared with: the reference is
    the baseline in its fastest fp32 runtime of the run (PyTorch or ONNX Runtime, whichever measured
    faster), and int8 models are also compared with the baseline's int8 model. Each comparison is a
    paired ratio with its 95% interval (:func:`trimbert.measure.stats.paired_ratio`); while an
    interval is wider than ± ``settings.tolerance``, more rounds are timed, up to
    ``settings.max_seconds``, after which the ratio is kept and marked unstable. It is also marked
    unstable when other processes used more than ``settings.max_other_cpu`` of the CPUs during the
    run (:mod:`trimbert.measure.load`): contention biases a paired ratio without widening its
    interval. With ``also_train`` (infer mode) the PyTorch models' training steps are timed too, in
    a second alternating run, and compared the same way (a training step changes the weights: the
    models are not for saving afterwards).

    The reference of every speed-up is U* (the untrimmed model at its fastest): the baseline in the runtime that measured fastest in
    this run, int8 included (:func:`~trimbert.measure.pairing.u_star`; the record's ``u_star``); int8
    models are also compared with the baseline in their own int8 runtime (``int8_reference``). Every
    unit's ratio against every runtime of the baseline is recorded in ``Record.paired`` (baseline unit
    -> quantity -> ratio), so that a report knowing accuracies can re-base on the fastest deployment
    that is accurate enough; the per-round times are in ``Record.timing``.
    """
    settings = settings.resolved()
    _check_runtimes(settings)
    for model, _ in models.values():
        check_seq_len(model, settings.seq_len)
    with tempfile.TemporaryDirectory(prefix="trimbert-bench-") as work_dir:
        units = _units(models, settings, Path(work_dir), exports or {}, runtimes_of or {})
        attention_choice = {
            name: _choose_attention(unit.timed, settings) for name, unit in units.items() if unit.runtime == PYTORCH
        }
        modes = [settings.mode] + (["train"] if settings.also_train and settings.mode == "infer" else [])
        comparisons: list[Comparison] = []
        stars: list[str | None] = []
        for mode in modes:
            timed = {name: unit for name, unit in units.items() if mode == "infer" or unit.runtime == PYTORCH}
            if timed:
                compared, star = _run_mode(timed, settings, mode, baseline, on_step, attention_choice)
                comparisons += compared
                stars.append(star)
    ordered = [unit.record for unit in units.values() if unit.variant != baseline] + [
        unit.record for unit in units.values() if unit.variant == baseline
    ]
    return BenchReport(
        records=ordered, attention_choice=attention_choice, comparisons=comparisons, u_star=(stars or [None])[0]
    )


@dataclass
class _Unit:
    """One model in one runtime: what is timed and the record its figures go into."""

    variant: str
    runtime: str
    timed: Any  # nn.Module or OnnxModel
    record: Record


def _check_runtimes(settings: BenchSettings) -> None:
    exported = [runtime for runtime in settings.runtimes if runtime != PYTORCH]
    if exported:
        require_runtimes(exported)
        if settings.device != "cpu":
            raise TrimbertError(
                f"--runtime {exported[0]} runs on the CPU here; use --device cpu (not {settings.device})"
            )
        if settings.mode == "train":
            raise TrimbertError(f"--mode train times PyTorch only; {exported[0]} models are for inference")


def _units(
    models: dict[str, tuple[nn.Module, str]],
    settings: BenchSettings,
    work_dir: Path,
    exports: dict[str, Path],
    runtimes_of: dict[str, list[str]],
) -> dict[str, _Unit]:
    units: dict[str, _Unit] = {}
    for variant, (model, source) in models.items():
        runtimes = [runtime for runtime in settings.runtimes if runtime in runtimes_of.get(variant, RUNTIMES)]
        folder = exports.get(variant)
        exported = [runtime for runtime in runtimes if runtime != PYTORCH]
        if folder is not None and not all((Path(folder) / RUNTIME_FILE[runtime]).is_file() for runtime in exported):
            folder = None  # an export made for other runtimes: export again
        if folder is None and exported:
            folder = work_dir / f"export-{len(units)}"
            export_onnx(model, folder, **export_needs(exported))
        for runtime in runtimes:
            name = variant + RUNTIME_SUFFIX[runtime]
            record = _describe(model, source, name, settings)
            if runtime == PYTORCH:
                units[name] = _Unit(variant, runtime, model, record)
                continue
            timed = load_exported(folder, runtime, threads=settings.threads)
            record.disk_bytes = _model_bytes(timed.path)
            units[name] = _Unit(variant, runtime, timed, record)
    return units


def _model_bytes(path: Path) -> int:
    """Bytes of an exported model on disk: the .onnx file, or OpenVINO's .xml and .bin."""
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    return sum(file.stat().st_size for file in files if file.is_file())


def _run_mode(
    units: dict[str, _Unit],
    settings: BenchSettings,
    mode: str,
    baseline: str | None,
    on_step: ProgressCallback | None,
    attention_choice: dict[str, dict[str, Any]],
) -> tuple[list[Comparison], str | None]:
    """Time ``units`` alternately in ``mode``; fill in their records; return the comparisons and U*."""
    env = conditions(
        device=settings.device, threads=settings.threads, mode=settings.mode, repeats=settings.repeats, warmup=settings.warmup
    )
    watch = CpuWatch().start()
    results, pairs, star, principal = pairing.measure_paired(units, settings, mode, baseline, on_step)
    busy = watch.stop()
    for name, unit in units.items():
        record = unit.record
        fields = results[name].record_fields()
        if mode == settings.mode:
            for key, value in fields.items():
                setattr(record, key, value)
        else:
            record.train_step_ms = fields["train_step_ms"]
        chosen = attention_choice[name]["chosen"] if name in attention_choice else unit.runtime
        record.conditions = {**env, "runtime": unit.runtime, "attention_implementation": chosen}
        timing = record.timing = record.timing or Timing()
        result = results[name]
        if mode == settings.mode:
            timing.times_ms, timing.p10_ms, timing.p90_ms, timing.other_cpu = result.times_ms, result.p10_ms, result.p90_ms, busy
        else:
            timing.train_times_ms, timing.train_p10_ms, timing.train_p90_ms = result.times_ms, result.p10_ms, result.p90_ms
            timing.train_other_cpu = busy
    quantity = "latency" if mode == "infer" else "train step"
    comparisons = []
    for (name, reference), ratio in pairs.items():
        stable = ratio.stable(settings.tolerance) and busy <= settings.max_other_cpu
        record = units[name].record
        ratios = record.paired.setdefault(reference, PairedRatios())
        figures = PairedRatio(**{**ratio.to_dict(settings.tolerance), "stable": stable, "other_cpu": busy})
        setattr(ratios, "latency" if quantity == LATENCY else "train_step", figures)
        if (name, reference) in principal:
            if reference != star:  # the baseline in the same int8 runtime
                record.int8_reference = reference
            elif record.u_star is None:  # U* (of the first mode: a training step's is the baseline in PyTorch)
                record.u_star = reference
            comparisons += _compare(units[reference].record, record, quantity, ratio, stable, busy)
    return comparisons, star


def _choose_attention(model: nn.Module, settings: BenchSettings) -> dict[str, Any]:
    """Every softmax model first gets its fastest attention implementation on the device."""
    if applied_spec(model).attention != SOFTMAX:
        return {"chosen": model.config._attn_implementation, "median_ms": {}}
    chosen, timings = fastest_attention(
        model,
        batch_size=settings.batch_size,
        seq_len=settings.seq_len,
        device=settings.device,
        threads=settings.threads,
    )
    return {"chosen": chosen, "median_ms": timings}


def _compare(
    base: Record, record: Record, quantity: str, ratio: Measured, stable: bool, other_cpu: float
) -> list[Comparison]:
    ideal = base.flops_per_seq / record.flops_per_seq  # the same in every runtime
    field_name = "latency_ms" if quantity == "latency" else "train_step_ms"
    shared = dict(
        ratio=ratio.ratio,
        flop_ideal=ideal,
        quotient=ratio.ratio / ideal,
        low=ratio.low,
        high=ratio.high,
        stable=stable,
        rounds=ratio.rounds,
        other_cpu=other_cpu,
    )
    comparisons = [
        Comparison(
            record.variant, quantity, getattr(base, field_name), getattr(record, field_name), **shared, versus=base.variant
        )
    ]
    if quantity == "latency":  # the same paired statistic: throughput is batch / time
        comparisons.append(
            Comparison(record.variant, "throughput", base.throughput, record.throughput, **shared, versus=base.variant)
        )
    return comparisons


def bench(
    models: list[str],
    settings: BenchSettings,
    *,
    vs: str | None = None,
    names: list[str] | None = None,
    vs_name: str = "baseline",
    on_step: ProgressCallback | None = None,
) -> BenchReport:
    """Load ``models`` (and the baseline ``vs``) and measure them side by side in one run."""
    if names is not None and len(names) != len(models):
        raise TrimbertError(f"--name was given {len(names)} times for {len(models)} models")
    variants = names or [Path(str(model).rstrip("/")).name for model in models]
    if len(set(variants)) != len(variants):
        raise TrimbertError(f"models need distinct names, got {', '.join(variants)} (use --name)")
    if vs is not None and vs_name in variants:
        raise TrimbertError(f"the baseline name {vs_name!r} is also a model name (use --vs-name)")
    loaded = {
        variant: (checkpoint.load(model), model) for variant, model in zip(variants, models, strict=True)
    }
    if vs is not None:
        loaded[vs_name] = (checkpoint.load(vs), vs)
    return bench_models(loaded, settings, baseline=vs_name if vs is not None else None, on_step=on_step)
