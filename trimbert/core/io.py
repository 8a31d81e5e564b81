"""Atomic file io and the conditions a measurement ran on: the one job is that a reader never sees a
half-written file and every record says what produced it.

:func:`write_bytes_atomic` / :func:`write_json_atomic` write a temporary file beside the target, fsync it
and move it into place; :func:`append_jsonl_atomic` appends one whole JSON line that :func:`read_jsonl`
reads back, skipping a line a kill tore. :func:`conditions` captures versions, device, threads, date and
the git commit (:func:`git_commit`); torch and transformers are imported only when it is called.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, and move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give what the umask allows, like other tools
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def append_jsonl_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Append one JSON line so that a reader never sees half a line.

    The line is written with a single ``write`` on a file opened in append mode and fsynced;
    readers (:func:`read_jsonl`) ignore a trailing partial line left by a crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(data, default=str) + "\n"
    with open(path, "a") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read the complete JSON lines of ``path``; a torn last line (from a kill) is skipped."""
    rows = []
    with open(path) as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit of the project checkout (or ``start``'s repository), if there is one."""
    import subprocess

    where = Path(start) if start else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def conditions(device: str | None = None, **more: Any) -> dict[str, Any]:
    """What a measurement was taken on: versions, device, threads, date, git commit, plus ``more``."""
    import datetime
    import platform

    import torch
    import transformers

    info: dict[str, Any] = {
        "trimbert": version("trimbert"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
    }
    if info["device"].startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name()
    info.update(more)
    return info
