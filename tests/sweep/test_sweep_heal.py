"""Sweeps that heal: the heal table checked, one heal per trim and healing shared by seeds, the "heal s" column."""

from __future__ import annotations

import json
import re

import pytest
from test_sweep import BENCH, FINETUNE, ok_records, recipe_text

import trimbert.sweep.healing
from trimbert.errors import TrimbertError
from trimbert.report.aggregate import build_rows
from trimbert.report.collect import collect_records
from trimbert.report.columns import shown_columns
from trimbert.spec import TrimRequest
from trimbert.sweep.healing import HEAL_DIR, heal_key, resolved
from trimbert.sweep.recipe import load_recipe
from trimbert.sweep.run import run_sweep
from trimbert.train.heal import HEAL_FILE
from trimbert.train.settings import HealSettings

HEAL = {"steps": 2, "batch_size": 4, "held_out": 2, "max_length": 16}


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"unlabeled sentence number {i} about films" for i in range(12)) + "\n")
    return path


def _write(tmp_path, tiny_checkpoint, sst2, variants, heal_table=None):
    finetune = {key: value for key, value in FINETUNE.items() if key != "seed"}
    text = recipe_text(tiny_checkpoint, {"task": "sst2", "data_dir": str(sst2)}, variants, finetune=finetune, top={"seeds": [1, 2]})
    if heal_table is not None:
        text = text.replace("[model]", "[heal]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in heal_table.items()) + "\n[model]", 1)
    path = tmp_path / "heal.toml"
    path.write_text(text)
    return path


@pytest.fixture
def sst2(tmp_path):
    from conftest import write_sst2

    return write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=8)


def test_heal_tables_merge_over_the_defaults_and_enter_the_fingerprint(tmp_path, tiny_checkpoint, sst2, corpus):
    variants = [
        {"name": "baseline"},
        {"name": "a", "drop_ffn": "1", "heal": True},
        {"name": "b", "drop_ffn": "1", "heal": {"steps": 3, "schedule": "progressive"}},
    ]
    recipe = load_recipe(_write(tmp_path, tiny_checkpoint, sst2, variants, {"corpus": str(corpus), **HEAL}))
    a, b = recipe.variant("a"), recipe.variant("b")
    assert a.heal == {"corpus": str(corpus), **HEAL}
    assert b.heal == {"corpus": str(corpus), **HEAL, "steps": 3, "schedule": "progressive"}
    assert recipe.variant("baseline").heal is None
    assert recipe.entry(a, 1)["heal"] == {"corpus": str(corpus), **HealSettings(**HEAL).to_dict()}
    assert "heal" not in recipe.entry(recipe.variant("baseline"), 1)
    assert recipe.fingerprint(a, 1) != recipe.fingerprint(b, 1)


def test_a_heal_is_keyed_by_every_setting_defaults_included():
    request, table = TrimRequest(drop_ffn="1"), {"corpus": "/c.txt", "steps": 600}
    key = heal_key("m", request, table)
    assert key == heal_key("m", request, {**table, "lr": HealSettings().lr})  # the default spelled out: the same heal
    assert key != heal_key("m", request, {**table, "lr": 5e-4})
    assert key != heal_key("m", request, {**table, "schedule": "progressive"})
    assert resolved(table) == {"corpus": "/c.txt", **HealSettings(steps=600).to_dict()}


@pytest.mark.parametrize(
    ("variant", "defaults", "key", "problem"),
    [
        ({"name": "x", "heal": {"corpus": "c.txt"}}, None, "variants[1].heal", "an untrimmed variant has nothing to heal"),
        ({"name": "x", "drop_ffn": "1", "heal": True}, None, "variants[1].heal", "heal = true needs a [heal] table"),
        ({"name": "x", "drop_ffn": "1", "heal": {"steps": 2}}, None, "variants[1].heal.corpus", "missing: the unlabeled text"),
        ({"name": "x", "drop_ffn": "1", "heal": {"corpus": "./nope.txt"}}, None, "variants[1].heal.corpus", "nope.txt does not exist"),
        ({"name": "x", "drop_ffn": "1", "heal": {"corpus": "C", "stepz": 2}}, None, "variants[1].heal.stepz", "did you mean 'steps'"),
        ({"name": "x", "drop_ffn": "1", "heal": {"corpus": "C", "steps": 0}}, None, "variants[1].heal.steps", "must be at least 1, got 0"),
        ({"name": "x", "drop_ffn": "auto:1", "heal": {"corpus": "C"}}, None, "variants[1].heal", "heal needs a fixed trim"),
        ({"name": "x", "ffn_width": 32, "importance": "taylor", "heal": {"corpus": "C"}}, None, "variants[1].heal", "importance = taylor ranks"),
        ({"name": "x", "drop_ffn": "1", "heal": True}, {"corpus": "C", "lr": "fast"}, "heal.lr", "expected a number, got 'fast'"),
    ],
)
def test_bad_heal_tables_are_one_line_errors(tmp_path, tiny_checkpoint, sst2, corpus, variant, defaults, key, problem):
    def fix(table):
        return {k: (str(corpus) if v == "C" else v) for k, v in table.items()} if isinstance(table, dict) else table

    variant = {**variant, "heal": fix(variant["heal"])}
    path = _write(tmp_path, tiny_checkpoint, sst2, [{"name": "baseline"}, variant], fix(defaults) if defaults else None)
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: {key}: ") and problem in message, message



@pytest.mark.parametrize(
    ("trim", "rule"),
    [
        ({"ffn_width": 32, "importance": "taylor"}, "taylor"),
        ({"ffn_width": 32, "importance": "fisher"}, "fisher"),
        ({"heads": 2, "importance": "fisher"}, "fisher"),
    ],
)
def test_a_heal_refuses_a_trim_ranked_on_task_data(tmp_path, tiny_checkpoint, sst2, corpus, trim, rule):
    variant = {"name": "x", **trim, "heal": {"corpus": str(corpus)}}
    path = _write(tmp_path, tiny_checkpoint, sst2, [{"name": "baseline"}, variant])
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path)
    assert str(raised.value) == (
        f"{path}: variants[1].heal: importance = {rule} ranks on task data while fine-tuning; heal needs a fixed trim"
    )


def test_a_heal_takes_a_trim_ranked_by_weights(tmp_path, tiny_checkpoint, sst2, corpus):
    variant = {"name": "x", "heads": 2, "importance": "magnitude", "heal": {"corpus": str(corpus)}}
    recipe = load_recipe(_write(tmp_path, tiny_checkpoint, sst2, [{"name": "baseline"}, variant]))
    assert recipe.variant("x").heal == {"corpus": str(corpus)}

def test_a_sweep_heals_once_for_every_seed_and_reports_the_cost(tmp_path, tiny_checkpoint, sst2, corpus, monkeypatch):
    heals = []
    real = trimbert.sweep.healing.heal
    monkeypatch.setattr(trimbert.sweep.healing, "heal", lambda *a, **k: heals.append(a[0]) or real(*a, **k))
    variants = [{"name": "baseline"}, {"name": "ffn-healed", "drop_ffn": "1", "heal": True}]
    path = _write(tmp_path, tiny_checkpoint, sst2, variants, {"corpus": str(corpus), **HEAL})
    result = run_sweep(path, tmp_path / "out")
    assert result.ok and len(heals) == 1
    folders = [p for p in (tmp_path / "out" / HEAL_DIR).iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / HEAL_FILE).is_file()  # no scratch trim left behind
    healed = ok_records(tmp_path / "out")["ffn-healed"]
    heal_json = json.loads((folders[0] / HEAL_FILE).read_text())["heal"]
    assert [r["heal"]["time_s"] for r in healed] == [heal_json["time_s"]] * 2
    assert [r["heal"]["reused"] for r in healed] == [False, True]
    assert {r["heal"]["dir"] for r in healed} == {str(folders[0])}
    assert all(r["trim_summary"] == "ffn-[1]" for r in healed)
    table = build_rows(collect_records([tmp_path / "out"]))
    assert "heal s" in [column.header for column in shown_columns(table)]
    row = next(r for r in table.rows if r.variant == "ffn-healed")
    assert row.heal_time_s == pytest.approx(heal_json["time_s"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert re.search(r"\| heal s \|", report) and "paid once per trim and healing" in report
    # Resume: nothing to do, nothing healed again; a new heal setting heals again (a new folder).
    assert run_sweep(path, tmp_path / "out").skipped and len(heals) == 1
    text = path.read_text().replace("steps = 2", "steps = 3")
    path.write_text(text)
    run_sweep(path, tmp_path / "out")
    assert len(heals) == 2 and len([p for p in (tmp_path / "out" / HEAL_DIR).iterdir() if p.is_dir()]) == 2


def test_without_heal_there_is_no_heal_column(tmp_path, tiny_checkpoint, sst2):
    path = tmp_path / "plain.toml"
    path.write_text(recipe_text(tiny_checkpoint, {"task": "sst2", "data_dir": str(sst2)}, [{"name": "baseline"}], finetune=FINETUNE, bench=BENCH))
    run_sweep(path, tmp_path / "out")
    table = build_rows(collect_records([tmp_path / "out"]))
    assert "heal s" not in [column.header for column in shown_columns(table)]


def test_heal_cost_without_the_heal_folder_keeps_the_folder_only(tmp_path):
    from trimbert.report.records import HealCost, Record
    from trimbert.sweep.healing import heal_cost

    assert heal_cost(tmp_path / "gone", True) == HealCost(dir=str(tmp_path / "gone"), reused=True)
    (tmp_path / "here").mkdir()
    healed = HealCost(time_s=2.5, tokens=7, loss_before=1.0, loss_after=0.5, teacher="t", corpus="c", settings={"steps": 2})
    (tmp_path / "here" / HEAL_FILE).write_text(json.dumps(Record(kind="heal", variant="h", model="m", heal=healed).to_dict()))
    assert heal_cost(tmp_path / "here", False) == HealCost(
        time_s=2.5, tokens=7, loss_before=1.0, loss_after=0.5, dir=str(tmp_path / "here"), reused=False
    )


def test_heal_records_are_not_rows_beside_evaluated_models():
    from trimbert.report.aggregate import merge_records
    from trimbert.report.records import HealCost, Record

    heal = Record(kind="heal", variant="dd4235b57462c0a6", model="m", train_time_s=389.0)
    tuned = Record(kind="sweep", variant="healed", model="m", metrics={"accuracy": 0.8}, seed=1, heal=HealCost(time_s=389.0))
    assert [row.variant for row in merge_records([heal, tuned])] == ["healed"]
    assert [row.variant for row in merge_records([heal])] == ["dd4235b57462c0a6"]
