#!/usr/bin/env bash
# Issue 26's measurement: trimbert compress on a fine-tuned MiniLM, at several targets, against U*.
#   bash studies/compress/run.sh RUN_DIR OUT_DIR [SPEEDUPS] [DISTILLED] [HEADS_ONLY] [HEADS_DISTILLED]
#   EXTRA="--batch-size 1 --seq-len 128" bash studies/compress/run.sh RUN_DIR OUT_DIR_1x128 "1.3 1.5 2.0" "" ""
# RUN_DIR: a fine-tuned run (trimbert finetune ... --out RUN_DIR). Every job is `trimbert compress`
# with --runtime auto (U*'s runtime) at batch 8 x 64 unless EXTRA says otherwise; a later target
# starts from a copy of the first job's folder, so the reference stage and the latency predictor are
# measured once and reused (compress.json keeps the stages whose settings did not change).
# Run it on a quiet machine: every stage but compress times something.
set -euo pipefail
run=$1; out=$2
speedups=${3-"1.3 1.5 2.0"}; distilled=${4-"1.5 2.0"}; heads_only=${5-"1.1 1.2 1.3"}  # "" = none
heads_distilled=${6-""}  # heads-only targets also recovered by distillation (from heads-X)
cache=${TRIMBERT_CACHE:-$out/cache}
compress() { trimbert compress "$run" --out "$1" --threads 2 --cache-dir "$cache" ${EXTRA-} "${@:2}"; }
from_first() { [ -d "$1" ] || cp -r "$out/rf-${speedups%% *}" "$1"; }
mkdir -p "$out"
first=1
for x in $speedups; do
  if [ $first = 1 ]; then first=0; else from_first "$out/rf-$x"; fi
  compress "$out/rf-$x" --speedup "$x"
done
for x in $distilled; do
  [ -d "$out/rfd-$x" ] || cp -r "$out/rf-$x" "$out/rfd-$x"
  compress "$out/rfd-$x" --speedup "$x" --recover distill
done
for x in $heads_only; do
  from_first "$out/heads-$x"
  compress "$out/heads-$x" --speedup "$x" --units heads
done
for x in $heads_distilled; do
  [ -d "$out/headsd-$x" ] || cp -r "$out/heads-$x" "$out/headsd-$x"
  compress "$out/headsd-$x" --speedup "$x" --units heads --recover distill
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
rows = []
for state in sorted(Path(sys.argv[1]).glob("*/compress.json")):
    job = json.loads(state.read_text())
    stages = job["stages"]
    if "bench" not in stages:
        continue
    s, c, e, b, r = job["settings"], stages["compress"], stages["evaluate"], stages["bench"], stages["reference"]
    fp32 = r["accuracy"]["pytorch"]
    wall = c["fisher_seconds"] + c["search_seconds"] + c["lstsq_seconds"]
    rows.append(f"| {state.parent.name} | {s['speedup']} | {s['units']} | {s['recover']} | {c['summary']} | {e['runtime']} "
                f"| {e['value']:.4f} | {100 * (e['value'] - fp32):+.2f} | {b['u_star']} ({b['u_star_accuracy']:.4f}) "
                f"| {b['latency_ms']:.2f} | {b['speedup']:.2f} [{b['low']:.2f}-{b['high']:.2f}]{'' if b['stable'] else ' unstable'} "
                f"| {wall:.0f} | {stages.get('recover', {}).get('seconds', 0):.0f} |")
print("| job | asked | units | recover | trim | runtime | metric | Δ points vs fp32 | U* | ms | speed-up vs U* [95%] | compress s | recover s |")
print("|:---|---:|:---|:---|:---|:---|---:|---:|:---|---:|---:|---:|---:|")
print("\n".join(rows))
PY
