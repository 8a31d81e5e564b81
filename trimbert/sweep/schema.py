"""What a recipe may say: its tables as nested pydantic models of the CLI's own settings, checked across fields.

:class:`RecipeTables` is the whole (composed) recipe: ``seeds``, ``[model]``, ``[data]``
(:class:`~trimbert.data.source.DataSource`), ``[finetune]``, ``[bench]``, ``[export]``, ``[heal]`` and
``[[variants]]`` (:class:`VariantTable`: a name, trim keys in the CLI syntax, ``teacher`` and
``distill``, overrides of ``finetune`` and ``export``, and ``heal``, ``search`` or ``compress`` tables).
Its validators check across tables: seeds or one seed, unique names, known teachers and compress inputs
with no cycle among them (``graphlib``), a variant's overrides and heal table merged over the recipe's
and validated as one. What needs the model or the disk (trim specs, lengths, data files, corpora) is
checked by :func:`trimbert.sweep.recipe.load_recipe`. :func:`describe` names the first problem by its
key (``variants[2].drop_ffn``; array indices count from 0).
"""

from __future__ import annotations

import difflib
import graphlib
import re
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from trimbert.compress.settings import CompressSettings
from trimbert.core.settings import Settings, SettingsError, describe_problem
from trimbert.data.source import CorpusSource, DataSource
from trimbert.deploy.export import ExportSettings
from trimbert.errors import TrimbertError
from trimbert.measure.bench import BenchSettings
from trimbert.search.settings import SearchSettings
from trimbert.spec import AFFINE, TrimRequest
from trimbert.train.settings import DistillSettings, FinetuneSettings, HealSettings

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
MISSING = {
    "model": 'missing: say which checkpoint to trim, e.g. [model] source = "minilm"',
    "model.source": "missing: a hub id, a local folder or the alias minilm",
    "data": 'missing: e.g. [data] task = "sst2"',
    "variants": 'missing: add [[variants]] tables, e.g. name = "baseline"',
    "variants[].name": "missing: every variant needs a name",
}
TYPES = {"model_type": "expected a table", "dict_type": "expected a table", "list_type": "expected an array"}


def problem(key: str, text: str) -> PydanticCustomError:
    """A problem at ``key`` (dotted, relative to the value being validated; "" for the value itself)."""
    return PydanticCustomError("recipe", "{problem}", {"key": key, "problem": text})


def type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def unknown_key(name: str, known: Iterable[str]) -> str:
    known = tuple(known)
    close = difflib.get_close_matches(name, known, n=1)
    return f"unknown key (known: {', '.join(known)})" + (f"; did you mean {close[0]!r}?" if close else "")


def settings_problem(cls: type[Settings], error: ValidationError, key: str, known: Iterable[str] = ()) -> PydanticCustomError:
    """The first problem of a settings table's validation, at ``key.<field>``."""
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first.get("loc", ())]
    full = ".".join(part for part in (key, *loc) if part)
    if first["type"] == "extra_forbidden":
        return problem(full, unknown_key(loc[-1], (*cls.model_fields, *known)))
    return problem(full, describe_problem(first))


def build(cls: type[Settings], values: dict[str, Any], key: str, known: Iterable[str] = ()) -> Any:
    """A validated ``cls`` from ``values``; a problem is raised at ``key.<field>``."""
    try:
        return cls(**values)
    except SettingsError as error:
        raise settings_problem(cls, error.validation, key, known) from None


def table(cls: type[Settings]) -> Any:
    """``cls`` as a recipe table: validated by the settings model, its problems named by their keys."""

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except SettingsError as error:
            raise settings_problem(cls, error.validation, "") from None

    return Annotated[cls, WrapValidator(check)]


def _trim_value(value: Any) -> str | None:
    """A trim key as the CLI would get it; an integer or an array of block indices becomes ``"1,3,5"``."""
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # ffn_width = 768
        return str(value)
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    raise problem("", f'expected a string in the CLI syntax (e.g. "alternate"), got {type_name(value)}')


TrimValue = Annotated[str | None, BeforeValidator(_trim_value)]
Text = Annotated[StrictStr, Field(min_length=1)]


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ModelTable(Table):
    source: Text


class HealDefaults(HealSettings):
    """A recipe's ``[heal]`` table: defaults of every variant's ``heal`` (the corpus may come from either)."""

    corpus: str | None = None
    text_column: str | None = None
    corpus_config: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_steps(cls, values: Any) -> Any:  # the steps default is filled per variant, not here
        return values


class HealTable(CorpusSource, HealSettings):
    """A variant's heal: the corpus and the HealSettings, over ``[heal]``."""


class _VariantBase(Table):
    name: Text
    teacher: Text | None = None
    distill: table(DistillSettings) | None = None
    finetune: dict[str, Any] = Field(default_factory=dict)  # overrides of [finetune]
    export: dict[str, Any] | None = None  # overrides of [export]
    heal: Any = None  # true (the [heal] table) or a table over it
    search: table(SearchSettings) | None = None
    compress: dict[str, Any] | None = None  # CompressSettings and `from`
    trim_keys: ClassVar[tuple[str, ...]] = TrimRequest.keys()

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if not re.match(NAME_PATTERN, name):
            raise problem("", f"{name!r} is not a valid variant name (letters, digits, '.', '_', '+', '-'; used in folder names)")
        return name

    @field_validator("search", "compress", "heal", mode="before")
    @classmethod
    def _false_is_none(cls, value: Any) -> Any:
        return None if value is False else value

    @property
    def request(self) -> TrimRequest:
        try:
            return TrimRequest(**{key: getattr(self, key) for key in self.trim_keys if getattr(self, key) is not None})
        except TrimbertError as error:  # "--importance: unknown rule ..."
            flag, _, text = str(error).partition(": ")
            raise problem(flag.removeprefix("--").replace("-", "_"), text) from None

    @property
    def compress_settings(self) -> CompressSettings | None:
        if self.compress is None:
            return None
        return build(CompressSettings, {k: v for k, v in self.compress.items() if k != "from"}, "compress", known=("from",))

    @model_validator(mode="after")
    def _alone(self) -> _VariantBase:
        request = self.request
        if self.distill is not None and self.teacher is None:
            raise problem("distill", 'needs a teacher (teacher = "<variant>")')
        if "seed" in self.finetune:
            raise problem("finetune.seed", "set seeds for the whole recipe (seeds = [...]), not per variant")
        if self.search is not None and request.requested:
            raise problem("search", f"the search chooses the whole trim: remove {', '.join(request.to_dict())} from this variant")
        if self.search is not None and self.heal is not None:
            raise problem("search", "search and heal on one variant are not supported: heal the searched trim in a second variant")
        if self.heal is not None:
            if request.auto_count is not None:
                raise problem("heal", "drop_ffn = auto:N chooses blocks on task data while fine-tuning; heal needs a fixed trim")
            if request.layernorm_replacement == AFFINE:
                raise problem("heal", "the affine replacement is fitted on task data; heal with identity or dyt")
            if request.ranks_on_data:
                raise problem("heal", f"importance = {request.importance} ranks on task data while fine-tuning; heal needs a fixed trim")
        if self.compress is not None:
            given = [*request.to_dict(), *(k for k in ("teacher", "distill", "export", "heal", "search") if getattr(self, k) is not None)]
            given += ["finetune"] if self.finetune else []
            if given:
                raise problem("compress", f"compresses the fine-tuned model of another variant (from): remove {', '.join(given)}")
            source = self.compress.get("from")
            if source is not None and (not isinstance(source, str) or not source.strip()):
                raise problem("compress.from", f"expected a variant name, got {type_name(source)}")
            self.compress_settings  # noqa: B018 - validated here, so that the problem names the key
        return self


VariantTable = create_model(
    "VariantTable", __base__=_VariantBase, **{key: (TrimValue, None) for key in TrimRequest.keys()}
)


class RecipeTables(Table):
    """A whole recipe, validated (see the module docstring)."""

    seeds: list[StrictInt] | None = None
    model: ModelTable
    data: table(DataSource)
    finetune: table(FinetuneSettings) = Field(default_factory=FinetuneSettings)
    bench: table(BenchSettings) = Field(default_factory=BenchSettings)
    export: table(ExportSettings) | None = None
    heal: table(HealDefaults) | None = None
    variants: list[VariantTable] = Field(min_length=1)  # type: ignore[valid-type]

    @field_validator("model", mode="before")
    @classmethod
    def _model_as_text(cls, value: Any) -> Any:
        return {"source": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _across(self) -> RecipeTables:
        if "pytorch" not in self.bench.runtimes:
            raise problem("bench.runtimes", "must include pytorch (the fine-tuned model's own record)")
        if self.seeds is not None:
            if not self.seeds:
                raise problem("seeds", "expected a non-empty array of integers, got []")
            if "seed" in self.finetune.model_fields_set:
                raise problem("seeds", "give either seeds = [...] or [finetune] seed, not both")
            if len(set(self.seeds)) != len(self.seeds):
                raise problem("seeds", f"seed {next(s for s in self.seeds if self.seeds.count(s) > 1)} given more than once")
        seen: dict[str, int] = {}
        for index, variant in enumerate(self.variants):
            if variant.name in seen:
                raise problem(f"variants[{index}].name", f"duplicate variant name {variant.name!r} (also variants[{seen[variant.name]}])")
            seen[variant.name] = index
        for index, variant in enumerate(self.variants):
            self._check_variant(index, variant, seen)
        self._check_order(seen)
        return self

    def _check_variant(self, index: int, variant: Any, names: dict[str, int]) -> None:
        where = f"variants[{index}]"
        build(FinetuneSettings, {**self.finetune.to_dict(), **variant.finetune}, f"{where}.finetune")
        if variant.export is not None:
            build(ExportSettings, {**(self.export or ExportSettings()).to_dict(), **variant.export}, f"{where}.export")
        if variant.teacher is not None:
            if variant.teacher == variant.name:
                raise problem(f"{where}.teacher", f"variant {variant.name!r} cannot be its own teacher")
            _known(variant.teacher, names, f"{where}.teacher")
        if variant.heal is not None:
            variant.heal = self._heal(variant.heal, f"{where}.heal")
        if variant.teacher is not None and self.variants[names[variant.teacher]].compress is not None:
            raise problem(f"{where}.teacher", f"{variant.teacher!r} is a compress variant: distil from a fine-tuned variant")
        source = (variant.compress or {}).get("from")
        if source is not None:
            _known(source, names, f"{where}.compress.from")
            if self.variants[names[source]].compress is not None:
                raise problem(f"{where}.compress.from", f"{source!r} is a compress variant: compress a fine-tuned variant")

    def _heal(self, value: Any, where: str) -> dict[str, Any]:
        """A variant's heal table merged over ``[heal]`` (as written) and validated."""
        if value is True:
            if self.heal is None:
                raise problem(where, "heal = true needs a [heal] table (or give heal = { corpus = ..., ... })")
            value = {}
        if not isinstance(value, dict):
            raise problem(where, f"expected a table or true, got {type_name(value)}")
        defaults = self.heal.model_dump(exclude_unset=True) if self.heal is not None else {}
        merged = {**defaults, **value}
        if "corpus" not in merged:
            raise problem(f"{where}.corpus", 'missing: the unlabeled text to heal on, e.g. corpus = "../shared/glue"')
        build(HealTable, merged, where)
        return merged

    @staticmethod
    def needs(variant: Any) -> list[str]:
        """The variants ``variant`` names as its start: its teacher, or the variant it compresses (a
        compress variant without ``from`` starts from the baseline: see :attr:`trimbert.sweep.recipe.Recipe.baseline`)."""
        named = [variant.teacher, (variant.compress or {}).get("from")]
        return [name for name in named if name is not None]

    def _check_order(self, names: dict[str, int]) -> None:
        sorter = graphlib.TopologicalSorter({v.name: self.needs(v) for v in self.variants})
        try:
            sorter.prepare()
        except graphlib.CycleError as error:
            cycle = list(reversed(error.args[1]))  # student -> teacher -> ... -> student
            raise problem(f"variants[{names[cycle[0]]}].teacher", f"teacher cycle: {' -> '.join(cycle)}") from None


def _known(name: str, names: dict[str, int], key: str) -> None:
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise problem(key, f"unknown variant {name!r} (variants: {', '.join(names)}){hint}")


def describe(error: ValidationError) -> str:
    """The first problem of a recipe's validation as ``<key>: <problem>``."""
    first = error.errors(include_url=False)[0]
    loc = list(first.get("loc", ()))
    context = first.get("ctx") or {}
    if first["type"] == "recipe" and context.get("key"):
        loc += context["key"].split(".")
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    if first["type"] == "recipe":
        text = context["problem"]
    elif first["type"] == "missing":
        text = MISSING.get("".join("[]" if isinstance(p, int) else f".{p}" for p in loc).lstrip("."), "missing")
    elif first["type"] == "extra_forbidden":
        text = unknown_key(str(loc[-1]), _known_keys(loc[:-1]))
    elif first["type"] == "too_short" and loc == ["variants"]:
        text = "expected a non-empty array of tables ([[variants]])"
    elif first["type"] in TYPES:
        text = f"{TYPES[first['type']]}, got {type_name(first.get('input'))}"
    else:
        text = describe_problem(first)
    return f"{key}: {text}" if key else text


def _known_keys(loc: list[Any]) -> list[str]:
    """The keys of the table at ``loc`` (for an unknown key's message)."""
    cls: Any = RecipeTables
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = cls.model_fields[part].annotation
        inner = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if getattr(annotation, "__origin__", None) is list:
            inner = [VariantTable]
        cls = inner[0] if inner else (annotation if isinstance(annotation, type) else cls)
    return list(cls.model_fields)
