"""The surgery: trim any loaded BERT model (trimmed or not) as a request asks.

:func:`trim` composes the request with what was already applied (:func:`trimbert.spec.resolve_spec`),
chooses the neurons and heads kept, builds the TrimBert counterpart on the meta device and moves the
surviving weights over without copying them (:mod:`trimbert.model.rebuild`; fitted affine LayerNorm
replacements are written by :mod:`trimbert.model.calibrate`).

Dropped blocks (``drop_layers``). A trimmed model is *built* with ``num_hidden_layers`` = the number
of blocks present, so ``encoder.layer`` holds only them, numbered 0..k-1 (state-dict keys, cache
slots and ``layer_idx`` all use these positions), and transformers' masks, caches and
``output_hidden_states`` work unchanged. The spec keeps every index in the original numbering; the
weights of each block are moved from its position in the source to its position in the trimmed model.

FFN width (``ffn_width``). A narrowed block's ``intermediate.dense`` is ``Linear(H, N)`` and its
``output.dense`` ``Linear(N, H)``; the kept neurons are chosen at trim time and keep their original
order. By default a neuron's importance is its weight magnitude (``||W_in[j, :]||_2 * ||W_out[:, j]||_2``);
``trim(ffn_importance=...)`` takes externally computed scores instead. Each narrowed block loses
``(I - N) * (2H + 1)`` parameters.

Attention heads (``heads``). A block pruned to ``n`` heads of size ``d`` has ``query``/``key``/``value``
``Linear(H, n·d)`` and ``attention.output.dense`` ``Linear(n·d, H)``: the rows (and biases) of the kept
heads of Q, K and V move, and the columns of the kept heads of the output projection (its bias
stays). The kept heads keep their original order. They are the heads the request names
(``"3=0+2+5"``), else the most important ones by weight magnitude (``||W_V[h]||_F * ||W_O[:, h]||_F``,
:func:`~trimbert.model.ranking.head_magnitude_importance`), or by ``trim(head_importance=...)``.
Each head removed takes ``4·H·d + 3·d`` parameters with it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.model.calibrate import calibrate_affine, count_tokens
from trimbert.model.ranking import (
    head_magnitude_importance,
    magnitude_importance,
    select_heads,
    select_neurons,
)
from trimbert.model.rebuild import build_trimmed
from trimbert.model.structure import (
    applied_spec,
    block_heads,
    block_positions,
    encoder_layers,
)
from trimbert.spec.request import TrimRequest
from trimbert.spec.resolve import resolve_heads, resolve_spec
from trimbert.spec.trimspec import AFFINE, TrimSpec

logger = logging.getLogger(__name__)
CALIBRATION_MODES = ("sequential", "independent")


def _check_scores(
    scores: Any, option: str, unit: str, needed: dict[int, int], num_layers: int, why: str
) -> dict[int, torch.Tensor]:
    """``scores`` (block -> 1-d tensor) checked: a block of ``needed`` needs ``needed[block]`` finite scores."""
    if not isinstance(scores, Mapping):
        raise TrimbertError(f"{option}: expected a dict block -> 1-D tensor of {unit} scores")
    checked: dict[int, torch.Tensor] = {}
    for key, value in scores.items():
        try:
            block = int(key)
        except (TypeError, ValueError) as error:
            raise TrimbertError(f"{option}: bad block index {key!r}") from error
        if not 0 <= block < num_layers:
            raise TrimbertError(f"{option}: block index {block} out of range for a {num_layers}-block model")
        checked[block] = torch.as_tensor(value).detach()
    for block in sorted(needed):
        if block not in checked:
            raise TrimbertError(f"{option}: no scores for block {block} ({why})")
        values = checked[block]
        if values.ndim != 1 or values.numel() != needed[block]:
            raise TrimbertError(
                f"{option}: block {block} needs {needed[block]} scores (one per {unit}), "
                f"got shape {tuple(values.shape)}"
            )
        if not torch.isfinite(values.double()).all():
            raise TrimbertError(f"{option}: block {block} has non-finite scores")
    return checked


def _check_batches(batches: Any) -> list[Mapping[str, Any]]:
    message = "calibration_batches: expected a list of batches (dicts with input_ids, attention_mask, ...)"
    if isinstance(batches, (Mapping, str, torch.Tensor)):
        raise TrimbertError(message)
    try:
        batches = list(batches)
    except TypeError as error:
        raise TrimbertError(message) from error
    if not batches:
        raise TrimbertError("calibration_batches: no batches given")
    if not all(isinstance(batch, Mapping) and "input_ids" in batch for batch in batches):
        raise TrimbertError(message)
    return batches


def trim(
    model: nn.Module,
    request: TrimRequest | TrimSpec | None = None,
    *,
    ffn_importance: Mapping[int, torch.Tensor] | None = None,
    head_importance: Mapping[int, torch.Tensor] | None = None,
    scores_rule: str = "scores",
    calibration_batches: Sequence[Mapping[str, torch.Tensor]] | None = None,
    calibration: str = "sequential",
    **options: Any,
) -> nn.Module:
    """Trim ``model`` and return the trimmed model (a TrimBert class; ``model`` must not be used after).

    ``request`` is a :class:`~trimbert.spec.TrimRequest`, or its options as keywords
    (``drop_ffn="alternate"``, ``attention="relu"``, ``layernorm="half"``, ``drop_layers="4,5"``,
    ``ffn_width=768``; see :mod:`trimbert.spec`), or a resolved :class:`~trimbert.spec.TrimSpec` to
    add (its notes are kept). Each composes with whatever was applied to ``model`` before. The
    surviving weights are moved, not copied.

    ``ffn_width``: narrow every remaining FFN (an int) or some (``{block: width}``) to that many
    intermediate neurons; the neurons kept are the most important ones by weight magnitude
    (:func:`~trimbert.model.ranking.magnitude_importance`), or by ``ffn_importance`` when given:
    ``{block: scores}``, one score per current neuron of every block narrowed now, higher = more
    important. ``spec.notes["ffn_width_rule"]`` records ``"magnitude"`` or ``scores_rule`` (what the
    caller calls its scores, e.g. ``"taylor (task-loss)"``; default ``"scores"``).

    ``heads``: prune every present block's attention (an int) or some (``"0:4,3:8"``, ``{block: count}``)
    to that many heads, or keep the named heads (``"3=0+2+5"``, ``{3: [0, 2, 5]}``: indices among the
    block's current heads); counted heads are the most important ones by weight magnitude
    (:func:`~trimbert.model.ranking.head_magnitude_importance`), or by ``head_importance`` when given:
    ``{block: scores}``, one score per current head of every block pruned now by count, higher = more
    important. ``spec.notes["heads_rule"]`` records ``"magnitude"``, ``scores_rule`` or ``"explicit"``.

    ``layernorm_replacement="affine"`` needs ``calibration_batches`` (a list of dicts of
    ``input_ids``, ``attention_mask``, ...): ``model`` is run on them and each newly stripped
    LayerNorm's replacement ``a * x + b`` is fitted by per-channel least squares to reproduce that
    LayerNorm's outputs on the real tokens (:func:`trimbert.model.calibrate.calibrate_affine`).
    ``calibration="sequential"`` (default) fits the replacements in forward order on the inputs they
    get in the trimmed model (so each one also absorbs the drift of the ones before);
    ``"independent"`` fits each on the source model's own LayerNorm inputs.
    ``spec.notes["layernorm_calibration"]`` records the sample size and mode.
    """
    if calibration not in CALIBRATION_MODES:
        raise TrimbertError(
            f"calibration: unknown mode {calibration!r} (choose from {', '.join(CALIBRATION_MODES)})"
        )
    before = applied_spec(model)
    notes = dict(before.notes)
    if isinstance(request, TrimSpec):
        if options:
            raise TrimbertError("pass either a TrimSpec or trim options to trim(), not both")
        notes.update(request.notes)
        request = TrimRequest.from_spec(request)
    elif request is None:
        request = TrimRequest.from_dict(options)
    elif options:
        raise TrimbertError("pass either a TrimRequest or trim options to trim(), not both")
    if ffn_importance is not None and request.ffn_width is None:
        raise TrimbertError("ffn_importance: only used with --ffn-width (no width given)")
    if head_importance is not None and request.heads is None:
        raise TrimbertError("head_importance: only used with --heads (no heads given)")
    layers = encoder_layers(model)
    num_layers = before.original_num_layers(len(layers))
    heads = model.config.num_attention_heads
    composed = resolve_spec(
        num_layers, before, request, intermediate_size=model.config.intermediate_size, num_attention_heads=heads
    )
    named = resolve_heads(num_layers, before, request, num_attention_heads=heads).explicit
    kept = composed.kept_layers(num_layers)
    if len(composed.drop_ffn) == len(kept) and kept:
        warnings.warn(
            f"every FFN is dropped ({len(kept)} of {len(kept)} blocks): the encoder is attention only",
            UserWarning,
            stacklevel=2,
        )
    selections = _neuron_selections(model, before, composed, ffn_importance, scores_rule, notes)
    head_selections = _head_selections(model, before, composed, named, head_importance, scores_rule, notes)
    new_affine = _affine_plan(before, composed, calibration_batches)
    if calibration_batches is not None:
        calibration_batches = _check_batches(calibration_batches)
    if new_affine:
        sequences, tokens = count_tokens(calibration_batches)
        notes["layernorm_calibration"] = {
            "layernorms": list(new_affine),
            "sequences": sequences,
            "tokens": tokens,
            "mode": calibration,
        }
    trimmed = build_trimmed(
        model, before, replace(composed, notes=notes), selections, new_affine, head_selections
    )
    if new_affine:
        calibrate_affine(
            model, trimmed, calibration_batches, names=new_affine, sequential=calibration == "sequential"
        )
    return trimmed


def _neuron_selections(
    model: nn.Module,
    before: TrimSpec,
    composed: TrimSpec,
    ffn_importance: Mapping[int, Any] | None,
    scores_rule: str,
    notes: dict[str, Any],
) -> dict[int, torch.Tensor]:
    """The neurons each FFN narrowed now keeps (block -> sorted indices); records the rule in ``notes``."""
    layers = encoder_layers(model)
    num_layers = before.original_num_layers(len(layers))
    intermediate = model.config.intermediate_size
    before_widths = before.ffn_widths
    current = {block: before_widths.get(block, intermediate) for block in composed.kept_layers(num_layers)}
    narrowed = {block: width for block, width in composed.ffn_width if before_widths.get(block) != width}
    if not narrowed:
        if not composed.ffn_width:
            notes.pop("ffn_width_rule", None)
        return {}
    source_position = block_positions(model)
    scores = (
        _check_scores(
            ffn_importance,
            "ffn_importance",
            "neuron",
            {block: current[block] for block in narrowed},
            num_layers,
            "narrowed by --ffn-width",
        )
        if ffn_importance is not None
        else {}
    )
    selections: dict[int, torch.Tensor] = {}
    for block, width in narrowed.items():
        importance = scores.get(block)
        if importance is None:
            importance = magnitude_importance(layers[source_position[block]])
        selections[block] = select_neurons(importance, width)
    _note_rule(notes, "ffn_width_rule", scores_rule if ffn_importance is not None else "magnitude", bool(before.ffn_width))
    return selections


def _head_selections(
    model: nn.Module,
    before: TrimSpec,
    composed: TrimSpec,
    named: dict[int, tuple[int, ...]],
    head_importance: Mapping[int, Any] | None,
    scores_rule: str,
    notes: dict[str, Any],
) -> dict[int, torch.Tensor]:
    """The heads each block pruned now keeps (block -> sorted indices among its current heads); records
    the rule in ``notes["heads_rule"]``."""
    layers = encoder_layers(model)
    num_layers = before.original_num_layers(len(layers))
    before_counts = before.head_counts
    pruned = {block: count for block, count in composed.heads if before_counts.get(block) != count}
    if not pruned:
        if not composed.heads:
            notes.pop("heads_rule", None)
        return {}
    source_position = block_positions(model)
    counted = {block: block_heads(layers[source_position[block]]) for block in pruned if block not in named}
    scores = (
        _check_scores(head_importance, "head_importance", "head", counted, num_layers, "pruned by --heads")
        if head_importance is not None
        else {}
    )
    selections: dict[int, torch.Tensor] = {}
    for block, count in pruned.items():
        if block in named:
            selections[block] = torch.tensor(named[block], dtype=torch.long)
            continue
        importance = scores.get(block)
        if importance is None:
            importance = head_magnitude_importance(layers[source_position[block]])
        selections[block] = select_heads(importance, count)
    rules = []
    if named:
        rules.append("explicit")
    if counted:
        rules.append(scores_rule if head_importance is not None else "magnitude")
    _note_rule(notes, "heads_rule", " and ".join(rules), bool(before.heads))
    return selections


def _note_rule(notes: dict[str, Any], key: str, rule: str, trimmed_before: bool) -> None:
    """Record in ``notes[key]`` the rule that chose the units kept now, after the earlier one's (if any)."""
    previous = notes.get(key) if trimmed_before else None
    notes[key] = rule if previous in (None, rule) else f"{previous}, then {rule}"


def _affine_plan(before: TrimSpec, composed: TrimSpec, calibration_batches: Any) -> tuple[str, ...]:
    """The LayerNorms replaced by a fitted affine map now; refuses calibration data that has no use."""
    new_affine: tuple[str, ...] = ()
    if composed.layernorm_replacement == AFFINE:
        new_affine = tuple(name for name in composed.layernorm if name not in before.layernorm)
    if calibration_batches is not None and composed.layernorm_replacement != AFFINE:
        raise TrimbertError(
            "calibration_batches: only used with --layernorm-replacement affine "
            f"(this trim uses {composed.layernorm_replacement!r})"
        )
    if new_affine and calibration_batches is None:
        raise TrimbertError(
            "--layernorm-replacement affine: calibration data is needed to fit the replacements "
            "(pass calibration_batches)"
        )
    return new_affine
