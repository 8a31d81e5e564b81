"""OpenVINO: an exported model as OpenVINO IR (fp32, and int8 by NNCF static quantization), and running it.

``openvino`` and ``nncf`` are an optional extra (``pip install 'trimbert[openvino]'``);
:func:`require_openvino` turns their absence into a one-line :class:`TrimbertError`.

:func:`write_ir` converts the plain ONNX graph of an export (see :mod:`trimbert.deploy.export`) to
``model.xml``/``model.bin``; with ``int8`` it also writes ``model.int8.xml``/``.bin``: NNCF
post-training quantization (``nncf.quantize`` with ``ModelType.TRANSFORMER``), weights and
activations int8 with scales calibrated on the given batches (a task's training texts, or random
ids for a bare encoder). :func:`load_openvino` compiles one of them for the CPU with a fixed number
of threads, one stream and the latency hint; fp32 runs in fp32 (``INFERENCE_PRECISION_HINT`` f32:
OpenVINO would otherwise pick bf16 on CPUs that have it, which is another precision).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trimbert.core.io import conditions
from trimbert.deploy.runtime import ExportedModel, exported_file, folder_extras
from trimbert.errors import TrimbertError, first_line

EXTRA_HINT = "pip install 'trimbert[openvino]'"
OV_FP32_FILE = "model.xml"  # with model.bin beside it
OV_INT8_FILE = "model.int8.xml"  # with model.int8.bin


def require_openvino() -> tuple[Any, Any]:
    """The ``openvino`` and ``nncf`` modules, or a one-line error naming the extra to install.

    trimbert sends nothing anywhere: NNCF's usage telemetry is switched off before it is imported
    (``NNCF_CI`` only turns its telemetry into a stub), and models are read with ``Core.read_model``
    rather than ``convert_model`` (whose converter reports usage too; its subprocess can also deadlock
    a process that holds locks in other threads)."""
    os.environ.setdefault("NNCF_CI", "1")
    try:
        import nncf
        import openvino
    except ImportError as error:
        raise TrimbertError(f"the OpenVINO runtime needs openvino and nncf: {EXTRA_HINT}") from error
    return openvino, nncf


def write_ir(
    onnx_file: Path, folder: Path, *, int8: bool = False, calibration: Sequence[dict[str, np.ndarray]] = ()
) -> list[str]:
    """Convert ``onnx_file`` to OpenVINO IR in ``folder`` (and, with ``int8``, quantize it with NNCF on
    the ``calibration`` batches); returns the file names written."""
    ov, nncf = require_openvino()
    try:
        model = ov.Core().read_model(str(onnx_file))
    except Exception as error:  # the converter's errors are many types
        raise TrimbertError(f"OpenVINO cannot convert {onnx_file.name}: {first_line(error)}") from error
    ov.save_model(model, str(folder / OV_FP32_FILE), compress_to_fp16=False)
    written = [OV_FP32_FILE, OV_FP32_FILE.replace(".xml", ".bin")]
    if int8:
        if not calibration:
            raise TrimbertError("OpenVINO int8 needs calibration batches")
        quantized = quantize(model, calibration)
        ov.save_model(quantized, str(folder / OV_INT8_FILE), compress_to_fp16=False)
        written += [OV_INT8_FILE, OV_INT8_FILE.replace(".xml", ".bin")]
    return written


def quantize(model: Any, calibration: Sequence[dict[str, np.ndarray]]) -> Any:
    """NNCF post-training (static) int8 quantization of an OpenVINO model for transformers."""
    _, nncf = require_openvino()
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)  # NNCF logs statistics, and draws progress bars on stdout:
    quiet = io.StringIO()  # stdout is the user's (trimbert search --json prints JSON there)
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return nncf.quantize(
                model,
                nncf.Dataset(list(calibration)),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(calibration),
            )
    finally:
        nncf_logger.setLevel(level)


def compile_config(threads: int | None) -> dict[str, Any]:
    """CPU plugin settings: ``threads`` inference threads (None: OpenVINO's default), one stream,
    the latency hint, f32 inference precision (int8 layers stay int8)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


@dataclass
class OpenVinoModel(ExportedModel):
    """An exported model compiled by OpenVINO for the CPU (see :class:`ExportedModel`)."""

    compiled: Any = None

    @property
    def int8(self) -> bool:
        return self.path.name == OV_INT8_FILE

    @property
    def runtime(self) -> str:
        return "openvino-int8" if self.int8 else "openvino"

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.compiled(feed)[self.compiled.output(self.output_name)]


def load_openvino(folder: str | Path, *, int8: bool = False, threads: int | None = None) -> OpenVinoModel:
    """Compile the fp32 (or, with ``int8``, the int8) OpenVINO model of an export folder for the CPU,
    with the folder's tokenizer and config when present."""
    ov, _ = require_openvino()
    folder = Path(folder)
    hint = f" (export with --openvino{' --int8' if int8 else ''})"
    info, path = exported_file(folder, OV_INT8_FILE if int8 else OV_FP32_FILE, hint)
    try:
        compiled = ov.Core().compile_model(str(path), "CPU", compile_config(threads))
    except Exception as error:  # OpenVINO raises RuntimeError for unreadable or truncated files
        raise TrimbertError(f"OpenVINO cannot load {path}: {first_line(error)}") from error
    tokenizer, config = folder_extras(folder)
    return OpenVinoModel(path, info.get("output", "logits"), info, tokenizer, config, compiled=compiled)


def openvino_conditions(runtime: str, threads: int | None) -> dict[str, Any]:
    """What an OpenVINO measurement ran on: :func:`trimbert.core.io.conditions` plus the runtime."""
    ov, nncf = require_openvino()
    extra = {"threads": threads} if threads is not None else {}
    return conditions(device="cpu", runtime=runtime, openvino=ov.__version__, nncf=nncf.__version__, **extra)
