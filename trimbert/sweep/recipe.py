"""Sweep recipes: many trimmed variants of one model, fine-tuned, evaluated and benchmarked in one go.

A recipe is a TOML file::

    seeds = [42, 43]                 # optional; default: [finetune] seed (42)
    # base = "other.toml"            # optional: start from another recipe (trimbert.sweep.compose)

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

    [[variants]]
    name = "compressed-1.5x"         # trimbert compress of another variant's fine-tuned model
    compress = { speedup = 1.5, runtime = "onnx-int8", from = "baseline" }   # (trimbert.sweep.compressing)

The tables are the settings models the CLI uses, nested (:mod:`trimbert.sweep.schema`); the trim keys
are the fields of :class:`trimbert.spec.TrimRequest` (the CLI's trim options), carried as one request
to :func:`trimbert.train.finetune.finetune`. :func:`load_recipe` validates the whole file before
anything runs: unknown keys, wrong types, duplicate variant names, teachers (unknown names, cycles),
then every trim spec (resolved against the model's config, which is read but not loaded), the
lengths, the data (:meth:`DataSource.check`) and the heal corpora. Errors name the file, the key
(``variants[2].drop_ffn``; array indices count from 0) and the problem.

``trimbert sweep RECIPE --out DIR`` (:func:`trimbert.sweep.run.run_sweep`) runs every (variant, seed)
*unit*: fine-tune (``DIR/runs/<variant>-seed<k>/``, written atomically by ``finetune``), evaluate,
then bench side by side with the untrimmed fine-tuned baseline (or, when no baseline run is there,
the untrimmed pretrained model with the same head), and appends one record (``kind="sweep"``) per
unit to ``DIR/results.jsonl`` with a single fsync'd write. Each record carries
``record.sweep.recipe_hash``, the fingerprint of its unit's resolved settings
(:mod:`trimbert.sweep.fingerprint`), and the paired speed-up ``record.speedup()`` = reference
latency / variant latency measured side by side in the same run. With an export (``[export]``, a variant's
``export``, or an ONNX Runtime in ``bench.runtimes``) the fine-tuned model is also exported to ``<run
folder>/onnx`` and evaluated there, and each ONNX Runtime gets its own record (variant ``NAME@ort``,
``NAME@ort-int8``) with the accuracy of the exported model; every speed-up is against the untrimmed
model at its fastest fp32 runtime of the run, and int8 records also carry the speed-up over the
untrimmed int8 model. At the end the report (``report.md``, ``results.csv``, ``results.json``, plots)
is written into ``DIR``. How a sweep resumes and scales out: :mod:`trimbert.sweep.run`.
"""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from trimbert.compress.settings import CompressSettings
from trimbert.data.source import CorpusSource, DataSource
from trimbert.deploy.export import ExportSettings
from trimbert.errors import TrimbertError
from trimbert.measure.bench import BenchSettings
from trimbert.measure.size import check_seq_len
from trimbert.model.checkpoint import load_config, resolve_source
from trimbert.spec import TrimRequest, TrimSpec, parse_auto, resolve_spec
from trimbert.sweep import fingerprint as fingerprints
from trimbert.sweep.compose import apply_sets, compose, dumps
from trimbert.sweep.schema import RecipeTables, describe
from trimbert.train.settings import FinetuneSettings

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
    search: dict[str, Any] | None = None  # every SearchSettings field; given: the trim is searched (sweep/searching.py)
    compress: CompressSettings | None = None  # given: another variant's model compressed (sweep/compressing.py)
    compress_from: str | None = None  # that variant, as written (default: the baseline)

    @property
    def untrimmed(self) -> bool:
        """No trim at all: the architecture of the source model."""
        return self.spec.is_empty and self.auto_drop is None and self.search is None and self.compress is None


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
    data_written: DataSource  # the [data] table as written (for fingerprints)
    finetune: FinetuneSettings
    bench: BenchSettings
    export: ExportSettings | None  # the [export] table; None: export only where a variant or runtime asks
    seeds: tuple[int, ...]
    variants: list[Variant]
    num_layers: int
    task_name: str
    files: list[Path] = field(default_factory=list)  # the recipe, then every base it read
    sets: tuple[str, ...] = ()  # the --set overrides applied
    tables: dict[str, Any] = field(default_factory=dict)  # the composed tables, as written

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

    def compress_source(self, variant: Variant) -> str:
        """The variant whose fine-tuned model a compress variant compresses."""
        return variant.compress_from or self.baseline.name  # a baseline exists: checked by load_recipe

    def needs(self, variant: Variant) -> list[str]:
        """The variants whose runs ``variant`` starts from: its teacher, or the variant it compresses."""
        if variant.compress is not None:
            return [self.compress_source(variant)]
        return [variant.teacher] if variant.teacher is not None else []

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
        """The variants in run order: the ones they start from first (``graphlib``), then the baseline,
        else as written."""
        baseline = self.baseline
        sorter = graphlib.TopologicalSorter({v.name: self.needs(v) for v in self.variants})
        sorter.prepare()  # acyclic: validated
        ready: list[Variant] = []
        ordered: list[Variant] = []
        while sorter.is_active():
            ready += [self.variant(name) for name in sorter.get_ready()]
            ready.sort(key=lambda v: (v is not baseline, v.index))
            ordered.append(ready.pop(0))
            sorter.done(ordered[-1].name)
        return ordered

    def units(self) -> list[Unit]:
        """Every unit in run order: seed by seed, variants in :meth:`order`."""
        order = self.order()
        return [Unit(variant.name, seed) for seed in self.seeds for variant in order]

    def entry(self, variant: Variant, seed: int, *, bench: bool = True) -> dict[str, Any]:
        """What a unit's result depends on, as plain JSON (:func:`trimbert.sweep.fingerprint.entry`)."""
        return fingerprints.entry(self, variant, seed, bench=bench)

    def fingerprint(self, variant: Variant, seed: int, *, bench: bool = True) -> str:
        """A short hash of :meth:`entry`: the record's ``sweep.recipe_hash`` (``bench=False``: of the
        fine-tune alone, kept in the run folder, so that a bench-only change re-benches without
        fine-tuning again)."""
        return fingerprints.fingerprint(self, variant, seed, bench=bench)

    def fingerprints(self, variant: Variant, seed: int, *, bench: bool = True) -> tuple[str, ...]:
        """The fingerprints a finished unit may carry and still be up to date: this one and the one
        trimbert recorded before the recipe models."""
        legacy = fingerprints.legacy_fingerprint(self, variant, seed, bench=bench)
        return (self.fingerprint(variant, seed, bench=bench), *([legacy] if legacy else []))

    @property
    def text(self) -> str:
        """The recipe to keep beside its results: the file itself, or, composed from a base or changed
        by ``--set``, the composed tables as TOML."""
        if len(self.files) <= 1 and not self.sets:
            return self.path.read_text(encoding="utf-8")
        header = f"{self.path}, composed from {', '.join(map(str, self.files))}" + (
            f", with --set {' --set '.join(self.sets)}" if self.sets else ""
        )
        return dumps(self.tables, header=header)


def _strip_option(message: str) -> str:
    """``"--drop-ffn: block index 9 ..."`` -> ``"block index 9 ..."``."""
    return re.sub(r"^--[a-z-]+: ", "", message)


def load_recipe(path: str | Path, *, config: Any = None, sets: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read and validate a recipe file (with its bases and the ``--set`` overrides ``sets``); nothing is
    trained or loaded but the model's config.

    ``config`` (a transformers config) replaces reading the model's config, e.g. ``BertConfig()`` to
    check a recipe for ``bert-base-uncased`` offline. Raises :class:`TrimbertError` naming the file,
    the key and the problem.
    """
    path = Path(path)
    raw, files = compose(path)
    raw = apply_sets(raw, sets) if sets else raw

    def fail(key: str, problem: str) -> NoReturn:
        raise TrimbertError(f"{path}: {key}: {problem}")

    try:
        tables = RecipeTables.model_validate(raw)
    except ValidationError as error:
        raise TrimbertError(f"{path}: {describe(error)}") from None
    model = tables.model.source
    if config is None:
        try:
            config = load_config(resolve_source(model))
        except TrimbertError as error:
            fail("model.source", str(error))
    data = tables.data.check(where=lambda name: f"{path}: data" + (f".{name}" if name else ""), word=str)
    for length, key in ((tables.bench.seq_len, "bench.seq_len"), (tables.finetune.max_length, "finetune.max_length")):
        _check_seq_len(fail, config, length, key)
    variants = [_variant(path, fail, index, table, raw["variants"][index], config, tables) for index, table in enumerate(tables.variants)]
    recipe = Recipe(
        path=path,
        model=model,
        data=data,
        data_written=tables.data,
        finetune=tables.finetune,
        bench=tables.bench,
        export=tables.export,
        seeds=tuple(tables.seeds) if tables.seeds is not None else (tables.finetune.seed,),
        variants=variants,
        num_layers=int(config.num_hidden_layers),
        task_name=data.name,
        files=files,
        sets=tuple(sets),
        tables=raw,
    )
    for variant in variants:
        if variant.compress is not None and variant.compress_from is None and recipe.baseline is None:
            fail(f"variants[{variant.index}].compress.from", 'missing: no untrimmed variant to compress: say which (from = "<variant>")')
    return recipe


def _variant(path: Path, fail: Any, index: int, table: Any, written: dict[str, Any], config: Any, tables: RecipeTables) -> Variant:
    """The validated ``table`` resolved against the model: its trim, its lengths, its heal corpus."""
    where = f"variants[{index}]"
    request = table.request
    spec, auto_drop = _resolve_variant(fail, where, table.name, request, config)
    merged = tables.finetune.updated(**table.finetune)
    _check_seq_len(fail, config, merged.max_length, f"{where}.finetune.max_length")
    heal = table.heal
    if heal is not None:
        if spec.is_empty and auto_drop is None:
            fail(f"{where}.heal", "an untrimmed variant has nothing to heal (add trim keys, or remove heal)")
        corpus = CorpusSource.build({k: heal.get(k) for k in CorpusSource.model_fields if k in heal})
        corpus = corpus.check(where=lambda name: f"{path}: {where}.heal.{name}")
        heal = {**heal, "corpus": corpus.corpus}
    return Variant(
        name=table.name,
        index=index,
        trim=request,
        spec=spec,
        teacher=table.teacher,
        finetune=dict(table.finetune),
        table=written,
        distill=dict(written.get("distill") or {}),
        auto_drop=auto_drop,
        export=dict(table.export) if table.export is not None else None,
        heal=heal,
        search=table.search.to_dict() if table.search is not None else None,
        compress=table.compress_settings,
        compress_from=(table.compress or {}).get("from"),
    )


def _resolve_variant(fail: Any, where: str, name: str, request: TrimRequest, config: Any) -> tuple[TrimSpec, int | None]:
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
            fail(f"{where}.{key}", f"{_strip_option(str(error))} (variant {name!r})")
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


def _check_seq_len(fail: Any, config: Any, length: int, key: str) -> None:
    try:
        check_seq_len(config, length)
    except TrimbertError as error:
        fail(key, str(error))
