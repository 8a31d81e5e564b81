"""Settings declared once: one pydantic model gives the CLI options, the recipe keys, their
validation and their help text.

A :class:`Settings` subclass declares each setting as a field with a default, bounds and a
``description`` (the help text). ``trimbert.cli`` generates the command's options from the fields
(``--<prefix><name>``); ``trimbert.sweep.recipe`` accepts the same names as TOML keys. Every value is
validated by the model: types are strict (a string is not a number), floats must be finite (no NaN
or infinity), bounds hold. A bad value raises :class:`~trimbert.errors.TrimbertError` with one line
that names the setting the way the user wrote it (``--epochs`` on the command line,
``file.toml: finetune.epochs`` in a recipe). No torch here: this is the vocabulary layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from trimbert.errors import TrimbertError

_PHRASES = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "finite_number": "must be a finite number",
    "float_type": "expected a number",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "literal_error": "expected {expected}",
    "string_pattern_mismatch": "expected {pattern}",
    "extra_forbidden": "unknown setting",
}


class SettingsError(TrimbertError):
    """A bad setting value; keeps pydantic's details so the message can name the setting as written."""

    def __init__(self, validation: ValidationError, message: str) -> None:
        super().__init__(message)
        self.validation = validation


class Settings(BaseModel):
    """Base of declared-once settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True)
    option_prefix: ClassVar[str] = ""  # CLI flags are --<option_prefix><name with dashes>
    flags: ClassVar[dict[str, str]] = {}  # field -> flag, where not that (e.g. a repeatable option's singular)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise SettingsError(error, describe_error(error, type(self).flag)) from None

    @classmethod
    def flag(cls, name: str) -> str:
        """The command-line flag of setting ``name`` (``eval_each_epoch`` -> ``--eval-each-epoch``)."""
        return cls.flags.get(name) or "--" + cls.option_prefix + name.replace("_", "-")

    @classmethod
    def build(cls, values: Mapping[str, Any], *, name_of: Callable[[str], str] | None = None) -> Any:
        """A validated instance from ``values``; a bad value raises :class:`TrimbertError` naming it
        with ``name_of(field)`` (default: its CLI flag)."""
        try:
            return cls(**dict(values))
        except SettingsError as error:
            raise TrimbertError(describe_error(error.validation, name_of or cls.flag)) from None

    def updated(self, **changes: Any) -> Any:
        """A validated copy with ``changes`` applied."""
        return type(self).build({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_threads(threads: int | None) -> int | None:
    """A thread count no larger than :func:`available_cpus` (a field validator's check)."""
    if threads is not None and threads > (cpus := available_cpus()):
        raise ValueError(f"this machine has {cpus} CPU{'s' if cpus != 1 else ''}")
    return threads


def describe_error(error: ValidationError, name_of: Callable[[str], str]) -> str:
    """The first problem of a pydantic ``ValidationError`` as one line: ``<name>: <problem> (got X)``."""
    first = error.errors(include_url=False)[0]
    location = [str(part) for part in first.get("loc", ())]
    problem = describe_problem(first)
    # A check of several settings together has no location: it is named by the table (a recipe's
    # ``variants[1].search``), or not at all on the command line.
    where = name_of(location[0]) if location else name_of("").rstrip(".-")
    return f"{where}: {problem}" if where else problem


def describe_problem(first: Mapping[str, Any]) -> str:
    """One problem of a pydantic error list (``error.errors()[i]``) in words, without its location."""
    context = first.get("ctx") or {}
    phrase = _PHRASES.get(first["type"])
    if phrase is not None:
        try:
            problem = phrase.format(**context)
        except (KeyError, IndexError):
            problem = first["msg"]
    else:
        problem = str(first["msg"])
        problem = problem.removeprefix("Value error, ")
    got = first.get("input")
    if first.get("loc") and first["type"] != "extra_forbidden" and not isinstance(got, dict):
        problem += f", got {got!r}"
    return problem
