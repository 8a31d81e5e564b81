import copy

import numpy as np
import pytest
import torch

import trimbert
from trimbert.errors import TrimbertError
from trimbert.importance.similarity import linear_cka
from trimbert.model.calibrate import AffineMoments, calibrate_affine
from trimbert.model.structure import AffineNorm, layernorm_module

CALIBRATION = [
    "The cat sat quietly on the warm mat.",
    "Stock markets fell sharply on Monday morning.",
    "I loved this movie, the acting was wonderful!",
    "Quantum computers store information in qubits.",
    "Please send me the quarterly report by Friday.",
    "The weather is cold and rainy again today.",
    "He scored the winning goal in the final minute.",
    "Bake the bread for forty minutes at high heat.",
    "The committee approved the new budget yesterday.",
    "She plays the violin beautifully.",
    "Traffic on the bridge was terrible this morning.",
    "The museum opens at nine on weekdays.",
    "Many birds migrate south for the winter.",
    "This phone's battery easily lasts two days.",
    "They finally signed the contract.",
    "Water boils at one hundred degrees Celsius.",
]
EVALUATION = [
    "A dog barked loudly at the mailman.",
    "The company reported record profits this year.",
    "This film was a complete waste of time.",
    "Electrons move around the nucleus of an atom.",
    "Could you close the window, please?",
    "It snowed heavily overnight in the mountains.",
    "The home team lost the championship game.",
    "Stir the soup slowly over a low flame.",
    "Parliament passed the controversial law.",
    "He has sung in the church choir for years.",
    "Our train was delayed by more than an hour.",
    "The public library is closed on Sundays.",
    "Salmon swim upstream to spawn.",
    "My old laptop overheats very quickly.",
    "The lawyers negotiated a settlement out of court.",
    "Ice melts quickly in the summer sun.",
]


def _batches(minilm_dir, sentences, size=8):
    tokenizer = trimbert.load_tokenizer(minilm_dir)
    return [
        dict(tokenizer(sentences[i : i + size], padding=True, return_tensors="pt"))
        for i in range(0, len(sentences), size)
    ]


def test_fit_affine_matches_polyfit():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=generator, dtype=torch.float64) * 3 + 10
    slopes = torch.tensor([2.5, -0.3, 0.0, 7.0], dtype=torch.float64)
    y = x * slopes - 1.0 + torch.randn(500, 4, generator=generator, dtype=torch.float64)
    a, b = fit_affine(x, y)
    for channel in range(4):
        slope, intercept = np.polyfit(x[:, channel].numpy(), y[:, channel].numpy(), 1)
        assert a[channel].item() == pytest.approx(slope, rel=1e-9, abs=1e-9)
        assert b[channel].item() == pytest.approx(intercept, rel=1e-9, abs=1e-9)
    # The closed form: a = cov(x, y) / var(x), b = mean(y) - a mean(x).
    xc, yc = x - x.mean(0), y - y.mean(0)
    assert torch.allclose(a, (xc * yc).mean(0) / (xc * xc).mean(0))
    assert torch.allclose(b, y.mean(0) - a * x.mean(0))


def test_fit_affine_streams_and_handles_a_flat_channel():
    x = torch.randn(300, 3, dtype=torch.float64)
    x[:, 1] = 5.0  # no variance: a = 0, b = mean(y)
    y = 2 * x + torch.randn(300, 3, dtype=torch.float64)
    a, b = fit_affine(x, y)
    assert a[1] == 0
    assert b[1].item() == pytest.approx(y[:, 1].mean().item())
    # Accumulating in chunks gives the same fit.
    moments = AffineMoments()
    for chunk in range(3):
        moments.update(x[chunk * 100 : (chunk + 1) * 100], y[chunk * 100 : (chunk + 1) * 100])
    a2, b2 = moments.fit()
    assert torch.allclose(a, a2) and torch.allclose(b, b2)


def fit_affine(x, y):
    moments = AffineMoments()
    moments.update(x, y)
    return moments.fit()


def final_hidden_states(model, batches):
    """The encoder's final hidden states of every real token in ``batches``, stacked."""
    base = getattr(model, "base_model", model).eval()
    with torch.no_grad():
        return torch.cat(
            [base(**batch).last_hidden_state[batch["attention_mask"].bool()].float() for batch in batches]
        )


def _captured_io(model, name, batches):
    """Inputs and outputs of LayerNorm ``name`` on the real tokens, by hand."""
    xs, ys, masks = [], [], []
    module = layernorm_module(model, name)

    def capture(module, args, output):
        xs.append(args[0])
        ys.append(output)

    handle = module.register_forward_hook(capture)
    with torch.no_grad():
        for batch in batches:
            model(**batch)
            masks.append(batch["attention_mask"].bool())
    handle.remove()
    x = torch.cat([x[mask] for x, mask in zip(xs, masks, strict=True)])
    y = torch.cat([y[mask] for y, mask in zip(ys, masks, strict=True)])
    return x.double().numpy(), y.double().numpy()


@pytest.mark.parametrize("name", ["1.attn", "3.ffn"])
def test_independent_fit_equals_polyfit_of_the_original_layernorm(tiny_model, tiny_batch, name):
    original = copy.deepcopy(tiny_model)
    x, y = _captured_io(original, name, [tiny_batch])
    assert len(x) == int(tiny_batch["attention_mask"].sum())  # padding excluded
    trimmed = trimbert.trim(
        tiny_model,
        layernorm=name,
        layernorm_replacement="affine",
        calibration_batches=[tiny_batch],
        calibration="independent",
    )
    module = layernorm_module(trimmed, name)
    assert isinstance(module, AffineNorm)
    expected = np.array([np.polyfit(x[:, c], y[:, c], 1) for c in range(x.shape[1])])
    assert np.allclose(module.weight.detach().numpy(), expected[:, 0], rtol=1e-4, atol=1e-5)
    assert np.allclose(module.bias.detach().numpy(), expected[:, 1], rtol=1e-4, atol=1e-5)
    # The source LayerNorm was not written into.
    assert torch.equal(layernorm_module(original, name).weight, layernorm_module(tiny_model, name).weight)


def test_sequential_fit_uses_the_trimmed_models_inputs(tiny_model, tiny_batch):
    original = copy.deepcopy(tiny_model)
    trimmed = trimbert.trim(
        tiny_model,
        layernorm="0.attn,2.attn",
        layernorm_replacement="affine",
        calibration_batches=[tiny_batch],
    )
    # Block 2's replacement was fitted on what it receives after block 0's replacement.
    x, _ = _captured_io(trimmed, "2.attn", [tiny_batch])
    _, y = _captured_io(original, "2.attn", [tiny_batch])
    module = layernorm_module(trimmed, "2.attn")
    expected = np.array([np.polyfit(x[:, c], y[:, c], 1) for c in range(x.shape[1])])
    assert np.allclose(module.weight.detach().numpy(), expected[:, 0], rtol=1e-4, atol=1e-5)
    assert np.allclose(module.bias.detach().numpy(), expected[:, 1], rtol=1e-4, atol=1e-5)
    # The first replacement sees the original inputs: the same fit either way.
    fits = calibrate_affine(original, copy.deepcopy(trimmed), [tiny_batch])  # default: independent
    first = layernorm_module(trimmed, "0.attn")
    assert torch.allclose(fits["0.attn"][0], first.weight, atol=1e-5)
    assert not torch.allclose(fits["2.attn"][0], module.weight, atol=1e-5)


def test_padding_is_ignored(tiny_model, tiny_batch):
    padded = trimbert.trim(
        copy.deepcopy(tiny_model),
        layernorm="1.attn",
        layernorm_replacement="affine",
        calibration_batches=[tiny_batch],
    )
    single = copy.deepcopy(padded)
    lengths = tiny_batch["attention_mask"].sum(1).tolist()
    one_by_one = [
        {
            "input_ids": tiny_batch["input_ids"][i : i + 1, :length],
            "attention_mask": tiny_batch["attention_mask"][i : i + 1, :length],
        }
        for i, length in enumerate(lengths)
    ]
    calibrate_affine(tiny_model, padded, [tiny_batch])
    calibrate_affine(tiny_model, single, one_by_one)
    a1, a2 = layernorm_module(padded, "1.attn"), layernorm_module(single, "1.attn")
    assert torch.allclose(a1.weight, a2.weight, atol=1e-4)
    assert torch.allclose(a1.bias, a2.bias, atol=1e-4)


def test_calibrate_affine_errors(tiny_model, tiny_batch):
    identity = trimbert.trim(copy.deepcopy(tiny_model), layernorm="1.attn")
    with pytest.raises(
        TrimbertError, match="calibration: LayerNorm 1.attn of the trimmed model is not an affine"
    ):
        calibrate_affine(tiny_model, identity, [tiny_batch], names=["1.attn"])
    assert calibrate_affine(tiny_model, identity, [tiny_batch]) == {}
    with pytest.raises(TrimbertError, match="calibration: no batches given"):
        calibrate_affine(tiny_model, identity, [])


def test_composing_affine_keeps_earlier_fits(tiny_model, tiny_batch):
    once = trimbert.trim(
        tiny_model, layernorm="0.attn", layernorm_replacement="affine", calibration_batches=[tiny_batch]
    )
    first = layernorm_module(once, "0.attn").weight.detach().clone()
    twice = trimbert.trim(once, layernorm="2.ffn", drop_layers="1", calibration_batches=[tiny_batch])
    assert twice.config.spec.layernorm == ("0.attn", "2.ffn")
    assert twice.config.spec.layernorm_replacement == "affine"
    assert torch.equal(layernorm_module(twice, "0.attn").weight, first)
    assert isinstance(layernorm_module(twice, "2.ffn"), AffineNorm)


def test_affine_replacement_keeps_minilm_closer_than_identity(minilm, minilm_dir):
    """Before any fine-tuning, strip the 6 attention LayerNorms of MiniLM (layernorm="half").

    Observed (torch 2.13 CPU): identity 0.702, affine independent 0.974, affine sequential 0.984.
    """
    calibration = _batches(minilm_dir, CALIBRATION)
    evaluation = _batches(minilm_dir, EVALUATION)
    reference = final_hidden_states(minilm, evaluation)
    scores = {}
    for label, kwargs in [
        ("identity", {}),
        ("affine-independent", {"layernorm_replacement": "affine", "calibration": "independent"}),
        ("affine-sequential", {"layernorm_replacement": "affine", "calibration": "sequential"}),
    ]:
        if "layernorm_replacement" in kwargs:
            kwargs["calibration_batches"] = calibration
        trimmed = trimbert.trim(copy.deepcopy(minilm), layernorm="half", **kwargs)
        assert trimmed.config.spec.layernorm == tuple(f"{i}.attn" for i in range(6))
        scores[label] = linear_cka(reference, final_hidden_states(trimmed, evaluation))
    assert scores["affine-independent"] > scores["identity"] + 0.1
    assert scores["affine-sequential"] > scores["identity"] + 0.1
