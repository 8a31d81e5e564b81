"""Calibrate the affine replacements of stripped LayerNorms.

With ``layernorm_replacement="affine"`` a stripped LayerNorm becomes a fixed per-channel map
``y = a * x + b`` (:class:`trimbert.model.structure.AffineNorm`). :func:`calibrate_affine` fits ``a`` and ``b``
on a calibration sample: the ORIGINAL model (the one that still has the LayerNorm) runs on the
batches, the LayerNorm's input ``x`` (the residual sum) and output ``y`` are captured on the real
(non-padding) tokens, and per channel ``c`` the least-squares line is

    a_c = cov(x_c, y_c) / var(x_c),    b_c = mean(y_c) - a_c * mean(x_c)

(population moments over all real tokens of all batches, accumulated in float64; a channel whose
input does not vary gets ``a_c = 0`` and ``b_c = mean(y_c)``).

Fitting order. By default (``sequential=False``) every LayerNorm is fitted on the original model's
own activations, independently of the others, in one pass over the batches; the earlier
replacements change what later ones see in the trimmed model, which this ignores. With
``sequential=True`` the LayerNorms are fitted one after the other in forward order: ``x`` is the
input the replacement receives in the (partially calibrated) trimmed model and ``y`` the original
LayerNorm's output for the same tokens, so each fit also compensates for the drift caused by the
replacements before it (costs one partial forward pass of each model per LayerNorm and batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from trimbert.errors import TrimbertError
from trimbert.model.structure import AffineNorm, applied_spec, layernorm_module
from trimbert.spec.trimspec import ln_sort_key

# Keys of a batch that are model inputs (labels and extra columns are ignored).
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


class _Stop(Exception):
    """Raised by a hook once everything needed from a forward pass has been captured."""


def count_tokens(batches: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """``(sequences, real tokens)`` in ``batches`` (tokens where ``attention_mask`` is 1, else all)."""
    sequences = tokens = 0
    for batch in batches:
        ids = torch.as_tensor(batch["input_ids"])
        sequences += ids.shape[0] if ids.ndim > 1 else 1
        mask = batch.get("attention_mask")
        tokens += int(torch.as_tensor(mask).bool().sum()) if mask is not None else ids.numel()
    return sequences, tokens


def _device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def _inputs(batch: Mapping[str, Any], device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    inputs = {key: torch.as_tensor(batch[key]).to(device) for key in MODEL_INPUTS if key in batch}
    mask = inputs.get("attention_mask")
    keep = mask.bool() if mask is not None else torch.ones_like(inputs["input_ids"], dtype=torch.bool)
    return inputs, keep


class AffineMoments:
    """Per-channel running sums of ``x``, ``y``, ``x²``, ``xy`` (float64, shifted for stability)."""

    def __init__(self) -> None:
        self.count = 0
        self.shift_x: torch.Tensor | None = None
        self.shift_y: torch.Tensor | None = None
        self.sum_x = self.sum_y = self.sum_xx = self.sum_xy = None

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.detach().to(torch.float64).reshape(-1, x.shape[-1])
        y = y.detach().to(torch.float64).reshape(-1, y.shape[-1])
        if x.shape != y.shape:
            raise TrimbertError(f"calibration: input {tuple(x.shape)} and output {tuple(y.shape)} differ")
        if not x.shape[0]:
            return
        if self.shift_x is None:
            self.shift_x, self.shift_y = x.mean(0), y.mean(0)
            zeros = torch.zeros_like(self.shift_x)
            self.sum_x, self.sum_y, self.sum_xx, self.sum_xy = (zeros.clone() for _ in range(4))
        x = x - self.shift_x
        y = y - self.shift_y
        self.count += x.shape[0]
        self.sum_x += x.sum(0)
        self.sum_y += y.sum(0)
        self.sum_xx += (x * x).sum(0)
        self.sum_xy += (x * y).sum(0)

    def fit(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.count:
            raise TrimbertError("calibration: no real tokens in the calibration batches")
        n = self.count
        mean_x, mean_y = self.sum_x / n, self.sum_y / n
        var_x = self.sum_xx / n - mean_x * mean_x
        cov_xy = self.sum_xy / n - mean_x * mean_y
        flat = var_x <= 1e-12 * (1.0 + (mean_x + self.shift_x) ** 2)
        a = torch.where(
            flat, torch.zeros_like(var_x), cov_xy / torch.where(flat, torch.ones_like(var_x), var_x)
        )
        b = (mean_y + self.shift_y) - a * (mean_x + self.shift_x)
        return a, b


def _run(model: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    try:
        model(**inputs)
    except _Stop:
        pass


def _check_names(original: nn.Module, trimmed: nn.Module, names: Sequence[str] | None) -> list[str]:

    spec = applied_spec(trimmed)
    if names is None:
        names = [
            name
            for name in spec.layernorm
            if isinstance(layernorm_module(trimmed, name), AffineNorm)
            and isinstance(layernorm_module(original, name), nn.LayerNorm)
        ]
    checked = []
    for name in sorted(names, key=ln_sort_key):
        try:
            target = layernorm_module(trimmed, name)
            source = layernorm_module(original, name)
        except (TrimbertError, AttributeError) as error:
            raise TrimbertError(f"calibration: LayerNorm {name} is not in both models") from error
        if not isinstance(target, AffineNorm):
            raise TrimbertError(
                f"calibration: LayerNorm {name} of the trimmed model is not an affine replacement"
            )
        if not isinstance(source, nn.LayerNorm):
            raise TrimbertError(f"calibration: LayerNorm {name} of the original model is not a LayerNorm")
        checked.append(name)
    return checked


def calibrate_affine(
    original_model: nn.Module,
    trimmed_model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    *,
    names: Sequence[str] | None = None,
    sequential: bool = False,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fit the affine replacements of ``trimmed_model`` on ``batches`` and write them in place.

    ``names``: the LayerNorms (``"3.attn"``, original block numbering) to fit; by default every one
    that is an :class:`~trimbert.model.structure.AffineNorm` in ``trimmed_model`` and still a LayerNorm in
    ``original_model``. ``batches``: dicts with ``input_ids`` and optionally ``attention_mask``,
    ``token_type_ids``, ``position_ids`` (other keys are ignored). See the module docstring for the
    fit and ``sequential``. Both models run in eval mode under ``torch.no_grad`` (their training flags
    are restored). Returns ``{name: (a, b)}`` as written (the AffineNorm's dtype).
    """
    batches = list(batches)
    if not batches:
        raise TrimbertError("calibration: no batches given")
    names = _check_names(original_model, trimmed_model, names)
    if not names:
        return {}
    flags = (original_model.training, trimmed_model.training)
    original_model.eval()
    trimmed_model.eval()
    try:
        with torch.no_grad():
            if sequential:
                fits = {name: _fit_sequential(original_model, trimmed_model, batches, name) for name in names}
            else:
                fits = _fit_independent(original_model, trimmed_model, batches, names)
    finally:
        original_model.train(flags[0])
        trimmed_model.train(flags[1])
    return fits


def _write(
    trimmed: nn.Module, name: str, a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    module = layernorm_module(trimmed, name)
    with torch.no_grad():
        module.weight.copy_(a.to(device=module.weight.device, dtype=module.weight.dtype))
        module.bias.copy_(b.to(device=module.bias.device, dtype=module.bias.dtype))
    return module.weight.detach().clone(), module.bias.detach().clone()


def _fit_independent(
    original: nn.Module, trimmed: nn.Module, batches: list[Mapping[str, Any]], names: list[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    moments = {name: AffineMoments() for name in names}
    keep: dict[str, torch.Tensor] = {}
    last = names[-1]

    def hook(name: str):
        def capture(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            mask = keep["mask"]
            moments[name].update(args[0][mask], output[mask])
            if name == last:
                raise _Stop

        return capture

    handles = [layernorm_module(original, name).register_forward_hook(hook(name)) for name in names]
    try:
        device = _device(original)
        for batch in batches:
            inputs, keep["mask"] = _inputs(batch, device)
            _run(original, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: _write(trimmed, name, *moments[name].fit()) for name in names}


def _fit_sequential(
    original: nn.Module, trimmed: nn.Module, batches: list[Mapping[str, Any]], name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    moments = AffineMoments()
    captured: dict[str, torch.Tensor] = {}

    def take(key: str, use_output: bool):
        def capture(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            captured[key] = (output if use_output else args[0])[captured["mask"]]
            raise _Stop

        return capture

    handles = [
        layernorm_module(original, name).register_forward_hook(take("y", True)),
        layernorm_module(trimmed, name).register_forward_hook(take("x", False)),
    ]
    try:
        for batch in batches:
            inputs, captured["mask"] = _inputs(batch, _device(original))
            _run(original, inputs)
            inputs, captured["mask"] = _inputs(batch, _device(trimmed))
            _run(trimmed, inputs)
            moments.update(captured["x"], captured["y"].to(captured["x"].device))
    finally:
        for handle in handles:
            handle.remove()
    return _write(trimmed, name, *moments.fit())
