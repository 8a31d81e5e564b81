"""The cut analysis: how much each FFN, LayerNorm, attention head and the attention normalizer matter,
measured by cutting them out one at a time.

:func:`analyze_blocks` cuts one candidate at a time out of the model and runs it on a sample of the
task's data, next to the untouched model. FFNs, LayerNorms and the normalizer are cut from a copy with
:func:`trimbert.model.trim.trim` (the very surgery a real trim uses, so what is measured is what would
be cut); heads are masked with the gates of :mod:`trimbert.model.gates`, which compute what
``trim --heads`` builds without a copy per head. The candidates:

- ``ffn``: the FFN sub-layer of block *i* alone (``drop_ffn=str(i)``);
- ``ln_attn`` / ``ln_ffn``: the LayerNorm after block *i*'s attention / FFN sub-layer alone;
- ``ln_both``: both LayerNorms of block *i* together (only where both still exist);
- ``heads``: each attention head of block *i* alone (its gate at 0; a block's last head is not cut:
  a trim keeps at least one);
- ``attention``: a whole-model column: every block's softmax replaced by each normalizer of
  :data:`trimbert.spec.NORMALIZER_NAMES` (weights unchanged, no healing: it says how far each
  normalizer starts from the trained model, not where fine-tuning would end up).

The measure depends on what the model is:

- ``"loss"``: the model has a *fine-tuned* head for this task (``has_head=True``; :func:`analyze`
  decides that with :func:`~trimbert.model.heads.has_task_head`): importance = mean task loss
  (cross-entropy, or MSE for regression) of the cut model minus that of the original, over the sample.
  It may be negative (the cut helps on the sample).
- ``"cka"`` otherwise (a pretrained encoder, or a classifier whose head is untrained): importance =
  1 − linear CKA between the final hidden states with and without the cut, over the sample's real
  (non-padding) tokens. 0 means the representation is unchanged up to rotation and scale.

Both CKA and the mean token cosine are reported for every candidate in both modes; the loss delta
only in ``"loss"`` mode. Candidates that no longer exist (an FFN dropped, a LayerNorm stripped
before) are skipped (``None``). :meth:`AnalysisResult.importance` gives the scores as the common
:class:`~trimbert.importance.scores.Importance`; :mod:`trimbert.importance.select` turns them into
``--drop-ffn auto:N``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trimbert.data.batches import sample_batches
from trimbert.data.source import DataSource
from trimbert.errors import TrimbertError
from trimbert.importance.objective import is_regression, task_loss
from trimbert.importance.scores import Importance
from trimbert.importance.similarity import linear_cka, mean_cosine
from trimbert.measure.size import check_seq_len, model_device
from trimbert.model import checkpoint
from trimbert.model.gates import install_gates
from trimbert.model.heads import has_task_head
from trimbert.model.structure import applied_spec, block_positions, original_num_layers
from trimbert.model.trim import trim
from trimbert.spec import NORMALIZER_NAMES

# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass
class Effect:
    """What one cut did on the sample. ``importance`` is the number the ranking uses (see the module
    docstring: a loss delta in ``"loss"`` mode, 1 − CKA in ``"cka"`` mode)."""

    importance: float
    cka: float
    cosine: float
    loss_delta: float | None = None


@dataclass
class BlockRow:
    """The effects of the cuts in one block; ``None`` where the part no longer exists (or, for
    ``heads``, when heads were not measured or the block has one head left). ``heads[h]``: head ``h``."""

    index: int
    ffn: Effect | None = None
    ln_attn: Effect | None = None
    ln_ffn: Effect | None = None
    ln_both: Effect | None = None
    heads: list[Effect] | None = None


@dataclass
class AnalysisResult:
    """Per-block effects, the whole-model attention column, and the rankings (least important first)."""

    measure: str  # "loss" | "cka"
    blocks: list[BlockRow]
    attention: dict[str, Effect]
    ranking: tuple[int, ...]  # FFN blocks, least important first (ties: lower index first)
    layernorm_ranking: tuple[str, ...]  # single LayerNorms ("3.attn"), least important first
    head_ranking: tuple[str, ...] = ()  # heads ("3.5": block 3, head 5), least important first
    base_loss: float | None = None  # mean task loss of the untouched model ("loss" mode)
    samples: int = 0
    tokens: int = 0  # real tokens the hidden-state similarities are computed over
    seed: int | None = None
    max_length: int | None = None
    task: str | None = None
    model: str | None = None
    time_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def ffn_importance(self) -> dict[int, float]:
        """``{block: importance}`` for every block whose FFN still exists, in block order."""
        return {row.index: row.ffn.importance for row in self.blocks if row.ffn is not None}

    def head_importance(self) -> dict[int, torch.Tensor]:
        """``{block: importance of each head}`` (float64) for every block whose heads were measured."""
        return {
            row.index: torch.tensor([effect.importance for effect in row.heads], dtype=torch.float64)
            for row in self.blocks
            if row.heads is not None
        }

    def importance(self) -> Importance:
        """The scores as the common :class:`~trimbert.importance.scores.Importance` (rule ``"cut"``;
        the objective is the measure): FFNs, single LayerNorms and heads."""
        layernorm = {
            f"{row.index}.{kind}": effect.importance
            for row in self.blocks
            for kind, effect in (("attn", row.ln_attn), ("ffn", row.ln_ffn))
            if effect is not None
        }
        return Importance(
            rule="cut",
            ffn=self.ffn_importance(),
            layernorm=layernorm,
            heads=self.head_importance(),
            objective=self.measure,
            samples=self.samples,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("ranking", "layernorm_ranking", "head_ranking"):
            data[key] = list(getattr(self, key))
        return data


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


@dataclass
class _Outputs:
    features: torch.Tensor  # (tokens, hidden) final hidden states of real tokens, float32, cpu
    loss: float | None  # mean task loss over the sample


@torch.no_grad()
def _run(model: nn.Module, batches: Sequence[dict[str, torch.Tensor]], has_head: bool) -> _Outputs:
    device = model_device(model)
    regression = has_head and is_regression(model)
    features: list[torch.Tensor] = []
    loss_sum = 0.0
    rows = 0
    for batch in batches:
        inputs = {key: value.to(device) for key, value in batch.items() if key != "labels"}
        outputs = model(**inputs, output_hidden_states=True, return_dict=True)
        hidden = outputs.hidden_states[-1]
        mask = inputs["attention_mask"].bool()
        features.append(hidden[mask].float().cpu())
        if has_head:
            labels = batch["labels"].to(device)
            loss_sum += float(task_loss(outputs.logits, labels, regression, reduction="sum"))
            rows += labels.shape[0]
    return _Outputs(torch.cat(features), loss_sum / rows if has_head and rows else None)


def _effect(base: _Outputs, cut: _Outputs, measure: str) -> Effect:
    cka = linear_cka(base.features, cut.features)
    cosine = mean_cosine(base.features, cut.features)
    loss_delta = None
    if measure == "loss":
        assert base.loss is not None and cut.loss is not None
        loss_delta = cut.loss - base.loss
    importance = loss_delta if loss_delta is not None else 1.0 - cka
    if not math.isfinite(importance):
        importance = math.inf  # a cut that breaks the model numerically is as important as can be
    return Effect(importance=float(importance), cka=cka, cosine=cosine, loss_delta=loss_delta)


def analyze_blocks(
    model: nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    *,
    has_head: bool = False,
    layernorms: bool = True,
    attention: bool = True,
    heads: bool = True,
) -> AnalysisResult:
    """Measure the effect of each single cut (see the module docstring) on ``batches``.

    ``model``: any BERT model trimbert can trim (a bare encoder or one with a head), left untouched
    (each cut is made on a deep copy, or by gates removed afterwards). ``batches``: padded batches
    (``input_ids``, ``attention_mask``, optionally ``token_type_ids``; ``labels`` needed when
    ``has_head``). ``has_head=True`` means the model's head is fine-tuned for these labels: the measure
    is then the task loss delta, else 1 − CKA of the final hidden states. ``layernorms`` /
    ``attention`` / ``heads`` switch those columns off.
    """
    if not batches:
        raise TrimbertError("analysis needs at least one batch of data")
    if has_head:
        if getattr(model, "classifier", None) is None:
            raise TrimbertError("has_head=True but the model has no classification head")
        if any("labels" not in batch for batch in batches):
            raise TrimbertError("has_head=True needs labels in every batch")
    measure = "loss" if has_head else "cka"
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    cuts = _Cuts(model, batches, has_head, measure)
    try:
        rows = _block_rows(model, cuts, layernorms)
        if heads:
            cuts.measure_heads(rows)
        columns = _attention_columns(model, cuts) if attention else {}
    finally:
        model.train(was_training)
    applied = applied_spec(model)
    return AnalysisResult(
        measure=measure,
        blocks=rows,
        attention=columns,
        ranking=_ffn_ranking(rows),
        layernorm_ranking=_layernorm_ranking(rows),
        head_ranking=_head_ranking(rows),
        base_loss=cuts.base.loss,
        samples=sum(int(batch["input_ids"].shape[0]) for batch in batches),
        tokens=int(cuts.base.features.shape[0]),
        time_s=time.perf_counter() - start,
        notes={
            **({"applied": applied.summary()} if not applied.is_empty else {}),
            **({"skipped": cuts.skipped} if cuts.skipped else {}),
        },
    )


class _Cuts:
    """Measures single cuts of one model against its untouched outputs on the same batches."""

    def __init__(self, model: nn.Module, batches: Sequence[dict], has_head: bool, measure: str) -> None:
        self.model, self.batches, self.has_head, self.measure = model, batches, has_head, measure
        self.skipped: dict[str, str] = {}
        self.base = _run(model, batches, has_head)

    def measure_cut(self, what: str, **options: str) -> Effect | None:
        try:
            cut = trim(copy.deepcopy(self.model), **options).eval()
        except TrimbertError as error:  # a cut this model cannot take (e.g. mixed LN replacements)
            self.skipped[what] = str(error)
            return None
        return _effect(self.base, _run(cut, self.batches, self.has_head), self.measure)

    def measure_heads(self, rows: list[BlockRow]) -> None:
        """Fill ``row.heads``: each head's gate at 0 in turn, the rest of the model as it is."""
        try:
            gates = install_gates(self.model)
        except TrimbertError as error:  # affine or DyT LayerNorm replacements cannot be gated
            self.skipped["heads"] = str(error)
            return
        try:
            for row in rows:
                mask = gates.heads[row.index]
                if mask.numel() < 2:
                    self.skipped[f"heads {row.index}"] = "the block's last head (a trim keeps at least one)"
                    continue
                row.heads = []
                for head in range(mask.numel()):
                    mask[head] = 0.0
                    row.heads.append(_effect(self.base, _run(self.model, self.batches, self.has_head), self.measure))
                    mask[head] = 1.0
        finally:
            gates.remove()


def _block_rows(model: nn.Module, cuts: _Cuts, layernorms: bool) -> list[BlockRow]:
    applied = applied_spec(model)
    num_layers, kept = original_num_layers(model), list(block_positions(model))
    existing_ln = set(applied.layernorms_remaining(num_layers))
    rows = []
    for index in kept:
        row = BlockRow(index)
        if index not in applied.drop_ffn:
            row.ffn = cuts.measure_cut(f"ffn {index}", drop_ffn=str(index))
        if layernorms:
            attn_name, ffn_name = f"{index}.attn", f"{index}.ffn"
            if attn_name in existing_ln:
                row.ln_attn = cuts.measure_cut(f"ln {attn_name}", layernorm=attn_name)
            if ffn_name in existing_ln:
                row.ln_ffn = cuts.measure_cut(f"ln {ffn_name}", layernorm=ffn_name)
            if attn_name in existing_ln and ffn_name in existing_ln:
                row.ln_both = cuts.measure_cut(f"ln {index} both", layernorm=f"{attn_name},{ffn_name}")
        rows.append(row)
    return rows


def _attention_columns(model: nn.Module, cuts: _Cuts) -> dict[str, Effect]:
    applied = applied_spec(model)
    columns: dict[str, Effect] = {}
    for name in NORMALIZER_NAMES:
        if name != applied.attention:
            effect = cuts.measure_cut(f"attention {name}", attention=name)
            if effect is not None:
                columns[name] = effect
    return columns


def _ffn_ranking(rows: list[BlockRow]) -> tuple[int, ...]:
    """FFN blocks from least to most important (ties: lower index first)."""
    scored = [(row.index, row.ffn.importance) for row in rows if row.ffn is not None]
    return tuple(index for index, _ in sorted(scored, key=lambda item: (item[1], item[0])))


def _layernorm_ranking(rows: list[BlockRow]) -> tuple[str, ...]:
    effects = []
    for row in rows:
        for kind, effect in (("attn", row.ln_attn), ("ffn", row.ln_ffn)):
            if effect is not None:
                effects.append((effect.importance, row.index, kind))
    return tuple(f"{index}.{kind}" for _, index, kind in sorted(effects))


def _head_ranking(rows: list[BlockRow]) -> tuple[str, ...]:
    """Heads (``"block.head"``) from least to most important (ties: lower block, then lower head)."""
    effects = [
        (effect.importance, row.index, head)
        for row in rows
        if row.heads is not None
        for head, effect in enumerate(row.heads)
    ]
    return tuple(f"{index}.{head}" for _, index, head in sorted(effects))


def analyze(
    model_source: str | Path,
    source: DataSource,
    *,
    samples: int = 256,
    seed: int = 0,
    max_length: int = 128,
    batch_size: int = 32,
    has_head: bool | None = None,
    layernorms: bool = True,
    attention: bool = True,
    heads: bool = True,
) -> AnalysisResult:
    """Load ``model_source`` (its own architecture) and analyze it on ``samples`` training rows of
    ``source``, drawn with ``seed``. ``has_head=None`` decides with :func:`has_task_head`; ``True``
    insists on the loss measure (error if there is no fitting head), ``False`` forces CKA."""

    dataset, task = source.load()
    tokenizer = checkpoint.load_tokenizer(model_source)
    if tokenizer is None:
        raise TrimbertError(f"no tokenizer found with {model_source}")
    found_head = has_task_head(model_source, task.num_labels, task.is_regression)
    if has_head and not found_head:
        raise TrimbertError(
            f"{model_source} has no trained classification head for {task.name} "
            f"({task.num_labels} label(s)): analyze it without has_head (hidden-state CKA)"
        )
    use_head = found_head if has_head is None else bool(has_head)
    model = checkpoint.load(model_source)
    check_seq_len(model.config, max_length)
    batches = sample_batches(
        dataset["train"], tokenizer, samples=samples, seed=seed, max_length=max_length, batch_size=batch_size
    )
    result = analyze_blocks(
        model, batches, has_head=use_head, layernorms=layernorms, attention=attention, heads=heads
    )
    result.seed = seed
    result.max_length = max_length
    result.task = task.name
    result.model = str(model_source)
    return result
