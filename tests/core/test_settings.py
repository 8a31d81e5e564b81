"""Settings declared once: validation (strict types, finite floats, bounds) and one-line messages that
name the setting as the user wrote it."""

import re

import pytest
import torch

from trimbert.errors import TrimbertError
from trimbert.measure.bench import BenchSettings
from trimbert.train.settings import DistillSettings, FinetuneSettings


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(epochs=float("nan")), "--epochs: must be a finite number, got nan"),
        (dict(epochs=float("inf")), "--epochs: must be a finite number, got inf"),
        (dict(epochs=0), "--epochs: must be greater than 0.0, got 0"),
        (dict(lr=-1e-3), "--lr: must be greater than 0.0, got -0.001"),
        (dict(lr="fast"), "--lr: expected a number, got 'fast'"),
        (dict(batch_size=0), "--batch-size: must be at least 1, got 0"),
        (dict(batch_size=2.0), "--batch-size: expected an integer, got 2.0"),
        (dict(max_length=1), "--max-length: must be at least 2, got 1"),
        (dict(warmup_ratio=1.0), "--warmup-ratio: must be less than 1.0, got 1.0"),
        (dict(eval_each_epoch="yes"), "--eval-each-epoch: expected true or false, got 'yes'"),
        (dict(max_train_samples=0), "--max-train-samples: must be at least 1, got 0"),
        (dict(epoch=1), "--epoch: unknown setting"),
    ],
)
def test_finetune_settings_refuse_bad_values(values, message):
    with pytest.raises(TrimbertError, match=re.escape(message)):
        FinetuneSettings(**values)


def test_ints_are_accepted_for_floats_and_kept_as_floats():
    settings = FinetuneSettings(epochs=2, lr=1)
    assert settings.epochs == 2.0 and isinstance(settings.epochs, float)
    assert settings.to_dict()["epochs"] == 2.0


def test_build_names_settings_the_way_the_caller_says():
    with pytest.raises(TrimbertError, match=re.escape("r.toml: finetune.epochs: must be a finite number, got inf")):
        FinetuneSettings.build({"epochs": float("inf")}, name_of=lambda name: f"r.toml: finetune.{name}")


def test_updated_validates_and_leaves_the_original():
    settings = FinetuneSettings(lr=1e-4)
    assert settings.updated(seed=3).seed == 3 and settings.seed == 42
    with pytest.raises(TrimbertError, match="--lr: must be greater than 0.0"):
        settings.updated(lr=0.0)


def test_distill_flags_have_their_prefix():
    assert DistillSettings.flag("alpha_kd") == "--distill-alpha-kd"
    with pytest.raises(TrimbertError, match="--distill-alpha-kd: must be at least 0.0, got -0.5"):
        DistillSettings(alpha_kd=-0.5)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(mode="fast"), "--mode: expected 'infer' or 'train', got 'fast'"),
        (dict(device="gpu"), "--device: expected auto, cpu, cuda, cuda:N, xpu, xpu:N or mps, got 'gpu'"),
        (dict(threads=0), "--threads: must be at least 1, got 0"),
        (dict(repeats=0), "--repeats: must be at least 1, got 0"),
        (dict(warmup=-1), "--warmup: must be at least 0, got -1"),
    ],
)
def test_bench_settings_refuse_bad_values(values, message):
    with pytest.raises(TrimbertError, match=re.escape(message)):
        BenchSettings(**values)


def test_bench_settings_resolve_auto_to_a_device():
    assert BenchSettings().device == "auto"
    assert BenchSettings().resolved().device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert BenchSettings(device="cpu").resolved().device == "cpu"
