"""What a sweep unit's result depends on, as plain JSON from the resolved settings, and its short hash.

A unit's entry (:func:`entry`) holds the model, the data, the seed and every setting of the variant
spelled out by its settings model (``model_dump``: the fine-tune settings with the variant's
overrides, the trim request, the distillation, heal, search or compress settings, the teacher's or
compressed variant's own fingerprint and, with ``bench``, the bench and export settings); not the order
of the variants nor the other variants. A default that changes therefore reruns the units it affects.
:func:`legacy_fingerprint` is the hash earlier trimbert versions recorded (the tables as written), so
that their finished sweeps still resume.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from trimbert.sweep.healing import resolved
from trimbert.train.settings import DistillSettings

Recipe = Variant = Any  # trimbert.sweep.recipe's (which imports this module)


def digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry(recipe: Recipe, variant: Variant, seed: int, *, bench: bool = True) -> dict[str, Any]:
    """What the unit (``variant``, ``seed``) depends on (see the module docstring)."""
    data: dict[str, Any] = {"model": recipe.model, "data": recipe.data_written.to_dict(), "seed": seed}
    if variant.compress is not None:  # its own stages and bench: the compressed run and the settings
        source = recipe.variant(recipe.compress_source(variant))
        return {**data, "compress": variant.compress.to_dict(), "from": fingerprint(recipe, source, seed, bench=False)}
    teacher = recipe.variant(variant.teacher) if variant.teacher else None
    data.update(
        finetune=recipe.settings_for(variant, seed).to_dict(),
        trim=variant.trim.to_dict(),
        teacher=fingerprint(recipe, teacher, seed, bench=False) if teacher else None,
    )
    if teacher is not None:
        data["distill"] = DistillSettings.build(variant.distill).to_dict()
    if variant.heal is not None:
        data["heal"] = resolved(variant.heal)
    if variant.search is not None:
        data["search"] = variant.search
    if bench:
        data["bench"] = recipe.bench.to_dict()
        export = recipe.export_for(variant)
        if export is not None:
            data["export"] = export.to_dict()
    return data


def fingerprint(recipe: Recipe, variant: Variant, seed: int, *, bench: bool = True) -> str:
    """A short hash of :func:`entry`: a record's ``sweep.recipe_hash`` (``bench=False``: of the fine-tune
    alone, kept in the run folder, so that a bench-only change re-benches without fine-tuning again)."""
    return digest(entry(recipe, variant, seed, bench=bench))


def legacy_fingerprint(recipe: Recipe, variant: Variant, seed: int, *, bench: bool = True) -> str | None:
    """The fingerprint trimbert recorded before the recipe models (the ``[data]`` table and the variant's
    table as written), or None for a compress variant (they did not exist)."""
    if variant.compress is not None:
        return None
    teacher = recipe.variant(variant.teacher) if variant.teacher else None
    data = {
        "model": recipe.model,
        "data": recipe.data_written.model_dump(include=recipe.data_written.model_fields_set),
        "finetune": recipe.settings_for(variant, seed).to_dict(),
        "variant": {k: v for k, v in variant.table.items() if k not in ("name", "teacher")},
        "teacher": legacy_fingerprint(recipe, teacher, seed, bench=False) if teacher else None,
        "seed": seed,
    }
    if variant.heal is not None:
        data["heal"] = resolved(variant.heal)
    if bench:
        data["bench"] = recipe.bench.to_dict()
        export = recipe.export_for(variant)
        if export is not None:
            data["export"] = export.to_dict()
    return digest(data)
