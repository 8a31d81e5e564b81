"""compress_to_target: a pass measured short of the target is compressed again under the budget scaled by the shortfall."""

import pytest
import torch

import trimbert.compress.run
from trimbert.compress import LinearCost
from trimbert.compress.replan import REPLAN_TOLERANCE, compress_to_target, replanned_budget
from trimbert.errors import TrimbertError
from trimbert.model.structure import applied_spec

COST = LinearCost(fixed_ms=1.0, per_head_ms=0.01, per_neuron_ms=0.002, per_ffn_ms=0.05)
FULL_MS = COST.ms(16, 256, range(4))  # the tiny model: 4 blocks of 4 heads and 64 neurons


def test_a_pass_more_than_two_percent_short_gets_the_budget_scaled_by_the_shortfall():
    assert REPLAN_TOLERANCE == 0.02
    assert replanned_budget(10.0, 1.5, 1.40) == pytest.approx(10.0 * 1.40 / 1.5)
    assert replanned_budget(10.0, 2.0, 1.89) == pytest.approx(9.45)
    assert replanned_budget(10.0, 1.5, 1.48) is None  # 1.3% short: within the tolerance
    assert replanned_budget(10.0, 1.5, 1.70) is None  # faster than asked: kept
    assert replanned_budget(8.0, 1 / 5.0, 1 / 6.0) == pytest.approx(8.0 * 5.0 / 6.0)  # --latency-ms: speeds are 1 / ms


@pytest.fixture
def batches(tiny_batch):
    return [{**tiny_batch, "labels": torch.tensor([0, 2, 1])}, {**tiny_batch, "labels": torch.tensor([1, 1, 0])}]


def _run(tiny_model, batches, monkeypatch, measured, replans, budget=None):
    """compress_to_target on fresh copies of the tiny model with checks that report ``measured`` in turn
    (the target 1.5); returns the result, the budgets the passes saved and the number of Fisher passes."""
    state = {key: value.clone() for key, value in tiny_model.state_dict().items()}
    fisher_runs, saved, checks = [], [], iter(measured)
    real = trimbert.compress.run.fisher_scores

    def counting(*args, **kwargs):
        fisher_runs.append(1)
        return real(*args, **kwargs)

    def load():
        tiny_model.load_state_dict(state)  # the untouched weights (a pass writes its scales into its model)
        return tiny_model

    monkeypatch.setattr(trimbert.compress.run, "fisher_scores", counting)
    result = compress_to_target(load, batches, COST, budget or 0.8 * FULL_MS, replans=replans,
                                save=lambda model: saved.append(applied_spec(model)),
                                check=lambda: {"asked": 1.5, "measured": next(checks), "check_seconds": 2.0}, multiple=4)
    return result, saved, len(fisher_runs)


def test_passes_tighten_until_one_meets_the_target(tiny_model, batches, monkeypatch):
    budget = 0.8 * FULL_MS
    result, saved, fisher_runs = _run(tiny_model, batches, monkeypatch, [1.2, 1.35, 1.49], replans=3)
    budgets = [budget, budget * 1.2 / 1.5, budget * 1.2 / 1.5 * 1.35 / 1.5]
    assert [p["budget_ms"] for p in result["passes"]] == pytest.approx(budgets)
    assert [p["measured"] for p in result["passes"]] == [1.2, 1.35, 1.49]  # the third met it: no fourth pass
    assert fisher_runs == 1 and len(saved) == 3  # the scores are computed once; each pass saved its model
    assert result["budget_ms"] == pytest.approx(budgets[-1]) and result["summary"] == result["passes"][-1]["summary"]
    assert result["spec"] == saved[-1].to_dict()
    assert all(p["predicted_ms"] <= b for p, b in zip(result["passes"], budgets, strict=True))
    assert result["passes"][0]["predicted_ms"] > result["passes"][1]["predicted_ms"] > result["passes"][2]["predicted_ms"]
    assert result["check_seconds"] == 6.0
    assert result["search_seconds"] == pytest.approx(sum(p["search_seconds"] for p in result["passes"]))


def test_the_last_allowed_pass_is_kept_unchecked_and_zero_replans_never_checks(tiny_model, batches, monkeypatch):
    result, saved, _ = _run(tiny_model, batches, monkeypatch, [1.2], replans=1)
    assert len(result["passes"]) == 2 and "measured" in result["passes"][0] and "measured" not in result["passes"][1]
    assert result["budget_ms"] == pytest.approx(0.8 * FULL_MS * 1.2 / 1.5) and result["check_seconds"] == 2.0
    result, saved, _ = _run(tiny_model, batches, monkeypatch, [], replans=0)
    assert len(result["passes"]) == 1 and len(saved) == 1 and result["check_seconds"] == 0.0


def test_a_budget_with_no_plan_keeps_the_previous_pass(tiny_model, batches, monkeypatch):
    result, saved, _ = _run(tiny_model, batches, monkeypatch, [0.15], replans=2)  # 10% of the target: no plan fits
    assert len(result["passes"]) == 1 and len(saved) == 1
    assert result["passes"][0]["stopped"].startswith("compress: no plan fits")
    assert result["budget_ms"] == pytest.approx(0.8 * FULL_MS) and result["spec"] == saved[0].to_dict()
    with pytest.raises(TrimbertError, match="no plan fits"):  # the first pass's own failure is the caller's
        _run(tiny_model, batches, monkeypatch, [], replans=2, budget=0.1)
