"""Whether a checkpoint carries a trained task head, read from its config and weight names only.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from trimbert.errors import TrimbertError
from trimbert.model import checkpoint


def has_task_head(model_source: str | Path, num_labels: int, is_regression: bool) -> bool:
    """Whether ``model_source`` holds a *trained* sequence-classification head for a task with
    ``num_labels`` labels (``is_regression``: one score).

    True only if all hold: the saved architecture is a ``*ForSequenceClassification``, its label
    count equals the task's, and the saved weights contain ``classifier.weight`` (a checkpoint saved
    as a bare encoder loads with a freshly initialized head, which must not be mistaken for one).
    """
    source = checkpoint.resolve_source(model_source)
    config = checkpoint.load_config(source)
    architectures = getattr(config, "architectures", None) or []
    if not any(str(name).endswith("ForSequenceClassification") for name in architectures):
        return False
    if config.num_labels != num_labels:
        return False
    if is_regression != (
        getattr(config, "problem_type", None) == "regression" or config.num_labels == 1
    ):
        return False
    folder = checkpoint.local_dir(source)
    return folder is not None and "classifier.weight" in weight_names(Path(folder))


def weight_names(folder: Path) -> set[str]:
    """The weight names of a local checkpoint, read from its safetensors header or index, with the
    loader's guards: pickle-only folders are refused, a truncated or corrupt file is a one-line error."""
    checkpoint.check_weight_files(str(folder))
    index = folder / "model.safetensors.index.json"
    try:
        if (folder / "model.safetensors").is_file():
            with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
                return set(handle.keys())
        return set(json.loads(index.read_text()).get("weight_map", {}))
    except (OSError, ValueError, SafetensorError) as error:
        raise TrimbertError(f"{folder}: unreadable weights: {str(error).strip().splitlines()[0]}") from error
