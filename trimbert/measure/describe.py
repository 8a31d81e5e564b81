"""What ``trimbert inspect`` reports: a per-block description of a (trimmed) BERT and its totals.

Blocks are listed in the ORIGINAL model's numbering, one row per original block: a block removed
with ``drop_layers`` keeps its row, marked ``layer="dropped"`` (``ffn="layer dropped"``, no
LayerNorms, 0 parameters, ``position=None``), so the table shows which original blocks remain.
``ffn`` is ``"kept"``, ``"dropped"`` or ``"width N"`` (narrowed to N intermediate neurons);
``layernorms`` lists the remaining LayerNorms (``"attn"``, ``"ffn"``) and, where a stripped
LayerNorm was replaced by a fitted affine map, ``"attn (affine)"`` / ``"ffn (affine)"``. ``heads`` is
the block's number of attention heads (fewer than the config's ``num_attention_heads`` where the
trim pruned heads; None for a dropped block).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from trimbert.measure.size import (
    count_parameters,
    disk_bytes,
    encoder_parameters,
    flops_per_sequence,
    weights_bytes,
)
from trimbert.model.structure import (
    AffineNorm,
    DroppedFFN,
    applied_spec,
    block_heads,
    encoder_layers,
    layernorm_module_path,
)
from trimbert.spec.trimspec import SOFTMAX

DROPPED_LAYER = "layer dropped"


@dataclass
class BlockInfo:
    index: int  # the block's index in the original model
    ffn: str  # "kept" | "dropped" | "width N" | "layer dropped"
    layernorms: list[str]  # remaining LayerNorms: "attn", "ffn"; affine replacements "attn (affine)", ...
    attention: str
    params: int
    layer: str = "kept"  # "kept" | "dropped" (removed with drop_layers)
    position: int | None = None  # index in encoder.layer; None for a dropped block
    ffn_width: int | None = None  # intermediate neurons of the FFN; None without FFN
    heads: int | None = None  # attention heads of the block; None for a dropped block


@dataclass
class ModelSummary:
    source: str
    model_class: str
    model_type: str
    num_layers: int  # blocks present (config.num_hidden_layers)
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
    original_num_layers: int = 0  # blocks of the model before drop_layers
    dropped_layers: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layernorm_label(block: nn.Module, kind: str) -> str | None:
    _, path = layernorm_module_path(f"0.{kind}")
    try:
        module = block.get_submodule(path)
    except AttributeError:
        return None
    if isinstance(module, nn.LayerNorm):
        return kind
    if isinstance(module, AffineNorm):
        return f"{kind} (affine)"
    return None


def describe_model(
    model: nn.Module, *, source: str, seq_len: int = 128, checkpoint_dir: str | None = None
) -> ModelSummary:
    """Describe ``model`` block by block; bytes on disk from ``checkpoint_dir``'s weight files if given."""
    spec = applied_spec(model)
    layers = encoder_layers(model)
    attention = (
        spec.attention if spec.attention != SOFTMAX else f"softmax ({model.config._attn_implementation})"
    )
    num_original = spec.original_num_layers(len(layers))
    position = {original: index for index, original in enumerate(spec.kept_layers(num_original))}
    blocks = []
    for index in range(num_original):
        if index not in position:
            blocks.append(
                BlockInfo(
                    index=index, ffn=DROPPED_LAYER, layernorms=[], attention="-", params=0, layer="dropped"
                )
            )
            continue
        block = layers[position[index]]
        dropped = isinstance(block.output, DroppedFFN)
        width = None if dropped else block.intermediate.dense.out_features
        if dropped:
            ffn = "dropped"
        elif width != model.config.intermediate_size:
            ffn = f"width {width}"
        else:
            ffn = "kept"
        labels = [_layernorm_label(block, kind) for kind in ("attn", "ffn")]
        blocks.append(
            BlockInfo(
                index=index,
                ffn=ffn,
                layernorms=[label for label in labels if label],
                attention=attention,
                params=sum(parameter.numel() for parameter in block.parameters()),
                position=position[index],
                ffn_width=width,
                heads=block_heads(block),
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
        original_num_layers=num_original,
        dropped_layers=list(spec.drop_layers),
    )
