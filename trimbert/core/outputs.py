"""Output paths and atomic output folders: the one job is that no command ever destroys what trimbert
did not write, nor leaves a half-written output that looks complete.

Outputs are written to a temporary folder beside the destination and moved into place at the end
(:func:`atomic_output_dir`), so an interrupted or failed run never leaves a half-written output, and an
existing folder replaced with ``--force`` is only removed once the new one is complete. Every folder
written so gets a marker (:data:`MARKER_FILE`), and ``--force`` replaces only a folder trimbert wrote
(the marker, an empty folder, or an earlier version's recognizable output), never anything else. Output
paths are checked before any work (:func:`check_output_dir`, :func:`check_output_path`): an existing one
needs ``--force``, the current folder, one of its ancestors, an input or a folder holding one is
refused, and the parent must be a folder one can write in (tried). OS errors writing an output are
one-line errors; staging folders a killed run left are removed by the next run
(:func:`remove_stale_staging`). Files and folders get the permissions the umask gives
(:func:`fix_permissions`). No torch, no transformers: every layer may use it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import importlib.metadata
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

from trimbert.core.io import write_json_atomic
from trimbert.errors import TrimbertError

# Written into every folder trimbert writes (atomic_output_dir, sweeps, reports): --force replaces only such a folder.
MARKER_FILE = ".trimbert.json"
_RECORD_KINDS = ("finetune", "bench", "sweep", "heal")
_MAX_RECOGNIZED_BYTES = 64 * 2**20  # a bigger JSON file is not read to recognize it
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
# The rest of a staging folder's name after ".NAME.": whose run it is (see _staging_prefix).
_STAGING = re.compile(r"(?:tmp|old)-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-[a-z0-9_]+")
# The config key of a trim saved as plain BERT (trimbert.model.structure.STOCK_SPEC_KEY; a test keeps them equal).
_STOCK_SPEC_KEY = "trimbert_trim_spec"


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
    if isinstance(config, dict) and (config.get("model_type") == "trimbert" or _STOCK_SPEC_KEY in config):
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
    # atomic: another process (a torchrun job's other rank) never reads half a marker
    write_json_atomic(Path(folder) / MARKER_FILE, marker(command, **more))


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
