"""Running exported models in ONNX Runtime: sessions with fixed threads, and a model that predicts.

``onnx`` and ``onnxruntime`` are an optional extra (``pip install 'trimbert[onnx]'``);
:func:`require_onnxruntime` turns their absence into a one-line :class:`TrimbertError`. Sessions use a
fixed number of intra-op threads, one inter-op thread and **no spinning**: ORT's worker threads
otherwise spin for a while after each run and steal the CPU from whatever runs next (the next model
of an alternating benchmark). :func:`load_onnx` opens an export folder (see
:mod:`trimbert.deploy.export`) and returns an :class:`OnnxModel`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trimbert.core.io import conditions
from trimbert.errors import TrimbertError, first_line

EXTRA_HINT = "pip install 'trimbert[onnx]'"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_FILE = "export.json"  # what was exported, from what, and how well ORT matched PyTorch
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
RUNTIMES = ("pytorch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
INT8_RUNTIMES = ("onnxruntime-int8", "openvino-int8")
RUNTIME_LABELS = {
    "pytorch": "PyTorch",
    "onnxruntime": "ONNX Runtime",
    "onnxruntime-int8": "ONNX Runtime int8",
    "openvino": "OpenVINO",
    "openvino-int8": "OpenVINO int8",
}


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line error naming the extra to install."""
    try:
        import onnx  # noqa: F401  (the exporter and the quantizer need it too)
        import onnxruntime
    except ImportError as error:
        raise TrimbertError(f"ONNX export and runtime need onnx and onnxruntime: {EXTRA_HINT}") from error
    return onnxruntime


def session_options(threads: int | None) -> Any:
    """ORT session options: ``threads`` intra-op threads (None: ORT's default), one inter-op thread,
    sequential execution, no spinning after a run, all graph optimizations."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return options


def open_session(path: str | Path, threads: int | None = None) -> Any:
    """An ORT inference session of the ONNX file ``path`` on the CPU."""
    ort = require_onnxruntime()
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own exception types (InvalidGraph, NoSuchFile, ...)
        raise TrimbertError(f"ONNX Runtime cannot load {path}: {first_line(error)}") from error



@dataclass
class ExportedModel:
    """An exported model in a runtime: ``model(input_ids, attention_mask, token_type_ids)`` gives the
    output (logits, or the last hidden state of a model without a head) as a numpy array.
    Subclasses run one runtime (:class:`OnnxModel`, ``trimbert.deploy.openvino.OpenVinoModel``)."""

    path: Path  # the model file
    output_name: str  # "logits" or "last_hidden_state"
    info: dict[str, Any]  # export.json of the folder ({} for a bare model file)
    tokenizer: Any = None
    config: Any = None

    @property
    def runtime(self) -> str:
        raise NotImplementedError

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The output for one batch of int64 ``input_ids``, ``attention_mask``, ``token_type_ids``."""
        raise NotImplementedError

    def __call__(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> np.ndarray:
        ids = np.asarray(input_ids, dtype=np.int64)
        feed = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask, np.int64),
            "token_type_ids": np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids, np.int64),
        }
        try:
            return self.run(feed)
        except TrimbertError:
            raise
        except Exception as error:  # the runtimes' own exception types: bad token ids, shapes, ...
            raise TrimbertError(f"{RUNTIME_LABELS[self.runtime]} failed on {self.path}: {first_line(error)}") from error

    def predict(self, texts: Sequence[str] | Sequence[tuple[str, str]], *, max_length: int = 128) -> np.ndarray:
        """Tokenize ``texts`` (strings, or (first, second) pairs) with the export's tokenizer and run them."""
        if self.tokenizer is None:
            raise TrimbertError(f"{self.path.parent} has no tokenizer: pass token ids to the model instead")
        pairs = bool(texts) and isinstance(texts[0], tuple)
        columns = (list(zip(*texts, strict=True)) if pairs else [list(texts)]) if texts else [[]]
        encoded = self.tokenizer(*columns, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        return self(encoded["input_ids"], encoded["attention_mask"], encoded.get("token_type_ids"))


@dataclass
class OnnxModel(ExportedModel):
    """An exported model in an ONNX Runtime session (see :class:`ExportedModel`)."""

    session: Any = None

    @property
    def int8(self) -> bool:
        return self.path.name == INT8_FILE

    @property
    def runtime(self) -> str:
        return "onnxruntime-int8" if self.int8 else "onnxruntime"

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output_name], feed)[0]


def read_export_info(folder: str | Path) -> dict[str, Any]:
    """``export.json`` of an export folder; a TrimbertError if it is not one."""
    path = Path(folder) / EXPORT_FILE
    if not path.is_file():
        raise TrimbertError(f"{folder} is not an ONNX export folder (no {EXPORT_FILE}; make one with trimbert export)")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise TrimbertError(f"corrupt {path}: {error}") from error


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / EXPORT_FILE).is_file()


def load_onnx(folder: str | Path, *, int8: bool = False, threads: int | None = None) -> OnnxModel:
    """Open the fp32 (or, with ``int8``, the int8) model of an export folder in ONNX Runtime, with the
    folder's tokenizer and config when present."""
    folder = Path(folder)
    info, path = exported_file(folder, INT8_FILE if int8 else FP32_FILE, " (export with --int8)" if int8 else "")
    session = open_session(path, threads)
    tokenizer, config = folder_extras(folder)
    return OnnxModel(path, info.get("output", "logits"), info, tokenizer, config, session=session)


def exported_file(folder: Path, name: str, hint: str) -> tuple[dict[str, Any], Path]:
    """``export.json`` of the export folder ``folder`` and the path of its model file ``name``; a missing
    file is a TrimbertError ending in ``hint`` (how to export it)."""
    info = read_export_info(folder)
    path = folder / name
    if not path.is_file():
        raise TrimbertError(f"{folder} has no {name}{hint}")
    return info, path


def folder_extras(folder: Path) -> tuple[Any, Any]:
    """The (tokenizer, config) saved in an export folder, each None when absent; unreadable ones are
    a TrimbertError."""
    tokenizer = config = None
    if (folder / "config.json").is_file():
        from transformers import AutoConfig, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(folder)
            if any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
                tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TrimbertError(f"{folder}: unreadable config or tokenizer: {first_line(error)}") from error
    return tokenizer, config


def runtime_conditions(runtime: str, threads: int | None) -> dict[str, Any]:
    """What an ORT measurement ran on: :func:`trimbert.core.io.conditions` plus the runtime."""
    ort = require_onnxruntime()
    extra = {"threads": threads} if threads is not None else {}
    return conditions(device="cpu", runtime=runtime, onnxruntime=ort.__version__, **extra)
