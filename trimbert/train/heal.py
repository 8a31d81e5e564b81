"""Healing: task-agnostic distillation of a trimmed model from the untrimmed one on unlabeled text.

TrimBERT pre-trains its trimmed architectures; trimbert trims a pretrained checkpoint, so the
representations are broken where the trim cut. :func:`heal` repairs them before any task, the way
TinyBERT and MiniLM do general distillation: the trimmed encoder (student) learns to reproduce the
untrimmed encoder's (teacher's) block outputs and final hidden states on plain text
(:func:`heal_loss`; blocks are matched by their original index, so dropped layers are handled). The
result is a trimmed checkpoint like any other — ``finetune`` takes it — with the healing settings, the
corpus fingerprint and the held-out loss before and after recorded in ``trim_spec.notes["heal"]`` and
in ``heal.json`` (a :class:`~trimbert.report.records.Record` of kind ``"heal"``).

Schedules (:func:`heal_stages`): ``oneshot`` heals the trimmed model as given; ``progressive`` takes only
the trim from it and applies that trim to the teacher in stages (FFNs, layers and heads, LayerNorms, the
attention normalizer), healing after each on texts no earlier stage read, so each stage starts from a
repaired model.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

from trimbert.core.io import conditions, write_json_atomic
from trimbert.core.outputs import atomic_output_dir, check_output_dir
from trimbert.core.rank import is_main_process, no_gpu
from trimbert.data.corpus import corpus_fingerprint, read_corpus
from trimbert.errors import TrimbertError
from trimbert.measure.size import check_seq_len, count_parameters
from trimbert.model import checkpoint
from trimbert.model.structure import applied_spec
from trimbert.model.trim import trim as trim_model
from trimbert.report.records import HealCost, Record
from trimbert.spec.trimspec import AFFINE, TrimSpec
from trimbert.train.distill import block_pairs, check_teacher_fits, hidden_mse
from trimbert.train.settings import HealSettings

HEAL_FILE = "heal.json"


def heal_loss(
    student_outputs: Any,
    teacher_outputs: Any,
    attention_mask: torch.Tensor | None,
    pairs: list[tuple[int, int]],
    settings: HealSettings,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``alpha_hidden`` × the mean block-output MSE over ``pairs`` (see
    :func:`trimbert.train.distill.block_pairs`) + ``alpha_final`` × the MSE of the final hidden states
    + ``alpha_attention`` × :func:`attention_loss` (the outputs must then carry ``attentions``), on real
    tokens; exactly 0 when the student's states equal the teacher's. Returns the loss and its parts
    (detached)."""
    student_hidden = student_outputs.hidden_states
    teacher_hidden = tuple(hidden.detach() for hidden in teacher_outputs.hidden_states)
    loss = student_hidden[-1].new_zeros((), dtype=torch.float32)
    parts: dict[str, torch.Tensor] = {}
    if settings.alpha_hidden > 0:
        hidden = hidden_mse(student_hidden, teacher_hidden, attention_mask, pairs)
        loss = loss + settings.alpha_hidden * hidden
        parts["hidden"] = hidden.detach()
    if settings.alpha_final > 0:
        last = [(len(student_hidden) - 1, len(teacher_hidden) - 1)]
        final = hidden_mse(student_hidden, teacher_hidden, attention_mask, last)
        loss = loss + settings.alpha_final * final
        parts["final"] = final.detach()
    if settings.alpha_attention > 0:
        attention = attention_loss(student_outputs.attentions, teacher_outputs.attentions, attention_mask, pairs)
        loss = loss + settings.alpha_attention * attention
        parts["attention"] = attention.detach()
    return loss, parts


def attention_loss(
    student: tuple[torch.Tensor, ...],
    teacher: tuple[torch.Tensor, ...],
    attention_mask: torch.Tensor | None,
    pairs: list[tuple[int, int]],
) -> torch.Tensor:
    """For each block pair (``pairs`` index hidden states: block position + 1), the squared difference
    of the attention weights ``[batch, heads, queries, keys]`` summed over keys, averaged over real
    query tokens and heads; then the mean over pairs. A squared difference, not a KL divergence:
    normalizers such as relu give keys exactly zero weight, where a KL would be infinite."""
    if student is None or teacher is None or any(weights is None for weights in (*student, *teacher)):
        raise TrimbertError("heal: alpha_attention needs attention weights from both models")
    total = student[0].new_zeros((), dtype=torch.float32)
    for student_index, teacher_index in pairs:  # block_pairs: indices from 1 (0 is the embeddings)
        s, t = student[student_index - 1].float(), teacher[teacher_index - 1].detach().float()
        rows = (s - t).square().sum(-1)  # [batch, heads, queries]
        if attention_mask is None:
            total = total + rows.mean()
        else:
            keep = attention_mask.to(rows.dtype)[:, None, :].expand_as(rows)
            total = total + (rows * keep).sum() / keep.sum().clamp_min(1.0)
    return total / max(len(pairs), 1)


class HealTrainer(Trainer):
    """A Trainer whose loss is :func:`heal_loss` against a frozen ``teacher`` run on the same batch."""

    loss_is_scaled_for_ga = False  # heal_loss is a per-batch mean

    def __init__(self, *args: Any, teacher: nn.Module, heal: HealSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heal = heal
        self.teacher = teacher.to(self.args.device).eval()
        self.teacher.requires_grad_(False)
        self.pairs = block_pairs(self.model, teacher)
        if not self.pairs:
            raise TrimbertError("heal: the trimmed model and the teacher have no block in common")
        self.outputs = {"output_hidden_states": True, "return_dict": True}
        if heal.alpha_attention > 0:  # attention weights: eager softmax (sdpa returns none); normalizers give them
            for model in (self.model, self.teacher):
                if not str(model.config._attn_implementation).startswith("trimbert_"):
                    model.set_attn_implementation("eager")
            self.outputs["output_attentions"] = True
        self.tokens = 0  # real tokens trained on

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs, **self.outputs)
        with torch.no_grad():
            teacher_outputs = self.teacher(**inputs, **self.outputs)
        loss, _ = heal_loss(outputs, teacher_outputs, inputs.get("attention_mask"), self.pairs, self.heal)
        if model.training and inputs.get("attention_mask") is not None:
            self.tokens += int(inputs["attention_mask"].sum())
        return (loss, outputs) if return_outputs else loss

    def held_out_loss(self) -> float:
        """:func:`heal_loss` on the held-out texts (``eval_dataset``), the mean over its batches."""
        model = self.model.eval()
        total, batches = 0.0, 0
        with torch.no_grad():
            for inputs in self.get_eval_dataloader():
                inputs = self._prepare_inputs(inputs)
                outputs = model(**inputs, **self.outputs)
                teacher_outputs = self.teacher(**inputs, **self.outputs)
                total += float(heal_loss(outputs, teacher_outputs, inputs.get("attention_mask"), self.pairs, self.heal)[0])
                batches += 1
        return total / max(batches, 1)


def heal(
    trimmed: str,
    teacher: str,
    corpus: str,
    out: str | Path,
    *,
    settings: HealSettings | None = None,
    text_column: str | None = None,
    corpus_config: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Record:
    """Heal the trimmed model ``trimmed`` from ``teacher`` on ``corpus`` (see :func:`read_corpus`) and
    save it to ``out`` (atomically, with its tokenizer and ``heal.json``). Returns the record.
    With ``settings.schedule == "progressive"`` ``trimmed`` gives the trim (see :func:`heal_stages`)
    and the held-out loss before is still that of ``trimmed``."""
    settings = settings or HealSettings()
    out = check_output_dir(out, force, inputs=(trimmed, teacher, corpus))  # the corpus too; ~ expanded
    student, master, tokenizer = _load_models(trimmed, teacher, settings)
    texts = read_corpus(
        corpus,
        text_column=text_column,
        config=corpus_config,
        max_texts=None if settings.corpus_texts is None else settings.corpus_texts + settings.held_out,
        seed=settings.seed,
    )
    if len(texts) <= settings.held_out:
        raise TrimbertError(f"corpus {corpus} has {len(texts)} texts: more than --held-out {settings.held_out} needed")
    held_out, train_texts = texts[: settings.held_out], texts[settings.held_out :]
    data = (_encode(train_texts, tokenizer, settings.max_length), _encode(held_out, tokenizer, settings.max_length))
    settings = settings.model_copy(update={"steps": steps_for(settings, data[0])})  # resolved: tokens kept for the record
    wanted = applied_spec(student)
    stages = heal_stages(wanted, wanted.notes, settings)
    with tempfile.TemporaryDirectory(prefix="trimbert-heal-") as work_dir:
        before = _trainer(student, master, settings, settings.steps, data, tokenizer, work_dir, progress).held_out_loss()
        if settings.schedule == "progressive":
            student = checkpoint.load(teacher, head="base")  # TRIMMED gave the trim; the weights are re-trimmed
        tokens, heal_time, done = 0, 0.0, []
        rows = stage_rows(len(data[0]), [steps for _, _, steps in stages], settings.batch_size)
        for (name, spec, steps), chosen in zip(stages, rows, strict=True):
            if spec is not None:
                student = trim_model(student, spec)
            stage_data = data if chosen is None else (data[0].select(chosen), data[1])
            trainer = _trainer(student, master, settings, steps, stage_data, tokenizer, work_dir, progress)
            start = time.perf_counter()
            trainer.train()
            heal_time += time.perf_counter() - start
            tokens += trainer.tokens
            done.append({"stage": name, "steps": steps, "texts": len(stage_data[0]), "loss_after": trainer.held_out_loss()})
    if applied_spec(student) != wanted:  # cannot happen unless the stages miss a part of the trim
        raise TrimbertError(f"heal: the stages built {applied_spec(student).summary()}, not {wanted.summary()}")
    record = _record(trimmed, teacher, corpus, out, settings, student, texts, tokens, heal_time, before, done[-1]["loss_after"])
    if settings.schedule == "progressive":
        record.heal.stages = done
    _save(student, wanted, record, tokenizer, out, force)
    return record


def _load_models(trimmed: str, teacher: str, settings: HealSettings) -> tuple[nn.Module, nn.Module, Any]:
    """The student, the teacher and the tokenizer, checked before any work: the student is trimmed, the
    teacher is not trimmed exactly like it (the same folder, or a copy: nothing to heal towards; a teacher
    trimmed less, or otherwise, is allowed), and it reads the same tokens with the same hidden size."""
    student = checkpoint.load(trimmed, head="base")
    wanted = applied_spec(student)
    if wanted.is_empty:
        raise TrimbertError(f"heal: {trimmed} is not trimmed: nothing to heal (trim it first: trimbert trim)")
    master = checkpoint.load(teacher, head="base")
    if settings.schedule == "progressive" and not applied_spec(master).is_empty:
        raise TrimbertError(f"--schedule progressive: the teacher {teacher} is trimmed; give the untrimmed model")
    if applied_spec(master) == wanted:
        raise TrimbertError(
            f"heal: the teacher {teacher} is trimmed exactly like {trimmed} ({wanted.summary()}): nothing to heal "
            "towards; give the untrimmed model it was trimmed from"
        )
    own, teachers = checkpoint.load_tokenizer(trimmed), checkpoint.load_tokenizer(teacher)
    check_teacher_fits(student, master, own, teachers, where="heal", student_name="trimmed")
    check_seq_len(student, settings.max_length)
    check_seq_len(master, settings.max_length)
    tokenizer = own or teachers
    if tokenizer is None:
        raise TrimbertError(f"heal: neither {trimmed} nor {teacher} has a tokenizer")
    return student, master, tokenizer


def _save(student: nn.Module, wanted: TrimSpec, record: Record, tokenizer: Any, out: str | Path, force: bool) -> None:
    """The healed checkpoint, its trim's notes kept and the healing recorded in ``notes["heal"]``."""
    student.config.trim_spec = {**(student.config.trim_spec or {})}
    notes = {**wanted.notes, **student.config.trim_spec.get("notes", {})}
    notes["heal"] = {key: getattr(record.heal, key) for key in ("teacher", "corpus", "corpus_fingerprint", "settings", "loss_before", "loss_after")}
    student.config.trim_spec["notes"] = notes
    if is_main_process():
        with atomic_output_dir(out, force) as staging:
            checkpoint.write_checkpoint(student.cpu(), staging, tokenizer=tokenizer)
            write_json_atomic(staging / HEAL_FILE, record.to_dict())


def steps_for(settings: HealSettings, dataset: Any) -> int:
    """``settings.steps``, or with a ``tokens`` budget (given instead of steps) the steps that train on
    about that many tokens: ceil(tokens / (batch size × mean tokens per text of the encoded corpus))."""
    if settings.tokens is None:
        return settings.steps
    lengths = [len(ids) for ids in dataset["input_ids"]]
    per_step = settings.batch_size * sum(lengths) / max(len(lengths), 1)
    return max(1, math.ceil(settings.tokens / per_step))


def heal_stages(
    spec: TrimSpec, notes: dict[str, Any], settings: HealSettings
) -> list[tuple[str, TrimSpec | None, int]]:
    """What :func:`heal` trains: ``(stage, trim added before it or None, steps)``. One-shot: one stage
    on the model as given. Progressive: ``spec`` split into its structure (FFN and layer drops, FFN
    widths, attention heads), then LayerNorms, then the attention normalizer (the parts it has), applied
    to the teacher one after the other with ``settings.steps / stages`` steps after each (the last takes
    the remainder); each stage reads texts of its own (:func:`stage_rows`). Narrowed FFNs and pruned heads
    are chosen again from the teacher by magnitude, so those chosen otherwise are refused."""
    if settings.schedule == "oneshot":
        return [("oneshot", None, settings.steps)]
    if spec.layernorm_replacement == AFFINE:
        raise TrimbertError("--schedule progressive: the affine replacement needs calibration data; use identity or dyt")
    if spec.ffn_width and notes.get("ffn_width_rule", "magnitude") != "magnitude":
        raise TrimbertError("--schedule progressive: FFN neurons chosen by scores cannot be chosen again from the teacher")
    if spec.heads and notes.get("heads_rule", "magnitude") != "magnitude":
        raise TrimbertError("--schedule progressive: attention heads chosen by scores or by index cannot be chosen again "
                            "from the teacher")
    parts = [
        ("ffn", TrimSpec(drop_ffn=spec.drop_ffn, drop_layers=spec.drop_layers, ffn_width=spec.ffn_width, heads=spec.heads)),
        ("layernorm", TrimSpec(layernorm=spec.layernorm, layernorm_replacement=spec.layernorm_replacement)),
        ("attention", TrimSpec(attention=spec.attention)),
    ]
    parts = [(name, part) for name, part in parts if not part.is_empty]
    if settings.steps < len(parts):
        raise TrimbertError(f"--schedule progressive: {len(parts)} stages need at least {len(parts)} steps")
    share = settings.steps // len(parts)
    return [(name, part, share if i < len(parts) - 1 else settings.steps - share * i) for i, (name, part) in enumerate(parts)]


def stage_rows(count: int, steps: list[int], batch_size: int) -> list[list[int] | None]:
    """The corpus rows (of ``count``, already shuffled) each heal stage trains on: one stage reads them
    all; with several, stage i reads the ``steps[i] × batch_size`` rows after those of the stages before
    it (wrapping around at the end), so no stage re-reads what another read while the corpus lasts.
    None: all rows (a stage needing at least the whole corpus, or the only stage)."""
    if len(steps) == 1:
        return [None]
    chosen: list[list[int] | None] = []
    start = 0
    for stage_steps in steps:
        need = stage_steps * batch_size
        if need >= count:
            chosen.append(None)
            continue
        chosen.append([(start + offset) % count for offset in range(need)])
        start = (start + need) % count
    return chosen


def _trainer(student, master, settings, steps, data, tokenizer, work_dir, progress) -> HealTrainer:
    trainer = HealTrainer(
        model=student,
        args=_arguments(settings.model_copy(update={"steps": steps}), work_dir, progress),
        train_dataset=data[0],
        eval_dataset=data[1],
        data_collator=DataCollatorWithPadding(tokenizer),
        teacher=master,
        heal=settings,
    )
    if not progress:
        trainer.remove_callback(PrinterCallback)
    return trainer


def _arguments(settings: HealSettings, work_dir: str, progress: bool) -> TrainingArguments:
    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=work_dir,
        use_cpu=no_gpu(),
        max_steps=settings.steps,
        learning_rate=settings.lr,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=settings.weight_decay,
        lr_scheduler_type="linear",
        seed=settings.seed,
        data_seed=settings.seed,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=max(1, settings.steps // 10),
        report_to="none",
        bf16=use_bf16,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def _encode(texts: list[str], tokenizer: Any, max_length: int) -> Any:
    import datasets

    dataset = datasets.Dataset.from_dict({"text": texts})
    return dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length, return_token_type_ids=True),
        batched=True,
        remove_columns=["text"],
    )


def _record(trimmed, teacher, corpus, out, settings, student, texts, tokens, heal_time, before, after) -> Record:
    spec = applied_spec(student)
    return Record(
        kind="heal",
        variant=Path(str(out)).name,
        model=str(trimmed),
        trim=spec.to_dict() if not spec.is_empty else {},
        trim_summary=spec.summary(),
        params=count_parameters(student),
        train_time_s=heal_time,
        path=str(out),
        conditions=conditions(),
        heal=HealCost(
            time_s=heal_time,
            tokens=tokens,
            loss_before=before,
            loss_after=after,
            teacher=str(teacher),
            corpus=str(corpus),
            corpus_fingerprint=corpus_fingerprint(texts),
            corpus_texts=len(texts),
            tokens_per_s=tokens / heal_time if heal_time > 0 else None,
            settings=settings.to_dict(),
        ),
    )
