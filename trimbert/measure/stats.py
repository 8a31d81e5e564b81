"""Paired speed-up ratios and how sure they are: per-round ratios, their median, a bootstrap interval.

Models timed alternately (:func:`trimbert.measure.benchmark.benchmark`) share every round's
conditions, so the ratio of the baseline's step time to a variant's *in the same round* cancels most
of what a busy machine does to both. :func:`paired_ratio` takes the median of those per-round ratios
and a percentile bootstrap interval over rounds (resampled with replacement, seeded, so the same
timings give the same interval). A ratio is *stable* when the interval lies within ± ``tolerance``
of it; an unstable one is re-measured by the caller and, if still wide, reported as unstable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trimbert.errors import TrimbertError

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class PairedRatio:
    """``ratio`` = median over rounds of baseline time / model time (above 1: the model is faster),
    with its ``confidence`` bootstrap interval ``[low, high]`` over ``rounds`` paired rounds."""

    ratio: float
    low: float
    high: float
    rounds: int
    confidence: float = CONFIDENCE

    @property
    def relative_half_width(self) -> float:
        """Half the interval's width as a share of the ratio (0.05 = ± 5 %)."""
        return (self.high - self.low) / 2 / self.ratio

    def stable(self, tolerance: float) -> bool:
        """Whether the whole interval lies within ± ``tolerance`` (a share) of the ratio."""
        return self.low >= self.ratio * (1 - tolerance) and self.high <= self.ratio * (1 + tolerance)

    def to_dict(self, tolerance: float) -> dict[str, Any]:
        return {**asdict(self), "stable": self.stable(tolerance), "tolerance": tolerance}


def paired_ratio(
    baseline_ms: Sequence[float],
    model_ms: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PairedRatio:
    """The paired speed-up of a model over a baseline timed in the same rounds (see the module docstring)."""
    baseline = np.asarray(baseline_ms, dtype=np.float64)
    model = np.asarray(model_ms, dtype=np.float64)
    if baseline.shape != model.shape or baseline.ndim != 1 or len(baseline) == 0:
        raise TrimbertError(
            f"paired ratio: need the same number of rounds for both, got {len(baseline)} and {len(model)}"
        )
    if (baseline <= 0).any() or (model <= 0).any():
        raise TrimbertError("paired ratio: step times must be positive")
    ratios = baseline / model
    rng = np.random.default_rng(seed)
    medians = np.median(ratios[rng.integers(0, len(ratios), size=(resamples, len(ratios)))], axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return PairedRatio(float(np.median(ratios)), float(low), float(high), len(ratios), confidence)
