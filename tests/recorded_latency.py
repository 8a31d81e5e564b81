"""Recorded probe timings for tests that fit a latency predictor, so that what they assert never depends on
how busy this machine is: :func:`use_recorded_latency` makes ``trimbert.search.latency.measure_specs``
return :func:`recorded_ms` for every probe trim instead of timing it (issue 25, item 5)."""

from __future__ import annotations

import trimbert.search.latency
from trimbert.spec import TrimSpec, encoder_layernorms

# Recorded component costs (ms) standing in for the probe timings: a block's fixed attention part, a
# block's worth of heads, an FFN's fixed part, a full-width FFN's neurons, a LayerNorm, and each
# normalizer beyond softmax. The untrimmed tiny checkpoint (2 blocks, 4 LayerNorms) costs 10.4 ms.
COSTS = {"const": 1.0, "block": 0.5, "heads": 1.5, "ffn": 0.5, "neurons": 2.0, "layernorm": 0.1, "attention": {"relu": -0.3}}
TINY_SHAPE = (2, 64, 4)  # the tiny checkpoint's blocks, FFN width and heads (tests/conftest.py)


def recorded_ms(spec: TrimSpec, layers: int = 2, intermediate: int = 64, heads: int = 4) -> float:
    """What the probe run "measured" for ``spec`` of a model of this shape: the sum of its components' costs."""
    counts, widths = spec.head_counts, spec.ffn_widths
    ms = COSTS["const"] + COSTS["layernorm"] * (len(encoder_layernorms(layers, spec.drop_ffn, spec.drop_layers)) - len(spec.layernorm))
    for block in spec.kept_layers(layers):
        ms += COSTS["block"] + COSTS["heads"] * counts.get(block, heads) / heads + COSTS["attention"].get(spec.attention, 0.0)
        if block not in spec.drop_ffn:
            ms += COSTS["ffn"] + COSTS["neurons"] * widths.get(block, intermediate) / intermediate
    return ms


def recorded_speedup(spec: TrimSpec, shape: tuple[int, int, int] = TINY_SHAPE) -> float:
    """The speed-up over the untrimmed model that the recorded timings give ``spec``."""
    return recorded_ms(TrimSpec(), *shape) / recorded_ms(spec, *shape)


def use_recorded_latency(monkeypatch) -> list[list[TrimSpec]]:
    """Fit every latency predictor on :func:`recorded_ms` (of the timed model's own shape) instead of timing
    the probes. Returns the list that each probe run appends the specs it was asked to time to."""
    runs: list[list[TrimSpec]] = []

    def measure_specs(model, specs, conditions, **_):
        config = model.config
        shape = config.num_hidden_layers, config.intermediate_size, config.num_attention_heads
        runs.append(list(specs))
        rows = []
        for spec in specs:
            ms = recorded_ms(spec, *shape)
            rows.append({"spec": spec.to_dict(), "summary": spec.summary(), "measured_ms": ms, "p10_ms": ms, "p90_ms": ms})
        return rows

    monkeypatch.setattr(trimbert.search.latency, "measure_specs", measure_specs)
    return runs
