"""How ``bench`` measures: :class:`BenchSettings` (the CLI options of ``bench``, the ``[bench]`` table of
a recipe) and the runtimes a model is timed in, with the variant-name suffix of each."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator

from trimbert.core.settings import Settings, check_threads
from trimbert.deploy.openvino import OV_FP32_FILE, OV_INT8_FILE
from trimbert.deploy.runtime import FP32_FILE, INT8_FILE, RUNTIMES

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
PYTORCH, ORT, INT8, OPENVINO, OPENVINO_INT8 = RUNTIMES
# variant name suffix of each runtime
RUNTIME_SUFFIX = {PYTORCH: "", ORT: "@ort", INT8: "@ort-int8", OPENVINO: "@ov", OPENVINO_INT8: "@ov-int8"}
RUNTIME_FILE = {ORT: FP32_FILE, INT8: INT8_FILE, OPENVINO: OV_FP32_FILE, OPENVINO_INT8: OV_INT8_FILE}


class BenchSettings(Settings):
    """How ``bench`` measures (the CLI options of ``bench``, the ``[bench]`` table of a recipe)."""

    flags: ClassVar[dict[str, str]] = {"runtimes": "--runtime"}  # repeated: --runtime a --runtime b

    batch_size: int = Field(8, ge=1, description="Sequences per batch.")
    seq_len: int = Field(128, ge=1, description="Tokens per sequence.")
    mode: Literal["infer", "train"] = Field(
        "infer", description="infer (forward) or train (forward+backward+optimizer step)."
    )
    repeats: int = Field(20, ge=1, description="Timed repeats per model (medians are reported).")
    warmup: int = Field(3, ge=0, description="Untimed warm-up steps per model.")
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda, cuda:1, mps, ...")
    threads: int | None = Field(None, ge=1, description="torch threads for the run (default: torch's).")
    runtimes: list[Literal["pytorch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8"]] = Field(
        ["pytorch"],
        min_length=1,
        description="Runtimes to time every model in: pytorch, onnxruntime (fp32), onnxruntime-int8, "
        "openvino (fp32), openvino-int8 (the exported ones on the CPU).",
    )
    also_train: bool = Field(
        False, description="In infer mode, also time training steps side by side (a second alternating run)."
    )
    tolerance: float = Field(
        0.05, gt=0, lt=1, description="Re-measure while a paired speed-up's 95% interval is wider than ± this share."
    )
    max_seconds: float = Field(
        120.0, gt=0, description="Time limit for re-measuring; an interval still wide then is marked unstable."
    )
    max_other_cpu: float = Field(
        0.10,
        ge=0,
        le=1,
        description="Mark ratios unstable when other processes used more than this share of the CPUs meanwhile.",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not _DEVICE.match(device):
            raise ValueError("expected auto, cpu, cuda, cuda:N, xpu, xpu:N or mps")
        return device

    @field_validator("threads")
    @classmethod
    def _threads_here(cls, threads: int | None) -> int | None:
        return check_threads(threads)

    @field_validator("runtimes")
    @classmethod
    def _runtimes_once(cls, runtimes: list[str]) -> list[str]:
        twice = [name for index, name in enumerate(runtimes) if name in runtimes[:index]]
        if twice:
            raise ValueError(f"{twice[0]} given more than once")
        return runtimes

    def resolved(self) -> BenchSettings:
        """These settings with ``device="auto"`` made concrete (cuda if available, else cpu)."""
        if self.device != "auto":
            return self
        return self.updated(device="cuda" if torch.cuda.is_available() else "cpu")
