"""Graphs that ONNX Runtime's transformer optimizer fuses: the export-time form of attention, and the pass.

ONNX Runtime runs BERT fastest when its optimizer (``onnxruntime.transformers.optimizer``) has
replaced each self-attention subgraph by one ``Attention`` node, the embeddings by
``EmbedLayerNormalization``, residual adds + LayerNorms by ``SkipLayerNormalization`` and the FFN's
bias + GELU by ``BiasGelu``. It recognizes attention only in the classic BERT form: Q/K/V reshaped
to ``[batch, seq, heads, head_size]`` with constant ``heads`` and ``head_size`` (it reads the head
count of each layer from there, so blocks may keep different numbers of heads), scores divided by
``sqrt(head_size)``, the additive padding mask, softmax. transformers 5 reshapes with ``-1`` heads and
multiplies by the scale, which the optimizer does not match; :func:`fusable_attention` swaps in a
forward of the recognized form (the same math) while the model is traced.

Only softmax models with every LayerNorm in place have that structure (:func:`can_fuse`); dropped
FFNs, narrowed FFNs, dropped layers and pruned attention heads (each block's ``Attention`` node gets
that block's head count) are plain graph structure and fuse too. Other normalizers and
stripped LayerNorms export unfused, as ordinary ONNX ops.
"""

from __future__ import annotations

import contextlib
import logging
import math
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trimbert.model.structure import applied_spec
from trimbert.spec.trimspec import SOFTMAX

# The fused operators counted in export.json (what the optimizer reports, zeros left out).
FUSED_OPS = ("Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu")


def can_fuse(model: nn.Module) -> str | None:
    """None if ``model`` has the structure ONNX Runtime fuses, else why not (one phrase)."""
    spec = applied_spec(model)
    if spec.attention != SOFTMAX:
        return f"attention {spec.attention} is not softmax"
    if spec.layernorm:
        return f"LayerNorms are {'stripped' if spec.layernorm_replacement == 'identity' else 'replaced'}"
    return None


def _self_attention_modules(model: nn.Module) -> list[nn.Module]:
    return [
        module
        for module in model.modules()
        if all(hasattr(module, name) for name in ("query", "key", "value", "attention_head_size", "num_attention_heads"))
    ]


def _fusable_forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any):
    """BERT self-attention in the form the ORT optimizer matches (module docstring); eval only."""
    batch, tokens = hidden_states.shape[:2]
    heads, head_size = int(self.num_attention_heads), int(self.attention_head_size)
    shape = (batch, tokens, heads, head_size)
    query = self.query(hidden_states).view(shape).transpose(1, 2)
    key = self.key(hidden_states).view(shape).transpose(1, 2)
    value = self.value(hidden_states).view(shape).transpose(1, 2)
    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(head_size)
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1)
    context = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return context.reshape(batch, tokens, heads * head_size), None


@contextlib.contextmanager
def fusable_attention(model: nn.Module) -> Iterator[int]:
    """While inside, every self-attention module of ``model`` runs :func:`_fusable_forward`; yields how
    many modules were switched. The original forwards come back on exit."""
    modules = _self_attention_modules(model)
    for module in modules:
        module.forward = types.MethodType(_fusable_forward, module)
    try:
        yield len(modules)
    finally:
        for module in modules:
            del module.forward  # the class's forward again


def optimize_graph(source: Path, target: Path) -> dict[str, int]:
    """Run ONNX Runtime's BERT optimizer on ``source`` (head counts read from the graph, per layer),
    write ``target``; returns the fused operators it made (non-zero counts only)."""
    from onnxruntime.transformers.optimizer import optimize_model

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the optimizer logs progress and advice
    try:
        optimized = optimize_model(str(source), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
        statistics = optimized.get_fused_operator_statistics()
        optimized.save_model_to_file(str(target))
    finally:
        root.setLevel(level)
    return {name: int(statistics.get(name, 0)) for name in FUSED_OPS if statistics.get(name, 0)}
