"""``search --finetune``: the chosen trim trained for real (healed and distilled if asked) and timed.

:func:`finetune_best` fine-tunes the untrimmed baseline and the chosen spec (``best.json``) with the
search's fine-tune settings into ``out/finetune/``, times them side by side in the searched runtime and
writes ``out/finetune.json``: real accuracy and real speed-up next to the estimated and predicted ones.
Plain, the chosen spec's run is reused from ``out/verify/`` when ``--verify`` trained it already with the
same settings. With ``heal`` (and a corpus) the chosen trim is applied to the untrimmed model as
``finetune --spec`` would apply it (same data sample, same importance rule, so narrowed FFNs keep the
neurons the search scored) and healed from the untrimmed model on the corpus
(:func:`trimbert.train.heal.heal`) into ``out/finetune/healed/`` before its fine-tune; with ``distill``
it is fine-tuned against the baseline just trained (:func:`trimbert.train.distill.distillation_loss`);
without ``heal``, narrowed FFNs then keep the neurons the baseline's task loss ranks highest, as
``finetune --teacher`` does, rather than those the search scored.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from trimbert.core.io import write_json_atomic
from trimbert.data.source import CorpusSource, DataSource
from trimbert.deploy.openvino import require_openvino
from trimbert.errors import TrimbertError
from trimbert.model import checkpoint
from trimbert.report.records import Record
from trimbert.search.outputs import BEST_FILE
from trimbert.search.settings import SearchSettings
from trimbert.spec import TrimRequest
from trimbert.train.settings import DistillSettings, FinetuneSettings, HealSettings

RUNTIME_VARIANT = {"pytorch": "", "onnx": "@ort", "onnx-int8": "@ort-int8", "openvino": "@ov", "openvino-int8": "@ov-int8"}


def runtimes_to_bench(searched: str) -> list[str]:
    """The winner and the untrimmed model are timed in every runtime installed, so that the speed-up
    is against U* (the untrimmed model at its fastest) and the winner's own runtime is among them."""
    runtimes = ["pytorch", "onnxruntime", "onnxruntime-int8"]
    try:
        require_openvino()
    except TrimbertError:
        if searched.startswith("openvino"):
            raise
        return runtimes
    return [*runtimes, "openvino", "openvino-int8"]


def check_heal_request(settings: SearchSettings, heal: HealSettings | None, corpus: str | None) -> None:
    """Fail before the search when its winner could not be healed as asked: a corpus that is not there
    or not text (:meth:`~trimbert.data.source.CorpusSource.check`, as ``trimbert heal`` checks it), or a progressive heal (it re-trims from the teacher, which cannot choose Taylor- or
    Fisher-ranked neurons and heads again)."""
    if heal is None or corpus is None:
        return
    CorpusSource(corpus=corpus).check(lambda _: "--heal-corpus")
    if heal.schedule == "progressive" and settings.importance != "magnitude":
        raise TrimbertError(
            f"--heal-schedule progressive re-trims from the untrimmed model and cannot choose "
            f"{settings.importance.capitalize()}-ranked FFN neurons "
            "again: use --heal-schedule oneshot or --importance magnitude"
        )


def finetune_best(
    out: Path, model_source: str, source: DataSource, settings: SearchSettings, finetune: FinetuneSettings,
    *, distill: DistillSettings | None = None, heal: HealSettings | None = None, heal_corpus: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fine-tune the baseline and the chosen spec (healed on ``heal_corpus`` with ``heal``, distilled from
    the baseline with ``distill``), bench them side by side; write and return finetune.json."""
    from trimbert.measure.bench import BenchSettings, bench
    from trimbert.train.finetune import finetune as run_finetune

    if (heal is None) != (heal_corpus is None):
        raise TrimbertError("healing the winner needs both the heal settings and a corpus (--heal-corpus)")
    chosen = json.loads((out / BEST_FILE).read_text())
    request = TrimRequest.from_spec_file(out / BEST_FILE)
    runs = out / "finetune"
    baseline = run_finetune(model_source, source, runs / "baseline", settings=finetune, progress=progress, force=True)
    teacher = str(runs / "baseline") if distill is not None else None
    searched_run, healed = runs / "searched", None
    verified = chosen.get("verified_run")
    to_heal = heal is not None and request.requested
    if heal is not None and not to_heal:
        healed = {"skipped": "the chosen trim is the untrimmed model: nothing to heal"}
    if to_heal:
        healed = heal_winner(out, model_source, source, request, finetune, heal, heal_corpus, progress=progress)
        searched = run_finetune(str(runs / "healed"), source, searched_run, settings=finetune, progress=progress,
                                force=True, teacher=teacher, distill=distill)
    elif distill is None and verified and (out / verified / "metrics.json").is_file():  # --verify trained it so already
        searched_run = out / verified
        searched = Record.from_dict(json.loads((searched_run / "metrics.json").read_text()))
    else:
        searched = run_finetune(
            model_source, source, searched_run, settings=finetune, request=request, progress=progress, force=True,
            teacher=teacher, distill=distill,
        )
    bench_settings = BenchSettings(
        batch_size=settings.batch_size, seq_len=settings.seq_len, device=settings.device, threads=settings.threads,
        runtimes=runtimes_to_bench(settings.runtime), repeats=30, max_seconds=settings.bench_seconds,
    ).resolved()
    report = bench([str(searched_run)], bench_settings, vs=str(runs / "baseline"), names=["searched"])
    measured = next(r for r in report.records if r.variant == "searched" + RUNTIME_VARIANT[settings.runtime])
    paired = measured.speedup()
    metric = baseline.main_metric
    result = {
        "metric": metric,
        "baseline": baseline.metrics[metric],
        "searched": searched.metrics[metric],
        "estimate": chosen["estimate"],
        "predicted_speedup": chosen["predicted_speedup"],
        "measured_speedup": paired.ratio if paired else None,
        "measured_interval": [paired.low, paired.high] if paired else [None, None],
        "measured_stable": paired.stable if paired else None,
        "versus": measured.u_star,  # U*: the untrimmed model in its fastest runtime
        "trim": searched.trim_summary,
        "searched_run": str(searched_run.relative_to(out)),
        "distilled": distill.to_dict() if distill is not None else None,
        "healed": healed,
    }
    write_json_atomic(out / "finetune.json", result)
    return result


def heal_winner(
    out: Path, model_source: str, source: DataSource, request: TrimRequest, finetune: FinetuneSettings,
    heal: HealSettings, corpus: str, *, progress: bool = False,
) -> dict[str, Any]:
    """The chosen spec (``request``) applied to the untrimmed model as ``finetune --spec`` applies it,
    healed from the untrimmed model on ``corpus`` into ``out/finetune/healed``; returns what the heal cost."""
    from trimbert.pipeline import apply_trim
    from trimbert.train.finetune import prepare
    from trimbert.train.heal import heal as run_heal

    _, tokenizer, model, encoded = prepare(model_source, source, finetune)
    trimmed, _ = apply_trim(
        model, request, dataset=encoded["train"], tokenizer=tokenizer, has_head=False, seed=finetune.seed,
        max_length=finetune.max_length, batch_size=finetune.eval_batch_size,
    )
    target = out / "finetune" / "healed"
    with tempfile.TemporaryDirectory(prefix="trimbert-winner-") as scratch:
        checkpoint.save(trimmed.base_model, Path(scratch) / "trimmed", tokenizer=tokenizer)
        record = run_heal(str(Path(scratch) / "trimmed"), model_source, corpus, target, settings=heal, force=True,
                          progress=progress)
    healed = record.heal
    return {"dir": str(target.relative_to(out)), "corpus": corpus, "heal_time_s": healed.time_s,
            "tokens": healed.tokens, "loss_before": healed.loss_before, "loss_after": healed.loss_after,
            "settings": heal.to_dict()}
