"""The record schema shared by fine-tune, bench, sweep and report.

One :class:`Record` is one measured variant: a fine-tune run (``kind="finetune"``), a bench run
(``kind="bench"``) or a sweep variant (``kind="sweep"``, fine-tune + evaluate + bench together).
Records are written as JSON objects (``metrics.json`` of a fine-tune run, ``--json`` output of
``bench``, one line each in a sweep's ``results.jsonl``) and read back with :func:`Record.from_dict`.
Unknown keys are kept in ``extra`` so that newer writers do not break older readers. The files are
written with :mod:`trimbert.core.io` (atomic writes; ``conditions`` fills :attr:`Record.conditions`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass
class Record:
    kind: str  # "finetune" | "bench" | "sweep"
    variant: str  # human name of the variant ("baseline", "ffn-alternate", ...)
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
    train_time_s: float | None = None  # fine-tune wall time
    train_samples_per_s: float | None = None
    eval_time_s: float | None = None
    seed: int | None = None
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    path: str | None = None  # where the model/run lives
    conditions: dict[str, Any] = field(default_factory=dict)  # versions, device, threads, git commit, date
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        extra = dict(known.pop("extra", {}) or {})
        extra.update({k: v for k, v in data.items() if k not in names})
        return cls(**known, extra=extra)

    @property
    def main_value(self) -> float | None:
        if self.main_metric is None:
            return None
        return self.metrics.get(self.main_metric)
