"""The trim vocabulary: what can be trimmed and how users say it. No torch, no model.

:class:`TrimRequest` is what a user asked for (the CLI's trim options, a recipe variant's trim
keys), :class:`TrimSpec` what a model has had removed (resolved indices and names, saved in the
model's config). :func:`resolve_spec` turns a request into a spec against a model's depth; the
parsers of :mod:`trimbert.spec.parse` do the syntax. This layer sits just above
:mod:`trimbert.errors`: every other layer may use it, it uses nothing of theirs.
"""

from trimbert.spec.parse import HeadSelection, parse_blocks, parse_ffn_width, parse_heads, parse_layernorm
from trimbert.spec.request import IMPORTANCE_RULES, TrimRequest, parse_auto
from trimbert.spec.resolve import resolve_heads, resolve_spec, validate_spec
from trimbert.spec.trimspec import (
    AFFINE,
    DYT,
    IDENTITY,
    LN_KINDS,
    LN_REPLACEMENTS,
    NORMALIZER_NAMES,
    SOFTMAX,
    TrimSpec,
    available_normalizers,
    check_normalizer,
    check_replacement,
    compact_indices,
    encoder_layernorms,
    ln_sort_key,
)

__all__ = [
    "AFFINE",
    "DYT",
    "HeadSelection",
    "IDENTITY",
    "IMPORTANCE_RULES",
    "LN_KINDS",
    "LN_REPLACEMENTS",
    "NORMALIZER_NAMES",
    "SOFTMAX",
    "TrimRequest",
    "TrimSpec",
    "available_normalizers",
    "check_normalizer",
    "check_replacement",
    "compact_indices",
    "encoder_layernorms",
    "ln_sort_key",
    "parse_auto",
    "parse_blocks",
    "parse_ffn_width",
    "parse_heads",
    "parse_layernorm",
    "resolve_heads",
    "resolve_spec",
    "validate_spec",
]
