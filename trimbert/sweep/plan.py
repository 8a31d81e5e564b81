"""Plan a sweep: which units run or are skipped (fingerprints, resume) and how they split into shards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trimbert.errors import TrimbertError
from trimbert.report.records import Record, read_jsonl
from trimbert.sweep.recipe import Recipe, Unit

RESULTS_FILE = "results.jsonl"
RUNS_DIR = "runs"


# --------------------------------------------------------------------------------------------------
# Shards


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"2/4"`` -> ``(2, 4)``: the 2nd of 4 shares (1-based)."""
    if text is None or isinstance(text, tuple):
        shard = text
    else:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match:
            raise TrimbertError(f"--shard: expected I/N such as 1/4, got {text!r}")
        shard = (int(match.group(1)), int(match.group(2)))
    if shard is not None and not 1 <= shard[0] <= shard[1]:
        raise TrimbertError(f"--shard: need 1 <= I <= N, got {shard[0]}/{shard[1]}")
    return shard


def partition(recipe: Recipe, count: int) -> list[list[Unit]]:
    """Split the recipe's units into ``count`` disjoint shares that together hold every unit.

    A teacher and its students (per seed) form one group that is never split. Groups go, biggest
    first (ties by their sorted names, then seed), to the share with the fewest units so far (ties:
    the lowest). Depends only on the variants' names, teachers and the seeds, not on their order.
    Each share keeps the recipe's run order.
    """
    if count < 1:
        raise TrimbertError(f"--shard: N must be at least 1, got {count}")
    parent = {v.name: v.name for v in recipe.variants}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    for variant in recipe.variants:
        if variant.teacher is not None:
            a, b = root(variant.name), root(variant.teacher)
            parent[max(a, b)] = min(a, b)
    components: dict[str, list[str]] = {}
    for variant in recipe.variants:
        components.setdefault(root(variant.name), []).append(variant.name)
    groups = [(sorted(members), seed) for members in components.values() for seed in recipe.seeds]
    groups.sort(key=lambda group: (-len(group[0]), group[0], group[1]))
    shares: list[set[Unit]] = [set() for _ in range(count)]
    for members, seed in groups:
        target = min(range(count), key=lambda i: (len(shares[i]), i))
        shares[target].update(Unit(name, seed) for name in members)
    order = recipe.units()
    return [[unit for unit in order if unit in share] for share in shares]


# --------------------------------------------------------------------------------------------------
# Planning


@dataclass
class PlannedUnit:
    unit: Unit
    fingerprint: str
    action: str  # "run" | "skip"
    reason: str  # "new", "up to date", "recipe changed", "failed before", "forced", ...


def _latest_records(out: Path) -> dict[tuple[str, int | None], Record]:
    path = out / RESULTS_FILE
    if not path.is_file():
        return {}
    try:
        rows = read_jsonl(path)
    except ValueError as error:
        raise TrimbertError(f"corrupt line in {path}: {error}") from None
    latest: dict[tuple[str, int | None], Record] = {}
    for row in rows:
        if isinstance(row, dict) and row.get("kind") == "sweep" and "variant" in row:
            try:
                record = Record.from_dict(row)
            except TypeError:
                continue
            latest[(record.variant, record.seed)] = record
    return latest


def selected_units(recipe: Recipe, only: Iterable[str] | str | None, shard: Any) -> list[Unit]:
    shard = parse_shard(shard)
    units = partition(recipe, shard[1])[shard[0] - 1] if shard else recipe.units()
    if only is None:
        return units
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    unknown = [n for n in names if n not in recipe.names]
    if unknown:
        raise TrimbertError(
            f"--only: unknown variant(s) {', '.join(unknown)} (variants of {recipe.path}: {', '.join(recipe.names)})"
        )
    wanted = set(names)
    for name in names:  # their teachers too (they are skipped when up to date)
        teacher = recipe.variant(name).teacher
        while teacher is not None:
            wanted.add(teacher)
            teacher = recipe.variant(teacher).teacher
    return [unit for unit in units if unit.variant in wanted]


def plan_sweep(
    recipe: Recipe,
    out: str | Path,
    *,
    only: Iterable[str] | str | None = None,
    shard: str | tuple[int, int] | None = None,
    force: bool = False,
) -> list[PlannedUnit]:
    """What :func:`run_sweep` would do with each selected unit, in run order (reads ``out`` only)."""
    out = Path(out)
    latest = _latest_records(out)
    plans = []
    for unit in selected_units(recipe, only, shard):
        fingerprint = recipe.fingerprint(recipe.variant(unit.variant), unit.seed)
        record = latest.get((unit.variant, unit.seed))
        if record is None:
            action, reason = "run", "new"
        elif force:
            action, reason = "run", "forced"
        elif record.status != "ok":
            action, reason = "run", "failed before"
        elif record.extra.get("recipe_hash") != fingerprint:
            action, reason = "run", "recipe changed"
        else:
            action, reason = "skip", "up to date"
        plans.append(PlannedUnit(unit, fingerprint, action, reason))
    # A student that runs needs its teacher's run folder: rerun a finished teacher whose folder is gone.
    by_unit = {plan.unit: plan for plan in plans}
    for plan in plans:
        teacher = recipe.variant(plan.unit.variant).teacher
        if plan.action == "run" and teacher is not None:
            teacher_plan = by_unit.get(Unit(teacher, plan.unit.seed))
            folder = out / RUNS_DIR / Unit(teacher, plan.unit.seed).name
            if (
                teacher_plan is not None
                and teacher_plan.action == "skip"
                and not (folder / "metrics.json").is_file()
            ):
                teacher_plan.action, teacher_plan.reason = "run", "run folder missing (needed as a teacher)"
    return plans
