"""Aggregate records into a report table: one row per variant, compared with the baseline.

:func:`collect_records` walks folders for fine-tune ``metrics.json`` files, bench ``*.json`` outputs
and sweep ``results.jsonl`` files and returns the :class:`~trimbert.report.records.Record` s;
:func:`build_rows` picks one task, merges the records of each variant (mean ± std over seeds,
:func:`merge_records`), compares every variant with the baseline (ratios of size, FLOPs, latency and
training time; metric change in points) and marks the Pareto-optimal ones (:func:`pareto_front`),
giving a :class:`ReportTable`. Rendering is :mod:`trimbert.report.render`'s job.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trimbert.core.io import read_jsonl
from trimbert.errors import TrimbertError
from trimbert.report.records import Record
from trimbert.report.ustar import Ratio, merge_ratios, rebase, record_ratios

# Files that are never records: Hugging Face model/tokenizer/trainer files, and the report's own output.
_NOT_RECORD_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "trainer_state.json",
        "results.json",
    }
)
# A ``*.json`` met while walking that is bigger than this is data, not a record file.
_MAX_WALKED_JSON_BYTES = 32 << 20
# What the Pareto front and the plots weigh the main metric against: ReportRow field -> words.
# "relative_latency" (1 / speedup) comes first: it is the latency ratio to the baseline, paired (measured
# side by side) where the records have that, so variants timed at different moments still compare.
COSTS = {"relative_latency": "latency", "latency_ms": "latency", "params": "parameters"}
PARETO_MARK = "★"
MISSING = "–"


# --------------------------------------------------------------------------------------------------
# Collecting records


def collect_records(paths: Iterable[str | Path]) -> list[Record]:
    """Find the trimbert records under ``paths`` (files or folders, walked recursively).

    Folders are searched for fine-tune ``metrics.json`` files, sweep ``results.jsonl`` files and
    bench ``*.json`` outputs (one record or a list of records); JSON that is not a record (model
    configs, tokenizers, trainer state, the report's own ``results.json``) is ignored. Entries with
    the same kind, variant, task and seed (a sweep shard run twice, a baseline benched twice) are
    deduplicated, keeping the latest by ``conditions["date"]``, then by reading order.

    Raises :class:`TrimbertError` for a path that does not exist or holds no records, and for a
    records file that is not valid JSON.
    """
    records: list[Record] = []
    for path in map(Path, paths):
        if not path.exists():
            raise TrimbertError(f"{path} does not exist")
        found = _records_in_file(path, explicit=True) if path.is_file() else _records_in_folder(path)
        if not found:
            raise TrimbertError(
                f"no trimbert records found under {path} "
                "(looked for fine-tune metrics.json, bench *.json and sweep results.jsonl files)"
            )
        records.extend(found)
    return _deduplicate(records)


def _records_in_folder(folder: Path) -> list[Record]:
    records: list[Record] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            if name.startswith(".") or name in _NOT_RECORD_FILES:
                continue
            if name == "results.jsonl" or (
                name.endswith(".json") and path.is_file() and path.stat().st_size <= _MAX_WALKED_JSON_BYTES
            ):
                records.extend(_records_in_file(path, explicit=False))
    return records


def _records_in_file(path: Path, *, explicit: bool) -> list[Record]:
    """The records of one file. A corrupt file is an error when it is known to hold records:
    given explicitly, named metrics.json / results.jsonl, or mentioning "kind" and "variant"."""
    try:
        if path.suffix == ".jsonl":
            items: list[Any] = read_jsonl(path)
        else:
            raw = path.read_bytes()
            try:
                data = json.loads(raw)
            except ValueError:
                if explicit or path.name == "metrics.json" or (b'"kind"' in raw and b'"variant"' in raw):
                    raise
                return []
            items = data if isinstance(data, list) else [data]
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError
        raise TrimbertError(f"corrupt JSON in records file {path}: {exc}") from None
    except OSError as exc:
        raise TrimbertError(f"cannot read {path}: {exc.strerror or exc}") from None
    records = []
    for item in items:
        if isinstance(item, dict) and "kind" in item and "variant" in item:
            try:
                records.append(Record.from_dict(item))
            except TypeError as exc:
                raise TrimbertError(f"invalid trimbert record in {path}: {exc}") from None
    return records


def _deduplicate(records: list[Record]) -> list[Record]:
    """Keep one record per (kind, variant, task, seed): the latest, at the first one's position."""
    kept: dict[tuple[Any, ...], Record] = {}
    for record in records:
        key = (record.kind, record.variant, record.task, record.seed)
        if key not in kept or _date(record) >= _date(kept[key]):
            kept[key] = record
    return list(kept.values())


def _date(record: Record) -> str:
    return str((record.conditions or {}).get("date") or "")


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
    latency_pairs = _paired_over_seeds([_paired(r, "latency") for r in timed])
    train_pairs = _paired_over_seeds([_paired(r, "train step") for r in timed])
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
        paired_baseline=next((name for r in timed if (name := _paired_baseline(r))), None),
        int8_speedup=_mean_std([pair[0] for r in timed if (pair := _paired_int8(r))])[0],
        int8_baseline=next((pair[1] for r in timed if (pair := _paired_int8(r))), None),
        paired_vs=merge_ratios([record_ratios(r.extra) for r in timed]),
        **{key.replace("speedup", "train_speedup", 1): value for key, value in train_pairs.items()},
        device=_device(timed[0]) if timed else None,
        batch_size=timed[0].batch_size if timed else None,
        seq_len=timed[0].seq_len if timed else None,
        train_time_s=train_time_s,
        train_time_std=train_time_std,
        heal_time_s=_mean_std([r.extra["heal_time_s"] for r in ok if r.extra.get("heal_time_s") is not None])[0],
        status="ok" if ok else "failed",
        failed=len(failed),
        error=next((r.error or "failed" for r in reversed(failed)), None),
    )


_PAIRED_KEYS = {"latency": "paired_speedup", "train step": "paired_train_step_speedup"}


def _paired(record: Record, quantity: str) -> tuple[float, float | None, float | None, bool | None] | None:
    """(ratio, low, high, stable) of a record's side-by-side ratio for ``quantity``, if it has one:
    from a sweep record's flat keys, or from a bench record's ``extra["paired"]``."""
    key = _PAIRED_KEYS[quantity]
    if record.extra.get(key) is not None:
        low, high = record.extra.get(f"{key}_interval") or (None, None)
        return record.extra[key], low, high, record.extra.get(f"{key}_stable")
    measured = (record.extra.get("paired") or {}).get(quantity)
    if measured is not None:
        return measured["ratio"], measured["low"], measured["high"], measured["stable"]
    return None


def _paired_int8(record: Record) -> tuple[float, str] | None:
    """(speed-up, reference) of an int8 record over the untrimmed int8 model, if measured."""
    if record.extra.get("paired_int8_speedup") is not None:
        return record.extra["paired_int8_speedup"], record.extra.get("paired_int8_baseline")
    nested = record.extra.get("paired_int8") or {}
    if "latency" in nested:
        return nested["latency"]["ratio"], nested.get("baseline")
    return None


def _paired_baseline(record: Record) -> str | None:
    return record.extra.get("paired_baseline") or (record.extra.get("paired") or {}).get("baseline")


def _paired_over_seeds(pairs: list[tuple | None]) -> dict[str, Any]:
    """Mean ratio over seeds, the widest interval, stable only if every seed's was."""
    if not pairs or None in pairs:
        return {}
    lows = [pair[1] for pair in pairs]
    highs = [pair[2] for pair in pairs]
    stables = [pair[3] for pair in pairs]
    return {
        "paired_speedup": statistics.mean(pair[0] for pair in pairs),
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
    pareto_cost = _mark_pareto(rows)
    return ReportTable(
        rows=rows,
        baseline=base.variant if base else None,
        task=task,
        main_metric=main_metric,
        metric_names=metric_names,
        pareto_cost=pareto_cost,
        notes=_notes(rows, base) + ([u_star_note] if u_star_note else []),
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


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices, ascending, of the Pareto-optimal points (maximize the first value, minimize the second).

    A point is dominated when another is at least as good on both values and strictly better on
    one; equal points do not dominate each other, so all of them stay on the front.
    """
    return [
        i
        for i, (metric, cost) in enumerate(points)
        if not any(
            m >= metric and c <= cost and (m > metric or c < cost)
            for j, (m, c) in enumerate(points)
            if j != i
        )
    ]


def frontier_candidates(rows: Sequence[ReportRow], cost_field: str) -> list[ReportRow]:
    """The ok rows with a finite main metric and a finite ``cost_field``."""
    return [
        row
        for row in rows
        if row.ok
        and row.main_value is not None
        and math.isfinite(row.main_value)
        and (cost := getattr(row, cost_field)) is not None
        and math.isfinite(cost)
    ]


def _mark_pareto(rows: list[ReportRow]) -> str | None:
    timed = len(frontier_candidates(rows, "latency_ms"))
    for cost_field in COSTS:
        candidates = frontier_candidates(rows, cost_field)
        if cost_field == "relative_latency" and len(candidates) < timed:
            continue  # not every timed row was measured side by side with the baseline
        if candidates:
            points = [(row.main_value, getattr(row, cost_field)) for row in candidates]
            for index in pareto_front(points):
                candidates[index].pareto = True
            return cost_field
    return None


def _notes(rows: list[ReportRow], base: ReportRow | None) -> list[str]:
    notes = []
    if base is None:
        notes.append("no untrimmed variant found: pass --baseline NAME to compare against one")
    elif not base.ok:
        notes.append(f"the baseline {base.variant} failed: {base.error}")
    setups = {(row.device, row.batch_size, row.seq_len) for row in rows if row.latency_ms is not None}
    if len(setups) > 1:
        described = "; ".join(
            f"{device or '?'}, batch {batch or '?'}, seq {seq or '?'}"
            for device, batch, seq in sorted(setups, key=str)
        )
        notes.append(f"latencies were measured under different conditions ({described}): speedups mix them")
    references = sorted({row.paired_baseline for row in rows if row.speedup is not None and row.paired_baseline})
    if any("@" in row.variant for row in rows) or any("@" in reference for reference in references):
        by_name = {row.variant: row for row in rows}
        described = []
        for reference in references:
            star = by_name.get(reference)
            value = star.main_value if star is not None else None
            described.append(reference + (f", {star.main_metric} {value:.4f}" if value is not None else ""))
        notes.append(
            f"speed-ups are against U*, the untrimmed model at its fastest deployment measured (within 0.5 points of "
            f"its fp32 metric where the runtimes' accuracies are known: {'; '.join(described)}); "
            "NAME@ort rows ran in ONNX Runtime fp32, NAME@ort-int8 in ONNX Runtime int8, NAME@ov in OpenVINO fp32, "
            "NAME@ov-int8 in OpenVINO int8 (NNCF), with the accuracy of the exported model"
        )
        if base is not None and base.main_value is not None:
            for reference in references:
                star = by_name.get(reference)
                if star is not None and star.main_value is not None and base.main_value - star.main_value > 0.005:
                    loss = 100 * (base.main_value - star.main_value)
                    notes.append(
                        f"U* ({reference}) is {loss:.2f} points below the untrimmed fp32 model: a deployment "
                        "within 0.5 points would be slower, so these speed-ups understate the gain over it"
                    )
    for row in rows:
        if row.int8_speedup is not None:
            notes.append(f"{row.variant}: {row.int8_speedup:.2f}× the speed of {row.int8_baseline}")
    return notes
