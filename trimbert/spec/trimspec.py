"""The trim spec: one vocabulary for the CLI, recipes, saved configs and reports.

A :class:`TrimSpec` is always *resolved*: explicit, sorted block indices and LayerNorm names, checked
against a model's depth. Users write *requests* (strings such as ``"alternate"`` or ``"half"``, whose
syntax :mod:`trimbert.spec.parse` describes); :func:`resolve_spec` turns a request into a resolved spec,
composed with the spec already applied to the model (trimming a trimmed model adds to what was done before).

Block numbering. Every block index in a spec (``drop_layers``, ``drop_ffn``, ``ffn_width``, ``heads``,
the LayerNorm names) is in the ORIGINAL model's numbering, whatever was dropped since: block 4 of a
6-block model stays "block 4" after blocks 1 and 2 are dropped, although it is then the second block
of the encoder (``encoder.layer.1``; the saved ``num_hidden_layers`` is the number of blocks actually
present, so masks and caches work unchanged). The original depth is ``num_hidden_layers +
len(drop_layers)``; :meth:`TrimSpec.kept_layers` lists the original indices of the present blocks, in
order. A dropped block's FFN, FFN width and LayerNorms cannot be named.

``drop_layers`` removes whole blocks (attention and FFN; DistilBERT-style): the encoder then runs the
remaining blocks in sequence. Dropping a block removes whatever the spec said about it (its dropped
FFN, FFN width, stripped LayerNorms). Re-dropping a dropped block is an error; dropping every block
is refused.

FFN width (``ffn_width``, TextPruner-style structured pruning): a block's FFN keeps only its ``N``
most important intermediate neurons (``1 <= N <`` its current width). The resolved spec stores the
width of every narrowed block; how neurons were chosen is provenance and goes to
``notes["ffn_width_rule"]`` (see :mod:`trimbert.model.trim`). Narrowing a narrowed block again is
allowed when the new width is smaller (neurons are chosen among the ones left); dropping the FFN of a
narrowed block forgets its width.

Attention heads (``heads``, structured head pruning): a block's self-attention keeps only ``N`` of its
heads (``1 <= N <`` its current head count; a block keeps at least one head). The resolved spec stores
the head count of every pruned block; which heads were kept is provenance: ``notes["heads_rule"]``
(``"magnitude"``, ``"scores"`` or ``"explicit"``; see :mod:`trimbert.model.trim`). Pruning a pruned
block again is allowed to fewer heads (chosen among the ones left); dropping the block forgets its
entry. The FFN of the block is unaffected.

LayerNorms (``layernorm``). Each block has two LayerNorms: ``<i>.attn`` after the attention
sub-layer and ``<i>.ffn`` after the FFN sub-layer (gone when that FFN is dropped). The embedding
LayerNorm is not an encoder LayerNorm and is never stripped.

LayerNorm replacement (``layernorm_replacement``): what stands where a stripped LayerNorm was.
``identity`` (default) passes the residual sum through; ``affine`` is a fixed per-channel map
``y = a * x + b`` fitted on calibration data (:mod:`trimbert.model.calibrate`); ``dyt`` is a Dynamic Tanh
``y = γ · tanh(α x) + β`` (Zhu et al., CVPR 2025; a learnable scalar α and per-channel γ, β, started
from the stripped LayerNorm's own weight and bias), trained by healing and fine-tuning. One replacement holds for
all stripped LayerNorms of a model: stripping more LayerNorms of a model whose stripped LayerNorms
use the other replacement is refused. With no stripped LayerNorm the replacement is ``identity``.

Attention: the name of a registered normalizer (see :mod:`trimbert.model.attention`); ``softmax`` leaves the
model's attention untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from trimbert.errors import TrimbertError

SOFTMAX = "softmax"
LN_KINDS = ("attn", "ffn")
IDENTITY = "identity"
AFFINE = "affine"
DYT = "dyt"
LN_REPLACEMENTS = (IDENTITY, AFFINE, DYT)
# The attention normalizers ``--attention`` accepts besides softmax; their formulas live in
# trimbert.model.attention, which registers exactly these names (a test checks that).
NORMALIZER_NAMES = ("relu", "relu-len", "sigmoid", "softermax", "squared-relu")
LN_NAME = re.compile(r"^(\d+)\.(attn|ffn)$")
SPEC_KEYS = (
    "drop_ffn", "attention", "layernorm", "drop_layers", "ffn_width", "heads", "layernorm_replacement", "notes"
)


def block_key(value: Any) -> Any:
    """A block index as a JSON object key: ``"3"`` -> 3 (other values, ``"03"`` or ``"3.0"`` too, are left
    for the type check)."""
    if isinstance(value, str) and re.fullmatch(r"0|[1-9][0-9]*", value):
        return int(value)
    return value


def _each_once(items: list[Any]) -> list[Any]:
    if len(set(items)) != len(items):
        raise ValueError("an entry is repeated")
    return items


# The types of a spec's values, declared once: whole numbers are ints (a bool, 1.7 or "1" is not one).
BlockIndex = Annotated[StrictInt, Field(ge=0)]
BlockList = Annotated[list[BlockIndex], AfterValidator(_each_once)]
LayerNormName = Annotated[StrictStr, Field(pattern=r"^[0-9]+\.(attn|ffn)$")]
FfnWidths = dict[Annotated[BlockIndex, BeforeValidator(block_key)], Annotated[StrictInt, Field(ge=1)]]
HeadCounts = FfnWidths  # block -> heads kept, at least 1
_EXPECTED = {
    "drop_ffn": "a list of block indices (whole numbers from 0, each once, e.g. [1, 3])",
    "drop_layers": "a list of block indices (whole numbers from 0, each once, e.g. [4, 5])",
    "layernorm": 'a list of LayerNorm names (each once, e.g. ["0.attn", "3.ffn"])',
    "ffn_width": 'an object of block -> width (whole numbers, width at least 1, e.g. {"0": 768})',
    "heads": 'an object of block -> heads kept (whole numbers, at least 1, e.g. {"0": 8})',
    "notes": "an object",
}


class _SpecData(BaseModel):
    """The types of a spec's dict form (:meth:`TrimSpec.from_dict`): a saved config's ``trim_spec``, a
    spec file's. Names must be known; block indices and widths are ints; nothing is coerced."""

    model_config = ConfigDict(extra="forbid")

    drop_ffn: BlockList = []
    attention: Literal[(SOFTMAX, *NORMALIZER_NAMES)] = SOFTMAX  # type: ignore[valid-type]
    layernorm: Annotated[list[LayerNormName], AfterValidator(_each_once)] = []
    drop_layers: BlockList = []
    ffn_width: FfnWidths = {}
    heads: HeadCounts = {}
    layernorm_replacement: Literal[LN_REPLACEMENTS] = IDENTITY  # type: ignore[valid-type]
    notes: dict[StrictStr, Any] = {}

    @model_validator(mode="after")
    def _replacement_needs_layernorms(self) -> _SpecData:
        if self.layernorm_replacement != IDENTITY and not self.layernorm:
            raise ValueError(
                f"layernorm_replacement {self.layernorm_replacement!r} stands for stripped LayerNorms, "
                "but layernorm names none"
            )
        return self


def shown(value: Any, limit: int = 80) -> str:
    """A value as JSON writes it (``true``, ``null``; what a spec file holds), shortened."""
    try:
        text = json.dumps(value, allow_nan=True, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _spec_problem(error: ValidationError, data: Mapping[str, Any], where: str | None) -> str:
    """The first problem of a spec dict as one line: ``<where>.<key>: expected ..., got <its value>``
    (``trim spec: <key>: ...`` without ``where``)."""
    first = error.errors(include_url=False)[0]
    location = first.get("loc", ())
    if not location:  # a check of several keys together
        return f"{where or 'trim spec'}: {str(first['msg']).removeprefix('Value error, ')}"
    key = str(location[0])
    if key in ("attention", "layernorm_replacement"):
        choices = available_normalizers() if key == "attention" else LN_REPLACEMENTS
        expected = f"one of {', '.join(choices)}"
    else:
        expected = _EXPECTED[key]
    name = f"{where}.{key}" if where else f"trim spec: {key}"
    return f"{name}: expected {expected}, got {shown(data.get(key))}"


@dataclass(frozen=True)
class TrimSpec:
    """A resolved trim: what has been removed or replaced in a model.

    ``drop_ffn``: sorted block indices whose FFN (intermediate dense, output dense and the LayerNorm
    after it) is removed. ``attention``: the attention normalizer. ``layernorm``: sorted names
    (``"<block>.attn"`` / ``"<block>.ffn"``) of stripped LayerNorms (the residual add stays), replaced
    by ``layernorm_replacement`` (``"identity"``, ``"affine"`` or ``"dyt"``). ``drop_layers``: sorted indices of
    whole blocks removed. ``ffn_width``: ``(block, width)`` pairs, sorted, of the FFNs narrowed to
    ``width`` intermediate neurons (a mapping is accepted and converted; :attr:`ffn_widths` gives it
    back as a dict). ``heads``: ``(block, count)`` pairs, sorted, of the self-attentions pruned to
    ``count`` heads (a mapping is accepted; :attr:`head_counts` gives the dict). Every index is in the
    original model's numbering (see the module docstring).
    ``notes``: provenance that is not structure (for example which rule chose the indices).

    Dict keys (``to_dict``/``from_dict``, the ``trim_spec`` of a saved config): ``drop_ffn``,
    ``attention``, ``layernorm`` always; ``drop_layers`` (list), ``ffn_width`` (object block -> width,
    keys as strings), ``heads`` (object block -> heads kept, keys as strings) and
    ``layernorm_replacement`` only when not the default, so the saved spec of a
    trim that uses none of them is unchanged; ``notes`` when not empty.
    """

    drop_ffn: tuple[int, ...] = ()
    attention: str = SOFTMAX
    layernorm: tuple[str, ...] = ()
    drop_layers: tuple[int, ...] = ()
    ffn_width: tuple[tuple[int, int], ...] = ()
    heads: tuple[tuple[int, int], ...] = ()
    layernorm_replacement: str = IDENTITY
    notes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name, what in (("ffn_width", "width"), ("heads", "heads kept")):
            value = getattr(self, name)
            try:
                pairs = list(value.items() if isinstance(value, Mapping) else value)
                normalized = tuple(sorted((_whole(block_key(block)), _whole(count)) for block, count in pairs))
            except (TypeError, ValueError) as error:
                raise TrimbertError(
                    f"trim spec: bad {name} {shown(value)} (expected block -> {what}, whole numbers)"
                ) from error
            object.__setattr__(self, name, normalized)

    @property
    def is_empty(self) -> bool:
        return (
            not self.drop_ffn
            and self.attention == SOFTMAX
            and not self.layernorm
            and not self.drop_layers
            and not self.ffn_width
            and not self.heads
        )

    @property
    def ffn_widths(self) -> dict[int, int]:
        """``ffn_width`` as a dict: block (original numbering) -> number of intermediate neurons kept."""
        return dict(self.ffn_width)

    @property
    def head_counts(self) -> dict[int, int]:
        """``heads`` as a dict: block (original numbering) -> number of attention heads kept."""
        return dict(self.heads)

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
        if self.heads:
            data["heads"] = {str(block): count for block, count in self.heads}
        if self.layernorm_replacement != IDENTITY:
            data["layernorm_replacement"] = self.layernorm_replacement
        if self.notes:
            data["notes"] = dict(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, where: str | None = None) -> TrimSpec:
        """The spec of its dict form (:meth:`to_dict`; None is the empty spec), validated: unknown keys,
        values of the wrong type (``[1.7]``, ``[true]``, ``{"0": 5.5}``, ``null``) and unknown names raise
        a one-line :class:`TrimbertError` naming the key (``<where>.<key>: expected ..., got ...``;
        ``where`` names the object, e.g. a spec file's ``trim_spec``). Indices are checked against a
        model's depth later (:func:`~trimbert.spec.resolve.validate_spec`, :func:`resolve_spec`)."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise TrimbertError(f"{where or 'trim spec'}: expected an object of trim keys, got {shown(data)}")
        unknown = sorted(str(key) if str(key).isidentifier() else shown(key) for key in set(data) - set(SPEC_KEYS))
        if unknown:
            prefix = f"{where}: " if where else ""
            raise TrimbertError(
                f"{prefix}unknown trim spec key(s): {', '.join(unknown)} (known: {', '.join(SPEC_KEYS)})"
            )
        try:
            valid = _SpecData(**{str(key): value for key, value in data.items()})
        except ValidationError as error:
            raise TrimbertError(_spec_problem(error, data, where)) from None
        return cls(
            drop_ffn=tuple(sorted(valid.drop_ffn)),
            attention=valid.attention,
            layernorm=tuple(sorted(valid.layernorm, key=ln_sort_key)),
            drop_layers=tuple(sorted(valid.drop_layers)),
            ffn_width=valid.ffn_width,
            heads=valid.heads,
            layernorm_replacement=valid.layernorm_replacement,
            notes=dict(valid.notes),
        )

    def summary(self) -> str:
        """A short human label, e.g. ``layers-[4-5] ffn-[1,3] ffn-width=768 heads=8 attn=relu ln-4(affine)``.

        ``untrimmed`` when empty. Mixed FFN widths read ``ffn-width=768[0-2],512[3]``, mixed head
        counts ``heads=8[0-2],4[3]``.
        """
        if self.is_empty:
            return "untrimmed"
        parts = []
        if self.drop_layers:
            parts.append(f"layers-[{compact_indices(self.drop_layers)}]")
        if self.drop_ffn:
            parts.append(f"ffn-[{compact_indices(self.drop_ffn)}]")
        if self.ffn_width:
            parts.append(f"ffn-width={_grouped(self.ffn_width)}")
        if self.heads:
            parts.append(f"heads={_grouped(self.heads)}")
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


def _grouped(pairs: tuple[tuple[int, int], ...]) -> str:
    """``((0, 8), (1, 8))`` -> ``"8"``; mixed values -> ``"8[0-2],4[3]"`` (largest value first)."""
    by_value: dict[int, list[int]] = {}
    for block, value in pairs:
        by_value.setdefault(value, []).append(block)
    if len(by_value) == 1:
        return str(next(iter(by_value)))
    groups = sorted(by_value.items(), key=lambda item: -item[0])
    return ",".join(f"{value}[{compact_indices(tuple(blocks))}]" for value, blocks in groups)


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


def ln_sort_key(name: str) -> tuple[int, int]:
    """Forward-order sort key of a LayerNorm name (``"3.attn"`` < ``"3.ffn"`` < ``"4.attn"``)."""
    match = LN_NAME.match(name)
    if not match:
        raise TrimbertError(f"bad LayerNorm name {name!r}: expected '<block>.attn' or '<block>.ffn'")
    return int(match.group(1)), LN_KINDS.index(match.group(2))


def compact_indices(indices: tuple[int, ...]) -> str:
    """``(0,1,2,3,7)`` -> ``"0-3,7"``."""
    runs: list[list[int]] = []  # [first, last] of each run of consecutive indices
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(f"{first}-{last}" if last > first else str(first) for first, last in runs)


def _whole(value: Any) -> int:
    """An int that is not a bool (a width or block index); anything else raises TypeError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not a whole number: {value!r}")
    return value


def check_replacement(name: str) -> str:
    """Return ``name`` if it is a known LayerNorm replacement, else raise a one-line error."""
    if name not in LN_REPLACEMENTS:
        raise TrimbertError(
            f"--layernorm-replacement: unknown replacement {name!r} (choose from {', '.join(LN_REPLACEMENTS)})"
        )
    return name


def available_normalizers() -> list[str]:
    """Every name ``--attention`` accepts, ``softmax`` first."""
    return [SOFTMAX, *NORMALIZER_NAMES]


def check_normalizer(name: str) -> str:
    """Return ``name`` if it is a known normalizer, else raise a one-line :class:`TrimbertError`."""
    if name != SOFTMAX and name not in NORMALIZER_NAMES:
        raise TrimbertError(
            f"--attention: unknown normalizer {name!r} (choose from {', '.join(available_normalizers())})"
        )
    return name
