"""The trim spec: one vocabulary for the CLI, recipes, saved configs and reports.

A :class:`TrimSpec` is always *resolved*: explicit, sorted block indices and LayerNorm names, checked
against a model's depth. Users write *requests* (strings such as ``"alternate"`` or ``"half"``);
:func:`resolve_spec` turns a request into a resolved spec, composed with the spec already applied
to the model (trimming a trimmed model adds to what was done before).

Block-selection syntax (``drop_ffn``):
    ``none``                nothing
    ``1,3,5`` ``6-11``      explicit indices and inclusive ranges, comma-separated, combinable
    ``alternate``           every second block, starting at block 1 (1, 3, 5, ...): the first block keeps its FFN
    ``first:N``             blocks 0 .. N-1
    ``last:N``              the last N blocks
    ``all``                 every block (allowed, with a warning)

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

Attention: the name of a registered normalizer (see :mod:`trimbert.attention`); ``softmax`` leaves the
model's attention untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from trimbert.errors import TrimbertError

SOFTMAX = "softmax"
LN_KINDS = ("attn", "ffn")
_LN_NAME = re.compile(r"^(\d+)\.(attn|ffn)$")


@dataclass(frozen=True)
class TrimSpec:
    """A resolved trim: what has been removed or replaced in a model.

    ``drop_ffn``: sorted block indices whose FFN (intermediate dense, output dense and the LayerNorm
    after it) is removed. ``attention``: the attention normalizer. ``layernorm``: sorted names
    (``"<block>.attn"`` / ``"<block>.ffn"``) of LayerNorms replaced by identity (the residual add stays).
    ``notes``: provenance that is not structure (for example which rule chose the indices).
    """

    drop_ffn: tuple[int, ...] = ()
    attention: str = SOFTMAX
    layernorm: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_empty(self) -> bool:
        return not self.drop_ffn and self.attention == SOFTMAX and not self.layernorm

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "drop_ffn": list(self.drop_ffn),
            "attention": self.attention,
            "layernorm": list(self.layernorm),
        }
        if self.notes:
            data["notes"] = dict(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrimSpec:
        data = dict(data or {})
        unknown = set(data) - {"drop_ffn", "attention", "layernorm", "notes"}
        if unknown:
            raise TrimbertError(f"unknown trim spec key(s): {', '.join(sorted(unknown))}")
        return cls(
            drop_ffn=tuple(sorted(int(i) for i in data.get("drop_ffn", ()))),
            attention=str(data.get("attention", SOFTMAX)),
            layernorm=tuple(sorted(data.get("layernorm", ()), key=_ln_sort_key)),
            notes=dict(data.get("notes", {})),
        )

    def summary(self) -> str:
        """A short human label, e.g. ``ffn-[1,3,5] attn=relu ln-4``; ``untrimmed`` when empty."""
        if self.is_empty:
            return "untrimmed"
        parts = []
        if self.drop_ffn:
            parts.append(f"ffn-[{_compact_indices(self.drop_ffn)}]")
        if self.attention != SOFTMAX:
            parts.append(f"attn={self.attention}")
        if self.layernorm:
            parts.append(f"ln-{len(self.layernorm)}")
        return " ".join(parts)

    def layernorms_remaining(self, num_layers: int) -> list[str]:
        """Names of the encoder LayerNorms that still exist in a model of ``num_layers`` blocks."""
        existing = encoder_layernorms(num_layers, self.drop_ffn)
        return [name for name in existing if name not in self.layernorm]


def encoder_layernorms(num_layers: int, drop_ffn: tuple[int, ...] | list[int] = ()) -> list[str]:
    """All encoder LayerNorm names of a model, in forward order, without those of dropped FFNs."""
    dropped = set(drop_ffn)
    names = []
    for block in range(num_layers):
        names.append(f"{block}.attn")
        if block not in dropped:
            names.append(f"{block}.ffn")
    return names


def _ln_sort_key(name: str) -> tuple[int, int]:
    match = _LN_NAME.match(name)
    if not match:
        raise TrimbertError(f"bad LayerNorm name {name!r}: expected '<block>.attn' or '<block>.ffn'")
    return int(match.group(1)), LN_KINDS.index(match.group(2))


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
    text: str | list[int] | tuple[int, ...], num_layers: int, *, option: str = "--drop-ffn"
) -> tuple[int, ...]:
    """Resolve a block selection (see the module docstring) to sorted explicit indices.

    Raises :class:`TrimbertError` for an unknown pattern, a negative, repeated or out-of-range index.
    """
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
        return index

    selected: list[int] = []
    for item in items:
        lowered = item.lower()
        if lowered == "none" and len(items) == 1:
            return ()
        if lowered == "all" and len(items) == 1:
            return tuple(range(num_layers))
        if lowered == "alternate" and len(items) == 1:
            return tuple(range(1, num_layers, 2))
        match = re.fullmatch(r"(first|last):(-?\d+)", lowered)
        if match and len(items) == 1:
            count = int(match.group(2))
            if not 0 < count <= num_layers:
                raise TrimbertError(
                    f"{option}: {item!r} needs 1 <= N <= {num_layers} for a {num_layers}-block model"
                )
            if match.group(1) == "first":
                return tuple(range(count))
            return tuple(range(num_layers - count, num_layers))
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
    text: str, num_layers: int, drop_ffn: tuple[int, ...], already: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """Resolve a LayerNorm selection against the LayerNorms that exist after ``drop_ffn``.

    ``already`` are LayerNorms stripped earlier; they no longer count as existing.
    Returns only the *newly* stripped names, sorted.
    """
    existing = [name for name in encoder_layernorms(num_layers, drop_ffn) if name not in already]
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


def resolve_spec(
    num_layers: int,
    applied: TrimSpec | None = None,
    *,
    drop_ffn: str | list[int] | tuple[int, ...] | None = None,
    attention: str | None = None,
    layernorm: str | None = None,
) -> TrimSpec:
    """Resolve a request against a model of ``num_layers`` blocks and compose it with ``applied``.

    ``None`` for an option means "leave as it is". Re-dropping an FFN that ``applied`` already dropped
    is an error; so is stripping a LayerNorm that is already gone.
    """
    from trimbert.attention import check_normalizer

    applied = applied or TrimSpec()
    new_drop: tuple[int, ...] = ()
    if drop_ffn is not None:
        new_drop = parse_blocks(drop_ffn, num_layers)
        again = sorted(set(new_drop) & set(applied.drop_ffn))
        if again:
            raise TrimbertError(
                f"--drop-ffn: the FFN of block {again[0]} is already dropped in this model "
                f"(already dropped: {_compact_indices(applied.drop_ffn)})"
            )
    all_drop = tuple(sorted(set(applied.drop_ffn) | set(new_drop)))
    # LayerNorms that belonged to FFNs dropped now disappear with them.
    kept_ln = tuple(name for name in applied.layernorm if name in encoder_layernorms(num_layers, all_drop))
    new_ln: tuple[str, ...] = ()
    if layernorm is not None:
        new_ln = parse_layernorm(layernorm, num_layers, all_drop, kept_ln)
    new_attention = applied.attention if attention is None else check_normalizer(attention)
    notes = dict(applied.notes)
    return replace(
        applied,
        drop_ffn=all_drop,
        attention=new_attention,
        layernorm=tuple(sorted(set(kept_ln) | set(new_ln), key=_ln_sort_key)),
        notes=notes,
    )


def validate_spec(spec: TrimSpec, num_layers: int) -> TrimSpec:
    """Check a resolved spec (e.g. read from a saved config) against a model's depth."""
    from trimbert.attention import check_normalizer

    for index in spec.drop_ffn:
        if not 0 <= index < num_layers:
            raise TrimbertError(f"trim spec: block index {index} out of range for a {num_layers}-block model")
    existing = encoder_layernorms(num_layers, spec.drop_ffn)
    for name in spec.layernorm:
        if name not in existing:
            raise TrimbertError(f"trim spec: LayerNorm {name} does not exist in this model")
    check_normalizer(spec.attention)
    return spec
