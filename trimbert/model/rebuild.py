"""Building a trimmed model: its TrimBert counterpart on the meta device, with the surviving weights moved in.

:func:`build_trimmed` builds the TrimBert class of a model for a resolved spec on the meta device (its
constructor gives it the trimmed structure, :func:`trimbert.model.structure.apply_structure`) and moves
the surviving weights over without copying them: each block's weights move from its position in the
source to its position in the trimmed model (``encoder.layer`` holds only the blocks present); narrowed
FFN and pruned attention weights are the only copies, a selection of rows and columns. A stripped
LayerNorm that becomes a Dynamic Tanh gets its initial ``alpha``; non-persistent buffers (position ids,
...) are taken over too.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.model.modeling import TrimBertConfig, trimbert_class_for
from trimbert.model.structure import (
    DYT_ALPHA_INIT,
    block_positions,
    encoder_layers,
    head_rows,
    head_size,
    layernorm_module_path,
)
from trimbert.spec.trimspec import TrimSpec

# "bert.encoder.layer.3.attention.self.query.weight" -> ("bert.encoder.layer.", "3", ".attention...")
_LAYER_KEY = re.compile(r"^((?:.*\.)?encoder\.layer\.)(\d+)(\..+)$")
_DYT_ALPHA = ".LayerNorm.alpha"
_FFN_IN_KEYS = (".intermediate.dense.weight", ".intermediate.dense.bias")
_FFN_OUT_WEIGHT = ".output.dense.weight"
_QKV_KEYS = tuple(f".attention.self.{name}.{kind}" for name in ("query", "key", "value") for kind in ("weight", "bias"))
_ATTENTION_OUT_WEIGHT = ".attention.output.dense.weight"


def build_trimmed(
    model: nn.Module,
    before: TrimSpec,
    composed: TrimSpec,
    selections: dict[int, torch.Tensor],
    new_affine: tuple[str, ...],
    head_selections: dict[int, torch.Tensor] | None = None,
) -> nn.Module:
    """Build the TrimBert counterpart of ``model`` on the meta device and move the surviving weights in."""
    num_layers = before.original_num_layers(len(encoder_layers(model)))
    kept = composed.kept_layers(num_layers)
    config_dict = model.config.to_dict()
    config_dict.pop("model_type", None)
    config_dict["trim_spec"] = composed.to_dict()
    config_dict["num_hidden_layers"] = len(kept)
    config = TrimBertConfig.from_dict(config_dict)
    config._attn_implementation = model.config._attn_implementation
    with torch.device("meta"):
        trimmed = trimbert_class_for(type(model))(config)
    source_position = block_positions(model)
    source_layers = encoder_layers(model)
    rows = {
        block: head_rows(heads, head_size(source_layers[source_position[block]]))
        for block, heads in (head_selections or {}).items()
    }
    affine_keys = {
        (block, f".{path}.{kind}")
        for block, path in map(layernorm_module_path, new_affine)
        for kind in ("weight", "bias")
    }
    state = model.state_dict()
    moved: dict[str, torch.Tensor] = {}
    for key, target in trimmed.state_dict().items():
        match = _LAYER_KEY.match(key)
        block, rest, source_key = None, "", key
        if match:
            prefix, position, rest = match.groups()
            block = kept[int(position)]
            source_key = f"{prefix}{source_position[block]}{rest}"
        if source_key not in state and source_key.endswith(_DYT_ALPHA):  # a LayerNorm becomes a DynamicTanh
            weight = state[source_key.removesuffix(".alpha") + ".weight"]
            moved[key] = torch.full(tuple(target.shape), DYT_ALPHA_INIT, dtype=weight.dtype, device=weight.device)
            continue
        if source_key not in state:
            raise TrimbertError(f"cannot trim: the model lacks weights the trimmed model needs (first: {key})")
        value = state[source_key]
        if block in selections:
            if rest in _FFN_IN_KEYS:
                value = value.index_select(0, selections[block].to(value.device))
            elif rest == _FFN_OUT_WEIGHT:
                value = value.index_select(1, selections[block].to(value.device))
        if block in rows:
            if rest in _QKV_KEYS:
                value = value.index_select(0, rows[block].to(value.device))
            elif rest == _ATTENTION_OUT_WEIGHT:
                value = value.index_select(1, rows[block].to(value.device))
        if (block, rest) in affine_keys:
            value = value.clone()  # overwritten by the calibration: never write into the source's tensor
        if tuple(value.shape) != tuple(target.shape):
            raise TrimbertError(
                f"cannot trim: {source_key} has shape {tuple(value.shape)}, the trimmed model needs "
                f"{tuple(target.shape)}"
            )
        moved[key] = value
    trimmed.load_state_dict(moved, strict=True, assign=True)
    _take_over_buffers(model, trimmed)
    trimmed.train(model.training)
    return trimmed


def _take_over_buffers(model: nn.Module, trimmed: nn.Module) -> None:
    # Non-persistent buffers (position ids, ...) are not in the state dict: take them over too.
    source_buffers = dict(model.named_buffers())
    for name, buffer in list(trimmed.named_buffers()):
        if buffer.is_meta and name in source_buffers:
            _set_buffer(trimmed, name, source_buffers[name])
    leftovers = [
        name for name, tensor in [*trimmed.named_parameters(), *trimmed.named_buffers()] if tensor.is_meta
    ]
    if leftovers:
        raise TrimbertError(f"cannot trim: no weights for {leftovers[0]}")
    if getattr(trimmed.config, "tie_word_embeddings", False) and hasattr(trimmed, "tie_weights"):
        trimmed.tie_weights()


def _set_buffer(root: nn.Module, dotted: str, value: torch.Tensor) -> None:
    parent_path, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    persistent = child not in parent._non_persistent_buffers_set
    parent.register_buffer(child, value, persistent=persistent)
