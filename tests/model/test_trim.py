import math

import pytest
import torch

import trimbert
from trimbert.errors import TrimbertError
from trimbert.model.ranking import magnitude_importance, select_neurons
from trimbert.model.structure import (
    DYT_ALPHA_INIT,
    AffineNorm,
    DroppedFFN,
    DynamicTanh,
    encoder_layers,
)

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
    layers = trimmed.bert.encoder.layer
    for position, layer in enumerate(layers):  # every kept block's weights learn, not just the embeddings
        for name, parameter in layer.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"layer {position}: {name}"
    # attention (8) + FFN (4) + its LayerNorm (2); blocks 1 and 3 lost their FFN, "half" stripped 0-2.attn
    assert [sum(1 for _ in layer.parameters()) for layer in layers] == [14, 8, 14, 10]
    assert trimmed.classifier.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------ drop_layers

MINILM_BLOCK_PARAMS = 1_774_464  # 4*(384*384+384) + 2*384 (attn LN) + MINILM_FFN_PARAMS
MINILM_PARAMS = 22_713_216


def _params(model):
    return sum(p.numel() for p in model.parameters())


def _run_blocks(model, blocks, batch):
    """Embeddings, then ``blocks`` of ``model`` in sequence (the original model's own modules)."""
    base = model.base_model
    with torch.no_grad():
        hidden = base.embeddings(input_ids=batch["input_ids"])
        mask = batch["attention_mask"].bool()[:, None, None, :]
        for index in blocks:
            hidden = base.encoder.layer[index](hidden, mask)
    return hidden


@pytest.mark.parametrize(
    ("dropped", "kept"),
    [("0", [1, 2, 3, 4, 5]), ("2,4", [0, 1, 3, 5]), ("5", [0, 1, 2, 3, 4]), ("1-4", [0, 5])],
)
def test_drop_layers_runs_the_remaining_original_blocks(minilm, tiny_batch, dropped, kept):
    reference = trimbert.trim(minilm)  # same weights, untouched structure
    expected = _run_blocks(reference, kept, tiny_batch)
    trimmed = trimbert.trim(reference, drop_layers=dropped)
    assert trimmed.config.num_hidden_layers == len(kept)
    assert trimmed.config.spec.kept_layers(6) == tuple(kept)
    assert _params(trimmed) == MINILM_PARAMS - (6 - len(kept)) * MINILM_BLOCK_PARAMS
    keep = tiny_batch["attention_mask"].bool()
    with torch.no_grad():
        out = trimmed(**tiny_batch, output_hidden_states=True)
    assert len(out.hidden_states) == len(kept) + 1
    assert torch.allclose(out.last_hidden_state[keep], expected[keep], atol=1e-5)


def test_drop_layers_tiny_blocks_by_hand(tiny_model, tiny_batch):
    """Block 1 dropped: the output of block 0 goes straight into block 2 (checked with hooks)."""
    original = trimbert.trim(tiny_model)
    trimmed = trimbert.trim(original, drop_layers="1")
    layers = encoder_layers(trimmed)
    assert len(layers) == 3
    seen = {}
    layers[0].register_forward_hook(lambda m, args, out: seen.update(out0=out))
    layers[1].register_forward_hook(lambda m, args, out: seen.update(in2=args[0]))
    with torch.no_grad():
        trimmed(**tiny_batch)
    assert torch.equal(seen["out0"], seen["in2"])
    # The block at position 1 is original block 2: same weights.
    state = {k: v for k, v in trimmed.state_dict().items() if ".layer.1." in k}
    assert state
    assert all(
        torch.equal(v, tiny_model.state_dict()[k.replace(".layer.1.", ".layer.2.")]) for k, v in state.items()
    )


def test_drop_layers_composition_and_refusals(tiny_model):
    once = trimbert.trim(tiny_model, drop_ffn="1,3", layernorm="0.ffn")
    twice = trimbert.trim(once, drop_layers="1")  # a block whose FFN was dropped
    assert twice.config.spec.drop_layers == (1,)
    assert twice.config.spec.drop_ffn == (3,)
    # Indices stay in the original numbering: block 3 is now at position 2.
    assert isinstance(encoder_layers(twice)[2].output, DroppedFFN)
    thrice = trimbert.trim(twice, drop_layers="3", layernorm="2.ffn")
    assert thrice.config.spec.drop_layers == (1, 3)
    assert thrice.config.spec.layernorm == ("0.ffn", "2.ffn")
    assert isinstance(encoder_layers(thrice)[1].output.LayerNorm, torch.nn.Identity)
    with pytest.raises(TrimbertError, match="--drop-layers: block 1 is already dropped"):
        trimbert.trim(thrice, drop_layers="1")
    with pytest.raises(TrimbertError, match="--drop-layers: cannot drop every block"):
        trimbert.trim(thrice, drop_layers="0,2")
    with pytest.raises(TrimbertError, match="--layernorm: LayerNorm 3.attn does not exist"):
        trimbert.trim(thrice, layernorm="3.attn")


# ------------------------------------------------------------------ ffn_width


def test_ffn_width_parameter_count_minilm(minilm):
    trimmed = trimbert.trim(minilm, ffn_width=768, drop_ffn="5")
    widths = trimmed.config.spec.ffn_widths
    assert widths == {0: 768, 1: 768, 2: 768, 3: 768, 4: 768}
    assert trimmed.config.spec.notes["ffn_width_rule"] == "magnitude"
    per_block = (1536 - 768) * (2 * 384 + 1)
    assert _params(trimmed) == MINILM_PARAMS - MINILM_FFN_PARAMS - 5 * per_block
    layer = encoder_layers(trimmed)[0]
    assert layer.intermediate.dense.weight.shape == (768, 384)
    assert layer.output.dense.weight.shape == (384, 768)


def test_magnitude_importance_picks_the_documented_neurons(tiny_model):
    block = encoder_layers(tiny_model)[0]
    with torch.no_grad():
        block.intermediate.dense.weight.fill_(1.0)  # every input row has norm sqrt(32)
        block.output.dense.weight.fill_(1.0)
        # Neuron 5: big input row, small output column (product 4 * 0.5 = 2 in norm units);
        # neuron 9: output column x3; neuron 40: input row x2; neuron 7: output column x0.
        block.intermediate.dense.weight[5] *= 4
        block.output.dense.weight[:, 5] *= 0.5
        block.output.dense.weight[:, 9] *= 3
        block.intermediate.dense.weight[40] *= 2
        block.output.dense.weight[:, 7] = 0
    importance = magnitude_importance(block)
    assert importance[7] == 0
    assert torch.allclose(importance[9], importance[0] * 3)
    assert select_neurons(importance, 3).tolist() == [5, 9, 40]
    # Neuron 7 (no output) is the first to go; ties (all others) go to the lower index.
    assert select_neurons(importance, 63).tolist() == [i for i in range(64) if i != 7]
    assert select_neurons(importance, 4).tolist() == [0, 5, 9, 40]


def test_ffn_width_removing_dead_neurons_keeps_outputs(tiny_model, tiny_batch):
    dead = torch.arange(0, 64, 4)  # 16 neurons that write nothing
    for layer in encoder_layers(tiny_model):
        with torch.no_grad():
            layer.output.dense.weight[:, dead] = 0
    with torch.no_grad():
        before = tiny_model(**tiny_batch).logits
    params = _params(tiny_model)
    trimmed = trimbert.trim(tiny_model, ffn_width=48)
    assert _params(trimmed) == params - 4 * 16 * (2 * 32 + 1)
    alive = [i for i in range(64) if i % 4]
    for layer, original in zip(encoder_layers(trimmed), encoder_layers(tiny_model), strict=True):
        assert torch.equal(layer.intermediate.dense.weight, original.intermediate.dense.weight[alive])
        assert torch.equal(layer.output.dense.weight, original.output.dense.weight[:, alive])
    with torch.no_grad():
        assert torch.allclose(trimmed(**tiny_batch).logits, before, atol=1e-6)


def test_ffn_width_with_external_scores(tiny_model):
    scores = {block: torch.zeros(64) for block in range(4)}
    scores[2][[3, 60, 17]] = torch.tensor([1.0, 3.0, 2.0])
    source = [layer.intermediate.dense.weight.clone() for layer in encoder_layers(tiny_model)]
    trimmed = trimbert.trim(tiny_model, ffn_width="2:3", ffn_importance=scores)
    assert trimmed.config.spec.ffn_widths == {2: 3}
    assert trimmed.config.spec.notes["ffn_width_rule"] == "scores"
    assert torch.equal(encoder_layers(trimmed)[2].intermediate.dense.weight, source[2][[3, 17, 60]])
    assert encoder_layers(trimmed)[1].intermediate.dense.weight.shape == (64, 32)
    # the caller may name its scores; a second narrowing is recorded after the first
    again = trimbert.trim(trimmed, ffn_width="2:2", ffn_importance={2: torch.tensor([0.0, 1.0, 2.0])}, scores_rule="fisher (task-loss)")
    assert again.config.spec.notes["ffn_width_rule"] == "scores, then fisher (task-loss)"
    assert torch.equal(encoder_layers(again)[2].intermediate.dense.weight, source[2][[17, 60]])


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"ffn_width": 8, "ffn_importance": {0: torch.ones(64)}}, "ffn_importance: no scores for block 1"),
        ({"ffn_width": "0:8", "ffn_importance": {0: torch.ones(63)}}, "block 0 needs 64 scores"),
        ({"ffn_width": "0:8", "ffn_importance": {9: torch.ones(64)}}, "block index 9 out of range"),
        ({"ffn_width": "0:8", "ffn_importance": {0: torch.full((64,), float("nan"))}}, "non-finite"),
        ({"ffn_importance": {0: torch.ones(64)}}, "ffn_importance: only used with --ffn-width"),
        ({"ffn_width": 64}, "--ffn-width: width 64 must be less than the intermediate size \\(64\\)"),
        ({"ffn_width": 0}, "--ffn-width: width 0 must be at least 1"),
    ],
)
def test_ffn_width_errors(tiny_model, kwargs, words):
    with pytest.raises(TrimbertError, match=words):
        trimbert.trim(tiny_model, **kwargs)


def test_ffn_width_composes(tiny_model, tiny_batch):
    params = _params(tiny_model)
    once = trimbert.trim(tiny_model, ffn_width=48)
    assert _params(once) == params - 4 * 16 * (2 * 32 + 1)
    first_layer = encoder_layers(once)[0].intermediate.dense.weight.clone()
    twice = trimbert.trim(once, ffn_width="0:16", drop_layers="3")
    assert twice.config.spec.ffn_widths == {0: 16, 1: 48, 2: 48}
    # Block 3 goes whole (with its 48 neurons), block 0 loses 32 more neurons.
    block3 = sum(p.numel() for p in encoder_layers(once)[3].parameters())
    assert _params(twice) == _params(once) - block3 - 32 * (2 * 32 + 1)
    kept = select_neurons(magnitude_importance(encoder_layers(once)[0]), 16)
    assert torch.equal(encoder_layers(twice)[0].intermediate.dense.weight, first_layer[kept])
    with pytest.raises(
        TrimbertError, match="width 48 must be less than the current FFN width of block 0 \\(16\\)"
    ):
        trimbert.trim(twice, ffn_width=48)
    with torch.no_grad():
        assert torch.isfinite(twice(**tiny_batch).logits).all()


# ------------------------------------------------------------------ LayerNorm replacement


def test_affine_replacement_needs_calibration(tiny_model, tiny_batch):
    with pytest.raises(TrimbertError, match="--layernorm-replacement affine: calibration data is needed"):
        trimbert.trim(tiny_model, layernorm="half", layernorm_replacement="affine")
    with pytest.raises(TrimbertError, match="--layernorm-replacement: unknown replacement 'rms'"):
        trimbert.trim(tiny_model, layernorm="half", layernorm_replacement="rms")
    with pytest.raises(
        TrimbertError, match="calibration_batches: only used with --layernorm-replacement affine"
    ):
        trimbert.trim(tiny_model, layernorm="half", calibration_batches=[tiny_batch])
    with pytest.raises(TrimbertError, match="calibration_batches: no batches given"):
        trimbert.trim(tiny_model, layernorm="half", layernorm_replacement="affine", calibration_batches=[])
    with pytest.raises(TrimbertError, match="calibration_batches: expected a list of batches"):
        trimbert.trim(
            tiny_model, layernorm="half", layernorm_replacement="affine", calibration_batches=tiny_batch
        )
    with pytest.raises(TrimbertError, match="calibration: unknown mode 'joint'"):
        trimbert.trim(
            tiny_model,
            layernorm="half",
            layernorm_replacement="affine",
            calibration_batches=[tiny_batch],
            calibration="joint",
        )


def test_affine_replacement_structure(tiny_model, tiny_batch):
    params = _params(tiny_model)
    trimmed = trimbert.trim(
        tiny_model, layernorm="1.attn,2.ffn", layernorm_replacement="affine", calibration_batches=[tiny_batch]
    )
    assert _params(trimmed) == params  # a and b replace the LayerNorm's weight and bias
    assert isinstance(encoder_layers(trimmed)[1].attention.output.LayerNorm, AffineNorm)
    assert isinstance(encoder_layers(trimmed)[2].output.LayerNorm, AffineNorm)
    assert "bert.encoder.layer.1.attention.output.LayerNorm.weight" in trimmed.state_dict()
    spec = trimmed.config.spec
    assert spec.summary() == "ln-2(affine)"
    assert spec.notes["layernorm_calibration"]["tokens"] == int(tiny_batch["attention_mask"].sum())
    assert spec.notes["layernorm_calibration"]["mode"] == "sequential"
    # More LayerNorms of an affine model: affine too, calibrated; mixing with identity is refused.
    more = trimbert.trim(trimmed, layernorm="0.attn", calibration_batches=[tiny_batch])
    assert isinstance(encoder_layers(more)[0].attention.output.LayerNorm, AffineNorm)
    with pytest.raises(TrimbertError, match="one replacement per model"):
        trimbert.trim(more, layernorm="3.attn", layernorm_replacement="identity")


def test_dyt_replacement_starts_from_the_layernorm(tiny_model, tiny_batch):
    layernorm = encoder_layers(tiny_model)[1].attention.output.LayerNorm
    with torch.no_grad():
        layernorm.weight.uniform_(0.5, 1.5)
        layernorm.bias.uniform_(-0.5, 0.5)
    weight, bias = layernorm.weight.clone(), layernorm.bias.clone()
    params = _params(tiny_model)
    trimmed = trimbert.trim(tiny_model, layernorm="1.attn,2.ffn", layernorm_replacement="dyt")
    assert _params(trimmed) == params + 2  # one alpha per replaced LayerNorm
    dyt = encoder_layers(trimmed)[1].attention.output.LayerNorm
    assert isinstance(dyt, DynamicTanh) and isinstance(encoder_layers(trimmed)[2].output.LayerNorm, DynamicTanh)
    assert torch.equal(dyt.weight, weight) and torch.equal(dyt.bias, bias)
    assert dyt.alpha.tolist() == [DYT_ALPHA_INIT]
    x = torch.linspace(-8, 8, 5 * 32).reshape(5, 32)
    with torch.no_grad():
        dyt.alpha.fill_(0.5)
        assert torch.allclose(dyt(x), weight * torch.tanh(0.5 * x) + bias)
    assert "bert.encoder.layer.1.attention.output.LayerNorm.alpha" in trimmed.state_dict()
    assert trimmed.config.spec.summary() == "ln-2(dyt)"
    more = trimbert.trim(trimmed, layernorm="0.attn")  # more LayerNorms of a DyT model: DyT too
    assert isinstance(encoder_layers(more)[0].attention.output.LayerNorm, DynamicTanh)
    assert encoder_layers(more)[1].attention.output.LayerNorm.alpha.tolist() == [0.5]  # kept, not reset
    with pytest.raises(TrimbertError, match="one replacement per model"):
        trimbert.trim(more, layernorm="3.attn", layernorm_replacement="affine", calibration_batches=[tiny_batch])


def test_describe_model_rows(minilm, tiny_batch):
    from trimbert.measure.describe import describe_model

    trimmed = trimbert.trim(
        minilm,
        drop_layers="4",
        drop_ffn="1",
        ffn_width="2:768",
        layernorm="0.attn,3.ffn",
        layernorm_replacement="affine",
        calibration_batches=[tiny_batch],
    )
    summary = describe_model(trimmed, source="x", seq_len=16)
    assert summary.num_layers == 5
    assert summary.original_num_layers == 6
    assert summary.dropped_layers == [4]
    assert summary.trim_summary == "layers-[4] ffn-[1] ffn-width=768 ln-2(affine)"
    rows = {block.index: block for block in summary.blocks}
    assert [block.index for block in summary.blocks] == list(range(6))
    assert rows[4].layer == "dropped" and rows[4].ffn == "layer dropped" and rows[4].params == 0
    assert rows[5].position == 4
    assert [rows[i].ffn for i in (0, 1, 2, 3, 5)] == ["kept", "dropped", "width 768", "kept", "kept"]
    assert rows[2].ffn_width == 768 and rows[1].ffn_width is None
    assert rows[0].layernorms == ["attn (affine)", "ffn"]
    assert rows[3].layernorms == ["attn", "ffn (affine)"]
    assert rows[1].layernorms == ["attn"]
    assert sum(block.params for block in summary.blocks) == summary.encoder_params
