"""A sweep folder kept across runs: one writer at a time, a torn last line cut, the recipe kept beside its
results, a killed fine-tune's leftovers removed and a finished fine-tune found again (see :mod:`trimbert.sweep.run`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from trimbert.core.io import write_bytes_atomic
from trimbert.errors import TrimbertError
from trimbert.report.records import Record
from trimbert.sweep.plan import LOCK_FILE, RECIPE_COPY
from trimbert.sweep.recipe import Recipe
from trimbert.train.trainer import METRICS_FILE

ENTRY_MARKER = ".sweep-entry.json"  # in a run folder: the fingerprint it was fine-tuned for


@contextlib.contextmanager
def lock(out: Path) -> Iterator[None]:
    """One sweep process per output folder (a second one would interleave the same units)."""
    held = FileLock(out / LOCK_FILE, timeout=0)
    try:
        held.acquire()
    except Timeout:
        raise TrimbertError(f"another sweep is writing to {out}; give each shard its own --out") from None
    try:
        yield
    finally:
        held.release()


def cut_torn_tail(path: Path) -> None:
    """Remove a partial last line left by a kill, so the next append starts on a fresh line."""
    if not path.is_file():
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data or data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)
        handle.flush()
        os.fsync(handle.fileno())


def copy_recipe(recipe: Recipe, out: Path) -> None:
    """Keep the recipe beside its results (replaced atomically on every run; composed from its bases and
    ``--set`` overrides, if any)."""
    write_bytes_atomic(out / RECIPE_COPY, recipe.text.encode("utf-8"))


def remove_leftovers(run_dir: Path) -> None:
    """Staging folders a killed fine-tune left beside ``run_dir`` (``.<name>.tmp-*`` / ``.old-*``)."""
    for leftover in run_dir.parent.glob(f".{run_dir.name}.*"):
        if leftover.is_dir() and re.search(r"\.(tmp|old)-", leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)


def finished_finetune(run_dir: Path, finetune_fingerprints: tuple[str, ...]) -> Record | None:
    """The fine-tune record of ``run_dir`` if it was fine-tuned for this recipe entry (the kill hit the
    bench, or only the bench settings changed)."""

    try:
        marker = json.loads((run_dir / ENTRY_MARKER).read_text())
        if marker.get("finetune_hash") not in finetune_fingerprints:
            return None
        return Record.from_dict(json.loads((run_dir / METRICS_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
