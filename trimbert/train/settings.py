"""Fine-tune and distillation settings, declared once (see :mod:`trimbert.core.settings`).

Each field is a ``trimbert finetune`` option (``--epochs``, ``--distill-alpha-kd``, ...), a recipe key
(``[finetune] epochs``, a variant's ``distill = {alpha_kd = ...}``) and its validation, in one place.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from trimbert.core.settings import Settings

HEAL_STEPS = 300  # heal steps without --steps or --tokens
MAX_EPOCHS = 1000  # more is a typo (1e308 epochs overflowed the Trainer's step count after minutes of loading)


class FinetuneSettings(Settings):
    """Training hyper-parameters (the CLI's common options of ``finetune``)."""

    epochs: float = Field(3.0, gt=0, le=MAX_EPOCHS, description="Training epochs (fractions allowed).")
    lr: float = Field(5e-5, gt=0, description="Peak learning rate.")
    batch_size: int = Field(32, ge=1, description="Training batch size (per device).")
    eval_batch_size: int = Field(128, ge=1, description="Evaluation batch size.")
    max_length: int = Field(128, ge=2, description="Truncate sequences to this many tokens.")
    max_train_samples: int | None = Field(None, ge=1, description="Train on this many shuffled rows.")
    max_eval_samples: int | None = Field(None, ge=1, description="Evaluate on at most this many rows.")
    seed: int = Field(42, description="Seed for shuffling, sampling and initialization.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps for linear warm-up.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    eval_each_epoch: bool = Field(False, description="Also evaluate after every epoch.")


class DistillSettings(Settings):
    """Weights and temperature of the task distillation loss (see :func:`trimbert.train.distill.distillation_loss`).

    ``loss = alpha_ce · task loss + alpha_kd · KL(softmax(t/T) ‖ softmax(s/T)) · T² + alpha_hidden · hidden MSE``

    ``temperature`` (T) softens both distributions; the T² factor keeps the KD gradient on the scale of
    the task loss. For regression tasks the KD term is the MSE between student and teacher outputs
    (no temperature). ``alpha_hidden`` weighs the mean squared difference between the output of each
    block the student and the teacher both have (block i against block i; padding tokens excluded;
    the hidden sizes must match). A weight of 0 skips its term (and, for ``alpha_hidden``, the hidden
    states are not even returned).
    """

    option_prefix: ClassVar[str] = "distill-"

    temperature: float = Field(2.0, gt=0, description="Softmax temperature T of the KD term.")
    alpha_ce: float = Field(0.5, ge=0, description="Weight of the task loss.")
    alpha_kd: float = Field(0.5, ge=0, description="Weight of the soft-label KL (× T²).")
    alpha_hidden: float = Field(
        0.0, ge=0, description="Weight of the hidden-state MSE between corresponding blocks."
    )

    @model_validator(mode="after")
    def _some_weight(self) -> DistillSettings:
        if self.alpha_ce + self.alpha_kd + self.alpha_hidden <= 0:
            raise ValueError("distillation needs at least one positive weight (alpha_ce, alpha_kd, alpha_hidden)")
        return self


class HealSettings(Settings):
    """Task-agnostic distillation on unlabeled text (``trimbert heal``; see :mod:`trimbert.train.heal`).

    ``loss = alpha_hidden · mean over shared blocks of the block-output MSE + alpha_final · MSE of the
    final hidden states + alpha_attention · attention-distribution loss`` (real tokens only), student
    against the untrimmed teacher on the same text.
    """

    steps: int | None = Field(
        None, ge=1, description=f"Optimizer steps (each a batch of corpus texts); {HEAL_STEPS} unless --tokens is given."
    )
    tokens: int | None = Field(
        None,
        ge=1,
        description="A budget of training tokens instead of --steps: steps = tokens / (batch size × the corpus's "
        "mean tokens per text), rounded up.",
    )
    lr: float = Field(
        1e-4,
        gt=0,
        description="Peak learning rate.",
    )
    batch_size: int = Field(32, ge=1, description="Texts per step.")
    max_length: int = Field(64, ge=2, description="Truncate texts to this many tokens.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps for linear warm-up.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    seed: int = Field(42, description="Seed of the corpus shuffle and of training.")
    alpha_hidden: float = Field(1.0, ge=0, description="Weight of the per-block hidden-state MSE.")
    alpha_final: float = Field(1.0, ge=0, description="Weight of the final hidden-state MSE.")
    alpha_attention: float = Field(
        0.0,
        ge=0,
        description="Weight of the attention-distribution loss (per query row, the squared difference of the "
        "student's and the teacher's attention weights summed over keys; mean over real query tokens, heads, blocks).",
    )
    corpus_texts: int | None = Field(
        None, ge=1, description="Use at most this many corpus texts (shuffled; default: all)."
    )
    held_out: int = Field(256, ge=1, description="Corpus texts held out to measure the loss before and after.")
    schedule: Literal["oneshot", "progressive"] = Field(
        "oneshot",
        description="oneshot: heal the trimmed model as given; progressive: re-apply its trim to the teacher in "
        "stages (FFNs, layers and heads, then LayerNorms, then the attention normalizer), healing steps/stages after each, "
        "each stage on texts no earlier stage read.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_steps(cls, values: Any) -> Any:
        """Without a token budget the steps default to HEAL_STEPS (with one, :func:`~trimbert.train.heal.heal`
        derives them from the corpus)."""
        if isinstance(values, dict) and values.get("steps") is None and values.get("tokens") is None:
            return {**values, "steps": HEAL_STEPS}
        return values

    @field_validator("tokens")
    @classmethod
    def _not_with_steps(cls, tokens: int | None, info: ValidationInfo) -> int | None:
        if tokens is not None and info.data.get("steps") is not None:
            raise ValueError("a token budget sets the steps: give steps or tokens, not both")
        return tokens

    @model_validator(mode="after")
    def _some_weight(self) -> HealSettings:
        if self.alpha_hidden + self.alpha_final + self.alpha_attention <= 0:
            raise ValueError("healing needs a positive weight (alpha_hidden, alpha_final or alpha_attention)")
        return self
