"""Issue 24's timing: every model of a deploy sweep in every runtime, in ONE alternating run per shape.

Reads the sweep folder written by ``trimbert sweep studies/deploy/<task>.toml --out DIR``: its run
folders (fine-tuned models, with their exports in ``onnx/``: the plain graph, ``trimbert export``'s
default) and ``results.jsonl`` (the accuracy of each model in each runtime). Adds the untrimmed
model's *fused* ONNX Runtime graph (``export --fuse``, fp32 and int8) as ``baseline-fused``, so the
two forms are compared in the same run. Then, per shape (default batch 8 x 64 and 1 x 128, 2
threads), times everything side by side with :func:`trimbert.measure.bench.bench_models` (paired
ratios against U*, the untrimmed model at its fastest, with 95% intervals) and prints one table per
shape: runtime, accuracy, latency, speed-up vs U*. Writes ``DIR/bench-runtimes-BxS.json``.

    python studies/deploy/bench_runtimes.py runs/deploy-sst2 [--shape 8x64 --shape 1x128] [--max-seconds 60]

Uses only the public API. Run it on a quiet machine: nothing else may run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import trimbert
from trimbert.deploy.evaluate import evaluate_onnx
from trimbert.deploy.export import export_onnx
from trimbert.measure.bench import BenchSettings, bench_models
from trimbert.sweep.recipe import load_recipe

RUNTIMES = ["pytorch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8"]


def _accuracies(folder: Path) -> dict[str, dict[str, float]]:
    """{variant name (with runtime suffix): metrics} from the sweep's records."""
    metrics = {}
    for line in (folder / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("status", "ok") == "ok" and record.get("metrics"):
            name = record["variant"]
            metrics[name] = record["metrics"]
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--shape", action="append", default=None, help="BATCHxSEQ (default 8x64 and 1x128)")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    runs = sorted(path for path in (args.sweep / "runs").iterdir() if (path / "metrics.json").is_file())
    names = {run.name.rsplit("-seed", 1)[0]: run for run in runs}
    metrics = _accuracies(args.sweep)
    models = {name: (trimbert.load(run), str(run)) for name, run in names.items()}
    exports = {name: run / "onnx" for name, run in names.items() if (run / "onnx").is_dir()}
    with tempfile.TemporaryDirectory(prefix="fused-graph-") as work:
        other = Path(work) / "baseline-fused"
        export_onnx(models["baseline"][0], other, int8=True, fuse=True, tokenizer=trimbert.load_tokenizer(names["baseline"]))
        recipe = load_recipe(args.sweep / "recipe.toml")
        for runtime, int8 in (("@ort", False), ("@ort-int8", True)):  # the fused graph's own accuracy
            evaluated = evaluate_onnx(other, recipe.data, int8=int8, max_length=recipe.finetune.max_length)
            metrics["baseline-fused" + runtime] = evaluated["metrics"]
        models["baseline-fused"] = models["baseline"]
        exports["baseline-fused"] = other
        runtimes_of = {"baseline-fused": ["onnxruntime", "onnxruntime-int8"]}
        for shape in args.shape or ["8x64", "1x128"]:
            batch, seq = (int(part) for part in shape.split("x"))
            settings = BenchSettings(
                batch_size=batch, seq_len=seq, device="cpu", threads=args.threads, repeats=10, warmup=2,
                runtimes=RUNTIMES, max_seconds=args.max_seconds,
            )
            report = bench_models(models, settings, baseline="baseline", exports=exports, runtimes_of=runtimes_of)
            out = args.sweep / f"bench-runtimes-{shape}.json"
            out.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
            _print(report, shape, metrics)


def _print(report, shape: str, metrics: dict[str, dict[str, float]]) -> None:
    star = report.u_star
    latency = {c.variant: c for c in report.comparisons if c.quantity == "latency" and c.versus == star}
    print(f"\n## batch {shape}: U* = {star}, other CPU use {100 * max(c.other_cpu for c in latency.values()):.0f}%\n")
    print("| model | accuracy | latency ms | speed-up vs U* | 95% interval | stable |")
    print("|:---|---:|---:|---:|---:|:---:|")
    for record in sorted(report.records, key=lambda r: r.latency_ms):
        name = record.variant
        accuracy = metrics.get(name, {}).get("accuracy")
        cell = "-" if accuracy is None else f"{accuracy:.4f}"
        if name == star:
            print(f"| **{name} (U\\*)** | {cell} | {record.latency_ms:.2f} | 1.00 | - | - |")
            continue
        c = latency[name]
        print(f"| {name} | {cell} | {record.latency_ms:.2f} | {c.ratio:.2f} | {c.low:.2f}–{c.high:.2f} | {'yes' if c.stable else 'NO'} |")


if __name__ == "__main__":
    main()
