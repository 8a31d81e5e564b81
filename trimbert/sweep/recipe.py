"""Sweep recipes: many trimmed variants of one model, fine-tuned, evaluated and benchmarked in one go.

A recipe is a TOML file::

    seeds = [42, 43]                 # optional; default: [finetune] seed (42)

    [model]
    source = "minilm"                # hub id, local folder or alias (``model = "minilm"`` also works)

    [data]                           # the fields of trimbert.data.source.DataSource
    task = "sst2"                    # a GLUE task ...
    # data_dir = "../shared/glue"    # ... default: $TRIMBERT_GLUE_DIR, else the Hub
    # train = "reviews.csv"          # ... or your own files (relative paths: from the current folder)
    # validation = "reviews_dev.csv"
    # text_column = "text"
    # label_column = "label"

    [finetune]                       # the fields of trimbert.train.settings.FinetuneSettings
    epochs = 1
    lr = 1e-4
    max_length = 64
    max_train_samples = 2000

    [bench]                          # the fields of trimbert.measure.bench.BenchSettings
    batch_size = 8                   # (device: auto | cpu | cuda | cuda:N; default auto)
    seq_len = 64
    repeats = 10
    warmup = 2
    runtimes = ["pytorch", "onnxruntime", "onnxruntime-int8"]   # optional; default ["pytorch"]

    [export]                         # optional: the fields of trimbert.deploy.export.ExportSettings
    int8 = true                      # every variant is exported to ONNX and evaluated there too

    [[variants]]
    name = "baseline"                # untrimmed: no trim keys

    [[variants]]
    name = "full-trim"               # trim keys use the CLI syntax (see trimbert.spec)
    drop_ffn = "alternate"
    # heads = 8                      # attention heads kept: 8 in every block, or "0:4,3:8" per block
    attention = "relu"
    layernorm = "half"
    teacher = "baseline"             # optional: distil from another variant's fine-tuned run
    finetune = { lr = 2e-4 }         # optional per-variant overrides of [finetune]
    export = { int8 = true }         # optional per-variant overrides of [export]: exports this variant
                                     # (where only some variants have one, only those run in ONNX Runtime)
    heal = { corpus = "../shared/glue", steps = 600 }   # optional: heal the trim first, once for all
                                     # seeds (over an optional [heal] table; see trimbert.sweep.healing)
    # search = { speedup = 1.5 }     # instead of trim keys: search the trim (trimbert.sweep.searching)

The accepted trim keys are the fields of :class:`trimbert.spec.TrimRequest` (the CLI's trim options),
carried as one request to :func:`trimbert.train.finetune.finetune`. :func:`load_recipe` validates the
whole file before anything runs: unknown keys, wrong types, duplicate variant names, every trim spec
(resolved against the model's config, which is read but not loaded), teachers (unknown names,
cycles), the data (task name, data folder and files) and the settings. Errors name the file, the key
(``variants[2].drop_ffn``; array indices count from 0) and the problem.

``trimbert sweep RECIPE --out DIR`` (:func:`run_sweep`) runs every (variant, seed) *unit*: fine-tune
(``DIR/runs/<variant>-seed<k>/``, written atomically by ``finetune``), evaluate, then bench side by
side with the untrimmed fine-tuned baseline (or, when no baseline run is there, the untrimmed
pretrained model with the same head), and appends one record (``kind="sweep"``) per unit to
``DIR/results.jsonl`` with a single fsync'd write. Each record carries ``extra["recipe_hash"]``, a
fingerprint of its recipe entry (model, data, fine-tune and bench settings, the variant's table, its
teacher's fingerprint and the seed; not the order of the variants nor the other variants), and the
paired ratio ``extra["paired_speedup"]`` = baseline latency / variant latency measured in the same
run. With an export (``[export]``, a variant's ``export``, or an ONNX Runtime in ``bench.runtimes``)
the fine-tuned model is also exported to ``<run folder>/onnx`` and evaluated there, and each ONNX
Runtime gets its own record (variant ``NAME@ort``, ``NAME@ort-int8``) with the accuracy of the
exported model; every speed-up is against the untrimmed model at its fastest fp32 runtime of the
run, and int8 records also carry the speed-up over the untrimmed int8 model. At the end the report (``report.md``, ``results.csv``, ``results.json``, plots) is written into
``DIR``.
How a sweep resumes and scales out: :mod:`trimbert.sweep.run`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import sys
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trimbert.data.glue import resolve_glue_dir
from trimbert.data.source import DataSource
from trimbert.data.tasks import TASK_TYPES, get_task
from trimbert.deploy.export import ExportSettings
from trimbert.errors import TrimbertError
from trimbert.measure.bench import BenchSettings
from trimbert.measure.size import check_seq_len
from trimbert.model.checkpoint import load_config, resolve_source
from trimbert.settings import Settings
from trimbert.spec import TrimRequest, TrimSpec, parse_auto, resolve_spec
from trimbert.sweep.healing import check_defaults, check_heal, check_healable, resolved
from trimbert.sweep.searching import check_search
from trimbert.train.settings import DistillSettings, FinetuneSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_TOP_KEYS = ("model", "data", "finetune", "bench", "export", "heal", "seeds", "variants")
_MODEL_KEYS = ("source",)
_VARIANT_KEYS = ("name", *TrimRequest.keys(), "teacher", "distill", "finetune", "export", "heal", "search")


# --------------------------------------------------------------------------------------------------
# The recipe


@dataclass(frozen=True)
class Variant:
    """One ``[[variants]]`` entry, validated. ``spec`` is its trim resolved against the model."""

    name: str
    index: int  # position in the recipe
    trim: TrimRequest  # the trim keys given (in the CLI syntax)
    spec: TrimSpec
    teacher: str | None = None
    finetune: dict[str, Any] = field(default_factory=dict)  # overrides of [finetune]
    table: dict[str, Any] = field(default_factory=dict)  # the entry as written
    distill: dict[str, Any] = field(default_factory=dict)  # DistillSettings fields (with a teacher)
    auto_drop: int | None = None  # drop_ffn = "auto:N": the blocks are chosen when fine-tuning
    export: dict[str, Any] | None = None  # overrides of [export]; given: the variant is exported
    heal: dict[str, Any] | None = None  # corpus and HealSettings, over [heal]; given: healed before fine-tuning
    search: dict[str, Any] | None = None  # SearchSettings fields; given: the trim is searched (sweep/searching.py)

    @property
    def untrimmed(self) -> bool:
        """No trim at all: the architecture of the source model."""
        return self.spec.is_empty and self.auto_drop is None and self.search is None


@dataclass(frozen=True)
class Unit:
    """One (variant, seed) of a sweep: one run folder, one record."""

    variant: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.variant}-seed{self.seed}"


@dataclass
class Recipe:
    """A validated recipe (see the module docstring); build it with :func:`load_recipe`."""

    path: Path
    model: str
    data: DataSource  # relative paths made absolute
    data_written: dict[str, Any]  # the [data] table as written (for fingerprints)
    finetune: FinetuneSettings
    bench: BenchSettings
    export: ExportSettings | None  # the [export] table; None: export only where a variant or runtime asks
    seeds: tuple[int, ...]
    variants: list[Variant]
    num_layers: int
    task_name: str

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise TrimbertError(f"{self.path}: no variant named {name!r}")

    @property
    def names(self) -> list[str]:
        return [variant.name for variant in self.variants]

    @property
    def baseline(self) -> Variant | None:
        """The untrimmed variant the others are benched against: one named "baseline", else the first."""
        untrimmed = [v for v in self.variants if v.untrimmed]
        named = [v for v in untrimmed if v.name == "baseline"]
        return (named or untrimmed or [None])[0]

    def settings_for(self, variant: Variant, seed: int) -> FinetuneSettings:
        return self.finetune.updated(**variant.finetune, seed=seed)

    def export_for(self, variant: Variant) -> ExportSettings | None:
        """How ``variant`` is exported to ONNX, or None: [export] with the variant's own overrides.
        Without any export table, an ONNX Runtime in ``bench.runtimes`` exports every variant; where
        only some variants have an ``export`` table, only those are exported (and timed in ONNX
        Runtime). int8 and OpenVINO IR are exported whenever they are timed."""
        timed_int8 = any(runtime.endswith("-int8") for runtime in self.bench.runtimes)
        timed_openvino = any(runtime.startswith("openvino") for runtime in self.bench.runtimes)
        if self.export is None and variant.export is None:
            chosen_elsewhere = any(other.export is not None for other in self.variants)
            if self.bench.runtimes == ["pytorch"] or chosen_elsewhere:
                return None
        settings = (self.export or ExportSettings()).updated(**(variant.export or {}))
        settings = settings.updated(int8=True) if timed_int8 else settings
        return settings.updated(openvino=True) if timed_openvino else settings

    def order(self) -> list[Variant]:
        """The variants in run order: teachers before their students, the baseline first, else as written."""
        baseline = self.baseline
        remaining = {v.name: v for v in self.variants}
        ordered: list[Variant] = []
        while remaining:
            ready = [
                v for v in remaining.values() if v.teacher is None or v.teacher not in remaining
            ]  # acyclic: validated
            ready.sort(key=lambda v: (v is not baseline, v.index))
            ordered.append(ready[0])
            del remaining[ready[0].name]
        return ordered

    def units(self) -> list[Unit]:
        """Every unit in run order: seed by seed, variants in :meth:`order`."""
        order = self.order()
        return [Unit(variant.name, seed) for seed in self.seeds for variant in order]

    def entry(self, variant: Variant, seed: int, *, bench: bool = True) -> dict[str, Any]:
        """What a unit's result depends on, as plain JSON (see :meth:`fingerprint`): the model, the
        data, the fine-tune settings, the variant's table, its teacher's fine-tune, the seed and,
        with ``bench``, the bench settings. Not the variants' order, not the other variants."""
        teacher = self.variant(variant.teacher) if variant.teacher else None
        entry = {
            "model": self.model,
            "data": self.data_written,
            "finetune": self.settings_for(variant, seed).to_dict(),
            "variant": {k: v for k, v in variant.table.items() if k not in ("name", "teacher")},
            "teacher": self.fingerprint(teacher, seed, bench=False) if teacher else None,
            "seed": seed,
        }
        if variant.heal is not None:
            entry["heal"] = resolved(variant.heal)
        if bench:
            entry["bench"] = self.bench.to_dict()
            export = self.export_for(variant)
            if export is not None:
                entry["export"] = export.to_dict()
        return entry

    def fingerprint(self, variant: Variant, seed: int, *, bench: bool = True) -> str:
        """A short hash of :meth:`entry`: the record's ``extra["recipe_hash"]`` (``bench=False``: of the
        fine-tune alone, kept in the run folder, so that a bench-only change re-benches without
        fine-tuning again)."""
        text = json.dumps(
            self.entry(variant, seed, bench=bench), sort_keys=True, separators=(",", ":"), default=str
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Checker:
    """Raises TrimbertError naming the recipe file, the key and the problem."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> typing.NoReturn:
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        raise TrimbertError(where + problem)

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_type_name(value)}")
        return value

    def known(self, table: dict[str, Any], allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(f"{where}.{key}" if where else key, f"unknown key (known: {', '.join(allowed)}){hint}")

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {_type_name(value)}")
        return value

    def settings(self, cls: type[Settings], table: dict[str, Any], where: str, base: Settings | None = None):
        """A validated ``cls`` from ``table`` (over ``base``'s values); errors name ``where.key``."""
        self.known(table, cls.model_fields, where)
        values = {**(base.to_dict() if base is not None else {}), **table}
        return cls.build(values, name_of=lambda name: f"{self.path}: {where}.{name}")


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _strip_option(message: str) -> str:
    """``"--drop-ffn: block index 9 ..."`` -> ``"block index 9 ..."``."""
    return re.sub(r"^--[a-z-]+: ", "", message)


def load_recipe(path: str | Path, *, config: Any = None) -> Recipe:
    """Read and validate a recipe file; nothing is trained or loaded but the model's config.

    ``config`` (a transformers config) replaces reading the model's config, e.g. ``BertConfig()`` to
    check a recipe for ``bert-base-uncased`` offline. Raises :class:`TrimbertError` naming the file,
    the key and the problem.
    """
    path = Path(path)
    raw = _read_toml(path)
    check = _Checker(path)
    check.known(raw, _TOP_KEYS, "")
    model, config = _model_section(check, raw, config)
    data_written, data, task_name = _data_section(check, raw)
    finetune, seeds = _finetune_section(check, raw, config)
    bench = check.settings(BenchSettings, check.table(raw.get("bench", {}), "bench"), "bench")
    _check_seq_len(check, config, bench.seq_len, "bench.seq_len")
    if "pytorch" not in bench.runtimes:
        check.fail("bench.runtimes", "must include pytorch (the fine-tuned model's own record)")
    export = None
    if raw.get("export") is not None:
        export = check.settings(ExportSettings, check.table(raw["export"], "export"), "export")
    variants = _variants_section(check, raw, config, finetune, check_defaults(check, raw.get("heal")))
    return Recipe(
        path=path,
        model=model,
        data=data,
        data_written=data_written,
        finetune=finetune,
        bench=bench,
        export=export,
        seeds=seeds,
        variants=variants,
        num_layers=int(config.num_hidden_layers),
        task_name=task_name,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TrimbertError(f"recipe {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise TrimbertError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise TrimbertError(f"{path}: not UTF-8 text") from None


def _model_section(check: _Checker, raw: dict[str, Any], config: Any) -> tuple[str, Any]:
    if "model" not in raw:
        check.fail("model", 'missing: say which checkpoint to trim, e.g. [model] source = "minilm"')
    model_table = raw["model"] if isinstance(raw["model"], dict) else {"source": raw["model"]}
    check.known(model_table, _MODEL_KEYS, "model")
    if "source" not in model_table:
        check.fail("model.source", "missing: a hub id, a local folder or the alias minilm")
    model = check.string(model_table["source"], "model.source")
    if config is None:
        try:
            config = load_config(resolve_source(model))
        except TrimbertError as error:
            check.fail("model.source", str(error))
    return model, config


def _data_section(check: _Checker, raw: dict[str, Any]) -> tuple[dict[str, Any], DataSource, str]:
    if "data" not in raw:
        check.fail("data", 'missing: e.g. [data] task = "sst2"')
    data_table = check.table(raw["data"], "data")
    written = check.settings(DataSource, data_table, "data").to_dict()
    data_written = {key: value for key, value in written.items() if key in data_table}
    data, task_name = _check_data(check, DataSource.build(data_written))
    return data_written, data, task_name


def _finetune_section(
    check: _Checker, raw: dict[str, Any], config: Any
) -> tuple[FinetuneSettings, tuple[int, ...]]:
    finetune_table = check.table(raw.get("finetune", {}), "finetune")
    finetune = check.settings(FinetuneSettings, finetune_table, "finetune")
    _check_seq_len(check, config, finetune.max_length, "finetune.max_length")
    if "seeds" not in raw:
        return finetune, (finetune.seed,)
    if "seed" in finetune_table:
        check.fail("seeds", "give either seeds = [...] or [finetune] seed, not both")
    seeds = raw["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        check.fail("seeds", f"expected a non-empty array of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        check.fail("seeds", f"seed {next(s for s in seeds if seeds.count(s) > 1)} given more than once")
    return finetune, tuple(seeds)


def _variants_section(
    check: _Checker, raw: dict[str, Any], config: Any, finetune: FinetuneSettings, heal: dict[str, Any] | None
) -> list[Variant]:
    if "variants" not in raw:
        check.fail("variants", 'missing: add [[variants]] tables, e.g. name = "baseline"')
    entries = raw["variants"]
    if not isinstance(entries, list) or not entries:
        check.fail("variants", "expected a non-empty array of tables ([[variants]])")
    variants: list[Variant] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        variant = _variant(check, index, entry, config, finetune, heal)
        if variant.name in seen:
            check.fail(
                f"variants[{index}].name",
                f"duplicate variant name {variant.name!r} (also variants[{seen[variant.name]}])",
            )
        seen[variant.name] = index
        variants.append(variant)
    _check_teachers(check, variants)
    return variants


def _variant(
    check: _Checker, index: int, entry: Any, config: Any, finetune: FinetuneSettings, heal: dict[str, Any] | None
) -> Variant:
    where = f"variants[{index}]"
    entry = check.table(entry, where)
    check.known(entry, _VARIANT_KEYS, where)
    if "name" not in entry:
        check.fail(f"{where}.name", "missing: every variant needs a name")
    name = check.string(entry["name"], f"{where}.name")
    if not _NAME.match(name):
        check.fail(
            f"{where}.name",
            f"{name!r} is not a valid variant name (letters, digits, '.', '_', '+', '-'; used in folder names)",
        )
    request = TrimRequest(
        **{key: _trim_value(check, entry[key], f"{where}.{key}") for key in TrimRequest.keys() if key in entry}
    )
    spec, auto_drop = _resolve_variant(check, where, name, request, config)
    teacher = entry.get("teacher")
    if teacher is not None:
        teacher = check.string(teacher, f"{where}.teacher")
    distill: dict[str, Any] = {}
    if entry.get("distill") is not None:
        table = check.table(entry["distill"], f"{where}.distill")
        if teacher is None:
            check.fail(f"{where}.distill", 'needs a teacher (teacher = "<variant>")')
        check.settings(DistillSettings, table, f"{where}.distill")
        distill = dict(table)
    overrides = check.table(entry.get("finetune", {}), f"{where}.finetune")
    if "seed" in overrides:
        check.fail(f"{where}.finetune.seed", "set seeds for the whole recipe (seeds = [...]), not per variant")
    merged = check.settings(FinetuneSettings, overrides, f"{where}.finetune", base=finetune)
    _check_seq_len(check, config, merged.max_length, f"{where}.finetune.max_length")
    export = None
    if entry.get("export") is not None:
        export = check.table(entry["export"], f"{where}.export")
        check.settings(ExportSettings, export, f"{where}.export")
    healing = None
    if entry.get("heal") not in (None, False):
        check_healable(check, request, spec.is_empty and auto_drop is None, f"{where}.heal")
        healing = check_heal(check, entry["heal"], heal, f"{where}.heal")
    searching = check_search(check, entry.get("search"), request, healing, f"{where}.search")
    return Variant(
        name=name,
        index=index,
        trim=request,
        spec=spec,
        teacher=teacher,
        finetune=dict(overrides),
        table=json.loads(json.dumps(entry)),
        distill=distill,
        auto_drop=auto_drop,
        export=dict(export) if export is not None else None,
        heal=healing,
        search=searching,
    )


def _resolve_variant(
    check: _Checker, where: str, name: str, request: TrimRequest, config: Any
) -> tuple[TrimSpec, int | None]:
    """The variant's trim resolved against the model (``auto:N`` is chosen when fine-tuning), so that
    a bad spec fails before anything trains. Errors name the key."""
    num_layers = int(config.num_hidden_layers)
    spec = TrimSpec.from_dict(getattr(config, "trim_spec", None))
    auto_drop = None
    options = request.to_dict()
    for key, value in options.items():
        try:
            if key == "drop_ffn" and (auto_drop := _auto_count(value, num_layers, spec)):
                continue
            if key == "layernorm_replacement" and "layernorm" in options:
                continue  # resolved with the LayerNorms it replaces
            given = {key: value}
            if key == "layernorm" and "layernorm_replacement" in options:
                given["layernorm_replacement"] = options["layernorm_replacement"]
            spec = resolve_spec(
                num_layers, spec, intermediate_size=int(config.intermediate_size),
                num_attention_heads=int(config.num_attention_heads), **given,
            )
        except TrimbertError as error:
            check.fail(f"{where}.{key}", f"{_strip_option(str(error))} (variant {name!r})")
    return spec, auto_drop


def _auto_count(value: str, num_layers: int, spec: TrimSpec) -> int | None:
    """N of ``drop_ffn = "auto:N"`` (checked against the FFNs left), None for other selections."""
    count = parse_auto(value)
    if count is None:
        return None
    remaining = num_layers - len(spec.drop_ffn)
    if not 0 < count <= remaining:
        raise TrimbertError(f"auto:{count} needs 1 <= N <= {remaining} for a {num_layers}-block model")
    return count


def _trim_value(check: _Checker, value: Any, key: str) -> str:
    """A trim option as the CLI would get it; an array of block indices becomes ``"1,3,5"``."""
    if isinstance(value, int) and not isinstance(value, bool):  # ffn_width = 768
        return str(value)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return ",".join(str(v) for v in value)
    if not isinstance(value, str) or not value.strip():
        check.fail(key, f'expected a string in the CLI syntax (e.g. "alternate"), got {_type_name(value)}')
    return value


def _check_data(check: _Checker, data: DataSource) -> tuple[DataSource, str]:
    def absolute(value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser().absolute())

    if data.train is not None:
        if data.task is not None:
            check.fail("data", "give either task (a GLUE task) or train (your own files), not both")
        for key in ("text_column", "label_column"):
            if not getattr(data, key):
                check.fail(f"data.{key}", "missing: your own train file needs text_column and label_column")
        if data.data_dir is not None:
            check.fail("data.data_dir", "is for GLUE tasks; with train, give validation instead")
        for key in ("train", "validation"):
            value = getattr(data, key)
            if value is not None and not Path(value).expanduser().is_file():
                check.fail(f"data.{key}", f"file {value} does not exist (relative to {Path.cwd()})")
        if data.task_type is not None and data.task_type not in TASK_TYPES:
            check.fail(
                "data.task_type", f"unknown task type {data.task_type!r}; use {' or '.join(TASK_TYPES)}"
            )
        data = data.updated(train=absolute(data.train), validation=absolute(data.validation))
        return data, Path(data.train).stem
    if data.task is None:
        check.fail("data.task", "missing: a GLUE task (sst2, mnli, ...) or train = your own file")
    for key in ("validation", "text_column", "text_pair_column", "label_column", "task_type", "label_names"):
        if getattr(data, key) is not None:
            check.fail(f"data.{key}", "is for your own files (train = ...), not for a GLUE task")
    try:
        info = get_task(data.task)
    except TrimbertError as error:
        check.fail("data.task", str(error))
    key = "data.data_dir" if data.data_dir is not None else "data.data_dir (from $TRIMBERT_GLUE_DIR)"
    try:
        folder = resolve_glue_dir(info, data.data_dir)
    except TrimbertError as error:
        check.fail(key, str(error))
    if folder is not None:
        for _, file_name in info.tsv.files:
            if not (folder / file_name).is_file():
                check.fail(key, f"{folder / file_name} does not exist (task {info.name} needs it)")
    return data.updated(data_dir=absolute(data.data_dir)), info.name


def _check_seq_len(check: _Checker, config: Any, length: int, key: str) -> None:
    try:
        check_seq_len(config, length)
    except TrimbertError as error:
        check.fail(key, str(error))


def _check_teachers(check: _Checker, variants: list[Variant]) -> None:
    names = {v.name: v for v in variants}
    for variant in variants:
        if variant.teacher is None:
            continue
        where = f"variants[{variant.index}].teacher"
        if variant.teacher == variant.name:
            check.fail(where, f"variant {variant.name!r} cannot be its own teacher")
        if variant.teacher not in names:
            close = difflib.get_close_matches(variant.teacher, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            check.fail(where, f"unknown variant {variant.teacher!r} (variants: {', '.join(names)}){hint}")
    for variant in variants:
        chain = [variant.name]
        current = variant
        while current.teacher is not None:
            current = names[current.teacher]
            if current.name in chain:
                cycle = " -> ".join([*chain[chain.index(current.name) :], current.name])
                check.fail(f"variants[{variant.index}].teacher", f"teacher cycle: {cycle}")
            chain.append(current.name)
