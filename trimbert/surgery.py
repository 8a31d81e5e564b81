"""Apply a :class:`~trimbert.spec.TrimSpec` to a BERT model: remove whole blocks or FFN sub-layers,
narrow FFNs, strip LayerNorms, select the attention normalizer. Nothing else.

Two entry points:

- :func:`apply_structure` edits the *modules* of a freshly built model in place (used by the
  TrimBert model classes when they are constructed, so that ``from_pretrained`` finds the trimmed
  structure before loading weights);
- :func:`trim` takes any loaded BERT model (trimmed or not), composes the request with what was
  already applied, builds the TrimBert counterpart on the meta device and moves the surviving
  weights over without copying them (narrowed FFN weights are the only copies: a selection of rows
  and columns).

Dropped blocks (``drop_layers``). A trimmed model is *built* with ``num_hidden_layers`` = the number
of blocks present, so ``encoder.layer`` holds only them, numbered 0..k-1 (state-dict keys, cache
slots and ``layer_idx`` all use these positions), and transformers' masks, caches and
``output_hidden_states`` work unchanged. The spec keeps every index in the original numbering;
:func:`block_positions` maps original block index -> position in ``encoder.layer``. :func:`trim`
uses that mapping on both sides (source and trimmed model) to move each block's weights.

FFN width (``ffn_width``). A narrowed block's ``intermediate.dense`` is ``Linear(H, N)`` and its
``output.dense`` ``Linear(N, H)``; the kept neurons are chosen at trim time and keep their original
order (see :func:`select_neurons`). By default a neuron's importance is its weight magnitude
(:func:`magnitude_importance`: ``||W_in[j, :]||_2 * ||W_out[:, j]||_2``); ``trim(ffn_importance=...)``
takes externally computed scores instead. Each narrowed block loses ``(I - N) * (2H + 1)`` parameters.

LayerNorm replacement. A stripped LayerNorm becomes ``nn.Identity`` (``identity``) or an
:class:`AffineNorm` (``affine``), which sits at the LayerNorm's own attribute, so its state-dict
keys are the LayerNorm's ``...LayerNorm.weight`` / ``...LayerNorm.bias``.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.spec import AFFINE, SOFTMAX, TrimSpec, resolve_spec, validate_spec

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("bert", "trimbert")
CALIBRATION_MODES = ("sequential", "independent")

# "bert.encoder.layer.3.attention.self.query.weight" -> ("bert.encoder.layer.", "3", ".attention...")
_LAYER_KEY = re.compile(r"^((?:.*\.)?encoder\.layer\.)(\d+)(\..+)$")
_FFN_IN_KEYS = (".intermediate.dense.weight", ".intermediate.dense.bias")
_FFN_OUT_WEIGHT = ".output.dense.weight"


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
    :func:`trimbert.calibrate.calibrate_affine` (``layernorm_replacement="affine"``). ``weight`` and
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


def _spec_of(model: nn.Module) -> TrimSpec:
    return TrimSpec.from_dict(getattr(getattr(model, "config", None), "trim_spec", None))


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


def magnitude_importance(layer: nn.Module) -> torch.Tensor:
    """Weight-magnitude importance of each intermediate neuron ``j`` of a BERT block's FFN.

    ``||W_in[j, :]||_2 * ||W_out[:, j]||_2`` with ``W_in = intermediate.dense.weight`` (``[I, H]``,
    row ``j`` feeds neuron ``j``) and ``W_out = output.dense.weight`` (``[H, I]``, column ``j`` is what
    neuron ``j`` writes). Biases are not counted. Returns a float tensor of shape ``[I]``.
    """
    try:
        w_in = layer.intermediate.dense.weight
        w_out = layer.output.dense.weight
    except AttributeError as error:
        raise TrimbertError("--ffn-width: this block has no FFN to narrow") from error
    with torch.no_grad():
        return w_in.detach().float().norm(dim=1) * w_out.detach().float().norm(dim=0)


def select_neurons(importance: torch.Tensor, width: int) -> torch.Tensor:
    """Indices of the ``width`` most important neurons, in ascending (original) order.

    Ties are broken towards the lower index. ``1 <= width <= len(importance)``.
    """
    importance = torch.as_tensor(importance).detach().flatten()
    if not 1 <= width <= importance.numel():
        raise TrimbertError(f"--ffn-width: cannot keep {width} of {importance.numel()} neurons")
    order = torch.argsort(importance.double().cpu(), descending=True, stable=True)
    return order[:width].sort().values


def narrow_ffn(layer: nn.Module, indices: torch.Tensor) -> None:
    """Keep only the intermediate neurons ``indices`` (in that order) of a block's FFN, in place."""
    old_in, old_out = layer.intermediate.dense, layer.output.dense
    indices = torch.as_tensor(indices, dtype=torch.long, device=old_in.weight.device)
    new_in = nn.Linear(old_in.in_features, len(indices), bias=old_in.bias is not None).to(
        device=old_in.weight.device, dtype=old_in.weight.dtype
    )
    new_out = nn.Linear(len(indices), old_out.out_features, bias=old_out.bias is not None).to(
        device=old_out.weight.device, dtype=old_out.weight.dtype
    )
    with torch.no_grad():
        new_in.weight.copy_(old_in.weight.index_select(0, indices))
        if old_in.bias is not None:
            new_in.bias.copy_(old_in.bias.index_select(0, indices))
        new_out.weight.copy_(old_out.weight.index_select(1, indices))
        if old_out.bias is not None:
            new_out.bias.copy_(old_out.bias)
    layer.intermediate.dense = new_in
    layer.output.dense = new_out


def _init_new(model: nn.Module, module: nn.Module) -> None:
    init = getattr(model, "_init_weights", None)
    if callable(init) and not any(parameter.is_meta for parameter in module.parameters()):
        init(module)


def apply_structure(model: nn.Module, spec: TrimSpec) -> None:
    """Give ``model``'s blocks the structure ``spec`` describes (in place).

    ``model`` is freshly built with ``num_hidden_layers`` = the number of blocks present (the
    original depth minus ``spec.drop_layers``). Removes the FFNs and strips the LayerNorms the spec
    names and narrows the FFNs of ``spec.ffn_width`` (new, uninitialized-for-loading Linear layers).
    """
    layers = encoder_layers(model)
    num_layers = spec.original_num_layers(len(layers))
    config = getattr(model, "config", None)
    validate_spec(spec, num_layers, intermediate_size=getattr(config, "intermediate_size", None))
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
    for name in spec.layernorm:
        block, path = layernorm_module_path(name)
        layer = layers[position[block]]
        if spec.layernorm_replacement == AFFINE:
            old = layer.get_submodule(path)
            reference = getattr(old, "weight", None)
            hidden = reference.shape[0] if reference is not None else config.hidden_size
            factory = {"device": reference.device, "dtype": reference.dtype} if reference is not None else {}
            _set_submodule(layer, path, AffineNorm(hidden, **factory))
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
    """The spec already applied to ``model`` (empty for an untrimmed BERT)."""
    check_model_type(getattr(model.config, "model_type", None))
    return TrimSpec.from_dict(getattr(model.config, "trim_spec", None))


def _check_importance(
    scores: Mapping[int, Any], narrowed: dict[int, int], current: dict[int, int], num_layers: int
) -> dict[int, torch.Tensor]:
    if not isinstance(scores, Mapping):
        raise TrimbertError("ffn_importance: expected a dict block -> 1-D tensor of neuron scores")
    checked: dict[int, torch.Tensor] = {}
    for key, value in scores.items():
        try:
            block = int(key)
        except (TypeError, ValueError) as error:
            raise TrimbertError(f"ffn_importance: bad block index {key!r}") from error
        if not 0 <= block < num_layers:
            raise TrimbertError(
                f"ffn_importance: block index {block} out of range for a {num_layers}-block model"
            )
        checked[block] = torch.as_tensor(value).detach()
    for block in sorted(narrowed):
        if block not in checked:
            raise TrimbertError(f"ffn_importance: no scores for block {block} (narrowed by --ffn-width)")
        values = checked[block]
        if values.ndim != 1 or values.numel() != current[block]:
            raise TrimbertError(
                f"ffn_importance: block {block} needs {current[block]} scores (one per neuron), "
                f"got shape {tuple(values.shape)}"
            )
        if not torch.isfinite(values.double()).all():
            raise TrimbertError(f"ffn_importance: block {block} has non-finite scores")
    return checked


def _check_batches(batches: Any) -> list[Mapping[str, Any]]:
    message = "calibration_batches: expected a list of batches (dicts with input_ids, attention_mask, ...)"
    if isinstance(batches, (Mapping, str, torch.Tensor)):
        raise TrimbertError(message)
    try:
        batches = list(batches)
    except TypeError as error:
        raise TrimbertError(message) from error
    if not batches:
        raise TrimbertError("calibration_batches: no batches given")
    if not all(isinstance(batch, Mapping) and "input_ids" in batch for batch in batches):
        raise TrimbertError(message)
    return batches


def trim(
    model: nn.Module,
    spec: TrimSpec | None = None,
    *,
    drop_ffn: str | list[int] | tuple[int, ...] | None = None,
    attention: str | None = None,
    layernorm: str | None = None,
    drop_layers: str | list[int] | tuple[int, ...] | None = None,
    ffn_width: int | str | Mapping[int, int] | None = None,
    ffn_importance: Mapping[int, torch.Tensor] | None = None,
    layernorm_replacement: str | None = None,
    calibration_batches: Sequence[Mapping[str, torch.Tensor]] | None = None,
    calibration: str = "sequential",
) -> nn.Module:
    """Trim ``model`` and return the trimmed model (a TrimBert class; ``model`` must not be used after).

    Either pass a request as strings (``drop_ffn="alternate"``, ``attention="relu"``,
    ``layernorm="half"``, ``drop_layers="4,5"``, ``ffn_width=768``; see :mod:`trimbert.spec`), or a
    resolved ``spec`` to add. Both compose with whatever was applied to ``model`` before. The
    surviving weights are moved, not copied.

    ``ffn_width``: narrow every remaining FFN (an int) or some (``{block: width}``) to that many
    intermediate neurons; the neurons kept are the most important ones by weight magnitude
    (:func:`magnitude_importance`), or by ``ffn_importance`` when given: ``{block: scores}``, one
    score per current neuron of every block narrowed now, higher = more important (e.g. from an
    activation sample). ``spec.notes["ffn_width_rule"]`` records ``"magnitude"`` or ``"scores"``.

    ``layernorm_replacement``: ``"identity"`` (default) or ``"affine"``. ``affine`` needs
    ``calibration_batches`` (a list of dicts of ``input_ids``, ``attention_mask``, ...): ``model``
    is run on them and each newly stripped LayerNorm's replacement ``a * x + b`` is fitted by
    per-channel least squares to reproduce that LayerNorm's outputs on the real tokens
    (:func:`trimbert.calibrate.calibrate_affine`). ``calibration="sequential"`` (default) fits the
    replacements in forward order on the inputs they get in the trimmed model (so each one also
    absorbs the drift of the ones before); ``"independent"`` fits each on the source model's own
    LayerNorm inputs. ``spec.notes["layernorm_calibration"]`` records the sample size and mode.
    """
    from trimbert.modeling import TrimBertConfig, trimbert_class_for

    before = applied_spec(model)
    layers = encoder_layers(model)
    num_layers = before.original_num_layers(len(layers))
    intermediate = model.config.intermediate_size
    notes = dict(before.notes)
    if spec is not None:
        options = (drop_ffn, attention, layernorm, drop_layers, ffn_width, layernorm_replacement)
        if any(option is not None for option in options):
            raise TrimbertError("pass either a TrimSpec or string options to trim(), not both")
        drop_ffn = list(spec.drop_ffn) or None
        attention = None if spec.attention == SOFTMAX else spec.attention
        layernorm = ",".join(spec.layernorm) or None
        drop_layers = list(spec.drop_layers) or None
        ffn_width = spec.ffn_widths or None
        layernorm_replacement = spec.layernorm_replacement if spec.layernorm else None
        notes.update(spec.notes)
    if ffn_importance is not None and ffn_width is None:
        raise TrimbertError("ffn_importance: only used with --ffn-width (no width given)")
    composed = resolve_spec(
        num_layers,
        before,
        drop_ffn=drop_ffn,
        attention=attention,
        layernorm=layernorm,
        drop_layers=drop_layers,
        ffn_width=ffn_width,
        layernorm_replacement=layernorm_replacement,
        intermediate_size=intermediate,
    )
    kept = composed.kept_layers(num_layers)
    if len(composed.drop_ffn) == len(kept) and kept:
        warnings.warn(
            f"every FFN is dropped ({len(kept)} of {len(kept)} blocks): the encoder is attention only",
            UserWarning,
            stacklevel=2,
        )

    # FFNs narrowed now, and which neurons they keep.
    before_widths = before.ffn_widths
    current = {block: before_widths.get(block, intermediate) for block in kept}
    narrowed = {block: width for block, width in composed.ffn_width if before_widths.get(block) != width}
    source_position = {original: index for index, original in enumerate(before.kept_layers(num_layers))}
    selections: dict[int, torch.Tensor] = {}
    if narrowed:
        scores = (
            _check_importance(ffn_importance, narrowed, current, num_layers)
            if ffn_importance is not None
            else {}
        )
        for block, width in narrowed.items():
            importance = scores.get(block)
            if importance is None:
                importance = magnitude_importance(layers[source_position[block]])
            selections[block] = select_neurons(importance, width)
        rule = "scores" if ffn_importance is not None else "magnitude"
        previous = notes.get("ffn_width_rule") if before.ffn_width else None
        notes["ffn_width_rule"] = rule if previous in (None, rule) else f"{previous}, then {rule}"
    elif not composed.ffn_width:
        notes.pop("ffn_width_rule", None)

    if calibration not in CALIBRATION_MODES:
        raise TrimbertError(
            f"calibration: unknown mode {calibration!r} (choose from {', '.join(CALIBRATION_MODES)})"
        )
    # LayerNorms replaced by a fitted affine map now.
    new_affine: tuple[str, ...] = ()
    if composed.layernorm_replacement == AFFINE:
        new_affine = tuple(name for name in composed.layernorm if name not in before.layernorm)
    if calibration_batches is not None:
        if composed.layernorm_replacement != AFFINE:
            raise TrimbertError(
                "calibration_batches: only used with --layernorm-replacement affine "
                f"(this trim uses {composed.layernorm_replacement!r})"
            )
        calibration_batches = _check_batches(calibration_batches)
    if new_affine and calibration_batches is None:
        raise TrimbertError(
            "--layernorm-replacement affine: calibration data is needed to fit the replacements "
            "(pass calibration_batches)"
        )
    if new_affine:
        from trimbert.calibrate import count_tokens

        sequences, tokens = count_tokens(calibration_batches)
        notes["layernorm_calibration"] = {
            "layernorms": list(new_affine),
            "sequences": sequences,
            "tokens": tokens,
            "mode": calibration,
        }
    composed = replace(composed, notes=notes)

    config_dict = model.config.to_dict()
    config_dict.pop("model_type", None)
    config_dict["trim_spec"] = composed.to_dict()
    config_dict["num_hidden_layers"] = len(kept)
    target_class = trimbert_class_for(type(model))
    config = TrimBertConfig.from_dict(config_dict)
    config._attn_implementation = model.config._attn_implementation
    with torch.device("meta"):
        trimmed = target_class(config)
    state = model.state_dict()
    target_state = trimmed.state_dict()
    affine_keys = {
        (block, f".{path}.{kind}")
        for block, path in map(layernorm_module_path, new_affine)
        for kind in ("weight", "bias")
    }
    moved: dict[str, torch.Tensor] = {}
    for key, target in target_state.items():
        match = _LAYER_KEY.match(key)
        block, rest, source_key = None, "", key
        if match:
            prefix, position, rest = match.groups()
            block = kept[int(position)]
            source_key = f"{prefix}{source_position[block]}{rest}"
        if source_key not in state:
            raise TrimbertError(
                f"cannot trim: the model lacks weights the trimmed model needs (first: {key})"
            )
        value = state[source_key]
        if block is not None and block in selections:
            if rest in _FFN_IN_KEYS:
                value = value.index_select(0, selections[block].to(value.device))
            elif rest == _FFN_OUT_WEIGHT:
                value = value.index_select(1, selections[block].to(value.device))
        if block is not None and (block, rest) in affine_keys:
            value = value.clone()  # overwritten by the calibration: never write into the source's tensor
        if tuple(value.shape) != tuple(target.shape):
            raise TrimbertError(
                f"cannot trim: {source_key} has shape {tuple(value.shape)}, the trimmed model needs "
                f"{tuple(target.shape)}"
            )
        moved[key] = value
    trimmed.load_state_dict(moved, strict=True, assign=True)
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
    if new_affine:
        from trimbert.calibrate import calibrate_affine

        calibrate_affine(
            model, trimmed, calibration_batches, names=new_affine, sequential=calibration == "sequential"
        )
    return trimmed


def _set_buffer(root: nn.Module, dotted: str, value: torch.Tensor) -> None:
    parent_path, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    persistent = child not in parent._non_persistent_buffers_set
    parent.register_buffer(child, value, persistent=persistent)
