"""The record schema shared by fine-tune, bench, sweep and report.

One :class:`Record` is one measured variant: a fine-tune run (``kind="finetune"``), a bench run
(``kind="bench"``) or a sweep variant (``kind="sweep"``, fine-tune + evaluate + bench together).
Records are written as JSON objects (``metrics.json`` of a fine-tune run, ``--json`` output of
``bench``, one line each in a sweep's ``results.jsonl``) and read back with :func:`Record.from_dict`.
Unknown keys are kept in ``extra`` so that newer writers do not break older readers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


@dataclass
class Record:
    kind: str  # "finetune" | "bench" | "sweep"
    variant: str  # human name of the variant ("baseline", "ffn-alternate", ...)
    model: str  # source checkpoint (hub id, alias or folder)
    trim: dict[str, Any] = field(default_factory=dict)  # resolved TrimSpec.to_dict(); {} = untrimmed
    trim_summary: str = "untrimmed"  # TrimSpec.summary()
    task: str | None = None  # "sst2", ..., or a user dataset name
    metrics: dict[str, float] = field(default_factory=dict)  # {"accuracy": 0.81, "f1": ...}
    main_metric: str | None = None  # which key of `metrics` ranks variants
    params: int | None = None  # all parameters
    encoder_params: int | None = None  # parameters of the transformer blocks
    disk_bytes: int | None = None  # bytes of the saved weights
    flops_per_seq: float | None = None  # forward FLOPs of one sequence at `seq_len`
    seq_len: int | None = None
    batch_size: int | None = None
    latency_ms: float | None = None  # median forward latency of one batch
    throughput: float | None = None  # sequences per second
    train_step_ms: float | None = None  # median fwd+bwd+optimizer step of one batch
    peak_memory_bytes: int | None = None
    train_time_s: float | None = None  # fine-tune wall time
    train_samples_per_s: float | None = None
    eval_time_s: float | None = None
    seed: int | None = None
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    path: str | None = None  # where the model/run lives
    conditions: dict[str, Any] = field(default_factory=dict)  # versions, device, threads, git commit, date
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        extra = dict(known.pop("extra", {}) or {})
        extra.update({k: v for k, v in data.items() if k not in names})
        return cls(**known, extra=extra)

    @property
    def main_value(self) -> float | None:
        if self.main_metric is None:
            return None
        return self.metrics.get(self.main_metric)


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
