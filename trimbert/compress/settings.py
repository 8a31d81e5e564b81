"""Compress settings, declared once (see :mod:`trimbert.settings`): ``trimbert compress``'s options.

The target (a speed-up over U*, or milliseconds per batch), the runtime it is measured in, the latency
shape, the sample the importance and the least-squares fix are computed on, and what recovers the
accuracy afterwards.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from trimbert.settings import Settings, check_threads

TARGET_RUNTIMES = ("auto", "onnx", "onnx-int8", "openvino", "openvino-int8")
RECOVERIES = ("none", "distill")


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
    recover: Literal[RECOVERIES] = Field(  # type: ignore[valid-type]
        "none",
        description="After compressing: none; distill (fine-tune with the input model as teacher, with the input "
        "run's fine-tune settings).",
    )
    units: Literal["heads+ffn", "heads", "ffn"] = Field(
        "heads+ffn", description="What compress may remove: attention heads and FFN neurons (and whole FFNs), or only one of them."
    )
    width_multiple: int = Field(
        32, ge=1, description="Kept FFN widths are multiples of this (CPU int8 kernels work in whole tiles)."
    )
    samples: int = Field(
        2048, ge=8, description="Training rows (at the input run's --max-length) the importance and the least-squares fix use."
    )
    batch_size: int = Field(8, ge=1, description="Batch size of the latency target.")
    seq_len: int = Field(64, ge=2, description="Sequence length of the latency target.")
    threads: int | None = Field(None, ge=1, description="CPU threads for timing (default: torch's).")
    probes: int = Field(12, ge=4, description="Trims timed to fit the latency predictor (cached per runtime and shape).")
    bench_seconds: float = Field(60.0, gt=0, description="At most this long for the final side-by-side bench.")
    seed: int = Field(42, description="Seed for sampling rows and for recovery training.")

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: int | None) -> int | None:
        return check_threads(value)

    @model_validator(mode="after")
    def _one_target(self) -> CompressSettings:
        if (self.speedup is None) == (self.latency_ms is None):
            raise ValueError("give one target: --speedup X (over U*) or --latency-ms X")
        return self
