"""Turn a :class:`~trimbert.spec.TrimRequest` into a trimmed model, with data where the trim needs it.

Most trims are pure surgery (:func:`trimbert.model.trim.trim`). Three need a sample of real text:
``--drop-ffn auto:N`` (which FFNs matter least is measured: the cut analysis of :mod:`trimbert.importance.cut`,
or Taylor scores with ``--importance taylor``; :mod:`trimbert.importance.select`), ``--ffn-width N --importance taylor``
(which neurons to keep, :mod:`trimbert.importance.taylor`) and ``--layernorm-replacement affine`` (the replacement maps are
fitted, :mod:`trimbert.model.calibrate`). :func:`apply_trim` draws one sample, uses it for all, and
returns what it chose so that records can say so. ``trim``, ``finetune`` and sweeps all trim through here.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from torch import nn

from trimbert.data.batches import sample_batches
from trimbert.errors import TrimbertError
from trimbert.importance.select import auto_drop
from trimbert.importance.taylor import taylor_importance
from trimbert.model.structure import applied_spec
from trimbert.model.trim import trim
from trimbert.spec import AFFINE, TrimRequest, TrimSpec


def apply_trim(
    model: nn.Module,
    request: TrimRequest,
    *,
    dataset: Any = None,
    tokenizer: Any = None,
    has_head: bool = False,
    samples: int = 256,
    seed: int = 0,
    max_length: int = 128,
    batch_size: int = 32,
    ranker: nn.Module | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Trim ``model`` as ``request`` asks; returns the trimmed model and what data-driven steps chose.

    ``dataset``: rows of real text (a datasets split with ``text_a``/``text_b``/``label`` as
    :mod:`trimbert.data.glue` loads them, tokenized or not) for ``auto:N`` and ``affine``; ``samples`` rows
    are drawn from it with ``seed``. ``has_head``: the model has a fine-tuned head for this data (the
    analysis then ranks FFNs by the change in task loss rather than by hidden-state similarity).
    ``ranker``: a model fine-tuned on this data with the same structure as ``model`` (the distillation
    teacher); ``--importance taylor`` then ranks FFNs and neurons by *its* task loss, which says what
    the task needs, where a pretrained model without a trained head only offers hidden-state changes.
    """
    info: dict[str, Any] = {}
    if not request.requested:
        return model, info
    request.check_importance()
    batches = None
    if request.needs_data:
        if dataset is None:
            raise TrimbertError(
                "--drop-ffn auto:N and --layernorm-replacement affine need text to measure on: "
                "give --task (and --data-dir) or your own --train file"
            )
        if tokenizer is None:
            raise TrimbertError("auto:N and affine calibration need the model's tokenizer")
        batches = sample_batches(
            dataset,
            tokenizer,
            samples=samples,
            seed=seed,
            max_length=max_length,
            batch_size=batch_size,
            tokenized="input_ids" in getattr(dataset, "column_names", ()),
        )
    scorer, scorer_head = model, has_head
    if request.taylor and ranker is not None:
        if applied_spec(ranker) != applied_spec(model):
            raise TrimbertError("--importance taylor: the ranking model (teacher) must have the structure of the model trimmed")
        scorer, scorer_head = ranker, True
        info["ranked_on"] = "teacher"
    if request.auto_count is not None:
        start = time.perf_counter()
        if request.taylor:
            auto = auto_drop(scorer, request.auto_count, batches, rule="taylor", has_head=scorer_head, seed=seed)
        else:
            auto = auto_drop(model, request.auto_count, batches, has_head=has_head, seed=seed)
        model = trim(model, auto)
        info["auto_drop"] = {
            **auto.notes,
            "chosen": list(auto.drop_ffn),
            "analysis_time_s": time.perf_counter() - start,
        }
        request = request.without_auto()
    if request.requested and request.to_dict().keys() - {"importance"}:
        calibration = batches if request.layernorm_replacement == AFFINE else None
        scores = None
        if request.taylor:
            start = time.perf_counter()
            found = taylor_importance(scorer, batches, has_head=scorer_head, seed=seed)
            scores = found.neurons
            info["ffn_importance"] = {"rule": "taylor", "objective": found.objective, "time_s": time.perf_counter() - start}
        model = trim(model, _without_importance(request), calibration_batches=calibration, ffn_importance=scores)
        if scores is not None:
            _note(model, "ffn_width_rule", f"taylor ({found.objective})")
    if batches is not None:
        info["sample"] = {"rows": sum(len(batch["input_ids"]) for batch in batches), "seed": seed}
    return model, info


def _without_importance(request: TrimRequest) -> TrimRequest:
    return dataclasses.replace(request, importance=None)


def _note(model: nn.Module, key: str, value: Any) -> None:
    """Record provenance in the trimmed model's saved spec (``notes``)."""
    spec = applied_spec(model)
    model.config.trim_spec = TrimSpec.from_dict({**spec.to_dict(), "notes": {**spec.notes, key: value}}).to_dict()

