"""Diagnostic for the heal issue: a healed checkpoint with the teacher's embedding layer put back.

Usage: python studies/heal/restore_embeddings.py HEALED OUT [--teacher minilm] [--force]

A heal trains every weight of the student, the embedding layer included, although no trim touches it
(the student's embeddings start equal to the teacher's). This writes HEALED with the teacher's
embeddings (word, position, token type, their LayerNorm) copied back, so that
``studies/heal/heal_pair_loss.py`` and a fine-tune (``heal_study.py --group mrpc-emb``) can tell how much
of what a heal changed in the embeddings the student needed. It first prints how far the heal moved
them: the relative change ‖healed − teacher‖ / ‖teacher‖ of each embedding tensor, and the median
relative change of a word's embedding row.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from trimbert.core.outputs import atomic_output_dir
from trimbert.model import checkpoint
from trimbert.train.heal import HEAL_FILE


def drift(healed: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> str:
    """How far each embedding tensor moved, relative to the teacher's, and the median word row."""
    parts = [f"{name}: {float((healed[name] - value).norm() / value.norm()):.1%}" for name, value in teacher.items()]
    word = "word_embeddings.weight"
    rows = (healed[word] - teacher[word]).norm(dim=1) / teacher[word].norm(dim=1)
    return "moved " + ", ".join(parts) + f"; median word row {float(rows.median()):.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("healed", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--teacher", default="minilm")
    parser.add_argument("--force", action="store_true", help="Replace OUT if it exists.")
    args = parser.parse_args()
    student = checkpoint.load(str(args.healed), head="base")
    teacher = checkpoint.load(args.teacher, head="base")
    print(drift(student.embeddings.state_dict(), teacher.embeddings.state_dict()))
    student.embeddings.load_state_dict(teacher.embeddings.state_dict())
    with atomic_output_dir(args.out, args.force) as staging:
        checkpoint.write_checkpoint(student, staging, tokenizer=checkpoint.load_tokenizer(str(args.healed)))
        shutil.copy(args.healed / HEAL_FILE, staging / HEAL_FILE)
    print(f"wrote {args.out}: {args.healed} with the embeddings of {args.teacher}")


if __name__ == "__main__":
    main()
