"""Compress settings, declared once (see :mod:`trimbert.core.settings`): ``trimbert compress``'s options.

The target (a speed-up over U*, or milliseconds per batch), the runtime it is measured in, the latency
shape, how the trim is chosen (retraining-free, or trimbert's evolutionary search), the sample the
importance and the least-squares fix are computed on, and what recovers the accuracy afterwards.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from trimbert.core.settings import Settings, check_threads
from trimbert.train.settings import HEAL_STEPS

TARGET_RUNTIMES = ("auto", "onnx", "onnx-int8", "openvino", "openvino-int8")
METHODS = ("retraining-free", "search")
RECOVERIES = ("none", "distill", "heal+distill")


class CompressSettings(Settings):
    """What ``trimbert compress`` aims for and how it gets there."""

    speedup: float | None = Field(
        None, gt=1.0, description="Target: this speed-up over U*, the untrimmed model at its fastest deployment."
    )
    latency_ms: float | None = Field(None, gt=0, description="Target: at most this many ms per batch in --runtime (instead of --speedup).")
    runtime: Literal[TARGET_RUNTIMES] = Field(  # type: ignore[valid-type]
        "auto",
        description="Where the compressed model is deployed and timed: onnx | onnx-int8 (ONNX Runtime) | openvino | "
        "openvino-int8 (NNCF static int8); auto: U*'s runtime (the untrimmed model's fastest within 0.5 points).",
    )
    method: Literal[METHODS] = Field(  # type: ignore[valid-type]
        "retraining-free",
        description="How the trim is chosen: retraining-free (Fisher importance, mask search, least-squares fix); "
        "search (trimbert search's evolutionary search over per-block halved heads and FFNs and dropped FFNs, "
        "with the job's latency predictor; the input model is then trimmed to its winner).",
    )
    recover: Literal[RECOVERIES] = Field(  # type: ignore[valid-type]
        "none",
        description="After compressing: none; distill (fine-tune with the input model as teacher, with the input "
        "run's fine-tune settings); heal+distill (first heal from the input model on the task's training "
        "sentences, then distill).",
    )
    heal_steps: int = Field(
        HEAL_STEPS, ge=1, description="With --recover heal+distill: optimizer steps of the heal (batches of 32 texts)."
    )
    units: Literal["heads+ffn", "heads", "ffn"] = Field(
        "heads+ffn",
        description="What retraining-free compress may remove: attention heads and FFN neurons (and whole FFNs), "
        "or only one of them.",
    )
    width_multiple: int = Field(
        32, ge=1, description="Retraining-free: kept FFN widths are multiples of this (CPU int8 kernels work in whole tiles)."
    )
    replans: int = Field(
        2, ge=0,
        description="Retraining-free: after compressing, time the model in --runtime beside U*; while it is more than "
        "2% short of the target, compress again under a budget tightened by the shortfall, at most this many "
        "times (0: trust the latency predictor).",
    )
    search_minutes: float | None = Field(
        None, gt=0,
        description="With --method search: bound the search to this many minutes (trimbert search --budget-minutes: "
        "the work is planned up front and cut down to fit, or refused with the estimate).",
    )
    samples: int = Field(
        2048, ge=8,
        description="Retraining-free: training rows (at the input run's --max-length) the importance and the "
        "least-squares fix use.",
    )
    batch_size: int = Field(8, ge=1, description="Batch size of the latency target.")
    seq_len: int = Field(64, ge=2, description="Sequence length of the latency target.")
    threads: int | None = Field(None, ge=1, description="CPU threads for timing (default: torch's).")
    probes: int = Field(12, ge=4, description="Trims timed to fit the latency predictor (cached per runtime and shape).")
    bench_seconds: float = Field(60.0, gt=0, description="At most this long for the final side-by-side bench.")
    seed: int = Field(42, description="Seed for sampling rows, the latency probes, the search and recovery training.")

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: int | None) -> int | None:
        return check_threads(value)

    @model_validator(mode="after")
    def _one_target(self) -> CompressSettings:
        if (self.speedup is None) == (self.latency_ms is None):
            raise ValueError("give one target: --speedup X (over U*) or --latency-ms X")
        if self.method == "search" and self.units != "heads+ffn":
            raise ValueError("--units: only --method retraining-free removes one kind of unit; the search trims both")
        if self.method != "search" and self.search_minutes is not None:
            raise ValueError("--search-minutes: only with --method search")
        return self
