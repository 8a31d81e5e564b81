"""Plan a sweep: which units run or are skipped (fingerprints, resume) and how they split into shards.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trimbert.core import outputs
from trimbert.core.io import read_jsonl
from trimbert.errors import TrimbertError
from trimbert.report.records import Record
from trimbert.sweep.recipe import Recipe, Unit

RESULTS_FILE = "results.jsonl"
RUNS_DIR = "runs"
RECIPE_COPY = "recipe.toml"  # the recipe, kept beside its results
LOCK_FILE = ".sweep.lock"


# --------------------------------------------------------------------------------------------------
# The sweep folder


def sweep_inputs(recipe: Recipe) -> tuple[str | Path | None, ...]:
    """What a sweep reads: the recipe (and its bases), a local model, the data (files, folder or
    $TRIMBERT_GLUE_DIR) and the heal corpora. The sweep folder may hold none of them."""
    data = recipe.data
    glue = os.environ.get("TRIMBERT_GLUE_DIR") if data.task is not None and data.data_dir is None else None
    corpora = [variant.heal.get("corpus") for variant in recipe.variants if variant.heal]
    return (recipe.path, *recipe.files[1:], recipe.model, data.data_dir, data.train, data.validation, glue, *corpora)


def sweep_subject(recipe: Recipe) -> dict[str, Any]:
    """What a sweep's records are about: the model (a local one by its absolute path) and the data."""
    local = Path(recipe.model).expanduser()
    model = str(local.resolve()) if local.exists() else recipe.model
    return {"model": model, "task": recipe.task_name, "data": recipe.data.describe()}


def sweep_owner(folder: Path) -> tuple[str | None, dict[str, Any]]:
    """``(what, subject)``: ``("sweep", subject)`` for a sweep folder (the :func:`sweep_subject` and the
    recipe its marker records; for an earlier trimbert's folder, the model and task of its records, if
    any), ``("other", {})`` for another trimbert output, ``(None, {})`` for a folder trimbert did not write."""
    marker = outputs.read_marker(folder)
    if marker is None and not (folder / RESULTS_FILE).is_file() and outputs.written_by_trimbert(folder):
        marker = outputs.read_marker(folder)  # written meanwhile (the other rank of a torchrun job)
    if marker is not None:
        return ("sweep", marker) if marker.get("kind") == "sweep" else ("other", {})
    if not (folder / RESULTS_FILE).is_file():
        return ("other", {}) if outputs.written_by_trimbert(folder) and any(folder.iterdir()) else (None, {})
    try:
        rows = read_jsonl(folder / RESULTS_FILE)
    except (OSError, ValueError):
        return None, {}
    sweeps = [row for row in rows if isinstance(row, dict) and row.get("kind") == "sweep"]
    if rows and not sweeps:
        return None, {}
    if not sweeps:
        return "sweep", {}
    last = sweeps[-1]
    try:
        unit = Record.from_dict(last).sweep
    except TypeError:
        unit = None
    return "sweep", {"recipe": unit.recipe if unit else None, "model": last.get("model"), "task": last.get("task")}


def _fresh(folder: Path) -> bool:
    """Empty, or holding only what a starting sweep writes first (another process of a torchrun job)."""
    return all(
        entry.name in (LOCK_FILE, outputs.MARKER_FILE)
        or (entry.name.startswith(f".{outputs.MARKER_FILE}.") and entry.name.endswith(".tmp"))  # being written
        for entry in folder.iterdir()
    )


def _same_subject(owner: dict[str, Any], recipe: Recipe, *, legacy: bool) -> bool:
    """Whether ``recipe`` is about what the sweep folder's records are about (the same model and data:
    an edited recipe resumes, changed units rerun); an earlier trimbert recorded the model as written
    and the task only."""
    if legacy:
        return owner.get("model") in (None, recipe.model) and owner.get("task") in (None, recipe.task_name)
    subject = sweep_subject(recipe)
    return all(owner.get(key) == value for key, value in subject.items())


def check_sweep_out(recipe: Recipe, out: str | Path) -> Path:
    """Check a sweep's ``--out`` before anything is written; returns it (``~`` expanded once).

    Refused: an empty name, ``.``, ``..``, the current folder or an ancestor, a folder holding an input
    (:func:`sweep_inputs`; its own ``recipe.toml`` copy excepted), a file, a folder trimbert did not
    write (a sweep never writes its report, results and recipe copy over a user's own files), another
    trimbert output, and the sweep folder of a recipe for another model or other data (its records
    would then describe models of two recipes). The same recipe, edited or not, resumes."""
    text = str(out)
    path = outputs.output_target(text)
    resolved = path.resolve()
    copy = resolved / RECIPE_COPY
    inputs = tuple(item for item in sweep_inputs(recipe) if item is None or Path(str(item)).expanduser().resolve() != copy)
    outputs.check_not_an_input(text, resolved, inputs)
    if path.exists() or path.is_symlink():
        if not resolved.is_dir():
            raise TrimbertError(f"--out {text} exists and is not a folder")
        what, owner = sweep_owner(resolved)
        if what is None and not _fresh(resolved):
            raise TrimbertError(
                f"--out {text}: refusing to write a sweep into a folder trimbert did not write "
                f"(no {outputs.MARKER_FILE}); choose another --out"
            )
        if what == "other":
            raise TrimbertError(f"--out {text}: it holds another trimbert output, not a sweep; choose another --out")
        legacy = outputs.read_marker(resolved) is None
        if what == "sweep" and owner and not _same_subject(owner, recipe, legacy=legacy):
            raise TrimbertError(
                f"--out {text}: it holds the sweep of another recipe ({owner.get('recipe')}: {owner.get('model')} "
                f"on {owner.get('task')}); give each recipe its own --out"
            )
    outputs.check_writable_parent(text, resolved / RESULTS_FILE)
    return path


def mark_sweep_folder(recipe: Recipe, out: Path) -> None:
    """Record in ``out`` that it is a sweep folder and what its records are about (once: a resume
    keeps the first mark)."""
    if outputs.read_marker(out) is None:
        outputs.write_marker(out, kind="sweep", recipe=str(recipe.path.resolve()), **sweep_subject(recipe))


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

    A teacher and its students, a compressed variant and its compressions (per seed) form one group
    that is never split. Groups go, biggest
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
        for needed in recipe.needs(variant):
            a, b = root(variant.name), root(needed)
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
    pending = list(names)
    while pending:  # what they start from too: teachers, compressed variants (skipped when up to date)
        for needed in recipe.needs(recipe.variant(pending.pop())):
            if needed not in wanted:
                wanted.add(needed)
                pending.append(needed)
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
        accepted = recipe.fingerprints(recipe.variant(unit.variant), unit.seed)
        fingerprint = accepted[0]
        record = latest.get((unit.variant, unit.seed))
        if record is None:
            action, reason = "run", "new"
        elif force:
            action, reason = "run", "forced"
        elif record.status != "ok":
            action, reason = "run", "failed before"
        elif (record.sweep.recipe_hash if record.sweep else None) not in accepted:
            action, reason = "run", "recipe changed"
        else:
            action, reason = "skip", "up to date"
        plans.append(PlannedUnit(unit, fingerprint, action, reason))
    # A student (or a compression) that runs needs its teacher's run folder: rerun a finished teacher
    # whose folder is gone.
    by_unit = {plan.unit: plan for plan in plans}
    for plan in plans:
        for teacher in recipe.needs(recipe.variant(plan.unit.variant)) if plan.action == "run" else ():
            teacher_plan = by_unit.get(Unit(teacher, plan.unit.seed))
            folder = out / RUNS_DIR / Unit(teacher, plan.unit.seed).name
            if (
                teacher_plan is not None
                and teacher_plan.action == "skip"
                and not (folder / "metrics.json").is_file()
            ):
                teacher_plan.action, teacher_plan.reason = "run", "run folder missing (needed as a teacher)"
    return plans
