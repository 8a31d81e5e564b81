"""Healing inside a sweep: a variant's ``heal`` table, checked, and the healed checkpoint, made once.

A recipe heals a variant with ``heal = {...}`` on the variant (or ``heal = true`` to take the recipe's
``[heal]`` table as it is; the variant's keys override ``[heal]``'s)::

    [heal]                           # optional defaults for every variant that heals
    corpus = "../shared/glue"        # required (here or on the variant): --corpus of trimbert heal
    steps = 600                      # the fields of trimbert.train.settings.HealSettings
    # text_column = "text"           # for a CSV/TSV/JSONL corpus or a Hub dataset
    # corpus_config = "wikitext-103-raw-v1"

    [[variants]]
    name = "full-trim-healed"
    drop_ffn = "alternate"
    attention = "relu"
    layernorm = "half"
    heal = { schedule = "progressive" }

Before its first unit fine-tunes, the variant's trim is applied to the recipe's model and healed from
it (:func:`trimbert.train.heal.heal`, the untrimmed model as the teacher) into
``DIR/heal/<key>/``; ``<key>`` is a hash of the model, the trim and the healing (:func:`heal_key`), so
every seed and every variant with the same trim and healing share one healed checkpoint, a finished
one is reused by later runs (resume) and shards wait for one another on a file lock. Units then
fine-tune the healed checkpoint. Their records carry the heal's cost (``Record.heal``, a
:class:`~trimbert.report.records.HealCost`: time, tokens, held-out losses): the report's "heal s" column.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from accelerate import PartialState
from filelock import FileLock

from trimbert.errors import TrimbertError
from trimbert.model import checkpoint
from trimbert.model.trim import trim as trim_model
from trimbert.report.records import HealCost, Record
from trimbert.spec import TrimRequest
from trimbert.train.heal import HEAL_FILE, heal
from trimbert.train.settings import HealSettings

HEAL_DIR = "heal"
CORPUS_KEYS = ("corpus", "text_column", "corpus_config")


def _settings_part(table: dict[str, Any]) -> dict[str, Any]:
    """A ``heal`` table's HealSettings keys (all but the corpus keys)."""
    return {key: value for key, value in table.items() if key not in CORPUS_KEYS}


def _heal_settings(table: dict[str, Any]) -> HealSettings:
    """The HealSettings of a checked ``heal`` table."""
    return HealSettings.build(_settings_part(table))


def resolved(table: dict[str, Any]) -> dict[str, Any]:
    """A checked ``heal`` table with every setting spelled out (the defaults filled in), for fingerprints:
    a heal made under an older default is not reused when the default changes."""
    return {**{k: v for k, v in table.items() if k in CORPUS_KEYS}, **_heal_settings(table).to_dict()}


def heal_key(model: str, request: TrimRequest, table: dict[str, Any]) -> str:
    """What a healed checkpoint depends on, hashed: the model, the trim and the healing (:func:`resolved`)."""
    text = json.dumps({"model": model, "trim": request.to_dict(), "heal": resolved(table)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def healed_dir(out: Path, model: str, request: TrimRequest, table: dict[str, Any]) -> Path:
    return out / HEAL_DIR / heal_key(model, request, table)


def ensure_healed(out: Path, model: str, request: TrimRequest, table: dict[str, Any]) -> tuple[Path, bool]:
    """The healed checkpoint of this trim and healing: ``(folder, reused)``. Made when missing (the
    trim applied to ``model``, healed from ``model``), else reused. One process at a time per folder."""
    folder = healed_dir(out, model, request, table)
    folder.parent.mkdir(parents=True, exist_ok=True)
    state = PartialState()
    single = state.num_processes == 1  # under torchrun every rank trains together: no lock between them
    with FileLock(str(folder) + ".lock") if single else contextlib.nullcontext():
        if (folder / HEAL_FILE).is_file():
            return folder, True
        scratch = Path(tempfile.mkdtemp(prefix=".trim-", dir=folder.parent))
        try:
            source = checkpoint.load(model, head="base")
            trimmed = trim_model(source, request)
            checkpoint.save(trimmed, scratch / "trimmed", tokenizer=checkpoint.load_tokenizer(model), force=True)
            heal(
                str(scratch / "trimmed"),
                model,
                table["corpus"],
                folder,
                settings=_heal_settings(table),
                text_column=table.get("text_column"),
                corpus_config=table.get("corpus_config"),
                force=True,
                progress=False,
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        state.wait_for_everyone()
    if not (folder / HEAL_FILE).is_file():
        raise TrimbertError(f"heal: {folder} was not written")
    return folder, False


def heal_cost(folder: Path, reused: bool) -> HealCost:
    """What a unit's record says of its heal (from the healed checkpoint's heal.json; only the folder
    when that is gone, e.g. deleted after its fine-tunes finished)."""
    try:
        healed = Record.from_dict(json.loads((folder / HEAL_FILE).read_text())).heal
    except (OSError, ValueError, TypeError):
        healed = None
    if healed is None:
        return HealCost(dir=str(folder), reused=reused)
    return HealCost(
        time_s=healed.time_s,
        tokens=healed.tokens,
        loss_before=healed.loss_before,
        loss_after=healed.loss_after,
        dir=str(folder),
        reused=reused,
    )
