"""trimbert: trim BERT checkpoints the TrimBERT way and measure what it bought and cost.

``import trimbert`` registers the attention normalizers and the TrimBert model classes with
transformers, so trimmed checkpoints load through the Auto classes. The public API:
:func:`load`, :func:`load_tokenizer`, :func:`save`, :func:`load_onnx` (an ONNX export that predicts), :func:`trim`, :class:`TrimRequest`,
:class:`TrimSpec`, :func:`resolve_spec`, :class:`TrimBertConfig`, :class:`TrimbertError`.
The package's layers are described in the README (Architecture) and enforced by ``make lint``.
"""

from importlib.metadata import version

from trimbert.deploy.runtime import load_onnx
from trimbert.errors import TrimbertError
from trimbert.model.checkpoint import load, load_tokenizer, save
from trimbert.model.modeling import TrimBertConfig
from trimbert.model.modeling import register as _register
from trimbert.model.trim import trim
from trimbert.spec import TrimRequest, TrimSpec, resolve_spec

__version__ = version("trimbert")

_register()

__all__ = [
    "TrimBertConfig",
    "TrimRequest",
    "TrimSpec",
    "TrimbertError",
    "__version__",
    "load",
    "load_onnx",
    "load_tokenizer",
    "resolve_spec",
    "save",
    "trim",
]
