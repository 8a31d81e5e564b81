"""``trimbert inspect``, ``trim`` and ``analyze``: look at a model, trim it, rank what to cut."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trimbert.cli.app import (
    ForceOpt,
    JsonOpt,
    ModelArg,
    SamplesOpt,
    SpecOpt,
    app,
    console,
    data_inputs,
    megabytes,
    print_json,
)
from trimbert.cli.options import Group, trim_request, with_options
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.spec import TrimRequest

_PORTABLE_HELP = "Also write the modeling code (auto_map) so that it loads without trimbert (trust_remote_code=True)."
_SAVED_AS = {
    "bert": "plain BERT (loads with transformers alone)",
    "remote-code": "TrimBert with its modeling code (loads with trust_remote_code=True, no trimbert needed)",
    "trimbert": "TrimBert (loads after import trimbert; --portable to load without it)",
}

_SAMPLE_DATA = Group(
    "source",
    DataSource,
    include=("task", "data_dir"),
    helps={"task": "GLUE task whose training rows are the data sample."},
)


@app.command()
def inspect(
    model: ModelArg,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Sequence length for the FLOPs count.")] = 128,
    as_json: JsonOpt = False,
) -> None:
    """Show each block (attention heads, FFN kept or dropped, remaining LayerNorms, attention) and the totals."""
    from trimbert.measure.describe import describe_model
    from trimbert.measure.size import check_seq_len
    from trimbert.model.checkpoint import load, local_dir, resolve_source

    loaded = load(model)
    check_seq_len(loaded, seq_len)
    summary = describe_model(
        loaded, source=model, seq_len=seq_len, checkpoint_dir=local_dir(resolve_source(model))
    )
    if as_json:
        print_json(summary.to_dict())
        return
    table = Table(title=f"{model} — {summary.model_class}, {summary.trim_summary}")
    for column in ("block", "heads", "FFN", "LayerNorms", "attention", "params"):
        table.add_column(column, justify="right" if column in ("block", "heads", "params") else "left")
    for block in summary.blocks:
        table.add_row(
            str(block.index),
            "-" if block.heads is None else str(block.heads),
            block.ffn,
            ", ".join(block.layernorms) or "-",
            block.attention,
            f"{block.params:,}",
        )
    console.print(table)
    disk_note = "" if summary.disk_bytes_source == "files" else " (state dict)"
    console.print(
        f"parameters {summary.params:,} · encoder {summary.encoder_params:,} · "
        f"on disk {megabytes(summary.disk_bytes)}{disk_note} · "
        f"{summary.flops_per_seq / 1e9:,.3f} GFLOPs per sequence at seq-len {summary.seq_len}"
    )


@app.command()
@with_options(trim_request(), _SAMPLE_DATA)
def trim(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the trimmed checkpoint to.")],
    request: TrimRequest,
    source: DataSource,
    samples: SamplesOpt = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the data sample.")] = 0,
    max_length: Annotated[int, typer.Option("--max-length", help="Token limit of the data sample.")] = 128,
    force: ForceOpt = False,
    portable: Annotated[bool, typer.Option("--portable", help=_PORTABLE_HELP)] = False,
    spec_file: SpecOpt = None,
) -> None:
    """Trim MODEL and save it (safetensors, trim spec in config.json, tokenizer copied)."""
    from trimbert.core.outputs import check_output_dir
    from trimbert.model.checkpoint import load, load_tokenizer, save
    from trimbert.model.heads import has_task_head
    from trimbert.model.portable import saved_format
    from trimbert.model.structure import applied_spec
    from trimbert.pipeline import apply_trim

    request = request.merged_with_file(spec_file)
    if not request.requested:
        raise TrimbertError(_nothing(spec_file))
    out = check_output_dir(out, force, inputs=(model, *data_inputs(source), spec_file))  # ~ expanded: use it
    dataset, has_head = None, False
    if request.needs_data and source.task is not None:
        loaded_data, task = source.load()
        dataset = loaded_data["train"]
        has_head = has_task_head(model, task.num_labels, task.is_regression)  # rank by the task loss then
    loaded = load(model)
    tokenizer = load_tokenizer(model)
    before = loaded.config.num_hidden_layers
    applied = applied_spec(loaded)
    trimmed, info = apply_trim(
        loaded, request, dataset=dataset, tokenizer=tokenizer, has_head=has_head, samples=samples, seed=seed,
        max_length=max_length,
    )
    spec = applied_spec(trimmed)
    if spec == applied:  # e.g. --attention softmax, --drop-ffn none: nothing to write
        raise TrimbertError(_nothing(spec_file, request, model))
    save(trimmed, out, tokenizer=tokenizer, force=force, portable=portable)
    console.print(f"trimmed {model} ({before} blocks) → {out}: {spec.summary()}")
    console.print(f"  saved as: {_SAVED_AS[saved_format(out)]}")
    if "auto_drop" in info:
        console.print(
            f"  auto: dropped the FFNs of blocks {info['auto_drop']['chosen']} (least important on {samples} rows)"
        )
    console.print(f"  spec: {json.dumps(spec.to_dict(), default=str)}")


def _nothing(spec_file: str | None, request: TrimRequest | None = None, model: str = "") -> str:
    """The refusal of a trim that changes nothing (trim writes trimmed models, not copies)."""
    if spec_file is not None:
        why = f"{model} has that trim already" if request is not None else "its trim_spec is the untrimmed model"
        return f"--spec: {spec_file}: the trim changes nothing ({why})"
    if request is not None:
        given = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in request.to_dict().items())
        return f"the trim changes nothing: {given} leave{'s' if len(request.to_dict()) == 1 else ''} {model} as it is"
    return "the trim changes nothing (give --drop-ffn, --attention, --layernorm, --drop-layers, --ffn-width or --heads)"


@app.command()
@with_options(_SAMPLE_DATA)
def analyze(
    model: ModelArg,
    source: DataSource,
    samples: Annotated[int, typer.Option("--samples", help="Rows of the training split to measure on.")] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample.")] = 0,
    max_length: Annotated[int, typer.Option("--max-length")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    as_json: JsonOpt = False,
) -> None:
    """Rank blocks by how much dropping their FFN (or stripping their LayerNorms, or cutting a head) changes the model."""
    from trimbert.importance.cut import analyze as run_analyze

    if source.task is None:
        raise TrimbertError("analyze needs --task (the data to measure on)")
    result = run_analyze(
        model, source, samples=samples, seed=seed, max_length=max_length, batch_size=batch_size
    )
    if as_json:
        print_json(result.to_dict())
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
    if result.head_ranking:
        _print_heads(result, label)


def _print_heads(result, label: str) -> None:
    heads = result.head_importance()
    width = max(len(scores) for scores in heads.values())
    table = Table(title=f"attention heads, each cut alone ({label}; lower = safer to cut)")
    for column in ("block", *(f"h{head}" for head in range(width))):
        table.add_column(column, justify="right")
    for block, scores in heads.items():
        cells = [f"{value:.3g}" for value in scores.tolist()]
        table.add_row(str(block), *cells, *[""] * (width - len(cells)))
    console.print(table)
    shown = ", ".join(result.head_ranking[:12]) + (", ..." if len(result.head_ranking) > 12 else "")
    console.print(f"heads (block.head), least important first: {shown}")
