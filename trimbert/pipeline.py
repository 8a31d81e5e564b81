"""Turn a :class:`~trimbert.spec.TrimRequest` into a trimmed model, with data where the trim needs it.

Most trims are pure surgery (:func:`trimbert.model.trim.trim`). Some need a sample of real text:
``--drop-ffn auto:N`` (which FFNs matter least is measured: the cut analysis of :mod:`trimbert.importance.cut`,
or Taylor scores with ``--importance taylor``; :mod:`trimbert.importance.select`), ``--ffn-width N`` and
``--heads N`` with ``--importance taylor|fisher`` (which neurons and heads to keep) and
``--layernorm-replacement affine`` (the replacement maps are fitted, :mod:`trimbert.model.calibrate`).
Every rule is scored through the one interface, :func:`trimbert.importance.rules.score`.
:func:`apply_trim` draws one sample, uses it for all, and returns what it chose so that records can say
so. ``trim``, ``finetune`` and sweeps all trim through here.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from torch import nn

from trimbert.data.batches import sample_batches
from trimbert.errors import TrimbertError
from trimbert.importance.rules import score
from trimbert.importance.select import auto_drop, measure_name
from trimbert.model.structure import applied_spec
from trimbert.model.trim import trim
from trimbert.spec import AFFINE, TrimRequest


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
    :mod:`trimbert.data.glue` loads them, tokenized or not) for ``auto:N``, ``affine`` and the data
    rules of ``--importance``; ``samples`` rows are drawn from it with ``seed``. ``has_head``: the model
    has a fine-tuned head for this data (FFNs, neurons and heads are then ranked by the change in task
    loss rather than by hidden-state changes). ``--importance`` scores (any rule of
    :func:`~trimbert.importance.rules.score`) choose the neurons ``--ffn-width`` keeps and the heads
    ``--heads N`` keeps (heads named by index are kept as named); the saved spec's notes name the rule
    (``ffn_width_rule``, ``heads_rule``). ``ranker``: a model fine-tuned on this data with the same
    structure as ``model`` (the distillation teacher); ``--importance taylor|fisher`` then ranks by *its*
    task loss, which says what the task needs, where a pretrained model without a trained head only
    offers hidden-state changes.
    """
    info: dict[str, Any] = {}
    if not request.requested:
        return model, info
    request.check_importance()
    batches = None
    if request.needs_data:
        if dataset is None:
            raise TrimbertError(
                "--drop-ffn auto:N, --layernorm-replacement affine and --importance taylor|fisher need text to "
                "measure on: give --task (and --data-dir) or your own --train file"
            )
        if tokenizer is None:
            raise TrimbertError("auto:N, affine calibration and --importance taylor|fisher need the model's tokenizer")
        batches = sample_batches(
            dataset,
            tokenizer,
            samples=samples,
            seed=seed,
            max_length=max_length,
            batch_size=batch_size,
            tokenized="input_ids" in getattr(dataset, "column_names", ()),
        )
    on_ranker = request.ranks_on_data and ranker is not None
    if on_ranker:
        if applied_spec(ranker) != applied_spec(model):
            raise TrimbertError(
                f"--importance {request.importance}: the ranking model (teacher) must have the structure of the model trimmed"
            )
        info["ranked_on"] = "teacher"
    if request.auto_count is not None:
        start = time.perf_counter()
        auto = auto_drop(
            ranker if on_ranker else model,
            request.auto_count,
            batches,
            rule=request.importance or "cut",
            has_head=on_ranker or has_head,
            seed=seed,
        )
        model = trim(model, auto)
        info["auto_drop"] = {
            **auto.notes,
            "chosen": list(auto.drop_ffn),
            "analysis_time_s": time.perf_counter() - start,
        }
        request = request.without_auto()
    if request.requested and request.to_dict().keys() - {"importance"}:
        calibration = batches if request.layernorm_replacement == AFFINE else None
        found = None
        if request.ranks_units:
            start = time.perf_counter()
            scorer = ranker if on_ranker else model
            found = score(scorer, str(request.importance), batches, has_head=on_ranker or has_head, seed=seed)
            info["importance"] = {"rule": found.rule, "objective": found.objective, "time_s": time.perf_counter() - start}
        model = trim(
            model,
            _without_importance(request),
            calibration_batches=calibration,
            ffn_importance=found.neurons if found is not None and request.ffn_width is not None else None,
            head_importance=found.heads if found is not None and request.heads_counted else None,
            scores_rule=measure_name(found) if found is not None else "scores",
        )
    if batches is not None:
        info["sample"] = {"rows": sum(len(batch["input_ids"]) for batch in batches), "seed": seed}
    return model, info


def _without_importance(request: TrimRequest) -> TrimRequest:
    return dataclasses.replace(request, importance=None)
