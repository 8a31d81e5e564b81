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
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trimbert.core.io import append_jsonl_atomic, conditions, write_json_atomic
from trimbert.core.rank import is_main_process
from trimbert.errors import TrimbertError
from trimbert.report.aggregate import build_rows
from trimbert.report.collect import collect_records
from trimbert.report.records import Record, SweepUnit
from trimbert.report.render import write_report
from trimbert.spec import TrimRequest
from trimbert.sweep.benching import EventCallback, base_fields, bench_unit
from trimbert.sweep.compressing import compress_unit
from trimbert.sweep.folder import (
    ENTRY_MARKER,
    copy_recipe,
    cut_torn_tail,
    finished_finetune,
    lock,
    remove_leftovers,
)
from trimbert.sweep.healing import ensure_healed, heal_cost, healed_dir
from trimbert.sweep.plan import (
    RESULTS_FILE,
    RUNS_DIR,
    PlannedUnit,
    check_sweep_out,
    mark_sweep_folder,
    plan_sweep,
    selected_units,
)
from trimbert.sweep.recipe import Recipe, Unit, Variant, load_recipe
from trimbert.sweep.searching import SEARCH_DIR, ensure_searched, search_cost, search_key
from trimbert.train.finetune import finetune
from trimbert.train.settings import DistillSettings

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
    with lock(out) if main else contextlib.nullcontext():
        if main:
            cut_torn_tail(out / RESULTS_FILE)
            copy_recipe(recipe, out)
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


def _one_line(error: BaseException) -> str:
    text = " ".join((str(error).strip() or type(error).__name__).split())
    if isinstance(error, TrimbertError):
        return text
    return f"{type(error).__name__}: {text}" if str(error).strip() else type(error).__name__


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
    sweep = SweepUnit(**base_fields(recipe, variant, unit, fingerprint, run_dir), traceback=trace[-4000:] if trace else None)
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
            base = base_fields(recipe, variant, unit, fingerprint, run_dir)
            return [compress_unit(recipe, variant, unit, out, base, emit)] if main else None
        # Every rank of a torchrun job decides alike (same files), so they train together or not at all.
        tuned = finished_finetune(run_dir, recipe.fingerprints(variant, unit.seed, bench=False))
        reused = heal_reused = search_reused = tuned is not None
        if reused and not main:
            return None
        if tuned is None:
            if main:
                remove_leftovers(run_dir)
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
            write_json_atomic(run_dir / ENTRY_MARKER, marker)
        records = bench_unit(recipe, variant, unit, fingerprint, out, run_dir, tuned, reused, emit)
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
