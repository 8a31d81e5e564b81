"""``trimbert export``: a model (any trim, fine-tuned or not) as ONNX and OpenVINO, fp32 and int8, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trimbert.cli.app import ForceOpt, JsonOpt, app, console, data_inputs, megabytes, print_json, say
from trimbert.cli.options import Group, with_options
from trimbert.data.source import DataSource
from trimbert.deploy.export import ExportSettings
from trimbert.errors import TrimbertError


@app.command()
@with_options(Group("settings", ExportSettings))
def export(
    model: Annotated[
        str, typer.Argument(help="A fine-tuned run folder, a trimmed checkpoint, a hub id or 'minilm'.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Export folder: model.onnx, config, tokenizer, export.json.")],
    settings: ExportSettings,
    task: Annotated[
        str | None,
        typer.Option("--task", help="Check on this GLUE task's dev texts (default: a run's own data, else random ids)."),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option("--data-dir", help=DataSource.model_fields["data_dir"].description)
    ] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Dev rows in the check sample.")] = 256,
    max_length: Annotated[int, typer.Option("--max-length", min=1, help="Tokens per text in the check.")] = 128,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export MODEL to ONNX (fp32, and int8 with --int8), with --openvino also to OpenVINO IR, and check
    each runtime against PyTorch."""
    from trimbert.core.outputs import check_output_dir
    from trimbert.data.batches import sample_batches
    from trimbert.deploy.export import FP32_TOLERANCE, INT8_AGREEMENT, export_onnx
    from trimbert.deploy.runtime import require_onnxruntime
    from trimbert.measure.size import check_seq_len
    from trimbert.model import checkpoint

    require_onnxruntime()
    if settings.openvino:
        from trimbert.deploy.openvino import require_openvino

        require_openvino()
    source = _check_source(model, task, data_dir)
    inputs = (model, data_dir, *(data_inputs(source) if source is not None else ()))
    out = check_output_dir(out, force, inputs=inputs)  # ~ expanded: use it from here on
    loaded = checkpoint.load(model)
    tokenizer = checkpoint.load_tokenizer(model)
    sample = calibration = None
    if source is not None:
        if tokenizer is None:
            raise TrimbertError(f"{model} has no tokenizer to encode the check texts")
        check_seq_len(loaded, max_length)
        dataset, info = source.load()
        sample = sample_batches(dataset[info.eval_splits[0]], tokenizer, samples=samples, max_length=max_length)
        if settings.openvino and settings.int8:
            calibration = sample_batches(
                dataset["train"], tokenizer, samples=settings.calibration_rows, max_length=max_length
            )
    result = export_onnx(
        loaded,
        out,
        tokenizer=tokenizer,
        sample=sample,
        int8=settings.int8,
        opset=settings.opset,
        force=force,
        openvino=settings.openvino,
        fuse=settings.fuse,
        calibration=calibration,
        info={"source": model, "data": source.to_dict() if source is not None else None},
    )
    if as_json:
        print_json(result.to_dict())
        return
    check = result.check
    table = Table(title=f"export: {model} -> {out} (opset {settings.opset}, output {result.output})")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("needed", justify="right")
    where = "dev texts" if source is not None else "random ids"
    table.add_row(f"rows ({where})", str(check.rows), "")
    checks = [("ORT", check)] + ([("OpenVINO", result.openvino_check)] if result.openvino_check else [])
    for runtime, measured in checks:
        table.add_row(
            f"{runtime} fp32 max |diff| / max |PyTorch|", f"{measured.fp32_max_rel_diff:.2e}", f"≤ {FP32_TOLERANCE:g}"
        )
        if measured.int8_measure is not None:
            table.add_row(f"{runtime} int8 {measured.int8_measure}", f"{measured.int8_value:.4f}", f"≥ {INT8_AGREEMENT:g}")
    for name, size in result.files.items():
        table.add_row(name, megabytes(size), "")
    console.print(table)
    if result.fused_ops:
        fused = ", ".join(f"{count} {name}" for name, count in result.fused_ops.items())
        console.print(f"ONNX Runtime graph fused: {fused}")
    elif result.unfused_reason is not None:
        say(f"note: the ONNX Runtime graph is not fused ({result.unfused_reason}): exported as plain ONNX ops")
    for runtime, measured in checks:
        if measured.int8_ok is False:
            flag = " --openvino" if runtime == "OpenVINO" else ""
            say(
                f"warning: {runtime} int8 {measured.int8_measure} {measured.int8_value:.4f} is below {INT8_AGREEMENT:g}: "
                f"measure its accuracy (trimbert evaluate {out} --int8{flag}) before deploying it"
            )
    console.print(f"exported in {result.export_s:.1f} s to {out}")


def _check_source(model: str, task: str | None, data_dir: str | None) -> DataSource | None:
    """The data of the check sample: --task, else the data a fine-tuned run recorded, else none."""
    from trimbert.train.finetune import source_for_run
    from trimbert.train.trainer import METRICS_FILE

    if task is not None:
        return DataSource(task=task, data_dir=data_dir)
    if (Path(model) / METRICS_FILE).is_file():
        return source_for_run(model, data_dir=data_dir)
    if data_dir is not None:
        raise TrimbertError("--data-dir needs --task (which task's texts to check on)")
    return None
