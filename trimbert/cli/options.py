"""Typer options generated from the declared-once settings and the trim request.

:func:`with_options` adds one command-line option per field of a :class:`~trimbert.core.settings.Settings`
model or of :class:`~trimbert.spec.TrimRequest` (flag, default and help text from the field) to a
command, and hands the command one validated object per group instead of the loose values. A new
setting or trim option therefore appears in every command that takes its group, with no change here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

from trimbert.core.settings import Settings
from trimbert.spec import TrimRequest


@dataclasses.dataclass(frozen=True)
class Group:
    """The options of one settings class (or TrimRequest), handed to the command as ``param``."""

    param: str
    source: type
    include: tuple[str, ...] | None = None  # None: every field
    flags: dict[str, str] = dataclasses.field(default_factory=dict)  # field -> flag, where not the default
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # field -> command-specific default
    helps: dict[str, str] = dataclasses.field(default_factory=dict)  # field -> command-specific help

    def fields(self) -> list[tuple[str, Any, Any, str, str]]:
        """``(name, annotation, default, flag, help)`` of each option."""
        if issubclass(self.source, Settings):
            items = [
                (name, info.annotation, info.default, self.source.flag(name), info.description or "")
                for name, info in self.source.model_fields.items()
            ]
        else:  # TrimRequest
            items = [
                (item.name, str | None, None, item.metadata["flag"], item.metadata["help"])
                for item in dataclasses.fields(self.source)
            ]
        chosen = []
        for name, annotation, default, flag, help_text in items:
            if self.include is not None and name not in self.include:
                continue
            if typing.get_origin(annotation) is typing.Literal:
                annotation = str
            elif typing.get_origin(annotation) is list:  # a repeatable option; choices checked by the model
                annotation = list[str]
            chosen.append(
                (
                    name,
                    annotation,
                    self.defaults.get(name, default),
                    self.flags.get(name, flag),
                    self.helps.get(name, help_text),
                )
            )
        return chosen

    def make(self, values: dict[str, Any]) -> Any:
        if issubclass(self.source, Settings):
            flags = {name: flag for name, _, _, flag, _ in self.fields()}
            return self.source.build(values, name_of=lambda name: flags.get(name, name))
        return self.source(**values)


def trim_request(param: str = "request") -> Group:
    """The trim options (``--drop-ffn``, ``--attention``, ...), as one :class:`TrimRequest`."""
    return Group(param, TrimRequest)


def with_options(*groups: Group) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the command gets one option per field of each group, and ``param=<object>`` per group."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(func, include_extras=True)
        own = [
            inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=hints[p.name])
            for p in inspect.signature(func).parameters.values()
            if p.name not in {group.param for group in groups}
        ]
        added = []
        for group in groups:
            for name, annotation, default, flag, help_text in group.fields():
                added.append(
                    inspect.Parameter(
                        f"{group.param}__{name}",
                        inspect.Parameter.KEYWORD_ONLY,
                        default=default,
                        annotation=Annotated[annotation, typer.Option(flag, help=help_text)],
                    )
                )

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            for group in groups:
                values = {name: kwargs.pop(f"{group.param}__{name}") for name, *_ in group.fields()}
                kwargs[group.param] = group.make(values)
            return func(**kwargs)

        parameters = own + added
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        del command.__wrapped__  # typer must see the generated signature, not the function's own
        return command

    return decorate
