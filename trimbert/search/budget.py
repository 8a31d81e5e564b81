"""What a search will do and about how long it takes, and ``--budget-minutes`` as a bound on all of it.

A search's stages cost time in proportion to a few sizes: the fine-tune of the super-model (training
steps, from its rows, epochs and batch size), scoring candidates (rows per candidate, candidates),
re-scoring the finalists on fresh rows, the fine-tunes that verify finalists (``--verify``) and, with
``search --finetune``, the fine-tunes of the baseline and the winner and their bench.
:func:`trimbert.search.costs.measure_costs` times the units of that work on this machine;
:func:`plan_search` multiplies them out into a :class:`Plan`: what each stage will do and about how
long it takes, which the CLI prints before the work starts.

Without a budget the plan is what the settings ask, only estimated. With ``budget_s`` (``--budget-minutes``)
the whole search must fit in it, what was spent already (the latency predictor, the measuring) included,
less a 10% margin for what is not estimated (saving, writing, a busy machine). When the settings do not
fit, the plan shrinks them, in this order, and says so (:attr:`Plan.changes`):

1. scoring stops at its deadline (it keeps 30% of what is left, or all it asks for when less), then fewer
   finalists are verified by a real fine-tune (``--verify``: each is as long as the super-model's
   fine-tune), down to none;
2. then the shares: the fine-tunes (the super-model's, and with ``--finetune`` the baseline's and the
   winner's) get at most 40% of what is left, by training on fewer rows (``--max-train-samples``; the
   epochs stay); the first generation of candidates (the feasible hand-made patterns and ``--population``
   random trims) is scored in at most 30% (``--score-rows``); the finalists are re-scored in at most 10%
   (``--final-rows``; none when under 100 rows would be left). Scoring takes what is left over.

When even the smallest plan does not fit (fine-tunes of :data:`MIN_STEPS` steps, candidates scored on 100
rows, the patterns and two random trims) the search is refused in one line with the estimate. At run
time :mod:`trimbert.search.run` holds each stage to its end: the super-model's fine-tune stops early
rather than eat into the later stages, the evolution stops at its deadline, finalists are re-scored and
verified only while their time lasts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from trimbert.errors import TrimbertError
from trimbert.search.costs import Costs, Workload
from trimbert.search.settings import SearchSettings
from trimbert.train.settings import FinetuneSettings, HealSettings

MARGIN = 0.10  # of the budget, kept for what is not estimated (saving, writing, plots, a busy machine)
TRAIN_SHARE = 0.40  # under a tight budget: at most this share of what is left for the fine-tunes
SCORE_SHARE = 0.30  # ... for scoring the first generation of candidates
FINAL_SHARE = 0.10  # ... for re-scoring the finalists
MIN_STEPS = 30  # the shortest fine-tune a budget may choose (fewer: the search is refused)
MIN_ROWS = 100  # the fewest rows a budget may score candidates or finalists on
RANDOM_FLOOR = 2  # random trims scored beside the patterns in the smallest plan
IMPORTANCE_SAMPLES = 256  # rows the Taylor or Fisher ranking of neurons and heads runs on (estimator.build_estimator)
BENCH_OVERHEAD_S = 30.0  # the bench's warm-up and first rounds, beyond its re-measuring limit
DISTILL_FACTOR = 4 / 3  # a distilled or healed step also runs the teacher forward (~1/3 of a step)
STAGES = ("super-model", "scoring", "finalists", "report", "verify", "--finetune")  # in run order


@dataclass(frozen=True)
class Then:
    """What ``search --finetune`` does after the search (its fine-tunes use the search's fine-tune settings)."""

    distill: bool = True
    heal: HealSettings | None = None
    bench_s: float = 60.0


@dataclass
class Plan:
    """What a search will do and about how long each stage takes (see the module docstring)."""

    finetune: FinetuneSettings  # the settings the search runs with (a budget may have changed them)
    settings: SearchSettings
    rows: int  # training rows of each fine-tune
    steps: int  # training steps of each fine-tune
    score_rows: int
    score_split: str  # "train" (rows not trained on) or "validation"
    final_rows: int  # 0: no finalists
    candidates: int  # candidates expected to be scored
    verify_runs: int  # fine-tunes verifying finalists (at most)
    stages: dict[str, float]  # estimated seconds, in run order
    costs: Costs
    spent_s: float = 0.0  # before the plan: the latency predictor and measuring the costs
    budget_s: float | None = None
    changes: list[str] = field(default_factory=list)  # what the budget changed, as "--flag old → new"
    thorough: bool = True  # without a budget: every hand-made pattern scored for the report, each scorer
    candidate_s: float = 0.0  # scoring one candidate
    verify_run_s: float = 0.0  # one verifying fine-tune
    least_candidates: int = 1  # what scoring may not stop before (the patterns and a few random trims)

    @property
    def total_s(self) -> float:
        return self.spent_s + sum(self.stages.values())

    def after(self, stage: str) -> float:
        """Estimated seconds of the stages after ``stage`` (one of :data:`STAGES`, planned or not)."""
        later = STAGES[STAGES.index(stage) + 1 :]
        return sum(seconds for name, seconds in self.stages.items() if name in later)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["finetune"] = self.finetune.to_dict()
        data["settings"] = self.settings.to_dict()
        data["total_s"] = self.total_s
        return data

    def describe(self) -> list[str]:
        """The plan in words, one line per stage (what the CLI prints before the search starts)."""
        costs = self.costs
        budget = "" if self.budget_s is None else f" of the {self.budget_s / 60:g}-minute budget"
        lines = [
            f"plan: about {_minutes(self.total_s)}{budget} "
            f"(measured here: a training step {costs.step_s:.2f} s, a scored row {1000 * costs.row_s:.1f} ms; "
            f"{self.spent_s:.0f} s spent on the latency predictor and measuring)"
        ]
        if self.changes:
            lines.append("  to fit the budget: " + ", ".join(self.changes))
        epochs = f"{self.finetune.epochs:g} epoch{'s' if self.finetune.epochs != 1 else ''}"
        labels = {
            "super-model": f"fine-tune the super-model: {self.rows:,} rows × {epochs} = {self.steps:,} steps",
            "scoring": f"score ~{self.candidates:,} candidates on {self.score_rows:,} "
                       + ("spare training rows" if self.score_split == "train" else "validation rows"),
            "finalists": f"re-score the finalists on {self.final_rows:,} fresh rows",
            "report": "score the untrimmed model" + (" and every hand-made pattern" if self.thorough else ""),
            "verify": f"verify finalists: up to {self.verify_runs} fine-tune{'s' if self.verify_runs != 1 else ''} "
                      f"of {self.steps:,} steps",
            "--finetune": f"--finetune: the baseline and the winner, {self.steps:,} steps each, and their bench",
        }
        for name, seconds in self.stages.items():
            lines.append(f"  {labels[name]}: ~{_minutes(seconds)}")
        return lines


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def trainer_steps(rows: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps of a fine-tune on ``rows`` rows (the HF Trainer's count: ceil(epochs × batches per epoch))."""
    return math.ceil(epochs * math.ceil(rows / batch_size)) if rows else 0


def rows_for_steps(steps: int, batch_size: int, epochs: float) -> int:
    """The most rows a fine-tune of at most ``steps`` steps can train on."""
    return int(steps // epochs) * batch_size


# --------------------------------------------------------------------------------------------------
# The estimate


@dataclass(frozen=True)
class _Sizes:
    rows: int
    verify: int
    score_rows: int
    final_rows: int  # asked (0: no finalists)


def _estimate(
    settings: SearchSettings, finetune: FinetuneSettings, work: Workload, costs: Costs, then: Then | None,
    sizes: _Sizes, *, thorough: bool, candidates: int | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Estimated seconds per stage for these sizes, and the sizes that follow (steps, score rows, ...)."""
    used = min(sizes.rows, work.train_rows)
    spare = work.train_rows - used
    final_n = 0
    if spare >= min(sizes.score_rows, MIN_ROWS):  # as estimator.score_rows chooses them
        score_n, split = min(sizes.score_rows, spare), "train"
        left = spare - score_n
        if sizes.final_rows and left >= min(sizes.final_rows, MIN_ROWS):
            final_n = min(sizes.final_rows, left)
    else:
        score_n, split = min(sizes.score_rows, work.validation_rows), "validation"
    steps = trainer_steps(used, finetune.batch_size, finetune.epochs)
    row_train_s = costs.step_s / finetune.batch_size
    ranking_s = min(IMPORTANCE_SAMPLES, used) * row_train_s if settings.importance != "magnitude" else 0.0
    fine_tune_s = costs.load_s + steps * costs.step_s
    scored_row_s = costs.row_s + (costs.probe_row_s if settings.scorer == "probe" else 0.0)
    candidate_s = score_n * scored_row_s
    if candidates is None:
        candidates = work.patterns + settings.population * (settings.generations + 1)
    finalists = settings.finalists + work.patterns if final_n else 0  # at most (the patterns: those scored)
    verify_runs = min(sizes.verify + 1, finalists) * settings.verify_seeds if sizes.verify and finalists else 0
    stages = {
        "super-model": fine_tune_s + ranking_s,
        "scoring": candidates * candidate_s,
        "finalists": finalists * final_n * scored_row_s,
        "report": ((2 + work.all_patterns) if thorough else 1) * candidate_s,
        "verify": verify_runs * (fine_tune_s + ranking_s + (work.eval_rows + final_n) * costs.row_s),
    }
    if then is not None:
        stages["--finetune"] = _then_s(then, finetune, costs, steps, fine_tune_s, ranking_s, work.eval_rows)
    if not finalists:
        del stages["finalists"]
    if not verify_runs:
        del stages["verify"]
    derived = {"rows": used, "steps": steps, "score_rows": score_n, "score_split": split, "final_rows": final_n,
               "candidates": candidates, "verify_runs": verify_runs, "candidate_s": candidate_s,
               "finalists": finalists, "scored_row_s": scored_row_s,
               "verify_run_s": fine_tune_s + ranking_s + (work.eval_rows + final_n) * costs.row_s}
    return stages, derived


def _then_s(then: Then, finetune: FinetuneSettings, costs: Costs, steps: int, fine_tune_s: float, ranking_s: float,
            eval_rows: int) -> float:
    """``search --finetune``: the baseline's fine-tune, the winner's (distilled: with the teacher's forward),
    its heal, the bench."""
    evaluate_s = eval_rows * costs.row_s
    winner_s = costs.load_s + ranking_s + steps * costs.step_s * (DISTILL_FACTOR if then.distill else 1.0)
    heal_s = 0.0
    if then.heal is not None:
        heal = then.heal
        heal_steps = heal.steps if heal.tokens is None else math.ceil(heal.tokens / (heal.batch_size * heal.max_length / 2))
        heal_s = costs.load_s + heal_steps * costs.step_s * heal.batch_size / finetune.batch_size * DISTILL_FACTOR
    return (fine_tune_s + evaluate_s) + (winner_s + evaluate_s) + heal_s + then.bench_s + BENCH_OVERHEAD_S


def _training_s(stages: dict[str, float]) -> float:
    return stages["super-model"] + stages.get("--finetune", 0.0)


def plan_search(
    settings: SearchSettings, finetune: FinetuneSettings, work: Workload, costs: Costs, *,
    budget_s: float | None = None, spent_s: float = 0.0, then: Then | None = None,
) -> Plan:
    """The plan of a search (see the module docstring); raises :class:`TrimbertError` when ``budget_s``
    cannot hold even the smallest plan."""
    thorough = budget_s is None
    asked_rows = work.train_rows if finetune.max_train_samples is None else min(finetune.max_train_samples, work.train_rows)
    asked = _Sizes(asked_rows, settings.verify, settings.score_rows, settings.final_rows if settings.finalists else 0)

    def estimate(sizes: _Sizes, candidates: int | None = None) -> tuple[dict[str, float], dict[str, Any]]:
        return _estimate(settings, finetune, work, costs, then, sizes, thorough=thorough, candidates=candidates)

    stages, derived = estimate(asked)
    sizes = asked
    if budget_s is not None:
        available = budget_s * (1 - MARGIN) - spent_s
        if sum(stages.values()) > available:
            sizes, stages, derived = _fit(settings, finetune, work, costs, asked, available, estimate, budget_s, spent_s)
    plan = _make_plan(settings, finetune, asked, sizes, stages, derived, costs, spent_s, budget_s, thorough)
    plan.least_candidates = work.patterns + RANDOM_FLOOR
    return plan


def _fit(settings, finetune, work, costs, asked: _Sizes, available: float, estimate, budget_s, spent_s):
    """The sizes that fit ``available`` seconds (the order of the module docstring), or a refusal."""
    floor = work.patterns + RANDOM_FLOOR
    full = work.patterns + settings.population * (settings.generations + 1)

    def scored(sizes: _Sizes, reserve: float) -> tuple[dict[str, float], dict[str, Any]] | None:
        """The estimate with scoring taking what the other stages leave, if that is at least ``reserve``."""
        stages, derived = estimate(sizes, candidates=floor)
        rest = available - sum(seconds for name, seconds in stages.items() if name != "scoring")
        if rest < max(reserve, floor * derived["candidate_s"]):
            return None
        more = int(rest // derived["candidate_s"]) if derived["candidate_s"] > 0 else full
        return estimate(sizes, candidates=min(full, max(floor, more)))

    # 1. scoring stops at its deadline, keeping a share; then fewer verifying fine-tunes
    for verify in range(asked.verify, -1, -1):
        sizes = _Sizes(asked.rows, verify, asked.score_rows, asked.final_rows)
        reserve = min(SCORE_SHARE * available, estimate(sizes)[0]["scoring"])
        if (fitted := scored(sizes, reserve)) is not None:
            return sizes, *fitted
    # 2. the shares: rows for the fine-tunes, then score rows and final rows
    least_steps = min(MIN_STEPS, trainer_steps(asked.rows, finetune.batch_size, finetune.epochs))
    least_rows = min(asked.rows, max(1, rows_for_steps(least_steps, finetune.batch_size, finetune.epochs)))

    def training_s(rows: int) -> float:
        return _training_s(estimate(_Sizes(rows, 0, asked.score_rows, 0))[0])

    low, high = least_rows, asked.rows  # the most rows whose fine-tunes fit the share (at least least_rows)
    while low < high:
        middle = (low + high + 1) // 2
        if training_s(middle) <= TRAIN_SHARE * available:
            low = middle
        else:
            high = middle - 1
    rows = low
    probe = estimate(_Sizes(rows, 0, asked.score_rows, asked.final_rows))[1]
    first_generation = work.patterns + settings.population
    least_score = min(MIN_ROWS, asked.score_rows)
    score_rows = int(SCORE_SHARE * available / (first_generation * probe["scored_row_s"]))
    score_rows = max(least_score, min(asked.score_rows, score_rows))
    final_rows = 0
    if asked.final_rows:
        finalists = settings.finalists + work.patterns
        final_rows = min(asked.final_rows, int(FINAL_SHARE * available / (finalists * probe["scored_row_s"])))
        final_rows = final_rows if final_rows >= min(MIN_ROWS, asked.final_rows) else 0
    sizes = _Sizes(rows, 0, score_rows, final_rows)
    fitted = scored(sizes, 0.0)
    if fitted is None:
        least = _Sizes(least_rows, 0, least_score, 0)
        needed = spent_s + sum(estimate(least, candidates=floor)[0].values())
        minutes = needed / (1 - MARGIN) / 60
        minutes = math.ceil(minutes) if minutes >= 10 else math.ceil(minutes * 10) / 10
        steps = trainer_steps(least_rows, finetune.batch_size, finetune.epochs)
        raise TrimbertError(
            f"--budget-minutes {budget_s / 60:g}: too short for this search here: even the smallest plan ({steps}-step "
            f"fine-tunes, {floor} candidates on {least_score} rows) needs about {minutes:g} minutes (a training step takes "
            f"{costs.step_s:.2f} s and a scored row {1000 * costs.row_s:.1f} ms on this machine; {spent_s:.0f} s went to "
            f"the latency predictor and measuring): give --budget-minutes {minutes:g} or more, or a smaller --max-length"
        )
    return sizes, *fitted


def _make_plan(settings, finetune, asked: _Sizes, sizes: _Sizes, stages, derived, costs, spent_s, budget_s, thorough) -> Plan:
    changes = []
    new_finetune, new_settings = finetune, settings
    if sizes.verify != asked.verify:
        changes.append(f"--verify {asked.verify} → {sizes.verify}")
        update: dict[str, Any] = {"verify": sizes.verify}
        if sizes.verify == 0:
            update["verify_seeds"] = 1
        new_settings = new_settings.updated(**update)
    if sizes.rows != asked.rows:
        changes.append(f"--max-train-samples {asked.rows:,} → {sizes.rows:,}")
        new_finetune = finetune.updated(max_train_samples=sizes.rows)
    if sizes.score_rows != asked.score_rows:
        changes.append(f"--score-rows {asked.score_rows:,} → {sizes.score_rows:,}")
        new_settings = new_settings.updated(score_rows=sizes.score_rows)
    if sizes.final_rows != asked.final_rows:
        if sizes.final_rows:
            changes.append(f"--final-rows {asked.final_rows:,} → {sizes.final_rows:,}")
            new_settings = new_settings.updated(final_rows=sizes.final_rows)
        else:
            changes.append(f"--finalists {settings.finalists} → 0")
            new_settings = new_settings.updated(finalists=0)
    return Plan(
        finetune=new_finetune, settings=new_settings, rows=derived["rows"], steps=derived["steps"],
        score_rows=derived["score_rows"], score_split=derived["score_split"], final_rows=derived["final_rows"],
        candidates=derived["candidates"], verify_runs=derived["verify_runs"], stages=stages, costs=costs,
        spent_s=spent_s, budget_s=budget_s, changes=changes, thorough=thorough, candidate_s=derived["candidate_s"],
        verify_run_s=derived["verify_run_s"],
    )
