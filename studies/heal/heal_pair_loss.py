"""Does a heal on single sentences carry over to sentence pairs? The heal loss of healed checkpoints on MRPC.

Usage: python studies/heal/heal_pair_loss.py CHECKPOINT [CHECKPOINT ...] [--teacher minilm] [--rows 256]

The heal corpus (``--corpus ../shared/glue``) is single sentences at max length 64; pair tasks (MRPC, RTE,
STS-B) feed two segments, longer (MRPC dev pairs average 53 tokens, a fifth over 64). For each checkpoint
this prints :func:`trimbert.train.heal.heal_loss` (the default weights) against the teacher on the first
``--rows`` MRPC dev pairs at max length 128 and on their first sentences alone at max length 64: if the
pair loss stays close to the single-sentence loss, the heal did carry over to pairs.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import torch

from trimbert.model import checkpoint
from trimbert.train.distill import block_pairs
from trimbert.train.heal import heal_loss
from trimbert.train.settings import HealSettings

GLUE = os.environ.get("TRIMBERT_GLUE_DIR") or str(Path(__file__).resolve().parents[3] / "shared" / "glue")


def mean_loss(model: torch.nn.Module, teacher: torch.nn.Module, encoded: dict, batch_size: int = 32) -> float:
    pairs, settings, losses = block_pairs(model, teacher), HealSettings(), []
    with torch.no_grad():
        for start in range(0, encoded["input_ids"].shape[0], batch_size):
            batch = {key: value[start : start + batch_size] for key, value in encoded.items()}
            student = model(**batch, output_hidden_states=True, return_dict=True)
            master = teacher(**batch, output_hidden_states=True, return_dict=True)
            losses.append(float(heal_loss(student, master, batch["attention_mask"], pairs, settings)[0]))
    return sum(losses) / len(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--teacher", default="minilm")
    parser.add_argument("--rows", type=int, default=256)
    args = parser.parse_args()
    with open(Path(GLUE) / "MRPC" / "dev.tsv", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1 : args.rows + 1]
    first, second = [row[3] for row in rows], [row[4] for row in rows]
    teacher = checkpoint.load(args.teacher, head="base").eval()
    tokenizer = checkpoint.load_tokenizer(args.teacher)
    pair = tokenizer(first, second, truncation=True, max_length=128, padding=True, return_tensors="pt")
    single = tokenizer(first, truncation=True, max_length=64, padding=True, return_tensors="pt")
    lengths = pair["attention_mask"].sum(1).float()
    print(f"{len(rows)} MRPC dev pairs: {lengths.mean():.1f} tokens on average, {100 * (lengths > 64).float().mean():.0f}% over 64\n")
    print("| checkpoint | heal loss, pairs (len 128) | heal loss, first sentences (len 64) |")
    print("|---|---:|---:|")
    for path in args.checkpoints:
        model = checkpoint.load(path, head="base").eval()
        print(f"| {path} | {mean_loss(model, teacher, pair):.4f} | {mean_loss(model, teacher, single):.4f} |", flush=True)


if __name__ == "__main__":
    main()
