"""Parsers of the trim vocabulary: block selections, LayerNorm selections, FFN widths, attention heads.

Each turns what a user wrote (``"alternate"``, ``"half"``, ``"0:768,3:512"``, ``"0:4,3=0+2+5"``) into explicit, sorted
indices or names checked against a model's depth, in the original numbering (see :mod:`trimbert.spec.trimspec`):
selection patterns (``alternate``, ``first:N``, ``all``, ...) are resolved in that numbering and then skip
the dropped blocks, while an explicit index of a dropped block is an error. Errors are one-line
:class:`~trimbert.errors.TrimbertError` messages that name the option.

Block-selection syntax (``drop_ffn``, ``drop_layers``):
    ``none``                nothing
    ``1,3,5`` ``6-11``      explicit indices and inclusive ranges, comma-separated, combinable
    ``alternate``           every second block, starting at block 1 (1, 3, 5, ...): the first block keeps its FFN
    ``first:N``             blocks 0 .. N-1
    ``last:N``              the last N blocks
    ``all``                 every block (allowed for ``drop_ffn``, with a warning; refused for ``drop_layers``)

FFN width (``ffn_width``): an int (or ``"768"``) for every block whose FFN is kept, or per block
(``{0: 768, 3: 512}`` or ``"0:768,3:512"``).

Attention heads (``heads``): an int (or ``"8"``) for every present block, per block counts
(``{0: 4, 3: 8}`` or ``"0:4,3:8"``), or the heads a block keeps, by index among its CURRENT heads
(``"3=0+2+5"``: block 3 keeps its heads 0, 2 and 5; ``{3: [0, 2, 5]}``); per-block forms combine with
commas (``"0:4,3=0+2+5"``).

LayerNorm syntax (``layernorm``; the names are ``<block>.attn`` and ``<block>.ffn``):
    ``none``                nothing
    ``half``                exactly half (rounded down) of the encoder LayerNorms that still exist, by this rule:
                            candidates in order are (1) the attention LayerNorms of blocks whose FFN is kept,
                            (2) the attention LayerNorms of blocks whose FFN is dropped, (3) the FFN LayerNorms,
                            each group in block order; the first half of that list is stripped. On an untrimmed
                            model this strips every attention LayerNorm and keeps every FFN LayerNorm, so each
                            block still ends in a LayerNorm.
    ``attn`` / ``ffn``      every remaining attention / FFN LayerNorm
    ``all``                 every remaining encoder LayerNorm
    ``0.attn,3.ffn``        an explicit selection
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from trimbert.errors import TrimbertError
from trimbert.spec.trimspec import (
    LN_KINDS,
    LN_NAME,
    block_key,
    compact_indices,
    encoder_layernorms,
    ln_sort_key,
)


def parse_blocks(
    text: str | list[int] | tuple[int, ...],
    num_layers: int,
    *,
    option: str = "--drop-ffn",
    dropped: Collection[int] = (),
) -> tuple[int, ...]:
    """Resolve a block selection (see the module docstring) to sorted explicit indices.

    ``dropped``: blocks removed with ``--drop-layers`` (original numbering): patterns skip them, an
    explicit index naming one is an error.

    Raises :class:`TrimbertError` for an unknown pattern, a negative, repeated or out-of-range index.
    """
    gone = set(dropped)

    def present(indices: range | list[int]) -> tuple[int, ...]:
        return tuple(index for index in indices if index not in gone)

    if isinstance(text, (list, tuple)):
        items = [str(item) for item in text]
    else:
        items = [item.strip() for item in str(text).split(",")]
    if not items or items == [""]:
        raise TrimbertError(f"{option}: empty block selection")
    valid = f"valid: 0-{num_layers - 1}" if num_layers else "the model has no blocks"

    def check(index: int) -> int:
        if index >= num_layers:
            raise TrimbertError(
                f"{option}: block index {index} out of range for a {num_layers}-block model ({valid})"
            )
        if index in gone:
            raise TrimbertError(
                f"{option}: block {index} was removed with --drop-layers and cannot be named "
                f"(dropped blocks: {compact_indices(tuple(sorted(gone)))})"
            )
        return index

    selected: list[int] = []
    for item in items:
        lowered = item.lower()
        if lowered == "none" and len(items) == 1:
            return ()
        if lowered == "all" and len(items) == 1:
            return present(range(num_layers))
        if lowered == "alternate" and len(items) == 1:
            return present(range(1, num_layers, 2))
        match = re.fullmatch(r"(first|last):(-?\d+)", lowered)
        if match and len(items) == 1:
            count = int(match.group(2))
            if not 0 < count <= num_layers:
                raise TrimbertError(
                    f"{option}: {item!r} needs 1 <= N <= {num_layers} for a {num_layers}-block model"
                )
            if match.group(1) == "first":
                return present(range(count))
            return present(range(num_layers - count, num_layers))
        if re.fullmatch(r"-\d+", item) or re.fullmatch(r"-?\d+--\d+", item):
            raise TrimbertError(f"{option}: negative block index in {item!r} ({valid})")
        range_match = re.fullmatch(r"(\d+)-(\d+)", item)
        if range_match:
            low, high = int(range_match.group(1)), int(range_match.group(2))
            if low > high:
                raise TrimbertError(f"{option}: range {item!r} runs backwards")
            selected.extend(check(index) for index in range(low, high + 1))
        elif re.fullmatch(r"\d+", item):
            selected.append(check(int(item)))
        else:
            raise TrimbertError(
                f"{option}: unknown block selection {item!r} "
                "(use indices like 1,3,5, ranges like 6-11, alternate, first:N, last:N, all or none)"
            )
    repeated = sorted({index for index in selected if selected.count(index) > 1})
    if repeated:
        raise TrimbertError(f"{option}: block index {repeated[0]} given more than once")
    return tuple(sorted(selected))


def parse_layernorm(
    text: str,
    num_layers: int,
    drop_ffn: tuple[int, ...],
    already: tuple[str, ...] = (),
    drop_layers: Collection[int] = (),
) -> tuple[str, ...]:
    """Resolve a LayerNorm selection against the LayerNorms that exist after ``drop_ffn`` and ``drop_layers``.

    ``already`` are LayerNorms stripped earlier; they no longer count as existing.
    Returns only the *newly* stripped names, sorted.
    """
    gone = set(drop_layers)
    existing = [name for name in encoder_layernorms(num_layers, drop_ffn, gone) if name not in already]
    lowered = text.strip().lower()
    if lowered == "none":
        return ()
    if lowered == "half":
        dropped = set(drop_ffn)
        kept_attn = [n for n in existing if n.endswith(".attn") and int(n.split(".")[0]) not in dropped]
        lone_attn = [n for n in existing if n.endswith(".attn") and int(n.split(".")[0]) in dropped]
        ffn = [n for n in existing if n.endswith(".ffn")]
        order = kept_attn + lone_attn + ffn
        return tuple(sorted(order[: len(existing) // 2], key=ln_sort_key))
    if lowered == "all":
        return tuple(existing)
    if lowered in LN_KINDS:
        return tuple(n for n in existing if n.endswith("." + lowered))
    chosen = []
    for item in (part.strip() for part in text.split(",")):
        match = LN_NAME.match(item)
        if not match:
            raise TrimbertError(
                f"--layernorm: unknown selection {item!r} (use none, half, attn, ffn, all, or names like 0.attn,3.ffn)"
            )
        block = int(match.group(1))
        if block >= num_layers:
            raise TrimbertError(
                f"--layernorm: block index {block} out of range for a {num_layers}-block model"
            )
        if block in gone:
            raise TrimbertError(
                f"--layernorm: LayerNorm {item} does not exist (block {block} was removed with --drop-layers)"
            )
        if item in already:
            raise TrimbertError(f"--layernorm: LayerNorm {item} is already stripped")
        if item not in existing:
            raise TrimbertError(
                f"--layernorm: LayerNorm {item} does not exist (the FFN of block {block} is dropped)"
            )
        if item in chosen:
            raise TrimbertError(f"--layernorm: LayerNorm {item} given more than once")
        chosen.append(item)
    return tuple(sorted(chosen, key=ln_sort_key))


def parse_ffn_width(
    request: int | str | Mapping[int, int],
    num_layers: int,
    current: Mapping[int, int],
    *,
    drop_ffn: Collection[int] = (),
    drop_layers: Collection[int] = (),
    intermediate_size: int | None = None,
) -> dict[int, int]:
    """Resolve an FFN width request to ``{block: width}`` for the blocks it narrows.

    ``current``: the present width of every block that still has an FFN (original numbering); an int
    request applies to all of them. ``drop_ffn`` / ``drop_layers``: the blocks without FFN / removed,
    for the error messages. Each new width must be ``>= 1`` and below the block's current width.
    """
    option = "--ffn-width"
    if isinstance(request, bool):
        raise TrimbertError(f"{option}: expected a width or block:width pairs, not {request!r}")
    if isinstance(request, Mapping):
        pairs = list(request.items())
        uniform = None
    elif isinstance(request, int):
        pairs, uniform = [], request
    else:
        text = str(request).strip()
        if re.fullmatch(r"-?\d+", text):
            pairs, uniform = [], int(text)
        else:
            pairs = []
            uniform = None
            for item in (part.strip() for part in text.split(",")):
                match = re.fullmatch(r"(-?\d+)\s*:\s*(-?\d+)", item)
                if not match:
                    raise TrimbertError(
                        f"{option}: unknown width {item!r} (use a number like 768, or block:width pairs like 0:768,3:512)"
                    )
                pairs.append((int(match.group(1)), int(match.group(2))))
    if uniform is not None:
        if not current:
            raise TrimbertError(f"{option}: no block has an FFN left to narrow")
        pairs = [(block, uniform) for block in sorted(current)]
    if not pairs:
        raise TrimbertError(f"{option}: empty width selection")
    resolved: dict[int, int] = {}
    for block, width in pairs:
        try:
            block, width = int(block), int(width)
        except (TypeError, ValueError) as error:
            raise TrimbertError(f"{option}: bad block:width pair {block!r}:{width!r}") from error
        if block < 0:
            raise TrimbertError(f"{option}: negative block index {block}")
        if block >= num_layers:
            raise TrimbertError(f"{option}: block index {block} out of range for a {num_layers}-block model")
        if block in drop_layers:
            raise TrimbertError(f"{option}: block {block} was removed with --drop-layers and cannot be named")
        if block in drop_ffn or block not in current:
            raise TrimbertError(f"{option}: block {block} has no FFN (its FFN is dropped)")
        if block in resolved:
            raise TrimbertError(f"{option}: block {block} given more than once")
        if width < 1:
            raise TrimbertError(f"{option}: width {width} must be at least 1")
        have = current[block]
        if width >= have:
            if intermediate_size is not None and have == intermediate_size:
                raise TrimbertError(
                    f"{option}: width {width} must be less than the intermediate size ({intermediate_size})"
                )
            raise TrimbertError(
                f"{option}: width {width} must be less than the current FFN width of block {block} ({have})"
            )
        resolved[block] = width
    return resolved


_HEADS_HELP = "use a number like 8, block:count pairs like 0:4,3:8, or block=heads like 3=0+2+5"


@dataclass(frozen=True)
class HeadSelection:
    """What a heads request prunes now. ``counts``: block -> number of heads kept, for every block the
    request prunes; ``explicit``: block -> the kept heads' indices among the block's current heads
    (sorted), for the blocks whose heads were named (the others are chosen by importance)."""

    counts: dict[int, int]
    explicit: dict[int, tuple[int, ...]]


def _head_items(request: Any, option: str) -> tuple[list[tuple[Any, Any]], Any]:
    """``(pairs, uniform)``: block -> count or list of head indices; or one count for every block."""
    if isinstance(request, bool):
        raise TrimbertError(f"{option}: expected a head count or per-block heads, not {request!r}")
    if isinstance(request, Mapping):
        return [(block_key(block), value) for block, value in request.items()], None
    if isinstance(request, int):
        return [], request
    text = str(request).strip()
    if re.fullmatch(r"-?\d+", text):
        return [], int(text)
    pairs: list[tuple[Any, Any]] = []
    for item in (part.strip() for part in text.split(",")):
        count = re.fullmatch(r"(-?\d+)\s*:\s*(-?\d+)", item)
        named = re.fullmatch(r"(-?\d+)\s*=\s*(-?\d+(?:\s*\+\s*-?\d+)*)", item)
        if count:
            pairs.append((int(count.group(1)), int(count.group(2))))
        elif named:
            pairs.append((int(named.group(1)), [int(head) for head in named.group(2).split("+")]))
        elif re.fullmatch(r"-?\d+", item):
            raise TrimbertError(
                f"{option}: {item!r} among per-block heads: a bare count is for every block and stands alone "
                "(write block:count, e.g. 0:4)"
            )
        else:
            raise TrimbertError(f"{option}: unknown head selection {item!r} ({_HEADS_HELP})")
    return pairs, None


def parse_heads(
    request: int | str | Mapping[int, Any],
    num_layers: int,
    current: Mapping[int, int],
    *,
    drop_layers: Collection[int] = (),
    num_attention_heads: int | None = None,
) -> HeadSelection:
    """Resolve a heads request (see the module docstring) to what it prunes.

    ``current``: the present head count of every block present (original numbering); an int request
    applies to all of them. A mapping's values are counts or lists of head indices. ``drop_layers``:
    the removed blocks, for the error messages. Each block must keep at least one head and fewer than
    it has; named heads must exist and be distinct.
    """
    option = "--heads"
    pairs, uniform = _head_items(request, option)
    if uniform is not None:
        pairs = [(block, uniform) for block in sorted(current)]
    if not pairs:
        raise TrimbertError(f"{option}: empty head selection")
    counts: dict[int, int] = {}
    explicit: dict[int, tuple[int, ...]] = {}
    for block, value in pairs:
        if isinstance(block, bool) or not isinstance(block, int):
            raise TrimbertError(f"{option}: bad block index {block!r}")
        if block < 0:
            raise TrimbertError(f"{option}: negative block index {block}")
        if block >= num_layers:
            raise TrimbertError(f"{option}: block index {block} out of range for a {num_layers}-block model")
        if block in drop_layers or block not in current:
            raise TrimbertError(f"{option}: block {block} was removed with --drop-layers and cannot be named")
        if block in counts:
            raise TrimbertError(f"{option}: block {block} given more than once")
        have = current[block]
        if isinstance(value, (list, tuple)):
            heads = list(value)
            if not heads or not all(isinstance(head, int) and not isinstance(head, bool) for head in heads):
                raise TrimbertError(f"{option}: block {block}: expected head indices (whole numbers), got {value!r}")
            for head in heads:
                if not 0 <= head < have:
                    raise TrimbertError(
                        f"{option}: block {block} has no head {head} (its {have} heads are 0-{have - 1})"
                    )
                if heads.count(head) > 1:
                    raise TrimbertError(f"{option}: head {head} of block {block} given more than once")
            explicit[block] = tuple(sorted(heads))
            count = len(heads)
        elif isinstance(value, int) and not isinstance(value, bool):
            count = value
        else:
            raise TrimbertError(f"{option}: block {block}: expected a head count or head indices, got {value!r}")
        if count < 1:
            raise TrimbertError(f"{option}: block {block} must keep at least one head (got {count})")
        if count >= have:
            if num_attention_heads is not None and have == num_attention_heads:
                raise TrimbertError(
                    f"{option}: block {block} keeps {count} heads: must be fewer than the number of "
                    f"attention heads ({num_attention_heads})"
                )
            raise TrimbertError(
                f"{option}: block {block} keeps {count} heads: must be fewer than its current {have}"
            )
        counts[block] = count
    return HeadSelection(counts=counts, explicit=explicit)
