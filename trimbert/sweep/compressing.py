"""Compressing inside a sweep: a ``compress`` variant runs ``trimbert compress`` on another variant's fine-tuned run.

A variant ``compress = { speedup = 1.5, runtime = "onnx-int8", from = "baseline" }`` (the fields of
:class:`trimbert.compress.settings.CompressSettings`; ``from``: the variant whose fine-tuned model is
compressed, by default the recipe's baseline) has no trim keys and is not fine-tuned: each of its
units runs :func:`trimbert.compress.job.run_compress` on ``runs/<from>-seed<k>/`` into its own run
folder ``runs/<variant>-seed<k>/`` (resumable stages; latency predictors cached in
``DIR/compress-cache``), after that run. Its record is the compressed model in the target runtime:
the accuracy there, the latency and the paired speed-up over U* as compress measured them (the
untrimmed input model in its fastest runtime within half a point), so the report shows it beside the
other variants. When the input run changes (its fine-tune reran), the compress starts over.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from trimbert.compress.job import run_compress
from trimbert.core.io import conditions, write_json_atomic
from trimbert.errors import TrimbertError
from trimbert.measure.bench import RUNTIME_SUFFIX
from trimbert.report.records import Export, PairedRatio, PairedRatios, Record, SweepUnit
from trimbert.spec import TrimSpec
from trimbert.train.trainer import METRICS_FILE

COMPRESS_CACHE = "compress-cache"  # in the sweep folder: latency predictors, shared by every compress unit
STATE_FILE = "compress.json"  # the compress job's state, in the unit's run folder


def compress_unit(recipe: Any, variant: Any, unit: Any, out: Path, base: dict[str, Any], emit: Any) -> Record:
    """Compress the fine-tuned run of ``variant``'s input variant (same seed) into the unit's run folder
    and return the unit's record; ``base`` are the sweep fields every record of the unit carries."""
    source_name = recipe.compress_source(variant)
    runs = Path(base["run_dir"]).parent
    source_dir = runs / f"{source_name}-seed{unit.seed}"
    run_dir = Path(base["run_dir"])
    if not (source_dir / METRICS_FILE).is_file():
        raise TrimbertError(f"compress: {source_name!r} has no fine-tuned run in {source_dir}")
    # The input as the compress job saw it: a fine-tune that reran under the same folder is another model.
    source_key = recipe.fingerprint(recipe.variant(source_name), unit.seed, bench=False)
    marker = runs / f".{unit.name}.compress-input.json"
    if _read(marker).get("input") != source_key and run_dir.exists():
        shutil.rmtree(run_dir)
    write_json_atomic(marker, {"input": source_key, "from": str(source_dir)})

    def progress(stage: str, message: str) -> None:
        emit(unit.name, "running", f"compress {stage}: {message}")

    run_compress(str(source_dir), recipe.data, run_dir, variant.compress, cache_dir=out / COMPRESS_CACHE, on_progress=progress)
    return compress_record(recipe, variant, unit, run_dir, source_name, base)


def compress_record(recipe: Any, variant: Any, unit: Any, run_dir: Path, source_name: str, base: dict[str, Any]) -> Record:
    """The unit's record from the job's ``compress.json``: the final model in the target runtime."""
    state = json.loads((run_dir / STATE_FILE).read_text())
    stages = state["stages"]
    evaluated, bench, compressed = stages["evaluate"], stages["bench"], stages.get("compress", {})
    runtime = evaluated["runtime"]
    spec = TrimSpec.from_dict(compressed.get("spec") or {})
    reference = source_name + RUNTIME_SUFFIX[bench["u_star"]]
    settings = variant.compress
    machine = conditions()
    machine["runtime"] = runtime
    ratio = PairedRatio(ratio=bench["speedup"], low=bench["low"], high=bench["high"], stable=bench["stable"])
    return Record(
        kind="sweep",
        variant=variant.name,
        model=recipe.model,
        trim=spec.to_dict() if not spec.is_empty else {},
        trim_summary=spec.summary(),
        task=recipe.task_name,
        seed=unit.seed,
        metrics=evaluated["metrics"],
        main_metric=evaluated["metric"],
        latency_ms=bench["latency_ms"],
        batch_size=settings.batch_size,
        seq_len=settings.seq_len,
        path=str(run_dir / "model"),
        conditions=machine,
        paired={reference: PairedRatios(latency=ratio)},
        u_star=reference,
        export=Export(runtime=runtime),
        sweep=SweepUnit(**base),
        # What only a compress unit has (free-form, not part of the schema):
        extra={
            "compress_from": source_name,
            "compress_settings": settings.to_dict(),
            "compress_u_star_accuracy": bench.get("u_star_accuracy"),
            "compress_time_s": sum(stage.get("seconds") or 0.0 for stage in stages.values()),
        },
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
