"""trimbert: trim BERT checkpoints the TrimBERT way and measure what it bought and cost.

``import trimbert`` registers the attention normalizers and the TrimBert model classes with
transformers, so trimmed checkpoints load through the Auto classes.
"""

__version__ = "0.1.0"

from trimbert.checkpoint import load, load_tokenizer, save  # noqa: E402
from trimbert.errors import TrimbertError  # noqa: E402
from trimbert.modeling import TrimBertConfig  # noqa: E402
from trimbert.modeling import register as _register
from trimbert.spec import TrimSpec, resolve_spec  # noqa: E402
from trimbert.surgery import trim  # noqa: E402

_register()

__all__ = [
    "TrimBertConfig",
    "TrimSpec",
    "TrimbertError",
    "load",
    "load_tokenizer",
    "resolve_spec",
    "save",
    "trim",
]
