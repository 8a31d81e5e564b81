"""What a compress folder records (``compress.json``): the stages, the settings each depends on, and the job.

Each finished stage is kept with the fingerprint of the model, the data and the settings it and the
stages before it depended on (:data:`STAGE_SETTINGS`); a re-run keeps the finished stages up to the
first whose fingerprint changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

STATE_FILE = "compress.json"
STAGES = ("reference", "predictor", "compress", "recover", "export", "evaluate", "bench")

# The settings each stage depends on (with those of the stages before it): a re-run keeps the finished
# stages whose settings did not change and redoes the rest.
STAGE_SETTINGS = {
    "reference": ("batch_size", "seq_len", "threads", "runtime", "bench_seconds"),
    "predictor": ("probes", "seed"),
    "compress": ("speedup", "latency_ms", "method", "samples", "units", "width_multiple", "replans", "search_minutes"),
    "recover": ("recover", "heal_steps"),
    "export": (),
    "evaluate": (),
    "bench": (),
}


def used(name: str, settings: dict[str, Any]) -> bool:
    """Whether setting ``name`` counts in the fingerprints of a job with ``settings``: one that does not
    apply is left out (another ``--heal-steps`` does not redo a plain ``--recover distill``; ``--samples``
    does not redo a search), and so are ``--method retraining-free`` and ``--replans 0``, so that jobs
    written before those options existed still resume."""
    method = settings.get("method", "retraining-free")
    if name == "method":
        return method != "retraining-free"
    if name in ("samples", "width_multiple"):
        return method == "retraining-free"
    if name == "search_minutes":
        return method == "search" and settings.get("search_minutes") is not None
    if name == "replans":  # 0 is what a job did before --replans existed
        return method == "retraining-free" and settings.get("replans", 0) != 0
    if name == "heal_steps":
        return settings.get("recover") == "heal+distill"
    return True


@dataclass
class CompressJob:
    """The state of a compress folder: inputs, settings and each finished stage's results (each with
    the fingerprint of what it depended on: :meth:`stage_fingerprint`)."""

    model: str
    data: dict[str, Any]
    settings: dict[str, Any]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def inputs(self) -> str:
        """The fingerprint of the model and data: another folder's job if it differs."""
        return digest({"model": self.model, "data": self.data})

    def stage_fingerprint(self, stage: str) -> str:
        """Model, data and the settings of ``stage`` and of every stage before it (those :func:`used`)."""
        names = [name for earlier in STAGES[: STAGES.index(stage) + 1] for name in STAGE_SETTINGS[earlier]]
        settings = {name: self.settings[name] for name in names if used(name, self.settings)}
        return digest({"model": self.model, "data": self.data, "settings": settings})

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "inputs": self.inputs, "model": self.model, "data": self.data,
                "settings": self.settings, "stages": self.stages}


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
