"""Healing: the loss, the training, and the healed checkpoint."""

import copy
import dataclasses
import json

import pytest
import torch
from conftest import make_tiny_batch, tiny_config, write_sst2
from transformers import BertModel

import trimbert
from trimbert.errors import TrimbertError
from trimbert.spec import TrimSpec
from trimbert.train.distill import block_pairs
from trimbert.train.heal import HEAL_FILE, attention_loss, heal, heal_loss, heal_stages, stage_rows, steps_for
from trimbert.train.settings import HealSettings


def _outputs(model, batch):
    return model(**batch, output_hidden_states=True, return_dict=True)


def test_the_loss_is_zero_when_the_student_is_the_teacher_and_positive_after_a_trim():
    torch.manual_seed(0)
    teacher = BertModel(tiny_config()).eval()
    batch = make_tiny_batch()
    same = copy.deepcopy(teacher)
    loss, parts = heal_loss(_outputs(same, batch), _outputs(teacher, batch), batch["attention_mask"], block_pairs(same, teacher), HealSettings())
    assert loss.item() == 0.0 and set(parts) == {"hidden", "final"}
    trimmed = trimbert.trim(copy.deepcopy(teacher), drop_ffn="1,3", drop_layers="2")
    pairs = block_pairs(trimmed, teacher)
    assert pairs == [(1, 1), (2, 2), (3, 4)]  # block 3 is the trimmed model's third block
    loss, parts = heal_loss(_outputs(trimmed, batch), _outputs(teacher, batch), batch["attention_mask"], pairs, HealSettings())
    assert float(loss.detach()) > 0
    assert float(loss.detach()) == pytest.approx(float(parts["hidden"] + parts["final"]))
    only_final = HealSettings(alpha_hidden=0.0, alpha_final=2.0)
    loss, parts = heal_loss(_outputs(trimmed, batch), _outputs(teacher, batch), batch["attention_mask"], pairs, only_final)
    assert set(parts) == {"final"} and float(loss.detach()) == pytest.approx(2 * float(parts["final"]))


def test_padding_tokens_do_not_count():
    torch.manual_seed(0)
    teacher = BertModel(tiny_config()).eval()
    student = trimbert.trim(copy.deepcopy(teacher), drop_ffn="0")
    batch = make_tiny_batch()
    other = dict(batch, input_ids=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 7))
    pairs = block_pairs(student, teacher)
    first = heal_loss(_outputs(student, batch), _outputs(teacher, batch), batch["attention_mask"], pairs, HealSettings())[0]
    second = heal_loss(_outputs(student, other), _outputs(teacher, other), other["attention_mask"], pairs, HealSettings())[0]
    assert float(first.detach()) == pytest.approx(float(second.detach()), rel=1e-5)


def test_heal_lowers_the_held_out_loss_and_saves_a_checkpoint_that_reloads(tmp_path, minilm_dir):
    torch.manual_seed(0)
    teacher = BertModel(tiny_config(vocab_size=30522, num_hidden_layers=2, max_position_embeddings=128))
    tokenizer = trimbert.load_tokenizer(minilm_dir)
    trimbert.save(teacher, tmp_path / "teacher", tokenizer=tokenizer)
    trimbert.save(trimbert.trim(teacher, drop_ffn="1", attention="relu"), tmp_path / "trimmed", tokenizer=tokenizer)
    corpus = write_sst2(tmp_path / "SST-2", train_rows=40, dev_rows=8)
    settings = HealSettings(steps=8, batch_size=4, lr=1e-4, held_out=4, max_length=16, warmup_ratio=0.0)
    record = heal(str(tmp_path / "trimmed"), str(tmp_path / "teacher"), str(corpus), tmp_path / "healed", settings=settings, progress=False)
    extra = dataclasses.asdict(record.heal)
    assert record.kind == "heal" and extra["corpus_texts"] == 8  # the 8 distinct sentences
    assert extra["loss_after"] < extra["loss_before"]
    assert extra["tokens"] > 0 and extra["settings"] == settings.to_dict()
    healed = trimbert.load(tmp_path / "healed")
    spec = healed.config.spec
    assert spec.drop_ffn == (1,) and spec.attention == "relu"
    assert spec.notes["heal"]["corpus_fingerprint"] == extra["corpus_fingerprint"]
    assert spec.notes["heal"]["loss_after"] == extra["loss_after"]
    assert json.loads((tmp_path / "healed" / HEAL_FILE).read_text())["heal"]["loss_before"] == extra["loss_before"]
    before = trimbert.load(tmp_path / "trimmed")
    assert any(not torch.equal(a, b) for a, b in zip(before.state_dict().values(), healed.state_dict().values(), strict=True))
    batch = {"input_ids": torch.randint(0, 30522, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    again = trimbert.load(tmp_path / "healed")
    with torch.no_grad():
        assert torch.equal(healed(**batch).last_hidden_state, again(**batch).last_hidden_state)


def test_bad_inputs_fail_before_training(tmp_path, tiny_checkpoint):
    (tmp_path / "c.txt").write_text("only one text\n", encoding="utf-8")
    with pytest.raises(TrimbertError, match=r"is not trimmed: nothing to heal"):
        heal(str(tiny_checkpoint), str(tiny_checkpoint), str(tmp_path / "c.txt"), tmp_path / "out", progress=False)
    trimmed = trimbert.save(trimbert.trim(trimbert.load(tiny_checkpoint), drop_ffn="0"), tmp_path / "trimmed")
    with pytest.raises(TrimbertError, match=r"has 1 texts: more than --held-out 256 needed"):
        heal(str(trimmed), str(tiny_checkpoint), str(tmp_path / "c.txt"), tmp_path / "out", progress=False)
    torch.manual_seed(0)
    wide = BertModel(tiny_config(hidden_size=64, vocab_size=30522, max_position_embeddings=128))
    trimbert.save(wide, tmp_path / "wide")
    with pytest.raises(TrimbertError, match=r"heal: hidden sizes differ \(trimmed 32, teacher 64\)"):
        heal(str(trimmed), str(tmp_path / "wide"), str(tmp_path / "c.txt"), tmp_path / "out", progress=False)
    with pytest.raises(TrimbertError, match="needs a positive weight"):
        HealSettings(alpha_hidden=0, alpha_final=0)
    assert not (tmp_path / "out").exists()


def test_progressive_stages_split_the_trim_and_the_steps():
    spec = TrimSpec(drop_ffn=(1, 3), attention="relu", layernorm=("0.attn", "2.attn"), drop_layers=(5,), ffn_width=((0, 8),))
    stages = heal_stages(spec, {}, HealSettings(steps=100, schedule="progressive"))
    assert [(name, steps) for name, _, steps in stages] == [("ffn", 33), ("layernorm", 33), ("attention", 34)]
    assert stages[0][1] == TrimSpec(drop_ffn=(1, 3), drop_layers=(5,), ffn_width=((0, 8),))
    assert stages[1][1] == TrimSpec(layernorm=("0.attn", "2.attn"))
    assert stages[2][1] == TrimSpec(attention="relu")
    assert heal_stages(spec, {}, HealSettings(steps=100)) == [("oneshot", None, 100)]
    only_ffn = heal_stages(TrimSpec(drop_ffn=(1,)), {}, HealSettings(steps=7, schedule="progressive"))
    assert only_ffn == [("ffn", TrimSpec(drop_ffn=(1,)), 7)]
    with pytest.raises(TrimbertError, match="affine replacement needs calibration data"):
        heal_stages(TrimSpec(layernorm=("0.attn",), layernorm_replacement="affine"), {}, HealSettings(schedule="progressive"))
    with pytest.raises(TrimbertError, match="chosen by scores"):
        heal_stages(TrimSpec(ffn_width=((0, 8),)), {"ffn_width_rule": "scores"}, HealSettings(schedule="progressive"))
    with pytest.raises(TrimbertError, match="3 stages need at least 3 steps"):
        heal_stages(spec, {}, HealSettings(steps=2, schedule="progressive"))


def test_each_progressive_stage_reads_texts_of_its_own():
    assert stage_rows(10, [5], 4) == [None]  # one stage: the whole corpus, in the trainer's shuffled epochs
    assert stage_rows(100, [3, 3, 4], 4) == [list(range(0, 12)), list(range(12, 24)), list(range(24, 40))]
    assert stage_rows(10, [1, 1, 1], 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]  # wraps when the corpus runs out
    assert stage_rows(10, [3, 1], 4) == [None, [0, 1, 2, 3]]  # a stage needing the whole corpus reads all of it


def test_progressive_heal_rebuilds_the_trim_from_the_teacher(tmp_path, minilm_dir):
    torch.manual_seed(0)
    teacher = BertModel(tiny_config(vocab_size=30522, num_hidden_layers=2, max_position_embeddings=128))
    tokenizer = trimbert.load_tokenizer(minilm_dir)
    trimbert.save(teacher, tmp_path / "teacher", tokenizer=tokenizer)
    trimmed = trimbert.trim(teacher, drop_ffn="1", attention="relu", layernorm="0.attn", layernorm_replacement="dyt")
    trimbert.save(trimmed, tmp_path / "trimmed", tokenizer=tokenizer)
    corpus = tmp_path / "corpus.txt"  # 60 distinct texts: 4 held out, 56 to train on
    corpus.write_text("".join(f"review number {i} says the film was {'good' if i % 2 else 'bad'}\n" for i in range(60)))
    settings = HealSettings(steps=9, batch_size=4, held_out=4, max_length=16, warmup_ratio=0.0, schedule="progressive")
    record = heal(str(tmp_path / "trimmed"), str(tmp_path / "teacher"), str(corpus), tmp_path / "healed", settings=settings, progress=False)
    stages = record.heal.stages
    assert [(stage["stage"], stage["steps"]) for stage in stages] == [("ffn", 3), ("layernorm", 3), ("attention", 3)]
    assert [stage["texts"] for stage in stages] == [12, 12, 12]  # 3 steps × 4 texts each, none re-read
    assert record.heal.loss_after == stages[-1]["loss_after"] < record.heal.loss_before
    healed = trimbert.load(tmp_path / "healed")
    assert healed.config.spec == trimbert.load(tmp_path / "trimmed").config.spec
    assert healed.config.spec.notes["heal"]["settings"]["schedule"] == "progressive"
    with pytest.raises(TrimbertError, match="the teacher .* is trimmed; give the untrimmed model"):
        heal(str(tmp_path / "trimmed"), str(tmp_path / "trimmed"), str(corpus), tmp_path / "again", settings=settings, progress=False)


def test_progressive_stages_prune_heads_with_the_ffn_structure():
    spec = TrimSpec(drop_ffn=(1,), heads={0: 2, 3: 1}, attention="relu")
    stages = heal_stages(spec, {"heads_rule": "magnitude"}, HealSettings(steps=10, schedule="progressive"))
    assert stages == [("ffn", TrimSpec(drop_ffn=(1,), heads={0: 2, 3: 1}), 5), ("attention", TrimSpec(attention="relu"), 5)]
    only_heads = heal_stages(TrimSpec(heads={2: 3}), {}, HealSettings(steps=4, schedule="progressive"))
    assert only_heads == [("ffn", TrimSpec(heads={2: 3}), 4)]
    for rule in ("scores", "explicit", "magnitude, then explicit"):  # the teacher's heads are chosen again by magnitude
        with pytest.raises(TrimbertError, match="attention heads chosen by scores or by index cannot be chosen again"):
            heal_stages(spec, {"heads_rule": rule}, HealSettings(schedule="progressive"))


def test_progressive_heal_rebuilds_pruned_heads_from_the_teacher(tmp_path, minilm_dir):
    torch.manual_seed(0)
    teacher = BertModel(tiny_config(vocab_size=30522, num_hidden_layers=2, max_position_embeddings=128))
    tokenizer = trimbert.load_tokenizer(minilm_dir)
    trimbert.save(teacher, tmp_path / "teacher", tokenizer=tokenizer)
    trimmed = trimbert.trim(copy.deepcopy(teacher), heads="0:2,1:3", attention="relu")
    trimbert.save(trimmed, tmp_path / "trimmed", tokenizer=tokenizer)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"review number {i} says the film was {'good' if i % 2 else 'bad'}\n" for i in range(40)))
    settings = HealSettings(steps=4, batch_size=4, held_out=4, max_length=16, warmup_ratio=0.0, schedule="progressive")
    record = heal(str(tmp_path / "trimmed"), str(tmp_path / "teacher"), str(corpus), tmp_path / "healed", settings=settings, progress=False)
    assert [(stage["stage"], stage["steps"]) for stage in record.heal.stages] == [("ffn", 2), ("attention", 2)]
    healed = trimbert.load(tmp_path / "healed")
    assert healed.config.spec == trimbert.load(tmp_path / "trimmed").config.spec
    assert healed.config.spec.head_counts == {0: 2, 1: 3}
    layers = healed.base_model.encoder.layer
    assert [layer.attention.self.query.out_features for layer in layers] == [2 * 8, 3 * 8]  # heads of 32 / 4 = 8


def test_a_token_budget_sets_the_steps():
    import datasets

    texts = datasets.Dataset.from_dict({"input_ids": [[1] * 10, [1] * 30]})  # mean 20 tokens per text
    assert steps_for(HealSettings(steps=5), texts) == 5
    assert steps_for(HealSettings(tokens=1000, batch_size=10), texts) == 5  # 200 tokens per step
    assert steps_for(HealSettings(tokens=1001, batch_size=10), texts) == 6
    assert steps_for(HealSettings(tokens=1, batch_size=10), texts) == 1


def test_the_attention_loss_is_zero_for_the_teacher_and_counts_real_queries_only():
    torch.manual_seed(0)
    teacher = BertModel(tiny_config()).eval()
    teacher.set_attn_implementation("eager")
    batch = make_tiny_batch()
    settings = HealSettings(alpha_hidden=0.0, alpha_final=0.0, alpha_attention=1.0)
    pairs = block_pairs(teacher, teacher)
    out = teacher(**batch, output_hidden_states=True, output_attentions=True)
    loss, parts = heal_loss(out, out, batch["attention_mask"], pairs, settings)
    assert loss.item() == 0.0 and set(parts) == {"attention"}
    student = trimbert.trim(copy.deepcopy(teacher), attention="relu").eval()
    student_out = student(**batch, output_hidden_states=True, output_attentions=True)
    loss = attention_loss(student_out.attentions, out.attentions, batch["attention_mask"], pairs)
    rows = [(s - t).square().sum(-1) for s, t in zip(student_out.attentions, out.attentions, strict=True)]
    keep = batch["attention_mask"].bool()
    expected = sum(float(r.detach().permute(0, 2, 1)[keep].mean()) for r in rows) / len(rows)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5) and float(loss.detach()) > 0
    with pytest.raises(TrimbertError, match="needs attention weights from both models"):
        attention_loss(None, out.attentions, batch["attention_mask"], pairs)


def test_heal_with_the_attention_loss_saves_a_model_that_loads_with_its_own_attention(tmp_path, minilm_dir):
    torch.manual_seed(0)
    teacher = BertModel(tiny_config(vocab_size=30522, num_hidden_layers=2, max_position_embeddings=128))
    tokenizer = trimbert.load_tokenizer(minilm_dir)
    trimbert.save(teacher, tmp_path / "teacher", tokenizer=tokenizer)
    trimbert.save(trimbert.trim(teacher, drop_ffn="1"), tmp_path / "trimmed", tokenizer=tokenizer)
    corpus = write_sst2(tmp_path / "SST-2", train_rows=40, dev_rows=8)
    # 4 steps on a random tiny model: the lr this test was written with (5e-4 overshoots here)
    settings = HealSettings(steps=4, batch_size=4, lr=1e-4, held_out=4, max_length=16, alpha_attention=1.0)
    record = heal(str(tmp_path / "trimmed"), str(tmp_path / "teacher"), str(corpus), tmp_path / "healed", settings=settings, progress=False)
    assert record.heal.loss_after < record.heal.loss_before
    saved = json.loads((tmp_path / "healed" / "config.json").read_text())
    assert "eager" not in json.dumps(saved)  # the eager attention used for the loss is not saved
    assert trimbert.load(tmp_path / "healed").config._attn_implementation == "sdpa"
