"""Saved checkpoints that load without trimbert: plain BERT where BERT can describe the trim, else remote code.

A trim that stock BERT can describe (every remaining FFN at one width, whole blocks dropped; softmax
attention, no dropped FFN, every LayerNorm kept, every attention head kept) is written as ``model_type: "bert"`` with the
``Bert...`` architecture, ``num_hidden_layers`` = the blocks present and ``intermediate_size`` = the
width: ``transformers`` loads it alone, with the same weight names and outputs. The trim is recorded
under ``trimbert_trim_spec`` (and the width before narrowing under ``trimbert_intermediate_size``),
keys BERT's config keeps as plain attributes and only trimbert reads: :func:`from_stock` (used by
:func:`trimbert.model.checkpoint.load_config`) turns such a config back into the
:class:`~trimbert.model.modeling.TrimBertConfig` it was saved from, so ``trimbert.load`` gives the same
TrimBert model as before saving (original depth and block numbering included) and further trims
compose with the recorded one.

Any other trim keeps ``model_type: "trimbert"``; with ``portable`` (``--portable``) the folder also
gets its modeling code and an ``auto_map`` (the Hub convention for custom architectures), so that
``AutoModel*.from_pretrained(folder, trust_remote_code=True)`` loads it where trimbert is not
installed. The code is generated from trimbert's own sources (:func:`remote_code_files`): the modeling
module and every trimbert module it imports, flattened into one folder with relative imports.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from trimbert.model.modeling import AUTO_CLASSES, TrimBertConfig, bert_class_name
from trimbert.model.structure import STOCK_SPEC_KEY, STOCK_WIDTH_KEY
from trimbert.spec.trimspec import SOFTMAX, TrimSpec

STOCK_FORMAT, REMOTE_FORMAT, TRIMBERT_FORMAT = "bert", "remote-code", "trimbert"
REMOTE_ENTRY = "trimbert.model.modeling"  # the module auto_map points into (as modeling.py)
_PACKAGE = "trimbert"
# "from trimbert.spec.trimspec import" -> "from .trimspec import" (group 1: indent, 2: dotted tail)
_FROM_TRIMBERT = re.compile(r"^([ \t]*)from[ \t]+trimbert((?:\.\w+)+)[ \t]+import\b", re.MULTILINE)
# The relative imports transformers' dynamic-module loader follows (transformers.dynamic_module_utils).
_LOADER_RELATIVE = re.compile(r"^\s*(?:from\s+\.(\S+)\s+import|import\s+\.(\S+)\s*$)", re.MULTILINE)


def is_stock(spec: TrimSpec, present: int) -> bool:
    """Whether stock BERT describes ``spec`` on a model with ``present`` blocks: softmax attention, no
    dropped FFN, no stripped LayerNorm, no pruned attention head (BERT's config has one head count
    and cannot say which heads were kept), and either no narrowed FFN or every remaining one at one width."""
    if spec.drop_ffn or spec.layernorm or spec.heads or spec.attention != SOFTMAX:
        return False
    widths = spec.ffn_widths
    kept = spec.kept_layers(spec.original_num_layers(present))
    return not widths or (set(widths) == set(kept) and len(set(widths.values())) == 1)


def stock_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """The plain-BERT ``config.json`` of a saved TrimBert config (a dict), or None if the trim needs TrimBert."""
    spec = TrimSpec.from_dict(config.get("trim_spec"))
    if not is_stock(spec, int(config["num_hidden_layers"])):
        return None
    stock = {key: value for key, value in config.items() if key not in ("trim_spec", "auto_map")}
    stock["model_type"] = "bert"
    stock["architectures"] = [bert_class_name(name) for name in config.get("architectures") or ["BertModel"]]
    stock[STOCK_SPEC_KEY] = spec.to_dict()
    if spec.ffn_width:
        stock[STOCK_WIDTH_KEY] = int(config["intermediate_size"])
        stock["intermediate_size"] = spec.ffn_width[0][1]
    return stock


def from_stock(config: PretrainedConfig) -> PretrainedConfig:
    """A plain BERT config that records a trim (:data:`STOCK_SPEC_KEY`) as the TrimBert config it was
    saved from (the recorded spec, the original intermediate size); any other config unchanged."""
    if config.model_type != "bert" or getattr(config, STOCK_SPEC_KEY, None) is None:
        return config
    data = config.to_dict()
    data.pop("model_type", None)
    return TrimBertConfig.from_dict(data)


def auto_map() -> dict[str, str]:
    """``config.json``'s ``auto_map``: every Auto class -> its TrimBert class in ``modeling.py``."""
    entry = REMOTE_ENTRY.rpartition(".")[2]
    mapping = {"AutoConfig": f"{entry}.{TrimBertConfig.__name__}"}
    mapping.update({auto: f"{entry}.Trim{bert}" for bert, auto in AUTO_CLASSES.items()})
    return mapping


def _module_source(module: str) -> str:
    found = importlib.util.find_spec(module)
    if found is None or not found.origin or not found.origin.endswith(".py"):
        raise RuntimeError(f"remote code: no Python source for {module}")
    return Path(found.origin).read_text(encoding="utf-8")


def _trimbert_imports(source: str, module: str, *, relative_ok: bool = False) -> set[str]:
    """The trimbert modules ``source`` imports (``from trimbert.x.y import ...`` only; relative imports
    are refused unless ``relative_ok``: trimbert's own sources have none)."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == _PACKAGE for alias in node.names):
            raise RuntimeError(
                f"remote code: {module} uses 'import trimbert...'; use 'from trimbert.x import'"
            )
        if isinstance(node, ast.ImportFrom) and node.level and not relative_ok:
            raise RuntimeError(f"remote code: {module} has a relative import")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == _PACKAGE:
            if node.module == _PACKAGE:
                raise RuntimeError(f"remote code: {module} imports the trimbert package itself")
            imported.add(node.module)
    return imported


def _relative(source: str, module: str) -> str:
    """``source`` with each ``from trimbert.a.b import`` made ``from .b import`` (checked afterwards)."""
    rewritten = _FROM_TRIMBERT.sub(
        lambda match: f"{match.group(1)}from .{match.group(2).rpartition('.')[2]} import", source
    )
    if _trimbert_imports(rewritten, module, relative_ok=True):
        raise RuntimeError(f"remote code: an import of trimbert in {module} could not be made relative")
    header = f"# Generated by trimbert {version(_PACKAGE)} from {module} (remote code of a --portable checkpoint).\n"
    return header + rewritten


def remote_code_files() -> dict[str, str]:
    """File name -> source of the remote code: :data:`REMOTE_ENTRY` as ``modeling.py`` and every trimbert
    module it imports, transitively, each as ``<last name>.py`` (a package's ``__init__`` included:
    ``trimbert.spec`` becomes ``spec.py``), imports rewritten to relative ones."""
    origins: dict[str, str] = {}
    files: dict[str, str] = {}
    pending = [REMOTE_ENTRY]
    while pending:
        module = pending.pop()
        name = module.rpartition(".")[2] + ".py"
        if name in origins:
            if origins[name] != module:
                raise RuntimeError(f"remote code: {origins[name]} and {module} would both be {name}")
            continue
        origins[name] = module
        source = _module_source(module)
        pending.extend(sorted(_trimbert_imports(source, module)))
        files[name] = _relative(source, module)
    for name, text in files.items():  # what transformers' loader will look for must be there
        for match in _LOADER_RELATIVE.finditer(text):
            needed = (match.group(1) or match.group(2)) + ".py"
            if needed not in files:
                raise RuntimeError(f"remote code: {name} imports {needed}, which is not generated")
    return dict(sorted(files.items()))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def saved_format(folder: str | Path) -> str:
    """How a saved folder loads: :data:`STOCK_FORMAT` (transformers alone), :data:`REMOTE_FORMAT`
    (``trust_remote_code=True``) or :data:`TRIMBERT_FORMAT` (after ``import trimbert``)."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "trimbert":
        return STOCK_FORMAT
    return REMOTE_FORMAT if "auto_map" in config else TRIMBERT_FORMAT


def make_portable(folder: str | Path, *, remote_code: bool = False) -> str:
    """Rewrite a checkpoint ``save_pretrained`` just wrote: a trim stock BERT can describe becomes plain
    BERT; any other trim gets its modeling code and ``auto_map`` if ``remote_code``. Returns the format
    (:func:`saved_format`)."""
    folder = Path(folder)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("model_type") == "trimbert":
        stock = stock_config(config)
        if stock is not None:
            _write_json(config_file, stock)
        elif remote_code:
            for name, text in remote_code_files().items():
                (folder / name).write_text(text, encoding="utf-8")
            _write_json(config_file, {**config, "auto_map": auto_map()})
    return saved_format(folder)
