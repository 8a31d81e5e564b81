"""The exported side of a sweep unit: export the fine-tuned model, evaluate the export, one record per runtime.

A unit whose recipe asks for an export (see :meth:`trimbert.sweep.recipe.Recipe.export_for`) writes
``<run folder>/onnx`` (ONNX fp32, int8 when asked, OpenVINO IR when an OpenVINO runtime is timed) and
measures the accuracy of every exported model on the same eval data as the PyTorch model. After the
side-by-side bench, :func:`runtime_records` turns the bench's records of the exported runtimes into
sweep records ``NAME@ort``, ``NAME@ort-int8``, ``NAME@ov``, ``NAME@ov-int8`` that carry that accuracy
and the paired ratios (against every runtime of the untrimmed model: U*, its fastest runtime of the
bench, and for int8 also the untrimmed model in the same int8 runtime; :func:`copy_paired`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from trimbert.deploy.evaluate import evaluate_onnx
from trimbert.deploy.export import ExportSettings, export_onnx
from trimbert.deploy.runners import is_int8, is_openvino
from trimbert.deploy.runtime import FP32_FILE, INT8_FILE, is_export_dir, read_export_info
from trimbert.measure.bench import INT8, OPENVINO, OPENVINO_INT8, ORT, RUNTIME_SUFFIX
from trimbert.model import checkpoint
from trimbert.report.records import Export, Record
from trimbert.sweep.recipe import Recipe, Variant

EXPORT_DIR = "onnx"  # in a unit's run folder


def export_and_evaluate(
    recipe: Recipe, variant: Variant, seed: int, run_dir: Path, model: Any, settings: ExportSettings
) -> dict[str, dict[str, Any]]:
    """Export the unit's model to ``run_dir/onnx`` and evaluate it: {runtime: evaluate_onnx result}."""
    folder = run_dir / EXPORT_DIR
    export_onnx(
        model,
        folder,
        tokenizer=checkpoint.load_tokenizer(run_dir),
        int8=settings.int8,
        opset=settings.opset,
        force=True,
        info={"source": str(run_dir), "data": recipe.data.to_dict()},
        openvino=settings.openvino,
        fuse=settings.fuse,
    )
    finetune = recipe.settings_for(variant, seed)
    options = dict(
        max_length=finetune.max_length,
        batch_size=finetune.eval_batch_size,
        max_eval_samples=finetune.max_eval_samples,
        seed=finetune.seed,
    )
    runtimes = [ORT] + ([INT8] if settings.int8 else [])
    runtimes += ([OPENVINO] + ([OPENVINO_INT8] if settings.int8 else [])) if settings.openvino else []
    return {
        runtime: evaluate_onnx(folder, recipe.data, int8=is_int8(runtime), openvino=is_openvino(runtime), **options)
        for runtime in runtimes
    }


def usable_export(run_dir: Path, int8: bool) -> Path | None:
    """The baseline run's export folder when it holds what the bench needs (else the bench exports)."""
    folder = run_dir / EXPORT_DIR
    if not is_export_dir(folder) or not (folder / FP32_FILE).is_file():
        return None
    if int8 and not (folder / INT8_FILE).is_file():
        return None
    try:
        read_export_info(folder)
    except Exception:  # a corrupt export.json: export again
        return None
    return folder


def runtime_records(
    main: Record, report: Any, variant: str, evaluations: dict[str, dict[str, Any]], labels: dict[str, str]
) -> list[Record]:
    """One record per ONNX Runtime of ``variant`` in ``report``: ``main`` (the PyTorch record of the
    unit) with the runtime's timings, the export's accuracy and the paired ratios. ``labels`` maps the
    bench's names of the paired baseline (and its runtimes) to the names the report shows."""
    by_name = {record.variant: record for record in report.records}
    records = []
    for runtime in (ORT, INT8, OPENVINO, OPENVINO_INT8):
        measured = by_name.get(variant + RUNTIME_SUFFIX[runtime])
        if measured is None:
            continue
        record = Record.from_dict(main.to_dict())
        record.variant = variant + RUNTIME_SUFFIX[runtime]
        for key in ("latency_ms", "throughput", "disk_bytes"):
            setattr(record, key, getattr(measured, key))
        record.train_step_ms = None
        record.conditions = measured.conditions
        evaluation = evaluations.get(runtime)
        record.metrics = evaluation["metrics"] if evaluation else {}
        record.export = Export(runtime=runtime, eval_conditions=evaluation["conditions"] if evaluation else None)
        record.timing = copy.deepcopy(measured.timing)
        copy_paired(record, measured, labels)
        records.append(record)
    return records


def copy_paired(record: Record, measured: Record, labels: dict[str, str]) -> None:
    """Give ``record`` the paired ratios of the bench record ``measured`` (against every runtime of the
    untrimmed model; its U* and int8 reference), each reference by the name the report shows."""
    record.paired = {labels.get(reference, reference): copy.deepcopy(ratios) for reference, ratios in measured.paired.items()}
    record.u_star = labels.get(measured.u_star, measured.u_star) if measured.u_star else None
    record.int8_reference = labels.get(measured.int8_reference, measured.int8_reference) if measured.int8_reference else None
