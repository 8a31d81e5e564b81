"""``trimbert search``: the most accurate trim under a latency budget, and its Pareto front."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trimbert.cli.app import ForceOpt, JsonOpt, ModelArg, app, console, data_inputs, print_json
from trimbert.cli.config_file import with_config
from trimbert.cli.options import Group, with_options
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.search.settings import SearchSettings
from trimbert.train.settings import DistillSettings, FinetuneSettings, HealSettings

DEFAULT_CACHE = Path(os.environ.get("TRIMBERT_CACHE", Path.home() / ".cache" / "trimbert"))
CacheDirOpt = Annotated[Path, typer.Option("--cache-dir", help="Where fitted latency predictors are kept ($TRIMBERT_CACHE).")]
TRAIN_OPTIONS = ("epochs", "lr", "batch_size", "eval_batch_size", "max_length", "max_train_samples", "seed")
# search --finetune distils the winner by default, with the recipes' weights (hidden states included)
SEARCH_DISTILL = DistillSettings(alpha_hidden=1.0)
HEAL_OPTIONS = {"steps": "--heal-steps", "tokens": "--heal-tokens", "lr": "--heal-lr", "schedule": "--heal-schedule",
                "alpha_attention": "--heal-alpha-attention", "corpus_texts": "--heal-corpus-texts"}


# --config FILE: the search's settings at the top level, the others in their tables ([data], [finetune], ...)
GROUPS = {
    None: Group("settings", SearchSettings),
    "data": Group("source", DataSource),
    "finetune": Group("finetune", FinetuneSettings, include=TRAIN_OPTIONS, flags={"batch_size": "--train-batch-size", "eval_batch_size": "--eval-batch-size"}),
    "distill": Group("distill", DistillSettings, defaults={"alpha_hidden": SEARCH_DISTILL.alpha_hidden}),
    "heal": Group("heal", HealSettings, include=tuple(HEAL_OPTIONS), flags=HEAL_OPTIONS),
}


@app.command()
@with_config(GROUPS, "A TOML file of settings: search settings at the top (speedup = 1.5, as a recipe's search table), "
             "[data], [finetune], [distill], [heal] tables; options given here win.")
@with_options(*GROUPS.values())
def search(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for search.json, front.md/png, best.json, variant.toml.")],
    source: DataSource,
    settings: SearchSettings,
    finetune: FinetuneSettings,
    distill: DistillSettings,
    heal: HealSettings,
    cache_dir: CacheDirOpt = DEFAULT_CACHE,
    finetune_best: Annotated[
        bool,
        typer.Option("--finetune", help="Then fine-tune the baseline and the chosen trim and time them side by side."),
    ] = False,
    distill_winner: Annotated[
        bool | None,
        typer.Option("--distill/--no-distill", help="With --finetune: distil the winner from the fine-tuned baseline "
                     "(soft labels, task loss and hidden states, weighted by --distill-*). On by default; "
                     "--no-distill fine-tunes the winner on the task loss alone."),
    ] = None,
    heal_corpus: Annotated[
        str | None,
        typer.Option("--heal-corpus", help="With --finetune: heal the winner on this unlabeled text first (as trimbert heal "
                     "--corpus; --heal-*), the untrimmed model as its teacher."),
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Search trims of MODEL for the most accurate one predicted to meet --speedup or --latency-ms."""
    from trimbert.core.outputs import check_output_dir
    from trimbert.search.budget import Then
    from trimbert.search.latency import check_cache_dir
    from trimbert.search.outputs import SEARCH_FILE, verified_text
    from trimbert.search.run import search as run_search
    from trimbert.search.winner import check_heal_request
    from trimbert.search.winner import finetune_best as run_finetune_best

    if source.task is None and source.train is None:
        raise TrimbertError("search needs data to estimate accuracy on: give --task (and --data-dir) or --train")
    if (distill_winner is not None or heal_corpus) and not finetune_best:
        raise TrimbertError("--distill, --no-distill and --heal-corpus say how --finetune trains the winner: add --finetune")
    distilled = finetune_best and distill_winner is not False
    if distill != SEARCH_DISTILL and not distilled:
        raise TrimbertError("--distill-* settings say how --finetune distils the winner: add --finetune, drop --no-distill")
    if heal != HealSettings() and heal_corpus is None:
        raise TrimbertError("--heal-* settings need --heal-corpus")
    check_heal_request(settings, heal, heal_corpus)
    # every input counts (data, latency cache, heal corpus); ~ expanded once: use it from here on
    out = check_output_dir(out, force, inputs=(model, *data_inputs(source), cache_dir, heal_corpus))
    check_cache_dir(cache_dir)
    then = Then(distill=distilled, heal=heal if heal_corpus else None, bench_s=settings.bench_seconds) if finetune_best else None
    report = run_search(
        model, source, out, settings=settings, finetune=finetune, cache_dir=cache_dir / "latency",
        force=force, progress=not as_json, then=then, on_plan=lambda plan: _print_plan(plan, as_json),
    )
    trained = None
    if finetune_best:  # with the settings the search ran with (a budget's changes made)
        trained = run_finetune_best(
            Path(out), model, source, report.plan.settings, report.plan.finetune, distill=distill if distilled else None,
            heal=heal if heal_corpus else None, heal_corpus=heal_corpus, progress=not as_json,
        )
    if as_json:
        print_json({**json.loads((Path(out) / SEARCH_FILE).read_text()), "finetune": trained})
        return
    predictor = report.predictor
    how = "from the cache" if report.predictor_cached else f"measured {len(predictor.probes)} probe trims"
    console.print(
        f"latency predictor ({settings.runtime}, batch {settings.batch_size}, length {settings.seq_len}): {how}; "
        f"untrimmed {predictor.baseline_ms:.2f} ms; {predictor.form} costs, fit error median "
        f"{predictor.fit_error['median']:.1%}, max {predictor.fit_error['max']:.1%}"
    )
    info = report.estimator
    console.print(
        f"estimator {info['kind']}: trained in {info['train_time_s']:.0f} s on {info['train_rows']:,} rows; "
        f"scores on {info['score_rows']:,} {info['score_split']} rows; untrimmed estimate {info['untrimmed_estimate']:.4f}"
    )
    result = report.result
    low, high = report.window
    table = Table(title=f"Pareto front (target {report.min_speedup:.2f}x, candidates predicted {low:.2f}-{high:.2f}x; "
                        f"{len(result.candidates)} candidates, "
                        f"{result.generations} generations, stopped: {result.stopped})")
    for column, justify in (("trim", "left"), ("predicted ms", "right"), ("speed-up", "right"), (f"est. {info['metric']}", "right"), ("origin", "left")):
        table.add_column(column, justify=justify)
    for candidate in result.front():
        name = candidate.spec.summary() + (" (chosen)" if candidate is result.best else "")
        table.add_row(name, f"{candidate.predicted_ms:.2f}", f"{candidate.predicted_speedup:.2f}x", f"{candidate.estimate:.4f}", candidate.origin)
    console.print(table)
    if settings.finalists and not info.get("finalists"):
        console.print(
            f"no finalists: fewer than {min(settings.final_rows, 100)} fresh training rows were left after the score rows, "
            "so the best search estimate wins unverified (use --max-train-samples or --score-rows to leave some)"
        )
    if info.get("finalists"):
        finals = Table(title=f"Finalists, re-scored on {info['final_rows']:,} fresh rows")
        columns = ["trim", "speed-up", "search est.", "fresh est.", "fine-tuned (fresh rows)", "origin"]
        for column in columns:
            finals.add_column(column, justify="left" if column in ("trim", "origin") else "right")
        for item in info["finalists"]:
            verified = verified_text(item)
            finals.add_row(item["summary"], f"{item['predicted_speedup']:.2f}x", f"{item['estimate']:.4f}",
                           f"{item['final_estimate']:.4f}", verified, item["origin"])
        console.print(finals)
    stopped = info.get("stopped_early")
    if stopped:
        console.print(f"the super-model's fine-tune stopped at step {stopped['step']:,} of {stopped['of']:,} to keep to the budget")
    for note in ("finalists_stopped", "verify_stopped"):
        if note in result.notes:
            console.print(f"{result.notes[note]}")
    phases = ", ".join(f"{name.removesuffix('_s').replace('_', ' ')} {seconds:.0f} s" for name, seconds in report.phases_s.items())
    console.print(f"chosen: {result.best.spec.summary()}  ({phases})")
    console.print(f"saved to {out} (best.json: trimbert finetune MODEL --spec {Path(out) / 'best.json'} ...)")
    if trained is not None:
        interval = trained["measured_interval"]
        healed = trained["healed"] or {}
        if "tokens" in healed:
            console.print(f"healed the winner on {healed['tokens']:,} tokens in {healed['heal_time_s']:.0f} s "
                          f"(held-out heal loss {healed['loss_before']:.3f} → {healed['loss_after']:.3f}; {healed['dir']})")
        elif healed:
            console.print(f"not healed: {healed['skipped']}")
        if trained["distilled"]:
            console.print("distilled the winner from the fine-tuned baseline")
        console.print(
            f"fine-tuned: {trained['metric']} {trained['searched']:.4f} (estimated {trained['estimate']:.4f}) vs baseline "
            f"{trained['baseline']:.4f}; speed-up measured {trained['measured_speedup']:.2f}x "
            f"({interval[0]:.2f}-{interval[1]:.2f}) vs predicted {trained['predicted_speedup']:.2f}x (finetune.json)"
        )


def _print_plan(plan, as_json: bool) -> None:
    """What the search will do and about how long (with --json: in the JSON, under "plan")."""
    if not as_json:
        for line in plan.describe():
            console.print(line, highlight=False)
