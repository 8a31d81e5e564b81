"""Recipe files composed into one set of tables: ``base = "other.toml"``, ``unset = [...]`` and ``--set key=value``.

A recipe may start from another one::

    base = "compare-baselines.toml"            # relative to this file; its own base is followed too
    unset = ["finetune.max_train_samples"]     # keys of the base to drop (TOML has no null)

    [data]
    task = "mrpc"                              # tables are merged key by key over the base's

    [[variants]]
    name = "ffn-alternate"                     # a variant of the base by its name: merged over it;
    drop_ffn = "last:3"                        # a new name: added after the base's variants

:func:`compose` reads such a file (a cycle of bases is refused), and :func:`apply_sets` applies the
command line's ``--set finetune.epochs=2`` or ``--set variants.ffn-alternate.drop_ffn=1,3`` (dotted keys;
a variant by its name; the value is read as a TOML value, else taken as a string). :func:`dumps` writes
the composed tables back as TOML (the sweep folder's copy of the recipe). Problems are one line naming
the file (or ``--set``), the key and the problem.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trimbert.errors import TrimbertError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

NAMED = "variants"  # the array of tables merged and addressed by name


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; a missing, unreadable or invalid file is one line naming it."""
    if not path.is_file():
        raise TrimbertError(f"recipe {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise TrimbertError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise TrimbertError(f"{path}: not UTF-8 text") from None


def compose(path: Path, _chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], list[Path]]:
    """The tables of recipe ``path`` with its ``base`` (and theirs) merged under them: ``(tables, files)``,
    ``files`` being ``path`` and then every base it read."""
    raw = read_toml(path)
    base, unset = raw.pop("base", None), raw.pop("unset", None)
    if base is None:
        if unset is not None:
            raise TrimbertError(f"{path}: unset: drops keys of a base recipe: give base = \"other.toml\" too")
        return raw, [path]
    if not isinstance(base, str) or not base.strip():
        raise TrimbertError(f"{path}: base: expected the file name of another recipe, got {base!r}")
    chain = (*_chain, path.resolve())
    base_path = path.parent / base
    if base_path.resolve() in chain:
        names = " -> ".join(p.name for p in (*chain[chain.index(base_path.resolve()) :], base_path.resolve()))
        raise TrimbertError(f"{path}: base: recipes based on one another in a cycle: {names}")
    if not base_path.is_file():
        raise TrimbertError(f"{path}: base: {base_path} does not exist")
    tables, files = compose(base_path, chain)
    if unset is not None:
        if not isinstance(unset, list) or not all(isinstance(key, str) for key in unset):
            raise TrimbertError(f"{path}: unset: expected an array of dotted keys, got {unset!r}")
        for key in unset:
            _remove(tables, key, f"{path}: unset: {key}", base)
    return merge(tables, raw), [path, *files]


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged over ``base``: tables key by key, ``[[variants]]`` by name, anything else replaced."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = merge(old, value)
        elif key == NAMED and _named(old) and _named(value):
            by_name = {item["name"]: index for index, item in enumerate(old)}
            for item in value:
                if item["name"] in by_name:
                    old[by_name[item["name"]]] = merge(old[by_name[item["name"]]], item)
                else:
                    old.append(copy.deepcopy(item))
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _named(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in value)


def parse_set(text: str) -> tuple[str, Any]:
    """``"finetune.epochs=2"`` -> ``("finetune.epochs", 2)``: the value as TOML, else as a string."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise TrimbertError(f"--set {text}: expected KEY=VALUE, e.g. finetune.epochs=2")
    try:
        parsed = tomllib.loads(f"value = {value.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def apply_sets(tables: dict[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """``tables`` with every ``--set KEY=VALUE`` of ``sets`` applied in order (see the module docstring)."""
    tables = copy.deepcopy(tables)
    for text in sets:
        key, value = parse_set(text)
        parent, last = _walk(tables, key, f"--set {text}", create=True)
        parent[last] = value
    return tables


def _walk(tables: dict[str, Any], key: str, where: str, *, create: bool) -> tuple[dict[str, Any], str]:
    """The table holding dotted ``key`` and the key's last part; a variant is addressed by its name
    (which may itself hold dots)."""
    parts = key.split(".")
    current: Any = tables
    index = 0
    while index < len(parts) - 1:
        part = parts[index]
        if not isinstance(current, dict):
            raise TrimbertError(f"{where}: {'.'.join(parts[:index])} is not a table")
        if part == NAMED and _named(current.get(part)):
            names = [item["name"] for item in current[part]]
            for end in range(len(parts) - 1, index + 1, -1):  # the longest name that matches
                name = ".".join(parts[index + 1 : end])
                if name in names:
                    current, index = current[part][names.index(name)], end
                    break
            else:
                raise TrimbertError(f"{where}: no variant named {parts[index + 1]!r} (variants: {', '.join(names)})")
            continue
        if part not in current:
            if not create:
                raise TrimbertError(f"{where}: there is no {'.'.join(parts[: index + 1])}")
            current[part] = {}
        current = current[part]
        index += 1
    if not isinstance(current, dict):
        raise TrimbertError(f"{where}: {'.'.join(parts[:-1])} is not a table")
    return current, parts[-1]


def _remove(tables: dict[str, Any], key: str, where: str, base: str) -> None:
    head, _, rest = key.partition(".")
    if head == NAMED and _named(tables.get(NAMED)) and rest in [item["name"] for item in tables[NAMED]]:
        tables[NAMED] = [item for item in tables[NAMED] if item["name"] != rest]  # a whole variant
        return
    parent, last = _walk(tables, key, where, create=False)
    if last not in parent:
        raise TrimbertError(f"{where}: not a key of {base}")
    del parent[last]


def dumps(tables: dict[str, Any], header: str = "") -> str:
    """``tables`` as TOML text: plain keys first, then tables, then ``[[variants]]``."""
    lines = [f"# {line}" for line in header.splitlines()]
    arrays = {k for k, v in tables.items() if k == NAMED and v and _named(v)}
    plain = {k: v for k, v in tables.items() if not isinstance(v, dict) and k not in arrays}
    lines += [f"{_key(k)} = {_value(v)}" for k, v in plain.items()]
    for key, value in tables.items():
        if isinstance(value, dict):
            lines += ["", f"[{_key(key)}]", *(f"{_key(k)} = {_value(v)}" for k, v in value.items())]
    for key in arrays:
        for item in tables[key]:
            lines += ["", f"[[{_key(key)}]]", *(f"{_key(k)} = {_value(v)}" for k, v in item.items())]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))  # dates and times: not in recipes
