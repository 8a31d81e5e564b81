"""Gates: a trim simulated on a loaded model by masking, for importance scores and one-shot search.

:func:`install_gates` puts forward hooks on a BERT (or trimmed) model; each hook mixes a unit's output
with what the trimmed model computes in its place, weighted by a gate ``g`` (1 = the unit as it is):

- block ``b`` (``drop_layers``): ``g · block(x) + (1 − g) · x``;
- the FFN of block ``b`` (``drop_ffn``): ``g · output(f, h) + (1 − g) · h`` with ``h`` the attention
  sub-layer's output (what :class:`~trimbert.model.structure.DroppedFFN` returns);
- LayerNorm ``"b.attn"`` / ``"b.ffn"`` (``layernorm``, identity replacement): ``g · LN(z) + (1 − g) · z``;
- FFN neuron ``j`` of block ``b`` (``ffn_width``): its activation times ``mask[j]`` (a removed neuron
  writes nothing; the output bias stays, as in a narrowed FFN);
- attention head ``h`` of block ``b`` (``heads``): its slice of the self-attention's context output
  times ``mask[h]`` (a removed head writes nothing into ``attention.output.dense``, whose bias stays,
  as in a pruned attention).

At gate values 0/1 the gated model computes what :func:`trimbert.model.trim.trim` would build (the
tests compare the two); :meth:`Gates.apply` sets them from a :class:`~trimbert.spec.TrimSpec`, the
attention normalizer included. With the gates at 1 and ``requires_grad``, the gradient of a loss with
respect to a gate is the first-order Taylor estimate of what removing that unit changes
(:mod:`trimbert.importance`). Indices are in the original numbering; only units that exist in the model
get a gate (a dropped FFN, a stripped LayerNorm or a dropped block has none).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.model.attention import implementation_name
from trimbert.model.structure import DroppedFFN, applied_spec, block_positions, encoder_layers
from trimbert.spec import SOFTMAX, TrimSpec


@dataclass
class Gates:
    """The gate tensors of a model (in the model's dtype, on its device) and the hooks that read them.

    ``blocks``/``ffn``: block -> 0-d tensor; ``layernorm``: name -> 0-d tensor; ``neurons``: block ->
    1-d tensor (one per current FFN neuron); ``heads``: block -> 1-d tensor (one per current attention
    head). The hooks read these tensors at every forward pass, so
    assigning values (``gates.ffn[3].fill_(0)``) or :meth:`apply` changes the next pass.
    """

    blocks: dict[int, torch.Tensor]
    ffn: dict[int, torch.Tensor]
    layernorm: dict[str, torch.Tensor]
    neurons: dict[int, torch.Tensor]
    model: nn.Module
    heads: dict[int, torch.Tensor] = field(default_factory=dict)
    base_attention: str = SOFTMAX
    base_implementation: str | None = None
    handles: list[Any] = field(default_factory=list)

    def tensors(self) -> Iterator[torch.Tensor]:
        for group in (self.blocks, self.ffn, self.layernorm, self.neurons, self.heads):
            yield from group.values()

    def require_grad(self, flag: bool = True) -> None:
        for tensor in self.tensors():
            tensor.requires_grad_(flag)
            tensor.grad = None

    def reset(self) -> None:
        """Every gate back to 1 (the model as loaded) and the model's own attention."""
        with torch.no_grad():
            for tensor in self.tensors():
                tensor.fill_(1.0)
        self._set_attention(self.base_attention)

    def apply(
        self,
        spec: TrimSpec,
        order: dict[int, torch.Tensor] | None = None,
        *,
        head_order: dict[int, torch.Tensor] | None = None,
    ) -> None:
        """Set the gates to simulate ``spec`` (a trim of the model as loaded, original numbering).

        ``order``: for each narrowed block, its neurons from most to least important (a narrowed FFN
        keeps a prefix of that order); needed when ``spec.ffn_width`` is not empty. ``head_order``: the
        same for the heads of each pruned block (a pruned attention keeps a prefix of its current
        heads in that order); needed when ``spec.heads`` is not empty. Affine and DyT
        LayerNorm replacements cannot be simulated (they have weights of their own).
        """
        self.reset()
        if spec.layernorm and spec.layernorm_replacement != "identity":
            raise TrimbertError(f"gates simulate the identity LayerNorm replacement only, not {spec.layernorm_replacement!r}")
        with torch.no_grad():
            for block in spec.drop_layers:
                self._gate(self.blocks, block, "block").fill_(0.0)
            for block in spec.drop_ffn:
                self._gate(self.ffn, block, "FFN").fill_(0.0)
            for name in spec.layernorm:
                self._gate(self.layernorm, name, "LayerNorm").fill_(0.0)
            for block, width in spec.ffn_width:
                mask = self._gate(self.neurons, block, "FFN")
                if order is None or block not in order:
                    raise TrimbertError(f"gates: no neuron order for block {block} (narrowed to {width})")
                mask.zero_()
                mask[order[block][:width].to(mask.device)] = 1.0
            for block, count in spec.heads:
                mask = self._gate(self.heads, block, "attention")
                if head_order is None or block not in head_order:
                    raise TrimbertError(f"gates: no head order for block {block} (pruned to {count} heads)")
                if not 1 <= count <= mask.numel():
                    raise TrimbertError(f"gates: block {block} has {mask.numel()} heads, cannot keep {count}")
                mask.zero_()
                mask[head_order[block][:count].to(mask.device)] = 1.0
        self._set_attention(spec.attention)

    def remove(self) -> None:
        """Take the hooks off and restore the model's attention."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self._set_attention(self.base_attention)

    def _gate(self, group: dict, key: Any, kind: str) -> torch.Tensor:
        if key not in group:
            raise TrimbertError(f"gates: this model has no {kind} {key} to remove")
        return group[key]

    def _set_attention(self, name: str) -> None:
        implementation = implementation_name(name) if name != self.base_attention else None
        target = implementation or self.base_implementation
        if target is not None and self.model.config._attn_implementation != target:
            self.model.set_attn_implementation(target)


def _mix_hook(gate: torch.Tensor, fallback_index: int, fallback_name: str):
    """A forward hook: ``g · output + (1 − g) · input`` (the input found by position or keyword)."""

    def hook(module, args, kwargs, output):
        source = args[fallback_index] if len(args) > fallback_index else kwargs[fallback_name]
        if isinstance(output, tuple):
            return (gate * output[0] + (1 - gate) * source, *output[1:])
        return gate * output + (1 - gate) * source

    return hook


def _mask_hook(mask: torch.Tensor):
    def hook(module, args, output):
        return output * mask

    return hook


def _head_hook(mask: torch.Tensor, size: int):
    """A forward hook on ``attention.self``: each head's slice of the context (``output[0]``) times its gate."""

    def hook(module, args, output):
        context = output[0] if isinstance(output, tuple) else output
        gated = (context.unflatten(-1, (-1, size)) * mask[:, None]).flatten(-2)
        return (gated, *output[1:]) if isinstance(output, tuple) else gated

    return hook


def install_gates(model: nn.Module) -> Gates:
    """Hook gates onto every block, attention head, FFN, FFN neuron and LayerNorm ``model`` still has (all at 1)."""
    spec = applied_spec(model)
    if spec.layernorm and spec.layernorm_replacement != "identity":
        raise TrimbertError("gates: a model with affine or DyT LayerNorm replacements cannot be gated")
    reference = next(model.parameters())
    device, dtype = reference.device, reference.dtype  # mixing in the model's dtype keeps its activations' dtype
    layers = encoder_layers(model)

    def one(shape: tuple[int, ...] = ()) -> torch.Tensor:
        return torch.ones(shape, device=device, dtype=dtype)

    gates = Gates(
        blocks={},
        ffn={},
        layernorm={},
        neurons={},
        model=model,
        base_attention=spec.attention,
        base_implementation=model.config._attn_implementation,
    )
    for block, position in block_positions(model).items():
        layer = layers[position]
        gates.blocks[block] = one()
        gates.handles.append(layer.register_forward_hook(_mix_hook(gates.blocks[block], 0, "hidden_states"), with_kwargs=True))
        attention = layer.attention.self
        gates.heads[block] = one((int(attention.num_attention_heads),))
        gates.handles.append(
            attention.register_forward_hook(_head_hook(gates.heads[block], int(attention.attention_head_size)))
        )
        attn_norm = layer.attention.output.LayerNorm
        if isinstance(attn_norm, nn.LayerNorm):
            gates.layernorm[f"{block}.attn"] = gate = one()
            gates.handles.append(attn_norm.register_forward_hook(_mix_hook(gate, 0, "input"), with_kwargs=True))
        if isinstance(layer.output, DroppedFFN):
            continue
        gates.ffn[block] = one()
        gates.handles.append(layer.output.register_forward_hook(_mix_hook(gates.ffn[block], 1, "input_tensor"), with_kwargs=True))
        gates.neurons[block] = one((layer.intermediate.dense.out_features,))
        gates.handles.append(layer.intermediate.register_forward_hook(_mask_hook(gates.neurons[block])))
        ffn_norm = layer.output.LayerNorm
        if isinstance(ffn_norm, nn.LayerNorm):
            gates.layernorm[f"{block}.ffn"] = gate = one()
            gates.handles.append(ffn_norm.register_forward_hook(_mix_hook(gate, 0, "input"), with_kwargs=True))
    return gates


@contextmanager
def gated(model: nn.Module) -> Iterator[Gates]:
    """:func:`install_gates` for the duration of a ``with`` block; the hooks are removed after."""
    gates = install_gates(model)
    try:
        yield gates
    finally:
        gates.remove()
