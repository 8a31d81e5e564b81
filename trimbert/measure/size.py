"""Size and cost of a model: parameters, bytes on disk, FLOPs per sequence (``torch.utils.flop_counter``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trimbert.errors import TrimbertError

_FUSED_ATTENTION_MARKERS = ("sdpa", "flash", "flex")

# --------------------------------------------------------------------------------------------
# Sizes


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``; a parameter shared by several modules counts once."""
    return sum(parameter.numel() for parameter in model.parameters())


def encoder_parameters(model: nn.Module) -> int:
    """Number of parameters of the transformer blocks (``model.base_model.encoder``)."""
    base_model = getattr(model, "base_model", model)
    encoder = getattr(base_model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise TrimbertError(f"{type(model).__name__} has no encoder (model.base_model.encoder)")
    return count_parameters(encoder)


def weights_bytes(model: nn.Module) -> int:
    """Bytes of the state-dict tensors as saved; tied or shared tensors count once.

    Two state-dict entries are the same tensor when they view the same memory with the same
    offset, shape, strides and dtype (for example tied input/output embeddings).
    """
    seen: set[tuple[Any, ...]] = set()
    total = 0
    for tensor in model.state_dict().values():
        identity = (
            tensor.device,
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tuple(tensor.stride()),
            tensor.dtype,
        )
        if identity in seen:
            continue
        seen.add(identity)
        total += tensor.numel() * tensor.element_size()
    return total


def disk_bytes(path: str | Path) -> int:
    """Bytes of the weight files (``*.safetensors``, ``pytorch_model*.bin``) in a checkpoint folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise TrimbertError(f"{folder} is not a checkpoint folder")
    weight_files = {*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")}
    weight_files = {file for file in weight_files if file.is_file()}
    if not weight_files:
        raise TrimbertError(f"no weight files (*.safetensors, pytorch_model*.bin) in {folder}")
    return sum(file.stat().st_size for file in weight_files)


def check_seq_len(model_or_config: Any, seq_len: int) -> None:
    """Raise :class:`TrimbertError` unless ``1 <= seq_len <= config.max_position_embeddings``.

    ``model_or_config`` is a model (its ``.config`` is used) or a config.
    """
    config = getattr(model_or_config, "config", model_or_config)
    max_positions = getattr(config, "max_position_embeddings", None)
    if seq_len < 1:
        raise TrimbertError(f"sequence length {seq_len} is less than 1")
    if max_positions is not None and seq_len > max_positions:
        raise TrimbertError(
            f"sequence length {seq_len} exceeds the model's max_position_embeddings {max_positions}"
        )


# --------------------------------------------------------------------------------------------
# FLOPs


def flops_per_sequence(model: nn.Module, seq_len: int, batch_size: int = 1) -> int:
    """Forward FLOPs of one sequence of ``seq_len`` tokens, counted by ``FlopCounterMode``.

    The model runs once, in eval mode under ``torch.no_grad``, on ``batch_size`` sequences of
    token id 1 with a full attention mask; the count is divided by ``batch_size``. Only matrix
    products are counted (as FlopCounterMode does): embeddings, normalizations, activations and
    softmax are free. Fused attention kernels (sdpa, flash, flex) are not visible to the counter on
    every device, so a model using one is counted on the "eager" implementation, which computes the
    same math, and switched back afterwards. The model's training flag is restored.
    """
    check_seq_len(model, seq_len)
    if batch_size < 1:
        raise TrimbertError(f"batch size {batch_size} is less than 1")
    input_ids = torch.ones(batch_size, seq_len, dtype=torch.long, device=model_device(model))
    attention_mask = torch.ones_like(input_ids)
    counter = FlopCounterMode(display=False)
    with eager_attention(model), model_mode(model, train=False), torch.no_grad(), counter:
        model(input_ids=input_ids, attention_mask=attention_mask)
    return counter.get_total_flops() // batch_size


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def try_set_attention(model: nn.Module, name: str) -> bool:
    """Switch ``model`` to attention implementation ``name``; False if it cannot use it."""
    try:
        model.set_attn_implementation(name)
    except (ValueError, ImportError):
        return False
    return model.config._attn_implementation == name


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Run the body on "eager" attention if the model uses a fused kernel, then switch back."""
    config = getattr(model, "config", None)
    original = getattr(config, "_attn_implementation", None)
    if original is None or not any(marker in original for marker in _FUSED_ATTENTION_MARKERS):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(original)


@contextlib.contextmanager
def model_mode(model: nn.Module, *, train: bool) -> Iterator[None]:
    """Put ``model`` in train or eval mode for the body, then restore every module's flag."""
    flags = {module: module.training for module in model.modules()}
    model.train(train)
    try:
        yield
    finally:
        for module, training in flags.items():
            module.training = training
