"""Resolve a trim request against a model's depth and compose it with the spec already applied.

:func:`resolve_spec` is the one place where a :class:`~trimbert.spec.request.TrimRequest` (or the same
options as keywords) becomes a resolved :class:`~trimbert.spec.trimspec.TrimSpec`; :func:`validate_spec`
checks a resolved spec read back from a saved config. :func:`resolve_heads` says which heads a request
names explicitly (the spec records only counts; the surgery needs the indices).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from trimbert.errors import TrimbertError
from trimbert.spec.parse import HeadSelection, parse_blocks, parse_ffn_width, parse_heads, parse_layernorm
from trimbert.spec.request import TrimRequest
from trimbert.spec.trimspec import (
    IDENTITY,
    TrimSpec,
    check_normalizer,
    check_replacement,
    compact_indices,
    encoder_layernorms,
    ln_sort_key,
)


def resolve_spec(
    num_layers: int,
    applied: TrimSpec | None = None,
    request: TrimRequest | None = None,
    *,
    intermediate_size: int | None = None,
    num_attention_heads: int | None = None,
    **options: Any,
) -> TrimSpec:
    """Resolve a request against a model of ``num_layers`` ORIGINAL blocks and compose it with ``applied``.

    The request is a :class:`TrimRequest` or its options as keywords (``drop_ffn="alternate"``, ...).
    ``None`` for an option means "leave as it is". Re-dropping an FFN or a block that ``applied``
    already dropped is an error; so is stripping a LayerNorm that is already gone, or dropping every
    block. The request is resolved in this order: ``drop_layers``, ``drop_ffn``, ``ffn_width``, ``heads``,
    ``layernorm`` (so ``half`` counts the LayerNorms left by the drops), ``layernorm_replacement``,
    ``attention``. ``ffn_width`` needs ``intermediate_size`` (the width of a block not narrowed before),
    ``heads`` needs ``num_attention_heads`` (the head count of a block not pruned before).
    ``drop_ffn="auto:N"`` cannot be resolved here (it needs data: :mod:`trimbert.pipeline`).
    """
    if request is not None and options:
        raise TrimbertError("pass either a TrimRequest or trim options, not both")
    request = request if request is not None else TrimRequest.from_dict(options)
    applied = applied or TrimSpec()
    if request.auto_count is not None:
        raise TrimbertError(
            f"--drop-ffn {request.drop_ffn}: auto:N is chosen from data; use trimbert.pipeline.apply_trim"
        )
    drop_layers = _resolve_drop_layers(num_layers, applied, request.drop_layers)
    gone = set(drop_layers)
    drop_ffn = _resolve_drop_ffn(num_layers, applied, request.drop_ffn, gone)
    widths = _resolve_widths(num_layers, applied, request.ffn_width, gone, drop_ffn, intermediate_size)
    heads = _kept_heads(applied, gone)
    heads.update(_resolve_heads(num_layers, applied, request.heads, gone, num_attention_heads).counts)
    layernorm, replacement = _resolve_layernorm(
        num_layers, applied, request.layernorm, request.layernorm_replacement, gone, drop_ffn
    )
    attention = applied.attention if request.attention is None else check_normalizer(request.attention)
    return replace(
        applied,
        drop_ffn=drop_ffn,
        attention=attention,
        layernorm=layernorm,
        drop_layers=drop_layers,
        ffn_width=tuple(sorted(widths.items())),
        heads=tuple(sorted(heads.items())),
        layernorm_replacement=replacement,
        notes=dict(applied.notes),
    )


def _resolve_drop_layers(num_layers: int, applied: TrimSpec, text: str | None) -> tuple[int, ...]:
    new_layers: tuple[int, ...] = ()
    if text is not None:
        new_layers = parse_blocks(text, num_layers, option="--drop-layers")
        again = sorted(set(new_layers) & set(applied.drop_layers))
        if again:
            raise TrimbertError(
                f"--drop-layers: block {again[0]} is already dropped in this model "
                f"(already dropped: {compact_indices(applied.drop_layers)})"
            )
    all_layers = tuple(sorted(set(applied.drop_layers) | set(new_layers)))
    if num_layers and len(all_layers) >= num_layers:
        raise TrimbertError(
            f"--drop-layers: cannot drop every block ({len(all_layers)} of {num_layers}); keep at least one"
        )
    return all_layers


def _resolve_drop_ffn(
    num_layers: int, applied: TrimSpec, text: str | None, gone: set[int]
) -> tuple[int, ...]:
    # What the spec said about dropped blocks goes with them.
    kept_drop = tuple(index for index in applied.drop_ffn if index not in gone)
    new_drop: tuple[int, ...] = ()
    if text is not None:
        new_drop = parse_blocks(text, num_layers, dropped=gone)
        again = sorted(set(new_drop) & set(kept_drop))
        if again:
            raise TrimbertError(
                f"--drop-ffn: the FFN of block {again[0]} is already dropped in this model "
                f"(already dropped: {compact_indices(kept_drop)})"
            )
    return tuple(sorted(set(kept_drop) | set(new_drop)))


def _resolve_widths(
    num_layers: int,
    applied: TrimSpec,
    text: str | None,
    gone: set[int],
    drop_ffn: tuple[int, ...],
    intermediate_size: int | None,
) -> dict[int, int]:
    widths = {
        block: width for block, width in applied.ffn_width if block not in gone and block not in drop_ffn
    }
    if text is None:
        return widths
    if intermediate_size is None:
        raise TrimbertError("--ffn-width: the model's intermediate size is needed to resolve a width")
    current = {
        block: widths.get(block, intermediate_size)
        for block in range(num_layers)
        if block not in gone and block not in drop_ffn
    }
    widths.update(
        parse_ffn_width(
            text,
            num_layers,
            current,
            drop_ffn=drop_ffn,
            drop_layers=gone,
            intermediate_size=intermediate_size,
        )
    )
    return widths


def resolve_heads(
    num_layers: int,
    applied: TrimSpec | None,
    request: TrimRequest,
    *,
    num_attention_heads: int | None = None,
) -> HeadSelection:
    """What ``request.heads`` prunes now on a model of ``num_layers`` ORIGINAL blocks with ``applied``
    applied (after the request's own ``drop_layers``): the new head count of each block it prunes and,
    for the blocks whose heads it names (``"3=0+2+5"``), the kept heads' indices among the block's
    current heads. Empty when the request has no ``heads``. Raises what :func:`resolve_spec` raises."""
    applied = applied or TrimSpec()
    gone = set(_resolve_drop_layers(num_layers, applied, request.drop_layers))
    return _resolve_heads(num_layers, applied, request.heads, gone, num_attention_heads)


def _kept_heads(applied: TrimSpec, gone: set[int]) -> dict[int, int]:
    # A dropped block's head count goes with it.
    return {block: count for block, count in applied.heads if block not in gone}


def _resolve_heads(
    num_layers: int,
    applied: TrimSpec,
    text: str | None,
    gone: set[int],
    num_attention_heads: int | None,
) -> HeadSelection:
    if text is None:
        return HeadSelection(counts={}, explicit={})
    if num_attention_heads is None:
        raise TrimbertError("--heads: the model's number of attention heads is needed to resolve a head count")
    kept = _kept_heads(applied, gone)
    current = {
        block: kept.get(block, num_attention_heads) for block in range(num_layers) if block not in gone
    }
    return parse_heads(text, num_layers, current, drop_layers=gone, num_attention_heads=num_attention_heads)


def _resolve_layernorm(
    num_layers: int,
    applied: TrimSpec,
    text: str | None,
    replacement_text: str | None,
    gone: set[int],
    drop_ffn: tuple[int, ...],
) -> tuple[tuple[str, ...], str]:
    # LayerNorms that belonged to FFNs or blocks dropped now disappear with them.
    existing = encoder_layernorms(num_layers, drop_ffn, gone)
    kept_ln = tuple(name for name in applied.layernorm if name in existing)
    new_ln: tuple[str, ...] = ()
    if text is not None:
        new_ln = parse_layernorm(text, num_layers, drop_ffn, kept_ln, gone)
    replacement = applied.layernorm_replacement
    if replacement_text is not None:
        requested = check_replacement(replacement_text)
        if kept_ln and requested != replacement:
            raise TrimbertError(
                f"--layernorm-replacement: this model's stripped LayerNorms use {replacement!r}; "
                f"cannot use {requested!r} for more (one replacement per model)"
            )
        replacement = requested
    all_ln = tuple(sorted(set(kept_ln) | set(new_ln), key=ln_sort_key))
    return all_ln, (replacement if all_ln else IDENTITY)


def validate_spec(
    spec: TrimSpec,
    num_layers: int,
    *,
    intermediate_size: int | None = None,
    num_attention_heads: int | None = None,
) -> TrimSpec:
    """Check a resolved spec (e.g. read from a saved config) against a model's ORIGINAL depth (and,
    when given, its intermediate size and head count)."""
    if len(set(spec.drop_layers)) != len(spec.drop_layers):
        raise TrimbertError("trim spec: a block is listed more than once in drop_layers")
    for index in (*spec.drop_layers, *spec.drop_ffn):
        if not 0 <= index < num_layers:
            raise TrimbertError(f"trim spec: block index {index} out of range for a {num_layers}-block model")
    if num_layers and len(spec.drop_layers) >= num_layers:
        raise TrimbertError("trim spec: every block is dropped")
    gone = set(spec.drop_layers)
    for index in spec.drop_ffn:
        if index in gone:
            raise TrimbertError(f"trim spec: drop_ffn names block {index}, which is dropped (drop_layers)")
    for block, width in spec.ffn_width:
        if not 0 <= block < num_layers or block in gone or block in spec.drop_ffn:
            raise TrimbertError(f"trim spec: ffn_width names block {block}, which has no FFN in this model")
        if width < 1 or (intermediate_size is not None and width >= intermediate_size):
            raise TrimbertError(f"trim spec: bad FFN width {width} for block {block}")
    for block, count in spec.heads:
        if not 0 <= block < num_layers or block in gone:
            raise TrimbertError(f"trim spec: heads names block {block}, which is not in this model")
        if count < 1 or (num_attention_heads is not None and count >= num_attention_heads):
            raise TrimbertError(f"trim spec: bad head count {count} for block {block}")
    existing = encoder_layernorms(num_layers, spec.drop_ffn, gone)
    for name in spec.layernorm:
        if name not in existing:
            raise TrimbertError(f"trim spec: LayerNorm {name} does not exist in this model")
    check_replacement(spec.layernorm_replacement)
    check_normalizer(spec.attention)
    return spec
