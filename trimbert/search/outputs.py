"""What ``trimbert search`` writes: the search record, the Pareto front, the chosen spec and its variant.

:func:`write_outputs` writes a :class:`SearchReport` to a folder:

- ``search.json``: settings, conditions, the predictor (costs and probes), every candidate scored,
  the Pareto front, the best spec and the timings of each phase;
- ``front.md``: the Pareto front (predicted latency and speed-up vs estimated accuracy) and the
  finalists (search estimate and fresh re-score) as tables;
- ``front.png``: every candidate and the front (predicted speed-up vs estimate);
- ``best.json``: the chosen spec, which ``trim``/``finetune --spec best.json`` apply (with the same
  ``--importance`` rule, so narrowed FFNs keep the neurons and pruned blocks the heads the search scored; see
  :meth:`trimbert.spec.TrimRequest.from_spec_file`);
- ``variant.toml``: the chosen spec as a recipe variant, to fine-tune and bench it beside others.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trimbert.core.io import conditions as run_conditions
from trimbert.data.source import DataSource
from trimbert.search.budget import Plan
from trimbert.search.evolve import Candidate, SearchResult
from trimbert.search.predictor import Predictor
from trimbert.search.settings import SearchSettings
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimRequest, TrimSpec
from trimbert.train.settings import FinetuneSettings

BEST_FILE = "best.json"
SEARCH_FILE = "search.json"


@dataclass
class SearchReport:
    """What a search found (its result, the predictor, the estimator's record, the plan) and where it writes."""

    result: SearchResult
    predictor: Predictor
    predictor_cached: bool
    min_speedup: float
    estimator: dict[str, Any]
    phases_s: dict[str, float]
    out: Path
    window: tuple[float, float] = (0.0, float("inf"))  # the predicted speed-ups candidates were drawn from
    plan: Plan | None = None  # what the search planned (its settings: what it ran with, a budget's changes made)



def write_outputs(folder: Path, report: SearchReport, settings: SearchSettings, finetune: FinetuneSettings,
                  model_source: str, source: DataSource, space: SearchSpace) -> None:
    """search.json, front.md, front.png, best.json and variant.toml (see the module docstring)."""
    result = report.result
    best = result.best
    data = {
        "model": model_source,
        "data": source.to_dict(),
        "settings": settings.to_dict(),
        "finetune": finetune.to_dict(),
        "space": asdict(space),
        "target_speedup": report.min_speedup,
        "speedup_window": list(report.window),
        "predictor": {**report.predictor.to_dict(), "cached": report.predictor_cached},
        "estimator": report.estimator,
        "phases_s": report.phases_s,
        "plan": None if report.plan is None else report.plan.to_dict(),
        "notes": result.notes,
        "stopped": result.stopped,
        "generations": result.generations,
        "candidates": [candidate.to_dict() for candidate in result.candidates],
        "front": [candidate.to_dict() for candidate in result.front()],
        "best": best.to_dict(),
        "conditions": run_conditions(device=settings.device, seed=finetune.seed),
    }
    (folder / SEARCH_FILE).write_text(json.dumps(data, indent=2) + "\n")
    spec = spec_file(best, settings.importance)
    if "verified_run" in result.notes:
        spec["verified_run"] = f"verify/{result.notes['verified_run']}"
    (folder / BEST_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    metric = report.estimator["metric"]
    (folder / "front.md").write_text(front_table(result.front(), best, metric) + finalist_table(report, metric))
    (folder / "variant.toml").write_text(variant_toml(best.spec, settings.importance))
    plot_front(result.candidates, result.front(), folder / "front.png", report.min_speedup, report.estimator["metric"])


def spec_file(best: Candidate, importance: str) -> dict[str, Any]:
    """What ``best.json`` holds: the spec, the rule that chose narrowed neurons and pruned heads (None
    when the spec has neither), and the predictions."""
    return {
        "trim_spec": best.spec.to_dict(),
        "importance": TrimRequest.from_spec(best.spec, importance).importance,
        "summary": best.spec.summary(),
        "predicted_ms": best.predicted_ms,
        "predicted_speedup": best.predicted_speedup,
        "estimate": best.estimate if best.final_estimate is None else best.final_estimate,
        "search_estimate": best.estimate,
        "verified": best.verified,
    }


def variant_toml(spec: TrimSpec, importance: str) -> str:
    """The spec as a recipe ``[[variant]]`` (trim keys in the CLI syntax, with ``importance`` when it
    narrows FFNs or prunes heads)."""
    request = TrimRequest.from_spec(spec, importance).to_dict()
    lines = ["[[variants]]", 'name = "searched"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in request.items()]
    return "\n".join(lines) + "\n"


def front_table(front: list[Candidate], best: Candidate, metric: str) -> str:
    lines = [
        f"| trim | predicted ms | predicted speed-up | estimated {metric} | origin |",
        "|---|---:|---:|---:|---|",
    ]
    for candidate in front:
        mark = " **(chosen)**" if candidate is best else ""
        lines.append(
            f"| {candidate.spec.summary()}{mark} | {candidate.predicted_ms:.2f} | {candidate.predicted_speedup:.2f}x "
            f"| {candidate.estimate:.4f} | {candidate.origin} |"
        )
    return "\n".join(lines) + "\n"


def finalist_table(report: SearchReport, metric: str) -> str:
    """The finalists, best fresh score first (empty when none were re-scored)."""
    finalists, rows = report.estimator.get("finalists") or [], report.estimator.get("final_rows", 0)
    if not finalists:
        return ""
    lines = [
        "",
        f"Finalists, re-scored on {rows:,} fresh rows (the winner is the best fresh score, or the most accurate "
        "fine-tuned one with --verify):",
        "",
        f"| trim | predicted speed-up | search estimate | fresh {metric} | fine-tuned, fresh rows | origin |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for item in finalists:
        verified = verified_text(item)
        lines.append(
            f"| {item['summary']} | {item['predicted_speedup']:.2f}x | {item['estimate']:.4f} "
            f"| {item['final_estimate']:.4f} | {verified} | {item['origin']} |"
        )
    return "\n".join(lines) + "\n"


def verified_text(item: dict[str, Any]) -> str:
    """A finalist's fine-tuned metric on the fresh rows: "" unverified, the mean and each seed's with
    --verify-seeds (``0.8700 (0.8650, 0.8750)``)."""
    if item.get("verified") is None:
        return ""
    seeds = item.get("verified_by_seed")
    return f"{item['verified']:.4f}" + (f" ({', '.join(f'{value:.4f}' for value in seeds)})" if seeds else "")


def plot_front(candidates: list[Candidate], front: list[Candidate], path: Path, target: float, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.scatter([c.predicted_speedup for c in candidates], [c.estimate for c in candidates], s=12, alpha=0.5, label="candidates")
    axes.plot([c.predicted_speedup for c in front], [c.estimate for c in front], "o-", color="C3", label="Pareto front")
    axes.axvline(target, color="grey", linestyle="--", label=f"target {target:.2f}x")
    axes.set_xlabel("predicted speed-up over the untrimmed model")
    axes.set_ylabel(f"estimated {metric}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
