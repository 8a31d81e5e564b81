"""The search's own steps (the end-to-end runs are in tests/cli/test_search_cli.py)."""

from trimbert.search.evolve import Candidate
from trimbert.search.run import to_verify
from trimbert.spec import TrimSpec


def _candidate(ms, estimate):
    return Candidate(TrimSpec(drop_ffn=(int(ms),)), ms, 9 / ms, estimate, "random", 0)


def test_verification_adds_the_best_pattern_when_the_best_finalists_hold_none():
    items = [_candidate(ms, 0.9 - ms / 100) for ms in (5, 6, 7, 8, 9)]
    items[3].origin, items[4].origin = "pattern: drop-ffn last:1", "pattern: drop-ffn first:1"
    assert to_verify(items, 2) == items[:2] + [items[3]]  # the better-scored pattern of the two
    assert to_verify(items, 4) == items[:4]  # a pattern is among them already
    assert to_verify(items[:3], 2) == items[:2]  # no pattern among the finalists
