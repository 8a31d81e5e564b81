"""Wall-clock timing of models side by side: alternating rounds, medians, the fastest attention.

Everything here returns data and prints nothing. Timings of several models are taken in one
process *alternating* between the models (round-robin), so that drift of the machine (thermal
throttling, other processes, frequency scaling) affects all of them alike, and reported as medians.
:func:`fastest_attention` gives a softmax model its fastest attention implementation first, so a
baseline is never measured with a handicap.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trimbert.deploy.runtime import ExportedModel
from trimbert.errors import TrimbertError
from trimbert.measure.size import check_seq_len, model_mode, try_set_attention
from trimbert.measure.steps import StepRunner, make_runners, time_step

StepCallback = Callable[[str, int, int], None]


@dataclass
class BenchResult:
    """Timings of one model in one :func:`benchmark` run.

    ``median_ms``/``p10_ms``/``p90_ms`` describe the timed unit of the run's mode: one forward pass
    of a batch (``mode="infer"``) or one training step, forward + backward + optimizer step
    (``mode="train"``). ``latency_ms`` is set in infer mode and ``train_step_ms`` in train mode,
    both equal to ``median_ms``; the other one is ``None``.
    """

    mode: str
    batch_size: int
    seq_len: int
    repeats: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    throughput: float  # sequences per second: batch_size / median seconds
    latency_ms: float | None
    train_step_ms: float | None
    peak_memory_bytes: int | None  # CUDA only, see benchmark(); None on CPU
    times_ms: list[float] = field(default_factory=list)  # every timed repeat, in order

    def record_fields(self) -> dict[str, Any]:
        """The fields of :class:`trimbert.report.records.Record` this result fills in."""
        return {
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "latency_ms": self.latency_ms,
            "throughput": self.throughput,
            "train_step_ms": self.train_step_ms,
            "peak_memory_bytes": self.peak_memory_bytes,
        }


def benchmark(
    models: Mapping[str, nn.Module | ExportedModel],
    *,
    batch_size: int = 8,
    seq_len: int = 128,
    mode: str = "infer",
    repeats: int = 20,
    warmup: int = 3,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    on_step: StepCallback | None = None,
) -> dict[str, BenchResult]:
    """Time every model of ``models`` on the same random batch, alternating between them.

    Each round runs one step of every model in turn (A, B, A, B, ...): first ``warmup`` untimed
    rounds, then ``repeats`` timed ones; results report medians and 10th/90th percentiles.

    ``mode="infer"``: one forward pass under ``torch.inference_mode`` in eval mode, on random input
    ids with a full attention mask. ``mode="train"``: one training step in train mode (dropout as
    configured): forward, loss (cross entropy of ``.logits`` against random labels, mean squared
    error for a single-output head, else the mean of ``last_hidden_state``), backward,
    ``torch.optim.AdamW`` step (lr 1e-5, created outside the timed region) and ``zero_grad``.
    Train mode therefore **changes the weights**: pass copies to keep the originals.

    An :class:`~trimbert.deploy.runtime.ExportedModel` (an ONNX Runtime or OpenVINO model; infer mode
    and the CPU only) is timed on the same batch, alternating with the others; its threads are its session's.
    The models are moved to ``device``; their training flags are restored afterwards. ``threads``
    sets ``torch.set_num_threads`` for the run and restores the previous value afterwards.

    ``peak_memory_bytes`` is measured on CUDA only: the model's resident tensors (parameters,
    buffers, optimizer state) plus the largest increase of ``torch.cuda.max_memory_allocated``
    during one of its steps, so models sharing the GPU do not inflate each other's figures. On CPU
    it is ``None``: one process's memory high-water mark cannot be attributed to one of several
    models.

    ``on_step(name, step, total)`` is called after every step, warm-up included, with the model's
    name, the 1-based number of steps done so far in the whole run and the run's total number of
    steps, ``len(models) * (warmup + repeats)``.
    """
    if mode not in ("infer", "train"):
        raise TrimbertError(f"unknown benchmark mode {mode!r} (expected 'infer' or 'train')")
    if not models:
        raise TrimbertError("no models to benchmark")
    _check_run(batch_size=batch_size, repeats=repeats, warmup=warmup, threads=threads)
    target = _resolve_device(device)
    train = mode == "train"
    for name, model in models.items():
        if isinstance(model, ExportedModel) and (train or target.type != "cpu"):
            raise TrimbertError(f"{name}: exported models ({model.runtime}) are timed in infer mode on the CPU only")
        check_seq_len(model.config if isinstance(model, ExportedModel) else model, seq_len)

    with _num_threads(threads), contextlib.ExitStack() as restore:
        runners = make_runners(models, restore, target, batch_size=batch_size, seq_len=seq_len, train=train)

        total_steps = len(runners) * (warmup + repeats)
        step = 0
        times_ms: dict[str, list[float]] = {name: [] for name in runners}
        peaks: dict[str, int] = dict.fromkeys(runners, 0)
        for round_index in range(warmup + repeats):
            for name, runner in runners.items():
                elapsed_ms, step_peak = time_step(runner.step, target)
                if round_index >= warmup:
                    times_ms[name].append(elapsed_ms)
                    if step_peak is not None:
                        peaks[name] = max(peaks[name], step_peak + runner.resident_bytes())
                step += 1
                if on_step is not None:
                    on_step(name, step, total_steps)

    on_cuda = target.type == "cuda"
    return {
        name: summarize(
            times_ms[name],
            mode=mode,
            batch_size=batch_size,
            seq_len=seq_len,
            peak_memory_bytes=peaks[name] if on_cuda else None,
        )
        for name in runners
    }


def fastest_attention(
    model: nn.Module,
    *,
    batch_size: int,
    seq_len: int,
    device: str | torch.device = "cpu",
    candidates: Sequence[str] = ("sdpa", "eager"),
    repeats: int = 10,
    warmup: int = 2,
    threads: int | None = None,
) -> tuple[str, dict[str, float]]:
    """Time the forward pass under each attention implementation and keep the fastest.

    Candidates are timed alternating (one forward under each in turn, ``warmup`` untimed rounds,
    then ``repeats`` timed ones), on the same batch as :func:`benchmark` in infer mode. A candidate
    the model cannot use (for example flash attention without its package) is skipped. The model
    is left on the fastest implementation (and on ``device``); returns its name and the median
    forward milliseconds of every candidate that ran.
    """
    if not candidates:
        raise TrimbertError("no attention implementations to compare")
    _check_run(batch_size=batch_size, repeats=repeats, warmup=warmup, threads=threads)
    check_seq_len(model, seq_len)
    target = _resolve_device(device)
    original = model.config._attn_implementation
    try:
        usable = [name for name in dict.fromkeys(candidates) if try_set_attention(model, name)]
        if not usable:
            raise TrimbertError(f"the model can use none of the attention implementations {list(candidates)}")
        times_ms: dict[str, list[float]] = {name: [] for name in usable}
        with _num_threads(threads), model_mode(model, train=False):
            model.to(target)
            runner = StepRunner(model, batch_size=batch_size, seq_len=seq_len, train=False)
            for round_index in range(warmup + repeats):
                for name in usable:
                    model.set_attn_implementation(name)
                    elapsed_ms, _ = time_step(runner.step, target)
                    if round_index >= warmup:
                        times_ms[name].append(elapsed_ms)
    except BaseException:
        model.set_attn_implementation(original)
        raise

    medians = {name: statistics.median(samples) for name, samples in times_ms.items()}
    fastest = min(medians, key=medians.__getitem__)
    model.set_attn_implementation(fastest)
    return fastest, medians


def summarize(
    times_ms: list[float], *, mode: str, batch_size: int, seq_len: int, peak_memory_bytes: int | None
) -> BenchResult:
    """The result of one model's timed repeats: median, 10th and 90th percentiles, throughput."""
    median_ms = statistics.median(times_ms)
    if len(times_ms) > 1:
        deciles = statistics.quantiles(times_ms, n=10, method="inclusive")
        p10_ms, p90_ms = deciles[0], deciles[-1]
    else:
        p10_ms = p90_ms = median_ms
    return BenchResult(
        mode=mode,
        batch_size=batch_size,
        seq_len=seq_len,
        repeats=len(times_ms),
        median_ms=median_ms,
        p10_ms=p10_ms,
        p90_ms=p90_ms,
        throughput=batch_size / (median_ms / 1000.0),
        latency_ms=median_ms if mode == "infer" else None,
        train_step_ms=median_ms if mode == "train" else None,
        peak_memory_bytes=peak_memory_bytes,
        times_ms=list(times_ms),
    )


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise TrimbertError(f"unknown device {device!r}") from error
    if target.type == "cuda" and not torch.cuda.is_available():
        raise TrimbertError(f"device {device!r} requested but CUDA is not available")
    return target


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` (checked by :func:`_check_run`) intra-op threads for the body, then restore.

    ``None`` leaves the setting as it is.
    """
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_run(*, batch_size: int, repeats: int, warmup: int, threads: int | None) -> None:
    """Raise :class:`TrimbertError` for settings a timing run cannot use."""
    if batch_size < 1:
        raise TrimbertError(f"batch size {batch_size} is less than 1")
    if repeats < 1:
        raise TrimbertError(f"repeats {repeats} is less than 1")
    if warmup < 0:
        raise TrimbertError(f"warmup {warmup} is negative")
    if threads is not None and threads < 1:
        raise TrimbertError(f"threads must be at least 1, got {threads}")
