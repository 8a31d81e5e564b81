"""Opening an export folder in the runtime asked for: ONNX Runtime or OpenVINO, fp32 or int8.

The runtime names (:data:`~trimbert.deploy.runtime.RUNTIMES`) are the vocabulary of ``bench
--runtime``, ``evaluate --runtime``, recipes and reports: ``pytorch`` (not an export),
``onnxruntime``, ``onnxruntime-int8``, ``openvino`` and ``openvino-int8``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trimbert.deploy.openvino import load_openvino, openvino_conditions, require_openvino
from trimbert.deploy.runtime import (
    RUNTIMES,
    ExportedModel,
    load_onnx,
    require_onnxruntime,
    runtime_conditions,
)
from trimbert.errors import TrimbertError

PYTORCH = "pytorch"


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise TrimbertError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    return runtime


def is_openvino(runtime: str) -> bool:
    return runtime.startswith("openvino")


def is_int8(runtime: str) -> bool:
    return runtime.endswith("-int8")


def require_runtimes(runtimes: Iterable[str]) -> None:
    """The packages of every exported runtime in ``runtimes``, or a one-line error naming the extra."""
    runtimes = [check_runtime(runtime) for runtime in runtimes]
    if any(runtime != PYTORCH for runtime in runtimes):
        require_onnxruntime()  # every export starts as ONNX
    if any(is_openvino(runtime) for runtime in runtimes):
        require_openvino()


def export_needs(runtimes: Iterable[str]) -> dict[str, bool]:
    """The export options that make the files of ``runtimes``: ``int8`` and ``openvino``."""
    runtimes = list(runtimes)
    return {"int8": any(map(is_int8, runtimes)), "openvino": any(map(is_openvino, runtimes))}


def load_exported(folder: str | Path, runtime: str, *, threads: int | None = None) -> ExportedModel:
    """The model of export folder ``folder`` in ``runtime`` (any of :data:`RUNTIMES` but pytorch)."""
    if check_runtime(runtime) == PYTORCH:
        raise TrimbertError("pytorch is not an exported runtime: load the checkpoint with trimbert.load")
    loader = load_openvino if is_openvino(runtime) else load_onnx
    return loader(folder, int8=is_int8(runtime), threads=threads)


def measured_on(runtime: str, threads: int | None) -> dict[str, Any]:
    """The conditions of a measurement in an exported ``runtime`` (versions of the runtime's packages)."""
    conditions = openvino_conditions if is_openvino(check_runtime(runtime)) else runtime_conditions
    return conditions(runtime, threads)
