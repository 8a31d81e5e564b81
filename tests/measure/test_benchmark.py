"""Tests of trimbert.measure on tiny random BERT models (no downloads)."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel
from transformers.models.bert.modeling_bert import BertOutput

from trimbert.errors import TrimbertError
from trimbert.measure.benchmark import BenchResult, benchmark, fastest_attention
from trimbert.measure.size import (
    check_seq_len,
    count_parameters,
    disk_bytes,
    encoder_parameters,
    flops_per_sequence,
    weights_bytes,
)
from trimbert.model.structure import DroppedFFN
from trimbert.model.trim import trim

HIDDEN = 32
INTERMEDIATE = 64
VOCAB = 100
MAX_POSITIONS = 64
TYPE_VOCAB = 2


def tiny_config(layers: int = 2, **overrides) -> BertConfig:
    return BertConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=INTERMEDIATE,
        vocab_size=VOCAB,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=TYPE_VOCAB,
        **overrides,
    )


def tiny_model(layers: int = 2, num_labels: int | None = None, attn: str = "sdpa") -> nn.Module:
    torch.manual_seed(0)
    config = tiny_config(layers)
    if num_labels is None:
        model = BertModel(config)
    else:
        config.num_labels = num_labels
        model = BertForSequenceClassification(config)
    model.set_attn_implementation(attn)
    return model


def drop_ffn(model: nn.Module, blocks: tuple[int, ...]) -> nn.Module:
    """``model`` with the FFNs of ``blocks`` removed by the real trim (``model`` is not to be used after)."""
    return trim(model, drop_ffn=",".join(map(str, blocks)))


def expected_parameters(layers: int, dropped: int = 0, num_labels: int | None = None) -> int:
    h, i = HIDDEN, INTERMEDIATE
    embeddings = VOCAB * h + MAX_POSITIONS * h + TYPE_VOCAB * h + 2 * h
    attention = 4 * (h * h + h) + 2 * h
    ffn = (h * i + i) + (i * h + h) + 2 * h
    pooler = h * h + h
    classifier = 0 if num_labels is None else h * num_labels + num_labels
    return embeddings + layers * attention + (layers - dropped) * ffn + pooler + classifier


def hand_flops(seq_len: int, layers: int, dropped: int = 0, num_labels: int | None = None) -> int:
    s, h, i = seq_len, HIDDEN, INTERMEDIATE
    projections = 4 * 2 * s * h * h  # Q, K, V and attention output
    scores = 2 * s * s * h  # Q @ K^T over all heads
    weighted_values = 2 * s * s * h  # probabilities @ V
    ffn = 2 * 2 * s * h * i
    pooler = 2 * h * h  # first token only
    classifier = 0 if num_labels is None else 2 * h * num_labels
    per_layer = projections + scores + weighted_values
    return layers * per_layer + (layers - dropped) * ffn + pooler + classifier


# --------------------------------------------------------------------------------------------
# Sizes


def test_parameter_counts_match_the_config():
    model = tiny_model(layers=2)
    assert count_parameters(model) == expected_parameters(layers=2)
    encoder_expected = 2 * (4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN) + 2 * (
        2 * HIDDEN * INTERMEDIATE + INTERMEDIATE + HIDDEN + 2 * HIDDEN
    )
    assert encoder_parameters(model) == encoder_expected

    classifier = tiny_model(layers=3, num_labels=3)
    assert count_parameters(classifier) == expected_parameters(layers=3, num_labels=3)


def test_dropping_one_ffn_removes_exactly_its_parameters():
    h, i = HIDDEN, INTERMEDIATE
    model = tiny_model(layers=3, num_labels=2)
    params_before = count_parameters(model)
    encoder_before = encoder_parameters(model)
    model = drop_ffn(model, (1,))
    removed = 2 * h * i + i + h + 2 * h
    assert count_parameters(model) == params_before - removed
    assert encoder_parameters(model) == encoder_before - removed
    assert count_parameters(model) == expected_parameters(layers=3, dropped=1, num_labels=2)


def test_weights_bytes_is_the_state_dict_size():
    model = tiny_model()
    expected = sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values())
    assert weights_bytes(model) == expected


def test_weights_bytes_counts_tied_tensors_once(tmp_path):
    model = BertForMaskedLM(tiny_config())
    state = model.state_dict()
    assert (
        state["cls.predictions.decoder.weight"].data_ptr()
        == state["bert.embeddings.word_embeddings.weight"].data_ptr()
    )
    unique = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    assert weights_bytes(model) == unique
    model.save_pretrained(tmp_path)
    header = disk_bytes(tmp_path) - weights_bytes(model)
    assert 0 < header < 16_384


def test_disk_bytes_of_a_saved_checkpoint(tmp_path):
    model = tiny_model(num_labels=2)
    model.save_pretrained(tmp_path)
    assert disk_bytes(tmp_path) == (tmp_path / "model.safetensors").stat().st_size
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    assert disk_bytes(tmp_path) == sum(
        (tmp_path / name).stat().st_size for name in ("model.safetensors", "pytorch_model.bin")
    )


def test_disk_bytes_without_weights_is_a_user_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TrimbertError, match="no weight files"):
        disk_bytes(tmp_path)
    with pytest.raises(TrimbertError, match="not a checkpoint folder"):
        disk_bytes(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# FLOPs


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("num_labels", [None, 3])
def test_flops_match_the_hand_formula(attn, num_labels):
    model = tiny_model(layers=2, num_labels=num_labels, attn=attn)
    assert flops_per_sequence(model, 16) == hand_flops(16, layers=2, num_labels=num_labels)
    assert flops_per_sequence(model, 16, batch_size=3) == hand_flops(16, layers=2, num_labels=num_labels)
    assert model.config._attn_implementation == attn


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_flops_with_dropped_ffns(attn):
    model = drop_ffn(tiny_model(layers=3, num_labels=2, attn=attn), (0, 2))
    layers = model.base_model.encoder.layer
    assert [type(layer.output) for layer in layers] == [DroppedFFN, BertOutput, DroppedFFN]  # the trim's own modules
    assert model.config._attn_implementation == attn
    assert flops_per_sequence(model, 24) == hand_flops(24, layers=3, dropped=2, num_labels=2)
    assert hand_flops(24, layers=3, dropped=2, num_labels=2) == hand_flops(24, layers=3, num_labels=2) - 2 * 2 * 2 * 24 * HIDDEN * INTERMEDIATE


def test_flops_restore_the_training_flag():
    model = tiny_model()
    model.train()
    flops_per_sequence(model, 8)
    assert model.training
    assert all(module.training for module in model.modules())


def test_sequence_length_is_checked():
    model = tiny_model()
    check_seq_len(model, MAX_POSITIONS)
    check_seq_len(model.config, 1)
    with pytest.raises(TrimbertError, match=rf"{MAX_POSITIONS + 1}.*{MAX_POSITIONS}"):
        check_seq_len(model, MAX_POSITIONS + 1)
    with pytest.raises(TrimbertError, match="sequence length 0 is less than 1"):
        check_seq_len(model.config, 0)
    with pytest.raises(TrimbertError, match=rf"sequence length {MAX_POSITIONS + 1} exceeds"):
        flops_per_sequence(model, MAX_POSITIONS + 1)


# --------------------------------------------------------------------------------------------
# Timing


def test_benchmark_infer_alternates_between_models():
    models = {"baseline": tiny_model().train(), "trimmed": drop_ffn(tiny_model(), (0,)).eval()}
    steps = []
    results = benchmark(
        models,
        batch_size=2,
        seq_len=8,
        repeats=4,
        warmup=1,
        on_step=lambda name, step, total: steps.append((name, step, total)),
    )
    assert set(results) == {"baseline", "trimmed"}
    assert [name for name, _, _ in steps] == ["baseline", "trimmed"] * 5
    assert [step for _, step, _ in steps] == list(range(1, 11))
    assert {total for _, _, total in steps} == {10}
    for result in results.values():
        assert isinstance(result, BenchResult)
        assert result.mode == "infer"
        assert result.repeats == 4 and len(result.times_ms) == 4
        assert all(sample > 0 for sample in result.times_ms)
        assert result.latency_ms == result.median_ms > 0
        assert result.p10_ms <= result.median_ms <= result.p90_ms
        assert result.throughput == pytest.approx(2 / (result.median_ms / 1000))
        assert result.train_step_ms is None
        assert result.peak_memory_bytes is None  # CPU
        assert result.record_fields()["latency_ms"] == result.latency_ms
    assert models["baseline"].training and not models["trimmed"].training  # modes restored


def test_benchmark_train_steps_the_optimizer():
    models = {"base": tiny_model(), "classifier": tiny_model(num_labels=2)}
    for model in models.values():
        model.train()
    before = {name: copy.deepcopy(model.state_dict()) for name, model in models.items()}
    results = benchmark(models, batch_size=2, seq_len=8, mode="train", repeats=2, warmup=1)
    for name, model in models.items():
        result = results[name]
        assert result.mode == "train"
        assert result.train_step_ms == result.median_ms > 0
        assert result.latency_ms is None
        assert len(result.times_ms) == 2
        after = model.state_dict()
        unchanged = [key for key in after if torch.equal(before[name][key], after[key])]
        # every weight the loss reaches takes a step (a bare encoder's loss is on its hidden states:
        # its pooler takes no part)
        assert unchanged == ([] if name == "classifier" else ["pooler.dense.weight", "pooler.dense.bias"])
        assert model.training
        assert all(parameter.grad is None for parameter in model.parameters())


def test_benchmark_restores_threads():
    threads_before = torch.get_num_threads()
    benchmark({"model": tiny_model()}, batch_size=1, seq_len=4, repeats=1, warmup=0, threads=1)
    assert torch.get_num_threads() == threads_before


def test_benchmark_rejects_bad_arguments():
    models = {"model": tiny_model()}
    with pytest.raises(TrimbertError, match="threads must be at least 1, got 0"):
        benchmark(models, threads=0)
    with pytest.raises(TrimbertError, match=re.escape("unknown benchmark mode 'fit' (expected 'infer' or 'train')")):
        benchmark(models, mode="fit")
    with pytest.raises(TrimbertError, match="repeats 0 is less than 1"):
        benchmark(models, repeats=0)
    with pytest.raises(
        TrimbertError,
        match=f"sequence length {MAX_POSITIONS + 1} exceeds the model's max_position_embeddings {MAX_POSITIONS}",
    ):
        benchmark(models, seq_len=MAX_POSITIONS + 1)
    with pytest.raises(TrimbertError, match="no models to benchmark"):
        benchmark({})
    with pytest.raises(TrimbertError, match="threads must be at least 1, got 0"):
        fastest_attention(models["model"], batch_size=1, seq_len=4, threads=0)


def test_fastest_attention_leaves_the_model_on_the_winner():
    model = tiny_model(attn="eager")
    name, medians = fastest_attention(model, batch_size=2, seq_len=8, device="cpu", repeats=2, warmup=1)
    assert name in ("sdpa", "eager")
    assert set(medians) == {"sdpa", "eager"}
    assert all(value > 0 for value in medians.values())
    assert medians[name] == min(medians.values())
    assert model.config._attn_implementation == name


def test_fastest_attention_skips_unusable_candidates():
    model = tiny_model()
    name, medians = fastest_attention(
        model, batch_size=1, seq_len=4, candidates=("no_such_attention", "eager"), repeats=1, warmup=0
    )
    assert name == "eager" and set(medians) == {"eager"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_benchmark_on_cuda_reports_peak_memory():
    model = tiny_model()
    results = benchmark({"model": model}, batch_size=2, seq_len=8, repeats=2, warmup=1, device="cuda")
    assert results["model"].peak_memory_bytes >= weights_bytes(model)
    assert flops_per_sequence(model, 16) == hand_flops(16, layers=2)
