"""The report of a compress job: what was kept, its accuracy and speed-up against U*, what each stage cost.

:func:`summarize` reads a finished :class:`~trimbert.compress.job.CompressJob`; :func:`write_report`
writes ``report.md`` beside ``compress.json`` and returns the summary (also what ``--json`` prints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trimbert.compress.job import STAGES, CompressJob
from trimbert.core.io import write_bytes_atomic
from trimbert.report.ustar import WITHIN_POINTS


def summarize(job: CompressJob) -> dict[str, Any]:
    """The job's figures: trim and the method that chose it, target runtime, U*, accuracy (and points vs the
    untrimmed fp32 model), latency, speed-up vs U* with its interval, stage wall times (and the recovery's
    sub-steps')."""
    reference, compressed = job.stages["reference"], job.stages["compress"]
    evaluated, bench = job.stages["evaluate"], job.stages["bench"]
    fp32 = reference["accuracy"]["pytorch"]
    star = bench["u_star"]
    metric = evaluated["metric"]
    delta = 100 * (evaluated["value"] - fp32)
    seconds = {stage: job.stages[stage]["seconds"] for stage in STAGES if stage in job.stages}
    rows = [
        ("trim", compressed["summary"]),
        ("method", compressed.get("method", "retraining-free")),
        ("runtime", evaluated["runtime"]),
        (f"{metric} (untrimmed PyTorch fp32)", f"{fp32:.4f}"),
        (f"{metric} (compressed, {evaluated['runtime']})", f"{evaluated['value']:.4f} ({delta:+.2f} points)"),
        ("U*", f"untrimmed in {star}, {metric} {bench['u_star_accuracy']:.4f}"),
        ("latency ms (batch × length)", f"{bench['latency_ms']:.2f} ({job.settings['batch_size']} × {job.settings['seq_len']})"),
        ("speed-up vs U* (paired, 95% interval)", f"{bench['speedup']:.2f}× [{bench['low']:.2f}–{bench['high']:.2f}]"
         + ("" if bench["stable"] else ", unstable")),
        ("predicted ms / budget ms", f"{compressed['predicted_ms']:.2f} / {compressed['budget_ms']:.2f}"),
    ]
    if compressed.get("method") == "search":
        rows.append(("compress wall time (evolutionary search)", f"{compressed['search_seconds']:.0f} s"))
    else:
        rows.append(("compress wall time (Fisher + search + least squares)",
                     f"{compressed['fisher_seconds'] + compressed['search_seconds'] + compressed['lstsq_seconds']:.0f} s"))
        checked = [p for p in compressed.get("passes") or [] if "speedup" in p]
        if checked:
            steps = [f"{p['speedup']:.2f}× at {p['budget_ms']:.2f} ms" for p in checked]
            if len(compressed["passes"]) > len(checked):
                steps.append(f"kept unchecked at {compressed['passes'][-1]['budget_ms']:.2f} ms")
            rows.append(("passes (speed-up vs U* in a short check, under the budget)", " → ".join(steps)))
            rows.append(("checks wall time", f"{compressed['check_seconds']:.0f} s"))
    rows += [(f"stage {stage}", f"{value:.0f} s") for stage, value in seconds.items()]
    steps = job.stages.get("recover", {}).get("steps") or {}
    rows += [(f"recover: {step}", f"{result['seconds']:.0f} s") for step, result in steps.items()]
    return {
        "trim": compressed["spec"],
        "summary": compressed["summary"],
        "runtime": evaluated["runtime"],
        "metric": metric,
        "untrimmed_fp32": fp32,
        "value": evaluated["value"],
        "delta_points": delta,
        "u_star": star,
        "u_star_value": bench["u_star_accuracy"],
        "latency_ms": bench["latency_ms"],
        "speedup": bench["speedup"],
        "speedup_interval": [bench["low"], bench["high"]],
        "speedup_stable": bench["stable"],
        "stage_seconds": seconds,
        "method": compressed.get("method", "retraining-free"),
        "recover_seconds": {step: result["seconds"] for step, result in steps.items()},
        "rows": rows,
    }


def write_report(out: Path, job: CompressJob) -> dict[str, Any]:
    """Write ``out/report.md`` and return :func:`summarize`'s summary."""
    summary = summarize(job)
    lines = [
        f"# compress: {job.model}",
        "",
        f"U* is the untrimmed model at its fastest deployment measured here among those within {WITHIN_POINTS:g} "
        "points of its PyTorch fp32 metric; the speed-up is a paired ratio, timed side by side in one run.",
        "",
        "| | |",
        "|:---|---:|",
        *[f"| {name} | {value} |" for name, value in summary["rows"]],
        "",
        "## The untrimmed model in every runtime (reference stage)",
        "",
        f"| runtime | {summary['metric']} | latency ms (short bench) |",
        "|:---|---:|---:|",
    ]
    reference = job.stages["reference"]
    for runtime, value in reference["accuracy"].items():
        latency = reference["latency_ms"].get(runtime)
        lines.append(f"| {runtime} | {value:.4f} | {latency:.2f} |" if latency is not None else f"| {runtime} | {value:.4f} | – |")
    fixes = job.stages["compress"].get("fixes") or []
    if fixes:
        lines += ["", "## Least-squares layer fix (reconstruction error before → after)", "",
                  "| block | part | units kept | before | after | applied |", "|---:|:---|---:|---:|---:|:---|"]
        for fix in fixes:
            applied = "yes" if fix["applied"] else f"no ({fix.get('reason') or 'worse'})"
            lines.append(f"| {fix['block']} | {fix['part']} | {fix['units']} | {fix['before']:.4g} | {fix['after']:.4g} | {applied} |")
    write_bytes_atomic(out / "report.md", ("\n".join(lines) + "\n").encode())
    return summary
