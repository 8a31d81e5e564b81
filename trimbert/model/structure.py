"""The trimmed structure of a BERT model: dropped FFNs, narrowed FFNs, pruned attention heads, stripped LayerNorms.

:func:`apply_structure` edits the modules of a freshly built model in place so that they match a
resolved :class:`~trimbert.spec.TrimSpec` (the TrimBert model classes call it when constructed, so
``from_pretrained`` finds exactly the saved weights). The helpers map original block indices to
positions in ``encoder.layer`` (whole blocks may be dropped) and LayerNorm names to modules
(ranking the neurons and heads is :mod:`trimbert.model.ranking`'s job). :func:`applied_spec` reads the spec a model carries.

A dropped FFN becomes :class:`DroppedFFN` (the block returns its attention sub-layer's output); a
narrowed FFN gets smaller ``Linear`` layers; a self-attention pruned to ``n`` heads of size ``d`` gets
``query``/``key``/``value`` ``Linear(H, n·d)`` and ``attention.output.dense`` ``Linear(n·d, H)``, and its
``num_attention_heads``/``all_head_size`` attributes say ``n``/``n·d`` (BERT's attention reshapes with
``-1`` heads, so the forward pass needs nothing else); a stripped LayerNorm becomes ``nn.Identity``, an
:class:`AffineNorm` or a :class:`DynamicTanh` at the LayerNorm's own attribute, so state-dict keys stay
the LayerNorm's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.spec.resolve import validate_spec
from trimbert.spec.trimspec import AFFINE, DYT, TrimSpec

SUPPORTED_MODEL_TYPES = ("bert", "trimbert")
# A trim that stock BERT can describe is saved as plain BERT (trimbert.model.portable); its config.json
# records the trim under these keys, which only trimbert reads (transformers keeps them as attributes).
STOCK_SPEC_KEY = "trimbert_trim_spec"
STOCK_WIDTH_KEY = "trimbert_intermediate_size"  # the intermediate size before the FFNs were narrowed
DYT_ALPHA_INIT = 1.0  # DynamicTanh's alpha when a trim creates one (the LayerNorm inputs' std is ~0.5-2)


class DroppedFFN(nn.Module):
    """Stands where a block's FFN output sub-layer was: returns the attention sub-layer's output.

    BERT computes ``LayerNorm(W2·act(W1·h) + h)`` after attention; with the FFN dropped the block
    output is ``h`` itself (the attention sub-layer's output). No parameters.
    """

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return input_tensor


class AffineNorm(nn.Module):
    """A fixed per-channel affine map ``y = weight * x + bias`` standing where a LayerNorm was.

    Unlike a LayerNorm it uses no statistics of the token: it is the cheap replacement fitted by
    :func:`trimbert.model.calibrate.calibrate_affine` (``layernorm_replacement="affine"``). ``weight`` and
    ``bias`` have shape ``[hidden]``; built as the identity (ones, zeros).
    """

    def __init__(self, hidden_size: int, *, device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}"


class DynamicTanh(nn.Module):
    """Dynamic Tanh, ``y = weight · tanh(alpha · x) + bias``, standing where a LayerNorm was
    (``layernorm_replacement="dyt"``; Zhu et al., "Transformers without Normalization", CVPR 2025).

    Like a LayerNorm it squashes the outlier channels of the residual stream, but with no statistics
    of the token: a learnable scalar ``alpha`` and per-channel ``weight`` and ``bias`` (shape
    ``[hidden]``), trained by healing and fine-tuning. A trim starts ``weight`` and ``bias`` from the
    stripped LayerNorm's and ``alpha`` at :data:`DYT_ALPHA_INIT`. Exports to ONNX as Mul, Tanh, Mul, Add.
    """

    def __init__(self, hidden_size: int, *, device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), DYT_ALPHA_INIT, device=device, dtype=dtype))
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.alpha * hidden_states) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}"


REPLACEMENT_MODULES = {AFFINE: AffineNorm, DYT: DynamicTanh}  # the identity replacement: nn.Identity


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


def config_spec(config: Any) -> TrimSpec:
    """The trim a config records: ``trim_spec`` of a TrimBert config, or the ``trimbert_trim_spec`` of a
    trim saved as plain BERT (:data:`STOCK_SPEC_KEY`); empty for an untrimmed BERT."""
    recorded = getattr(config, "trim_spec", None)
    if recorded is None:
        recorded = getattr(config, STOCK_SPEC_KEY, None)
    return TrimSpec.from_dict(recorded)


def _spec_of(model: nn.Module) -> TrimSpec:
    return config_spec(getattr(model, "config", None))


def original_num_layers(model: nn.Module) -> int:
    """The depth of the model ``model`` was trimmed from (its present blocks plus the dropped ones)."""
    return _spec_of(model).original_num_layers(len(encoder_layers(model)))


def block_positions(model: nn.Module) -> dict[int, int]:
    """Original block index -> position in ``encoder.layer`` (identity unless blocks were dropped)."""
    spec = _spec_of(model)
    kept = spec.kept_layers(spec.original_num_layers(len(encoder_layers(model))))
    return {original: position for position, original in enumerate(kept)}


def block_module(model: nn.Module, block: int) -> nn.Module:
    """The block with ORIGINAL index ``block`` (a TrimbertError if it was dropped or does not exist)."""
    positions = block_positions(model)
    if block not in positions:
        raise TrimbertError(f"block {block} is not in this model (dropped or out of range)")
    return encoder_layers(model)[positions[block]]


def layernorm_module(model: nn.Module, name: str) -> nn.Module:
    """What stands at LayerNorm ``name`` (``"3.attn"``, original numbering): LayerNorm, Identity, AffineNorm."""
    block, path = layernorm_module_path(name)
    return block_module(model, block).get_submodule(path)


def head_size(layer: nn.Module) -> int:
    """The size of one attention head of a BERT block (``attention.self.attention_head_size``)."""
    return int(layer.attention.self.attention_head_size)


def block_heads(layer: nn.Module) -> int:
    """The number of attention heads a BERT block has now (pruned or not)."""
    return int(layer.attention.self.num_attention_heads)


def head_counts(model: nn.Module) -> dict[int, int]:
    """Original block index -> its current number of attention heads, for every block present."""
    layers = encoder_layers(model)
    return {block: block_heads(layers[position]) for block, position in block_positions(model).items()}


def head_rows(heads: torch.Tensor, size: int) -> torch.Tensor:
    """The rows of ``query``/``key``/``value`` (and columns of ``attention.output.dense``) of ``heads``."""
    heads = torch.as_tensor(heads, dtype=torch.long).flatten()
    return (heads[:, None] * size + torch.arange(size)).flatten()


def _prune_heads(model: nn.Module, layer: nn.Module, count: int) -> None:
    """Rebuild ``layer``'s attention projections for ``count`` heads (new, uninitialized-for-loading)."""
    attention, output = layer.attention.self, layer.attention.output
    size = head_size(layer)
    width = count * size
    for name in ("query", "key", "value"):
        old = getattr(attention, name)
        factory = {"device": old.weight.device, "dtype": old.weight.dtype}
        setattr(attention, name, nn.Linear(old.in_features, width, bias=old.bias is not None, **factory))
        _init_new(model, getattr(attention, name))
    old = output.dense
    factory = {"device": old.weight.device, "dtype": old.weight.dtype}
    output.dense = nn.Linear(width, old.out_features, bias=old.bias is not None, **factory)
    _init_new(model, output.dense)
    attention.num_attention_heads = count
    attention.all_head_size = width


def _init_new(model: nn.Module, module: nn.Module) -> None:
    init = getattr(model, "_init_weights", None)
    if callable(init) and not any(parameter.is_meta for parameter in module.parameters()):
        init(module)


def apply_structure(model: nn.Module, spec: TrimSpec) -> None:
    """Give ``model``'s blocks the structure ``spec`` describes (in place).

    ``model`` is freshly built with ``num_hidden_layers`` = the number of blocks present (the
    original depth minus ``spec.drop_layers``). Removes the FFNs and strips the LayerNorms the spec
    names, narrows the FFNs of ``spec.ffn_width`` and prunes the attention heads of ``spec.heads``
    (new, uninitialized-for-loading Linear layers).
    """
    layers = encoder_layers(model)
    num_layers = spec.original_num_layers(len(layers))
    config = getattr(model, "config", None)
    validate_spec(
        spec,
        num_layers,
        intermediate_size=getattr(config, "intermediate_size", None),
        num_attention_heads=getattr(config, "num_attention_heads", None),
    )
    position = {original: index for index, original in enumerate(spec.kept_layers(num_layers))}
    for index in spec.drop_ffn:
        layer = layers[position[index]]
        layer.intermediate = nn.Identity()
        layer.output = DroppedFFN()
    for index, width in spec.ffn_width:
        layer = layers[position[index]]
        old_in, old_out = layer.intermediate.dense, layer.output.dense
        factory = {"device": old_in.weight.device, "dtype": old_in.weight.dtype}
        layer.intermediate.dense = nn.Linear(
            old_in.in_features, width, bias=old_in.bias is not None, **factory
        )
        layer.output.dense = nn.Linear(width, old_out.out_features, bias=old_out.bias is not None, **factory)
        _init_new(model, layer.intermediate.dense)
        _init_new(model, layer.output.dense)
    for index, count in spec.heads:
        _prune_heads(model, layers[position[index]], count)
    for name in spec.layernorm:
        block, path = layernorm_module_path(name)
        layer = layers[position[block]]
        if spec.layernorm_replacement in REPLACEMENT_MODULES:
            old = layer.get_submodule(path)
            reference = getattr(old, "weight", None)
            hidden = reference.shape[0] if reference is not None else config.hidden_size
            factory = {"device": reference.device, "dtype": reference.dtype} if reference is not None else {}
            _set_submodule(layer, path, REPLACEMENT_MODULES[spec.layernorm_replacement](hidden, **factory))
        else:
            _set_submodule(layer, path, nn.Identity())


def check_model_type(model_type: str | None, where: str = "") -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        place = f" in {where}" if where else ""
        raise TrimbertError(
            f"unsupported model type {model_type!r}{place}: trimbert supports BERT checkpoints "
            f"(model_type 'bert', or 'trimbert' for models it trimmed)"
        )


def applied_spec(model: nn.Module) -> TrimSpec:
    """The spec already applied to ``model`` (empty for an untrimmed BERT; see :func:`config_spec`)."""
    check_model_type(getattr(model.config, "model_type", None))
    return config_spec(model.config)
