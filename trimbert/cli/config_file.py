"""``--config FILE``: a command's settings from a TOML file, under the options given on the command line.

:func:`with_config` wraps a command made by :func:`trimbert.cli.options.with_options`: the file's keys
fill the groups' settings (one group's keys at the top level, the others in their own tables), each
validated by the same settings model as the flags, and a flag given on the command line wins over the
file. A problem in the file is one line naming the file, the key and the problem.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.core import ParameterSource
from typer._click.globals import get_current_context

from trimbert.cli.options import Group
from trimbert.core.settings import SettingsError, describe_problem
from trimbert.errors import TrimbertError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def read_config(path: Path, groups: dict[str | None, Group]) -> dict[str, Any]:
    """The file's values as the command's keyword arguments (``<group>__<field>``); ``groups`` maps a
    table name (None: the top level) to its group."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrimbertError(f"--config: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TrimbertError(f"--config: cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise TrimbertError(f"{path}: not valid TOML: {error}") from None
    values: dict[str, Any] = {}
    tables = [name for name in groups if name is not None]
    for name, group in groups.items():
        table = raw if name is None else raw.get(name, {})
        if not isinstance(table, dict):
            raise TrimbertError(f"{path}: {name}: expected a table, got {table!r}")
        known = [field for field, *_ in group.fields()]
        for key, value in table.items():
            if name is None and key in tables:
                continue
            if key not in known:
                where = f"{name}.{key}" if name else key
                extra = f"; tables: {', '.join(tables)}" if name is None else ""
                raise TrimbertError(f"{path}: {where}: unknown key (known: {', '.join(known)}{extra})")
            values[f"{group.param}__{key}"] = value
    return values


def with_config(groups: dict[str | None, Group], help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator over a :func:`with_options` command: adds ``--config FILE`` (see the module docstring)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        option = inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[Path | None, typer.Option("--config", help=help_text)],
        )
        parameters = [*inspect.signature(command).parameters.values(), option]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            path = kwargs.pop("config")
            if path is not None:
                context = get_current_context()
                from_file = read_config(path, groups)
                for key, value in from_file.items():
                    if context.get_parameter_source(key) in (None, ParameterSource.DEFAULT):
                        kwargs[key] = value
                for name, group in groups.items():
                    _check(path, name, group, kwargs, set(from_file))
            return command(**kwargs)

        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__
        return wrapper

    return decorate


def _check(path: Path, name: str | None, group: Group, kwargs: dict[str, Any], from_file: set[str]) -> None:
    """Validate a group's values now, so that a problem with a value from the file names the file's key."""
    values = {field: kwargs[f"{group.param}__{field}"] for field, *_ in group.fields()}
    try:
        group.source(**values)
    except SettingsError as error:
        first = error.validation.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first.get("loc") else ""
        if field and f"{group.param}__{field}" not in from_file:
            return  # a flag's own value: the command names it by its flag
        where = ".".join(part for part in (name, field) if part) or (name or "")
        raise TrimbertError(f"{path}: {where}: {describe_problem(first)}" if where else f"{path}: {describe_problem(first)}") from None
