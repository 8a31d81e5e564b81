"""TrimRequest: what the user asked for, before it is resolved against a model.

The CLI, recipes, fine-tune, the pipeline and the surgery all carry one :class:`TrimRequest`. Its
fields are the trim options, in the CLI vocabulary of :mod:`trimbert.spec.trimspec`; each field's
metadata holds its command-line flag and help text, so the CLI options and the recipe keys are
generated from this one declaration. Some requests need data before they can be resolved
(``--drop-ffn auto:N`` is chosen by analysis, ``--layernorm-replacement affine`` is fitted);
:attr:`TrimRequest.needs_data` says so.

Adding a trim option: add a field here (with its flag and help) and resolve it in
:func:`trimbert.spec.resolve.resolve_spec`; the CLI, recipes, fine-tune, sweeps and the surgery pass
the request through unchanged (the model layer only changes if the option changes the structure).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from trimbert.errors import TrimbertError
from trimbert.spec.trimspec import AFFINE, SOFTMAX, SPEC_KEYS, TrimSpec, block_key, shown

IMPORTANCE_RULES = ("magnitude", "taylor", "fisher")
DATA_RULES = ("taylor", "fisher")  # the rules that measure on a sample of data
AUTO_RULES = ("taylor",)  # the rules that also score whole FFNs (auto:N); without one, the cut analysis
_AUTO = re.compile(r"^auto(?::(.*))?$", re.IGNORECASE)


def _option(flag: str, help_text: str) -> dict[str, str]:
    return {"flag": flag, "help": help_text}


def parse_auto(drop_ffn: str | None) -> int | None:
    """``"auto:3"`` -> 3; None for any other selection (not an auto request). ``"auto"`` without a
    whole number N raises :class:`TrimbertError`. N is checked against the model later."""
    if not isinstance(drop_ffn, str):
        return None
    match = _AUTO.match(drop_ffn.strip())
    if not match:
        return None
    text = (match.group(1) or "").strip()
    if not re.fullmatch(r"-?\d+", text):
        raise TrimbertError(
            f"--drop-ffn: {drop_ffn!r}: use auto:N with N the number of FFNs to drop (e.g. auto:3)"
        )
    return int(text)


# Besides a string in the CLI syntax, what a request value may be (ints are ints: not bools, 1.7 or "1").
_BLOCKS = TypeAdapter(list[StrictInt])
_WIDTHS = TypeAdapter(dict[Annotated[StrictInt, BeforeValidator(block_key)], StrictInt])
_HEADS = TypeAdapter(dict[Annotated[StrictInt, BeforeValidator(block_key)], StrictInt | list[StrictInt]])
_NAMES = TypeAdapter(list[StrictStr])


def _as_text(name: str, value: Any) -> str | None:
    """A request value in the CLI syntax: block lists become ``"1,3,5"``, widths ``"768"`` or
    ``"0:768,3:512"``, heads ``"8"`` or ``"0:4,3=0+2+5"`` (``{0: 4, 3: [0, 2, 5]}``); None stays None
    (leave as it is). A list item, block, width or head that is not an int (``1.7``, ``True``, ``"1"``)
    is refused rather than converted."""
    flag = f"--{name.replace('_', '-')}"
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        wanted = {
            "ffn_width": "a width or block:width pairs",
            "heads": "a head count or per-block heads",
        }.get(name, "a selection in the CLI syntax")
        raise TrimbertError(f"{flag}: expected {wanted}, not {value!r}")
    if isinstance(value, int) and name in ("drop_ffn", "drop_layers", "ffn_width", "heads"):
        return str(value)
    try:
        if isinstance(value, Mapping) and name == "ffn_width":
            return ",".join(f"{block}:{width}" for block, width in _WIDTHS.validate_python(value).items())
        if isinstance(value, Mapping) and name == "heads":
            return ",".join(
                f"{block}={'+'.join(map(str, kept))}" if isinstance(kept, list) else f"{block}:{kept}"
                for block, kept in _HEADS.validate_python(value).items()
            )
        if isinstance(value, (list, tuple)) and name in ("drop_ffn", "drop_layers"):
            return ",".join(str(item) for item in _BLOCKS.validate_python(value))
        if isinstance(value, (list, tuple)) and name == "layernorm":
            return ",".join(_NAMES.validate_python(value))
    except ValidationError:
        wanted = {
            "ffn_width": "block:width pairs of whole numbers",
            "heads": "block -> head count or list of head indices, whole numbers",
            "layernorm": "a list of LayerNorm names",
        }.get(name, "a list of whole block indices")
        raise TrimbertError(f"{flag}: expected {wanted}, not {value!r}") from None
    raise TrimbertError(f"{flag}: expected a string in the CLI syntax, not {value!r}")


class _SpecFile(BaseModel):
    """The keys of a spec file besides ``trim_spec`` (checked by :meth:`TrimSpec.from_dict`) that a trim
    reads; the others (``summary``, ``predicted_ms``, ... of ``best.json``) are provenance, not read."""

    model_config = ConfigDict(extra="ignore")

    importance: Literal[IMPORTANCE_RULES] | None = None  # type: ignore[valid-type]


@dataclass(frozen=True)
class TrimRequest:
    """A trim as the user asked for it; ``None`` for an option means "leave as it is".

    Values are kept in the CLI syntax (strings); lists of block indices, int widths and
    ``{block: width}`` mappings are accepted and converted.
    """

    drop_ffn: str | None = field(
        default=None,
        metadata=_option(
            "--drop-ffn",
            "Blocks whose FFN is removed: 1,3,5 | 6-11 | alternate | first:N | last:N | auto:N | all | none.",
        ),
    )
    attention: str | None = field(
        default=None,
        metadata=_option(
            "--attention",
            "Attention normalizer: softmax | relu | relu-len | sigmoid | softermax | squared-relu.",
        ),
    )
    layernorm: str | None = field(
        default=None,
        metadata=_option(
            "--layernorm", "LayerNorms to strip: none | half | attn | ffn | all | names like 0.attn,3.ffn."
        ),
    )
    drop_layers: str | None = field(
        default=None,
        metadata=_option(
            "--drop-layers",
            "Whole blocks to remove, DistilBERT-style (original numbering): 1,3 | 4-5 | last:N.",
        ),
    )
    ffn_width: str | None = field(
        default=None,
        metadata=_option(
            "--ffn-width",
            "Keep the N most important intermediate neurons of each remaining FFN: 768 | 0:768,3:512.",
        ),
    )
    heads: str | None = field(
        default=None,
        metadata=_option(
            "--heads",
            "Attention heads each block keeps (the rest are removed; by count, the most important by weight "
            "magnitude or --importance): "
            "8 (every block) | 0:4,3:8 (per block) | 3=0+2+5 (block 3 keeps its heads 0, 2, 5); combinable: 0:4,3=0+2+5.",
        ),
    )
    layernorm_replacement: str | None = field(
        default=None,
        metadata=_option(
            "--layernorm-replacement",
            "What replaces stripped LayerNorms: identity; affine (a per-channel map fitted on a data sample); "
            "dyt (Dynamic Tanh γ·tanh(αx)+β, learnable, started from the LayerNorm's weights).",
        ),
    )

    importance: str | None = field(
        default=None,
        metadata=_option(
            "--importance",
            "How --ffn-width, --heads N and auto:N rank what to cut: magnitude (weights only; the default of "
            "--ffn-width and --heads) | taylor (gradients on a data sample: task loss with a fine-tuned head, else "
            "hidden states) | fisher (Fisher information of neurons and heads on a data sample; not auto:N).",
        ),
    )

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            object.__setattr__(self, item.name, _as_text(item.name, getattr(self, item.name)))
        if self.importance is not None and self.importance not in IMPORTANCE_RULES:
            raise TrimbertError(
                f"--importance: unknown rule {self.importance!r} (choose from {', '.join(IMPORTANCE_RULES)})"
            )

    @classmethod
    def options(cls) -> tuple[dataclasses.Field, ...]:
        """The trim options, in resolution-independent declaration order (CLI flags, recipe keys)."""
        return dataclasses.fields(cls)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The option names, as recipe keys and keyword arguments."""
        return tuple(item.name for item in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrimRequest:
        unknown = sorted(set(data) - set(cls.keys()))
        if unknown:
            raise TrimbertError(f"unknown trim option(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_spec(cls, spec: TrimSpec, importance: str | None = None) -> TrimRequest:
        """The request that adds everything ``spec`` removed (to apply a resolved spec to a model);
        ``importance``: the rule that chooses its narrowed FFNs' neurons and its pruned blocks' heads
        (kept only when it narrows an FFN or prunes heads: a spec's heads are counts, ranked by the rule,
        as ``trimbert search`` ranked them)."""
        return cls(
            importance=importance if spec.ffn_widths or spec.head_counts else None,
            drop_ffn=list(spec.drop_ffn) or None,
            attention=None if spec.attention == SOFTMAX else spec.attention,
            layernorm=",".join(spec.layernorm) or None,
            drop_layers=list(spec.drop_layers) or None,
            ffn_width=spec.ffn_widths or None,
            heads=spec.head_counts or None,
            layernorm_replacement=spec.layernorm_replacement if spec.layernorm else None,
        )

    @classmethod
    def from_spec_file(cls, path: str | Path) -> TrimRequest:
        """The request of a spec file (``best.json`` of ``trimbert search``: a ``trim_spec`` object and the
        ``importance`` rule its narrowed FFNs and pruned heads were scored with), applied to an untrimmed model; the file
        is checked by :meth:`from_spec_data`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TrimbertError(f"--spec: {path} does not exist") from None
        except (OSError, ValueError, RecursionError) as error:
            raise TrimbertError(f"--spec: cannot read {path}: {str(error).splitlines()[0]}") from None
        return cls.from_spec_data(data, path)

    @classmethod
    def from_spec_data(cls, data: Any, path: str | Path) -> TrimRequest:
        """The request of the parsed contents ``data`` of spec file ``path``, checked as the CLI options
        are: ``trim_spec`` by :meth:`TrimSpec.from_dict` (known keys, ints that are ints, known names),
        ``importance`` one of :data:`IMPORTANCE_RULES` or null; a trim key beside ``trim_spec`` (where it
        would be ignored) is refused. A problem raises a one-line :class:`TrimbertError` naming the file
        and the key. Other keys (``summary``, ``predicted_ms``, ...) are not read."""
        if not isinstance(data, dict) or not isinstance(data.get("trim_spec"), dict):
            raise TrimbertError(f"--spec: {path} has no trim_spec object (write one with trimbert search)")
        misplaced = sorted(set(data) & set(SPEC_KEYS))
        if misplaced:
            raise TrimbertError(
                f"--spec: {path}: {misplaced[0]} is a trim_spec key: put it inside the trim_spec object"
            )
        try:
            importance = _SpecFile.model_validate(data).importance
        except ValidationError:
            raise TrimbertError(
                f"--spec: {path}: importance: expected one of {', '.join(IMPORTANCE_RULES)} or null, "
                f"got {shown(data.get('importance'))}"
            ) from None
        spec = TrimSpec.from_dict(data["trim_spec"], where=f"--spec: {path}: trim_spec")
        return cls.from_spec(spec, importance)

    def merged_with_file(self, path: str | Path | None) -> TrimRequest:
        """This request, or the one of spec file ``path`` when given (then no other trim option may be)."""
        if path is None:
            return self
        if self.requested:
            given = ", ".join(f"--{key.replace('_', '-')}" for key in self.to_dict())
            raise TrimbertError(f"--spec: the spec file says the whole trim; drop {given}")
        return TrimRequest.from_spec_file(path)

    @property
    def requested(self) -> bool:
        """Whether any option is set."""
        return any(value is not None for value in asdict(self).values())

    @property
    def auto_count(self) -> int | None:
        """N of ``drop_ffn="auto:N"``, else None."""
        return parse_auto(self.drop_ffn)

    @property
    def heads_counted(self) -> bool:
        """Whether ``heads`` prunes some block to a head count (``8``, ``0:4``), whose heads are then
        chosen by importance; heads named by index (``3=0+2+5``) are not ranked."""
        return self.heads is not None and any("=" not in part for part in self.heads.split(","))

    @property
    def ranks_units(self) -> bool:
        """Whether ``importance`` chooses neurons or heads: ``--ffn-width`` or heads by count."""
        return self.importance is not None and (self.ffn_width is not None or self.heads_counted)

    @property
    def ranks_on_data(self) -> bool:
        """Whether a data rule (:data:`DATA_RULES`: taylor, fisher) ranks something here (``auto:N``,
        ``--ffn-width``, heads by count): the trim then depends on a data sample."""
        return self.importance in DATA_RULES and (self.auto_count is not None or self.ranks_units)

    @property
    def needs_data(self) -> bool:
        """Whether resolving this request needs a sample of real text (``auto:N``, ``affine``, taylor, fisher)."""
        return self.auto_count is not None or self.layernorm_replacement == AFFINE or self.ranks_on_data

    def check_importance(self) -> None:
        """``--importance`` says how to rank FFNs, neurons or heads: refuse it when nothing is ranked,
        and a rule that cannot rank whole FFNs with ``auto:N``."""
        if self.importance is not None and self.auto_count is None and not self.ranks_units:
            raise TrimbertError(
                "--importance: only used with --ffn-width, --heads N or --drop-ffn auto:N (named heads like "
                "3=0+2+5 are not ranked)"
            )
        if self.importance is not None and self.importance not in AUTO_RULES and self.auto_count is not None:
            raise TrimbertError(
                f"--importance {self.importance}: auto:N ranks whole FFNs by data (the cut analysis, or "
                f"--importance {' or '.join(AUTO_RULES)}); {self.importance} ranks neurons and heads"
            )

    def without_auto(self) -> TrimRequest:
        """This request with ``drop_ffn="auto:N"`` removed (once the analysis has chosen the blocks)."""
        return dataclasses.replace(self, drop_ffn=None) if self.auto_count is not None else self

    def to_dict(self) -> dict[str, Any]:
        """The options that are set."""
        return {key: value for key, value in asdict(self).items() if value is not None}
