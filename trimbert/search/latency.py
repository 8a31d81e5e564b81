"""Measuring what trims cost: probe trims timed side by side, the predictor fitted on them, and its cache.

:func:`measure_specs` times probe trims (the untrimmed model, corner cases and random specs of the
search space: :func:`probe_specs`) side by side in one alternating run, in PyTorch or an exported
runtime; :func:`build_predictor` fits the latency predictor (:mod:`trimbert.search.predictor`) on
those timings. A fitted predictor is cached on disk per (model shape, device, runtime, batch size,
sequence length, threads, space) by :func:`cached_predictor`, which measures again when a cached one
cannot be read or holds a time that is not positive (:func:`untrusted`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock
from torch import nn

from trimbert.core.io import write_json_atomic
from trimbert.errors import TrimbertError
from trimbert.measure.benchmark import benchmark, fastest_attention
from trimbert.model.trim import trim
from trimbert.search.predictor import Conditions, Predictor, fit_predictor
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimSpec, encoder_layernorms

RUNTIMES = ("pytorch", "onnx", "onnx-int8", "openvino", "openvino-int8")
# search's runtime names -> the deploy runtimes they measure
DEPLOY_RUNTIME = {"onnx": "onnxruntime", "onnx-int8": "onnxruntime-int8", "openvino": "openvino", "openvino-int8": "openvino-int8"}


def probe_specs(space: SearchSpace, count: int, seed: int) -> list[TrimSpec]:
    """The untrimmed model, corner cases (alternate FFNs dropped, every FFN at each width, every block
    at half its heads when the space prunes heads, every LayerNorm stripped, each normalizer, the most
    blocks dropped: each varies one component, so that every cost is fitted) and random specs of
    ``space``: ``count`` in all, or just the corners when there are more of them."""
    layers = space.num_layers
    corners = [TrimSpec()]
    if space.drop_ffn:
        corners.append(TrimSpec(drop_ffn=tuple(range(1, layers, 2))))
    for width in space.widths:  # every width, so that a per-width cost can be fitted for each
        corners.append(TrimSpec(ffn_width={block: width for block in range(layers)}))
    if space.heads:  # the head cost apart from the block's (a random spec prunes heads in some blocks only)
        corners.append(TrimSpec(heads=dict.fromkeys(range(layers), max(1, space.num_attention_heads // 2))))
    if space.layernorms:
        corners.append(TrimSpec(layernorm=tuple(encoder_layernorms(layers))))
    corners += [TrimSpec(attention=name) for name in space.normalizers[1:]]
    if space.max_drop_layers:
        corners.append(TrimSpec(drop_layers=tuple(range(layers - space.max_drop_layers, layers))))
    rng = random.Random(seed)
    specs = list(dict.fromkeys(corners))
    tries = 0
    while len(specs) < count and tries < 100 * count:
        tries += 1
        candidate = space.random_spec(rng)
        if candidate not in specs:
            specs.append(candidate)
    return specs


def _timed_model(model: nn.Module, spec: TrimSpec, runtime: str, work: Path, name: str, threads: int | None) -> Any:
    trimmed = trim(copy.deepcopy(model), spec) if not spec.is_empty else copy.deepcopy(model)
    if runtime == "pytorch":
        return trimmed.eval()
    from trimbert.deploy.export import export_onnx
    from trimbert.deploy.runners import export_needs, load_exported

    folder = work / name
    deployed = DEPLOY_RUNTIME[runtime]
    export_onnx(trimmed, folder, force=True, **export_needs([deployed]))
    return load_exported(folder, deployed, threads=threads)


def measure_specs(
    model: nn.Module,
    specs: Sequence[TrimSpec],
    conditions: Conditions,
    *,
    repeats: int = 30,
    warmup: int = 3,
    work_dir: Path,
    on_step: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Time every spec (a trim of ``model``) side by side in one alternating run.

    PyTorch specs with softmax attention use the untrimmed model's fastest attention implementation
    (so the baseline is never handicapped); ONNX runtimes export each spec to ``work_dir`` first.
    Returns one dict per spec: ``spec`` (dict), ``summary``, ``measured_ms`` (median), ``p10_ms``, ``p90_ms``.
    """
    if conditions.runtime not in RUNTIMES:
        raise TrimbertError(f"--runtime: unknown runtime {conditions.runtime!r} (choose from {', '.join(RUNTIMES)})")
    implementation = None
    if conditions.runtime == "pytorch":
        implementation, _ = fastest_attention(
            copy.deepcopy(model), batch_size=conditions.batch_size, seq_len=conditions.seq_len,
            device=conditions.device, threads=conditions.threads,
        )
    models = {}
    for index, spec in enumerate(specs):
        timed = _timed_model(model, spec, conditions.runtime, work_dir, f"probe-{index}", conditions.threads)
        if implementation is not None and spec.attention == "softmax":
            timed.set_attn_implementation(implementation)
        models[f"probe-{index}"] = timed
    results = benchmark(
        models,
        batch_size=conditions.batch_size,
        seq_len=conditions.seq_len,
        repeats=repeats,
        warmup=warmup,
        device=conditions.device,
        threads=conditions.threads,
        on_step=on_step,
    )
    return [
        {
            "spec": spec.to_dict(),
            "summary": spec.summary(),
            "measured_ms": results[f"probe-{index}"].median_ms,
            "p10_ms": results[f"probe-{index}"].p10_ms,
            "p90_ms": results[f"probe-{index}"].p90_ms,
        }
        for index, spec in enumerate(specs)
    ]


def build_predictor(
    model: nn.Module,
    space: SearchSpace,
    conditions: Conditions,
    *,
    probes: int = 16,
    repeats: int = 30,
    seed: int = 0,
    work_dir: Path,
    on_step: Callable[[str, int, int], None] | None = None,
) -> Predictor:
    """Measure ``probes`` specs of ``space`` (:func:`probe_specs`) and fit a predictor on them."""
    specs = probe_specs(space, probes, seed)
    start = time.perf_counter()
    rows = measure_specs(model, specs, conditions, repeats=repeats, work_dir=work_dir, on_step=on_step)
    predictor = fit_predictor(
        [(TrimSpec.from_dict(row["spec"]), row["measured_ms"]) for row in rows],
        space.num_layers,
        space.intermediate_size,
        conditions,
        num_attention_heads=space.num_attention_heads or conditions.model_shape.get("num_attention_heads"),
    )
    predictor.probes = rows
    predictor.baseline_ms = rows[0]["measured_ms"]
    predictor.fit_error["measure_s"] = time.perf_counter() - start
    return predictor


def check_cache_dir(folder: Path, name: str = "--cache-dir") -> None:
    """Fail in one line when ``folder`` cannot be a folder: it, or the nearest existing folder above it, is a file."""
    folder = Path(folder).expanduser()
    for existing in (folder, *folder.parents):
        if existing.exists():
            if existing == folder and not existing.is_dir():
                raise TrimbertError(f"{name}: {folder} is a file, not a folder")
            if not existing.is_dir():
                raise TrimbertError(f"{name}: {folder} cannot be a folder: {existing} is a file")
            return


def untrusted(predictor: Predictor) -> str | None:
    """Why a (cached) predictor cannot be used, or None: a time that is not a positive finite number among
    its measurements, costs or predictions (an edited or damaged cache once predicted a trim at -23,375 ms)."""
    numbers = {"baseline_ms": predictor.baseline_ms}
    for index, probe in enumerate(predictor.probes):
        for key in ("measured_ms", "p10_ms", "p90_ms"):
            if key in probe:
                numbers[f"probes[{index}].{key}"] = probe[key]
    for name, value in numbers.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            return f"{name} is {value!r}"
    for name, value in predictor.coefficients.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"the cost {name} is {value!r}"
    for spec in [TrimSpec(), *(TrimSpec.from_dict(probe["spec"]) for probe in predictor.probes if "spec" in probe)]:
        predicted = predictor.predict(spec)
        if not math.isfinite(predicted) or predicted <= 0:
            return f"it predicts {predicted:.2f} ms for {spec.summary()}"
    return None


def cached_predictor(cache_dir: Path, conditions: Conditions, space: SearchSpace, build: Callable[[], Predictor]) -> tuple[Predictor, bool]:
    """The predictor for these conditions and space from ``cache_dir``, else ``build()`` it and store
    it there (file-locked: parallel searches measure once). Returns it and whether it came from the cache.
    A cache entry that cannot be read, or holds a time that is not positive (:func:`untrusted`), is measured again."""
    identity = json.dumps({"conditions": conditions.key(), "space": space.fingerprint()}, sort_keys=True)
    path = Path(cache_dir) / f"latency-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json"
    check_cache_dir(path.parent, "latency cache")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock")
        lock.acquire()
    except OSError as error:
        raise TrimbertError(f"latency cache: cannot write in {path.parent} ({error.strerror or error})") from None
    try:
        if path.is_file():
            try:
                predictor = Predictor.from_dict(json.loads(path.read_text()))
                if untrusted(predictor) is None:
                    return predictor, True
            except (ValueError, TypeError, KeyError, AttributeError, TrimbertError):
                pass  # a corrupt or outdated cache entry: measure again
        predictor = build()
        write_json_atomic(path, predictor.to_dict())
    finally:
        lock.release()
    return predictor, False
