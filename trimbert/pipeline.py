"""Turn a :class:`~trimbert.spec.TrimRequest` into a trimmed model, with data where the trim needs it.

Most trims are pure surgery (:func:`trimbert.model.trim.trim`). Two need a sample of real text:
``--drop-ffn auto:N`` (which FFNs matter least is measured, :mod:`trimbert.analyze`) and
``--layernorm-replacement affine`` (the replacement maps are fitted, :mod:`trimbert.model.calibrate`).
:func:`apply_trim` draws one sample, uses it for both, and returns what it chose so that records can
say so. ``trim``, ``finetune`` and sweeps all trim through here.
"""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from trimbert.analyze import resolve_auto_drop
from trimbert.data.batches import sample_batches
from trimbert.errors import TrimbertError
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
) -> tuple[nn.Module, dict[str, Any]]:
    """Trim ``model`` as ``request`` asks; returns the trimmed model and what data-driven steps chose.

    ``dataset``: rows of real text (a datasets split with ``text_a``/``text_b``/``label`` as
    :mod:`trimbert.data.glue` loads them, tokenized or not) for ``auto:N`` and ``affine``; ``samples`` rows
    are drawn from it with ``seed``. ``has_head``: the model has a fine-tuned head for this data (the
    analysis then ranks FFNs by the change in task loss rather than by hidden-state similarity).
    """
    info: dict[str, Any] = {}
    if not request.requested:
        return model, info
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
    if request.auto_count is not None:
        start = time.perf_counter()
        auto = resolve_auto_drop(model, request.auto_count, batches, has_head=has_head, seed=seed)
        model = trim(model, auto)
        info["auto_drop"] = {
            **auto.notes,
            "chosen": list(auto.drop_ffn),
            "analysis_time_s": time.perf_counter() - start,
        }
        request = request.without_auto()
    if request.requested:
        calibration = batches if request.layernorm_replacement == AFFINE else None
        model = trim(model, request, calibration_batches=calibration)
    if batches is not None:
        info["sample"] = {"rows": sum(len(batch["input_ids"]) for batch in batches), "seed": seed}
    return model, info
