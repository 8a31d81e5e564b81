"""Search settings, declared once (see :mod:`trimbert.settings`): ``trimbert search``'s options.

The fine-tune of the (super-)model that estimates accuracy takes the ``finetune`` settings (epochs,
learning rate, rows, seed); these say what to search, under which target, and how long.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trimbert.errors import TrimbertError
from trimbert.settings import Settings


class SearchSettings(Settings):
    """The target, the space, the latency conditions and the search's effort."""

    speedup: float | None = Field(None, ge=1.0, description="Target: at least this speed-up over the untrimmed model.")
    latency_ms: float | None = Field(None, gt=0, description="Target: at most this many ms per batch (instead of --speedup).")
    runtime: Literal["pytorch", "onnx", "onnx-int8"] = Field(
        "pytorch", description="Where latency is measured and predicted: pytorch | onnx | onnx-int8 (ONNX Runtime)."
    )
    device: str = Field("cpu", description="Device latency is measured on (cpu, cuda).")
    batch_size: int = Field(1, ge=1, description="Batch size of the latency target.")
    seq_len: int = Field(128, ge=2, description="Sequence length of the latency target.")
    threads: int | None = Field(None, ge=1, description="CPU threads for timing (default: torch's).")
    widths: str = Field(
        "0.75,0.5,0.25",
        description="Narrowed FFN widths a block may take: fractions of the intermediate size or neuron counts.",
    )
    normalizers: str = Field("softmax,relu", description="Attention normalizers to search, comma-separated.")
    max_drop_layers: int = Field(2, ge=0, description="At most this many whole blocks dropped.")
    layernorms: bool = Field(
        False,
        description="Also search stripped LayerNorms (identity). Off by default: each saves ~0.5% of the time, and "
        "the one-shot estimate overrates them (measured: docs/search.md).",
    )
    estimator: Literal["one-shot", "analyze"] = Field(
        "one-shot", description="one-shot: a super-model trained with random sub-trims; analyze: cuts of a plain fine-tune."
    )
    scorer: Literal["head", "probe"] = Field(
        "probe",
        description="probe: refit a linear head on each candidate's features (ranks far better, measured); "
        "head: the super-model's own classifier (faster).",
    )
    importance: Literal["taylor", "magnitude"] = Field(
        "taylor", description="How narrowed FFNs choose their neurons (as --importance for trim/finetune)."
    )
    overshoot: float = Field(
        0.10,
        ge=0,
        description="Candidates are predicted at most this fraction faster than the target (AutoTinyBERT: within "
        "1.1x of its latency): a faster trim gives up accuracy, and only the estimate's noise prefers it.",
    )
    undershoot: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Candidates may be predicted up to this fraction under the target speed-up (the predictor "
        "errs by a few percent either way; AutoTinyBERT accepts 0.85-1.1x its latency target). 0: the target is a strict floor.",
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
        "and choose the one most accurate on the fresh rows (--verify-seeds fine-tunes each; 0: trust the estimate, which "
        "can miss by points, measured: docs/search.md).",
    )
    verify_seeds: int = Field(
        1,
        ge=1,
        description="Fine-tunes per verified finalist, with seeds --seed, --seed + 1, ...; the winner is the best by "
        "the mean on the fresh rows (one seed's pick is partly chance: docs/search.md).",
    )
    population: int = Field(16, ge=2, description="New candidates per generation.")
    parents: int = Field(6, ge=1, description="Best candidates bred from in each generation.")
    generations: int = Field(8, ge=1, description="Generations of the evolutionary search.")
    budget_minutes: float | None = Field(None, gt=0, description="Stop scoring candidates after this many minutes.")
    probes: int = Field(16, ge=4, description="Specs timed to fit the latency predictor.")
    repeats: int = Field(30, ge=3, description="Timed rounds per probe spec.")
    bench_seconds: float = Field(
        60.0, gt=0, description="With --finetune: time limit for re-measuring the side-by-side bench of the winner."
    )
    search_seed: int = Field(0, description="Seed of the probes, the sub-trims and the evolution.")

    @model_validator(mode="after")
    def _one_target_and_verification(self) -> SearchSettings:
        if (self.speedup is None) == (self.latency_ms is None):
            raise ValueError("give exactly one target: --speedup X or --latency-ms X")
        if self.verify_seeds > 1 and self.verify == 0:
            raise ValueError("--verify-seeds: nothing is verified with --verify 0")
        return self

    def width_list(self, intermediate_size: int) -> tuple[int, ...]:
        """``widths`` as neuron counts for a model of ``intermediate_size`` FFN neurons."""
        widths = []
        for item in filter(None, (part.strip() for part in self.widths.split(","))):
            try:
                value = float(item)
            except ValueError:
                raise TrimbertError(f"--widths: {item!r} is not a number") from None
            width = round(value * intermediate_size) if 0 < value < 1 else int(value)
            if value != int(value) and not 0 < value < 1:
                raise TrimbertError(f"--widths: {item!r} is neither a fraction (0-1) nor a neuron count")
            widths.append(width)
        return tuple(widths)

    def normalizer_list(self) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(part.strip() for part in self.normalizers.split(",") if part.strip()))
        if "softmax" not in names:
            names = ("softmax", *names)
        return names
