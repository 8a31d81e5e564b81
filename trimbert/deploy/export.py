"""Exporting a (trimmed) BERT to ONNX and OpenVINO, fp32 and int8, checked against PyTorch.

:func:`export_onnx` writes an export folder: ``model.onnx`` (fp32; inputs ``input_ids``,
``attention_mask``, ``token_type_ids``, dynamic batch and sequence axes; output ``logits``, or
``last_hidden_state`` for a model without a head), with ``int8`` also ``model.int8.onnx``
(``onnxruntime.quantization.quantize_dynamic``: int8 weights, activations quantized at run time);
with ``openvino`` also OpenVINO IR ``model.xml`` and, with ``int8``, ``model.int8.xml`` (NNCF static
int8, :mod:`trimbert.deploy.openvino`); the config and tokenizer beside them, and ``export.json``
(source, trim, opset, graph form and fused operators, and the checks).

Every trim exports as ordinary ONNX ops: dropped FFNs, narrowed FFNs and dropped layers are plain
graph structure, stripped LayerNorms are identities or affine maps, and every attention normalizer is
elementwise ops and reductions (:mod:`trimbert.model.attention` writes ``2^x`` as ``e^(x·ln 2)`` while
exporting). The padding mask is turned into the additive 4D mask *inside* the graph, so that
transformers' mask shortcuts (skip the mask when nothing is padded) are not traced into it. With
``fuse``, a softmax model with every LayerNorm is traced in the form ONNX Runtime's transformer
optimizer fuses, and ``model.onnx`` is the optimizer's graph (``Attention``,
``EmbedLayerNormalization``, ``SkipLayerNormalization``, ``BiasGelu``: :mod:`trimbert.deploy.fusion`);
OpenVINO always converts the plain traced graph and does its own fusions.

The check runs each runtime and PyTorch on the same sample (real texts of a task when given, else
random ids with random padding): fp32 must match within :data:`FP32_TOLERANCE` of the largest output
(relative), else the export fails and nothing is written; for int8 the share of rows whose prediction
(argmax) is unchanged — for regression the correlation of the scores, for hidden states the mean
cosine similarity — is recorded and compared with :data:`INT8_AGREEMENT`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from trimbert.core.outputs import atomic_output_dir
from trimbert.core.settings import Settings
from trimbert.deploy.fusion import can_fuse, fusable_attention, optimize_graph
from trimbert.deploy.openvino import OV_FP32_FILE, OV_INT8_FILE, load_openvino, require_openvino, write_ir
from trimbert.deploy.runtime import (
    EXPORT_FILE,
    FP32_FILE,
    INPUT_NAMES,
    INT8_FILE,
    open_session,
    require_onnxruntime,
)
from trimbert.errors import TrimbertError
from trimbert.model.structure import applied_spec

FP32_TOLERANCE = 1e-4  # max abs difference between a runtime's fp32 and PyTorch outputs, over max(1, max |output|)
INT8_AGREEMENT = 0.99  # share of unchanged predictions (or mean cosine) expected of int8
DEFAULT_OPSET = 17
DEFAULT_CALIBRATION_ROWS = 300
_PLAIN_FILE = "plain.onnx"  # the traced graph before ORT's optimizer (OpenVINO converts this one)
_TRACE_SHAPE = (2, 16)  # batch, tokens of the example input traced (any shape runs afterwards)


class ExportSettings(Settings):
    """How a model is exported (the options of ``export``; the ``[export]`` table of a recipe)."""

    int8: bool = Field(
        False,
        description="Also write the int8 models: model.int8.onnx (ONNX Runtime dynamic int8) and, with "
        "--openvino, model.int8.xml (NNCF static int8).",
    )
    opset: int = Field(DEFAULT_OPSET, ge=14, description="ONNX opset version.")
    openvino: bool = Field(False, description="Also write OpenVINO IR (model.xml/.bin); needs trimbert[openvino].")
    fuse: bool = Field(
        False,
        description="Write ONNX Runtime's fused graph (its transformer optimizer: Attention, EmbedLayerNormalization, "
        "SkipLayerNormalization, BiasGelu) for a softmax model with every LayerNorm; time both forms with bench.",
    )
    calibration_rows: int = Field(
        DEFAULT_CALIBRATION_ROWS, ge=1, description="Training rows that calibrate OpenVINO int8 (random ids without task data)."
    )


class OnnxWrapper(nn.Module):
    """``(input_ids, attention_mask, token_type_ids) -> logits`` (or ``last_hidden_state``).

    The 2D padding mask becomes the additive ``[batch, 1, 1, keys]`` mask here, so the graph applies
    it for every input (transformers would skip an all-ones mask at trace time and bake that in).
    Every attention implementation trimbert uses accepts this format.
    """

    def __init__(self, model: nn.Module, output: str) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, input_ids, attention_mask, token_type_ids):
        blocked = 1.0 - attention_mask[:, None, None, :].to(torch.float32)
        additive = blocked * torch.finfo(torch.float32).min
        outputs = self.model(input_ids=input_ids, attention_mask=additive, token_type_ids=token_type_ids)
        return getattr(outputs, self.output)


@dataclass
class ExportCheck:
    """How a runtime's outputs compare with PyTorch's on the check sample. The fp32 check is relative:
    the max absolute difference over the largest absolute PyTorch output (at least 1), so that a model
    whose hidden states are large (stripped LayerNorms) is held to the same precision as any other."""

    rows: int
    fp32_max_abs_diff: float
    fp32_max_rel_diff: float = 0.0
    int8_measure: str | None = None  # "prediction agreement", "correlation" or "mean cosine"
    int8_value: float | None = None
    int8_ok: bool | None = None


@dataclass
class ExportResult:
    out: Path
    output: str
    opset: int
    check: ExportCheck  # ONNX Runtime
    export_s: float
    files: dict[str, int] = field(default_factory=dict)  # file name -> bytes
    fused_ops: dict[str, int] = field(default_factory=dict)  # ORT's fused operators (empty: unfused graph)
    unfused_reason: str | None = None  # why the graph was not fused, if it was not
    openvino_check: ExportCheck | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "out": str(self.out)}


def output_name(model: nn.Module) -> str:
    """``logits`` for a model with a task head, ``last_hidden_state`` for a bare encoder."""
    return "last_hidden_state" if model is getattr(model, "base_model", None) else "logits"


def random_batches(
    config: Any, *, batches: int = 4, batch_size: int = 8, seq_len: int = 32, seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Random token ids with random padding (each row keeps at least one token): a check sample
    for a model exported without task data."""
    generator = torch.Generator().manual_seed(seed)
    seq_len = min(seq_len, config.max_position_embeddings)
    sample = []
    for _ in range(batches):
        ids = torch.randint(0, config.vocab_size, (batch_size, seq_len), generator=generator)
        lengths = torch.randint(1, seq_len + 1, (batch_size,), generator=generator)
        mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()
        sample.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
    return sample


def export_onnx(
    model: nn.Module,
    out: str | Path,
    *,
    tokenizer: Any = None,
    sample: Sequence[dict[str, torch.Tensor]] | None = None,
    int8: bool = False,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    info: dict[str, Any] | None = None,
    openvino: bool = False,
    fuse: bool = False,
    calibration: Sequence[dict[str, torch.Tensor]] | None = None,
) -> ExportResult:
    """Export ``model`` (any trim) to the folder ``out`` and check it against PyTorch (module docstring).

    ``sample``: batches (``input_ids``, ``attention_mask``, optional ``token_type_ids``) for the
    check; default :func:`random_batches`. ``fuse``: write the graph of ONNX Runtime's transformer
    optimizer for a model of the structure it fuses (:mod:`trimbert.deploy.fusion`; its reason is
    recorded when it cannot); by default the plain traced graph, which ONNX Runtime optimizes at load
    time and which measured faster on 2 CPU cores in most shapes (``studies/deploy``). ``openvino``: also write
    OpenVINO IR, and with ``int8`` its NNCF int8 model, calibrated on ``calibration`` (default
    random ids). ``info`` is stored in ``export.json`` (e.g. the source and the data the model was
    trained on). Written atomically: a failed export leaves nothing behind.
    """
    require_onnxruntime()
    if openvino:
        require_openvino()
    start = time.perf_counter()
    model = _cpu_float_copy(model)
    output = output_name(model)
    sample = list(sample) if sample else random_batches(model.config)
    unfused_reason = can_fuse(model) if fuse else None
    fused = fuse and unfused_reason is None
    with atomic_output_dir(out, force) as staging:
        plain = staging / _PLAIN_FILE
        _trace(model, output, plain, opset, fusable=fused)
        fused_ops: dict[str, int] = {}
        if fused:
            fused_ops = optimize_graph(plain, staging / FP32_FILE)
        else:
            shutil.copyfile(plain, staging / FP32_FILE)
        reference = _pytorch_outputs(model, sample)
        check = _fp32_check(reference, _ort_outputs(staging / FP32_FILE, output, sample), "ONNX Runtime", output)
        if int8:
            quantize_int8(staging / FP32_FILE, staging / INT8_FILE)
            _check_int8(check, reference, _ort_outputs(staging / INT8_FILE, output, sample), output, model, sample)
        openvino_check = None
        if openvino:
            batches = [_feed(batch) for batch in (calibration or random_batches(model.config, seed=1))]
            write_ir(plain, staging, int8=int8, calibration=batches)
            openvino_check = _fp32_check(
                reference, _openvino_outputs(staging, output, sample, int8=False), "OpenVINO", output
            )
            if int8:
                int8_outputs = _openvino_outputs(staging, output, sample, int8=True)
                _check_int8(openvino_check, reference, int8_outputs, output, model, sample)
        plain.unlink()
        model.config.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        result = ExportResult(
            out=Path(out), output=output, opset=opset, check=check, export_s=time.perf_counter() - start,
            fused_ops=fused_ops, unfused_reason=unfused_reason, openvino_check=openvino_check,
        )
        model_files = (FP32_FILE, INT8_FILE, *(name.replace(".xml", ext) for name in (OV_FP32_FILE, OV_INT8_FILE) for ext in (".xml", ".bin")))
        result.files = {name: (staging / name).stat().st_size for name in model_files if (staging / name).exists()}
        spec = applied_spec(model)
        record = {
            **(info or {}),
            "output": output,
            "opset": opset,
            "int8": int8,
            "openvino": openvino,
            "graph": "fused" if fused_ops else "plain",
            "fused_ops": fused_ops,
            "unfused_reason": unfused_reason,
            "trim": spec.to_dict() if not spec.is_empty else {},
            "trim_summary": spec.summary(),
            "check": asdict(check),
            "openvino_check": asdict(openvino_check) if openvino_check is not None else None,
            "files": result.files,
        }
        (staging / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return result


def _fp32_check(reference: list[np.ndarray], outputs: list[np.ndarray], runtime: str, output: str) -> ExportCheck:
    """Compare a runtime's fp32 outputs with PyTorch's; an export outside :data:`FP32_TOLERANCE` fails."""
    absolute = max(float(np.abs(a - b).max()) for a, b in zip(outputs, reference, strict=True))
    scale = max(1.0, max(float(np.abs(b).max()) for b in reference))
    check = ExportCheck(
        rows=sum(len(batch) for batch in reference), fp32_max_abs_diff=absolute, fp32_max_rel_diff=absolute / scale
    )
    if not check.fp32_max_rel_diff <= FP32_TOLERANCE:
        raise TrimbertError(
            f"{runtime}'s {output} differ from PyTorch's by {absolute:.2e} ({check.fp32_max_rel_diff:.2e} of the "
            f"largest output, more than {FP32_TOLERANCE:g}): the export is wrong; nothing was written"
        )
    return check


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of an fp32 ONNX file (weights int8 with a scale per output channel;
    activations quantized per run)."""
    require_onnxruntime()
    import logging

    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice on the root logger
    try:
        # per-channel weight scales: much closer to fp32 than one scale per matrix, and as fast
        # (the fused operators of ORT's own domain have no shape inference: their outputs are float)
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)


def _cpu_float_copy(model: nn.Module) -> nn.Module:
    """The model in float32 on the CPU, in eval mode (a copy when it is anything else)."""
    parameter = next(model.parameters(), None)
    if parameter is not None and (parameter.dtype != torch.float32 or parameter.device.type != "cpu"):
        model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    return model.eval()


def _trace(model: nn.Module, output: str, path: Path, opset: int, *, fusable: bool = False) -> None:
    batch, tokens = _TRACE_SHAPE
    tokens = min(tokens, model.config.max_position_embeddings)
    ids = torch.ones(batch, tokens, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, tokens // 2 :] = 0  # a padded row: nothing mask-dependent may be constant-folded
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "sequence"}
    wrapper = OnnxWrapper(model, output).eval()
    attention = fusable_attention(model) if fusable else contextlib.nullcontext()
    try:
        with torch.no_grad(), warnings.catch_warnings(), attention:
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (ids, mask, torch.zeros_like(ids)),
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=[output],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as error:  # the exporter's errors are many types; keep the first line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrimbertError(f"ONNX export failed (opset {opset}): {first}") from error


def _feed(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    ids = batch["input_ids"]
    types = batch.get("token_type_ids")
    return {
        "input_ids": ids.numpy().astype(np.int64),
        "attention_mask": batch["attention_mask"].numpy().astype(np.int64),
        "token_type_ids": (torch.zeros_like(ids) if types is None else types).numpy().astype(np.int64),
    }


def _pytorch_outputs(model: nn.Module, sample: Sequence[dict[str, torch.Tensor]]) -> list[np.ndarray]:
    wrapper = OnnxWrapper(model, output_name(model)).eval()
    results = []
    with torch.inference_mode():
        for batch in sample:
            feed = {name: torch.from_numpy(value) for name, value in _feed(batch).items()}
            results.append(wrapper(**feed).numpy())
    return results


def _ort_outputs(path: Path, output: str, sample: Sequence[dict[str, torch.Tensor]]) -> list[np.ndarray]:
    session = open_session(path)
    return [session.run([output], _feed(batch))[0] for batch in sample]


def _openvino_outputs(folder: Path, output: str, sample: Sequence[dict[str, torch.Tensor]], *, int8: bool) -> list[np.ndarray]:
    (folder / EXPORT_FILE).write_text(json.dumps({"output": output}))  # load_openvino reads the folder's record
    try:
        model = load_openvino(folder, int8=int8)
        return [model.run(_feed(batch)) for batch in sample]
    finally:
        (folder / EXPORT_FILE).unlink()


def _check_int8(
    check: ExportCheck,
    reference: list[np.ndarray],
    int8: list[np.ndarray],
    output: str,
    model: nn.Module,
    sample: Sequence[dict[str, torch.Tensor]],
) -> None:
    if output == "logits" and getattr(model.config, "num_labels", 1) > 1:
        same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(int8, reference, strict=True))
        check.int8_measure, check.int8_value = "prediction agreement", same / check.rows
    elif output == "logits":  # regression: one score per row
        flat = np.concatenate([a.reshape(-1) for a in int8]), np.concatenate([b.reshape(-1) for b in reference])
        check.int8_measure, check.int8_value = "correlation", float(np.corrcoef(*flat)[0, 1])
    else:
        # hidden states: the cosine of every real (not padding) token's vector
        real = [batch["attention_mask"].numpy().astype(bool) for batch in sample]
        cosines = [_cosine(a[keep], b[keep]) for a, b, keep in zip(int8, reference, real, strict=True)]
        check.int8_measure, check.int8_value = "mean cosine", float(np.mean(np.concatenate(cosines)))
    check.int8_ok = check.int8_value >= INT8_AGREEMENT


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)
