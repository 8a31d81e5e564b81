"""Search settings, declared once (see :mod:`trimbert.core.settings`): ``trimbert search``'s options.

The fine-tune of the (super-)model that estimates accuracy takes the ``finetune`` settings (epochs,
learning rate, rows, seed); these say what to search, under which target, and how long.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from trimbert.core.settings import Settings, check_threads
from trimbert.errors import TrimbertError


class SearchSettings(Settings):
    """The target, the space, the latency conditions and the search's effort."""

    speedup: float | None = Field(None, ge=1.0, description="Target: at least this speed-up over the untrimmed model.")
    latency_ms: float | None = Field(None, gt=0, description="Target: at most this many ms per batch (instead of --speedup).")
    runtime: Literal["pytorch", "onnx", "onnx-int8", "openvino", "openvino-int8"] = Field(
        "pytorch",
        description="Where latency is measured and predicted: pytorch | onnx | onnx-int8 (ONNX Runtime) | "
        "openvino | openvino-int8 (NNCF static int8, calibrated on random ids).",
    )
    device: str = Field("cpu", description="Device latency is measured on (cpu, cuda).")
    batch_size: int = Field(1, ge=1, description="Batch size of the latency target.")
    seq_len: int = Field(128, ge=2, description="Sequence length of the latency target.")
    threads: int | None = Field(None, ge=1, description="CPU threads for timing (default: torch's).")
    widths: str = Field(
        "0.75,0.5,0.25",
        description="Narrowed FFN widths a block may take: fractions of the intermediate size or neuron counts.",
    )
    heads_choices: str | None = Field(
        None,
        description="Attention head counts a block may be pruned to (besides all of its heads), comma-separated: "
        "6,9 (the heads --importance ranks highest, as trim --heads N --importance). Default: heads are not searched.",
    )
    normalizers: str = Field("softmax,relu", description="Attention normalizers to search, comma-separated.")
    max_drop_layers: int = Field(2, ge=0, description="At most this many whole blocks dropped.")
    layernorms: bool = Field(
        False,
        description="Also search stripped LayerNorms (identity). Off by default: a stripped LayerNorm saves little "
        "time, and the one-shot estimate overrates it.",
    )
    scorer: Literal["head", "probe"] = Field(
        "probe",
        description="probe: refit a linear head on each candidate's features; "
        "head: the super-model's own classifier (faster, ranks candidates less well).",
    )
    importance: Literal["taylor", "magnitude", "fisher"] = Field(
        "taylor",
        description="How narrowed FFNs choose their neurons and pruned blocks their heads (as --importance for "
        "trim/finetune): taylor | magnitude | fisher.",
    )
    overshoot: float = Field(
        0.10,
        ge=0,
        description="Candidates are predicted at most this fraction faster than the target: a trim faster than "
        "asked gives up accuracy it need not.",
    )
    undershoot: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Candidates may be predicted up to this fraction under the target speed-up (the predictor "
        "errs either way). 0: the target is a strict floor.",
    )
    score_rows: int = Field(1000, ge=10, description="Rows each candidate is scored on (training rows not trained on).")
    finalists: int = Field(
        8,
        ge=0,
        description="The best candidates, with the hand-made patterns, re-scored on fresh rows to choose the winner "
        "(0: the best search estimate wins).",
    )
    final_rows: int = Field(3000, ge=10, description="Fresh training rows the finalists are re-scored on.")
    verify: int = Field(
        4,
        ge=0,
        description="Fine-tune this many of the best finalists (and the best hand-made pattern among them) for real "
        "and choose the one most accurate on the fresh rows (--verify-seeds fine-tunes each). 0: trust the search's "
        "estimate.",
    )
    verify_seeds: int = Field(
        1,
        ge=1,
        description="Fine-tunes per verified finalist, with seeds --seed, --seed + 1, ...; the winner is the best by "
        "the mean on the fresh rows.",
    )
    population: int = Field(16, ge=2, description="New candidates per generation.")
    parents: int = Field(6, ge=1, description="Best candidates bred from in each generation.")
    generations: int = Field(8, ge=1, description="Generations of the evolutionary search.")
    budget_minutes: float | None = Field(
        None,
        gt=0,
        description="Bound the whole search (with --finetune, its fine-tunes too) to this many minutes: the work is "
        "measured and planned up front, and what does not fit is cut down (fewer rows, --verify, --score-rows, "
        "--final-rows; printed), or the search is refused with the estimate.",
    )
    probes: int = Field(16, ge=4, description="Specs timed to fit the latency predictor.")
    repeats: int = Field(30, ge=3, description="Timed rounds per probe spec.")
    bench_seconds: float = Field(
        60.0, gt=0, description="With --finetune: time limit for re-measuring the side-by-side bench of the winner."
    )
    search_seed: int = Field(0, description="Seed of the probes, the sub-trims and the evolution.")

    @field_validator("threads")
    @classmethod
    def _threads_here(cls, threads: int | None) -> int | None:
        return check_threads(threads)

    @field_validator("widths")
    @classmethod
    def _widths_syntax(cls, widths: str) -> str:
        """Each width a fraction strictly between 0 and 1 (``0.5``) or a whole number of neurons (``512``):
        ``2.0`` is neither (a share above the whole FFN, or a neuron count written as a fraction)."""
        items = [part.strip() for part in widths.split(",") if part.strip()]
        if not items:
            raise ValueError("give at least one width (a fraction such as 0.5 or a neuron count such as 512)")
        for item in items:
            _width_value(item)
        return widths

    @field_validator("heads_choices")
    @classmethod
    def _heads_syntax(cls, choices: str | None) -> str | None:
        """Whole head counts of at least 1, comma-separated (``6,9``); checked against the model's head
        count when the space is built (:meth:`head_list`)."""
        if choices is None:
            return None
        items = [part.strip() for part in choices.split(",") if part.strip()]
        if not items:
            raise ValueError("give at least one head count (e.g. 6,9)")
        for item in items:
            if not item.isdigit() or int(item) < 1:
                raise ValueError(f"{item!r} is not a head count (a whole number of heads, at least 1)")
        return choices

    @model_validator(mode="after")
    def _one_target_and_verification(self) -> SearchSettings:
        if (self.speedup is None) == (self.latency_ms is None):
            raise ValueError("give exactly one target: --speedup X or --latency-ms X")
        if self.speedup == 1.0:
            raise ValueError("a speed-up of 1.0 is met by the untrimmed model: nothing to trim (aim above 1.0)")
        if self.verify_seeds > 1 and self.verify == 0:
            raise ValueError("--verify-seeds: nothing is verified with --verify 0")
        return self

    def width_list(self, intermediate_size: int) -> tuple[int, ...]:
        """``widths`` as neuron counts for a model of ``intermediate_size`` FFN neurons."""
        widths = []
        for item in filter(None, (part.strip() for part in self.widths.split(","))):
            try:
                value = _width_value(item)
            except ValueError as error:
                raise TrimbertError(f"--widths: {error}") from None
            widths.append(round(value * intermediate_size) if isinstance(value, float) else value)
        return tuple(widths)

    def head_list(self) -> tuple[int, ...]:
        """``heads_choices`` as head counts (empty: heads are not searched); the search space checks
        each against the model's number of heads."""
        if self.heads_choices is None:
            return ()
        return tuple(int(part) for part in self.heads_choices.split(",") if part.strip())

    def normalizer_list(self) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(part.strip() for part in self.normalizers.split(",") if part.strip()))
        if "softmax" not in names:
            names = ("softmax", *names)
        return names


def _width_value(item: str) -> float | int:
    """A ``--widths`` item: a fraction in (0, 1) as a float, or a neuron count (a whole number >= 1) as an int."""
    if item.isdigit():
        if int(item) < 1:
            raise ValueError(f"{item!r}: a narrowed FFN keeps at least 1 neuron")
        return int(item)
    try:
        value = float(item)
    except ValueError:
        raise ValueError(f"{item!r} is not a number") from None
    if not 0 < value < 1:
        raise ValueError(f"{item!r} is neither a fraction between 0 and 1 (0.5) nor a whole number of neurons (512)")
    return value
