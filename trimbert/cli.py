"""The ``trimbert`` command line: a thin typer layer over the library.

Each subcommand parses its options, calls one library function and prints the result with rich.
Errors a user can cause (:class:`TrimbertError`, bad options) print one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trimbert import __version__
from trimbert.errors import TrimbertError

try:  # typer >= 0.2x vendors click as typer._click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as click_exceptions

app = typer.Typer(
    name="trimbert",
    help="Trim BERT checkpoints the TrimBERT way (drop FFNs, cheaper attention normalizers, fewer "
    "LayerNorms), fine-tune and evaluate them, and report what it bought and cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Piped or captured output (files, CI logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

ModelArg = Annotated[
    str,
    typer.Argument(help="Hub id (bert-base-uncased), local folder, or alias 'minilm' (bundled, offline)."),
]
DropFFNOpt = Annotated[
    str | None,
    typer.Option(
        "--drop-ffn",
        help="Blocks whose FFN is removed: 1,3,5 | 6-11 | alternate | first:N | last:N | all | none.",
    ),
]
AttentionOpt = Annotated[
    str | None,
    typer.Option(
        "--attention",
        help="Attention normalizer: softmax | relu | relu-len | sigmoid | softermax | squared-relu.",
    ),
]
LayerNormOpt = Annotated[
    str | None,
    typer.Option(
        "--layernorm", help="LayerNorms to strip: none | half | attn | ffn | all | names like 0.attn,3.ffn."
    ),
]
DropLayersOpt = Annotated[
    str | None,
    typer.Option(
        "--drop-layers",
        help="Whole blocks to remove, DistilBERT-style (original numbering): 1,3 | 4-5 | last:N.",
    ),
]
FFNWidthOpt = Annotated[
    str | None,
    typer.Option(
        "--ffn-width",
        help="Keep the N most important intermediate neurons of each remaining FFN: 768 | 0:768,3:512.",
    ),
]
LNReplacementOpt = Annotated[
    str | None,
    typer.Option(
        "--layernorm-replacement",
        help="What replaces stripped LayerNorms: identity, or affine (a per-channel map fitted on a data sample).",
    ),
]
SamplesOpt = Annotated[
    int, typer.Option("--samples", help="Rows sampled for auto:N analysis and affine calibration.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the output folder if it exists.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"trimbert {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Trim BERT checkpoints and measure what it bought and cost."""


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f} MB"


# ---------------------------------------------------------------- inspect / trim


@app.command()
def inspect(
    model: ModelArg,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Sequence length for the FLOPs count.")] = 128,
    as_json: JsonOpt = False,
) -> None:
    """Show each block (FFN kept or dropped, remaining LayerNorms, attention) and the totals."""
    from trimbert.checkpoint import load, local_dir, resolve_source
    from trimbert.measure import check_seq_len
    from trimbert.summary import describe_model

    loaded = load(model)
    check_seq_len(loaded, seq_len)
    summary = describe_model(
        loaded, source=model, seq_len=seq_len, checkpoint_dir=local_dir(resolve_source(model))
    )
    if as_json:
        _print_json(summary.to_dict())
        return
    table = Table(title=f"{model} — {summary.model_class}, {summary.trim_summary}")
    for column in ("block", "FFN", "LayerNorms", "attention", "params"):
        table.add_column(column, justify="right" if column in ("block", "params") else "left")
    for block in summary.blocks:
        table.add_row(
            str(block.index),
            block.ffn,
            ", ".join(block.layernorms) or "-",
            block.attention,
            f"{block.params:,}",
        )
    console.print(table)
    disk_note = "" if summary.disk_bytes_source == "files" else " (state dict)"
    console.print(
        f"parameters {summary.params:,} · encoder {summary.encoder_params:,} · "
        f"on disk {_mb(summary.disk_bytes)}{disk_note} · "
        f"{summary.flops_per_seq / 1e9:,.3f} GFLOPs per sequence at seq-len {summary.seq_len}"
    )


@app.command()
def trim(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the trimmed checkpoint to.")],
    drop_ffn: DropFFNOpt = None,
    attention: AttentionOpt = None,
    layernorm: LayerNormOpt = None,
    drop_layers: DropLayersOpt = None,
    ffn_width: FFNWidthOpt = None,
    layernorm_replacement: LNReplacementOpt = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="GLUE task whose training text feeds auto:N and affine calibration."),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option("--data-dir", help="glue_data/ folder or task folder for --task.")
    ] = None,
    samples: SamplesOpt = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the data sample.")] = 0,
    max_length: Annotated[int, typer.Option("--max-length", help="Token limit of the data sample.")] = 128,
    force: ForceOpt = False,
) -> None:
    """Trim MODEL and save it (safetensors, trim spec in config.json, tokenizer copied)."""
    import trimbert
    from trimbert.checkpoint import check_output_dir
    from trimbert.pipeline import TrimOptions, apply_trim

    check_output_dir(out, force)
    options = TrimOptions(drop_ffn, attention, layernorm, drop_layers, ffn_width, layernorm_replacement)
    dataset = None
    if options.needs_data and task is not None:
        dataset = _data_source(task, data_dir).load()[0]["train"]
    loaded = trimbert.load(model)
    tokenizer = trimbert.load_tokenizer(model)
    before = loaded.config.num_hidden_layers
    trimmed, info = apply_trim(
        loaded,
        options,
        dataset=dataset,
        tokenizer=tokenizer,
        samples=samples,
        seed=seed,
        max_length=max_length,
    )
    trimbert.save(trimmed, out, tokenizer=tokenizer, force=force)
    spec = trimmed.config.spec
    console.print(f"trimmed {model} ({before} blocks) → {out}: {spec.summary()}")
    if "auto_drop" in info:
        console.print(
            f"  auto: dropped the FFNs of blocks {info['auto_drop']['chosen']} (least important on {samples} rows)"
        )
    console.print(f"  spec: {json.dumps(spec.to_dict(), default=str)}")


@app.command()
def analyze(
    model: ModelArg,
    task: Annotated[
        str | None, typer.Option("--task", help="GLUE task whose training rows are the sample.")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option("--data-dir", help="glue_data/ folder or task folder.")
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", help="Rows of the training split to measure on.")
    ] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample.")] = 0,
    max_length: Annotated[int, typer.Option("--max-length")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    as_json: JsonOpt = False,
) -> None:
    """Rank blocks by how much dropping their FFN (or stripping their LayerNorms) changes the model."""
    from trimbert.analyze import analyze as run_analyze

    if task is None:
        raise TrimbertError("analyze needs --task (the data to measure on)")
    result = run_analyze(
        model,
        _data_source(task, data_dir),
        samples=samples,
        seed=seed,
        max_length=max_length,
        batch_size=batch_size,
    )
    if as_json:
        _print_json(result.to_dict())
        return
    _print_analysis(result)


def _print_analysis(result) -> None:
    label = "Δ loss" if result.measure == "loss" else "1 − CKA"
    table = Table(
        title=f"importance ({label}; lower = safer to cut) on {result.samples} rows, {result.tokens} tokens",
        caption=f"FFN ranking, least important first: {', '.join(map(str, result.ranking))}",
    )
    for column in ("block", "rank", "FFN", "FFN cos", "LN attn", "LN ffn", "LN both"):
        table.add_column(column, justify="right")
    rank = {block: position + 1 for position, block in enumerate(result.ranking)}

    def cell(effect) -> str:
        return "-" if effect is None else f"{effect.importance:.4g}"

    for row in result.blocks:
        table.add_row(
            str(row.index),
            str(rank.get(row.index, "-")),
            cell(row.ffn),
            "-" if row.ffn is None else f"{row.ffn.cosine:.4f}",
            cell(row.ln_attn),
            cell(row.ln_ffn),
            cell(row.ln_both),
        )
    console.print(table)
    if result.attention:
        swaps = ", ".join(f"{name} {effect.importance:.4g}" for name, effect in result.attention.items())
        console.print(f"attention normalizer swapped in every block ({label}): {swaps}")


# ---------------------------------------------------------------- finetune / evaluate

TaskOpt = Annotated[
    str | None, typer.Option("--task", help="GLUE task: cola sst2 mrpc qqp stsb mnli qnli rte wnli.")
]
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        help="A glue_data/ folder or one task folder of it. Default: $TRIMBERT_GLUE_DIR, else the Hub (nyu-mll/glue).",
    ),
]
MaxLengthOpt = Annotated[int, typer.Option("--max-length", help="Truncate sequences to this many tokens.")]
MaxEvalOpt = Annotated[
    int | None, typer.Option("--max-eval-samples", help="Evaluate on at most this many rows.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for shuffling, sampling and initialization.")]


def _data_source(
    task,
    data_dir,
    train=None,
    validation=None,
    text_column=None,
    text_pair_column=None,
    label_column=None,
    task_type=None,
):
    from trimbert.train import DataSource

    return DataSource(
        task=task,
        data_dir=data_dir,
        train=train,
        validation=validation,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        task_type=task_type,
    )


def _print_metrics(title: str, metrics: dict[str, float], extra: list[tuple[str, str]]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    for name, value in extra:
        table.add_row(name, value)
    console.print(table)


@app.command()
def finetune(
    model: ModelArg,
    out: Annotated[
        Path, typer.Option("--out", help="Run folder: fine-tuned model, tokenizer and metrics.json.")
    ],
    task: TaskOpt = None,
    data_dir: DataDirOpt = None,
    train: Annotated[
        str | None, typer.Option("--train", help="Your training file (.csv, .tsv or .jsonl).")
    ] = None,
    validation: Annotated[
        str | None, typer.Option("--validation", help="Your validation file (default: 10% of --train).")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option("--text-column", help="Column with the (first) text.")
    ] = None,
    text_pair_column: Annotated[
        str | None, typer.Option("--text-pair-column", help="Column with the second text.")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="Column with the label or score.")
    ] = None,
    task_type: Annotated[
        str | None,
        typer.Option("--task-type", help="classification | regression (default: guessed from the labels)."),
    ] = None,
    drop_ffn: DropFFNOpt = None,
    attention: AttentionOpt = None,
    layernorm: LayerNormOpt = None,
    drop_layers: DropLayersOpt = None,
    ffn_width: FFNWidthOpt = None,
    layernorm_replacement: LNReplacementOpt = None,
    auto_samples: Annotated[
        int, typer.Option("--samples", help="Training rows used by auto:N analysis and affine calibration.")
    ] = 256,
    teacher: Annotated[
        str | None, typer.Option("--teacher", help="A fine-tuned run folder to distil from (same task).")
    ] = None,
    distill_temperature: Annotated[
        float, typer.Option("--distill-temperature", help="Softmax temperature T of the KD term.")
    ] = 2.0,
    distill_alpha_ce: Annotated[
        float, typer.Option("--distill-alpha-ce", help="Weight of the task loss.")
    ] = 0.5,
    distill_alpha_kd: Annotated[
        float, typer.Option("--distill-alpha-kd", help="Weight of the soft-label KL (× T²).")
    ] = 0.5,
    distill_alpha_hidden: Annotated[
        float,
        typer.Option(
            "--distill-alpha-hidden", help="Weight of the hidden-state MSE between corresponding blocks."
        ),
    ] = 0.0,
    epochs: Annotated[float, typer.Option("--epochs")] = 3.0,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 5e-5,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    max_length: MaxLengthOpt = 128,
    max_train_samples: Annotated[
        int | None, typer.Option("--max-train-samples", help="Train on this many shuffled rows.")
    ] = None,
    max_eval_samples: MaxEvalOpt = None,
    seed: SeedOpt = 42,
    warmup_ratio: Annotated[
        float, typer.Option("--warmup-ratio", help="Share of steps for linear warm-up.")
    ] = 0.1,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 0.01,
    eval_each_epoch: Annotated[
        bool, typer.Option("--eval-each-epoch", help="Also evaluate after every epoch.")
    ] = False,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Name of this run in reports (default: --out's name).")
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune MODEL on a GLUE task or your own data (trimming it first if trim options are given)."""
    from trimbert.train import DistillSettings, FinetuneSettings
    from trimbert.train import finetune as run_finetune

    settings = FinetuneSettings(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
        seed=seed,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        eval_each_epoch=eval_each_epoch,
    )
    source = _data_source(
        task, data_dir, train, validation, text_column, text_pair_column, label_column, task_type
    )
    distill = None
    if teacher is not None:
        distill = DistillSettings(
            temperature=distill_temperature,
            alpha_ce=distill_alpha_ce,
            alpha_kd=distill_alpha_kd,
            alpha_hidden=distill_alpha_hidden,
        )
    record = run_finetune(
        model,
        source,
        out,
        settings=settings,
        drop_ffn=drop_ffn,
        attention=attention,
        layernorm=layernorm,
        drop_layers=drop_layers,
        ffn_width=ffn_width,
        layernorm_replacement=layernorm_replacement,
        auto_samples=auto_samples,
        teacher=teacher,
        distill=distill,
        variant=variant,
        force=force,
        progress=not as_json,
    )
    if record.train_time_s is None:  # a non-main process of a distributed run: rank 0 reports
        return
    if as_json:
        _print_json(record.to_dict())
        return
    _print_metrics(
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
def evaluate(
    model: Annotated[str, typer.Argument(help="A fine-tuned run folder (from trimbert finetune).")],
    task: TaskOpt = None,
    data_dir: DataDirOpt = None,
    validation: Annotated[
        str | None,
        typer.Option(
            "--validation", help="Evaluate on this file of your own data (same columns as in training)."
        ),
    ] = None,
    max_length: MaxLengthOpt = 128,
    max_eval_samples: MaxEvalOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 128,
    seed: SeedOpt = 42,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a fine-tuned model on a task's dev split(s); without --task, on the data it was trained for."""
    from trimbert.train import FinetuneSettings, source_for_run
    from trimbert.train import evaluate as run_evaluate

    settings = FinetuneSettings(
        max_length=max_length, max_eval_samples=max_eval_samples, eval_batch_size=batch_size, seed=seed
    )
    source = source_for_run(model, task=task, data_dir=data_dir, validation=validation)
    result = run_evaluate(model, source, settings=settings, progress=not as_json)
    if as_json:
        _print_json(result)
        return
    rows = sum(result["eval_rows"].values())
    _print_metrics(
        f"{model}: {result['task']}, {result['trim_summary']}",
        result["metrics"],
        [("eval rows", f"{rows:,}"), ("eval time", f"{result['eval_time_s']:.1f} s")],
    )


# ---------------------------------------------------------------- bench / report


@app.command()
def bench(
    models: Annotated[
        list[str], typer.Argument(help="One or more models (hub id, folder or alias), measured in one run.")
    ],
    vs: Annotated[
        str | None,
        typer.Option("--vs", help="Baseline model measured side by side (e.g. the untrimmed one)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    seq_len: Annotated[int, typer.Option("--seq-len")] = 128,
    mode: Annotated[
        str, typer.Option("--mode", help="infer (forward) or train (forward+backward+optimizer step).")
    ] = "infer",
    repeats: Annotated[
        int, typer.Option("--repeats", help="Timed repeats per model (medians are reported).")
    ] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up steps per model.")] = 3,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available).")
    ] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads for the run.")] = None,
    names: Annotated[
        list[str] | None, typer.Option("--name", help="Variant name of each MODEL in records (repeat).")
    ] = None,
    vs_name: Annotated[
        str, typer.Option("--vs-name", help="Variant name of the baseline in records.")
    ] = "baseline",
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the records to this JSON file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Latency, throughput, train-step time, size and FLOPs of MODELS, side by side with --vs."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from trimbert.bench import BenchSettings
    from trimbert.bench import bench as run_bench
    from trimbert.records import write_json_atomic

    if mode not in ("infer", "train"):
        raise TrimbertError(f"--mode must be infer or train, not {mode!r}")
    if threads is not None and threads < 1:
        raise TrimbertError(f"--threads must be at least 1, got {threads}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = BenchSettings(
        batch_size=batch_size,
        seq_len=seq_len,
        mode=mode,
        repeats=repeats,
        warmup=warmup,
        device=device,
        threads=threads,
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as progress:
        bar = progress.add_task("benchmarking", total=None)

        def on_step(variant: str, step: int, total: int) -> None:
            progress.update(bar, completed=step, total=total, description=f"benchmarking {variant}")

        report = run_bench(models, settings, vs=vs, names=names, vs_name=vs_name, on_step=on_step)
    if out is not None:
        write_json_atomic(out, [record.to_dict() for record in report.records])
    if as_json:
        _print_json(report.to_dict())
        return
    _print_bench(report, settings)


def _print_bench(report, settings) -> None:
    table = Table(
        title=f"bench: batch {settings.batch_size}, seq {settings.seq_len}, {settings.mode}, {settings.device}"
    )
    for column in (
        "variant",
        "trim",
        "attention",
        "params",
        "disk",
        "GFLOPs/seq",
        "latency ms",
        "seq/s",
        "step ms",
    ):
        table.add_column(column, justify="left" if column in ("variant", "trim", "attention") else "right")
    for record in report.records:
        table.add_row(
            record.variant,
            record.trim_summary,
            record.conditions.get("attention_implementation", "-"),
            f"{record.params / 1e6:.2f}M",
            _mb(record.disk_bytes),
            f"{record.flops_per_seq / 1e9:.3f}",
            "-" if record.latency_ms is None else f"{record.latency_ms:.1f}",
            f"{record.throughput:.1f}",
            "-" if record.train_step_ms is None else f"{record.train_step_ms:.1f}",
        )
    console.print(table)
    for variant, choice in report.attention_choice.items():
        if choice["median_ms"]:
            timings = ", ".join(f"{impl} {ms:.1f} ms" for impl, ms in choice["median_ms"].items())
            console.print(f"{variant}: fastest softmax attention {choice['chosen']} ({timings})")
    if report.comparisons:
        ratios = Table(title="vs baseline (ratio > 1 = faster; FLOP-ideal = baseline FLOPs / model FLOPs)")
        for column in ("variant", "quantity", "baseline", "model", "speed-up", "FLOP-ideal", "quotient"):
            ratios.add_column(column, justify="left" if column in ("variant", "quantity") else "right")
        for comparison in report.comparisons:
            ratios.add_row(
                comparison.variant,
                comparison.quantity,
                f"{comparison.baseline:.2f}",
                f"{comparison.model:.2f}",
                f"{comparison.ratio:.2f}x",
                f"{comparison.flop_ideal:.2f}x",
                f"{comparison.quotient:.2f}",
            )
        console.print(ratios)


@app.command()
def report(
    paths: Annotated[
        list[Path], typer.Argument(help="Run folders, sweep folders or records files (searched recursively).")
    ],
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Variant to compare with (default: the untrimmed one).")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="Pick one task when the records mix several.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for report.md, results.csv/json and plots (default: the first PATH if it is a folder).",
        ),
    ] = None,
) -> None:
    """Accuracy vs size, FLOPs, latency and fine-tune time for every record found under PATHs."""
    from trimbert.report import build_rows, collect_records, render_table, write_report

    table = build_rows(collect_records(paths), baseline=baseline, task=task)
    console.print(render_table(table))
    destination = out if out is not None else (paths[0] if paths[0].is_dir() else paths[0].parent)
    written = write_report(table, destination)
    for kind, path in written.items():
        console.print(f"{kind}: {path}")


@app.command()
def sweep(
    recipe: Annotated[Path, typer.Argument(help="A recipe TOML file (see recipes/ and trimbert.recipe).")],
    out: Annotated[
        Path,
        typer.Option("--out", help="Sweep folder: results.jsonl, runs/<variant>-seed<k>/, report.md, plots."),
    ],
    only: Annotated[
        str | None,
        typer.Option("--only", help="Comma-separated variant names to run (their teachers come along)."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard", help="I/N: run the I-th of N disjoint shares of the variants (own --out each)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rerun variants even when an up-to-date record exists.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate the recipe and show what would run; train nothing.")
    ] = False,
) -> None:
    """Trim, fine-tune, evaluate and bench every variant of a RECIPE; rerun to resume. Exit 1 if any failed."""
    from trimbert.recipe import SweepDisplay, load_recipe, plan_sweep, run_sweep
    from trimbert.report import render_table

    loaded = load_recipe(recipe)
    if dry_run:
        plan = plan_sweep(loaded, out, only=only, shard=shard, force=force)
        table = Table(title=f"{recipe}: {loaded.model} ({loaded.num_layers} blocks), task {loaded.task_name}")
        for column in ("unit", "trim", "teacher", "action", "why"):
            table.add_column(column)
        for item in plan:
            variant = loaded.variant(item.unit.variant)
            trim_text = (
                variant.spec.summary() if variant.auto_drop is None else f"ffn-auto:{variant.auto_drop}"
            )
            if variant.auto_drop is not None and not variant.spec.is_empty:
                trim_text += " " + variant.spec.summary()
            table.add_row(item.unit.name, trim_text, variant.teacher or "-", item.action, item.reason)
        console.print(table)
        runs = sum(item.action == "run" for item in plan)
        console.print(f"recipe OK: {len(plan)} units selected, {runs} to run, {len(plan) - runs} up to date")
        return
    with SweepDisplay(err_console, title=f"sweep {recipe} → {out}") as display:
        result = run_sweep(loaded, out, only=only, shard=shard, force=force, on_event=display)
    if result.table is not None:
        console.print(render_table(result.table))
    for kind, path in result.report.items():
        console.print(f"{kind}: {path}")
    console.print(
        f"{len(result.done)} ran, {len(result.skipped)} up to date, {len(result.failed)} failed "
        f"(records: {out / 'results.jsonl'})"
    )
    if result.report_error:
        err_console.print(f"warning: no report: {result.report_error}", highlight=False, markup=False)
    if result.failed:
        err_console.print(f"failed: {', '.join(result.failed)}", highlight=False, markup=False)
        raise typer.Exit(1)


# ---------------------------------------------------------------- entry point


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"warning: {message}", highlight=False, markup=False)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.showwarning = _one_line_warning
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="trimbert", standalone_mode=False)
    except TrimbertError as error:
        err_console.print(f"error: {error}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except click_exceptions.UsageError as error:
        where = f"{error.ctx.command_path}: " if error.ctx is not None else ""
        err_console.print(
            f"error: {where}{error.format_message()}", highlight=False, markup=False, soft_wrap=True
        )
        sys.exit(2)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except (click_exceptions.Abort, typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    # In non-standalone mode, a command's typer.Exit(code) comes back as the return value.
    sys.exit(code if isinstance(code, int) else 0)
