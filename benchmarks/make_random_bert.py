"""Write a BERT-base-shaped checkpoint with random weights (BertConfig() defaults) for speed/size tests.

Usage: python benchmarks/make_random_bert.py OUT_DIR [--layers N]
The tokenizer of the bundled MiniLM (the same uncased 30,522-token vocabulary) is saved beside it.
Skips the work if OUT_DIR already holds a checkpoint.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402

import trimbert  # noqa: E402
from trimbert.model.checkpoint import bundled_model_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    if (args.out / "model.safetensors").is_file():
        print(f"{args.out} exists; reusing it")
        return
    torch.manual_seed(0)
    model = BertModel(BertConfig(num_hidden_layers=args.layers))
    trimbert.save(model, args.out, tokenizer=trimbert.load_tokenizer(bundled_model_path()))
    size = (args.out / "model.safetensors").stat().st_size
    print(f"wrote {args.out}: {sum(p.numel() for p in model.parameters()):,} parameters, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
