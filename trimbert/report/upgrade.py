"""Upgrade a version-1 record object to version 2 (JSON in, JSON out).

Version 1 kept everything beyond the flat numbers in ``extra``, in three encodings of the paired
ratios: a bench record's nested ``paired`` / ``paired_int8`` (``{"baseline": unit, "latency": {...},
"train step": {...}}``) and ``paired_vs`` (unit -> quantity -> figures); a sweep record's flat
``paired_speedup``, ``paired_speedup_interval``, ``paired_speedup_stable``, ``paired_baseline``,
``paired_train_step_speedup*``, ``paired_int8_*`` and a flat ``paired_vs`` (label -> figures of the
latency). :func:`upgrade_v1` moves them into version 2's ``paired`` (reference -> quantity ->
ratio), ``u_star`` and ``int8_reference``, and the other known keys into their sub-records
(:mod:`trimbert.report.records`). Figures derived from other records (``paired_flop_ideal``,
``paired_baseline_latency_ms``, ``paired_baseline_train_step_ms``, ``paired_int8_baseline_*_ms``:
the reference's own record has them) are dropped; keys it does not know stay in ``extra``.
"""

from __future__ import annotations

from typing import Any

_QUANTITIES = {"latency": "latency", "train step": "train_step"}
_FLAT = {"speedup": "latency", "train_step_speedup": "train_step"}  # sweep's flat names -> quantity
_DERIVED = (
    "paired_flop_ideal",
    "paired_baseline_latency_ms",
    "paired_baseline_train_step_ms",
    "paired_int8_baseline_latency_ms",
    "paired_int8_baseline_train_step_ms",
)
_TIMING = {"times_ms": "times_ms", "p10_ms": "p10_ms", "p90_ms": "p90_ms", "other_cpu": "other_cpu"}
_TIMING.update({f"{key}_train": f"train_{value}" for key, value in _TIMING.items()})
_HEAL_RECORD = ("teacher", "corpus", "corpus_fingerprint", "corpus_texts", "settings", "tokens", "tokens_per_s",
                "loss_before", "loss_after", "stages")
_SWEEP_HEAL = {"heal_dir": "dir", "heal_time_s": "time_s", "heal_tokens": "tokens", "heal_loss_before": "loss_before",
               "heal_loss_after": "loss_after", "heal_reused": "reused"}
_SEARCH = ("dir", "time_s", "target_speedup", "predicted_speedup", "estimate", "reused")
_TRAINING = ("settings", "data", "train_rows", "eval_rows", "train_loss", "log_history", "label_names", "auto_drop",
             "distill")
_SWEEP = ("recipe", "recipe_hash", "unit", "run_dir", "finetune_hash", "recipe_entry", "finetune_reused",
          "finetune_conditions", "finetune_flops_per_seq", "finetune_seq_len", "finetune_batch_size", "traceback")


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """The version-2 object of a version-1 record object (``data`` is not changed)."""
    out = {key: value for key, value in data.items() if key != "extra"}
    extra = dict(data.get("extra") or {})
    kind = data.get("kind")
    out["schema_version"] = 2
    _paired(extra, out)
    _timing(extra, out)
    if "runtime" in extra:
        out["export"] = {"runtime": extra.pop("runtime"), "eval_conditions": extra.pop("eval_conditions", None)}
    if kind == "heal":
        out["heal"] = {"time_s": extra.pop("heal_time_s", None), **_take(extra, _HEAL_RECORD)}
    elif any(key in extra for key in _SWEEP_HEAL):
        out["heal"] = {new: extra.pop(old, None) for old, new in _SWEEP_HEAL.items()}
    if "search_dir" in extra:
        out["search"] = {key: extra.pop(f"search_{key}", None) for key in _SEARCH}
    if kind in ("finetune", "sweep") and any(key in extra for key in _TRAINING):
        out["training"] = _take(extra, _TRAINING)
    if kind == "sweep" and any(key in extra for key in _SWEEP):
        out["sweep"] = _take(extra, _SWEEP)
    out["extra"] = extra
    return out


def _take(extra: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: extra.pop(key) for key in keys if key in extra}


def _timing(extra: dict[str, Any], out: dict[str, Any]) -> None:
    """A bench record's flat times, or a sweep record's ``bench`` table (times, settings, reference times)."""
    timing = {new: extra.pop(old) for old, new in _TIMING.items() if old in extra}
    bench = extra.pop("bench", None)
    if isinstance(bench, dict):
        timing.update({new: bench[old] for old, new in _TIMING.items() if old in bench})
        out["bench"] = {
            "settings": bench.get("settings") or {},
            "attention_choice": bench.get("attention_choice"),
            "reference_times_ms": bench.get("baseline_times_ms"),
            "reference_train_times_ms": bench.get("baseline_times_ms_train"),
        }
    if timing:
        out["timing"] = timing


def _paired(extra: dict[str, Any], out: dict[str, Any]) -> None:
    paired: dict[str, dict[str, Any]] = {}

    def put(reference: str, quantity: str, figures: Any) -> None:
        if isinstance(figures, dict) and figures.get("ratio") is not None:
            paired.setdefault(reference, {}).setdefault(quantity, _ratio(figures))

    for reference, value in (extra.pop("paired_vs", None) or {}).items():
        if isinstance(value, dict) and "ratio" in value:  # a sweep's flat paired_vs: the latency's figures
            put(reference, "latency", value)
        elif isinstance(value, dict):  # a bench's: quantity -> figures
            for quantity, name in _QUANTITIES.items():
                put(reference, name, value.get(quantity))
    for key, role in (("paired", "u_star"), ("paired_int8", "int8_reference")):
        nested = extra.pop(key, None)
        if isinstance(nested, dict) and nested.get("baseline"):  # a bench record's
            out[role] = nested["baseline"]
            for quantity, name in _QUANTITIES.items():
                if quantity in nested and not any(name in ratios for ratios in paired.values()):
                    put(nested["baseline"], name, nested[quantity])
        reference = extra.pop(f"{key}_baseline", None)
        if reference:  # a sweep record's flat keys
            out[role] = reference
            for flat, name in _FLAT.items():
                ratio = extra.pop(f"{key}_{flat}", None)
                low, high = extra.pop(f"{key}_{flat}_interval", None) or (None, None)
                stable = extra.pop(f"{key}_{flat}_stable", None)
                if ratio is not None and not (name == "train_step" and any(name in r for r in paired.values())):
                    put(reference, name, {"ratio": ratio, "low": low, "high": high, "stable": stable})
    for key in _DERIVED:
        extra.pop(key, None)
    out["paired"] = {reference: {"latency": None, "train_step": None, **ratios} for reference, ratios in paired.items()}


def _ratio(figures: dict[str, Any]) -> dict[str, Any]:
    keys = ("ratio", "low", "high", "stable", "rounds", "confidence", "tolerance", "other_cpu")
    return {key: figures.get(key) for key in keys}
