"""Aggregate records into a report table: one row per variant, compared with the baseline.

Given the :class:`~trimbert.report.records.Record` s (:func:`trimbert.report.collect.collect_records`
finds them), :func:`build_rows` picks one task, merges the records of each variant (mean ± std over seeds,
:func:`merge_records`), compares every variant with the baseline (ratios of size, FLOPs, latency and
training time; metric change in points) and marks the Pareto-optimal ones (:mod:`trimbert.report.pareto`),
giving a :class:`ReportTable`. Rendering is :mod:`trimbert.report.render`'s job.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trimbert.errors import TrimbertError
from trimbert.report.notes import notes
from trimbert.report.pareto import mark_pareto
from trimbert.report.records import LATENCY, TRAIN_STEP, PairedRatio, Record
from trimbert.report.ustar import Ratio, merge_ratios, rebase, record_ratios

# --------------------------------------------------------------------------------------------------
# Rows


@dataclass
class ReportRow:
    """One variant of the report: its records merged, compared with the baseline.

    Means and standard deviations are over the variant's ok records (one per seed); a ``*_std`` is
    only set with two values or more. Ratios are ``None`` where this row or the baseline lacks the
    number. ``params_ratio`` is this / baseline; ``flops_reduction``, ``speedup`` and
    ``train_speedup`` are baseline / this, so above 1 means cheaper or faster. Speed-ups are only
    ever *paired*: measured side by side with the untrimmed model in one alternating run (a sweep
    benches each variant so; ``bench --vs`` too), as the median of per-round ratios with a 95%
    bootstrap interval (``*_low``/``*_high``; over seeds: the mean ratio, the widest interval) and
    ``*_stable`` False when the interval stayed wider than the bench's tolerance.
    ``train_speedup`` is the paired training-step ratio (a bench with ``also_train``), not a quotient
    of fine-tune wall times (those are ``train_time_s``, shown for cost only).
    """

    variant: str
    trim_summary: str = "untrimmed"
    trim: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    task: str | None = None
    main_metric: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_std: dict[str, float] = field(default_factory=dict)
    seeds: int = 0
    delta_points: float | None = None
    params: int | None = None
    params_ratio: float | None = None
    disk_bytes: int | None = None
    flops_per_seq: float | None = None
    flops_reduction: float | None = None
    latency_ms: float | None = None
    latency_std: float | None = None
    speedup: float | None = None
    paired_speedup: float | None = None
    paired_baseline: str | None = None  # the variant the paired ratios were measured against
    int8_speedup: float | None = None  # an int8 model's paired speed-up over the untrimmed int8 model
    int8_baseline: str | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    speedup_stable: bool | None = None
    paired_train_speedup: float | None = None
    train_speedup_low: float | None = None
    train_speedup_high: float | None = None
    train_speedup_stable: bool | None = None
    device: str | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    train_time_s: float | None = None
    train_time_std: float | None = None
    heal_time_s: float | None = None  # the heal before fine-tuning (one-off, shared by the seeds)
    train_speedup: float | None = None
    status: str = "ok"
    failed: int = 0
    error: str | None = None
    paired_vs: dict[str, Ratio] = field(default_factory=dict)  # latency ratios vs each untrimmed runtime
    is_baseline: bool = False
    pareto: bool = False

    @property
    def relative_latency(self) -> float | None:
        """Latency as a fraction of the baseline's (1 / speedup), if a speedup is known."""
        return 1.0 / self.speedup if self.speedup else None

    @property
    def main_value(self) -> float | None:
        """The mean of the main metric, if this row has it."""
        return self.metrics.get(self.main_metric) if self.main_metric else None

    @property
    def main_std(self) -> float | None:
        """The standard deviation of the main metric over seeds, if known."""
        return self.metrics_std.get(self.main_metric) if self.main_metric else None

    @property
    def ok(self) -> bool:
        """Whether at least one of the variant's records succeeded."""
        return self.status == "ok"


@dataclass
class ReportTable:
    """The report: its rows (baseline first) and what they are compared on.

    ``pareto_cost`` is the ReportRow field the Pareto front minimizes ("latency_ms", or "params"
    when no row has a latency); ``notes`` are caveats worth printing under the table.
    """

    rows: list[ReportRow]
    baseline: str | None
    task: str | None
    main_metric: str | None
    metric_names: list[str]
    pareto_cost: str | None
    notes: list[str] = field(default_factory=list)


def merge_records(records: Iterable[Record]) -> list[ReportRow]:
    """Merge the records of each variant into one row, in order of first appearance (a model's
    runtimes, ``NAME@ort`` and ``NAME@ort-int8``, right after ``NAME``).

    A fine-tune record and a bench record of a variant combine (metrics from the fine-tune, latency
    from the bench); several seeds give means and standard deviations; a fine-tune record repeated
    by a sweep record of the same task and seed is dropped. A variant whose records all failed is a
    failed row carrying the error. The baseline comparisons are left to :func:`build_rows`.

    Records of one variant must share one trim, and their fine-tunes one model; otherwise
    :class:`TrimbertError` (give each a distinct variant name). Heal records (``heal.json`` of a healed
    checkpoint, e.g. in a sweep's ``heal/``) are not rows beside evaluated models: their cost is in the
    rows of the models fine-tuned from them (``heal_time_s``); alone, they are the rows.
    """
    records = list(records)
    if any(record.kind != "heal" for record in records):
        records = [record for record in records if record.kind != "heal"]
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.variant, []).append(record)
    # A model's runtimes together, PyTorch first: "x", "x@ort", "x@ort-int8" (in order of first appearance of x).
    first = {name.split("@")[0]: None for name in groups}
    order = {base: index for index, base in enumerate(first)}
    names = sorted(groups, key=lambda name: (order[name.split("@")[0]], "@" in name, name))
    return [_merge_variant(name, groups[name]) for name in names]


def _merge_variant(variant: str, records: list[Record]) -> ReportRow:
    trims = {json.dumps(r.trim or {}, sort_keys=True): r.trim_summary for r in records}
    if len(trims) > 1:
        raise TrimbertError(
            f"variant {variant!r} has records with different trims ({'; '.join(trims.values())}); "
            "give each a distinct variant name"
        )
    models = sorted({r.model for r in records if r.metrics})
    if len(models) > 1:
        raise TrimbertError(
            f"variant {variant!r} has fine-tunes of different models ({', '.join(models)}); "
            "give each a distinct variant name"
        )
    swept = {(r.task, r.seed) for r in records if r.kind == "sweep"}
    records = [r for r in records if not (r.kind == "finetune" and (r.task, r.seed) in swept)]
    ok = [r for r in records if r.status == "ok"]
    failed = [r for r in records if r.status != "ok"]
    scored = [r for r in ok if r.metrics]
    timed = [r for r in ok if r.latency_ms is not None]

    metrics: dict[str, float] = {}
    metrics_std: dict[str, float] = {}
    for name in _unique(name for r in scored for name in r.metrics):
        metrics[name], std = _mean_std([r.metrics[name] for r in scored if name in r.metrics])
        if std is not None:
            metrics_std[name] = std
    latency_ms, latency_std = _mean_std([r.latency_ms for r in timed])
    latency_pairs = _paired_over_seeds([r.speedup(LATENCY) for r in timed])
    train_pairs = _paired_over_seeds([r.speedup(TRAIN_STEP) for r in timed])
    int8 = [r for r in timed if r.int8_speedup() is not None]
    train_time_s, train_time_std = _mean_std([r.train_time_s for r in ok if r.train_time_s is not None])

    def first(attribute: str) -> Any:
        return next((v for r in ok + failed if (v := getattr(r, attribute)) is not None), None)

    return ReportRow(
        variant=variant,
        trim_summary=records[0].trim_summary,
        trim=records[0].trim or {},
        model=models[0] if models else records[0].model,
        task=first("task"),
        main_metric=next((r.main_metric for r in scored if r.main_metric), None),
        metrics=metrics,
        metrics_std=metrics_std,
        seeds=len(scored),
        params=first("params"),
        disk_bytes=first("disk_bytes"),
        flops_per_seq=first("flops_per_seq"),
        latency_ms=latency_ms,
        latency_std=latency_std,
        **latency_pairs,
        paired_baseline=next((r.u_star for r in timed if r.u_star), None),
        int8_speedup=_mean_std([r.int8_speedup().ratio for r in int8])[0],
        int8_baseline=int8[0].int8_reference if int8 else None,
        paired_vs=merge_ratios([record_ratios(r) for r in timed]),
        **{key.replace("speedup", "train_speedup", 1): value for key, value in train_pairs.items()},
        device=_device(timed[0]) if timed else None,
        batch_size=timed[0].batch_size if timed else None,
        seq_len=timed[0].seq_len if timed else None,
        train_time_s=train_time_s,
        train_time_std=train_time_std,
        heal_time_s=_mean_std([r.heal.time_s for r in ok if r.heal and r.heal.time_s is not None])[0],
        status="ok" if ok else "failed",
        failed=len(failed),
        error=next((r.error or "failed" for r in reversed(failed)), None),
    )


def _paired_over_seeds(pairs: list[PairedRatio | None]) -> dict[str, Any]:
    """Mean ratio over seeds, the widest interval, stable only if every seed's was."""
    if not pairs or None in pairs:
        return {}
    lows = [pair.low for pair in pairs]
    highs = [pair.high for pair in pairs]
    stables = [pair.stable for pair in pairs]
    return {
        "paired_speedup": statistics.mean(pair.ratio for pair in pairs),
        "speedup_low": None if None in lows else min(lows),
        "speedup_high": None if None in highs else max(highs),
        "speedup_stable": None if None in stables else all(stables),
    }


def _device(record: Record) -> str | None:
    conditions = record.conditions or {}
    return conditions.get("device_name") or conditions.get("device")


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def build_rows(
    records: Iterable[Record], *, baseline: str | None = None, task: str | None = None
) -> ReportTable:
    """Build the report table: one task's rows compared with the baseline, Pareto rows marked.

    ``task`` picks the task (required when the records hold several); records without a task
    (bench only) join their variant's row. ``baseline`` names the variant to compare with; by
    default the untrimmed one (``trim == {}`` or summary "untrimmed"), preferring an ok one named
    "baseline", else the first. Rows are marked Pareto-optimal on the main metric against latency,
    or against parameters when no row has a latency; failed rows are never marked.
    """
    records = list(records)
    if not records:
        raise TrimbertError("no trimbert records to report")
    task = _select_task(records, task)
    rows = merge_records(r for r in records if r.task in (task, None))
    base = _select_baseline(rows, baseline)
    if base is not None:
        base.is_baseline = True
        rows.insert(0, rows.pop(rows.index(base)))

    main_metric = (base.main_metric if base else None) or next(
        (r.main_metric for r in rows if r.main_metric), None
    )
    metric_names = _unique(name for row in rows for name in row.metrics)
    if main_metric is None and metric_names:
        main_metric = metric_names[0]
    if main_metric in metric_names:
        metric_names.remove(main_metric)
        metric_names.insert(0, main_metric)
    for row in rows:
        row.main_metric = main_metric
    u_star_note = rebase(rows, base)
    for row in rows:
        if base is not None:
            _compare(row, base)
    if base is not None and not any(row.paired_train_speedup for row in rows):
        base.train_speedup = base.train_speedup_low = base.train_speedup_high = None
    pareto_cost = mark_pareto(rows)
    return ReportTable(
        rows=rows,
        baseline=base.variant if base else None,
        task=task,
        main_metric=main_metric,
        metric_names=metric_names,
        pareto_cost=pareto_cost,
        notes=notes(rows, base) + ([u_star_note] if u_star_note else []),
    )


def _select_task(records: list[Record], task: str | None) -> str | None:
    tasks = sorted({r.task for r in records if r.task is not None})
    if task is not None:
        if task not in tasks:
            found = ", ".join(tasks) if tasks else "none"
            raise TrimbertError(f"no records for task {task!r} (tasks found: {found})")
        return task
    if len(tasks) > 1:
        raise TrimbertError(f"records of several tasks found ({', '.join(tasks)}); pick one with --task")
    return tasks[0] if tasks else None


def _select_baseline(rows: list[ReportRow], name: str | None) -> ReportRow | None:
    if name is not None:
        for row in rows:
            if row.variant == name:
                return row
        names = ", ".join(row.variant for row in rows)
        raise TrimbertError(f"unknown baseline {name!r}; variants: {names}")
    untrimmed = [
        (not row.ok, row.variant != "baseline", index, row)
        for index, row in enumerate(rows)
        if not row.trim or row.trim_summary == "untrimmed"
    ]
    return min(untrimmed)[-1] if untrimmed else None


def _compare(row: ReportRow, base: ReportRow) -> None:
    if row.main_value is not None and base.main_value is not None:
        row.delta_points = 100 * (row.main_value - base.main_value)
    row.params_ratio = _ratio(row.params, base.params)
    row.flops_reduction = _ratio(base.flops_per_seq, row.flops_per_seq)
    paired_with = row.paired_baseline or ""
    # The untrimmed model in any runtime: "baseline", "baseline@ort" (its fastest fp32 runtime may be ORT).
    side_by_side = (
        not base.trim
        and row.paired_speedup is not None
        and (paired_with.split("@")[0] == base.variant or paired_with.startswith("pretrained "))
    )
    # Only ratios measured side by side with the untrimmed model, never of separately measured times.
    row.speedup = row.paired_speedup if side_by_side else (1.0 if row is base and row.latency_ms else None)
    row.train_speedup = (
        row.paired_train_speedup if side_by_side else (1.0 if row is base and row.latency_ms else None)
    )
    if row is base and row.speedup == 1.0 and not side_by_side:
        row.speedup_low = row.speedup_high = 1.0
        row.speedup_stable = True
        row.train_speedup_low = row.train_speedup_high = 1.0
        row.train_speedup_stable = True


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


