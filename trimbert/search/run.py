"""``trimbert search``: the most accurate trim of a model whose predicted latency meets a target.

:func:`search` (1) fits or reuses the latency predictor for the device, runtime, batch size, sequence
length and threads (:mod:`trimbert.search.latency`, cached under ``cache_dir``), (2) trains the accuracy
estimator (:mod:`trimbert.search.estimator`), (3) runs the evolutionary search
(:mod:`trimbert.search.evolve`) seeded with the hand-made patterns, among the trims predicted between
``undershoot`` under the target and ``overshoot`` past it, (4) re-scores the finalists (the best candidates and the patterns) on
fresh rows and keeps the best by that score (with ``verify``: fine-tunes that many of the best
finalists, and the best hand-made pattern among the finalists, for real, into ``out/verify/``, and keeps
the one most accurate on the fresh rows), and (5) writes ``search.json``, ``front.md``, ``front.png``,
``best.json`` and ``variant.toml`` to ``out`` (:mod:`trimbert.search.outputs`).

The output folder is written atomically (nothing is left half-written).
:func:`trimbert.search.winner.finetune_best` (``search --finetune``) then trains the chosen spec for real.
"""

from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from trimbert.core.outputs import atomic_output_dir, check_output_dir
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.model import checkpoint
from trimbert.model.structure import config_spec
from trimbert.search.budget import MARGIN, Plan, Then, plan_search
from trimbert.search.costs import Costs, count_rows, measure_costs
from trimbert.search.estimator import SCORERS, build_estimator
from trimbert.search.evolve import Candidate, SearchResult, choose_finalist, evolve
from trimbert.search.latency import build_predictor, cached_predictor
from trimbert.search.outputs import SearchReport, write_outputs
from trimbert.search.predictor import Conditions, Predictor, model_shape
from trimbert.search.settings import SearchSettings
from trimbert.search.space import Block, SearchSpace, fixed_patterns
from trimbert.spec import TrimRequest, TrimSpec
from trimbert.train.settings import FinetuneSettings


def search_space(settings: SearchSettings, config: Any) -> SearchSpace:
    return SearchSpace(
        num_layers=config.num_hidden_layers,
        intermediate_size=config.intermediate_size,
        widths=settings.width_list(config.intermediate_size),
        normalizers=settings.normalizer_list(),
        max_drop_layers=settings.max_drop_layers,
        layernorms=settings.layernorms,
        num_attention_heads=config.num_attention_heads,
        heads=settings.head_list(),
    )


def latency_predictor(
    model_source: str, config: Any, space: SearchSpace, settings: SearchSettings, cache_dir: Path
) -> tuple[Predictor, bool]:
    """The cached predictor for these conditions, or one fitted now (the model is loaded only then)."""
    conditions = Conditions(
        runtime=settings.runtime,
        device=settings.device,
        batch_size=settings.batch_size,
        seq_len=settings.seq_len,
        threads=settings.threads,
        model_shape=model_shape(config),
    )

    def build() -> Predictor:
        model = checkpoint.load(model_source, head="sequence-classification", config_overrides={"num_labels": 2}).eval()
        with tempfile.TemporaryDirectory(prefix="trimbert-probes-") as work:
            return build_predictor(
                model, space, conditions, probes=settings.probes, repeats=settings.repeats,
                seed=settings.search_seed, work_dir=Path(work),
            )

    return cached_predictor(cache_dir, conditions, space, build)


def _check_reachable(space: SearchSpace, predictor: Predictor, min_speedup: float, seed: int) -> None:
    """Fail before any training when no trim of the space is predicted to reach the target: the
    smallest trims (the most blocks dropped, every FFN dropped or at the smallest width, every
    LayerNorm stripped, each normalizer) and 500 random ones are tried."""
    layers, strip = space.num_layers, space.layernorms
    blocks = [
        Block(present=False) if block >= layers - space.max_drop_layers
        else Block(True, space.ffn_choices()[-1], strip, strip, space.head_choices()[-1])
        for block in range(layers)
    ]
    smallest = [space.spec(blocks, attention) for attention in space.normalizers]
    rng = random.Random(seed)
    best = max(predictor.speedup(spec) for spec in [*smallest, *(space.random_spec(rng) for _ in range(500))])
    if best < min_speedup:
        raise TrimbertError(
            f"no trim in the search space is predicted to reach {min_speedup:.2f}x (the target less --undershoot; "
            f"at most {best:.2f}x): "
            "allow more (--max-drop-layers, --widths, --normalizers) or aim lower"
        )


def search(
    model_source: str,
    source: DataSource,
    out: str | Path,
    *,
    settings: SearchSettings,
    finetune: FinetuneSettings,
    cache_dir: str | Path,
    force: bool = False,
    progress: bool = False,
    then: Then | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    costs: Costs | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchReport:
    """Search trims of ``model_source`` for the task of ``source`` (see the module docstring).

    Before the estimator trains, the work is measured and planned (:mod:`trimbert.search.budget`):
    ``on_plan`` gets the :class:`~trimbert.search.budget.Plan`, and with ``settings.budget_minutes`` the
    plan (and each stage at run time) fits the budget, ``then`` (what ``search --finetune`` does after)
    included. ``costs`` replaces measuring them; ``clock`` (seconds) is what the budget is held to."""
    started = clock()
    out = check_output_dir(out, force, inputs=(model_source,))
    config = checkpoint.load_config(checkpoint.resolve_source(model_source))
    if not config_spec(config).is_empty:
        raise TrimbertError(f"{model_source} is already trimmed: search starts from an untrimmed checkpoint")
    space = search_space(settings, config)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    predictor, cached = latency_predictor(model_source, config, space, settings, Path(cache_dir))
    phases["latency_predictor_s"] = time.perf_counter() - start
    untrimmed_ms = predictor.predict(TrimSpec())
    if not (math.isfinite(untrimmed_ms) and untrimmed_ms > 0):
        raise TrimbertError(f"the latency predictor predicts {untrimmed_ms:.2f} ms for the untrimmed model: delete it from "
                            f"{cache_dir} to measure it again")
    if settings.latency_ms is not None and untrimmed_ms <= settings.latency_ms:
        raise TrimbertError(
            f"--latency-ms {settings.latency_ms:g}: the untrimmed model already meets it (predicted {untrimmed_ms:.2f} ms "
            f"for a batch of {settings.batch_size} × {settings.seq_len} tokens): nothing to trim; aim below {untrimmed_ms:.2f} ms"
        )
    min_speedup = settings.speedup if settings.speedup is not None else untrimmed_ms / settings.latency_ms
    floor = min_speedup * (1 - settings.undershoot)  # within the predictor's error of the target
    max_speedup = max(min_speedup, 1.0) * (1 + settings.overshoot)
    _check_reachable(space, predictor, floor, settings.search_seed)
    start = time.perf_counter()
    plan = _plan(model_source, source, space, predictor, settings, finetune, (floor, max_speedup), costs=costs,
                 then=then, spent_s=clock() - started)
    phases["measure_s"] = time.perf_counter() - start
    plan.spent_s = clock() - started  # the predictor and the measuring, all of it
    if on_plan is not None:
        on_plan(plan)
    settings, finetune = plan.settings, plan.finetune
    end = None if plan.budget_s is None else started + plan.budget_s * (1 - MARGIN)  # the margin: saving, writing

    def deadline(stage: str, reserve: float = 0.0) -> float | None:
        """The latest ``clock()`` at which ``stage`` may still run, leaving the later stages their time."""
        return None if end is None else end - plan.after(stage) - reserve

    start = time.perf_counter()
    estimator = build_estimator(
        model_source, source, space, scorer=settings.scorer, settings=finetune,
        importance=settings.importance, rows=settings.score_rows, progress=progress,
        final_rows=settings.final_rows if settings.finalists else 0,
        stop_at=deadline("scoring", plan.least_candidates * plan.candidate_s), clock=clock,
    )
    phases["estimator_train_s"] = time.perf_counter() - start
    start = time.perf_counter()
    try:
        result = evolve(
            space, estimator.score, predictor, min_speedup=floor, max_speedup=max_speedup,
            patterns=fixed_patterns(space), population=settings.population, parents=settings.parents,
            generations=settings.generations, seed=settings.search_seed, deadline=deadline("scoring"), clock=clock,
            least=0 if end is None else 1,
        )
        phases["search_s"] = time.perf_counter() - start
        if result.best is None:
            raise TrimbertError(
                f"the search found no trim predicted between {floor:.2f}x and {max_speedup:.2f}x "
                f"({result.stopped}): allow a larger --overshoot or --undershoot, or aim elsewhere"
            )
        start = time.perf_counter()
        finalists = []
        if estimator.final_batches is not None:
            finalists = choose_finalist(result, lambda spec: estimator.score(spec, rows="final"), settings.finalists,
                                        deadline=deadline("finalists"), clock=clock)
        phases["finalists_s"] = time.perf_counter() - start
    finally:
        estimator.close()
    untrimmed = estimator.score(TrimSpec())
    if plan.thorough:  # every hand-made pattern and the best, by each scorer (a budget keeps to what was scored)
        best_by_scorer = {scorer: estimator.score(result.best.spec, scorer) for scorer in SCORERS}
        patterns = [
            {"name": name, "summary": spec.summary(), "spec": spec.to_dict(), "estimate": estimator.score(spec),
             "by_scorer": {scorer: estimator.score(spec, scorer) for scorer in SCORERS}, "predicted_speedup": predictor.speedup(spec)}
            for name, spec in fixed_patterns(space).items()
        ]
    else:
        best_by_scorer = estimator.known(result.best.spec)
        patterns = [
            {"name": name, "summary": spec.summary(), "spec": spec.to_dict(), "estimate": estimator.known(spec).get(estimator.scorer),
             "by_scorer": estimator.known(spec), "predicted_speedup": predictor.speedup(spec)}
            for name, spec in fixed_patterns(space).items()
        ]
    estimator.close()
    info = {
        "kind": "one-shot", "score_rows": estimator.score_rows, "score_split": estimator.score_split,
        "train_time_s": estimator.train_time_s, "score_time_s": estimator.score_time_s,
        "untrimmed_estimate": untrimmed, "metric": estimator.task.main_metric, "patterns": patterns,
        "scorer": estimator.scorer, "best_by_scorer": best_by_scorer,
        "final_rows": estimator.final_rows,
        **estimator.info,
    }
    report = SearchReport(result, predictor, cached, min_speedup, info, phases, Path(out), (floor, max_speedup), plan)
    with atomic_output_dir(out, force) as staging:
        if settings.verify and finalists:
            start = time.perf_counter()
            verify_finalists(result, to_verify(finalists, settings.verify), estimator, model_source, source, finetune,
                             settings.importance, staging / "verify", seeds=settings.verify_seeds, progress=progress,
                             deadline=deadline("verify"), run_s=plan.verify_run_s, clock=clock)
            phases["verify_s"] = time.perf_counter() - start
        info["finalists"] = [candidate.to_dict() for candidate in finalists]  # with their verified metrics
        write_outputs(staging, report, settings, finetune, model_source, source, space)
    return report


def _plan(model_source: str, source: DataSource, space: SearchSpace, predictor: Predictor, settings: SearchSettings,
          finetune: FinetuneSettings, window: tuple[float, float], *, costs: Costs | None, then: Then | None,
          spent_s: float) -> Plan:
    """Measure the work (unless ``costs`` are given) and plan the search to fit its budget, if any."""
    if costs is None:
        costs, work = measure_costs(model_source, source, finetune, score_rows=settings.score_rows)
        spent_s += costs.measure_s
    else:
        work = count_rows(source, finetune)
    low, high = window
    patterns = fixed_patterns(space)
    feasible = sum(1 for spec in patterns.values() if predictor.predict(spec) > 0 and low <= predictor.speedup(spec) <= high)
    work = replace(work, patterns=feasible, all_patterns=len(patterns))
    budget_s = None if settings.budget_minutes is None else 60 * settings.budget_minutes
    return plan_search(settings, finetune, work, costs, budget_s=budget_s, spent_s=spent_s, then=then)


def to_verify(finalists: list[Candidate], count: int) -> list[Candidate]:
    """The ``count`` best finalists by fresh score and, if none of them is a hand-made pattern, the best
    pattern too: the search then never picks a trim a fine-tune shows worse than that pattern."""
    chosen = finalists[:count]
    if not any(item.origin.startswith("pattern:") for item in chosen):
        chosen += [item for item in finalists[count:] if item.origin.startswith("pattern:")][:1]
    return chosen


def verify_finalists(
    result: SearchResult, finalists: list[Candidate], estimator: Any, model_source: str, source: DataSource,
    finetune: FinetuneSettings, importance: str, folder: Path, *, seeds: int = 1, progress: bool = False,
    deadline: float | None = None, run_s: float = 0.0, clock: Callable[[], float] = time.monotonic,
) -> None:
    """Fine-tune each finalist with the search's fine-tune settings into ``folder/finalist-<i>`` (and, with
    ``seeds`` > 1, again with seeds ``finetune.seed + 1``, ... into ``finalist-<i>-seed<S>``), set its
    ``verified`` metric (the mean over the seeds) on the estimator's fresh rows (never the dev set), and
    make the most accurate (ties to the faster) ``result.best``. With a ``deadline`` (a ``clock()`` time), a
    finalist whose ``seeds`` fine-tunes of ``run_s`` seconds each would end past it is not verified, nor any after it."""
    from trimbert.search.estimator import model_metric
    from trimbert.train.finetune import finetune as run_finetune

    verified = []
    for index, candidate in enumerate(finalists):
        if deadline is not None and clock() + seeds * run_s > deadline:
            result.notes["verify_stopped"] = f"verified {index} of {len(finalists)} before the budget's deadline"
            break
        request = TrimRequest.from_spec(candidate.spec, importance)
        scores = []
        for offset in range(seeds):
            seed = finetune.seed + offset
            run = folder / (f"finalist-{index}" if offset == 0 else f"finalist-{index}-seed{seed}")
            settings = finetune if offset == 0 else finetune.model_copy(update={"seed": seed})
            run_finetune(model_source, source, run, settings=settings, request=request, progress=progress, force=True)
            scores.append(model_metric(checkpoint.load(run), estimator.task, estimator.final_batches))
        candidate.verified = statistics.fmean(scores)
        candidate.verified_by_seed = scores if seeds > 1 else None
        verified.append(candidate)
    if verified:
        result.best = min(verified, key=lambda item: (-item.verified, item.predicted_ms))
        result.notes["verified_run"] = f"finalist-{finalists.index(result.best)}"
