"""Evolutionary search for the most accurate trim whose predicted latency meets a target, and the Pareto front.

:func:`evolve` starts from the hand-made patterns that meet the target and random specs of the space
that do (rejection sampling), then for each generation keeps the ``parents`` best by estimated accuracy
and breeds ``population`` new feasible specs from them (half by mutation, half by crossover), never
scoring a spec twice. It stops after ``generations`` or at ``deadline`` (a ``time.monotonic()`` value),
whichever comes first. Feasible: predicted speed-up over the untrimmed model ≥ ``min_speedup`` and,
when ``max_speedup`` is given, ≤ it (AutoTinyBERT searches within 0.85–1.1× of its target latency: a
trim faster than asked gives up accuracy, and only the estimate's noise can prefer it).
Ties in the estimate go to the faster spec.

:func:`choose_finalist` then re-scores the best candidates and the hand-made patterns on fresh rows and
picks the winner by that score: the best of ~150 noisy estimates is biased upwards (the winner's curse),
a fresh score of each finalist is not.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trimbert.errors import TrimbertError
from trimbert.search.predictor import Predictor
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimSpec


@dataclass
class Candidate:
    """One scored spec: predicted latency and speed-up, estimated accuracy, where it came from."""

    spec: TrimSpec
    predicted_ms: float
    predicted_speedup: float
    estimate: float
    origin: str  # "pattern: <name>", "random" or "evolved"
    generation: int
    final_estimate: float | None = None  # the fresh re-score, for finalists
    verified: float | None = None  # a real fine-tune's metric on the fresh rows (search --verify), mean over seeds
    verified_by_seed: list[float] | None = None  # each seed's, with --verify-seeds

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "summary": self.spec.summary(),
            "predicted_ms": self.predicted_ms,
            "predicted_speedup": self.predicted_speedup,
            "estimate": self.estimate,
            "final_estimate": self.final_estimate,
            "verified": self.verified,
            "verified_by_seed": self.verified_by_seed,
            "origin": self.origin,
            "generation": self.generation,
        }


@dataclass
class SearchResult:
    candidates: list[Candidate]
    best: Candidate | None
    generations: int
    time_s: float
    stopped: str  # "generations" | "deadline" | "space exhausted"
    notes: dict[str, Any] = field(default_factory=dict)

    def front(self) -> list[Candidate]:
        return pareto_front(self.candidates)


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates no other one beats on both predicted latency (lower) and estimate (higher), fastest first."""
    ranked = sorted(candidates, key=lambda item: (item.predicted_ms, -item.estimate))
    front: list[Candidate] = []
    for candidate in ranked:
        if not front or candidate.estimate > front[-1].estimate:
            front.append(candidate)
    return front


def _rank(candidate: Candidate) -> tuple[float, float]:
    return (-candidate.estimate, candidate.predicted_ms)


def evolve(
    space: SearchSpace,
    estimate: Callable[[TrimSpec], float],
    predictor: Predictor,
    *,
    min_speedup: float,
    max_speedup: float | None = None,
    patterns: dict[str, TrimSpec] | None = None,
    population: int = 16,
    parents: int = 6,
    generations: int = 8,
    mutation: float = 0.25,
    seed: int = 0,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    least: int = 0,
) -> SearchResult:
    """Search ``space`` for the spec with the best ``estimate`` among those ``predictor`` says are at
    least ``min_speedup`` (and at most ``max_speedup``) times faster than the untrimmed model (see the
    module docstring). ``deadline`` is a ``clock()`` time; ``least`` candidates are scored even past it."""
    if population < 2 or parents < 1 or generations < 1:
        raise TrimbertError("search: population >= 2, parents >= 1 and generations >= 1 are needed")
    start = time.perf_counter()
    rng = random.Random(seed)
    seen: dict[TrimSpec, Candidate] = {}
    stopped = "generations"

    def feasible(spec: TrimSpec) -> bool:
        speedup = predictor.speedup(spec)
        return speedup >= min_speedup and (max_speedup is None or speedup <= max_speedup)

    def score(spec: TrimSpec, origin: str, generation: int) -> None:
        ms = predictor.predict(spec)
        candidate = Candidate(spec, ms, predictor.speedup(spec), estimate(spec), origin, generation)
        seen[spec] = candidate

    def out_of_time() -> bool:
        return deadline is not None and len(seen) >= least and clock() >= deadline

    for name, spec in (patterns or {}).items():
        if space.contains(spec) and feasible(spec) and spec not in seen and not out_of_time():
            score(spec, f"pattern: {name}", 0)
    fresh = _draw(lambda: space.random_spec(rng), feasible, seen, population)
    for spec in fresh:
        if out_of_time():
            stopped = "deadline"
            break
        score(spec, "random", 0)
    generation = 0
    for generation in range(1, generations + 1):
        if stopped == "deadline" or out_of_time():
            stopped, generation = "deadline", generation - 1
            break
        ranked = sorted(seen.values(), key=_rank)[:parents]
        if not ranked:
            stopped = "space exhausted"
            break
        specs = [item.spec for item in ranked]
        children = _draw(lambda specs=specs: _child(space, specs, rng, mutation), feasible, seen, population)
        if not children:
            stopped = "space exhausted"
            break
        for spec in children:
            if out_of_time():
                stopped = "deadline"
                break
            score(spec, "evolved", generation)
        if stopped == "deadline":
            break
    candidates = list(seen.values())
    best = min(candidates, key=_rank) if candidates else None
    return SearchResult(candidates, best, generation, time.perf_counter() - start, stopped)


def choose_finalist(
    result: SearchResult, rescore: Callable[[TrimSpec], float], finalists: int, *,
    deadline: float | None = None, clock: Callable[[], float] = time.monotonic,
) -> list[Candidate]:
    """Re-score the ``finalists`` best candidates and every hand-made pattern among the candidates with
    ``rescore`` (setting their ``final_estimate``), make the best by that score ``result.best`` (ties to
    the faster), and return the finalists, best first. With ``finalists`` 0, nothing changes. Past
    ``deadline`` (a ``clock()`` time) no more are re-scored (the best estimate always is)."""
    if finalists <= 0 or not result.candidates:
        return []
    ranked = sorted(result.candidates, key=_rank)
    chosen = ranked[:finalists] + [c for c in ranked[finalists:] if c.origin.startswith("pattern:")]
    for index, candidate in enumerate(chosen):
        if index and deadline is not None and clock() >= deadline:
            result.notes["finalists_stopped"] = f"re-scored {index} of {len(chosen)} before the budget's deadline"
            chosen = chosen[:index]
            break
        candidate.final_estimate = rescore(candidate.spec)
    chosen.sort(key=lambda item: (-item.final_estimate, item.predicted_ms))
    result.best = chosen[0]
    return chosen


def _child(space: SearchSpace, parents: list[TrimSpec], rng: random.Random, mutation: float) -> TrimSpec:
    """Half the time a mutated crossover of two parents, else a mutated parent."""
    if len(parents) > 1 and rng.random() < 0.5:
        first, second = rng.sample(parents, 2)
        return space.mutate(space.crossover(first, second, rng), rng, mutation / 2)
    return space.mutate(rng.choice(parents), rng, mutation)


def _draw(make: Callable[[], TrimSpec], feasible: Callable[[TrimSpec], bool], seen: dict, count: int) -> list[TrimSpec]:
    """Up to ``count`` new feasible specs from ``make`` (giving up after 50 tries per spec)."""
    found: list[TrimSpec] = []
    for _ in range(50 * count):
        if len(found) == count:
            break
        spec = make()
        if spec not in seen and spec not in found and feasible(spec):
            found.append(spec)
    return found
