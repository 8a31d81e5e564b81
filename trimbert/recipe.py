"""Sweep recipes: many trimmed variants of one model, fine-tuned, evaluated and benchmarked in one go.

A recipe is a TOML file::

    seeds = [42, 43]                 # optional; default: [finetune] seed (42)

    [model]
    source = "minilm"                # hub id, local folder or alias (``model = "minilm"`` also works)

    [data]                           # the fields of trimbert.train.DataSource
    task = "sst2"                    # a GLUE task ...
    # data_dir = "../shared/glue"    # ... default: $TRIMBERT_GLUE_DIR, else the Hub
    # train = "reviews.csv"          # ... or your own files (relative paths: from the current folder)
    # validation = "reviews_dev.csv"
    # text_column = "text"
    # label_column = "label"

    [finetune]                       # the fields of trimbert.train.FinetuneSettings
    epochs = 1
    lr = 1e-4
    max_length = 64
    max_train_samples = 2000

    [bench]                          # the fields of trimbert.bench.BenchSettings
    batch_size = 8                   # (device: auto | cpu | cuda | cuda:N; default auto)
    seq_len = 64
    repeats = 10
    warmup = 2

    [[variants]]
    name = "baseline"                # untrimmed: no trim keys

    [[variants]]
    name = "full-trim"               # trim keys use the CLI syntax (see trimbert.spec)
    drop_ffn = "alternate"
    attention = "relu"
    layernorm = "half"
    teacher = "baseline"             # optional: distil from another variant's fine-tuned run
    finetune = { lr = 2e-4 }         # optional per-variant overrides of [finetune]

The accepted trim keys are :data:`TRIM_KEYS`; they are passed through to
:func:`trimbert.train.finetune`. :func:`load_recipe` validates the whole file before anything runs:
unknown keys, wrong types, duplicate variant names, every trim spec (resolved against the model's
config, which is read but not loaded), teachers (unknown names, cycles), the data (task name, data
folder and files) and the settings. Errors name the file, the key (``variants[2].drop_ffn``; array
indices count from 0) and the problem.

``trimbert sweep RECIPE --out DIR`` (:func:`run_sweep`) runs every (variant, seed) *unit*: fine-tune
(``DIR/runs/<variant>-seed<k>/``, written atomically by ``finetune``), evaluate, then bench side by
side with the untrimmed fine-tuned baseline (or, when no baseline run is there, the untrimmed
pretrained model with the same head), and appends one record (``kind="sweep"``) per unit to
``DIR/results.jsonl`` with a single fsync'd write. Each record carries ``extra["recipe_hash"]``, a
fingerprint of its recipe entry (model, data, fine-tune and bench settings, the variant's table, its
teacher's fingerprint and the seed; not the order of the variants nor the other variants), and the
paired ratio ``extra["paired_speedup"]`` = baseline latency / variant latency measured in the same
run. At the end the report (``report.md``, ``results.csv``, ``results.json``, plots) is written into
``DIR``.

**Resume.** Rerunning the same command skips the units whose latest record is ok and has the same
fingerprint; new, failed and changed units run again (their old run folder is replaced). A kill at
any moment loses nothing finished: records are only appended, a torn last line is ignored (and cut
off before the next append), and a unit killed during its bench reuses its finished fine-tune (so
does a unit whose bench settings alone changed: it is benchmarked again, not fine-tuned again).
A failing unit is recorded with ``status="failed"`` and its error; the sweep goes on and the command
exits with 1.

**Scale-out.** ``--shard I/N`` runs the I-th of N disjoint shares of the units (:func:`partition`:
deterministic, balanced, independent of the order of the variants; a teacher and its students stay
in one share). Give every shard its own ``--out``, e.g. in a Slurm job array::

    trimbert sweep recipes/trimbert-paper.toml --shard ${SLURM_ARRAY_TASK_ID}/8 \
        --out runs/paper/shard-${SLURM_ARRAY_TASK_ID}
    trimbert report runs/paper/shard-*          # merges the shards into one table

Each fine-tune runs under the HF Trainer, so a sweep can use several GPUs of one node with
``torchrun --nproc_per_node 4 -m trimbert sweep RECIPE --out DIR`` (or ``accelerate launch -m
trimbert sweep ...``): every process walks the same plan and trains together; only rank 0 writes run
folders, benchmarks, appends records and writes the report. To run single variants by hand, use
``trimbert finetune ... --variant NAME`` under ``torchrun``/``accelerate launch`` with the same options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import inspect
import json
import os
import re
import shutil
import sys
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from trimbert.bench import BenchSettings
from trimbert.errors import TrimbertError
from trimbert.pipeline import TRIM_OPTIONS
from trimbert.records import Record, append_jsonl_atomic, read_jsonl, write_json_atomic
from trimbert.spec import TrimSpec
from trimbert.train import DataSource, FinetuneSettings

# The trim keys a variant may have (those of trimbert.pipeline.TrimOptions, the CLI's trim
# options); passed to finetune(**trim) and validated with trimbert.spec.resolve_spec.
TRIM_KEYS: tuple[str, ...] = TRIM_OPTIONS

RESULTS_FILE = "results.jsonl"
RUNS_DIR = "runs"
RECIPE_COPY = "recipe.toml"
STATES = ("pending", "running", "done", "skipped", "failed")
_ENTRY_MARKER = ".sweep-entry.json"  # in a run folder: the fingerprint it was fine-tuned for
_LOCK_FILE = ".sweep.lock"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
_BASELINE_KEY = "__paired_baseline__"

_TOP_KEYS = ("model", "data", "finetune", "bench", "seeds", "variants")
_MODEL_KEYS = ("source",)
_DATA_KEYS = tuple(f.name for f in dataclasses.fields(DataSource))
_FINETUNE_KEYS = tuple(f.name for f in dataclasses.fields(FinetuneSettings))
_BENCH_KEYS = tuple(f.name for f in dataclasses.fields(BenchSettings))
_VARIANT_KEYS = ("name", *TRIM_KEYS, "teacher", "distill", "finetune")

EventCallback = Callable[[str, str, str], None]  # (unit name, state, detail)


# --------------------------------------------------------------------------------------------------
# The recipe


@dataclass(frozen=True)
class Variant:
    """One ``[[variants]]`` entry, validated. ``spec`` is its trim resolved against the model."""

    name: str
    index: int  # position in the recipe
    trim: dict[str, Any]  # the trim keys given, as written (TRIM_KEYS order)
    spec: TrimSpec
    teacher: str | None = None
    finetune: dict[str, Any] = field(default_factory=dict)  # overrides of [finetune]
    table: dict[str, Any] = field(default_factory=dict)  # the entry as written
    distill: dict[str, Any] = field(default_factory=dict)  # DistillSettings fields (with a teacher)
    auto_drop: int | None = None  # drop_ffn = "auto:N": the blocks are chosen when fine-tuning

    @property
    def untrimmed(self) -> bool:
        """No trim at all: the architecture of the source model."""
        return self.spec.is_empty and self.auto_drop is None


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
        return replace(self.finetune, **variant.finetune, seed=seed)

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
            "finetune": asdict(self.settings_for(variant, seed)),
            "variant": {k: v for k, v in variant.table.items() if k not in ("name", "teacher")},
            "teacher": self.fingerprint(teacher, seed, bench=False) if teacher else None,
            "seed": seed,
        }
        if bench:
            entry["bench"] = asdict(self.bench)
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
                self.fail(
                    f"{where}.{key}" if where else key,
                    f"unknown key (known: {', '.join(allowed)}){hint}",
                )

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {_type_name(value)}")
        return value

    def typed(self, cls: type, table: dict[str, Any], where: str) -> dict[str, Any]:
        """Check ``table``'s values against the field types of dataclass ``cls``; ints become floats."""
        hints = typing.get_type_hints(cls)
        checked = {}
        for key, value in table.items():
            ok, converted, wanted = _check_type(hints[key], value)
            if not ok:
                self.fail(f"{where}.{key}", f"expected {wanted}, got {_type_name(value)} {value!r}")
            checked[key] = converted
        return checked


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _check_type(hint: Any, value: Any) -> tuple[bool, Any, str]:
    """(accepted, converted value, words for the wanted type)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        hint = options[0] if len(options) == 1 else hint
    if hint is bool:
        return isinstance(value, bool), value, "true or false"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value, "an integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value, "a number"
    if hint is str:
        return isinstance(value, str), value, "a string"
    return True, value, str(hint)  # pragma: no cover - no other field types today


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
    if not path.is_file():
        raise TrimbertError(f"recipe {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise TrimbertError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise TrimbertError(f"{path}: not UTF-8 text") from None
    check = _Checker(path)
    check.known(raw, _TOP_KEYS, "")

    # [model]
    if "model" not in raw:
        check.fail("model", 'missing: say which checkpoint to trim, e.g. [model] source = "minilm"')
    model_table = raw["model"] if isinstance(raw["model"], dict) else {"source": raw["model"]}
    check.known(model_table, _MODEL_KEYS, "model")
    if "source" not in model_table:
        check.fail("model.source", "missing: a hub id, a local folder or the alias minilm")
    model = check.string(model_table["source"], "model.source")
    if config is None:
        from trimbert.checkpoint import load_config, resolve_source

        try:
            config = load_config(resolve_source(model))
        except TrimbertError as error:
            check.fail("model.source", str(error))
    num_layers = int(config.num_hidden_layers)
    applied = TrimSpec.from_dict(getattr(config, "trim_spec", None))

    # [data]
    if "data" not in raw:
        check.fail("data", 'missing: e.g. [data] task = "sst2"')
    data_table = check.table(raw["data"], "data")
    check.known(data_table, _DATA_KEYS, "data")
    data_written = check.typed(DataSource, data_table, "data")
    data, task_name = _check_data(check, data_written)

    # [finetune], seeds, [bench]
    finetune_table = check.table(raw.get("finetune", {}), "finetune")
    check.known(finetune_table, _FINETUNE_KEYS, "finetune")
    finetune = FinetuneSettings(**check.typed(FinetuneSettings, finetune_table, "finetune"))
    _check_finetune(check, finetune, config, "finetune")
    if "seeds" in raw:
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
        seeds = tuple(seeds)
    else:
        seeds = (finetune.seed,)
    bench_table = check.table(raw.get("bench", {}), "bench")
    check.known(bench_table, _BENCH_KEYS, "bench")
    bench = BenchSettings(**{"device": "auto", **check.typed(BenchSettings, bench_table, "bench")})
    _check_bench(check, bench, config)

    # [[variants]]
    if "variants" not in raw:
        check.fail("variants", 'missing: add [[variants]] tables, e.g. name = "baseline"')
    entries = raw["variants"]
    if not isinstance(entries, list) or not entries:
        check.fail("variants", "expected a non-empty array of tables ([[variants]])")
    variants: list[Variant] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
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
        if name in seen:
            check.fail(f"{where}.name", f"duplicate variant name {name!r} (also variants[{seen[name]}])")
        seen[name] = index
        trim = {key: _trim_value(check, entry[key], f"{where}.{key}") for key in TRIM_KEYS if key in entry}
        spec, auto_drop = applied, None
        for key in TRIM_KEYS:
            if key in trim:
                try:
                    if key == "drop_ffn" and (auto_drop := _auto_count(trim[key], num_layers, spec)):
                        continue  # chosen by analysis when fine-tuning
                    spec = _resolve(config, spec, key, trim[key])
                except TrimbertError as error:
                    check.fail(f"{where}.{key}", f"{_strip_option(str(error))} (variant {name!r})")
        teacher = entry.get("teacher")
        if teacher is not None:
            teacher = check.string(teacher, f"{where}.teacher")
        distill = _check_distill(check, entry.get("distill"), teacher, where)
        overrides_table = check.table(entry.get("finetune", {}), f"{where}.finetune")
        check.known(overrides_table, [k for k in _FINETUNE_KEYS if k != "seed"], f"{where}.finetune")
        overrides = check.typed(FinetuneSettings, overrides_table, f"{where}.finetune")
        _check_finetune(check, replace(finetune, **overrides), config, f"{where}.finetune")
        variants.append(
            Variant(
                name=name,
                index=index,
                trim=trim,
                spec=spec,
                teacher=teacher,
                finetune=overrides,
                table=json.loads(json.dumps(entry)),
                distill=distill,
                auto_drop=auto_drop,
            )
        )
    _check_teachers(check, variants)
    return Recipe(
        path=path,
        model=model,
        data=data,
        data_written=data_written,
        finetune=finetune,
        bench=bench,
        seeds=seeds,
        variants=variants,
        num_layers=num_layers,
        task_name=task_name,
    )


def _resolve(config: Any, spec: TrimSpec, key: str, value: Any) -> TrimSpec:
    from trimbert.spec import resolve_spec

    return resolve_spec(
        int(config.num_hidden_layers), spec, intermediate_size=int(config.intermediate_size), **{key: value}
    )


def _auto_count(value: str, num_layers: int, spec: TrimSpec) -> int | None:
    """N of ``drop_ffn = "auto:N"`` (checked against the FFNs left), None for other selections."""
    try:
        from trimbert.analyze import parse_auto
    except ImportError:  # pragma: no cover - a trimbert without FFN analysis
        return None
    count = parse_auto(value)
    if count is None:
        return None
    remaining = num_layers - len(spec.drop_ffn)
    if not 0 < count <= remaining:
        raise TrimbertError(f"auto:{count} needs 1 <= N <= {remaining} for a {num_layers}-block model")
    return count


def _check_distill(check: _Checker, table: Any, teacher: str | None, where: str) -> dict[str, Any]:
    """The ``distill`` table of a variant: DistillSettings fields, only with a teacher."""
    if table is None:
        return {}
    table = check.table(table, f"{where}.distill")
    if teacher is None:
        check.fail(f"{where}.distill", 'needs a teacher (teacher = "<variant>")')
    from trimbert import train

    settings_class = getattr(train, "DistillSettings", None)
    if settings_class is None:
        check.fail(f"{where}.distill", "this trimbert has no distillation settings")
    check.known(table, [f.name for f in dataclasses.fields(settings_class)], f"{where}.distill")
    values = check.typed(settings_class, table, f"{where}.distill")
    try:
        settings_class(**values).check()
    except TrimbertError as error:
        check.fail(f"{where}.distill", _strip_option(str(error)))
    return values


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


def _check_data(check: _Checker, table: dict[str, Any]) -> tuple[DataSource, str]:
    from trimbert.data import TASK_TYPES, get_task, resolve_glue_dir

    def absolute(value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser().absolute())

    data = DataSource(**table)
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
        data = replace(data, train=absolute(data.train), validation=absolute(data.validation))
        return data, Path(data.train).stem
    if data.task is None:
        check.fail("data.task", "missing: a GLUE task (sst2, mnli, ...) or train = your own file")
    for key in ("validation", "text_column", "text_pair_column", "label_column", "task_type"):
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
    return replace(data, data_dir=absolute(data.data_dir)), info.name


def _check_finetune(check: _Checker, settings: FinetuneSettings, config: Any, where: str) -> None:
    from trimbert.measure import check_seq_len

    try:
        settings.check()
    except TrimbertError as error:
        check.fail(where, _strip_option(str(error)).replace("--", "").replace("-", "_"))
    try:
        check_seq_len(config, settings.max_length)
    except TrimbertError as error:
        check.fail(f"{where}.max_length", str(error))


def _check_bench(check: _Checker, bench: BenchSettings, config: Any) -> None:
    from trimbert.measure import check_seq_len

    if bench.mode not in ("infer", "train"):
        check.fail("bench.mode", f"expected infer or train, got {bench.mode!r}")
    for key, low in (("batch_size", 1), ("repeats", 1), ("warmup", 0), ("threads", 1)):
        value = getattr(bench, key)
        if value is not None and value < low:
            check.fail(f"bench.{key}", f"must be at least {low}, got {value}")
    if not _DEVICE.match(bench.device):
        check.fail("bench.device", f"expected auto, cpu, cuda, cuda:N or mps, got {bench.device!r}")
    try:
        check_seq_len(config, bench.seq_len)
    except TrimbertError as error:
        check.fail("bench.seq_len", str(error))


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


# --------------------------------------------------------------------------------------------------
# Shards


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"2/4"`` -> ``(2, 4)``: the 2nd of 4 shares (1-based)."""
    if text is None or isinstance(text, tuple):
        shard = text
    else:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match:
            raise TrimbertError(f"--shard: expected I/N such as 1/4, got {text!r}")
        shard = (int(match.group(1)), int(match.group(2)))
    if shard is not None and not 1 <= shard[0] <= shard[1]:
        raise TrimbertError(f"--shard: need 1 <= I <= N, got {shard[0]}/{shard[1]}")
    return shard


def partition(recipe: Recipe, count: int) -> list[list[Unit]]:
    """Split the recipe's units into ``count`` disjoint shares that together hold every unit.

    A teacher and its students (per seed) form one group that is never split. Groups go, biggest
    first (ties by their sorted names, then seed), to the share with the fewest units so far (ties:
    the lowest). Depends only on the variants' names, teachers and the seeds, not on their order.
    Each share keeps the recipe's run order.
    """
    if count < 1:
        raise TrimbertError(f"--shard: N must be at least 1, got {count}")
    parent = {v.name: v.name for v in recipe.variants}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    for variant in recipe.variants:
        if variant.teacher is not None:
            a, b = root(variant.name), root(variant.teacher)
            parent[max(a, b)] = min(a, b)
    components: dict[str, list[str]] = {}
    for variant in recipe.variants:
        components.setdefault(root(variant.name), []).append(variant.name)
    groups = [(sorted(members), seed) for members in components.values() for seed in recipe.seeds]
    groups.sort(key=lambda group: (-len(group[0]), group[0], group[1]))
    shares: list[set[Unit]] = [set() for _ in range(count)]
    for members, seed in groups:
        target = min(range(count), key=lambda i: (len(shares[i]), i))
        shares[target].update(Unit(name, seed) for name in members)
    order = recipe.units()
    return [[unit for unit in order if unit in share] for share in shares]


# --------------------------------------------------------------------------------------------------
# Planning


@dataclass
class PlannedUnit:
    unit: Unit
    fingerprint: str
    action: str  # "run" | "skip"
    reason: str  # "new", "up to date", "recipe changed", "failed before", "forced", ...


def _latest_records(out: Path) -> dict[tuple[str, int | None], Record]:
    path = out / RESULTS_FILE
    if not path.is_file():
        return {}
    try:
        rows = read_jsonl(path)
    except ValueError as error:
        raise TrimbertError(f"corrupt line in {path}: {error}") from None
    latest: dict[tuple[str, int | None], Record] = {}
    for row in rows:
        if isinstance(row, dict) and row.get("kind") == "sweep" and "variant" in row:
            try:
                record = Record.from_dict(row)
            except TypeError:
                continue
            latest[(record.variant, record.seed)] = record
    return latest


def _selected_units(recipe: Recipe, only: Iterable[str] | str | None, shard: Any) -> list[Unit]:
    shard = parse_shard(shard)
    units = partition(recipe, shard[1])[shard[0] - 1] if shard else recipe.units()
    if only is None:
        return units
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    unknown = [n for n in names if n not in recipe.names]
    if unknown:
        raise TrimbertError(
            f"--only: unknown variant(s) {', '.join(unknown)} (variants of {recipe.path}: {', '.join(recipe.names)})"
        )
    wanted = set(names)
    for name in names:  # their teachers too (they are skipped when up to date)
        teacher = recipe.variant(name).teacher
        while teacher is not None:
            wanted.add(teacher)
            teacher = recipe.variant(teacher).teacher
    return [unit for unit in units if unit.variant in wanted]


def plan_sweep(
    recipe: Recipe,
    out: str | Path,
    *,
    only: Iterable[str] | str | None = None,
    shard: str | tuple[int, int] | None = None,
    force: bool = False,
) -> list[PlannedUnit]:
    """What :func:`run_sweep` would do with each selected unit, in run order (reads ``out`` only)."""
    out = Path(out)
    latest = _latest_records(out)
    plans = []
    for unit in _selected_units(recipe, only, shard):
        fingerprint = recipe.fingerprint(recipe.variant(unit.variant), unit.seed)
        record = latest.get((unit.variant, unit.seed))
        if record is None:
            action, reason = "run", "new"
        elif force:
            action, reason = "run", "forced"
        elif record.status != "ok":
            action, reason = "run", "failed before"
        elif record.extra.get("recipe_hash") != fingerprint:
            action, reason = "run", "recipe changed"
        else:
            action, reason = "skip", "up to date"
        plans.append(PlannedUnit(unit, fingerprint, action, reason))
    # A student that runs needs its teacher's run folder: rerun a finished teacher whose folder is gone.
    by_unit = {plan.unit: plan for plan in plans}
    for plan in plans:
        teacher = recipe.variant(plan.unit.variant).teacher
        if plan.action == "run" and teacher is not None:
            teacher_plan = by_unit.get(Unit(teacher, plan.unit.seed))
            folder = out / RUNS_DIR / Unit(teacher, plan.unit.seed).name
            if (
                teacher_plan is not None
                and teacher_plan.action == "skip"
                and not (folder / "metrics.json").is_file()
            ):
                teacher_plan.action, teacher_plan.reason = "run", "run folder missing (needed as a teacher)"
    return plans


# --------------------------------------------------------------------------------------------------
# Running


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: unit names by outcome, the records it wrote, the report."""

    out: Path
    plan: list[PlannedUnit]
    records: list[Record] = field(default_factory=list)  # appended by this run
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    table: Any = None  # trimbert.report.ReportTable
    report: dict[str, Path] = field(default_factory=dict)
    report_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def is_main_process() -> bool:
    """False in the non-zero ranks of a ``torchrun`` / ``accelerate launch`` job."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def run_sweep(
    recipe: Recipe | str | Path,
    out: str | Path,
    *,
    only: Iterable[str] | str | None = None,
    shard: str | tuple[int, int] | None = None,
    force: bool = False,
    on_event: EventCallback | None = None,
) -> SweepResult:
    """Run (or resume) a sweep into ``out``; see the module docstring.

    ``only`` limits it to some variants (plus their teachers), ``shard`` (``"I/N"``) to the I-th of
    N shares (:func:`partition`), ``force`` reruns units that are up to date. ``on_event(unit, state,
    detail)`` is told about every unit's progress (states: :data:`STATES`). Failing units are
    recorded and the sweep goes on; :class:`KeyboardInterrupt` stops it (finished units are kept).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    _check_teacher_support(recipe)
    _selected_units(recipe, only, shard)  # a bad --only or --shard fails before anything is written
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrimbertError(f"--out {out} exists and is not a folder")
    emit = on_event or (lambda unit, state, detail="": None)
    main = is_main_process()
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out) if main else contextlib.nullcontext():
        if main:
            _cut_torn_tail(out / RESULTS_FILE)
            _copy_recipe(recipe, out)
        plan = plan_sweep(recipe, out, only=only, shard=shard, force=force)
        result = SweepResult(out=out, plan=plan)
        for item in plan:
            emit(item.unit.name, "pending" if item.action == "run" else "skipped", item.reason)
        failed_now: set[Unit] = set()
        for item in plan:
            unit = item.unit
            if item.action == "skip":
                result.skipped.append(unit.name)
                continue
            variant = recipe.variant(unit.variant)
            teacher_unit = Unit(variant.teacher, unit.seed) if variant.teacher else None
            if teacher_unit is not None and teacher_unit in failed_now:
                record = _failed_record(
                    recipe,
                    variant,
                    unit,
                    item.fingerprint,
                    out,
                    f"teacher {variant.teacher!r} failed; not run",
                )
            else:
                emit(unit.name, "running", "starting")
                record = _run_unit(recipe, variant, unit, item.fingerprint, out, emit, main)
            if record is None:  # a non-zero rank: rank 0 writes the results
                continue
            if main:
                append_jsonl_atomic(out / RESULTS_FILE, record.to_dict())
            result.records.append(record)
            if record.status == "ok":
                result.done.append(unit.name)
                emit(unit.name, "done", _done_detail(record))
            else:
                failed_now.add(unit)
                result.failed.append(unit.name)
                emit(unit.name, "failed", record.error or "failed")
        if main:
            _write_sweep_report(recipe, out, result)
    return result


def _check_teacher_support(recipe: Recipe) -> None:
    from trimbert import train

    parameters = inspect.signature(train.finetune).parameters
    if "teacher" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    for variant in recipe.variants:
        if variant.teacher is not None:
            raise TrimbertError(
                f"{recipe.path}: variants[{variant.index}].teacher: this trimbert's finetune cannot "
                "distil from a teacher yet"
            )


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """One sweep process per output folder (a second one would interleave the same units)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = out / _LOCK_FILE
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TrimbertError(f"another sweep is writing to {out}; give each shard its own --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _cut_torn_tail(path: Path) -> None:
    """Remove a partial last line left by a kill, so the next append starts on a fresh line."""
    if not path.is_file():
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data or data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)
        handle.flush()
        os.fsync(handle.fileno())


def _copy_recipe(recipe: Recipe, out: Path) -> None:
    """Keep the recipe beside its results (replaced atomically on every run)."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{RECIPE_COPY}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(recipe.path.read_bytes())
        os.replace(tmp, out / RECIPE_COPY)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _one_line(error: BaseException) -> str:
    text = " ".join((str(error).strip() or type(error).__name__).split())
    if isinstance(error, TrimbertError):
        return text
    return f"{type(error).__name__}: {text}" if str(error).strip() else type(error).__name__


def _base_fields(recipe: Recipe, variant: Variant, unit: Unit, fingerprint: str, run_dir: Path) -> dict:
    return {
        "recipe": str(recipe.path),
        "recipe_hash": fingerprint,
        "finetune_hash": recipe.fingerprint(variant, unit.seed, bench=False),
        "recipe_entry": recipe.entry(variant, unit.seed),
        "unit": unit.name,
        "run_dir": str(run_dir),
    }


def _failed_record(
    recipe: Recipe,
    variant: Variant,
    unit: Unit,
    fingerprint: str,
    out: Path,
    error: str,
    trace: str | None = None,
) -> Record:
    from trimbert.records import conditions

    run_dir = out / RUNS_DIR / unit.name
    extra = _base_fields(recipe, variant, unit, fingerprint, run_dir)
    if trace:
        extra["traceback"] = trace[-4000:]
    return Record(
        kind="sweep",
        variant=variant.name,
        model=recipe.model,
        trim=variant.spec.to_dict() if not variant.spec.is_empty else {},
        trim_summary=variant.spec.summary(),
        task=recipe.task_name,
        seed=unit.seed,
        status="failed",
        error=error,
        conditions=conditions(),
        extra=extra,
    )


def _remove_leftovers(run_dir: Path) -> None:
    """Staging folders a killed fine-tune left beside ``run_dir`` (``.<name>.tmp-*`` / ``.old-*``)."""
    for leftover in run_dir.parent.glob(f".{run_dir.name}.*"):
        if leftover.is_dir() and re.search(r"\.(tmp|old)-", leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)


def _finished_finetune(run_dir: Path, finetune_fingerprint: str) -> Record | None:
    """The fine-tune record of ``run_dir`` if it was fine-tuned for this recipe entry (the kill hit the
    bench, or only the bench settings changed)."""
    from trimbert.train import METRICS_FILE

    try:
        marker = json.loads((run_dir / _ENTRY_MARKER).read_text())
        if marker.get("finetune_hash") != finetune_fingerprint:
            return None
        return Record.from_dict(json.loads((run_dir / METRICS_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _run_unit(
    recipe: Recipe,
    variant: Variant,
    unit: Unit,
    fingerprint: str,
    out: Path,
    emit: EventCallback,
    main: bool,
) -> Record | None:
    from trimbert import train

    run_dir = out / RUNS_DIR / unit.name
    finetune_fingerprint = recipe.fingerprint(variant, unit.seed, bench=False)
    try:
        # Every rank of a torchrun job decides alike (same files), so they train together or not at all.
        tuned = _finished_finetune(run_dir, finetune_fingerprint)
        reused = tuned is not None
        if reused and not main:
            return None
        if tuned is None:
            if main:
                _remove_leftovers(run_dir)
            options: dict[str, Any] = dict(variant.trim)
            if variant.teacher is not None:
                options["teacher"] = str(out / RUNS_DIR / Unit(variant.teacher, unit.seed).name)
                if variant.distill:
                    options["distill"] = train.DistillSettings(**variant.distill)
            emit(unit.name, "running", "fine-tuning")
            tuned = train.finetune(
                recipe.model,
                recipe.data,
                run_dir,
                settings=recipe.settings_for(variant, unit.seed),
                variant=variant.name,
                force=True,
                progress=False,
                **options,
            )
            if not main:
                return None
            marker = {"finetune_hash": finetune_fingerprint, "recipe_hash": fingerprint, "unit": unit.name}
            write_json_atomic(run_dir / _ENTRY_MARKER, marker)
        return _bench_unit(recipe, variant, unit, fingerprint, out, run_dir, tuned, reused, emit)
    except Exception as error:  # recorded; KeyboardInterrupt and SystemExit stop the sweep
        if not main:
            raise
        return _failed_record(
            recipe, variant, unit, fingerprint, out, _one_line(error), traceback.format_exc()
        )


def _bench_settings(settings: BenchSettings) -> BenchSettings:
    if settings.device != "auto":
        return settings
    import torch

    return replace(settings, device="cuda" if torch.cuda.is_available() else "cpu")


def _paired_baseline(recipe: Recipe, variant: Variant, unit: Unit, out: Path, num_labels: int):
    """(model, source, label) of the untrimmed model to bench beside ``variant``, or None for the baseline."""
    from trimbert import checkpoint
    from trimbert.train import METRICS_FILE

    baseline = recipe.baseline
    if baseline is not None and baseline.name == variant.name:
        return None
    if baseline is not None:
        for seed in (unit.seed, *recipe.seeds):
            folder = out / RUNS_DIR / Unit(baseline.name, seed).name
            if (folder / METRICS_FILE).is_file():
                try:
                    return checkpoint.load(folder), str(folder), baseline.name
                except TrimbertError:
                    continue
    model = checkpoint.load(
        recipe.model, head="sequence-classification", config_overrides={"num_labels": num_labels}
    )
    return model, checkpoint.resolve_source(recipe.model), f"pretrained {recipe.model}"


def _bench_unit(
    recipe: Recipe,
    variant: Variant,
    unit: Unit,
    fingerprint: str,
    out: Path,
    run_dir: Path,
    tuned: Record,
    reused: bool,
    emit: EventCallback,
) -> Record:
    from trimbert import bench as bench_module
    from trimbert import checkpoint

    settings = _bench_settings(recipe.bench)
    emit(unit.name, "running", "benchmarking")
    model = checkpoint.load(run_dir)
    models = {variant.name: (model, str(run_dir))}
    paired = _paired_baseline(recipe, variant, unit, out, model.config.num_labels)
    if paired is not None:
        models[_BASELINE_KEY] = (paired[0], paired[1])

    def on_step(name: str, step: int, total: int) -> None:
        emit(unit.name, "running", f"benchmarking {step}/{total}")

    report = bench_module.bench_models(
        models, settings, baseline=_BASELINE_KEY if paired is not None else None, on_step=on_step
    )
    measured = next(r for r in report.records if r.variant == variant.name)

    record = Record.from_dict(tuned.to_dict())
    record.kind = "sweep"
    record.variant = variant.name
    record.path = str(run_dir)
    record.seed = unit.seed
    for key in (
        "latency_ms",
        "throughput",
        "train_step_ms",
        "peak_memory_bytes",
        "flops_per_seq",
        "seq_len",
        "batch_size",
    ):
        setattr(record, key, getattr(measured, key))
    record.disk_bytes = tuned.disk_bytes if tuned.disk_bytes is not None else measured.disk_bytes
    record.conditions = measured.conditions
    extra = dict(tuned.extra)
    extra.update(
        {
            "finetune_conditions": tuned.conditions,
            "finetune_flops_per_seq": tuned.flops_per_seq,
            "finetune_seq_len": tuned.seq_len,
            "finetune_batch_size": tuned.batch_size,
            "finetune_reused": reused,
            "bench": {
                "settings": asdict(settings),
                "times_ms": measured.extra.get("times_ms"),
                "p10_ms": measured.extra.get("p10_ms"),
                "p90_ms": measured.extra.get("p90_ms"),
                "attention_choice": report.attention_choice.get(variant.name),
            },
            **_base_fields(recipe, variant, unit, fingerprint, run_dir),
        }
    )
    if paired is not None:
        base = next(r for r in report.records if r.variant == _BASELINE_KEY)
        extra["paired_baseline"] = paired[2]
        extra["paired_flop_ideal"] = base.flops_per_seq / measured.flops_per_seq
        if measured.latency_ms and base.latency_ms is not None:
            extra["paired_speedup"] = base.latency_ms / measured.latency_ms
            extra["paired_baseline_latency_ms"] = base.latency_ms
        if measured.train_step_ms and base.train_step_ms is not None:
            extra["paired_train_step_speedup"] = base.train_step_ms / measured.train_step_ms
            extra["paired_baseline_train_step_ms"] = base.train_step_ms
    record.extra = extra
    return record


def _done_detail(record: Record) -> str:
    parts = []
    if record.main_value is not None:
        parts.append(f"{record.main_metric} {record.main_value:.3f}")
    if record.latency_ms is not None:
        parts.append(f"{record.latency_ms:.1f} ms")
    speedup = record.extra.get("paired_speedup")
    if speedup is not None:
        parts.append(f"{speedup:.2f}× vs {record.extra.get('paired_baseline')}")
    return ", ".join(parts)


def _write_sweep_report(recipe: Recipe, out: Path, result: SweepResult) -> None:
    from trimbert.report import build_rows, collect_records, write_report

    try:
        result.table = build_rows(collect_records([out]), task=recipe.task_name)
        result.report = write_report(result.table, out)
    except TrimbertError as error:
        result.report_error = str(error)


# --------------------------------------------------------------------------------------------------
# The progress display


class SweepDisplay:
    """One rich display for a sweep: a status table of the units and an overall progress bar.

    Pass it as ``on_event`` to :func:`run_sweep` inside ``with SweepDisplay(console):``. On a console
    that is not a terminal (logs, CI) it prints one line per finished, failed or skipped unit instead.
    """

    _STYLES = {"pending": "dim", "running": "bold cyan", "done": "green", "skipped": "blue", "failed": "red"}

    def __init__(self, console: Any, title: str = "sweep", *, enabled: bool = True) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.title = title
        self.enabled = enabled and is_main_process()
        self.units: dict[str, dict[str, Any]] = {}
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        )
        self.task = self.progress.add_task(title, total=0)
        self.live = None

    def __enter__(self) -> SweepDisplay:
        if self.enabled and self.console.is_terminal:
            from rich.live import Live

            self.live = Live(
                get_renderable=self._render, console=self.console, refresh_per_second=4, transient=False
            )
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.stop()

    def __call__(self, unit: str, state: str, detail: str = "") -> None:
        entry = self.units.setdefault(unit, {"state": "pending", "detail": "", "start": None, "end": None})
        if state == "running" and entry["start"] is None:
            entry["start"] = time.monotonic()
        if state in ("done", "failed") and entry["start"] is not None:
            entry["end"] = time.monotonic()
        entry["state"], entry["detail"] = state, detail
        finished = sum(e["state"] in ("done", "failed", "skipped") for e in self.units.values())
        self.progress.update(self.task, total=len(self.units), completed=finished)
        if self.live is None and self.enabled and state in ("done", "failed", "skipped"):
            took = f" ({entry['end'] - entry['start']:.0f} s)" if entry["end"] and entry["start"] else ""
            self.console.print(f"{state:>7} {unit}{took}: {detail}", highlight=False, markup=False)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(self.title), expand=False)
        for column in ("unit", "status", "time", "detail"):
            table.add_column(column, justify="right" if column == "time" else "left")
        now = time.monotonic()
        for unit, entry in self.units.items():
            start, end = entry["start"], entry["end"]
            took = "" if start is None else f"{(end or now) - start:.0f} s"
            table.add_row(
                Text(unit),
                Text(entry["state"], style=self._STYLES.get(entry["state"], "")),
                took,
                Text(entry["detail"]),
            )
        return Group(table, self.progress)
