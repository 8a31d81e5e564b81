import math

import pytest
import torch

import trimbert
from trimbert.errors import TrimbertError
from trimbert.surgery import DroppedFFN, encoder_layers

MINILM_FFN_PARAMS = 1_182_336  # 384*1536 + 1536 + 1536*384 + 384 + 2*384


def test_empty_spec_gives_bit_identical_logits(tiny_model, tiny_batch):
    with torch.no_grad():
        before = tiny_model(**tiny_batch).logits
    trimmed = trimbert.trim(tiny_model)
    assert type(trimmed).__name__ == "TrimBertForSequenceClassification"
    assert trimmed.config.spec.is_empty
    with torch.no_grad():
        after = trimmed(**tiny_batch).logits
    assert torch.equal(before, after)


def test_empty_spec_minilm_bit_identical(minilm, tiny_batch):
    with torch.no_grad():
        before = minilm(**tiny_batch).last_hidden_state
    trimmed = trimbert.trim(minilm)
    with torch.no_grad():
        after = trimmed(**tiny_batch).last_hidden_state
    assert torch.equal(before, after)


def _hand_attention_sublayer(block, hidden, keep):
    """BERT's attention sub-layer written out by hand: LayerNorm(Wo·softmax(QK^T/√d + mask)V + h)."""
    attention = block.attention
    heads = attention.self.num_attention_heads
    batch, length, width = hidden.shape
    dim = width // heads

    def split(x):
        return x.view(batch, length, heads, dim).transpose(1, 2)

    query = split(hidden @ attention.self.query.weight.T + attention.self.query.bias)
    key = split(hidden @ attention.self.key.weight.T + attention.self.key.bias)
    value = split(hidden @ attention.self.value.weight.T + attention.self.value.bias)
    scores = query @ key.transpose(-1, -2) / math.sqrt(dim)
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    context = (scores.softmax(-1) @ value).transpose(1, 2).reshape(batch, length, width)
    projected = context @ attention.output.dense.weight.T + attention.output.dense.bias
    norm = attention.output.LayerNorm
    return torch.nn.functional.layer_norm(projected + hidden, (width,), norm.weight, norm.bias, norm.eps)


@pytest.mark.parametrize("block_index", [0, 2])
def test_dropped_ffn_block_outputs_its_attention_sublayer(minilm, tiny_batch, block_index):
    params_before = sum(p.numel() for p in minilm.parameters())
    trimmed = trimbert.trim(minilm, drop_ffn=str(block_index))
    assert sum(p.numel() for p in trimmed.parameters()) == params_before - MINILM_FFN_PARAMS
    block = encoder_layers(trimmed)[block_index]
    assert isinstance(block.output, DroppedFFN)
    captured = {}
    block.register_forward_hook(lambda module, args, output: captured.update(input=args[0], output=output))
    with torch.no_grad():
        trimmed(**tiny_batch)
        expected = _hand_attention_sublayer(block, captured["input"], tiny_batch["attention_mask"].bool())
    keep = tiny_batch["attention_mask"].bool()
    assert torch.allclose(captured["output"][keep], expected[keep], atol=1e-5)


def test_parameter_count_falls_per_dropped_block(minilm):
    params_before = sum(p.numel() for p in minilm.parameters())
    trimmed = trimbert.trim(minilm, drop_ffn="alternate")
    assert sum(p.numel() for p in trimmed.parameters()) == params_before - 3 * MINILM_FFN_PARAMS


def test_stripped_layernorm_is_identity_and_residual_stays(tiny_model, tiny_batch):
    trimmed = trimbert.trim(tiny_model, layernorm="1.attn")
    block = encoder_layers(trimmed)[1]
    assert isinstance(block.attention.output.LayerNorm, torch.nn.Identity)
    assert (
        sum(p.numel() for p in trimmed.parameters())
        == sum(p.numel() for p in tiny_model.parameters()) - 2 * 32
    )
    captured = {}
    block.attention.output.register_forward_hook(
        lambda module, args, output: captured.update(context=args[0], residual=args[1], output=output)
    )
    with torch.no_grad():
        trimmed(**tiny_batch)
    dense = block.attention.output.dense
    assert torch.allclose(captured["output"], dense(captured["context"]) + captured["residual"], atol=1e-6)


def test_full_trim_minilm_counts(minilm):
    trimmed = trimbert.trim(minilm, drop_ffn="alternate", attention="relu", layernorm="half")
    spec = trimmed.config.spec
    assert spec.drop_ffn == (1, 3, 5)
    assert spec.layernorm == ("0.attn", "1.attn", "2.attn", "4.attn")
    assert trimmed.config._attn_implementation == "trimbert_relu"
    assert sum(p.numel() for p in trimmed.parameters()) == 22_713_216 - 3 * MINILM_FFN_PARAMS - 4 * 768


def test_trimming_a_trimmed_model_composes(tiny_model, tiny_batch):
    once = trimbert.trim(tiny_model, drop_ffn="1")
    twice = trimbert.trim(once, drop_ffn="3", attention="relu")
    assert twice.config.spec.drop_ffn == (1, 3)
    assert twice.config.spec.attention == "relu"
    with pytest.raises(TrimbertError, match="block 1 is already dropped"):
        trimbert.trim(twice, drop_ffn="1,2")


def test_dropping_every_ffn_warns(tiny_model, tiny_batch):
    with pytest.warns(UserWarning, match="every FFN is dropped"):
        trimmed = trimbert.trim(tiny_model, drop_ffn="all")
    assert all(isinstance(block.output, DroppedFFN) for block in encoder_layers(trimmed))
    with torch.no_grad():
        assert torch.isfinite(trimmed(**tiny_batch).logits).all()


def test_trim_with_a_spec_object(tiny_model):
    spec = trimbert.TrimSpec(drop_ffn=(0, 2), attention="sigmoid", layernorm=("1.ffn",))
    trimmed = trimbert.trim(tiny_model, spec)
    assert trimmed.config.spec == spec


def test_refuses_other_model_types():
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=50, n_positions=16))
    with pytest.raises(TrimbertError, match="unsupported model type 'gpt2'.*BERT"):
        trimbert.trim(model, drop_ffn="0")


def test_trimmed_model_trains(tiny_model, tiny_batch):
    trimmed = trimbert.trim(tiny_model, drop_ffn="alternate", attention="relu", layernorm="half").train()
    loss = trimmed(**tiny_batch, labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    grads = [p.grad for p in trimmed.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:5])
