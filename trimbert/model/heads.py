"""Whether a checkpoint carries a trained task head, read from its config and weight names only.
"""

from __future__ import annotations

from pathlib import Path

import torch

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
    return folder is not None and "classifier.weight" in _weight_names(Path(folder))


def _weight_names(folder: Path) -> set[str]:
    import json

    if (folder / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
            return set(handle.keys())
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index_name).is_file():
            return set(json.loads((folder / index_name).read_text()).get("weight_map", {}))
    if (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="meta", weights_only=True, mmap=True)
        return set(state)
    return set()
