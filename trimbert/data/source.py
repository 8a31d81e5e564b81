"""DataSource: where a command's labelled data comes from (a GLUE task or the user's own files); CorpusSource: its unlabeled text.

Declared once (:mod:`trimbert.core.settings`): the fields are the data options of ``finetune`` and
``analyze`` (``--task``, ``--data-dir``, ``--train``, ...) and the keys of a recipe's ``[data]`` table.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pydantic import Field

from trimbert.core.settings import Settings
from trimbert.data.files import load_user_data
from trimbert.data.glue import load_glue, resolve_glue_dir
from trimbert.data.tasks import TASK_TYPES, get_task
from trimbert.errors import TrimbertError

Naming = Callable[[str], str]  # a setting's name -> how a message names it


class DataSource(Settings):
    """Where the data comes from: a GLUE task (local ``data_dir``, ``$TRIMBERT_GLUE_DIR`` or the Hub),
    or the user's own train/validation files with named columns."""

    task: str | None = Field(None, description="GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli.")
    data_dir: str | None = Field(
        None, description="A glue_data/ folder or one task folder of it (default: $TRIMBERT_GLUE_DIR, else the Hub)."
    )
    train: str | None = Field(None, description="Your training file (.csv, .tsv or .jsonl).")
    validation: str | None = Field(None, description="Your validation file (default: 10% of --train).")
    text_column: str | None = Field(None, description="Column with the (first) text.")
    text_pair_column: str | None = Field(None, description="Column with the second text.")
    label_column: str | None = Field(None, description="Column with the label or score.")
    task_type: str | None = Field(
        None, description="classification | regression (default: guessed from the labels)."
    )
    label_names: str | None = Field(
        None,
        description="Your labels in id order, comma-separated (e.g. neg,pos): needed when labels mix kinds.",
    )

    def load(self):
        """``(DatasetDict, TaskInfo)``; fails before any training if anything is missing or wrong (:meth:`check`)."""
        self.check()
        if self.train is not None:
            return load_user_data(
                self.train,
                self.validation,
                text_column=self.text_column,
                text_pair_column=self.text_pair_column,
                label_column=self.label_column,
                task_type=self.task_type,
                label_names=self.label_names,
            )
        info = get_task(self.task)
        return load_glue(info, self.data_dir), info

    def check(self, where: Naming | None = None, word: Naming | None = None) -> DataSource:
        """What :meth:`load` checks before reading anything: one source (a GLUE task, or a train file with
        its columns) and only the settings that belong to it, a known task and task type, the files and
        the GLUE folder present (with no folder, the Hub is not asked). Returns the source with its local
        paths made absolute. A problem raises one line naming the setting ``where(field)`` and, in the
        problem, other settings ``word(field)`` (both default to the CLI flag)."""
        where = where or self.flag
        word = word or self.flag

        def fail(name: str, problem: str, note: str = "") -> NoReturn:
            raise TrimbertError(f"{where(name)}{note}: {problem}")

        def absolute(value: str | None) -> str | None:
            return None if value is None else str(Path(value).expanduser().absolute())

        if self.train is not None:
            if self.task is not None:
                fail("task", f"give either {word('task')} (a GLUE task) or {word('train')} (your own files), not both")
            for name in ("text_column", "label_column"):
                if not getattr(self, name):
                    fail(name, f"missing: your own {word('train')} file needs {word('text_column')} and {word('label_column')}")
            if self.data_dir is not None:
                fail("data_dir", f"is for GLUE tasks; with {word('train')}, give {word('validation')} instead")
            for name in ("train", "validation"):
                value = getattr(self, name)
                if value is not None and not Path(value).expanduser().is_file():
                    fail(name, f"file {value} does not exist (relative to {Path.cwd()})")
            if self.task_type is not None and self.task_type not in TASK_TYPES:
                fail("task_type", f"unknown task type {self.task_type!r}; use {' or '.join(TASK_TYPES)}")
            return self.updated(train=absolute(self.train), validation=absolute(self.validation))
        if self.task is None:
            fail("task", f"missing: a GLUE task (sst2, mnli, ...) or {word('train')} with your own data file")
        for name in ("validation", "text_column", "text_pair_column", "label_column", "task_type", "label_names"):
            if getattr(self, name) is not None:
                fail(name, f"is for your own files ({word('train')}), not for a GLUE task")
        try:
            info = get_task(self.task)
        except TrimbertError as error:
            fail("task", str(error))
        note = "" if self.data_dir is not None else " (from $TRIMBERT_GLUE_DIR)"
        try:
            folder = resolve_glue_dir(info, self.data_dir)
        except TrimbertError as error:
            fail("data_dir", str(error), note)
        if folder is not None:
            for _, file_name in info.tsv.files:
                if not (folder / file_name).is_file():
                    fail("data_dir", f"{folder / file_name} does not exist (task {info.name} needs it)", note)
        return self.updated(data_dir=absolute(self.data_dir))

    @property
    def name(self) -> str:
        """The task's name: the GLUE task, or the stem of your train file."""
        return Path(self.train).stem if self.train is not None else get_task(self.task).name

    def describe(self) -> dict[str, Any]:
        return {key: value for key, value in self.to_dict().items() if value is not None}


TEXT_PEEK = 1 << 20  # bytes of a corpus file read to check it is text (the heal reads all of it)
CORPUS_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl")


class CorpusSource(Settings):
    """Unlabeled text to heal on (``trimbert heal --corpus``; a recipe's ``heal`` table)."""

    corpus: str = Field(
        description="Unlabeled text: a .txt file (one text per line), a CSV/TSV/JSONL file (with --text-column), "
        "a glue_data/ folder (all its texts) or a Hub dataset id."
    )
    text_column: str | None = Field(None, description="The corpus column with the text (tables, Hub datasets).")
    corpus_config: str | None = Field(None, description="Config of a Hub dataset (e.g. wikitext-103-raw-v1).")

    def check(self, where: Naming | None = None) -> CorpusSource:
        """The corpus there and readable as text (a local path made absolute; a name that looks like a
        local path but is not there is refused, anything else is taken for a Hub dataset). A problem
        raises one line naming the setting ``where(field)`` (default: its CLI flag)."""
        where = where or self.flag
        if not self.corpus.strip():
            raise TrimbertError(f"{where('corpus')}: expected a non-empty string")
        local = Path(self.corpus).expanduser()
        if local.exists():
            if local.is_file() and (problem := not_text(local)):
                raise TrimbertError(f"{where('corpus')}: {self.corpus} {problem}")
            return self.updated(corpus=str(local.absolute()))
        if self.corpus.startswith((".", "/", "~")) or local.suffix in CORPUS_SUFFIXES:
            raise TrimbertError(f"{where('corpus')}: {self.corpus} does not exist (relative to {Path.cwd()})")
        return self


def not_text(path: Path) -> str | None:
    """Why the corpus file ``path`` cannot be healed on, from its first :data:`TEXT_PEEK` bytes, or None:
    unreadable, binary (a NUL byte) or not UTF-8 (what the heal's reader decodes)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(TEXT_PEEK)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if b"\0" in head:
        return "is binary, not text (a NUL byte in its first MB)"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < TEXT_PEEK)
    except UnicodeDecodeError as error:
        return f"is not UTF-8 text (byte {error.start} of the file: {error.reason})"
    return None


def evaluation_source(
    recorded: dict[str, Any] | None,
    *,
    task: str | None = None,
    data_dir: str | None = None,
    validation: str | None = None,
    where: str = "the model",
) -> DataSource:
    """The data to evaluate a trained model on: ``task`` if given, else the source its training
    recorded (``recorded``; users' own data keeps its label mapping); ``data_dir`` and
    ``validation`` (another eval file of the user's own data) replace the recorded ones."""
    if task is not None:
        return DataSource(task=task, data_dir=data_dir)
    if not recorded:
        raise TrimbertError(f"{where} records no training data: say which data to evaluate on with --task")
    source = DataSource(**recorded)
    if data_dir is not None:
        source.data_dir = data_dir
    if validation is not None:
        if source.train is None:
            raise TrimbertError("--validation is for runs trained on your own files; use --task/--data-dir for GLUE")
        source.validation = validation
    return source
