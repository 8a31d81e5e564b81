"""What ``trimbert inspect`` reports: a per-block description of a (trimmed) BERT and its totals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from trimbert.measure import (
    count_parameters,
    disk_bytes,
    encoder_parameters,
    flops_per_sequence,
    weights_bytes,
)
from trimbert.spec import SOFTMAX
from trimbert.surgery import DroppedFFN, applied_spec, encoder_layers, layernorm_module_path


@dataclass
class BlockInfo:
    index: int
    ffn: str  # "kept" | "dropped"
    layernorms: list[str]  # remaining LayerNorms of the block: "attn", "ffn"
    attention: str
    params: int


@dataclass
class ModelSummary:
    source: str
    model_class: str
    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    trim: dict[str, Any]
    trim_summary: str
    params: int
    encoder_params: int
    disk_bytes: int | None
    disk_bytes_source: str  # "files" (weights files of the checkpoint) or "state_dict" (in-memory estimate)
    seq_len: int
    flops_per_seq: int
    blocks: list[BlockInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _has_layernorm(block: nn.Module, name: str) -> bool:
    _, path = layernorm_module_path(name)
    try:
        return isinstance(block.get_submodule(path), nn.LayerNorm)
    except AttributeError:
        return False


def describe_model(
    model: nn.Module, *, source: str, seq_len: int = 128, checkpoint_dir: str | None = None
) -> ModelSummary:
    """Describe ``model`` block by block; bytes on disk from ``checkpoint_dir``'s weight files if given."""
    spec = applied_spec(model)
    layers = encoder_layers(model)
    attention = (
        spec.attention if spec.attention != SOFTMAX else f"softmax ({model.config._attn_implementation})"
    )
    blocks = []
    for index, block in enumerate(layers):
        dropped = isinstance(block.output, DroppedFFN)
        remaining = [kind for kind in ("attn", "ffn") if _has_layernorm(block, f"{index}.{kind}")]
        blocks.append(
            BlockInfo(
                index=index,
                ffn="dropped" if dropped else "kept",
                layernorms=remaining,
                attention=attention,
                params=sum(parameter.numel() for parameter in block.parameters()),
            )
        )
    on_disk, how = None, "state_dict"
    if checkpoint_dir is not None and Path(checkpoint_dir).is_dir():
        on_disk, how = disk_bytes(checkpoint_dir), "files"
    else:
        on_disk = weights_bytes(model)
    return ModelSummary(
        source=source,
        model_class=type(model).__name__,
        model_type=model.config.model_type,
        num_layers=len(layers),
        hidden_size=model.config.hidden_size,
        intermediate_size=model.config.intermediate_size,
        trim=spec.to_dict() if not spec.is_empty else {},
        trim_summary=spec.summary(),
        params=count_parameters(model),
        encoder_params=encoder_parameters(model),
        disk_bytes=on_disk,
        disk_bytes_source=how,
        seq_len=seq_len,
        flops_per_seq=flops_per_sequence(model, seq_len),
        blocks=blocks,
    )
