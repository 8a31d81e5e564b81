"""DataSource: where a command's labelled data comes from (a GLUE task or the user's own files).

Declared once (:mod:`trimbert.settings`): the fields are the data options of ``finetune`` and
``analyze`` (``--task``, ``--data-dir``, ``--train``, ...) and the keys of a recipe's ``[data]`` table.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from trimbert.data.files import load_user_data
from trimbert.data.glue import load_glue
from trimbert.data.tasks import get_task
from trimbert.errors import TrimbertError
from trimbert.settings import Settings


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
        """``(DatasetDict, TaskInfo)``; fails before any training if anything is missing or wrong."""
        if self.train is not None:
            if self.task is not None:
                raise TrimbertError("give either --task (GLUE) or --train (your own data), not both")
            if not self.text_column or not self.label_column:
                raise TrimbertError("--train needs --text-column and --label-column")
            return load_user_data(
                self.train,
                self.validation,
                text_column=self.text_column,
                text_pair_column=self.text_pair_column,
                label_column=self.label_column,
                task_type=self.task_type,
                label_names=self.label_names,
            )
        if self.task is None:
            raise TrimbertError("give --task (a GLUE task) or --train with your own data file")
        info = get_task(self.task)
        return load_glue(info, self.data_dir), info

    def describe(self) -> dict[str, Any]:
        return {key: value for key, value in self.to_dict().items() if value is not None}


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
