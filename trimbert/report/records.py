"""The record schema shared by fine-tune, heal, bench, sweep, search and report (version 2).

One :class:`Record` is one measured variant: a fine-tune run (``kind="finetune"``), a heal
(``kind="heal"``), a bench run (``kind="bench"``) or a sweep variant (``kind="sweep"``: fine-tune +
evaluate + bench together). Records are written as JSON objects (``metrics.json`` of a fine-tune
run, ``heal.json`` of a healed checkpoint, ``--out`` of ``bench``, one line each in a sweep's
``results.jsonl``) by :meth:`Record.to_dict` and read back with :meth:`Record.from_dict`, which
upgrades a version-1 object (:mod:`trimbert.report.upgrade`). A JSON object is a record when
:func:`is_record` says so: a known ``kind``, a ``variant`` and an integer ``schema_version``.

What a record measured beyond its flat numbers sits in typed sub-records, one shape for every
writer and reader:

- :class:`Timing`: the per-round times behind ``latency_ms`` (and the training steps' times);
- ``paired``: side-by-side ratios against each reference unit (:class:`PairedRatios`, one
  :class:`PairedRatio` per quantity), with ``u_star`` naming the reference of the record's
  speed-up (U*, the untrimmed model in its fastest runtime) and ``int8_reference`` the untrimmed
  model in the record's own int8 runtime;
- :class:`BenchRun` (sweep): the bench settings and the reference's times;
- :class:`Export`: the runtime an exported model ran in (the record's metrics are that model's);
- :class:`HealCost`, :class:`SearchCost`: what healing and searching cost;
- :class:`Training` (fine-tune): settings, data, loss history, labels; :class:`SweepUnit`
  (sweep): the recipe entry the unit ran.

``extra`` holds only keys this version does not know (from newer writers), so that they survive a
read and a write.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trimbert.report.upgrade import upgrade_v1

SCHEMA_VERSION = 2
KINDS = ("finetune", "heal", "bench", "sweep")
LATENCY, TRAIN_STEP = "latency", "train step"  # the paired quantities


@dataclass
class PairedRatio:
    """A paired speed-up: the median over rounds of reference time / this time (above 1: this is
    faster), its bootstrap interval ``[low, high]``, and ``stable`` False when the interval stayed
    wider than ± ``tolerance`` or other processes used more than the bench allowed of the CPUs
    (``other_cpu``, a share). Version-1 sweep records kept only ratio, interval and stability."""

    ratio: float
    low: float | None = None
    high: float | None = None
    stable: bool | None = None
    rounds: int | None = None
    confidence: float | None = None
    tolerance: float | None = None
    other_cpu: float | None = None

    def figures(self) -> tuple[float, float | None, float | None, bool | None]:
        """(ratio, low, high, stable)."""
        return self.ratio, self.low, self.high, self.stable


@dataclass
class PairedRatios:
    """A record's ratios against one reference unit, per quantity (None: not timed side by side)."""

    latency: PairedRatio | None = None
    train_step: PairedRatio | None = None

    def get(self, quantity: str) -> PairedRatio | None:
        return self.latency if quantity == LATENCY else self.train_step


@dataclass
class Timing:
    """The times of a bench run, one per paired round (ms), their 10th/90th percentiles and the share
    of the CPUs other processes used meanwhile; ``train_*`` the same for training steps."""

    times_ms: list[float] | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    other_cpu: float | None = None
    train_times_ms: list[float] | None = None
    train_p10_ms: float | None = None
    train_p90_ms: float | None = None
    train_other_cpu: float | None = None


@dataclass
class BenchRun:
    """How a sweep unit was benched: the bench settings, the attention implementation chosen, and the
    times of its paired reference (the untrimmed model in PyTorch) in the same rounds."""

    settings: dict[str, Any] = field(default_factory=dict)
    attention_choice: dict[str, Any] | None = None
    reference_times_ms: list[float] | None = None
    reference_train_times_ms: list[float] | None = None


@dataclass
class Export:
    """The exported model a record measured: its runtime (onnxruntime, onnxruntime-int8, openvino,
    openvino-int8) and the conditions of its evaluation (the record's metrics are this model's)."""

    runtime: str
    eval_conditions: dict[str, Any] | None = None


@dataclass
class HealCost:
    """A heal: its wall time, tokens and held-out loss before/after. On a heal record also the teacher,
    corpus and settings (and ``stages`` of a progressive schedule); on a unit fine-tuned from a healed
    checkpoint the checkpoint's folder and whether an earlier unit made it (``reused``)."""

    time_s: float | None = None
    tokens: int | None = None
    loss_before: float | None = None
    loss_after: float | None = None
    dir: str | None = None
    reused: bool | None = None
    teacher: str | None = None
    corpus: str | None = None
    corpus_fingerprint: str | None = None
    corpus_texts: int | None = None
    tokens_per_s: float | None = None
    settings: dict[str, Any] | None = None
    stages: list[dict[str, Any]] | None = None


@dataclass
class SearchCost:
    """The search that chose a sweep variant's trim: its folder, wall time over all phases, target and
    predicted speed-up and accuracy estimate of the chosen trim, and whether an earlier unit ran it."""

    dir: str
    time_s: float | None = None
    target_speedup: float | None = None
    predicted_speedup: float | None = None
    estimate: float | None = None
    reused: bool | None = None


@dataclass
class Training:
    """How a fine-tune trained: settings, data source, row counts, final training loss, the Trainer's
    log, label names; ``auto_drop`` (drop_ffn = auto:N's analysis) and ``distill`` (teacher and
    settings) when used."""

    settings: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    train_rows: int | None = None
    eval_rows: dict[str, int] = field(default_factory=dict)
    train_loss: float | None = None
    log_history: list[dict[str, Any]] = field(default_factory=list)
    label_names: list[str] | None = None
    auto_drop: dict[str, Any] | None = None
    distill: dict[str, Any] | None = None


@dataclass
class SweepUnit:
    """The recipe entry a sweep unit ran (``recipe_hash`` decides whether a rerun skips it), its run
    folder, whether the fine-tune was reused, the fine-tune's own conditions and shape (the record's
    flat figures are the bench's), and the traceback of a failed unit."""

    recipe: str | None = None
    recipe_hash: str | None = None
    unit: str | None = None
    run_dir: str | None = None
    finetune_hash: str | None = None
    recipe_entry: dict[str, Any] | None = None
    finetune_reused: bool | None = None
    finetune_conditions: dict[str, Any] | None = None
    finetune_flops_per_seq: float | None = None
    finetune_seq_len: int | None = None
    finetune_batch_size: int | None = None
    traceback: str | None = None


@dataclass
class Record:
    kind: str  # "finetune" | "heal" | "bench" | "sweep"
    variant: str  # human name of the variant ("baseline", "ffn-alternate", "ffn@ort-int8", ...)
    model: str  # source checkpoint (hub id, alias or folder)
    trim: dict[str, Any] = field(default_factory=dict)  # resolved TrimSpec.to_dict(); {} = untrimmed
    trim_summary: str = "untrimmed"  # TrimSpec.summary()
    task: str | None = None  # "sst2", ..., or a user dataset name
    metrics: dict[str, float] = field(default_factory=dict)  # {"accuracy": 0.81, "f1": ...}
    main_metric: str | None = None  # which key of `metrics` ranks variants
    params: int | None = None  # all parameters
    encoder_params: int | None = None  # parameters of the transformer blocks
    disk_bytes: int | None = None  # bytes of the saved weights
    flops_per_seq: float | None = None  # forward FLOPs of one sequence at `seq_len`
    seq_len: int | None = None
    batch_size: int | None = None
    latency_ms: float | None = None  # median forward latency of one batch
    throughput: float | None = None  # sequences per second
    train_step_ms: float | None = None  # median fwd+bwd+optimizer step of one batch
    peak_memory_bytes: int | None = None
    train_time_s: float | None = None  # fine-tune (or heal) wall time
    train_samples_per_s: float | None = None
    eval_time_s: float | None = None
    seed: int | None = None
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    path: str | None = None  # where the model/run lives
    conditions: dict[str, Any] = field(default_factory=dict)  # versions, device, threads, git commit, date
    timing: Timing | None = None
    paired: dict[str, PairedRatios] = field(default_factory=dict)  # reference unit -> ratios against it
    u_star: str | None = None  # the key of `paired` the speed-up is against (U*)
    int8_reference: str | None = None  # the key of `paired` that is the untrimmed model in this int8 runtime
    bench: BenchRun | None = None
    export: Export | None = None
    heal: HealCost | None = None
    search: SearchCost | None = None
    training: Training | None = None
    sweep: SweepUnit | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # only keys this version does not know
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record (``schema_version`` and ``kind`` first)."""
        data = dataclasses.asdict(self)
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Read a record object of any version (version 1 is upgraded). Keys unknown to this version are
        kept in ``extra`` (those of a sub-record under its name). TypeError for a malformed object."""
        if not isinstance(data, dict):
            raise TypeError(f"a record is a JSON object, not {type(data).__name__}")
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool):
            raise TypeError(f"schema_version must be an integer, not {version!r}")
        if version < 2:
            data = upgrade_v1(data)
        extra = dict(data.get("extra") or {})
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name not in _FIELDS:
                extra[name] = value
            elif name == "paired":
                values[name] = {str(ref): _build(PairedRatios, ratios, extra, f"paired.{ref}") for ref, ratios in (value or {}).items()}
            elif name in _SUB_RECORDS and value is not None:
                values[name] = _build(_SUB_RECORDS[name], value, extra, name)
            elif name != "extra":
                values[name] = value
        values["schema_version"] = max(version, SCHEMA_VERSION)
        return cls(**values, extra=extra)

    @property
    def main_value(self) -> float | None:
        if self.main_metric is None:
            return None
        return self.metrics.get(self.main_metric)

    def speedup(self, quantity: str = LATENCY) -> PairedRatio | None:
        """The record's paired speed-up for ``quantity``: latency against U* (``u_star``); a training
        step against the one reference timed in training (the untrimmed model in PyTorch)."""
        if quantity == LATENCY:
            ratios = self.paired.get(self.u_star) if self.u_star else None
            return ratios.latency if ratios else None
        return next((ratios.train_step for ratios in self.paired.values() if ratios.train_step), None)

    def int8_speedup(self) -> PairedRatio | None:
        """The latency ratio against the untrimmed model in this record's int8 runtime, if measured."""
        ratios = self.paired.get(self.int8_reference) if self.int8_reference else None
        return ratios.latency if ratios else None

    def latency_ratios(self) -> dict[str, PairedRatio]:
        """The latency ratio against every reference unit it was timed beside."""
        return {ref: ratios.latency for ref, ratios in self.paired.items() if ratios.latency is not None}


_SUB_RECORDS: dict[str, type] = {
    "timing": Timing,
    "bench": BenchRun,
    "export": Export,
    "heal": HealCost,
    "search": SearchCost,
    "training": Training,
    "sweep": SweepUnit,
}
_FIELDS = {f.name for f in dataclasses.fields(Record)}


def _build(cls: type, value: Any, extra: dict[str, Any], where: str) -> Any:
    """A sub-record from its JSON object (nested ones too); unknown keys go to ``extra[where]``."""
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be a JSON object, not {type(value).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, item in value.items():
        if key not in names:
            extra.setdefault(where, {})[key] = item
        elif cls is PairedRatios and item is not None:
            values[key] = _build(PairedRatio, item, extra, f"{where}.{key}")
        else:
            values[key] = item
    return cls(**values)


def is_record(item: Any) -> bool:
    """Whether a JSON value is a record object: a known kind, a variant and a schema version."""
    return (
        isinstance(item, dict)
        and item.get("kind") in KINDS
        and isinstance(item.get("variant"), str)
        and isinstance(item.get("schema_version"), int)
    )
