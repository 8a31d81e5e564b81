"""``trimbert finetune`` and ``evaluate``: train (trimming and distilling on the way) and score."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trimbert.cli.app import (
    ForceOpt,
    JsonOpt,
    ModelArg,
    SpecOpt,
    app,
    console,
    data_inputs,
    print_json,
    print_metrics,
)
from trimbert.cli.options import Group, trim_request, with_options
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.spec import TrimRequest
from trimbert.train.settings import DistillSettings, FinetuneSettings, HealSettings


@app.command()
@with_options(trim_request(), Group("source", DataSource), Group("settings", FinetuneSettings), Group("distill", DistillSettings))
def finetune(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="Run folder: fine-tuned model, tokenizer and metrics.json.")],
    request: TrimRequest,
    source: DataSource,
    settings: FinetuneSettings,
    distill: DistillSettings,
    auto_samples: Annotated[
        int, typer.Option("--samples", help="Training rows used by auto:N analysis and affine calibration.")
    ] = 256,
    teacher: Annotated[
        str | None, typer.Option("--teacher", help="A fine-tuned run folder to distil from (same task).")
    ] = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Name of this run in reports (default: --out's name).")
    ] = None,
    force: ForceOpt = False,
    portable: Annotated[
        bool, typer.Option("--portable", help="Also write the modeling code so the model loads without trimbert.")
    ] = False,
    spec_file: SpecOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune MODEL on a GLUE task or your own data (trimming it first if trim options are given)."""
    from trimbert.core.outputs import check_output_dir
    from trimbert.train.finetune import finetune as run_finetune

    request = request.merged_with_file(spec_file)
    if teacher is None and distill != DistillSettings():
        raise TrimbertError("distillation settings need a teacher (--teacher RUN_DIR)")
    # every input counts, --spec too (the library checks its own); ~ expanded once: use it from here on
    out = check_output_dir(out, force, inputs=(model, teacher, *data_inputs(source), spec_file))
    record = run_finetune(
        model,
        source,
        out,
        settings=settings,
        request=request,
        auto_samples=auto_samples,
        teacher=teacher,
        distill=distill if teacher is not None else None,
        variant=variant,
        force=force,
        progress=not as_json,
        portable=portable,
    )
    if record.train_time_s is None:  # a non-main process of a distributed run: rank 0 reports
        return
    if as_json:
        print_json(record.to_dict())
        return
    print_metrics(
        f"{record.variant}: {record.task}, {record.trim_summary}",
        record.metrics,
        [
            ("train time", f"{record.train_time_s:.1f} s"),
            ("train samples/s", f"{record.train_samples_per_s:.1f}"),
            ("eval time", f"{record.eval_time_s:.1f} s"),
            ("parameters", f"{record.params:,}"),
        ],
    )
    console.print(f"saved to {out} (metrics.json, model, tokenizer)")


@app.command()
@with_options(
    Group(
        "settings",
        FinetuneSettings,
        include=("max_length", "max_eval_samples", "eval_batch_size", "seed"),
        flags={"eval_batch_size": "--batch-size"},
    )
)
def evaluate(
    model: Annotated[str, typer.Argument(help="A fine-tuned run folder (from trimbert finetune).")],
    settings: FinetuneSettings,
    task: Annotated[str | None, typer.Option("--task", help=DataSource.model_fields["task"].description)] = None,
    data_dir: Annotated[
        str | None, typer.Option("--data-dir", help=DataSource.model_fields["data_dir"].description)
    ] = None,
    validation: Annotated[
        str | None,
        typer.Option("--validation", help="Evaluate on this file of your own data (same columns as in training)."),
    ] = None,
    int8: Annotated[
        bool, typer.Option("--int8", help="For an export folder: evaluate the int8 model (model.int8.onnx, or model.int8.xml with --openvino).")
    ] = False,
    openvino: Annotated[
        bool, typer.Option("--openvino", help="For an export folder: evaluate the OpenVINO model (model.xml) instead of ONNX Runtime's.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a fine-tuned model, or its export (ONNX Runtime or OpenVINO), on a task's dev split(s);
    without --task, on the data it was trained for."""
    from trimbert.deploy.runtime import is_export_dir

    if is_export_dir(model):
        result = _evaluate_export(model, settings, task, data_dir, validation, int8, openvino)
    else:
        from trimbert.train.finetune import evaluate as run_evaluate
        from trimbert.train.finetune import source_for_run

        if int8 or openvino:
            flag = "--int8" if int8 else "--openvino"
            raise TrimbertError(f"{flag} is for export folders (trimbert export); {model} is not one")
        source = source_for_run(model, task=task, data_dir=data_dir, validation=validation)
        result = run_evaluate(model, source, settings=settings, progress=not as_json)
    if as_json:
        print_json(result)
        return
    rows = sum(result["eval_rows"].values())
    print_metrics(
        f"{model}: {result['task']}, {result['trim_summary']}" + (f" ({result['runtime']})" if "runtime" in result else ""),
        result["metrics"],
        [("eval rows", f"{rows:,}"), ("eval time", f"{result['eval_time_s']:.1f} s")],
    )


def _evaluate_export(model, settings, task, data_dir, validation, int8, openvino) -> dict:
    """Evaluate an export folder in ONNX Runtime or OpenVINO, on --task or the data its run recorded."""
    from trimbert.data.source import evaluation_source
    from trimbert.deploy.evaluate import evaluate_onnx
    from trimbert.deploy.runtime import read_export_info

    recorded = read_export_info(model).get("data")
    source = evaluation_source(recorded, task=task, data_dir=data_dir, validation=validation, where=model)
    return evaluate_onnx(
        model,
        source,
        int8=int8,
        openvino=openvino,
        max_length=settings.max_length,
        batch_size=settings.eval_batch_size,
        max_eval_samples=settings.max_eval_samples,
        seed=settings.seed,
    )


@app.command()
@with_options(Group("settings", HealSettings))
def heal(
    model: Annotated[str, typer.Argument(help="The trimmed checkpoint to heal (from trimbert trim).")],
    teacher: Annotated[str, typer.Option("--teacher", help="The untrimmed model it was trimmed from (hub id, folder, 'minilm').")],
    corpus: Annotated[
        str,
        typer.Option(
            "--corpus",
            help="Unlabeled text: a .txt file (one text per line), a CSV/TSV/JSONL file (with --text-column), "
            "a glue_data/ folder (all its texts) or a Hub dataset id.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the healed checkpoint (and heal.json).")],
    settings: HealSettings,
    text_column: Annotated[
        str | None, typer.Option("--text-column", help="The corpus column with the text (tables, Hub datasets).")
    ] = None,
    corpus_config: Annotated[
        str | None, typer.Option("--corpus-config", help="Config of a Hub dataset (e.g. wikitext-103-raw-v1).")
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Heal a trimmed model: distil the untrimmed teacher's hidden states into it on unlabeled text."""
    from trimbert.train.heal import heal as run_heal

    record = run_heal(
        model,
        teacher,
        corpus,
        out,
        settings=settings,
        text_column=text_column,
        corpus_config=corpus_config,
        force=force,
        progress=not as_json,
    )
    if as_json:
        print_json(record.to_dict())
        return
    healed = record.heal
    print_metrics(
        f"healed {model} ({record.trim_summary}) from {teacher}",
        {"held-out loss before": healed.loss_before, "held-out loss after": healed.loss_after},
        [
            ("corpus", f"{healed.corpus} ({healed.corpus_texts:,} texts, {healed.corpus_fingerprint})"),
            ("tokens trained on", f"{healed.tokens:,}"),
            ("heal time", f"{healed.time_s:.1f} s ({healed.tokens_per_s:,.0f} tokens/s)"),
            *[
                (f"stage {stage['stage']}", f"{stage['steps']} steps, held-out loss {stage['loss_after']:.4f}")
                for stage in healed.stages or []
            ],
        ],
    )
    console.print(f"saved to {record.path} (model, tokenizer, heal.json); fine-tune it like any trimmed model")
