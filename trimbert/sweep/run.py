"""Run a sweep: fine-tune, evaluate and bench every planned unit; append one record per unit.

**Resume.** Rerunning the same command skips the units whose latest record is ok and has the same
fingerprint; new, failed and changed units run again (their old run folder is replaced). A kill at
any moment loses nothing finished: records are only appended, a torn last line is ignored (and cut
off before the next append), and a unit killed during its bench reuses its finished fine-tune (so
does a unit whose bench settings alone changed: it is benchmarked again, not fine-tuned again).
A failing unit is recorded with ``status="failed"`` and its error; the sweep goes on and the command
exits with 1.

**Scale-out.** ``--shard I/N`` runs the I-th of N disjoint shares of the units (:func:`trimbert.sweep.plan.partition`:
deterministic, balanced, independent of the order of the variants; a teacher and its students stay
in one share). Give every shard its own ``--out``, e.g. in a Slurm job array::

    trimbert sweep recipes/trimbert-paper.toml --shard ${SLURM_ARRAY_TASK_ID}/8         --out runs/paper/shard-${SLURM_ARRAY_TASK_ID}
    trimbert report runs/paper/shard-*          # merges the shards into one table

Each fine-tune runs under the HF Trainer, so a sweep can use several GPUs of one node with
``torchrun --nproc_per_node 4 -m trimbert sweep RECIPE --out DIR`` (or ``accelerate launch -m
trimbert sweep ...``): every process walks the same plan and trains together; only rank 0 writes run
folders, benchmarks, appends records and writes the report. To run single variants by hand, use
``trimbert finetune ... --variant NAME`` under ``torchrun``/``accelerate launch`` with the same options.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from trimbert.core.io import append_jsonl_atomic, conditions, write_bytes_atomic, write_json_atomic
from trimbert.core.rank import is_main_process
from trimbert.errors import TrimbertError
from trimbert.measure.bench import RUNTIME_SUFFIX, bench_models
from trimbert.model import checkpoint
from trimbert.report.aggregate import build_rows
from trimbert.report.collect import collect_records
from trimbert.report.records import BenchRun, Record, SweepUnit
from trimbert.report.render import write_report
from trimbert.spec import TrimRequest
from trimbert.sweep.compressing import compress_unit
from trimbert.sweep.healing import ensure_healed, heal_cost, healed_dir
from trimbert.sweep.plan import (
    LOCK_FILE,
    RECIPE_COPY,
    RESULTS_FILE,
    RUNS_DIR,
    PlannedUnit,
    check_sweep_out,
    mark_sweep_folder,
    plan_sweep,
    selected_units,
)
from trimbert.sweep.recipe import Recipe, Unit, Variant, load_recipe
from trimbert.sweep.runtimes import (
    EXPORT_DIR,
    copy_paired,
    export_and_evaluate,
    runtime_records,
    usable_export,
)
from trimbert.sweep.searching import SEARCH_DIR, ensure_searched, search_cost, search_key
from trimbert.train.finetune import finetune
from trimbert.train.settings import DistillSettings
from trimbert.train.trainer import METRICS_FILE

_ENTRY_MARKER = ".sweep-entry.json"  # in a run folder: the fingerprint it was fine-tuned for
_LOCK_FILE = LOCK_FILE
_BASELINE_KEY = "__paired_baseline__"

EventCallback = Callable[[str, str, str], None]  # (unit name, state, detail)


# --------------------------------------------------------------------------------------------------
# Running


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: unit names by outcome, the records it wrote, the report."""

    out: Path
    plan: list[PlannedUnit]
    records: list[Record] = field(default_factory=list)  # appended by this run
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    table: Any = None  # trimbert.report.aggregate.ReportTable
    report: dict[str, Path] = field(default_factory=dict)
    report_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed



def run_sweep(
    recipe: Recipe | str | Path,
    out: str | Path,
    *,
    only: Iterable[str] | str | None = None,
    shard: str | tuple[int, int] | None = None,
    force: bool = False,
    on_event: EventCallback | None = None,
) -> SweepResult:
    """Run (or resume) a sweep into ``out``; see the module docstring.

    ``only`` limits it to some variants (plus their teachers), ``shard`` (``"I/N"``) to the I-th of
    N shares (:func:`partition`), ``force`` reruns units that are up to date. ``on_event(unit, state,
    detail)`` is told about every unit's progress (states: "pending", "running", "done", "skipped", "failed"). Failing units are
    recorded and the sweep goes on; :class:`KeyboardInterrupt` stops it (finished units are kept).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    selected_units(recipe, only, shard)  # a bad --only or --shard fails before anything is written
    out = check_sweep_out(recipe, out)  # refuses another recipe's or a user's folder; ~ expanded once
    emit = on_event or (lambda unit, state, detail="": None)
    main = is_main_process()
    out.mkdir(parents=True, exist_ok=True)
    if main:
        mark_sweep_folder(recipe, out)
    with _lock(out) if main else contextlib.nullcontext():
        if main:
            _cut_torn_tail(out / RESULTS_FILE)
            _copy_recipe(recipe, out)
        plan = plan_sweep(recipe, out, only=only, shard=shard, force=force)
        result = SweepResult(out=out, plan=plan)
        for item in plan:
            emit(item.unit.name, "pending" if item.action == "run" else "skipped", item.reason)
        failed_now: set[Unit] = set()
        for item in plan:
            unit = item.unit
            if item.action == "skip":
                result.skipped.append(unit.name)
                continue
            variant = recipe.variant(unit.variant)
            teacher_unit = Unit(variant.teacher, unit.seed) if variant.teacher else None
            if teacher_unit is not None and teacher_unit in failed_now:
                records = [
                    _failed_record(
                        recipe, variant, unit, item.fingerprint, out, f"teacher {variant.teacher!r} failed; not run"
                    )
                ]
            else:
                emit(unit.name, "running", "starting")
                records = _run_unit(recipe, variant, unit, item.fingerprint, out, emit, main)
            if records is None:  # a non-zero rank: rank 0 writes the results
                continue
            record = records[0]  # the unit's own record; then one per ONNX Runtime, if any
            if main:  # the unit's record last: once it is there, the unit is complete
                for written in [*records[1:], record]:
                    append_jsonl_atomic(out / RESULTS_FILE, written.to_dict())
            result.records.extend(records)
            if record.status == "ok":
                result.done.append(unit.name)
                emit(unit.name, "done", _done_detail(record))
            else:
                failed_now.add(unit)
                result.failed.append(unit.name)
                emit(unit.name, "failed", record.error or "failed")
        if main:
            _write_sweep_report(recipe, out, result)
    return result


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """One sweep process per output folder (a second one would interleave the same units)."""
    lock = FileLock(out / _LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise TrimbertError(f"another sweep is writing to {out}; give each shard its own --out") from None
    try:
        yield
    finally:
        lock.release()


def _cut_torn_tail(path: Path) -> None:
    """Remove a partial last line left by a kill, so the next append starts on a fresh line."""
    if not path.is_file():
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data or data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)
        handle.flush()
        os.fsync(handle.fileno())


def _copy_recipe(recipe: Recipe, out: Path) -> None:
    """Keep the recipe beside its results (replaced atomically on every run; composed from its bases and
    ``--set`` overrides, if any)."""
    write_bytes_atomic(out / RECIPE_COPY, recipe.text.encode("utf-8"))


def _one_line(error: BaseException) -> str:
    text = " ".join((str(error).strip() or type(error).__name__).split())
    if isinstance(error, TrimbertError):
        return text
    return f"{type(error).__name__}: {text}" if str(error).strip() else type(error).__name__


def _base_fields(recipe: Recipe, variant: Variant, unit: Unit, fingerprint: str, run_dir: Path) -> dict:
    return {
        "recipe": str(recipe.path),
        "recipe_hash": fingerprint,
        "finetune_hash": recipe.fingerprint(variant, unit.seed, bench=False),
        "recipe_entry": recipe.entry(variant, unit.seed),
        "unit": unit.name,
        "run_dir": str(run_dir),
    }


def _failed_record(
    recipe: Recipe,
    variant: Variant,
    unit: Unit,
    fingerprint: str,
    out: Path,
    error: str,
    trace: str | None = None,
) -> Record:

    run_dir = out / RUNS_DIR / unit.name
    sweep = SweepUnit(**_base_fields(recipe, variant, unit, fingerprint, run_dir), traceback=trace[-4000:] if trace else None)
    return Record(
        kind="sweep",
        variant=variant.name,
        model=recipe.model,
        trim=variant.spec.to_dict() if not variant.spec.is_empty else {},
        trim_summary=variant.spec.summary(),
        task=recipe.task_name,
        seed=unit.seed,
        status="failed",
        error=error,
        conditions=conditions(),
        sweep=sweep,
    )


def _remove_leftovers(run_dir: Path) -> None:
    """Staging folders a killed fine-tune left beside ``run_dir`` (``.<name>.tmp-*`` / ``.old-*``)."""
    for leftover in run_dir.parent.glob(f".{run_dir.name}.*"):
        if leftover.is_dir() and re.search(r"\.(tmp|old)-", leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)


def _finished_finetune(run_dir: Path, finetune_fingerprints: tuple[str, ...]) -> Record | None:
    """The fine-tune record of ``run_dir`` if it was fine-tuned for this recipe entry (the kill hit the
    bench, or only the bench settings changed)."""

    try:
        marker = json.loads((run_dir / _ENTRY_MARKER).read_text())
        if marker.get("finetune_hash") not in finetune_fingerprints:
            return None
        return Record.from_dict(json.loads((run_dir / METRICS_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _run_unit(
    recipe: Recipe,
    variant: Variant,
    unit: Unit,
    fingerprint: str,
    out: Path,
    emit: EventCallback,
    main: bool,
) -> list[Record] | None:
    """Fine-tune (or reuse), evaluate, export and bench one unit: its record, then one per ONNX Runtime."""

    run_dir = out / RUNS_DIR / unit.name
    finetune_fingerprint = recipe.fingerprint(variant, unit.seed, bench=False)
    try:
        if variant.compress is not None:  # not fine-tuned: another variant's run compressed (sweep/compressing.py)
            base = _base_fields(recipe, variant, unit, fingerprint, run_dir)
            return [compress_unit(recipe, variant, unit, out, base, emit)] if main else None
        # Every rank of a torchrun job decides alike (same files), so they train together or not at all.
        tuned = _finished_finetune(run_dir, recipe.fingerprints(variant, unit.seed, bench=False))
        reused = heal_reused = search_reused = tuned is not None
        if reused and not main:
            return None
        if tuned is None:
            if main:
                _remove_leftovers(run_dir)
            options: dict[str, Any] = {}
            if variant.teacher is not None:
                options["teacher"] = str(out / RUNS_DIR / Unit(variant.teacher, unit.seed).name)
                if variant.distill:
                    options["distill"] = DistillSettings.build(variant.distill)
            model, request = recipe.model, variant.trim
            if variant.search is not None:
                emit(unit.name, "running", "searching")
                settings = recipe.settings_for(variant, recipe.seeds[0])
                _, request, search_reused = ensure_searched(out, recipe.model, recipe.data, settings, variant.search)
            if variant.heal is not None:
                emit(unit.name, "running", "healing")
                healed, heal_reused = ensure_healed(out, recipe.model, variant.trim, variant.heal)
                model, request = str(healed), TrimRequest()  # the healed checkpoint is trimmed already
            emit(unit.name, "running", "fine-tuning")
            tuned = finetune(
                model,
                recipe.data,
                run_dir,
                settings=recipe.settings_for(variant, unit.seed),
                request=request,
                variant=variant.name,
                force=True,
                progress=False,
                **options,
            )
            if not main:
                return None
            marker = {"finetune_hash": finetune_fingerprint, "recipe_hash": fingerprint, "unit": unit.name}
            write_json_atomic(run_dir / _ENTRY_MARKER, marker)
        records = _bench_unit(recipe, variant, unit, fingerprint, out, run_dir, tuned, reused, emit)
        if variant.search is not None:  # the search's one-off cost, shared by every unit that uses it
            settings = recipe.settings_for(variant, recipe.seeds[0])
            folder = out / SEARCH_DIR / search_key(recipe.model, recipe.data, settings, variant.search)
            records[0].search = search_cost(folder, search_reused)
        if variant.heal is not None:  # the heal's one-off cost, shared by every unit that uses it
            records[0].heal = heal_cost(healed_dir(out, recipe.model, variant.trim, variant.heal), heal_reused)
        return records
    except Exception as error:  # recorded; KeyboardInterrupt and SystemExit stop the sweep
        if not main:
            raise
        return [_failed_record(recipe, variant, unit, fingerprint, out, _one_line(error), traceback.format_exc())]


def _paired_baseline(recipe: Recipe, variant: Variant, unit: Unit, out: Path, num_labels: int):
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


def _bench_unit(
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
    paired = _paired_baseline(recipe, variant, unit, out, model.config.num_labels)
    if paired is not None:
        models[_BASELINE_KEY] = (paired[0], paired[1])
        baseline_export = usable_export(Path(paired[1]), any(r.endswith("-int8") for r in settings.runtimes))
        if baseline_export is not None:
            exports[_BASELINE_KEY] = baseline_export

    def on_step(name: str, step: int, total: int) -> None:
        emit(unit.name, "running", f"benchmarking {step}/{total}")

    # The baseline itself is compared with its own other runtimes (U*, its fastest one, is the reference).
    reference = _BASELINE_KEY if paired is not None else (variant.name if len(settings.runtimes) > 1 else None)
    report = bench_models(
        models, settings, baseline=reference, on_step=on_step, exports=exports, runtimes_of=runtimes_of
    )
    labels = {}
    if paired is not None:  # the bench's names of the paired baseline -> the names the report shows
        labels = {_BASELINE_KEY + suffix: paired[2] + suffix for suffix in RUNTIME_SUFFIX.values()}
    record = _unit_record(recipe, variant, unit, fingerprint, run_dir, tuned, reused, settings, report, labels)
    return [record, *runtime_records(record, report, variant.name, evaluations, labels)]


def _unit_record(
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
    baseline_record = by_name.get(_BASELINE_KEY)

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
        **_base_fields(recipe, variant, unit, fingerprint, run_dir),
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


def _done_detail(record: Record) -> str:
    parts = []
    if record.main_value is not None:
        parts.append(f"{record.main_metric} {record.main_value:.3f}")
    if record.latency_ms is not None:
        parts.append(f"{record.latency_ms:.1f} ms")
    speedup = record.speedup()
    if speedup is not None:
        low = speedup.ratio if speedup.low is None else speedup.low
        high = speedup.ratio if speedup.high is None else speedup.high
        unstable = "" if speedup.stable is not False else ", unstable"
        parts.append(f"{speedup.ratio:.2f}× [{low:.2f}–{high:.2f}{unstable}] vs {record.u_star}")
    return ", ".join(parts)


def _write_sweep_report(recipe: Recipe, out: Path, result: SweepResult) -> None:

    try:
        result.table = build_rows(collect_records([out]), task=recipe.task_name)
        result.report = write_report(result.table, out)
    except (TrimbertError, OSError) as error:  # e.g. a full disk: the records are kept, the report is not written
        result.report_error = str(error)
