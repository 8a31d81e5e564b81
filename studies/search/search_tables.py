"""The tables of studies/search/search_study.py, printed from the files its phases wrote (nothing re-measured).

Usage: python studies/search/search_tables.py OUT
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from scipy.stats import spearmanr
from search_study import (
    FIXED,
    KD_FIXED,
    KD_WINNER,
    LATER,
    PATTERN_OF,
    WINNERS_MORE,
    bench_group,
    searched_variants,
)

from trimbert.report.records import Record
from trimbert.search.outputs import verified_text


def _records(out: Path) -> dict[str, dict]:
    results = out / "sweep" / "results.jsonl"
    if not results.exists():
        return {}
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {row["variant"]: row for row in rows if row.get("status") == "ok"}


def _bench(out: Path, name: str = "bench.json") -> dict[str, Record]:
    """The records of a ``trimbert bench --out`` file by variant (a version-1 file is upgraded)."""
    path = out / name
    if not path.exists():
        return {}
    records = [Record.from_dict(row) for row in json.loads(path.read_text())]
    return {record.variant: record for record in records}


def _speedup(bench: dict[str, Record], name: str) -> tuple[float, float, float] | None:
    """A variant's paired latency speed-up against U* and its interval (None: not benched side by side)."""
    paired = bench[name].speedup() if name in bench else None
    return (paired.ratio, paired.low, paired.high) if paired else None


def predictor_table(out: Path, runtime: str = "pytorch", name: str | None = None) -> None:
    path = out / (name or ("predictor.json" if runtime == "pytorch" else f"predictor-{runtime}.json"))
    if not path.exists():
        return
    data = json.loads(path.read_text())
    predictor, held = data["predictor"], data["held_out"]
    print(f"## Latency predictor ({runtime}, CPU, batch 1, length 128, 2 threads; {path.name})\n")
    costs = ", ".join(f"{name} {value:.3f}" for name, value in predictor["coefficients"].items())
    loo = predictor["fit_error"].get("loo_median")
    forms = f"; leave-one-out median error {', '.join(f'{k} {v:.1%}' for k, v in loo.items())}" if loo else ""
    print(f"Fitted on {len(predictor['probes'])} probes, form {predictor.get('form', 'linear')} (fit error median "
          f"{predictor['fit_error']['median']:.1%}, max {predictor['fit_error']['max']:.1%}{forms}); component costs in ms: {costs}\n")
    print(f"Held-out specs, timed side by side with the untrimmed model ({held['baseline_ms']:.2f} ms):\n")
    print("| spec | measured ms | predicted ms | measured speed-up | predicted speed-up | error |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in held["rows"]:
        print(f"| {row['summary']} | {row['measured_ms']:.2f} | {row['predicted_ms']:.2f} | {row['measured_speedup']:.3f}x "
              f"| {row['predicted_speedup']:.3f}x | {row['error']:+.1%} |")
    print(f"\nMedian |error| {held['median_error']:.1%}, max {held['max_error']:.1%} over {len(held['rows'])} specs.\n")


def importance_tables(out: Path, records: dict[str, dict]) -> None:
    base = records.get("baseline")
    if base is None:
        return
    accuracy = base["metrics"]["accuracy"]
    print(f"## Importance (fine-tuned baseline: {accuracy:.4f})\n")
    print("| --ffn-width 768 | right after pruning | Δ | after re-fine-tuning | Δ | fine-tuned from the pretrained model |")
    print("|---|---:|---:|---:|---:|---:|")
    for rule in ("magnitude", "taylor"):
        evaluated = out / "importance" / f"width768-{rule}-eval.json"
        refit = out / "importance" / f"width768-{rule}-refit" / "metrics.json"
        if not evaluated.exists() or not refit.exists():
            continue
        pruned = json.loads(evaluated.read_text())["metrics"]["accuracy"]
        refitted = json.loads(refit.read_text())["metrics"]["accuracy"]
        direct = records.get(f"width768-{rule}", {}).get("metrics", {}).get("accuracy")
        direct_text = f"{direct:.4f}" if direct is not None else "–"
        print(f"| {rule} | {pruned:.4f} | {100 * (pruned - accuracy):+.2f} | {refitted:.4f} | {100 * (refitted - accuracy):+.2f} "
              f"| {direct_text} |")
    for rule in ("taylor", "analysis"):
        config = out / "importance" / f"auto3-{rule}-on-baseline" / "config.json"
        if config.exists():
            data = json.loads(config.read_text())
            spec = data.get("trim_spec") or data.get("trimbert_trim_spec")
            print(f"\nauto:3 ranked on the fine-tuned baseline ({spec['notes']['measure']}): drops FFNs {spec['drop_ffn']}")
    print("\n| --drop-ffn | FFNs dropped | accuracy | Δ |")
    print("|---|---|---:|---:|")
    for name in ("alternate", "first3", "last3", "auto3-analysis", "auto3-taylor"):
        row = records.get(name)
        if row:
            value = row["metrics"]["accuracy"]
            print(f"| {name} | {row['trim']['drop_ffn']} | {value:.4f} | {100 * (value - accuracy):+.2f} |")
    print()


def estimator_table(out: Path, records: dict[str, dict]) -> None:
    """Each super-model's estimates (head and probe scorers) of the fine-tuned candidates, and Spearman's rho."""
    print("## Estimator: one-shot estimates vs fine-tuned accuracy\n")
    searched = searched_variants(out)
    for folder in searched.values():
        data = json.loads((folder / "search.json").read_text())
        info = data["estimator"]
        # searches made before the probe scorer existed recorded the head's estimates only
        by_pattern = {pattern["name"]: pattern.get("by_scorer", {"head": pattern["estimate"]}) for pattern in info["patterns"]}
        scorer_used = info.get("scorer", "head")
        rows = [(variant, by_pattern[pattern]) for variant, pattern in PATTERN_OF.items() if variant in records and pattern in by_pattern]
        for name, other in searched.items():
            if name not in records:
                continue
            winner = json.loads((other / "search.json").read_text())["best"]
            if winner["origin"].startswith("pattern: "):
                continue  # a hand-made pattern won: its row is there already
            best = winner["spec"]
            # the other searches' winners were not scored by this super-model unless it met them
            scored = [c for c in data["candidates"] if c["spec"] == best]
            if other == folder:
                rows.append((name, info.get("best_by_scorer", {"head": data["best"]["estimate"]})))
            elif scored and scorer_used == "head":
                rows.append((name, {"head": scored[0]["estimate"]}))
        print(f"{folder.name}: super-model trained {info['train_time_s']:.0f} s; {info['score_rows']} {info['score_split']} rows; "
              f"untrimmed estimate {info['untrimmed_estimate']:.4f}; the search used the {scorer_used} scorer\n")
        print("| candidate | estimate (head) | estimate (probe) | fine-tuned accuracy |")
        print("|---|---:|---:|---:|")
        for name, estimates in rows:
            probe = f"{estimates['probe']:.4f}" if "probe" in estimates else "–"
            print(f"| {name} | {estimates['head']:.4f} | {probe} | {records[name]['metrics']['accuracy']:.4f} |")
        for scorer in ("head", "probe"):
            pairs = [(estimates[scorer], records[name]["metrics"]["accuracy"]) for name, estimates in rows if scorer in estimates]
            if len(pairs) >= 2:
                rho = float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic)
                print(f"\nSpearman rank correlation ({scorer} scorer) over {len(pairs)} candidates: {rho:.3f}")
        print()


GROUPS = {None: "the searches before the window and finalists", "final": "window and finalists, --verify 0",
          "verify": "window, finalists, --verify 4", "under": "the defaults (--undershoot 0.05, --verify 4)",
          "seeds2": "--verify-seeds 2 (--undershoot 0.05, --verify 4)"}


def searched_table(out: Path, records: dict[str, dict], bench: dict[str, Record], group: str | None = None) -> None:
    """Searched winners of one group (see search_study.bench_group) against the fixed patterns timed in
    the same bench run."""
    if not bench:
        return
    print(f"## Searched vs fixed patterns: {GROUPS[group]} (one bench run, batch 1, length 128, 2 threads)\n")
    print("| variant | trim | measured speed-up (95% interval) | accuracy |")
    print("|---|---|---:|---:|")
    searched = {name: folder for name, folder in searched_variants(out).items() if bench_group(name) == group}
    for name in [*FIXED, *searched]:
        row, ratio = records.get(name), _speedup(bench, name)
        if row is None or ratio is None:
            continue
        print(f"| {name} | {row['trim_summary']} | {ratio[0]:.3f}x ({ratio[1]:.3f}-{ratio[2]:.3f}) | {row['metrics']['accuracy']:.4f} |")
    print()
    for name, folder in searched.items():
        if name not in records or _speedup(bench, name) is None:
            continue
        data = json.loads((folder / "search.json").read_text())
        target = data["target_speedup"]
        mine = records[name]["metrics"]["accuracy"]
        measured = _speedup(bench, name)[0]
        floor = min(target, measured)  # a winner measured under the target faces every pattern at least as fast
        fixed = [
            (records[other]["metrics"]["accuracy"], other, _speedup(bench, other)[0])
            for other in FIXED
            if other in records and _speedup(bench, other) and _speedup(bench, other)[0] >= floor
        ]
        best = max(fixed) if fixed else None
        phases = ", ".join(f"{key.removesuffix('_s').replace('_', ' ')} {value:.0f} s" for key, value in data["phases_s"].items())
        estimate = data["best"]["estimate"] if data["best"].get("final_estimate") is None else data["best"]["final_estimate"]
        line = (f"- {name} (target {target}x): {records[name]['trim_summary']}, predicted {data['best']['predicted_speedup']:.3f}x, "
                f"estimate {estimate:.4f}, "
                f"measured {measured:.3f}x ({measured / target - 1:+.1%} vs target), accuracy {mine:.4f}")
        if best:
            line += f"; best fixed pattern measured >= {floor:.3f}x: {best[1]} ({best[2]:.3f}x) {best[0]:.4f}, Δ {100 * (mine - best[0]):+.2f} points"
        print(line + f"; search time: {phases}")
    print()


def _by_seed(records: dict[str, dict], *sweeps: Path) -> dict[str, dict[int, float]]:
    """Variant -> seed -> dev accuracy: the main sweep's records, then each sweep folder's results.jsonl."""
    by_seed: dict[str, dict[int, float]] = {}
    for name, row in records.items():
        by_seed.setdefault(name, {})[row["seed"]] = row["metrics"]["accuracy"]
    for results in (sweep / "results.jsonl" for sweep in sweeps):
        for line in results.read_text().splitlines() if results.exists() else []:
            row = json.loads(line)
            if row.get("status") == "ok":
                by_seed.setdefault(row["variant"], {})[row["seed"]] = row["metrics"]["accuracy"]
    return by_seed


def _deltas(mine: dict[int, float], other: dict[int, float]) -> tuple[list[int], list[float]]:
    """The seeds both have, sorted, and the Δ points of ``mine`` against ``other`` on each."""
    shared = sorted(set(mine) & set(other))
    return shared, [100 * (mine[seed] - other[seed]) for seed in shared]


def _paired(mine: dict[int, float], other: dict[int, float]) -> str:
    """Δ points of ``mine`` against ``other`` over the seeds both have: mean ± std (per seed)."""
    _, deltas = _deltas(mine, other)
    if len(deltas) < 2:
        return "–"
    return f"{statistics.mean(deltas):+.2f} ± {statistics.stdev(deltas):.2f} ({', '.join(f'{d:+.2f}' for d in deltas)})"


def kd_table(out: Path, records: dict[str, dict]) -> None:
    """The 1.6x comparison plain (seeds, seeds-more) and with task distillation on every side (seeds-kd):
    each fixed pattern against the searched winner fine-tuned the same way, paired by seed."""
    plain = _by_seed(records, out / "seeds", out / "seeds-more")
    kd = _by_seed({}, out / "seeds-kd")
    base = kd.get("baseline", {})
    if len(base) < 2:
        return
    print(f"## 1.6x, plain and task-distilled (seeds {', '.join(map(str, sorted(base)))}; Δ paired by seed)\n")
    print("| variant | seeds | accuracy | Δ vs baseline (points) | the searched winner (same fine-tune) minus this (points) |")
    print("|---|---:|---:|---:|---:|")
    rows = [("baseline", base, None)]
    for suffix, found in (("", plain), ("-kd", kd)):
        winner = found.get(f"{KD_WINNER}{suffix}", {})
        rows += [(f"{name}{suffix}", found.get(f"{name}{suffix}", {}), winner) for name in KD_FIXED]
        rows.append((f"{KD_WINNER}{suffix}", winner, None))
    for name, seeds, winner in rows:
        values = [seeds[seed] for seed in sorted(set(seeds) & set(base))]
        accuracy = f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else "–"
        against = _paired(winner, seeds) if winner is not None else ""
        print(f"| {name} | {len(values)} | {accuracy} | {_paired(seeds, base) if name != 'baseline' else ''} | {against} |")
    print()


def seeds_table(out: Path, records: dict[str, dict]) -> None:
    """Accuracy over seeds 42 (the sweep), 43 and 44 (the seeds phase) and 45, 46 (seeds-more, where run),
    Δ paired by seed with the baseline; and each 1.6x winner against last:4, paired by seed."""
    by_seed = _by_seed(records, out / "seeds", out / "seeds-more")
    base = by_seed.get("baseline", {})
    if len(base) < 2:
        return
    print(f"## Seeds ({', '.join(map(str, sorted(base)))}): accuracy mean ± std, Δ paired by seed\n")
    print("| variant | seeds | accuracy | Δ vs baseline (points) |")
    print("|---|---:|---:|---:|")
    for name, seeds in by_seed.items():
        if len(seeds) < 2 or not set(seeds) <= set(base):
            continue
        values = list(seeds.values())
        deltas = [100 * (value - base[seed]) for seed, value in seeds.items()]
        print(f"| {name} | {len(seeds)} | {statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} "
              f"| {statistics.mean(deltas):+.2f} ± {statistics.stdev(deltas):.2f} |")
    print()
    fixed = by_seed.get("last4", {})
    for name in WINNERS_MORE:
        shared, deltas = _deltas(by_seed.get(name, {}), fixed)
        if len(shared) >= 2:
            print(f"- {name} vs last4 over seeds {', '.join(map(str, shared))}: Δ {statistics.mean(deltas):+.2f} ± "
                  f"{statistics.stdev(deltas):.2f} points (per seed {', '.join(f'{d:+.2f}' for d in deltas)})")
    print()


def print_tables(out: Path) -> None:
    records = _records(out)
    predictor_table(out, name="predictor-searches.json")  # the head/probe searches' predictor (LayerNorms in the space)
    predictor_table(out, name="predictor-run2.json")  # refitted with the per-width form on the same space
    predictor_table(out)  # the keepln searches' predictor (the default space), fresh held-out timings
    predictor_table(out, "onnx-int8", name="predictor-onnx-int8-linear.json")
    predictor_table(out, "onnx-int8")
    predictor_table(out, "onnx-int8", name="predictor-onnx-int8-keepln.json")  # the default space (LayerNorms kept)
    importance_tables(out, records)
    estimator_table(out, records)
    searched_table(out, records, _bench(out))
    for group in LATER:
        searched_table(out, records, _bench(out, f"bench-{group}.json"), group)
    finalists_table(out)
    seeds_table(out, records)
    kd_table(out, records)


def finalists_table(out: Path) -> None:
    """The search-final searches' finalists: search estimate vs the fresh re-score."""
    for name, folder in searched_variants(out).items():
        if bench_group(name) is None:
            continue
        data = json.loads((folder / "search.json").read_text())
        info = data["estimator"]
        print(f"## Finalists of {folder.name} ({len(data['candidates'])} candidates; re-scored on {info['final_rows']:,} fresh rows)\n")
        print("| trim | predicted speed-up | search estimate | fresh estimate | fine-tuned, fresh rows | origin |")
        print("|---|---:|---:|---:|---:|---|")
        for item in info["finalists"]:
            verified = verified_text(item)
            print(f"| {item['summary']} | {item['predicted_speedup']:.3f}x | {item['estimate']:.4f} | {item['final_estimate']:.4f} "
                  f"| {verified} | {item['origin']} |")
        phases = ", ".join(f"{key.removesuffix('_s').replace('_', ' ')} {value:.0f} s" for key, value in data["phases_s"].items())
        print(f"\nSearch time: {phases}\n")


if __name__ == "__main__":
    print_tables(Path(sys.argv[1]))
