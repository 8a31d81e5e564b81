"""Diagnostic for the heal issue: a healed checkpoint with the teacher's embedding layer put back.

Usage: python benchmarks/restore_embeddings.py HEALED OUT [--teacher minilm]

A heal trains every weight of the student, the embedding layer included, although no trim touches it
(the student's embeddings start equal to the teacher's). This writes HEALED with the teacher's
embeddings (word, position, token type, their LayerNorm) copied back, so that
``benchmarks/heal_pair_loss.py`` and a fine-tune (``heal_study.py --group mrpc-emb``) can tell how much
of what a heal changed in the embeddings the student needed.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from trimbert.model import checkpoint
from trimbert.train.heal import HEAL_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("healed", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--teacher", default="minilm")
    args = parser.parse_args()
    student = checkpoint.load(str(args.healed), head="base")
    teacher = checkpoint.load(args.teacher, head="base")
    student.embeddings.load_state_dict(teacher.embeddings.state_dict())
    with checkpoint.atomic_output_dir(args.out) as staging:
        checkpoint.write_checkpoint(student, staging, tokenizer=checkpoint.load_tokenizer(str(args.healed)))
        shutil.copy(args.healed / HEAL_FILE, staging / HEAL_FILE)
    print(f"wrote {args.out}: {args.healed} with the embeddings of {args.teacher}")


if __name__ == "__main__":
    main()
