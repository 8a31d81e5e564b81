"""Apply a :class:`~trimbert.spec.TrimSpec` to a BERT model: remove FFN sub-layers, strip LayerNorms,
select the attention normalizer. Nothing else.

Two entry points:

- :func:`apply_structure` edits the *modules* of a freshly built model in place (used by the
  TrimBert model classes when they are constructed, so that ``from_pretrained`` finds the trimmed
  structure before loading weights);
- :func:`trim` takes any loaded BERT model (trimmed or not), composes the request with what was
  already applied, builds the TrimBert counterpart on the meta device and moves the surviving
  weights over without copying them.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.spec import SOFTMAX, TrimSpec, resolve_spec, validate_spec

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("bert", "trimbert")


class DroppedFFN(nn.Module):
    """Stands where a block's FFN output sub-layer was: returns the attention sub-layer's output.

    BERT computes ``LayerNorm(W2·act(W1·h) + h)`` after attention; with the FFN dropped the block
    output is ``h`` itself (the attention sub-layer's output). No parameters.
    """

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return input_tensor


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a BERT model or of any of its task-head wrappers."""
    base = getattr(model, "base_model", model)
    try:
        return base.encoder.layer
    except AttributeError as error:
        raise TrimbertError(
            f"{type(model).__name__} has no BERT encoder (expected base_model.encoder.layer)"
        ) from error


def layernorm_module_path(name: str) -> tuple[int, str]:
    """``"3.attn"`` -> ``(3, "attention.output.LayerNorm")``; ``"3.ffn"`` -> ``(3, "output.LayerNorm")``."""
    block, kind = name.split(".")
    return int(block), "attention.output.LayerNorm" if kind == "attn" else "output.LayerNorm"


def _set_submodule(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_path, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, module)


def apply_structure(model: nn.Module, spec: TrimSpec) -> None:
    """Remove the FFNs and LayerNorms that ``spec`` names from ``model``'s blocks (in place)."""
    layers = encoder_layers(model)
    validate_spec(spec, len(layers))
    for index in spec.drop_ffn:
        layers[index].intermediate = nn.Identity()
        layers[index].output = DroppedFFN()
    for name in spec.layernorm:
        block, path = layernorm_module_path(name)
        _set_submodule(layers[block], path, nn.Identity())


def check_model_type(model_type: str | None, where: str = "") -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        place = f" in {where}" if where else ""
        raise TrimbertError(
            f"unsupported model type {model_type!r}{place}: trimbert supports BERT checkpoints "
            f"(model_type 'bert', or 'trimbert' for models it trimmed)"
        )


def applied_spec(model: nn.Module) -> TrimSpec:
    """The spec already applied to ``model`` (empty for an untrimmed BERT)."""
    check_model_type(getattr(model.config, "model_type", None))
    return TrimSpec.from_dict(getattr(model.config, "trim_spec", None))


def trim(
    model: nn.Module,
    spec: TrimSpec | None = None,
    *,
    drop_ffn: str | list[int] | tuple[int, ...] | None = None,
    attention: str | None = None,
    layernorm: str | None = None,
) -> nn.Module:
    """Trim ``model`` and return the trimmed model (a TrimBert class; ``model`` must not be used after).

    Either pass a request as strings (``drop_ffn="alternate"``, ``attention="relu"``,
    ``layernorm="half"``; see :mod:`trimbert.spec`), or a resolved ``spec`` to add. Both compose with
    whatever was applied to ``model`` before. The surviving weights are moved, not copied.
    """
    from trimbert.modeling import TrimBertConfig, trimbert_class_for

    before = applied_spec(model)
    num_layers = model.config.num_hidden_layers
    notes = dict(before.notes)
    if spec is not None:
        if drop_ffn is not None or attention is not None or layernorm is not None:
            raise TrimbertError("pass either a TrimSpec or string options to trim(), not both")
        drop_ffn = list(spec.drop_ffn) or None
        attention = None if spec.attention == SOFTMAX else spec.attention
        layernorm = ",".join(spec.layernorm) or None
        notes.update(spec.notes)
    composed = resolve_spec(num_layers, before, drop_ffn=drop_ffn, attention=attention, layernorm=layernorm)
    composed = replace(composed, notes=notes)
    if len(composed.drop_ffn) == num_layers and num_layers:
        warnings.warn(
            f"every FFN is dropped ({num_layers} of {num_layers} blocks): the encoder is attention only",
            UserWarning,
            stacklevel=2,
        )

    config_dict = model.config.to_dict()
    config_dict.pop("model_type", None)
    config_dict["trim_spec"] = composed.to_dict()
    target_class = trimbert_class_for(type(model))
    config = TrimBertConfig.from_dict(config_dict)
    config._attn_implementation = model.config._attn_implementation
    with torch.device("meta"):
        trimmed = target_class(config)
    state = model.state_dict()
    target_keys = set(trimmed.state_dict().keys())
    missing = sorted(target_keys - set(state))
    if missing:
        raise TrimbertError(
            f"cannot trim: the model lacks weights the trimmed model needs (first: {missing[0]})"
        )
    trimmed.load_state_dict({key: state[key] for key in target_keys}, strict=True, assign=True)
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
    trimmed.train(model.training)
    return trimmed


def _set_buffer(root: nn.Module, dotted: str, value: torch.Tensor) -> None:
    parent_path, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    persistent = child not in parent._non_persistent_buffers_set
    parent.register_buffer(child, value, persistent=persistent)
