"""``--drop-ffn auto:N``: which whole FFNs to cut, chosen from importance scores.

:func:`auto_drop` scores the FFNs of a model on a sample (the cut analysis by default, or Taylor
scores with ``--importance taylor``) and returns a :class:`~trimbert.spec.TrimSpec` dropping the ``N``
least important ones, with the scores as provenance in its ``notes``; :func:`check_auto_count` checks
``N`` against the model before any data is drawn. (The neuron and head orders of ``--ffn-width`` and
``--heads N`` are :meth:`~trimbert.importance.scores.Importance.neuron_order` and ``head_order``.)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.importance.rules import score
from trimbert.importance.scores import Importance
from trimbert.model.structure import applied_spec, block_positions
from trimbert.spec import TrimSpec

AUTO_RULES = ("cut", "taylor")  # magnitude and fisher score neurons and heads, not whole FFNs


def check_auto_count(n: int, model: nn.Module) -> None:
    """N must be between 1 and the number of FFNs the model still has."""
    applied = applied_spec(model)
    kept = list(block_positions(model))
    dropped = [index for index in kept if index in applied.drop_ffn]
    remaining = len(kept) - len(dropped)
    if not 0 < n <= remaining:
        already = f" ({len(dropped)} already dropped)" if dropped else ""
        raise TrimbertError(
            f"--drop-ffn: auto:{n} needs 1 <= N <= {remaining}: the {len(kept)}-block model has "
            f"{remaining} FFN(s) left{already}"
        )


def measure_name(found: Importance) -> str:
    """How a spec's notes name the measure: the cut analysis's ``"loss"``/``"cka"``, else
    ``"<rule> (<objective>)"`` (``"taylor (task-loss)"``), or the rule alone without data (``"magnitude"``)."""
    if found.rule == "cut":
        return str(found.objective)
    return found.rule if found.objective is None else f"{found.rule} ({found.objective})"


def auto_spec(found: Importance, n: int, seed: int | None = None) -> TrimSpec:
    """A spec that drops the ``n`` least important FFNs of ``found``, with the scores as provenance in ``notes``."""
    chosen = found.least_important_ffns(n)
    notes = {
        "drop_ffn_rule": f"auto:{n}",
        "measure": measure_name(found),
        "ffn_importance": {str(index): value for index, value in found.ffn.items()},
        "ffn_ranking": list(found.ffn_ranking()),
        "analysis_samples": found.samples,
    }
    if seed is not None:
        notes["analysis_seed"] = seed
    return TrimSpec(drop_ffn=chosen, notes=notes)


def auto_drop(
    model: nn.Module,
    count: int,
    batches: Sequence[dict[str, torch.Tensor]],
    *,
    rule: str = "cut",
    has_head: bool = False,
    seed: int | None = None,
) -> TrimSpec:
    """``--drop-ffn auto:<count>``: a :class:`TrimSpec` dropping the ``count`` FFNs that ``rule``
    (:data:`AUTO_RULES`) finds least important on ``batches``.

    ``seed`` (the seed the sample was drawn with, see :func:`trimbert.data.batches.sample_batches`) is
    recorded as provenance and draws Taylor's head-less projections. ``model`` is not modified: pass the
    returned spec to ``trim(model, spec)`` (:func:`trimbert.pipeline.apply_trim` does that, sampling the
    batches from a dataset).
    """
    if rule not in AUTO_RULES:
        raise TrimbertError(f"--drop-ffn auto:N ranks whole FFNs by {' or '.join(AUTO_RULES)}, not {rule!r}")
    check_auto_count(count, model)
    found = score(model, rule, batches, has_head=has_head, seed=seed or 0, units=("ffn",))
    return auto_spec(found, count, seed)
