"""Padded tensor batches from a dataset sample, for analysis and calibration (no training).
"""

from __future__ import annotations

from typing import Any

import torch

from trimbert.data.sampling import subsample, tokenize
from trimbert.errors import TrimbertError

# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def make_batches(encoded: Any, tokenizer: Any, batch_size: int = 32) -> list[dict[str, torch.Tensor]]:
    """Pad a tokenized dataset (``trimbert.data.tokenize`` output) into batches of tensors.

    Rows are grouped by length (stable sort) so that little compute goes to padding; every measure
    is over the same rows in the same order for the original and each cut, so the order is free.
    """
    from transformers import DataCollatorWithPadding

    if batch_size < 1:
        raise TrimbertError(f"batch size must be at least 1, got {batch_size}")
    collator = DataCollatorWithPadding(tokenizer)
    keep = [
        c for c in ("input_ids", "attention_mask", "token_type_ids", "labels") if c in encoded.column_names
    ]
    rows = [encoded[i] for i in range(len(encoded))]
    rows = [{key: row[key] for key in keep} for row in rows]
    rows.sort(key=lambda row: len(row["input_ids"]))
    return [dict(collator(rows[start : start + batch_size])) for start in range(0, len(rows), batch_size)]


def sample_batches(
    dataset: Any,
    tokenizer: Any,
    *,
    samples: int = 256,
    seed: int = 0,
    max_length: int = 128,
    batch_size: int = 32,
    tokenized: bool = False,
) -> list[dict[str, torch.Tensor]]:
    """``samples`` rows of ``dataset`` (drawn with ``seed``; deterministic), tokenized and padded.

    ``dataset``: rows with ``text_a`` (``text_b``) and ``label`` as :mod:`trimbert.data.glue` loads them,
    or, with ``tokenized=True``, rows already tokenized (``input_ids``, ..., ``labels``).
    """

    if samples < 1:
        raise TrimbertError(f"--samples must be at least 1, got {samples}")
    rows = subsample(dataset, samples, seed)
    if not tokenized:
        from datasets import DatasetDict

        rows = tokenize(DatasetDict({"sample": rows}), tokenizer, max_length)["sample"]
    return make_batches(rows, tokenizer, batch_size)
