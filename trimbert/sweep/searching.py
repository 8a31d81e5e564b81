"""Searching inside a sweep: a variant whose trim is found by ``trimbert search``, once for all its seeds.

A variant ``search = { speedup = 1.5 }`` (any fields of :class:`trimbert.search.settings.SearchSettings`,
e.g. ``runtime``, ``batch_size``, ``seq_len``, ``threads``, ``budget_minutes``) has no trim keys of its
own: before its first unit fine-tunes, :func:`trimbert.search.run.search` searches the recipe's model
on the recipe's data, with the variant's fine-tune settings of the first seed for the one-shot
super-model, into ``DIR/search/<key>/`` (``<key>``: a hash of the model, the data, those settings and the
search table), and every unit fine-tunes the chosen trim (``best.json``, with its ``--importance`` rule).
A finished search is reused by later runs (resume); shards wait for one another on a file lock. Latency
predictors are cached in ``DIR/search/cache``. Records carry ``Record.search`` (a
:class:`~trimbert.report.records.SearchCost`: the folder, the time of all phases, the predicted
speed-up and estimate of the chosen trim).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from accelerate import PartialState
from filelock import FileLock

from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.report.records import SearchCost
from trimbert.search.outputs import BEST_FILE, SEARCH_FILE
from trimbert.search.run import search
from trimbert.search.settings import SearchSettings
from trimbert.spec import TrimRequest
from trimbert.train.settings import FinetuneSettings

SEARCH_DIR = "search"


def search_key(model: str, data: DataSource, finetune: FinetuneSettings, table: dict[str, Any]) -> str:
    """What a sweep's search depends on, hashed: model, data, super-model fine-tune settings, search table."""
    text = json.dumps(
        {"model": model, "data": data.to_dict(), "finetune": finetune.to_dict(), "search": table}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_searched(
    out: Path, model: str, data: DataSource, finetune: FinetuneSettings, table: dict[str, Any]
) -> tuple[Path, TrimRequest, bool]:
    """The search folder, the trim request it chose and whether it was reused (made when missing)."""
    folder = out / SEARCH_DIR / search_key(model, data, finetune, table)
    folder.parent.mkdir(parents=True, exist_ok=True)
    state = PartialState()
    single = state.num_processes == 1
    with FileLock(str(folder) + ".lock") if single else contextlib.nullcontext():
        reused = (folder / BEST_FILE).is_file()
        if not reused and state.is_main_process:
            search(
                model, data, folder, settings=SearchSettings.build(table), finetune=finetune,
                cache_dir=out / SEARCH_DIR / "cache", force=True,
            )
        state.wait_for_everyone()
    if not (folder / BEST_FILE).is_file():
        raise TrimbertError(f"search: {folder} was not written")
    return folder, TrimRequest.from_spec_file(folder / BEST_FILE), reused


def search_cost(folder: Path, reused: bool) -> SearchCost:
    """What a unit's record says of its variant's search (from search.json; only the folder when that
    is gone or unreadable)."""
    try:
        data = json.loads((folder / SEARCH_FILE).read_text())
    except (OSError, ValueError):
        return SearchCost(dir=str(folder), reused=reused)
    best = data["best"]
    return SearchCost(
        dir=str(folder),
        time_s=sum(data["phases_s"].values()),
        target_speedup=data["target_speedup"],
        predicted_speedup=best["predicted_speedup"],
        estimate=best["estimate"] if best.get("final_estimate") is None else best["final_estimate"],
        reused=reused,
    )
