"""The heal issue's measurements that a single sweep does not make: the heal-budget curve and MRPC.

Usage: python studies/heal/heal_study.py OUT [--sweep runs/heal-sst2] [--group budget|mrpc|mrpc-lr|attention|mid|long|longer|lr|long-lr|longer-lr|alt-long|mid-lr|kd|alt-default|mrpc-emb|mrpc-alt|low-lr ...]
       [--seed N ...] [--skip NAME-PART ...] [--table]

The SST-2 grid itself is ``trimbert sweep recipes/heal-sst2.toml --out runs/heal-sst2`` (its report has
the mean ± std over the seeds and the "heal s" column). This script runs the real CLI (``trimbert
trim``, ``heal``, ``finetune``) step by step into OUT, skipping every step whose output folder is
already there (a killed study resumes):

- budget: the full trim (alternate + relu + half) healed for 150, 300 and 600 steps (seed 42,
  the recipe's heal settings otherwise), each then fine-tuned as the recipe's full-trim-healed-kd
  (SST-2, 4,000 rows, 2 epochs, lr 1e-4, max length 64, distilled from the sweep's baseline runs) with
  seeds 42, 43, 44.
- mrpc: all 3,668 MRPC training rows, 3 epochs, lr 1e-4, max length 128: the untrimmed baseline and the
  full trim healed progressively (the sweep's 600-step heal, the best SST-2 schedule) + distilled from
  the baseline; seeds 42-44; and the same with the long heal's checkpoint (group long).
- attention, mid, long, longer, lr: the sweep's progressive heal with one lever changed (the attention loss
  α 1.0; 1,200, 2,400 or 4,800 steps instead of 600; heal lr 5e-4 instead of 1e-4), each fine-tuned + KD
  like the sweep's, seeds 42-44.
- kd: the long heal's checkpoint fine-tuned with other task-distillation weights (no hidden-state
  term; no task loss; the hidden-state term × 3), seeds 42-44.
- long-lr, longer-lr: the lr lever's 5e-4 with 2,400 or 4,800 steps.
- alt-long: ``--drop-ffn alternate`` healed 2,400 steps at lr 5e-4 instead of the sweep's 600 at 1e-4,
  fine-tuned + KD like the sweep's ffn-alternate-healed-kd, seeds 42-44.
- mid-lr: the progressive 2,400-step heal at lr 2e-4, fine-tuned on SST-2 (as the levers) and then on MRPC
  (as group mrpc).
- alt-default: alt-long at the default heal lr 1e-4.
- mrpc-alt: MRPC (as group mrpc) for ``--drop-ffn alternate`` healed 2,400 steps at lr 1e-4 and 5e-4 (groups
  alt-default, alt-long): within 1.5 points, and does the lr-5e-4 heal cost MRPC without relu and LayerNorm stages?
- low-lr: the progressive 2,400-step heal at lr 5e-5, fine-tuned on MRPC (as group mrpc) and SST-2 (as the levers).
- mrpc-emb: MRPC (as group mrpc) from the 2,400-step lr-5e-4 heal with the teacher's embedding layer put back
  (``python studies/heal/restore_embeddings.py OUT/heal-full-prog-2400-lr5e-4 OUT/heal-full-prog-2400-lr5e-4-teacher-emb``
  first): is the heal's drift of the embeddings what costs MRPC?
- mrpc-lr: MRPC (as group mrpc) with the lr-5e-4 heals' checkpoints (2,400 and 4,800 steps: groups long-lr, longer-lr).

Then it prints the tables (mean ± sample std over the seeds, Δ against the baseline of the same
seed, heal tokens and wall time from heal.json). Every number is read from the runs' own files.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from trimbert.report.records import HealCost, Record

SEEDS = (42, 43, 44)
BUDGETS = (150, 300, 600)
GLUE = os.environ.get("TRIMBERT_GLUE_DIR") or str(Path(__file__).resolve().parents[3] / "shared" / "glue")
FULL = ["--drop-ffn", "alternate", "--attention", "relu", "--layernorm", "half"]
SST2 = ["--task", "sst2", "--max-train-samples", "4000", "--epochs", "2", "--lr", "1e-4", "--max-length", "64"]
MRPC = ["--task", "mrpc", "--epochs", "3", "--lr", "1e-4", "--max-length", "128"]
KD = ["--distill-alpha-hidden", "1.0"]  # the recipes' task distillation (+ soft labels, α 0.5/0.5)
HEAL = ["--corpus", GLUE, "--teacher", "minilm", "--seed", "42", "--max-length", "64"]  # + --lr (1e-4 unless a lever sets it)
GROUPS = ("budget", "mrpc", "mrpc-lr", "attention", "mid", "long", "longer", "lr", "long-lr", "longer-lr", "alt-long", "mid-lr", "kd",
          "alt-default", "mrpc-emb", "mrpc-alt", "low-lr")
ALT = ["--drop-ffn", "alternate"]
# the attention lever: the sweep's progressive 600-step heal plus the attention-distribution loss
ATTENTION = ["--schedule", "progressive", "--steps", "600", "--alpha-attention", "1.0"]
# the budget lever: a progressive heal 4 times as long (each stage on texts of its own: 76,800 texts)
LONG = ["--schedule", "progressive", "--steps", "2400"]
MID = ["--schedule", "progressive", "--steps", "1200"]  # the progressive budget curve: 600, 1,200, 2,400
LONGER = ["--schedule", "progressive", "--steps", "4800"]  # 153,600 texts: the stages wrap around the corpus
# the learning-rate lever: the sweep's progressive 600-step heal at 5 times the heal learning rate
LR = ["--schedule", "progressive", "--steps", "600", "--lr", "5e-4"]
LONG_LR = ["--schedule", "progressive", "--steps", "2400", "--lr", "5e-4"]  # both
LONGER_LR = ["--schedule", "progressive", "--steps", "4800", "--lr", "5e-4"]  # and twice the budget
# --drop-ffn alternate healed 4 times as long as the sweep's 600 steps (one stage: the FFNs), at lr 5e-4
ALT_LONG = ["--steps", "2400", "--lr", "5e-4"]
# between the two learning rates: does 2e-4 keep most of 5e-4's SST-2 gain without its MRPC loss?
MID_LR = ["--schedule", "progressive", "--steps", "2400", "--lr", "2e-4"]
# below the default: does MRPC keep improving as the heal lr falls (5e-4 = 2e-4 < 1e-4 on MRPC)?
LOW_LR = ["--schedule", "progressive", "--steps", "2400", "--lr", "5e-5"]
ALT_DEFAULT = ["--steps", "2400"]  # alt-long at the default heal lr 1e-4: is the 0.5-point goal met without --lr 5e-4?
# (group, name, heal arguments, trim): trim "full" heals trim-full, "alt" heals trim-alt
LEVERS = (("attention", "prog-att", ATTENTION, "full"), ("mid", "prog-1200", MID, "full"), ("long", "prog-2400", LONG, "full"),
          ("longer", "prog-4800", LONGER, "full"), ("lr", "prog-lr5e-4", LR, "full"),
          ("long-lr", "prog-2400-lr5e-4", LONG_LR, "full"),
          ("longer-lr", "prog-4800-lr5e-4", LONGER_LR, "full"), ("alt-long", "2400-lr5e-4", ALT_LONG, "alt"),
          ("mid-lr", "prog-2400-lr2e-4", MID_LR, "full"), ("alt-default", "2400", ALT_DEFAULT, "alt"),
          ("low-lr", "prog-2400-lr5e-5", LOW_LR, "full"))


# the task-distillation lever, on the long heal's checkpoint: (name, the fine-tune's distillation arguments)
KD_LEVERS = (("soft", ["--distill-alpha-hidden", "0"]),  # soft labels + task loss only
             ("noce", ["--distill-alpha-ce", "0", "--distill-alpha-kd", "1.0", "--distill-alpha-hidden", "1.0"]),
             ("hidden3", ["--distill-alpha-hidden", "3.0"]))  # the hidden-state term 3 times as heavy


def heal_args(extra: list[str]) -> list[str]:
    """The study's heal arguments with ``extra``'s; the heal learning rate is 1e-4 unless ``extra`` sets it."""
    return [*HEAL, *([] if "--lr" in extra else ["--lr", "1e-4"]), *extra]


def steps(out: Path, sweep: Path, seeds: tuple[int, ...] = SEEDS) -> dict[str, list[tuple[Path, list[str]]]]:
    """Every step of every group: (the folder it writes, the CLI arguments)."""
    trimmed = out / "trim-full"
    groups: dict[str, list[tuple[Path, list[str]]]] = {name: [] for name in GROUPS}
    for group in GROUPS:
        if any(lever[0] == group and lever[3] == "alt" for lever in LEVERS):
            groups[group].append((out / "trim-alt", ["trim", "minilm", "--out", str(out / "trim-alt"), *ALT]))
        else:
            groups[group].append((trimmed, ["trim", "minilm", "--out", str(trimmed), *FULL]))
    for n in BUDGETS:
        if n == 600:
            continue  # the sweep's heal
        heal = out / f"heal-full-{n}"
        groups["budget"].append((heal, ["heal", str(trimmed), *heal_args(["--steps", str(n)]), "--out", str(heal)]))
    progressive = _sweep_heal_dir(sweep, "full-trim-progressive-healed-kd")
    _levers(groups, out, sweep, trimmed, seeds)
    for name, kd in KD_LEVERS:
        for seed in seeds:
            folder = out / "sst2" / f"full-prog-2400-kd{name}-s{seed}"
            teacher = ["--teacher", str(sweep / "runs" / f"baseline-seed{seed}"), *kd]
            argv = ["finetune", str(out / "heal-full-prog-2400"), "--out", str(folder), *SST2, "--seed", str(seed), *teacher]
            groups["kd"].append((folder, argv))
    for n in BUDGETS:
        if n == 600:
            continue  # the sweep's full-trim-healed-kd
        for seed in seeds:
            folder = out / "sst2" / f"full-healed{n}-kd-s{seed}"
            teacher = ["--teacher", str(sweep / "runs" / f"baseline-seed{seed}"), *KD]
            argv = ["finetune", str(out / f"heal-full-{n}"), "--out", str(folder), *SST2, "--seed", str(seed), *teacher]
            groups["budget"].append((folder, argv))
    for seed in seeds:
        base = out / "mrpc" / f"baseline-s{seed}"
        teacher = ["--teacher", str(base), *KD]
        for group, name, model, extra in (
            ("mrpc", "baseline", "minilm", []),
            ("mrpc", "full-progressive-healed-kd", progressive, teacher),
            ("mrpc", "full-prog2400-healed-kd", str(out / "heal-full-prog-2400"), teacher),  # the long heal's (group long)
            ("mrpc-lr", "full-prog2400-lr5e-4-healed-kd", str(out / "heal-full-prog-2400-lr5e-4"), teacher),  # group long-lr's
            ("mrpc-lr", "full-prog4800-lr5e-4-healed-kd", str(out / "heal-full-prog-4800-lr5e-4"), teacher),  # group longer-lr's
            ("mid-lr", "full-prog2400-lr2e-4-healed-kd", str(out / "heal-full-prog-2400-lr2e-4"), teacher),  # after its SST-2 runs
            ("low-lr", "full-prog2400-lr5e-5-healed-kd", str(out / "heal-full-prog-2400-lr5e-5"), teacher),
            ("mrpc-alt", "alt-2400-healed-kd", str(out / "heal-alt-2400"), teacher),  # group alt-default's heal
            ("mrpc-alt", "alt-2400-lr5e-4-healed-kd", str(out / "heal-alt-2400-lr5e-4"), teacher),  # group alt-long's
            # the lr-5e-4 heal with the teacher's embeddings put back (studies/heal/restore_embeddings.py writes it)
            ("mrpc-emb", "full-prog2400-lr5e-4-teacheremb-healed-kd", str(out / "heal-full-prog-2400-lr5e-4-teacher-emb"), teacher),
        ):
            folder = out / "mrpc" / f"{name}-s{seed}"
            groups[group].append((folder, ["finetune", str(model), "--out", str(folder), *MRPC, "--seed", str(seed), *extra]))
    return groups


def _levers(groups: dict, out: Path, sweep: Path, trimmed: Path, seeds: tuple[int, ...]) -> None:
    """Heals with one more lever than the sweep's progressive heal, each fine-tuned + KD like it."""
    for group, name, extra, trim in LEVERS:
        heal = out / f"heal-{trim}-{name}"
        source = trimmed if trim == "full" else out / "trim-alt"
        groups[group].append((heal, ["heal", str(source), *heal_args(extra), "--out", str(heal)]))
        for seed in seeds:
            folder = out / "sst2" / f"{trim}-{name}-kd-s{seed}"
            teacher = ["--teacher", str(sweep / "runs" / f"baseline-seed{seed}"), *KD]
            groups[group].append((folder, ["finetune", str(heal), "--out", str(folder), *SST2, "--seed", str(seed), *teacher]))


def run(out: Path, sweep: Path, chosen: list[str], seeds: tuple[int, ...], skip: tuple[str, ...] = ()) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRIMBERT_GLUE_DIR": GLUE}
    log = out / "log.txt"
    for group, todo in steps(out, sweep, seeds).items():
        if group not in chosen:
            continue
        for folder, argv in todo:
            if folder.exists() or any(part in folder.name for part in skip):
                continue
            start = time.time()
            with log.open("a") as handle:
                handle.write(f"$ trimbert {' '.join(argv)}\n")
                handle.flush()
                quiet = [] if argv[0] == "trim" else ["--json"]  # no progress bars in the log
                code = subprocess.run(
                    [sys.executable, "-m", "trimbert", *argv, *quiet], stdout=handle, stderr=handle, env=env
                ).returncode
                handle.write(f"# exit {code} after {time.time() - start:.0f} s\n")
            if code != 0:
                print(f"failed ({code}): trimbert {' '.join(argv)}; see {log}", file=sys.stderr)


def _metric(folder: Path, key: str) -> float | None:
    path = folder / "metrics.json"
    return json.loads(path.read_text()).get("metrics", {}).get(key) if path.exists() else None


def _stat(values: list[float | None]) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "–"
    if len(found) == 1:
        return f"{found[0]:.4f} (1 seed)"
    suffix = "" if len(found) == len(values) else f" ({len(found)} seeds)"
    return f"{statistics.mean(found):.4f} ± {statistics.stdev(found):.4f}{suffix}"


def _delta(mine: list[float | None], base: list[float | None]) -> str:
    pairs = [m - b for m, b in zip(mine, base, strict=True) if m is not None and b is not None]
    return f"{100 * statistics.mean(pairs):+.2f}" if pairs else "–"


def _heal(folder: Path) -> HealCost | None:
    """What the heal in ``folder`` cost, from its heal.json (a version-1 record is upgraded)."""
    path = folder / "heal.json"
    return Record.from_dict(json.loads(path.read_text())).heal if path.exists() else None


def _cost(heal: HealCost | None) -> str:
    """The tokens, wall time and held-out loss cells of a heal ("–" when it is not there)."""
    if heal is None:
        return "– | – | –"
    return f"{heal.tokens:,} | {heal.time_s:.0f} s | {heal.loss_after:.3f}"


def budget_table(out: Path, sweep: Path) -> None:
    base = [_metric(sweep / "runs" / f"baseline-seed{s}", "accuracy") for s in SEEDS]
    print(f"\nSST-2 accuracy, full trim healed N steps + task KD ({len(SEEDS)} seeds); baseline {_stat(base)}\n")
    print("| heal steps | tokens | heal wall time | held-out heal loss | accuracy | Δ pts vs baseline |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| 0 (no heal: full-trim-kd) | 0 | 0 s | – | {_stat(_runs(sweep, 'full-trim-kd'))} | {_delta(_runs(sweep, 'full-trim-kd'), base)} |")
    for n in BUDGETS:
        heal = _heal(out / f"heal-full-{n}")
        if n == 600:  # the sweep's own heal and runs
            heal = _heal(Path(_sweep_heal_dir(sweep, "full-trim-healed-kd") or out / "missing"))
            accuracy = _runs(sweep, "full-trim-healed-kd")
        else:
            accuracy = [_metric(out / "sst2" / f"full-healed{n}-kd-s{s}", "accuracy") for s in SEEDS]
        print(f"| {n} | {_cost(heal)} | {_stat(accuracy)} | {_delta(accuracy, base)} |")


def levers_table(out: Path, sweep: Path) -> None:
    """The sweep's progressive heal + KD against the same with one more lever."""
    base = [_metric(sweep / "runs" / f"baseline-seed{s}", "accuracy") for s in SEEDS]
    print(f"\nSST-2 accuracy, full trim, progressive heal + task KD, one lever changed; baseline {_stat(base)}\n")
    print("| heal | tokens | heal wall time | held-out heal loss | accuracy | Δ pts vs baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("full trim: progressive, 600 steps (the sweep's)", Path(_sweep_heal_dir(sweep, "full-trim-progressive-healed-kd") or out / "missing"),
             _runs(sweep, "full-trim-progressive-healed-kd")),
            ("--drop-ffn alternate: 600 steps (the sweep's)", Path(_sweep_heal_dir(sweep, "ffn-alternate-healed-kd") or out / "missing"),
             _runs(sweep, "ffn-alternate-healed-kd"))]
    for _, name, extra, trim in LEVERS:
        label = f"{'full trim' if trim == 'full' else '--drop-ffn alternate'}: {' '.join(extra)}"
        rows.append((label, out / f"heal-{trim}-{name}", [_metric(out / "sst2" / f"{trim}-{name}-kd-s{s}", "accuracy") for s in SEEDS]))
    for name, kd in KD_LEVERS:
        rows.append((f"full trim: --schedule progressive --steps 2400, fine-tune {' '.join(kd)}", out / "heal-full-prog-2400",
                     [_metric(out / "sst2" / f"full-prog-2400-kd{name}-s{s}", "accuracy") for s in SEEDS]))
    for label, folder, accuracy in rows:
        print(f"| {label} | {_cost(_heal(folder))} | {_stat(accuracy)} | {_delta(accuracy, base)} |")


def _sweep_heal_dir(sweep: Path, variant: str) -> str | None:
    """The healed checkpoint's folder of the sweep's first unit of ``variant`` that was fine-tuned from one."""
    path = sweep / "results.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    records = [Record.from_dict(json.loads(line)) for line in lines if line.strip()]
    return next((r.heal.dir for r in records if r.variant == variant and r.heal and r.heal.dir), None)


def _runs(sweep: Path, variant: str) -> list[float | None]:
    return [_metric(sweep / "runs" / f"{variant}-seed{s}", "accuracy") for s in SEEDS]


def mrpc_table(out: Path) -> None:
    print(f"\nMRPC, all training rows, 3 epochs ({len(SEEDS)} seeds)\n")
    print("| run | accuracy | F1 | Δ accuracy pts | Δ F1 pts |")
    print("|---|---:|---:|---:|---:|")
    base = {k: [_metric(out / "mrpc" / f"baseline-s{s}", k) for s in SEEDS] for k in ("accuracy", "f1")}
    names = ("baseline", "full-progressive-healed-kd", "full-prog2400-healed-kd", "full-prog2400-lr2e-4-healed-kd",
             "full-prog2400-lr5e-4-healed-kd", "full-prog4800-lr5e-4-healed-kd", "full-prog2400-lr5e-4-teacheremb-healed-kd",
             "full-prog2400-lr5e-5-healed-kd", "alt-2400-healed-kd", "alt-2400-lr5e-4-healed-kd")
    for name in names:
        mine = {k: [_metric(out / "mrpc" / f"{name}-s{s}", k) for s in SEEDS] for k in ("accuracy", "f1")}
        print(
            f"| {name} | {_stat(mine['accuracy'])} | {_stat(mine['f1'])} | "
            f"{_delta(mine['accuracy'], base['accuracy'])} | {_delta(mine['f1'], base['f1'])} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sweep", type=Path, default=Path("runs/heal-sst2"), help="The heal-sst2 sweep's --out.")
    parser.add_argument("--group", action="append", choices=GROUPS)
    parser.add_argument("--seed", type=int, action="append", choices=SEEDS, help="Run only these seeds (default: all).")
    parser.add_argument("--table", action="store_true", help="Only print the tables of what is there.")
    parser.add_argument("--skip", action="append", default=[], help="Skip the steps whose folder name contains this.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        run(args.out, args.sweep, args.group or list(GROUPS), tuple(args.seed or SEEDS), tuple(args.skip))
    budget_table(args.out, args.sweep)
    levers_table(args.out, args.sweep)
    mrpc_table(args.out)


if __name__ == "__main__":
    main()
