"""Bench a fine-tuned sweep unit beside the untrimmed model and make its records (its own, then one per ONNX
Runtime; see :mod:`trimbert.sweep.runtimes`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trimbert.errors import TrimbertError
from trimbert.measure.bench import RUNTIME_SUFFIX, bench_models
from trimbert.model import checkpoint
from trimbert.report.records import BenchRun, Record, SweepUnit
from trimbert.sweep.plan import RUNS_DIR
from trimbert.sweep.recipe import Recipe, Unit, Variant
from trimbert.sweep.runtimes import (
    EXPORT_DIR,
    copy_paired,
    export_and_evaluate,
    runtime_records,
    usable_export,
)
from trimbert.train.trainer import METRICS_FILE

BASELINE_KEY = "__paired_baseline__"
EventCallback = Callable[[str, str, str], None]  # (unit name, state, detail)


def base_fields(recipe: Recipe, variant: Variant, unit: Unit, fingerprint: str, run_dir: Path) -> dict:
    """What every record of a unit says of its recipe entry and run folder."""
    return {
        "recipe": str(recipe.path),
        "recipe_hash": fingerprint,
        "finetune_hash": recipe.fingerprint(variant, unit.seed, bench=False),
        "recipe_entry": recipe.entry(variant, unit.seed),
        "unit": unit.name,
        "run_dir": str(run_dir),
    }


def paired_baseline(recipe: Recipe, variant: Variant, unit: Unit, out: Path, num_labels: int):
    """(model, source, label) of the untrimmed model to bench beside ``variant``, or None for the baseline."""

    baseline = recipe.baseline
    if baseline is not None and baseline.name == variant.name:
        return None
    if baseline is not None:
        for seed in (unit.seed, *recipe.seeds):
            folder = out / RUNS_DIR / Unit(baseline.name, seed).name
            if (folder / METRICS_FILE).is_file():
                try:
                    return checkpoint.load(folder), str(folder), baseline.name
                except TrimbertError:
                    continue
    model = checkpoint.load(
        recipe.model, head="sequence-classification", config_overrides={"num_labels": num_labels}
    )
    return model, checkpoint.resolve_source(recipe.model), f"pretrained {recipe.model}"


def bench_unit(
    recipe: Recipe,
    variant: Variant,
    unit: Unit,
    fingerprint: str,
    out: Path,
    run_dir: Path,
    tuned: Record,
    reused: bool,
    emit: EventCallback,
) -> list[Record]:
    """Export and evaluate the unit's model where asked, bench it beside the untrimmed model: its records."""
    settings = recipe.bench.resolved()
    model = checkpoint.load(run_dir)
    export = recipe.export_for(variant)
    # A variant that is not exported runs in PyTorch only, still against U* (the baseline in its fastest runtime).
    runtimes_of = {} if export is not None else {variant.name: ["pytorch"]}
    evaluations: dict[str, dict[str, Any]] = {}
    exports: dict[str, Path] = {}
    if export is not None:
        emit(unit.name, "running", "exporting to ONNX and evaluating the export")
        evaluations = export_and_evaluate(recipe, variant, unit.seed, run_dir, model, export)
        exports[variant.name] = run_dir / EXPORT_DIR
    emit(unit.name, "running", "benchmarking")
    models = {variant.name: (model, str(run_dir))}
    paired = paired_baseline(recipe, variant, unit, out, model.config.num_labels)
    if paired is not None:
        models[BASELINE_KEY] = (paired[0], paired[1])
        baseline_export = usable_export(Path(paired[1]), any(r.endswith("-int8") for r in settings.runtimes))
        if baseline_export is not None:
            exports[BASELINE_KEY] = baseline_export

    def on_step(name: str, step: int, total: int) -> None:
        emit(unit.name, "running", f"benchmarking {step}/{total}")

    # The baseline itself is compared with its own other runtimes (U*, its fastest one, is the reference).
    reference = BASELINE_KEY if paired is not None else (variant.name if len(settings.runtimes) > 1 else None)
    report = bench_models(
        models, settings, baseline=reference, on_step=on_step, exports=exports, runtimes_of=runtimes_of
    )
    labels = {}
    if paired is not None:  # the bench's names of the paired baseline -> the names the report shows
        labels = {BASELINE_KEY + suffix: paired[2] + suffix for suffix in RUNTIME_SUFFIX.values()}
    record = unit_record(recipe, variant, unit, fingerprint, run_dir, tuned, reused, settings, report, labels)
    return [record, *runtime_records(record, report, variant.name, evaluations, labels)]


def unit_record(
    recipe: Recipe,
    variant: Variant,
    unit: Unit,
    fingerprint: str,
    run_dir: Path,
    tuned: Record,
    reused: bool,
    settings: Any,
    report: Any,
    labels: dict[str, str],
) -> Record:
    """The unit's own record: the fine-tune's, with the PyTorch bench figures and paired ratios."""
    by_name = {record.variant: record for record in report.records}
    measured = by_name[variant.name]
    baseline_record = by_name.get(BASELINE_KEY)

    record = Record.from_dict(tuned.to_dict())
    record.kind = "sweep"
    record.variant = variant.name
    record.path = str(run_dir)
    record.seed = unit.seed
    for key in (
        "latency_ms",
        "throughput",
        "train_step_ms",
        "peak_memory_bytes",
        "flops_per_seq",
        "seq_len",
        "batch_size",
    ):
        setattr(record, key, getattr(measured, key))
    record.disk_bytes = tuned.disk_bytes if tuned.disk_bytes is not None else measured.disk_bytes
    record.conditions = measured.conditions
    record.sweep = SweepUnit(
        **base_fields(recipe, variant, unit, fingerprint, run_dir),
        finetune_reused=reused,
        finetune_conditions=tuned.conditions,
        finetune_flops_per_seq=tuned.flops_per_seq,
        finetune_seq_len=tuned.seq_len,
        finetune_batch_size=tuned.batch_size,
    )
    reference = baseline_record.timing if baseline_record and baseline_record.timing else None
    record.bench = BenchRun(
        settings=settings.to_dict(),
        attention_choice=report.attention_choice.get(variant.name),
        reference_times_ms=reference.times_ms if reference else None,
        reference_train_times_ms=reference.train_times_ms if reference else None,
    )
    record.timing = measured.timing
    copy_paired(record, measured, labels)
    return record
