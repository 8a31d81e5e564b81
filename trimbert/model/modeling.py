"""TrimBert config and model classes, registered with the transformers Auto classes.

A trimmed checkpoint has ``model_type: "trimbert"`` and its resolved trim spec under ``trim_spec``
in ``config.json``. Each TrimBert model class is the matching BERT class whose constructor applies
the spec's structure (so ``from_pretrained`` finds exactly the weights that were saved) and selects
the attention normalizer. After ``import trimbert``, ``AutoModel*.from_pretrained`` loads trimmed
checkpoints; without it, transformers does not know the ``trimbert`` model type and refuses them,
which is safer than silently loading a trimmed checkpoint into a full BERT with random FFNs.

This module is also the remote code of ``--portable`` checkpoints (copied with what it imports by
:mod:`trimbert.model.portable`), so it must work as a file of a folder of relative imports: importing it
registers the attention normalizers. A trim that plain BERT can describe is saved as ``model_type:
"bert"`` instead; :class:`TrimBertConfig` turns the config of such a checkpoint back into its own.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, BertConfig

from trimbert.model.attention import implementation_name, register_all
from trimbert.model.structure import (
    DYT_ALPHA_INIT,
    STOCK_SPEC_KEY,
    STOCK_WIDTH_KEY,
    AffineNorm,
    DynamicTanh,
    apply_structure,
)
from trimbert.spec.trimspec import TrimSpec


@strict
class TrimBertConfig(BertConfig):
    """A BERT config plus the resolved trim spec (``trim_spec``, a plain dict: see :class:`TrimSpec`)."""

    model_type = "trimbert"
    trim_spec: dict[str, Any] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        # The config of a trim saved as plain BERT (trimbert.model.portable) becomes a TrimBert config
        # again: its recorded spec is the trim spec and the original intermediate size comes back.
        recorded = kwargs.pop(STOCK_SPEC_KEY, None)
        original_width = kwargs.pop(STOCK_WIDTH_KEY, None)
        if self.trim_spec is None and recorded is not None:
            self.trim_spec = dict(recorded)
        if original_width is not None:
            self.intermediate_size = int(original_width)
        super().__post_init__(**kwargs)

    @property
    def spec(self) -> TrimSpec:
        return TrimSpec.from_dict(self.trim_spec)


class _TrimBertMixin:
    """Builds the BERT architecture, then removes what the trim spec removed.

    The config's ``num_hidden_layers`` is the number of blocks present (blocks dropped with
    ``drop_layers`` are never built); :func:`~trimbert.model.structure.apply_structure` then removes FFNs,
    rebuilds narrowed FFN layers (``ffn_width``) and pruned attentions (``heads``) and replaces stripped
    LayerNorms. The config keeps the original ``intermediate_size`` and ``num_attention_heads``.
    """

    config_class = TrimBertConfig

    def __init__(self, config: TrimBertConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        spec = config.spec
        apply_structure(self, spec)
        implementation = implementation_name(spec.attention)
        if implementation is not None:
            self.config._attn_implementation_internal = implementation

    def _init_weights(self, module):
        # Affine LayerNorm replacements start as the identity, DyT as tanh(alpha x) (only used for
        # weights a checkpoint lacks).
        if isinstance(module, AffineNorm):
            with torch.no_grad():
                module.weight.fill_(1.0)
                module.bias.zero_()
            return
        if isinstance(module, DynamicTanh):
            with torch.no_grad():
                module.alpha.fill_(DYT_ALPHA_INIT)
                module.weight.fill_(1.0)
                module.bias.zero_()
            return
        super()._init_weights(module)

    def _check_and_adjust_attn_implementation(self, attn_implementation, is_init_check=False, **kwargs):
        # The attention normalizer is part of a trimmed model's definition: keep it whatever is requested.
        implementation = implementation_name(TrimSpec.from_dict(self.config.trim_spec).attention)
        if implementation is not None:
            return implementation
        return super()._check_and_adjust_attn_implementation(attn_implementation, is_init_check, **kwargs)


# BERT class name -> Auto class that loads it.
AUTO_CLASSES = {
    "BertModel": "AutoModel",
    "BertForPreTraining": "AutoModelForPreTraining",
    "BertForMaskedLM": "AutoModelForMaskedLM",
    "BertLMHeadModel": "AutoModelForCausalLM",
    "BertForNextSentencePrediction": "AutoModelForNextSentencePrediction",
    "BertForSequenceClassification": "AutoModelForSequenceClassification",
    "BertForMultipleChoice": "AutoModelForMultipleChoice",
    "BertForTokenClassification": "AutoModelForTokenClassification",
    "BertForQuestionAnswering": "AutoModelForQuestionAnswering",
}

TRIMBERT_CLASSES: dict[str, type] = {}
for _bert_name in AUTO_CLASSES:
    _bert_class = getattr(transformers, _bert_name)
    _trim_name = "Trim" + _bert_name
    TRIMBERT_CLASSES[_bert_name] = type(
        _trim_name,
        (_TrimBertMixin, _bert_class),
        {
            "__module__": __name__,
            "__doc__": f"{_bert_name} with a trim spec applied (see trimbert.model.modeling).",
        },
    )
    globals()[_trim_name] = TRIMBERT_CLASSES[_bert_name]

TrimBertModel = TRIMBERT_CLASSES["BertModel"]
TrimBertForSequenceClassification = TRIMBERT_CLASSES["BertForSequenceClassification"]


def trimbert_class_for(model_class: type) -> type:
    """The TrimBert class matching a BERT (or TrimBert) model class."""
    for bert_name, trim_class in TRIMBERT_CLASSES.items():
        if model_class is trim_class or model_class is getattr(transformers, bert_name):
            return trim_class
    for bert_name, trim_class in TRIMBERT_CLASSES.items():
        if issubclass(model_class, getattr(transformers, bert_name)):
            return trim_class
    raise TypeError(f"no TrimBert class for {model_class.__name__}")


def bert_class_name(architecture: str) -> str:
    """``"TrimBertForSequenceClassification"`` -> ``"BertForSequenceClassification"``."""
    return architecture.removeprefix("Trim")


def register() -> None:
    """Register the attention normalizers and the TrimBert classes with transformers (idempotent)."""
    register_all()
    try:
        AutoConfig.register("trimbert", TrimBertConfig)
    except ValueError:
        return  # already registered
    for bert_name, auto_name in AUTO_CLASSES.items():
        getattr(transformers, auto_name).register(TrimBertConfig, TRIMBERT_CLASSES[bert_name])
    tokenizer_class = getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer
    try:
        transformers.AutoTokenizer.register(TrimBertConfig, fast_tokenizer_class=tokenizer_class)
    except (ValueError, TypeError):
        transformers.AutoTokenizer.register(TrimBertConfig, tokenizer_class)


# The attention normalizers are part of these classes: register them whenever this module is imported,
# also where it runs as a checkpoint's remote code without trimbert (trimbert.model.portable).
register_all()
