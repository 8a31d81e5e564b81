"""The latency predictor: what a trim costs on this device and runtime, without timing it.

A spec's latency is modelled as a sum of component costs (AutoTinyBERT fits an MLP on uniform
architectures; per-block trims are additive, so an additive model is the obvious start)::

    ms = c_const + c_block · blocks + c_heads · (heads kept / A) + c_ffn · FFNs + c_neuron · (FFN neurons / I)
         + c_ln · LayerNorms + Σ_normalizer c_attn[normalizer] · blocks using it

``const`` is embeddings, pooler and head; ``block`` the fixed part of a block's attention sub-layer
(its output projection's add, the residual); ``heads`` (feature ``attn_heads``) the cost of a block's
worth of attention heads (``A`` = the model's ``num_attention_heads``: Q/K/V, scores, softmax, context,
output projection; a block not pruned counts 1); ``ffn`` the fixed cost of an FFN sub-layer (its add,
bias, LayerNorm dispatch), ``neuron`` its cost per intermediate-size worth of neurons; ``ln`` one
LayerNorm; ``attn[n]`` how much normalizer ``n`` costs beyond softmax. Without probes that prune heads,
``attn_heads`` moves with ``blocks`` and cannot be told apart from it: it is then not fitted, and the
predictor refuses specs with heads (the auxiliary feature ``pruned_heads`` is fixed at 0).
:meth:`Predictor.linear_costs` gives the linear form's costs per unit (ms per block, head, FFN, neuron,
LayerNorm) for compression methods that need a linear latency cost.

The component costs are measured together, not in isolation (:mod:`trimbert.search.latency` times the
probe trims), and :func:`fit_predictor` fits them by least squares on relative error (rows weighted by
1 / measured ms). Where an FFN's cost is not linear in its width (int8 kernels can be slower at some
widths than at wider ones), the ``per-width`` form replaces ``ffn`` and ``neuron`` by one cost per width,
kept when its leave-one-out error over the probes is clearly (10%) lower.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from trimbert.errors import TrimbertError
from trimbert.spec import NORMALIZER_NAMES, SOFTMAX, TrimSpec, encoder_layernorms

ATTENTION_FEATURES = tuple(f"attn:{name}" for name in NORMALIZER_NAMES)
FEATURES = ("const", "blocks", "attn_heads", "ffns", "ffn_neurons", "layernorms", *ATTENTION_FEATURES)
# attn_heads is fitted only when some probe prunes heads (pruned_heads varies); else it moves with blocks
PRUNED_HEADS = "pruned_heads"
FORMS = ("linear", "per-width")  # FFN cost linear in its width, or one cost per width (fitted: ffn@<width>)


def spec_features(
    spec: TrimSpec, num_layers: int, intermediate_size: int, num_attention_heads: int | None = None
) -> dict[str, float]:
    """The component counts of a trim of the untrimmed model (the predictor's inputs): every feature of
    :data:`FEATURES`, plus ``ffn@<width>``, the number of FFNs at each width present, and
    ``pruned_heads``, the blocks' worth of heads removed (``blocks − attn_heads``). A spec with
    ``heads`` needs ``num_attention_heads``."""
    kept = spec.kept_layers(num_layers)
    counts = spec.head_counts
    if counts and not num_attention_heads:
        raise TrimbertError("latency predictor: a spec with heads needs the model's number of attention heads")
    attn_heads = sum(counts.get(block, num_attention_heads) / num_attention_heads for block in kept) if counts else float(len(kept))
    ffns = [block for block in kept if block not in spec.drop_ffn]
    widths = spec.ffn_widths
    layernorms = len(encoder_layernorms(num_layers, spec.drop_ffn, spec.drop_layers)) - len(spec.layernorm)
    features = {
        "const": 1.0,
        "blocks": float(len(kept)),
        "attn_heads": attn_heads,
        PRUNED_HEADS: len(kept) - attn_heads,
        "ffns": float(len(ffns)),
        "ffn_neurons": sum(widths.get(block, intermediate_size) for block in ffns) / intermediate_size,
        "layernorms": float(layernorms),
    }
    for name in NORMALIZER_NAMES:
        features[f"attn:{name}"] = float(len(kept)) if spec.attention == name else 0.0
    for block in ffns:
        key = f"ffn@{widths.get(block, intermediate_size)}"
        features[key] = features.get(key, 0.0) + 1.0
    return features


def _form_features(form: str, table: Sequence[dict[str, float]]) -> list[str]:
    """The features a form of the predictor uses (per-width: one per width seen in ``table``)."""
    if form == "linear":
        return list(FEATURES)
    widths = sorted({name for row in table for name in row if name.startswith("ffn@")}, key=lambda name: -int(name[4:]))
    return ["const", "blocks", "attn_heads", *widths, "layernorms", *ATTENTION_FEATURES]


@dataclass
class Conditions:
    """What a latency is measured under; two predictors are interchangeable only if these agree."""

    runtime: str
    device: str
    batch_size: int
    seq_len: int
    threads: int | None
    model_shape: dict[str, Any]
    processor: str = field(default_factory=lambda: f"{platform.machine()} {platform.processor()} x{os.cpu_count()}")
    torch_version: str = field(default_factory=lambda: torch.__version__)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def model_shape(config: Any) -> dict[str, Any]:
    keys = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size", "hidden_act")
    return {key: getattr(config, key, None) for key in keys}


@dataclass(frozen=True)
class LinearCosts:
    """The linear form's costs in ms per unit, exact for a linear predictor::

        ms = const_ms + block_ms · blocks + head_ms · heads + ffn_ms · FFNs + neuron_ms · neurons
             + layernorm_ms · LayerNorms + normalizer_ms[attention] · blocks

    ``blocks``: blocks present; ``heads``: attention heads kept, summed over the blocks present;
    ``FFNs``: FFN sub-layers present; ``neurons``: FFN neurons kept, summed over them; ``LayerNorms``:
    encoder LayerNorms left; ``normalizer_ms``: what a normalizer costs per block beyond softmax (only
    the fitted ones; softmax is 0). ``fixed``: the predictor's features no probe varied (``blocks``,
    ``pruned_heads``, ...): their cost is in ``const_ms`` and their cost per unit here is 0, so a trim
    that changes them is outside what was measured (:meth:`Predictor.predict` refuses it).
    ``refitted``: the costs are a linear refit of a per-width predictor's probes, not its own.
    """

    const_ms: float
    block_ms: float
    head_ms: float
    ffn_ms: float
    neuron_ms: float
    layernorm_ms: float
    normalizer_ms: dict[str, float]
    num_attention_heads: int
    intermediate_size: int
    fixed: tuple[str, ...] = ()
    refitted: bool = False

    def ms(self, *, blocks: float, heads: float, ffns: float, neurons: float, layernorms: float,
           attention: str = SOFTMAX) -> float:
        """The predicted milliseconds of a trim with these counts (see the class docstring)."""
        if attention != SOFTMAX and attention not in self.normalizer_ms:
            raise TrimbertError(f"latency costs: not fitted for attention {attention!r}")
        return (
            self.const_ms + self.block_ms * blocks + self.head_ms * heads + self.ffn_ms * ffns
            + self.neuron_ms * neurons + self.layernorm_ms * layernorms + self.normalizer_ms.get(attention, 0.0) * blocks
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Predictor:
    """Fitted component costs (ms) and what they were fitted on.

    ``num_attention_heads`` (0: unknown, as in a predictor cached before head pruning; read from
    ``conditions.model_shape`` where it says) is what ``attn_heads`` counts in. A predictor whose probes
    pruned no heads has ``pruned_heads`` in ``fixed`` (set here for older ones too), so a spec with
    heads is refused.
    """

    conditions: Conditions
    num_layers: int
    intermediate_size: int
    coefficients: dict[str, float]
    fitted: list[str]  # features with a fitted cost (they varied across the probes)
    fixed: dict[str, float] = field(default_factory=dict)  # the others: their value in every probe (in const)
    probes: list[dict[str, Any]] = field(default_factory=list)  # {spec, summary, measured_ms, p10_ms, p90_ms}
    baseline_ms: float = 0.0  # the untrimmed model, measured in the probe run (reported; ratios use predictions)
    fit_error: dict[str, Any] = field(default_factory=dict)
    form: str = "linear"  # see FORMS
    num_attention_heads: int = 0  # 0: unknown (a predictor fitted before heads could be pruned)

    def __post_init__(self) -> None:
        if not self.num_attention_heads:
            self.num_attention_heads = int(self.conditions.model_shape.get("num_attention_heads") or 0)
        if "attn_heads" not in self.fitted:
            self.fixed.setdefault(PRUNED_HEADS, 0.0)

    def predict(self, spec: TrimSpec) -> float:
        """Predicted milliseconds of one forward pass of the trimmed model."""
        if spec.heads and not self.num_attention_heads:
            raise TrimbertError("latency predictor: not fitted for pruned_heads (it does not know the model's head count)")
        features = spec_features(spec, self.num_layers, self.intermediate_size, self.num_attention_heads or None)
        unfitted = [name for name, value in self.fixed.items() if features.get(name, 0.0) != value]
        unfitted += [name for name in features if name.startswith("ffn@") and self.form == "per-width"
                     and name not in self.fitted and name not in self.fixed]
        if unfitted:
            raise TrimbertError(
                f"latency predictor: not fitted for {', '.join(unfitted)} (no probe varied it: measure with those in the space)"
            )
        return sum(self.coefficients[name] * features.get(name, 0.0) for name in self.fitted)

    def speedup(self, spec: TrimSpec) -> float:
        """Predicted speed-up over the untrimmed model: a ratio of two predictions, so that what the fit
        gets wrong for both cancels (one noisy timing of the untrimmed model does not shift every ratio)."""
        return self.predict(TrimSpec()) / self.predict(spec)

    def linear_costs(self, *, refit: bool = False) -> LinearCosts:
        """The costs per unit (:class:`LinearCosts`), exact for the linear form: ``costs.ms(...)`` of a
        spec's counts equals :meth:`predict`. A per-width predictor has no cost per neuron: it raises
        a :class:`TrimbertError`, or with ``refit=True`` fits the linear form on its probes and gives
        those costs (``refitted``; they then differ from :meth:`predict`, by the per-width form's gain)."""
        if self.form != "linear":
            if not refit:
                raise TrimbertError(
                    "latency predictor: its FFN cost is one cost per width (the per-width form), not linear in the "
                    "width: linear_costs(refit=True) refits the linear form on its probes"
                )
            rows = [(TrimSpec.from_dict(probe["spec"]), probe["measured_ms"]) for probe in self.probes]
            linear = fit_predictor(
                rows, self.num_layers, self.intermediate_size, self.conditions,
                num_attention_heads=self.num_attention_heads or None, form="linear",
            )
            return replace(linear.linear_costs(), refitted=True)
        cost = self.coefficients
        heads = self.num_attention_heads
        if "attn_heads" in self.fitted and not heads:
            raise TrimbertError("latency predictor: it does not know the model's head count (num_attention_heads)")
        return LinearCosts(
            const_ms=cost.get("const", 0.0),
            block_ms=cost.get("blocks", 0.0),
            head_ms=cost.get("attn_heads", 0.0) / heads if heads else 0.0,
            ffn_ms=cost.get("ffns", 0.0),
            neuron_ms=cost.get("ffn_neurons", 0.0) / self.intermediate_size,
            layernorm_ms=cost.get("layernorms", 0.0),
            normalizer_ms={name.removeprefix("attn:"): cost[name] for name in ATTENTION_FEATURES if name in cost},
            num_attention_heads=heads,
            intermediate_size=self.intermediate_size,
            fixed=tuple(self.fixed),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Predictor:
        return cls(**{**data, "conditions": Conditions(**data["conditions"])})


def _varies(table: Sequence[dict[str, float]], name: str) -> bool:
    """Whether a feature varies across ``table``; ``attn_heads`` only counts as varying when some rows
    prune heads and others fewer (``pruned_heads`` varies): else it is ``blocks`` again."""
    name = PRUNED_HEADS if name == "attn_heads" else name
    return any(row.get(name, 0.0) != table[0].get(name, 0.0) for row in table)


def _solve(table: Sequence[dict[str, float]], measured: np.ndarray, names: list[str]) -> tuple[list[str], np.ndarray]:
    """Least squares on relative error over the features that vary (``const`` always)."""
    fitted = [name for name in names if name == "const" or _varies(table, name)]
    matrix = np.array([[row.get(name, 0.0) for name in fitted] for row in table])
    weights = 1.0 / measured
    solution, *_ = np.linalg.lstsq(matrix * weights[:, None], measured * weights, rcond=None)
    return fitted, solution


def _loo_error(table: Sequence[dict[str, float]], measured: np.ndarray, names: list[str]) -> float:
    """Median relative error of each probe predicted by a fit on the others."""
    errors = []
    for left in range(len(table)):
        rest = [row for index, row in enumerate(table) if index != left]
        fitted, solution = _solve(rest, np.delete(measured, left), names)
        predicted = sum(table[left].get(name, 0.0) * value for name, value in zip(fitted, solution, strict=True))
        errors.append(abs(predicted - measured[left]) / measured[left])
    return float(np.median(errors))


def fit_predictor(
    rows: Sequence[tuple[TrimSpec, float]],
    num_layers: int,
    intermediate_size: int,
    conditions: Conditions,
    *,
    num_attention_heads: int | None = None,
    form: str | None = None,
) -> Predictor:
    """Costs minimizing Σ ((prediction − ms) / ms)², in the form (:data:`FORMS`) whose leave-one-out
    error over the probes is lower: linear in FFN width unless one cost per width predicts better
    (``form`` forces one). Specs with heads need ``num_attention_heads``."""
    if len(rows) < 3:
        raise TrimbertError("latency predictor: needs at least 3 measured specs to fit")
    if form is not None and form not in FORMS:
        raise TrimbertError(f"latency predictor: unknown form {form!r} (choose from {', '.join(FORMS)})")
    table = [spec_features(spec, num_layers, intermediate_size, num_attention_heads) for spec, _ in rows]
    measured = np.array([ms for _, ms in rows])
    loo = {name: _loo_error(table, measured, _form_features(name, table)) for name in FORMS}
    if form is None:
        # the richer form only when it predicts clearly better (10% lower error): fewer costs extrapolate better
        form = "per-width" if loo["per-width"] < 0.9 * loo["linear"] - 1e-9 else "linear"
    names = _form_features(form, table)
    fitted, solution = _solve(table, measured, names)
    predicted = np.array([[row.get(name, 0.0) for name in fitted] for row in table]) @ solution
    errors = np.abs(predicted - measured) / measured
    # a feature no probe varied: its value in every probe (attn_heads: no heads pruned in any probe)
    fixed = {name: table[0].get(name, 0.0) for name in names if name not in fitted and name != "attn_heads"}
    if "attn_heads" not in fitted:
        fixed[PRUNED_HEADS] = table[0][PRUNED_HEADS]
    return Predictor(
        conditions=conditions,
        num_layers=num_layers,
        intermediate_size=intermediate_size,
        coefficients={name: float(value) for name, value in zip(fitted, solution, strict=True)},
        fitted=fitted,
        fixed=fixed,
        fit_error={"median": float(np.median(errors)), "max": float(errors.max()), "loo_median": loo},
        form=form,
        num_attention_heads=num_attention_heads or 0,
    )
