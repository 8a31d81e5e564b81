"""The latency cost the mask search budgets: a linear cost in heads, FFN neurons and FFNs kept.

The search (:mod:`trimbert.compress.masks`) is exact for a cost of the form::

    ms = fixed_ms + per_head_ms · heads kept + per_neuron_ms · neurons kept + Σ_FFNs kept ffn_ms(block)

summed over the blocks of the model being compressed (``fixed_ms``: everything the search does not
change: embeddings, head, each block's attention fixed part, LayerNorms that stay; ``ffn_ms(block)``:
what an FFN costs beyond its neurons and is saved when it loses all of them: its add, biases and the
LayerNorm after it, ``per_ffn_ms`` unless that block differs). :func:`linear_cost` reads these numbers off any additive latency model by
probing it: a :class:`LinearCost` as is, or ``predict(spec) -> ms`` (a callable, or an object with a
``predict`` method such as :class:`trimbert.search.predictor.Predictor`) of specs in the ORIGINAL
model's numbering. It times one narrowed FFN, each dropped FFN and one pruned self-attention against
the model as it is, then checks the fitted line on a spec that changes all three in other blocks; a
cost that is not additive there (the predictor's ``per-width`` form, a cost with interactions) is
refused in one line, so the search never optimizes something other than what the predictor predicts.
A latency model that cannot price a pruned head or a dropped FFN (it raises :class:`TrimbertError`,
as a predictor whose probes never varied them does) keeps every head or every FFN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from trimbert.errors import TrimbertError
from trimbert.model.structure import DroppedFFN, applied_spec, block_positions, encoder_layers
from trimbert.spec import IDENTITY, TrimSpec

CHECK_TOLERANCE = 1e-6  # relative: the probe line must predict the check spec to this


@dataclass(frozen=True)
class LinearCost:
    """``fixed_ms + per_head_ms·heads + per_neuron_ms·neurons + Σ_kept FFNs ffn_ms(block)`` (module docstring).

    ``per_ffn_ms``: what an FFN costs beyond its neurons; ``ffn_ms_by_block`` overrides it for single
    blocks (an FFN whose LayerNorm was stripped saves less when dropped). ``can_drop_ffn`` /
    ``can_prune_heads``: False when the cost cannot price a dropped FFN / a pruned head (a predictor
    fitted without one); the search then keeps every FFN / every head.
    """

    fixed_ms: float
    per_head_ms: float = 0.0
    per_neuron_ms: float = 0.0
    per_ffn_ms: float = 0.0
    ffn_ms_by_block: Mapping[int, float] = field(default_factory=dict)
    can_drop_ffn: bool = True
    can_prune_heads: bool = True

    def ffn_ms(self, block: int) -> float:
        """What FFN ``block`` costs beyond its neurons (saved when it keeps none)."""
        return float(self.ffn_ms_by_block.get(block, self.per_ffn_ms))

    def ms(self, heads: int, neurons: int, ffns: Iterable[int] | int) -> float:
        """Predicted milliseconds with ``heads`` heads and ``neurons`` FFN neurons kept in all, and the FFNs of
        the blocks ``ffns`` kept (a number of FFNs counts each at ``per_ffn_ms``)."""
        ffn_ms = self.per_ffn_ms * ffns if isinstance(ffns, int) else sum(self.ffn_ms(block) for block in ffns)
        return self.fixed_ms + self.per_head_ms * heads + self.per_neuron_ms * neurons + ffn_ms

    def summary(self) -> dict[str, Any]:
        """JSON-ready costs."""
        return {
            "fixed_ms": self.fixed_ms,
            "per_head_ms": self.per_head_ms,
            "per_neuron_ms": self.per_neuron_ms,
            "per_ffn_ms": self.per_ffn_ms,
            "ffn_ms_by_block": {str(block): ms for block, ms in self.ffn_ms_by_block.items()},
            "can_drop_ffn": self.can_drop_ffn,
            "can_prune_heads": self.can_prune_heads,
        }


@dataclass(frozen=True)
class Units:
    """What the model has now: block (original numbering) -> heads; FFN block -> neurons."""

    heads: dict[int, int]
    widths: dict[int, int]

    @property
    def totals(self) -> tuple[int, int, list[int]]:
        """Heads, neurons and the FFN blocks, as :meth:`LinearCost.ms` takes them."""
        return sum(self.heads.values()), sum(self.widths.values()), sorted(self.widths)


def model_units(model: nn.Module) -> Units:
    """The heads of every present block and the neurons of every present FFN of ``model``."""
    layers = encoder_layers(model)
    heads: dict[int, int] = {}
    widths: dict[int, int] = {}
    for block, position in block_positions(model).items():
        layer = layers[position]
        heads[block] = int(layer.attention.self.num_attention_heads)
        if not isinstance(layer.output, DroppedFFN):
            widths[block] = int(layer.intermediate.dense.out_features)
    return Units(heads=heads, widths=widths)


def _with(before: TrimSpec, *, width: tuple[int, int] | None = None, drop: int | None = None,
          heads: tuple[int, int] | None = None) -> TrimSpec:
    """``before`` plus one narrowed FFN, one dropped FFN and/or one pruned self-attention."""
    widths = before.ffn_widths
    drop_ffn = set(before.drop_ffn)
    layernorm = list(before.layernorm)
    if width is not None:
        widths[width[0]] = width[1]
    if drop is not None:
        drop_ffn.add(drop)
        widths.pop(drop, None)
        layernorm = [name for name in layernorm if name != f"{drop}.ffn"]
    counts = before.head_counts
    if heads is not None:
        counts[heads[0]] = heads[1]
    return replace(
        before,
        drop_ffn=tuple(sorted(drop_ffn)),
        ffn_width=widths,
        heads=counts,
        layernorm=tuple(layernorm),
        layernorm_replacement=before.layernorm_replacement if layernorm else IDENTITY,
        notes={},
    )


def _predictor(cost: Any) -> Callable[[TrimSpec], float]:
    if callable(getattr(cost, "predict", None)):
        return cost.predict
    if callable(cost):
        return cost
    raise TrimbertError("compress: the cost must be a LinearCost, a predict(spec) -> ms function or a predictor")


def _probe(predict: Callable[[TrimSpec], float], spec: TrimSpec) -> float | None:
    """The prediction for ``spec``, or None when the latency model cannot price it."""
    try:
        value = float(predict(spec))
    except TrimbertError:
        return None
    if not math.isfinite(value):
        raise TrimbertError(f"compress: the latency model predicts {value} ms for {spec.summary()}")
    return value


def linear_cost(cost: Any, model: nn.Module) -> LinearCost:
    """``cost`` as a :class:`LinearCost` for ``model`` (a LinearCost is returned as it is; see the module docstring)."""
    if isinstance(cost, LinearCost):
        return cost
    predict = _predictor(cost)
    units = model_units(model)
    before = applied_spec(model)
    if not units.widths:
        raise TrimbertError("compress: the model has no FFN left to prune")
    wide = [block for block in sorted(units.widths) if units.widths[block] >= 2]
    many = [block for block in sorted(units.heads) if units.heads[block] >= 2]
    base = _probe(predict, before)
    if base is None:
        raise TrimbertError("compress: the latency model cannot price the model as it is")
    per_neuron = 0.0
    if wide:
        block, narrow = wide[0], units.widths[wide[0]] // 2
        narrowed = _probe(predict, _with(before, width=(block, narrow)))
        if narrowed is None:
            raise TrimbertError("compress: the latency model cannot price a narrowed FFN")
        per_neuron = (base - narrowed) / (units.widths[block] - narrow)
    per_head, can_prune = 0.0, bool(many)
    if many:
        block, fewer = many[0], units.heads[many[0]] // 2
        pruned = _probe(predict, _with(before, heads=(block, fewer)))
        can_prune = pruned is not None
        per_head = (base - pruned) / (units.heads[block] - fewer) if pruned is not None else 0.0
    by_block: dict[int, float] = {}
    for block in sorted(units.widths):
        dropped = _probe(predict, _with(before, drop=block))
        if dropped is None:
            by_block = {}
            break
        by_block[block] = base - dropped - per_neuron * units.widths[block]
    can_drop = bool(by_block)
    per_ffn = by_block[min(by_block)] if can_drop else 0.0
    heads, neurons, ffns = units.totals
    line = LinearCost(
        fixed_ms=base - per_head * heads - per_neuron * neurons - sum(by_block.values()),
        per_head_ms=per_head,
        per_neuron_ms=per_neuron,
        per_ffn_ms=per_ffn,
        ffn_ms_by_block={block: ms for block, ms in by_block.items() if ms != per_ffn},
        can_drop_ffn=can_drop,
        can_prune_heads=can_prune,
    )
    _check(predict, line, before, units, wide, many if can_prune else [])
    return line


def _check(predict: Callable[[TrimSpec], float], line: LinearCost, before: TrimSpec, units: Units,
           wide: list[int], many: list[int]) -> None:
    """Refuse a cost the line does not reproduce on a spec that changes units in other blocks at once."""
    heads, neurons, ffns = units.totals
    spec = before
    if len(wide) > 1:
        block = wide[-1]
        kept = max(1, units.widths[block] // 4)
        spec, neurons = _with(spec, width=(block, kept)), neurons - units.widths[block] + kept
    if len(many) > 1:
        block = many[-1]
        kept = max(1, units.heads[block] // 4)
        spec, heads = _with(spec, heads=(block, kept)), heads - units.heads[block] + kept
    candidates = [block for block in ffns[1:] if len(wide) < 2 or block != wide[-1]]
    if line.can_drop_ffn and candidates:
        block = candidates[0]
        spec, neurons = _with(spec, drop=block), neurons - units.widths[block]
        ffns = [other for other in ffns if other != block]
    predicted = _probe(predict, spec)
    expected = line.ms(heads, neurons, ffns)
    if predicted is None or abs(predicted - expected) > CHECK_TOLERANCE * max(1.0, abs(predicted)):
        shown = "cannot price it" if predicted is None else f"predicts {predicted:.4f} ms"
        raise TrimbertError(
            f"compress: the latency model is not additive in heads and neurons (it {shown} for "
            f"{spec.summary()}, a linear cost {expected:.4f} ms); fit it in the linear form"
        )
