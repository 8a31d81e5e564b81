"""Paired ratios: the median of per-round ratios and a seeded bootstrap interval."""

import statistics

import pytest

from trimbert.errors import TrimbertError
from trimbert.measure.stats import PairedRatio, paired_ratio


def test_a_constant_ratio_has_no_width():
    ratio = paired_ratio([10.0, 20.0, 40.0], [5.0, 10.0, 20.0])
    assert ratio == PairedRatio(2.0, 2.0, 2.0, 3)
    assert ratio.stable(0.01) and ratio.relative_half_width == 0.0


def test_rounds_cancel_a_shared_slowdown():
    # The machine gets 3x slower in rounds 2-3 for both models (their ratio stays 1.5), and in round 5 a spike
    # slows the model alone 10x. The paired ratio, the median of the per-round ratios, is 1.5; a ratio of
    # means, a ratio of medians and a mean of ratios all differ from it (each would pass for it otherwise).
    base = [30.0, 90.0, 90.0, 30.0, 30.0]
    model = [20.0, 60.0, 60.0, 20.0, 200.0]
    assert [b / m for b, m in zip(base, model, strict=True)] == [1.5, 1.5, 1.5, 1.5, 0.15]
    assert paired_ratio(base, model).ratio == 1.5
    assert statistics.fmean(base) / statistics.fmean(model) == 0.75
    assert statistics.median(base) / statistics.median(model) == 0.5
    assert statistics.fmean(b / m for b, m in zip(base, model, strict=True)) == pytest.approx(1.23)


def test_the_interval_is_seeded_and_contains_the_median():
    base = [10.0, 11.0, 9.5, 10.2, 12.0, 10.1, 9.9, 10.4]
    model = [6.0, 7.5, 6.1, 6.6, 6.2, 8.0, 6.4, 6.3]
    first, again = paired_ratio(base, model), paired_ratio(base, model)
    assert first == again
    assert first.low <= first.ratio <= first.high and first.low < first.high
    assert first.ratio == statistics.median(b / m for b, m in zip(base, model, strict=True))
    assert first.stable(0.5) and not first.stable(0.001)


def test_bad_inputs():
    with pytest.raises(TrimbertError, match="same number of rounds"):
        paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(TrimbertError, match="must be positive"):
        paired_ratio([1.0, 0.0], [1.0, 1.0])
