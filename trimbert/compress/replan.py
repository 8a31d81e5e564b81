"""Retraining-free compression held to its measured target: compress, time the result, tighten the budget, again.

The latency predictor prices a trim from a few probe trims; int8 kernels do not scale linearly with width,
so a plan that meets its predicted budget can measure slower than asked (OpenVINO int8: 4-17% short).
:func:`compress_to_target` compresses under the budget, has the result timed beside U* (the ``check``
callback: the compress stage exports and benches it), and, while it is more than
:data:`REPLAN_TOLERANCE` short, compresses again under the budget scaled by the shortfall
(:func:`replanned_budget`), at most ``replans`` times. The Fisher scores of the first pass are reused;
each pass starts from the untouched model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from trimbert.compress.cost import LinearCost
from trimbert.compress.run import compress_model
from trimbert.errors import TrimbertError

REPLAN_TOLERANCE = 0.02  # a pass measured more than 2% short of the target is compressed again


def replanned_budget(budget_ms: float, asked: float, measured: float, tolerance: float = REPLAN_TOLERANCE) -> float | None:
    """The next pass's budget when the measured speed (speed-up over U*, or 1 / ms) is more than ``tolerance``
    short of the asked one: the budget tightened by the shortfall (``budget × measured / asked``, as if the
    predictor's error were a constant factor); ``None`` when the pass meets the target (a faster pass is kept)."""
    shortfall = measured / asked
    return None if shortfall >= 1 - tolerance else budget_ms * shortfall


def compress_to_target(
    load: Callable[[], nn.Module],
    batches: Sequence[Mapping[str, torch.Tensor]],
    line: LinearCost,
    budget_ms: float,
    *,
    replans: int,
    save: Callable[[nn.Module], None],
    check: Callable[[], dict[str, Any]],
    say: Callable[[str], None] = lambda message: None,
    **options: Any,
) -> dict[str, Any]:
    """Compress ``load()`` under ``budget_ms`` and ``save`` the result; then, up to ``replans`` times, ``check``
    it (returns ``asked`` and ``measured`` speeds, with whatever else the caller records) and compress again
    under :func:`replanned_budget` while it falls short. The last saved pass is the result: the first that met
    the target, or the last one allowed (unchecked when the re-plans ran out), or, when a tighter budget has no
    plan, the pass before. Returns the kept pass's :meth:`~trimbert.compress.run.CompressReport.summary`, its
    budget, the stage times summed over the passes, and ``passes`` (each one's budget, prediction, trim, times
    and check). ``options``: :func:`~trimbert.compress.run.compress_model`'s (``has_head`` defaults to True)."""
    options.setdefault("has_head", True)
    passes: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    scores = None
    budget = budget_ms
    while True:
        try:
            compressed, report = compress_model(load(), batches, line, budget, scores=scores, **options)
        except TrimbertError as error:
            if not passes:
                raise
            say(f"re-planning stopped: {error}; keeping pass {len(passes)}")
            passes[-1]["stopped"] = str(error)
            break
        scores = report.fisher
        save(compressed)
        summary = report.summary()
        passes.append({"budget_ms": budget, "predicted_ms": report.predicted_ms, "summary": summary["summary"],
                       "search_seconds": report.search_seconds, "lstsq_seconds": report.scales.seconds})
        if len(passes) > replans:
            break
        measured = check()
        passes[-1].update(measured)
        say(f"pass {len(passes)}: {summary['summary']}: measured {measured['measured'] / measured['asked']:.3f} of the "
            f"target (predicted {report.predicted_ms:.2f} ms for a {budget:.2f} ms budget)")
        tighter = replanned_budget(budget, measured["asked"], measured["measured"])
        if tighter is None:
            break
        budget = tighter
        say(f"re-planning under {budget:.2f} ms")
    kept = passes[-1]
    return {**summary, "budget_ms": kept["budget_ms"], "predicted_ms": kept["predicted_ms"],
            "search_seconds": sum(p["search_seconds"] for p in passes),
            "lstsq_seconds": sum(p["lstsq_seconds"] for p in passes),
            "check_seconds": sum(p.get("check_seconds", 0.0) for p in passes), "passes": passes}
