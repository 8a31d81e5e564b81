"""The trim spec: one vocabulary for the CLI, recipes, saved configs and reports.

A :class:`TrimSpec` is always *resolved*: explicit, sorted block indices and LayerNorm names, checked
against a model's depth. Users write *requests* (strings such as ``"alternate"`` or ``"half"``);
:func:`resolve_spec` turns a request into a resolved spec, composed with the spec already applied
to the model (trimming a trimmed model adds to what was done before).

Block numbering. Every block index in a spec (``drop_layers``, ``drop_ffn``, ``ffn_width``, the
LayerNorm names) is in the ORIGINAL model's numbering, whatever was dropped since: block 4 of a
6-block model stays "block 4" after blocks 1 and 2 are dropped, although it is then the second block
of the encoder (``encoder.layer.1``; the saved ``num_hidden_layers`` is the number of blocks actually
present, so masks and caches work unchanged). The original depth is ``num_hidden_layers +
len(drop_layers)``; :meth:`TrimSpec.kept_layers` lists the original indices of the present blocks, in
order. A dropped block's FFN, FFN width and LayerNorms cannot be named; selection patterns
(``alternate``, ``first:N``, ``all``, ...) are resolved in the original numbering and then skip the
dropped blocks, while an explicit index of a dropped block is an error.

Block-selection syntax (``drop_ffn``, ``drop_layers``):
    ``none``                nothing
    ``1,3,5`` ``6-11``      explicit indices and inclusive ranges, comma-separated, combinable
    ``alternate``           every second block, starting at block 1 (1, 3, 5, ...): the first block keeps its FFN
    ``first:N``             blocks 0 .. N-1
    ``last:N``              the last N blocks
    ``all``                 every block (allowed for ``drop_ffn``, with a warning; refused for ``drop_layers``)

``drop_layers`` removes whole blocks (attention and FFN; DistilBERT-style): the encoder then runs the
remaining blocks in sequence. Dropping a block removes whatever the spec said about it (its dropped
FFN, FFN width, stripped LayerNorms). Re-dropping a dropped block is an error; dropping every block
is refused.

FFN width (``ffn_width``, TextPruner-style structured pruning): a block's FFN keeps only its ``N``
most important intermediate neurons (``1 <= N <`` its current width). A request is an int (or
``"768"``) for every block whose FFN is kept, or per block (``{0: 768, 3: 512}`` or ``"0:768,3:512"``).
The resolved spec stores the width of every narrowed block; how neurons were chosen is provenance and
goes to ``notes["ffn_width_rule"]`` (see :mod:`trimbert.surgery`). Narrowing a narrowed block again
is allowed when the new width is smaller (neurons are chosen among the ones left); dropping the FFN
of a narrowed block forgets its width.

LayerNorm syntax (``layernorm``). Each block has two LayerNorms: ``<i>.attn`` after the attention
sub-layer and ``<i>.ffn`` after the FFN sub-layer (gone when that FFN is dropped). The embedding
LayerNorm is not an encoder LayerNorm and is never stripped.
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

LayerNorm replacement (``layernorm_replacement``): what stands where a stripped LayerNorm was.
``identity`` (default) passes the residual sum through; ``affine`` is a fixed per-channel map
``y = a * x + b`` fitted on calibration data (:mod:`trimbert.calibrate`). One replacement holds for
all stripped LayerNorms of a model: stripping more LayerNorms of a model whose stripped LayerNorms
use the other replacement is refused. With no stripped LayerNorm the replacement is ``identity``.

Attention: the name of a registered normalizer (see :mod:`trimbert.attention`); ``softmax`` leaves the
model's attention untouched.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from trimbert.errors import TrimbertError

SOFTMAX = "softmax"
LN_KINDS = ("attn", "ffn")
IDENTITY = "identity"
AFFINE = "affine"
LN_REPLACEMENTS = (IDENTITY, AFFINE)
_LN_NAME = re.compile(r"^(\d+)\.(attn|ffn)$")
_KEYS = ("drop_ffn", "attention", "layernorm", "drop_layers", "ffn_width", "layernorm_replacement", "notes")


@dataclass(frozen=True)
class TrimSpec:
    """A resolved trim: what has been removed or replaced in a model.

    ``drop_ffn``: sorted block indices whose FFN (intermediate dense, output dense and the LayerNorm
    after it) is removed. ``attention``: the attention normalizer. ``layernorm``: sorted names
    (``"<block>.attn"`` / ``"<block>.ffn"``) of stripped LayerNorms (the residual add stays), replaced
    by ``layernorm_replacement`` (``"identity"`` or ``"affine"``). ``drop_layers``: sorted indices of
    whole blocks removed. ``ffn_width``: ``(block, width)`` pairs, sorted, of the FFNs narrowed to
    ``width`` intermediate neurons (a mapping is accepted and converted; :attr:`ffn_widths` gives it
    back as a dict). Every index is in the original model's numbering (see the module docstring).
    ``notes``: provenance that is not structure (for example which rule chose the indices).

    Dict keys (``to_dict``/``from_dict``, the ``trim_spec`` of a saved config): ``drop_ffn``,
    ``attention``, ``layernorm`` always; ``drop_layers`` (list), ``ffn_width`` (object block -> width,
    keys as strings) and ``layernorm_replacement`` only when not the default, so the saved spec of a
    trim that uses none of them is unchanged; ``notes`` when not empty.
    """

    drop_ffn: tuple[int, ...] = ()
    attention: str = SOFTMAX
    layernorm: tuple[str, ...] = ()
    drop_layers: tuple[int, ...] = ()
    ffn_width: tuple[tuple[int, int], ...] = ()
    layernorm_replacement: str = IDENTITY
    notes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        widths = self.ffn_width
        pairs = widths.items() if isinstance(widths, Mapping) else widths
        try:
            normalized = tuple(sorted((int(block), int(width)) for block, width in pairs))
        except (TypeError, ValueError) as error:
            raise TrimbertError(f"trim spec: bad ffn_width {widths!r} (expected block -> width)") from error
        object.__setattr__(self, "ffn_width", normalized)

    @property
    def is_empty(self) -> bool:
        return (
            not self.drop_ffn
            and self.attention == SOFTMAX
            and not self.layernorm
            and not self.drop_layers
            and not self.ffn_width
        )

    @property
    def ffn_widths(self) -> dict[int, int]:
        """``ffn_width`` as a dict: block (original numbering) -> number of intermediate neurons kept."""
        return dict(self.ffn_width)

    def original_num_layers(self, present: int) -> int:
        """The original depth of a model that has ``present`` blocks with this spec applied."""
        return present + len(self.drop_layers)

    def kept_layers(self, num_layers: int) -> tuple[int, ...]:
        """Original indices of the blocks still present, in order (``num_layers``: the original depth)."""
        dropped = set(self.drop_layers)
        return tuple(index for index in range(num_layers) if index not in dropped)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "drop_ffn": list(self.drop_ffn),
            "attention": self.attention,
            "layernorm": list(self.layernorm),
        }
        if self.drop_layers:
            data["drop_layers"] = list(self.drop_layers)
        if self.ffn_width:
            data["ffn_width"] = {str(block): width for block, width in self.ffn_width}
        if self.layernorm_replacement != IDENTITY:
            data["layernorm_replacement"] = self.layernorm_replacement
        if self.notes:
            data["notes"] = dict(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrimSpec:
        data = dict(data or {})
        unknown = set(data) - set(_KEYS)
        if unknown:
            raise TrimbertError(f"unknown trim spec key(s): {', '.join(sorted(unknown))}")
        widths = data.get("ffn_width") or {}
        if not isinstance(widths, Mapping):
            raise TrimbertError(f"trim spec: ffn_width must map block -> width, not {widths!r}")
        return cls(
            drop_ffn=tuple(sorted(int(i) for i in data.get("drop_ffn", ()))),
            attention=str(data.get("attention", SOFTMAX)),
            layernorm=tuple(sorted(data.get("layernorm", ()), key=_ln_sort_key)),
            drop_layers=tuple(sorted(int(i) for i in data.get("drop_layers", ()))),
            ffn_width=widths,
            layernorm_replacement=str(data.get("layernorm_replacement", IDENTITY)),
            notes=dict(data.get("notes", {})),
        )

    def summary(self) -> str:
        """A short human label, e.g. ``layers-[4-5] ffn-[1,3] ffn-width=768 attn=relu ln-4(affine)``.

        ``untrimmed`` when empty. Mixed FFN widths read ``ffn-width=768[0-2],512[3]``.
        """
        if self.is_empty:
            return "untrimmed"
        parts = []
        if self.drop_layers:
            parts.append(f"layers-[{_compact_indices(self.drop_layers)}]")
        if self.drop_ffn:
            parts.append(f"ffn-[{_compact_indices(self.drop_ffn)}]")
        if self.ffn_width:
            by_width: dict[int, list[int]] = {}
            for block, width in self.ffn_width:
                by_width.setdefault(width, []).append(block)
            if len(by_width) == 1:
                parts.append(f"ffn-width={next(iter(by_width))}")
            else:
                groups = sorted(by_width.items(), key=lambda item: -item[0])
                label = ",".join(f"{width}[{_compact_indices(tuple(blocks))}]" for width, blocks in groups)
                parts.append(f"ffn-width={label}")
        if self.attention != SOFTMAX:
            parts.append(f"attn={self.attention}")
        if self.layernorm:
            suffix = "" if self.layernorm_replacement == IDENTITY else f"({self.layernorm_replacement})"
            parts.append(f"ln-{len(self.layernorm)}{suffix}")
        return " ".join(parts)

    def layernorms_remaining(self, num_layers: int) -> list[str]:
        """Names of the encoder LayerNorms that still exist in a model of ``num_layers`` original blocks."""
        existing = encoder_layernorms(num_layers, self.drop_ffn, self.drop_layers)
        return [name for name in existing if name not in self.layernorm]


def encoder_layernorms(
    num_layers: int,
    drop_ffn: tuple[int, ...] | list[int] = (),
    drop_layers: Collection[int] = (),
) -> list[str]:
    """All encoder LayerNorm names of a model, in forward order, without those of dropped FFNs and blocks."""
    dropped = set(drop_ffn)
    gone = set(drop_layers)
    names = []
    for block in range(num_layers):
        if block in gone:
            continue
        names.append(f"{block}.attn")
        if block not in dropped:
            names.append(f"{block}.ffn")
    return names


def _ln_sort_key(name: str) -> tuple[int, int]:
    match = _LN_NAME.match(name)
    if not match:
        raise TrimbertError(f"bad LayerNorm name {name!r}: expected '<block>.attn' or '<block>.ffn'")
    return int(match.group(1)), LN_KINDS.index(match.group(2))


def ln_sort_key(name: str) -> tuple[int, int]:
    """Forward-order sort key of a LayerNorm name (``"3.attn"`` < ``"3.ffn"`` < ``"4.attn"``)."""
    return _ln_sort_key(name)


def _compact_indices(indices: tuple[int, ...]) -> str:
    """``(0,1,2,3,7)`` -> ``"0-3,7"``."""
    parts: list[str] = []
    start = prev = None
    for index in indices:
        if start is None:
            start = prev = index
        elif index == prev + 1:
            prev = index
        else:
            parts.append(f"{start}-{prev}" if prev > start else str(start))
            start = prev = index
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else str(start))
    return ",".join(parts)


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
                f"(dropped blocks: {_compact_indices(tuple(sorted(gone)))})"
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
        return tuple(sorted(order[: len(existing) // 2], key=_ln_sort_key))
    if lowered == "all":
        return tuple(existing)
    if lowered in LN_KINDS:
        return tuple(n for n in existing if n.endswith("." + lowered))
    chosen = []
    for item in (part.strip() for part in text.split(",")):
        match = _LN_NAME.match(item)
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
    return tuple(sorted(chosen, key=_ln_sort_key))


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


def check_replacement(name: str) -> str:
    """Return ``name`` if it is a known LayerNorm replacement, else raise a one-line error."""
    if name not in LN_REPLACEMENTS:
        raise TrimbertError(
            f"--layernorm-replacement: unknown replacement {name!r} (choose from {', '.join(LN_REPLACEMENTS)})"
        )
    return name


def resolve_spec(
    num_layers: int,
    applied: TrimSpec | None = None,
    *,
    drop_ffn: str | list[int] | tuple[int, ...] | None = None,
    attention: str | None = None,
    layernorm: str | None = None,
    drop_layers: str | list[int] | tuple[int, ...] | None = None,
    ffn_width: int | str | Mapping[int, int] | None = None,
    layernorm_replacement: str | None = None,
    intermediate_size: int | None = None,
) -> TrimSpec:
    """Resolve a request against a model of ``num_layers`` ORIGINAL blocks and compose it with ``applied``.

    ``None`` for an option means "leave as it is". Re-dropping an FFN or a block that ``applied``
    already dropped is an error; so is stripping a LayerNorm that is already gone, or dropping every
    block. The request is resolved in this order: ``drop_layers``, ``drop_ffn``, ``ffn_width``,
    ``layernorm`` (so ``half`` counts the LayerNorms left by the drops). ``ffn_width`` needs
    ``intermediate_size`` (the width of a block not narrowed before).
    """
    from trimbert.attention import check_normalizer

    applied = applied or TrimSpec()

    new_layers: tuple[int, ...] = ()
    if drop_layers is not None:
        new_layers = parse_blocks(drop_layers, num_layers, option="--drop-layers")
        again = sorted(set(new_layers) & set(applied.drop_layers))
        if again:
            raise TrimbertError(
                f"--drop-layers: block {again[0]} is already dropped in this model "
                f"(already dropped: {_compact_indices(applied.drop_layers)})"
            )
    all_layers = tuple(sorted(set(applied.drop_layers) | set(new_layers)))
    if num_layers and len(all_layers) >= num_layers:
        raise TrimbertError(
            f"--drop-layers: cannot drop every block ({len(all_layers)} of {num_layers}); keep at least one"
        )
    gone = set(all_layers)

    # What the spec said about dropped blocks goes with them.
    kept_drop = tuple(index for index in applied.drop_ffn if index not in gone)
    new_drop: tuple[int, ...] = ()
    if drop_ffn is not None:
        new_drop = parse_blocks(drop_ffn, num_layers, dropped=gone)
        again = sorted(set(new_drop) & set(kept_drop))
        if again:
            raise TrimbertError(
                f"--drop-ffn: the FFN of block {again[0]} is already dropped in this model "
                f"(already dropped: {_compact_indices(kept_drop)})"
            )
    all_drop = tuple(sorted(set(kept_drop) | set(new_drop)))

    widths = {
        block: width for block, width in applied.ffn_width if block not in gone and block not in all_drop
    }
    if ffn_width is not None:
        if intermediate_size is None:
            raise TrimbertError("--ffn-width: the model's intermediate size is needed to resolve a width")
        current = {
            block: widths.get(block, intermediate_size)
            for block in range(num_layers)
            if block not in gone and block not in all_drop
        }
        widths.update(
            parse_ffn_width(
                ffn_width,
                num_layers,
                current,
                drop_ffn=all_drop,
                drop_layers=gone,
                intermediate_size=intermediate_size,
            )
        )

    # LayerNorms that belonged to FFNs or blocks dropped now disappear with them.
    existing = encoder_layernorms(num_layers, all_drop, gone)
    kept_ln = tuple(name for name in applied.layernorm if name in existing)
    new_ln: tuple[str, ...] = ()
    if layernorm is not None:
        new_ln = parse_layernorm(layernorm, num_layers, all_drop, kept_ln, gone)

    replacement = applied.layernorm_replacement
    if layernorm_replacement is not None:
        requested = check_replacement(layernorm_replacement)
        if kept_ln and requested != replacement:
            raise TrimbertError(
                f"--layernorm-replacement: this model's stripped LayerNorms use {replacement!r}; "
                f"cannot use {requested!r} for more (one replacement per model)"
            )
        replacement = requested
    all_ln = tuple(sorted(set(kept_ln) | set(new_ln), key=_ln_sort_key))
    if not all_ln:
        replacement = IDENTITY

    new_attention = applied.attention if attention is None else check_normalizer(attention)
    notes = dict(applied.notes)
    return replace(
        applied,
        drop_ffn=all_drop,
        attention=new_attention,
        layernorm=all_ln,
        drop_layers=all_layers,
        ffn_width=tuple(sorted(widths.items())),
        layernorm_replacement=replacement,
        notes=notes,
    )


def validate_spec(spec: TrimSpec, num_layers: int, *, intermediate_size: int | None = None) -> TrimSpec:
    """Check a resolved spec (e.g. read from a saved config) against a model's ORIGINAL depth."""
    from trimbert.attention import check_normalizer

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
    existing = encoder_layernorms(num_layers, spec.drop_ffn, gone)
    for name in spec.layernorm:
        if name not in existing:
            raise TrimbertError(f"trim spec: LayerNorm {name} does not exist in this model")
    check_replacement(spec.layernorm_replacement)
    check_normalizer(spec.attention)
    return spec
