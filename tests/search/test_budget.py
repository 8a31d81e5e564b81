"""``--budget-minutes`` bounds the whole search (issue 27, item 10): the plan from recorded per-unit costs,
what a budget cuts and in which order, the refusal with its estimate, and each stage held to its deadline
by an injected clock (never the machine's speed)."""

import json
from types import SimpleNamespace

import pytest
from conftest import write_sst2
from recorded_latency import use_recorded_latency
from test_evolve import PREDICTOR, SPACE, accuracy

import trimbert.search.run
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.model.checkpoint import load_config, resolve_source
from trimbert.search.budget import Then, plan_search, rows_for_steps, trainer_steps
from trimbert.search.costs import Costs, Workload, count_rows
from trimbert.search.estimator import StopAt
from trimbert.search.evolve import Candidate, SearchResult, choose_finalist, evolve
from trimbert.search.latency import cached_predictor
from trimbert.search.predictor import Conditions, Predictor, model_shape
from trimbert.search.run import search, search_space, verify_finalists
from trimbert.search.settings import SearchSettings
from trimbert.spec import TrimSpec
from trimbert.train.settings import FinetuneSettings

# recorded on the 2-core machine of the issue: MiniLM, SST-2, batch 32, length 128
COSTS = Costs(step_s=3.3, row_s=0.025, probe_row_s=0.0005, load_s=10.0)
SST2 = Workload(train_rows=67349, validation_rows=872, eval_rows=872, patterns=8, all_patterns=28)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_steps_are_the_trainers():
    assert trainer_steps(67349, 32, 3.0) == 6315  # the 6,315-step super-model fine-tune
    assert trainer_steps(100, 32, 0.5) == 2 and trainer_steps(0, 32, 3.0) == 0
    assert rows_for_steps(45, 32, 3.0) == 480 and trainer_steps(480, 32, 3.0) == 45


def test_without_a_budget_the_plan_is_what_the_settings_ask():
    plan = plan_search(SearchSettings(speedup=1.3), FinetuneSettings(), SST2, COSTS)
    assert (plan.rows, plan.steps, plan.changes) == (67349, 6315, [])
    assert (plan.score_rows, plan.score_split, plan.final_rows) == (872, "validation", 0)  # no spare training rows
    assert list(plan.stages) == ["super-model", "scoring", "report"]  # no finalists, so nothing to verify
    assert plan.stages["super-model"] == pytest.approx(10.0 + 6315 * 3.3 + 256 * 3.3 / 32)
    assert plan.candidates == 8 + 16 * 9 and plan.settings == SearchSettings(speedup=1.3)
    assert plan.describe()[1:] == [
        "  fine-tune the super-model: 67,349 rows × 3 epochs = 6,315 steps: ~5.8 h",
        "  score ~152 candidates on 872 validation rows: ~56 min",
        "  score the untrimmed model and every hand-made pattern: ~11 min",
    ]


def test_ten_minutes_on_full_sst2_cut_verification_rows_and_score_rows_to_fit():
    settings = SearchSettings(speedup=1.3, budget_minutes=10)
    plan = plan_search(settings, FinetuneSettings(), SST2, COSTS, budget_s=600, spent_s=60)
    assert plan.changes == ["--verify 4 → 0", "--max-train-samples 67,349 → 480", "--score-rows 1,000 → 235",
                            "--final-rows 3,000 → 117"]
    assert plan.total_s <= 0.9 * 600  # a 10% margin for saving and writing
    assert (plan.rows, plan.steps, plan.verify_runs) == (480, 45, 0)
    assert plan.finetune == FinetuneSettings(max_train_samples=480)
    assert plan.settings == settings.updated(verify=0, score_rows=235, final_rows=117)
    assert plan.candidates >= 8 + 2  # the patterns and two random trims at the least
    assert plan.describe()[0].startswith("plan: about 9 min of the 10-minute budget (measured here: a training step 3.30 s")
    assert plan.describe()[1] == "  to fit the budget: " + ", ".join(plan.changes)


def test_fewer_verifying_fine_tunes_come_before_fewer_rows():
    settings = SearchSettings(speedup=1.3, budget_minutes=60)
    finetune = FinetuneSettings(max_train_samples=2000, epochs=1)
    plan = plan_search(settings, finetune, SST2, COSTS, budget_s=3600, spent_s=60)
    assert plan.changes == ["--verify 4 → 1"] and plan.verify_runs == 2  # the best finalist and the best pattern
    assert plan.total_s <= 0.9 * 3600 and plan.finetune == finetune
    roomy = plan_search(settings, finetune, SST2, COSTS, budget_s=6 * 3600, spent_s=60)
    assert roomy.changes == [] and roomy.settings == settings


def test_the_fine_tunes_of_finetune_count_against_the_budget():
    settings = SearchSettings(speedup=1.3, budget_minutes=30)
    alone = plan_search(settings, FinetuneSettings(), SST2, COSTS, budget_s=1800, spent_s=60)
    then = plan_search(settings, FinetuneSettings(), SST2, COSTS, budget_s=1800, spent_s=60, then=Then(bench_s=60.0))
    assert "--finetune" in then.stages and then.total_s <= 0.9 * 1800
    assert then.rows < alone.rows  # three fine-tunes share what one had


def test_a_budget_too_short_for_the_smallest_plan_is_refused_with_the_estimate():
    with pytest.raises(TrimbertError) as raised:
        plan_search(SearchSettings(speedup=1.3, budget_minutes=2), FinetuneSettings(), SST2, COSTS, budget_s=120, spent_s=60)
    assert str(raised.value) == (
        "--budget-minutes 2: too short for this search here: even the smallest plan (30-step fine-tunes, 10 candidates "
        "on 100 rows) needs about 4.2 minutes (a training step takes 3.30 s and a scored row 25.0 ms on this machine; "
        "60 s went to the latency predictor and measuring): give --budget-minutes 4.2 or more, or a smaller --max-length"
    )


def test_the_super_model_fine_tune_stops_at_its_deadline():
    clock = Clock()
    stopper = StopAt(1010.0, clock)
    state, control = SimpleNamespace(global_step=3, max_steps=45), SimpleNamespace(should_training_stop=False)
    stopper.on_step_end(None, state, control)
    assert not control.should_training_stop and stopper.stopped is None
    clock.now = 1010.0
    stopper.on_step_end(None, state, control)
    assert control.should_training_stop and stopper.stopped == (3, 45)


def test_the_evolution_stops_at_its_deadline_but_scores_the_least_it_must():
    clock = Clock()

    def costly(spec):
        clock.now += 10.0  # each score takes 10 s
        return accuracy(spec)

    result = evolve(SPACE, costly, PREDICTOR, min_speedup=1.1, deadline=1035.0, clock=clock)
    assert len(result.candidates) == 4 and result.stopped == "deadline"  # at 1000, 1010, 1020, 1030
    late = evolve(SPACE, costly, PREDICTOR, min_speedup=1.1, deadline=0.0, clock=clock, least=1)
    assert len(late.candidates) == 1 and late.best is late.candidates[0]


def test_finalists_are_re_scored_while_their_time_lasts():
    clock = Clock()
    candidates = [Candidate(TrimSpec(drop_ffn=(block,)), 5.0, 1.5, 0.9 - block / 100, "random", 0) for block in range(4)]
    result = SearchResult(candidates, candidates[0], 1, 0.0, "generations")

    def rescore(spec):
        clock.now += 10.0
        return 0.5 + spec.drop_ffn[0] / 10

    finalists = choose_finalist(result, rescore, 4, deadline=1015.0, clock=clock)
    assert [item.spec.drop_ffn for item in finalists] == [(1,), (0,)]  # two re-scored, the better fresh score first
    assert result.best is candidates[1] and candidates[2].final_estimate is None
    assert result.notes["finalists_stopped"] == "re-scored 2 of 4 before the budget's deadline"


def test_no_finalist_is_verified_when_its_fine_tune_would_end_past_the_deadline(tmp_path):
    candidates = [Candidate(TrimSpec(drop_ffn=(block,)), 5.0, 1.5, 0.9, "random", 0) for block in range(2)]
    result = SearchResult(candidates, candidates[0], 1, 0.0, "generations")
    verify_finalists(result, candidates, None, "unused", None, FinetuneSettings(), "taylor", tmp_path / "verify",
                     deadline=1100.0, run_s=120.0, clock=Clock())
    assert result.best is candidates[0] and all(item.verified is None for item in candidates)
    assert result.notes == {"verify_stopped": "verified 0 of 2 before the budget's deadline"}
    assert not (tmp_path / "verify").exists()


def _seed_latency_cache(checkpoint_dir, settings, cache_dir):
    """A known predictor in the cache (the plan counts the patterns it predicts in the window, not this machine's)."""
    config = load_config(resolve_source(str(checkpoint_dir)))
    conditions = Conditions(runtime=settings.runtime, device=settings.device, batch_size=settings.batch_size,
                            seq_len=settings.seq_len, threads=settings.threads, model_shape=model_shape(config))
    costs = {"const": 1.0, "blocks": 1.0, "ffns": 0.5, "ffn_neurons": 0.5}
    predictor = Predictor(conditions, 2, 64, costs, list(costs), baseline_ms=5.0)
    cached_predictor(cache_dir, conditions, search_space(settings, config), lambda: predictor)


def test_the_search_runs_with_what_its_plan_chose(tiny_checkpoint, tmp_path):
    source = DataSource(task="sst2", data_dir=str(write_sst2(tmp_path / "SST-2", train_rows=400, dev_rows=8)))
    finetune = FinetuneSettings(max_train_samples=320, epochs=1, batch_size=8, max_length=16)  # 40 steps
    settings = SearchSettings(speedup=1.01, overshoot=100.0, budget_minutes=0.12, importance="magnitude", score_rows=16,
                              final_rows=24, population=3, generations=1, max_drop_layers=1, batch_size=1, seq_len=16,
                              threads=1)  # 7.2 s: 6.48 s after the margin
    _seed_latency_cache(tiny_checkpoint, settings, tmp_path / "cache")
    costs = Costs(step_s=0.1, row_s=0.01, probe_row_s=0.0, load_s=0.0)  # 40 steps: 4 s; a candidate: 0.16 s
    plans = []
    report = search(str(tiny_checkpoint), source, tmp_path / "out", settings=settings, finetune=finetune,
                    cache_dir=tmp_path / "cache", costs=costs, clock=Clock(), on_plan=plans.append)
    [plan] = plans
    assert report.predictor_cached and report.plan is plan
    # verifying (4.3 s a fine-tune), then the fine-tune's share (40%: 30 steps, the least), then the finalists' (10%)
    assert plan.changes == ["--verify 4 → 0", "--max-train-samples 320 → 240", "--finalists 8 → 0"]
    assert plan.total_s == pytest.approx(3.0 + 13 * 0.16 + 0.16) and plan.total_s <= 6.48
    written = json.loads((tmp_path / "out" / "search.json").read_text())
    assert written["finetune"]["max_train_samples"] == 240 and written["estimator"]["train_rows"] == 240
    assert (written["settings"]["verify"], written["settings"]["finalists"], written["estimator"]["final_rows"]) == (0, 0, 0)
    assert written["estimator"]["stopped_early"] is None and written["plan"]["changes"] == plan.changes
    assert plan.candidates == 13 and len(written["candidates"]) == 12  # two of the 7 patterns are one trim
    assert not (tmp_path / "out" / "verify").exists()


class Ticking(Clock):
    """A clock that moves ``tick`` seconds each time it is read (the run overruns its plan, whatever the machine)."""

    def __init__(self, tick: float) -> None:
        super().__init__()
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_a_search_that_overruns_its_plan_still_ends_within_the_budget(tiny_checkpoint, tmp_path):
    source = DataSource(task="sst2", data_dir=str(write_sst2(tmp_path / "SST-2", train_rows=400, dev_rows=8)))
    finetune = FinetuneSettings(max_train_samples=320, epochs=1, batch_size=8, max_length=16)  # 40 steps
    settings = SearchSettings(speedup=1.01, overshoot=100.0, budget_minutes=1, importance="magnitude", score_rows=16,
                              final_rows=24, population=3, generations=1, max_drop_layers=1, batch_size=1, seq_len=16,
                              threads=1)
    _seed_latency_cache(tiny_checkpoint, settings, tmp_path / "cache")
    costs = Costs(step_s=0.01, row_s=0.001, probe_row_s=0.0, load_s=0.0)  # planned: well inside the minute
    clock = Ticking(2.0)  # every reading of the clock: 2 s later (a training step, a candidate, ...)
    report = search(str(tiny_checkpoint), source, tmp_path / "out", settings=settings, finetune=finetune,
                    cache_dir=tmp_path / "cache", costs=costs, clock=clock)
    assert report.plan.changes == [] and report.plan.verify_runs > 0  # the plan fitted, verification included
    written = json.loads((tmp_path / "out" / "search.json").read_text())
    stopped = written["estimator"]["stopped_early"]
    assert stopped is not None and stopped["step"] < stopped["of"] == 40  # the fine-tune gave way to the later stages
    assert len(written["candidates"]) == 1 and written["stopped"] == "deadline"  # the least: one candidate
    assert written["notes"]["verify_stopped"].startswith("verified 0 of ")
    assert written["best"]["verified"] is None and not (tmp_path / "out" / "verify").exists()


def test_the_cli_refuses_a_budget_too_short_before_training(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    # the predictor fitted on recorded probe timings and the work priced by the recorded COSTS (a load alone: 10 s),
    # so the budget is too short whatever this machine's load
    use_recorded_latency(monkeypatch)
    monkeypatch.setattr(trimbert.search.run, "measure_costs",
                        lambda model, source, finetune, **_: (COSTS, count_rows(source, finetune)))
    data = write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=4)
    code, stdout, err = run_cli(
        "search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--speedup", "1.01", "--budget-minutes", "0.001",
        "--max-train-samples", "8", "--epochs", "1", "--train-batch-size", "8", "--max-length", "16", "--probes", "6",
        "--repeats", "3", "--max-drop-layers", "1", "--batch-size", "1", "--seq-len", "16", "--threads", "1",
        "--cache-dir", tmp_path / "cache", "--out", tmp_path / "out",
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: --budget-minutes 0.001: too short for this search here: even the smallest plan (1-step "
                          "fine-tunes, ")
    assert "give --budget-minutes " in err and not (tmp_path / "out").exists() and "plan:" not in stdout
