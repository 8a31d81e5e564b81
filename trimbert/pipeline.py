"""Trimming with everything a trim may need: one entry point for ``trim``, ``finetune`` and sweeps.

Most trims are pure surgery (:func:`trimbert.trim`). Two need a sample of real text: ``--drop-ffn
auto:N`` (which FFNs matter least is measured, :mod:`trimbert.analyze`) and ``--layernorm-replacement
affine`` (the replacement maps are fitted, :mod:`trimbert.calibrate`). :func:`apply_trim` draws one
sample, uses it for both, and returns what it chose so that records can say so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from trimbert.errors import TrimbertError
from trimbert.surgery import trim

TRIM_OPTIONS = ("drop_ffn", "attention", "layernorm", "drop_layers", "ffn_width", "layernorm_replacement")


@dataclass
class TrimOptions:
    """A trim request in the CLI vocabulary (see :mod:`trimbert.spec`); None = leave as is."""

    drop_ffn: str | None = None
    attention: str | None = None
    layernorm: str | None = None
    drop_layers: str | None = None
    ffn_width: str | int | None = None
    layernorm_replacement: str | None = None

    def __post_init__(self) -> None:
        for name in ("drop_ffn", "drop_layers", "ffn_width"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, ",".join(str(item) for item in value))

    @property
    def requested(self) -> bool:
        return any(value is not None for value in asdict(self).values())

    @property
    def auto_count(self) -> int | None:
        from trimbert.analyze import parse_auto

        return parse_auto(self.drop_ffn)

    @property
    def needs_data(self) -> bool:
        return self.auto_count is not None or self.layernorm_replacement == "affine"

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def apply_trim(
    model: nn.Module,
    options: TrimOptions,
    *,
    dataset: Any = None,
    tokenizer: Any = None,
    has_head: bool = False,
    samples: int = 256,
    seed: int = 0,
    max_length: int = 128,
    batch_size: int = 32,
) -> tuple[nn.Module, dict[str, Any]]:
    """Trim ``model`` as ``options`` ask; returns the trimmed model and what data-driven steps chose.

    ``dataset``: rows of real text (a datasets split with ``text_a``/``text_b``/``label`` as
    :mod:`trimbert.data` loads them, tokenized or not) for ``auto:N`` and ``affine``; ``samples`` rows
    are drawn from it with ``seed``. ``has_head``: the model has a fine-tuned head for this data (the
    analysis then ranks FFNs by the change in task loss rather than by hidden-state similarity).
    """
    info: dict[str, Any] = {}
    if not options.requested:
        return model, info
    batches = None
    if options.needs_data:
        if dataset is None:
            raise TrimbertError(
                "--drop-ffn auto:N and --layernorm-replacement affine need text to measure on: "
                "give --task (and --data-dir) or your own --train file"
            )
        if tokenizer is None:
            raise TrimbertError("auto:N and affine calibration need the model's tokenizer")
        from trimbert.analyze import sample_batches

        batches = sample_batches(
            dataset,
            tokenizer,
            samples=samples,
            seed=seed,
            max_length=max_length,
            batch_size=batch_size,
            tokenized="input_ids" in getattr(dataset, "column_names", ()),
        )
    drop_ffn = options.drop_ffn
    if options.auto_count is not None:
        from trimbert.analyze import resolve_auto_drop

        start = time.perf_counter()
        auto = resolve_auto_drop(model, drop_ffn, batches, has_head=has_head, seed=seed)
        model = trim(model, auto)
        info["auto_drop"] = {
            **auto.notes,
            "chosen": list(auto.drop_ffn),
            "analysis_time_s": time.perf_counter() - start,
        }
        drop_ffn = None
    rest = {
        "drop_ffn": drop_ffn,
        "attention": options.attention,
        "layernorm": options.layernorm,
        "drop_layers": options.drop_layers,
        "ffn_width": options.ffn_width,
        "layernorm_replacement": options.layernorm_replacement,
    }
    if any(value is not None for value in rest.values()):
        calibration = batches if options.layernorm_replacement == "affine" else None
        model = trim(model, **rest, calibration_batches=calibration)
    if batches is not None:
        info["sample"] = {"rows": sum(len(batch["input_ids"]) for batch in batches), "seed": seed}
    return model, info
