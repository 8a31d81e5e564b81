"""Subsample and tokenize datasets the way every command does (seeded, deterministic).
"""

from __future__ import annotations

from typing import Any

import datasets

from trimbert.errors import TrimbertError

# ----------------------------------------------------------------------------------- preprocessing


def subsample(dataset: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    """``n`` rows of ``dataset`` drawn by shuffling with ``seed``; unchanged when n is None or >= its size."""
    if n is None or n >= len(dataset):
        return dataset
    if n < 1:
        raise TrimbertError(f"cannot subsample to {n} rows; the number must be at least 1")
    return dataset.shuffle(seed=seed).select(range(n))


def tokenize(dataset_dict: datasets.DatasetDict, tokenizer: Any, max_length: int) -> datasets.DatasetDict:
    """Tokenize the uniform text columns into input_ids, attention_mask, token_type_ids and labels.

    Sequences are truncated to ``max_length`` and left unpadded (a collator pads each batch).
    """
    column_names = next(iter(dataset_dict.values())).column_names
    text_columns = [column for column in ("text_a", "text_b") if column in column_names]

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(
            batch["text_a"],
            batch.get("text_b"),
            truncation=True,
            max_length=max_length,
            return_token_type_ids=True,
        )

    encoded = dataset_dict.map(encode, batched=True, remove_columns=text_columns)
    return encoded.rename_column("label", "labels")
