"""The least-squares layer fix (Kwon et al. 2022, §4.3 "mask tuning"): one scale per kept head and neuron.

:func:`fit_scales` goes through the blocks in forward order. The pruned model (the gates of
:mod:`trimbert.model.gates` at the plan's masks, with the scales fitted so far) and the ORIGINAL model
(every gate at 1) are run block by block on the same batches, each on its own inputs (the original
model's hidden states and the pruned model's). For each sub-layer, the scales ``s`` of its kept units
minimise ``Σ_tokens ‖Σ_u s_u·y_u + bias + x − t‖²`` over the real (non-padded) tokens, with ``y_u`` what
unit ``u`` (a head's context through its columns of ``attention.output.dense``, a neuron's activation
through its column of ``output.dense``) writes in the pruned model, ``x`` the pruned model's residual
input and ``t`` the original model's sum ``dense(·) + residual`` at the same place. That is Kwon's
target (``get_mha_lstsq``/``get_ffn_lstsq``): what reaches the LayerNorm, so the fix also absorbs the
drift of the residual stream; with equal inputs it is the sub-layer's own output. The attention fix
comes first and the FFN's is fitted on the inputs the fixed attention gives.

Only the normal equations are accumulated (``AᵀA``, ``Aᵀb``, ``bᵀb``; for neurons ``AᵀA = (aᵀa) ⊙ (WᵀW)``),
so memory does not grow with the sample; each batch's products are taken in the model's dtype and
summed in float64. They are solved, as Kwon's ``lsmr_cupy_solver``, for the
change from 1 with a ridge: ``(AᵀA + λI)(s − 1) = Aᵀb − AᵀA·1``, ``λ = damp · mean(diag AᵀA)``. A fix
is skipped (the scales stay 1) and recorded when the solve fails, a scale leaves ``[-max_scale,
max_scale]`` (Kwon's blow-up guard, 10) or the fix would not lower the error. ``last_first_token``:
the last block's FFN is fitted on the first token only (Kwon's ``cls_only``, for a classifier that
reads the first token). Errors are mean squared errors per element of the pre-LayerNorm sum.

:func:`fold_scales` writes the scales into the weights (the columns of ``attention.output.dense`` of each
head, of ``output.dense`` of each neuron), so the physically trimmed model carries the fix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from trimbert.compress.masks import MaskPlan
from trimbert.errors import TrimbertError
from trimbert.measure.size import model_device, model_mode
from trimbert.model.gates import Gates, gated
from trimbert.model.structure import DroppedFFN, block_positions, encoder_layers

MAX_SCALE = 10.0
DAMP = 1e-6


@dataclass
class LayerFix:
    """The fix of one sub-layer (``part``: ``"attn"`` or ``"ffn"``) of block ``block``: its error before
    and after (``after == before`` when skipped), whether it was applied and, if not, why."""

    block: int
    part: str
    units: int
    before: float
    after: float
    applied: bool
    reason: str | None = None


@dataclass
class Scales:
    """Fitted gate values: ``heads`` block -> one value per current head, ``neurons`` FFN block -> one per
    current neuron (0 for the removed ones; a dropped FFN has none); ``fixes`` in forward order."""

    heads: dict[int, torch.Tensor]
    neurons: dict[int, torch.Tensor]
    fixes: list[LayerFix] = field(default_factory=list)
    seconds: float = 0.0


class _Stop(Exception):
    """Raised by a capture hook to end a forward pass early."""


class _Normal:
    """Normal equations of one least-squares problem, accumulated in float64."""

    def __init__(self, units: int, device: torch.device) -> None:
        self.gram = torch.zeros(units, units, dtype=torch.float64, device=device)
        self.cross = torch.zeros(units, dtype=torch.float64, device=device)
        self.target = 0.0
        self.elements = 0

    def error(self, scales: torch.Tensor) -> float:
        value = scales @ self.gram @ scales - 2 * scales @ self.cross + self.target
        return max(float(value), 0.0) / max(self.elements, 1)


def _solve(normal: _Normal, damp: float) -> torch.Tensor | None:
    gram, cross = normal.gram.cpu(), normal.cross.cpu()
    ones = torch.ones(len(cross), dtype=torch.float64)
    ridge = damp * float(gram.diagonal().mean())
    matrix = gram + ridge * torch.eye(len(cross), dtype=torch.float64)
    right = cross - gram @ ones
    factor, info = torch.linalg.cholesky_ex(matrix)
    if int(info) == 0:
        delta = torch.cholesky_solve(right[:, None], factor)[:, 0]
    else:
        delta = torch.linalg.lstsq(matrix, right[:, None], driver="gelsd").solution[:, 0]
    return ones + delta if torch.isfinite(delta).all() else None


def _capture_first_inputs(model: nn.Module, batches: Sequence[Mapping[str, torch.Tensor]], device: torch.device):
    """For each batch: the first present block's ``(args, kwargs)`` and the token mask ``[rows, length]``."""
    first = encoder_layers(model)[0]
    found: list = []

    def hook(module, args, kwargs):
        found.append((tuple(args), dict(kwargs)))
        raise _Stop

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    captured = []
    try:
        for batch in batches:
            inputs = {key: value.to(device) for key, value in batch.items() if key != "labels"}
            try:
                model(**inputs)
            except _Stop:
                pass
            args, kwargs = found.pop()
            mask = inputs.get("attention_mask")
            tokens = mask.bool() if mask is not None else torch.ones(inputs["input_ids"].shape, dtype=torch.bool, device=device)
            captured.append((args, kwargs, tokens))
    finally:
        handle.remove()
    return captured


def _run(layer: nn.Module, hidden: torch.Tensor, args: tuple, kwargs: dict, *watched: nn.Module, stop: bool = False):
    """Run ``layer`` on ``hidden`` (the other arguments as the encoder passed them) and return the
    positional inputs of each ``watched`` module, then the layer's output (None with ``stop``: the
    pass ends at the first watched module)."""
    seen: dict[nn.Module, tuple] = {}

    def watch(module, inputs):
        seen[module] = inputs
        if stop:
            raise _Stop

    handles = [module.register_forward_pre_hook(watch) for module in watched]
    output = None
    try:
        output = layer(hidden, *args[1:], **kwargs)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return (*(seen[module] for module in watched), output)


def _set_block(gates: Gates, block: int, heads: torch.Tensor | None, neurons: torch.Tensor | None, ffn: float) -> None:
    with torch.no_grad():
        if block in gates.heads:
            gates.heads[block].copy_(heads if heads is not None else torch.ones_like(gates.heads[block]))
        if block in gates.neurons:
            gates.neurons[block].copy_(neurons if neurons is not None else torch.ones_like(gates.neurons[block]))
        if block in gates.ffn:
            gates.ffn[block].fill_(ffn)


def _attention_terms(layer: nn.Module, context: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """``[kept heads, tokens, hidden]``: what each kept head writes through ``attention.output.dense``."""
    size = int(layer.attention.self.attention_head_size)
    weight = layer.attention.output.dense.weight  # [H, n·d]
    per_head = context.unflatten(-1, (-1, size))[:, kept.to(context.device)]  # [tokens, k, d]
    columns = weight.unflatten(1, (-1, size))[:, kept.to(weight.device)]  # [H, k, d]
    return torch.einsum("tkd,hkd->kth", per_head, columns)


def _decide(normal: _Normal, block: int, part: str, damp: float, max_scale: float) -> tuple[torch.Tensor, LayerFix]:
    units = len(normal.cross)
    ones = torch.ones(units, dtype=torch.float64)
    before = normal.error(ones.to(normal.gram.device))
    scales = _solve(normal, damp)
    reason = None
    if scales is None:
        reason = "the solve failed"
    elif scales.abs().max() > max_scale:
        reason = f"a scale of {float(scales.abs().max()):.3g} is outside ±{max_scale:g}"
    else:
        after = normal.error(scales.to(normal.gram.device))
        if not after <= before:
            reason = "the fix would raise the error"
    if reason is not None:
        return ones, LayerFix(block, part, units, before, before, False, reason)
    return scales, LayerFix(block, part, units, before, after, True)


@torch.no_grad()
def fit_scales(
    model: nn.Module,
    plan: MaskPlan,
    batches: Sequence[Mapping[str, torch.Tensor]],
    *,
    damp: float = DAMP,
    max_scale: float = MAX_SCALE,
    last_first_token: bool = False,
) -> Scales:
    """Kwon's layer-wise least-squares scales for ``plan`` on ``model`` (see the module docstring).

    ``model`` is not changed (gates are installed for the run and removed); ``batches`` as for
    :func:`~trimbert.importance.fisher.fisher_scores` (labels are ignored).
    """
    if not batches:
        raise TrimbertError("compress: no batches for the least-squares fix")
    start = time.perf_counter()
    device = model_device(model)
    layers = encoder_layers(model)
    positions = block_positions(model)
    head_masks = {b: m.to(device) for b, m in plan.head_masks().items()}
    neuron_masks = {b: m.to(device) for b, m in plan.neuron_masks().items()}
    head_scales = {b: m.clone() for b, m in head_masks.items()}
    neuron_scales = {b: m.clone() for b, m in neuron_masks.items() if len(plan.neurons[b])}
    fixes: list[LayerFix] = []
    with model_mode(model, train=False), gated(model) as gates:
        captured = _capture_first_inputs(model, batches, device)
        teacher = [args[0] for args, _, _ in captured]
        student = list(teacher)
        last = max(positions)
        for block, position in sorted(positions.items()):
            layer = layers[position]
            has_ffn = not isinstance(layer.output, DroppedFFN)
            dropped = has_ffn and block in plan.neurons and len(plan.neurons[block]) == 0
            fit_ffn = has_ffn and not dropped
            # the original block: its targets and the next inputs
            _set_block(gates, block, None, None, 1.0)
            attn_targets, ffn_targets = [], []
            for index, (args, kwargs, tokens) in enumerate(captured):
                watched = (layer.attention.output, layer.output) if fit_ffn else (layer.attention.output,)
                *inputs, teacher[index] = _run(layer, teacher[index], args, kwargs, *watched)
                context, residual = inputs[0]
                attn_targets.append((layer.attention.output.dense(context) + residual)[tokens])
                if fit_ffn:
                    act, attended = inputs[1]
                    select = _tokens(tokens, block == last and last_first_token)
                    ffn_targets.append((layer.output.dense(act) + attended)[select])
            # the pruned block: attention first
            neurons = neuron_masks.get(block)
            _set_block(gates, block, head_masks[block], neurons, 0.0 if dropped else 1.0)
            kept = plan.heads[block]
            normal = _Normal(len(kept), device)
            bias = layer.attention.output.dense.bias
            for index, (args, kwargs, tokens) in enumerate(captured):
                (context, residual), _ = _run(layer, student[index], args, kwargs, layer.attention.output, stop=True)
                terms = _attention_terms(layer, context[tokens], kept)
                goal = attn_targets[index] - residual[tokens] - (bias if bias is not None else 0)
                _accumulate(normal, terms.flatten(1), goal.flatten())
            scales, fix = _decide(normal, block, "attn", damp, max_scale)
            fixes.append(fix)
            head_scales[block][kept.to(device)] = scales.to(device, head_scales[block].dtype)
            _set_block(gates, block, head_scales[block], neurons, 0.0 if dropped else 1.0)
            if fit_ffn:
                kept = plan.neurons[block].to(device)
                columns = layer.output.dense.weight[:, kept]  # [H, k]
                normal = _Normal(len(kept), device)
                products = (columns.T @ columns).double()
                bias = layer.output.dense.bias
                for index, (args, kwargs, tokens) in enumerate(captured):
                    (act, attended), _ = _run(layer, student[index], args, kwargs, layer.output, stop=True)
                    select = _tokens(tokens, block == last and last_first_token)
                    act = act[select][:, kept]
                    goal = ffn_targets[index] - attended[select] - (bias if bias is not None else 0)
                    # the big products in the model's dtype, summed in float64
                    normal.gram += (act.T @ act).double() * products
                    normal.cross += ((goal @ columns) * act).sum(0).double()
                    normal.target += float(goal.double().square().sum())
                    normal.elements += goal.numel()
                scales, fix = _decide(normal, block, "ffn", damp, max_scale)
                fixes.append(fix)
                neuron_scales[block][kept] = scales.to(device, neuron_scales[block].dtype)
                _set_block(gates, block, head_scales[block], neuron_scales[block], 1.0)
            for index, (args, kwargs, _) in enumerate(captured):
                student[index] = layer(student[index], *args[1:], **kwargs)
    return Scales(
        heads={b: s.cpu() for b, s in head_scales.items()},
        neurons={b: s.cpu() for b, s in neuron_scales.items()},
        fixes=fixes,
        seconds=time.perf_counter() - start,
    )


def _tokens(tokens: torch.Tensor, first_only: bool) -> torch.Tensor:
    if not first_only:
        return tokens
    first = torch.zeros_like(tokens)
    first[:, 0] = tokens[:, 0]
    return first


def _accumulate(normal: _Normal, terms: torch.Tensor, goal: torch.Tensor) -> None:
    """Add ``terms`` (``[units, elements]``) and ``goal`` (``[elements]``): products in their dtype, sums in float64."""
    normal.gram += (terms @ terms.T).double()
    normal.cross += (terms @ goal).double()
    normal.target += float(goal.double().square().sum())
    normal.elements += goal.numel()


@torch.no_grad()
def fold_scales(model: nn.Module, scales: Scales) -> None:
    """Multiply the output columns of every head and neuron of ``model`` by its scale (in place)."""
    layers = encoder_layers(model)
    for block, position in block_positions(model).items():
        layer = layers[position]
        if block in scales.heads:
            weight = layer.attention.output.dense.weight
            size = int(layer.attention.self.attention_head_size)
            factors = scales.heads[block].to(weight.device, weight.dtype).repeat_interleave(size)
            weight.mul_(factors[None, :])
        if block in scales.neurons:
            weight = layer.output.dense.weight
            weight.mul_(scales.neurons[block].to(weight.device, weight.dtype)[None, :])
