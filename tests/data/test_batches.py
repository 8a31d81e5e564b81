"""make_batches: padded batches of rows of similar length."""

import trimbert
from trimbert.data.batches import make_batches


def test_make_batches_groups_by_length(tiny_checkpoint):
    from datasets import Dataset

    tokenizer = trimbert.load_tokenizer(tiny_checkpoint)
    texts = ["a b c d e f g h", "a", "a b c d", "a b"]
    encoded = Dataset.from_dict(dict(tokenizer(texts)))
    batches = make_batches(encoded, tokenizer, batch_size=2)
    assert [batch["input_ids"].shape[1] for batch in batches] == [4, 10]
    assert int(sum(batch["attention_mask"].sum() for batch in batches)) == sum(
        len(ids) for ids in encoded["input_ids"]
    )
