"""``trimbert compress``'s job: one fine-tuned model in, one deployable folder out, in resumable stages.

Stages, each recorded in ``<out>/compress.json`` when it finishes with the fingerprint of the settings
it depended on (:data:`STAGE_SETTINGS`): a re-run on the same model and data keeps the finished stages
up to the first whose settings changed (another ``--speedup`` reuses the reference and the predictor;
adding ``--recover distill`` reuses the compression too; another ``--method`` reuses the reference and the
predictor); another model or data is refused unless ``force`` (:mod:`trimbert.compress.state`; the stages
themselves are :mod:`trimbert.compress.stages`):

1. ``reference``: the untrimmed model exported to every installed runtime (``reference/``), each
   export's accuracy on the eval data, and a short side-by-side bench of them: U* is the fastest
   within :data:`~trimbert.report.ustar.WITHIN_POINTS` of the PyTorch fp32 accuracy; ``--runtime
   auto`` deploys where U* runs.
2. ``predictor``: the latency predictor of the target runtime at the latency shape, fitted on probe
   trims with heads, FFN widths and dropped FFNs (cached like ``trimbert search``'s).
3. ``compress``: under the budget (``--speedup`` over U*, converted through the reference bench's ratio
   between U* and the untrimmed model in the target runtime; or ``--latency-ms``), ``--method
   retraining-free``: :func:`~trimbert.compress.run.compress_model` on ``samples`` training rows;
   ``--method search``: :func:`trimbert.search.run.search` (its own defaults, the predictor's space and
   the job's predictor; its output in ``search/``), then the input model trimmed to its winner, no
   least squares. The trimmed checkpoint goes to ``compressed/``.
4. ``recover`` (``--recover distill``): fine-tune ``compressed/`` with the input model as teacher
   (the input run's own fine-tune settings) into ``recovered/``; ``--recover heal+distill`` heals it
   from the input model on the task's training sentences first (``healed/``; the heal is reused when
   only the distillation has to run again).
5. ``export``: the final model exported to the target runtime: ``model/``, the deployable folder.
6. ``evaluate``: the accuracy of ``model/`` in the target runtime.
7. ``bench``: the final model in the target runtime timed side by side with the untrimmed model in
   every runtime; the speed-up is the paired ratio against U* chosen in this run (fastest within the
   accuracy margin).

Library code: returns data and reports progress through a callback; the CLI prints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from trimbert.compress.settings import CompressSettings
from trimbert.compress.stages import Progress, Stages
from trimbert.compress.state import STAGE_SETTINGS, STAGES, STATE_FILE, CompressJob
from trimbert.core.io import write_json_atomic
from trimbert.core.outputs import atomic_output_dir, check_output_dir, read_marker, write_marker
from trimbert.data.source import DataSource
from trimbert.deploy.runners import require_runtimes
from trimbert.errors import TrimbertError
from trimbert.model import checkpoint
from trimbert.model.heads import has_task_head
from trimbert.report.records import Record
from trimbert.train.settings import FinetuneSettings

__all__ = ["STAGES", "STAGE_SETTINGS", "CompressJob", "open_job", "run_compress"]


def open_job(out: Path, model: str, source: DataSource, settings: CompressSettings, force: bool) -> CompressJob:
    """The job of ``out``: resumed when ``out`` holds a compress of the same model and data (its finished
    stages kept up to the first whose settings changed), new otherwise (an existing ``out`` is replaced
    only with ``force`` and only if trimbert wrote it)."""
    job = CompressJob(model=model, data=source.to_dict(), settings=settings.to_dict())
    state = out / STATE_FILE
    if state.is_file() and (read_marker(out) or {}).get("command") == "compress":
        try:
            saved = json.loads(state.read_text())
        except ValueError as error:
            raise TrimbertError(f"{state}: unreadable ({error}); use --force to start over") from error
        if saved.get("inputs") == job.inputs:
            for stage, result in (saved.get("stages") or {}).items():  # the finished stages still valid, in order
                if stage not in STAGE_SETTINGS or result.get("fingerprint") != job.stage_fingerprint(stage):
                    break
                job.stages[stage] = result
            return job
        if not force:
            raise TrimbertError(
                f"--out {out}: it holds a compress of another model or data; use --force to start over, or another --out"
            )
    inputs = (model, source.train, source.validation, source.data_dir)
    check_output_dir(out, force, inputs=inputs)
    with atomic_output_dir(out, force, command="compress") as staging:
        write_json_atomic(staging / STATE_FILE, job.to_dict())
    return job


def _save(out: Path, job: CompressJob) -> None:
    write_json_atomic(out / STATE_FILE, job.to_dict())


def run_compress(
    model_source: str,
    source: DataSource,
    out: str | Path,
    settings: CompressSettings,
    *,
    force: bool = False,
    cache_dir: str | Path,
    on_progress: Progress | None = None,
) -> CompressJob:
    """Run (or resume) the stages of the module docstring; returns the job with every stage's results."""
    say = on_progress or (lambda stage, message: None)
    out = Path(out).expanduser()
    require_runtimes(["onnxruntime"] + (["openvino"] if settings.runtime.startswith("openvino") else []))
    dataset, task = source.load()
    if not has_task_head(model_source, task.num_labels, task.is_regression):
        raise TrimbertError(
            f"{model_source} has no trained {task.name} head: compress a fine-tuned model (trimbert finetune first)"
        )
    finetuned = _finetune_settings(model_source)
    tokenizer = checkpoint.load_tokenizer(model_source)
    if tokenizer is None:
        raise TrimbertError(f"{model_source} has no tokenizer")
    job = open_job(out, model_source, source, settings, force)
    write_marker(out, "compress")
    stages = Stages(model_source, source, dataset, task, tokenizer, settings, finetuned, out, Path(cache_dir), say)
    for stage in STAGES:
        if stage in job.stages:
            say(stage, "done before (resumed)")
            continue
        if stage == "recover" and settings.recover == "none":
            continue
        say(stage, "started")
        start = time.perf_counter()
        result = getattr(stages, stage)(job)
        result["seconds"] = time.perf_counter() - start
        result["fingerprint"] = job.stage_fingerprint(stage)
        job.stages[stage] = result
        _save(out, job)
        say(stage, f"done in {result['seconds']:.0f} s")
    return job


def _finetune_settings(model_source: str) -> FinetuneSettings:
    """The input run's fine-tune settings, from its ``metrics.json``. A plain model folder (no
    ``metrics.json``), or a record that holds no settings, gets the defaults; a ``metrics.json`` that
    cannot be read, or whose settings are not valid, is an error naming it."""
    record_file = Path(model_source) / "metrics.json"
    if not record_file.is_file():
        return FinetuneSettings()
    try:
        record = Record.from_dict(json.loads(record_file.read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise TrimbertError(f"{record_file}: unreadable ({' '.join(str(error).split())})") from None
    recorded = record.training.settings if record.training else None
    if not recorded:
        return FinetuneSettings()
    if not isinstance(recorded, dict):
        raise TrimbertError(f"{record_file}: training.settings is not an object")
    try:
        return FinetuneSettings.build({k: v for k, v in recorded.items() if k in FinetuneSettings.model_fields})
    except TrimbertError as error:
        raise TrimbertError(f"{record_file}: its fine-tune settings are not valid ({error})") from None
