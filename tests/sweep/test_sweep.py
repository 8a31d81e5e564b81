"""Sweep recipes: validation before any training, resume after a kill, shards, failures, shipped recipes.

The sweeps here fine-tune the tiny 2-block random BERT on 16 SST-2-format rows (one optimizer step)
and bench it on one thread for two repeats, so that each variant takes a couple of seconds.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import GLUE_DIR, write_sst2
from transformers import BertConfig

import trimbert.sweep.benching
import trimbert.sweep.run
from trimbert.core.io import read_jsonl
from trimbert.errors import TrimbertError
from trimbert.measure.stats import paired_ratio
from trimbert.spec import TrimRequest
from trimbert.sweep.folder import lock
from trimbert.sweep.plan import RESULTS_FILE, parse_shard, partition, plan_sweep
from trimbert.sweep.recipe import Unit, load_recipe
from trimbert.sweep.run import run_sweep

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
FINETUNE = {"epochs": 1, "lr": 1e-3, "batch_size": 16, "max_length": 16, "seed": 7, "warmup_ratio": 0.0}
# max_seconds: no re-measuring of wide intervals here (tiny models are noisy; tests need no tight ratios).
BENCH = {"batch_size": 2, "seq_len": 16, "repeats": 2, "warmup": 1, "threads": 1, "device": "cpu", "max_seconds": 0.001}
THREE = [
    {"name": "baseline"},
    {"name": "ffn", "drop_ffn": "1"},
    {"name": "attn", "attention": "relu"},
]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    raise TypeError(value)


def recipe_text(model, data, variants, *, finetune=None, bench=None, top=None) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in (top or {}).items()]
    sections = (
        ("model", {"source": str(model)}),
        ("data", data),
        ("finetune", FINETUNE if finetune is None else finetune),
        ("bench", BENCH if bench is None else bench),
    )
    for name, table in sections:
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    for variant in variants:
        lines.append("[[variants]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in variant.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def sst2(tmp_path) -> Path:
    return write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=8)


@pytest.fixture
def make_recipe(tmp_path, tiny_checkpoint, sst2):
    """Write a recipe for the tiny checkpoint and the tiny SST-2 folder; returns its path."""

    def make(variants=THREE, name="recipe.toml", **options) -> Path:
        path = tmp_path / name
        data = options.pop("data", {"task": "sst2", "data_dir": str(sst2)})
        path.write_text(recipe_text(options.pop("model", tiny_checkpoint), data, variants, **options))
        return path

    return make


@pytest.fixture
def finetune_calls(monkeypatch):
    """Count the fine-tunes (by variant name), still running the real one; ``fail`` makes some raise."""
    real = trimbert.sweep.run.finetune
    calls: list[str] = []
    fail: dict[str, BaseException] = {}

    def counting(*args, **kwargs):
        calls.append(kwargs["variant"])
        if kwargs["variant"] in fail:
            raise fail.pop(kwargs["variant"])
        return real(*args, **kwargs)

    monkeypatch.setattr(trimbert.sweep.run, "finetune", counting)
    counting.calls, counting.fail = calls, fail
    return counting


def ok_records(out: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in read_jsonl(out / RESULTS_FILE):
        if row["status"] == "ok":
            found.setdefault(row["variant"], []).append(row)
    return found


# --------------------------------------------------------------------------------------------------
# Resume


def test_a_killed_sweep_resumes_without_recomputing_finished_variants(make_recipe, tmp_path, finetune_calls):
    recipe, out = make_recipe(), tmp_path / "sweep"
    finetune_calls.fail["ffn"] = KeyboardInterrupt()  # Ctrl-C in the middle of the 2nd variant

    with pytest.raises(KeyboardInterrupt):
        run_sweep(recipe, out)

    assert finetune_calls.calls == ["baseline", "ffn"]
    assert list(ok_records(out)) == ["baseline"]
    first_metrics = (out / "runs" / "baseline-seed7" / "metrics.json").read_bytes()
    finetune_calls.calls.clear()

    result = run_sweep(recipe, out)

    assert finetune_calls.calls == ["ffn", "attn"]  # baseline was not recomputed
    assert result.skipped == ["baseline-seed7"] and result.done == ["ffn-seed7", "attn-seed7"]
    assert (out / "runs" / "baseline-seed7" / "metrics.json").read_bytes() == first_metrics
    records = ok_records(out)
    assert {name: len(rows) for name, rows in records.items()} == {"baseline": 1, "ffn": 1, "attn": 1}
    assert len(read_jsonl(out / RESULTS_FILE)) == 3
    ffn = records["ffn"][0]
    assert ffn["kind"] == "sweep" and ffn["trim"]["drop_ffn"] == [1] and ffn["seed"] == 7
    assert ffn["u_star"] == "baseline"  # benched beside the fine-tuned baseline
    assert ffn["paired"]["baseline"]["latency"]["ratio"] == pytest.approx(
        paired_ratio(ffn["bench"]["reference_times_ms"], ffn["timing"]["times_ms"]).ratio
    )
    for key in ("latency_ms", "throughput", "flops_per_seq", "disk_bytes", "train_time_s"):
        assert ffn[key] > 0, key
    run_metrics = json.loads((out / "runs" / "ffn-seed7" / "metrics.json").read_text())["metrics"]
    assert ffn["metrics"] == run_metrics and set(run_metrics) == {"accuracy"}  # the run folder's own figures
    assert re.fullmatch(r"[0-9a-f]{16}", ffn["sweep"]["recipe_hash"]) and ffn["extra"] == {}
    assert (ffn["seq_len"], ffn["batch_size"]) == (BENCH["seq_len"], BENCH["batch_size"])
    assert {"report.md", "results.csv", "results.json"} <= {p.name for p in out.iterdir()}
    finetune_calls.calls.clear()

    again = run_sweep(recipe, out)  # nothing left to do

    assert finetune_calls.calls == [] and len(again.skipped) == 3
    assert len(read_jsonl(out / RESULTS_FILE)) == 3


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, tiny_checkpoint):
    """A finished two-variant sweep (recipe, out folder) to copy from."""
    root = tmp_path_factory.mktemp("finished")
    sst2 = write_sst2(root / "SST-2", train_rows=16, dev_rows=8)
    recipe = root / "recipe.toml"
    data = {"task": "sst2", "data_dir": str(sst2)}
    recipe.write_text(recipe_text(tiny_checkpoint, data, THREE[:2]))
    result = run_sweep(recipe, root / "sweep")
    assert result.ok and result.done == ["baseline-seed7", "ffn-seed7"]
    return recipe, root / "sweep", data


def copy_sweep(finished_sweep, tmp_path):
    recipe, out, data = finished_sweep
    shutil.copytree(out, tmp_path / "sweep")
    return recipe, tmp_path / "sweep", data


def test_a_torn_last_line_is_ignored_and_that_variant_reruns(finished_sweep, tmp_path, finetune_calls):
    recipe, out, _ = copy_sweep(finished_sweep, tmp_path)
    path = out / RESULTS_FILE
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # killed in the middle of writing the ffn record

    assert [row["variant"] for row in read_jsonl(path)] == ["baseline"]

    result = run_sweep(recipe, out)

    assert result.skipped == ["baseline-seed7"] and result.done == ["ffn-seed7"]
    # The kill hit the record, not the fine-tune: its complete run folder is reused, the bench reruns.
    assert finetune_calls.calls == [] and result.records[0].sweep.finetune_reused is True
    rows = [json.loads(line) for line in path.read_text().splitlines()]  # no corrupt line left behind
    assert [(row["variant"], row["status"]) for row in rows] == [("baseline", "ok"), ("ffn", "ok")]

    (out / "runs" / "ffn-seed7" / ".sweep-entry.json").unlink()  # killed before the run was marked
    text = path.read_text()
    path.write_text(text[: len(text) - 40])
    result = run_sweep(recipe, out)

    assert finetune_calls.calls == ["ffn"] and result.done == ["ffn-seed7"]
    assert [row["variant"] for row in read_jsonl(path)] == ["baseline", "ffn"]


def test_changing_one_variant_reruns_only_that_variant(finished_sweep, tmp_path, finetune_calls):
    recipe, out, data = copy_sweep(finished_sweep, tmp_path)
    changed = tmp_path / "changed.toml"
    # The variants reordered and the ffn spec changed: only ffn is stale.
    changed.write_text(
        recipe_text(Path(load_recipe(recipe).model), data, [THREE[1] | {"drop_ffn": "0"}, THREE[0]])
    )

    assert [(p.unit.name, p.action, p.reason) for p in plan_sweep(load_recipe(changed), out)] == [
        ("baseline-seed7", "skip", "up to date"),
        ("ffn-seed7", "run", "recipe changed"),
    ]
    result = run_sweep(changed, out)

    assert finetune_calls.calls == ["ffn"] and result.done == ["ffn-seed7"]
    assert json.loads((out / "runs" / "ffn-seed7" / "metrics.json").read_text())["trim"]["drop_ffn"] == [0]
    table = {row.variant: row for row in result.table.rows}
    assert table["ffn"].trim["drop_ffn"] == [0]  # the rerun replaced the old record in the report


def test_a_bench_only_change_rebenches_without_finetuning_again(finished_sweep, tmp_path, finetune_calls):
    recipe, out, data = copy_sweep(finished_sweep, tmp_path)
    changed = tmp_path / "changed.toml"
    changed.write_text(
        recipe_text(Path(load_recipe(recipe).model), data, THREE[:2], bench=BENCH | {"repeats": 3})
    )

    result = run_sweep(changed, out)

    assert result.done == ["baseline-seed7", "ffn-seed7"] and finetune_calls.calls == []
    assert all(r.sweep.finetune_reused and len(r.timing.times_ms) == 3 for r in result.records)
    before = {row["variant"]: row for row in read_jsonl(out / RESULTS_FILE)[:2]}
    assert all(r.metrics == before[r.variant]["metrics"] for r in result.records)


def test_a_kill_during_the_bench_reuses_the_finished_finetune(
    make_recipe, tmp_path, finetune_calls, monkeypatch
):
    recipe, out = make_recipe([{"name": "ffn", "drop_ffn": "0"}]), tmp_path / "sweep"
    real_bench = trimbert.sweep.benching.bench_models

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trimbert.sweep.benching, "bench_models", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(recipe, out)
    assert not (out / RESULTS_FILE).exists()  # the only unit never finished: nothing was recorded
    monkeypatch.setattr(trimbert.sweep.benching, "bench_models", real_bench)

    result = run_sweep(recipe, out)

    assert finetune_calls.calls == ["ffn"]  # only the first run fine-tuned
    (record,) = result.records
    assert record.status == "ok" and record.sweep.finetune_reused is True
    # No untrimmed variant in the recipe: benched beside the pretrained model with the same head.
    assert record.u_star.startswith("pretrained ")


# --------------------------------------------------------------------------------------------------
# Fingerprints and plans


def test_the_fingerprint_covers_the_entry_but_not_the_order_or_other_variants(make_recipe):
    base = load_recipe(make_recipe(THREE))

    def fingerprint(recipe_path, name="ffn", seed=7):
        recipe = load_recipe(recipe_path)
        return recipe.fingerprint(recipe.variant(name), seed)

    same = fingerprint(
        make_recipe([THREE[1], THREE[0], {"name": "other", "layernorm": "all"}], name="b.toml")
    )
    assert same == base.fingerprint(base.variant("ffn"), 7)
    different = [
        fingerprint(make_recipe([{"name": "ffn", "drop_ffn": "0"}], name="c.toml")),
        fingerprint(make_recipe(THREE, name="d.toml", finetune=FINETUNE | {"lr": 2e-3})),
        fingerprint(make_recipe(THREE, name="e.toml", bench=BENCH | {"seq_len": 32})),
        fingerprint(make_recipe([THREE[1] | {"finetune": {"epochs": 2.0}}], name="f.toml")),
        base.fingerprint(base.variant("ffn"), 8),
    ]
    assert same not in different and len(set(different)) == len(different)


def test_a_student_fingerprint_follows_its_teacher(make_recipe):
    student = {"name": "student", "drop_ffn": "1", "teacher": "baseline"}
    one = load_recipe(make_recipe([THREE[0], student], name="a.toml"))
    two = load_recipe(make_recipe([THREE[0] | {"finetune": {"lr": 5e-4}}, student], name="b.toml"))
    assert one.fingerprint(one.variant("student"), 7) != two.fingerprint(two.variant("student"), 7)
    assert one.variant("student").untrimmed is False and one.baseline.name == "baseline"


def test_teachers_run_first_and_only_brings_its_teachers(make_recipe, tmp_path):
    variants = [
        {"name": "student", "drop_ffn": "1", "teacher": "middle"},
        {"name": "middle", "attention": "relu", "teacher": "baseline"},
        {"name": "other", "layernorm": "half"},
        {"name": "baseline"},
    ]
    recipe = load_recipe(make_recipe(variants))
    assert [v.name for v in recipe.order()] == ["baseline", "middle", "student", "other"]
    plan = plan_sweep(recipe, tmp_path / "none", only="student")
    assert [p.unit.name for p in plan] == ["baseline-seed7", "middle-seed7", "student-seed7"]
    with pytest.raises(TrimbertError, match="--only: unknown variant"):
        plan_sweep(recipe, tmp_path / "none", only="student,nope")


def test_two_sweeps_cannot_write_one_folder(tmp_path):
    with lock(tmp_path), pytest.raises(TrimbertError, match="another sweep is writing"):
        with lock(tmp_path):
            pass


# --------------------------------------------------------------------------------------------------
# Shards


def _teacher_recipe():
    return [
        {"name": "baseline"},
        {"name": "a", "drop_ffn": "0", "teacher": "baseline"},
        {"name": "b", "drop_ffn": "1", "teacher": "a"},
        {"name": "c", "attention": "relu"},
        {"name": "d", "attention": "sigmoid"},
        {"name": "e", "layernorm": "half"},
        {"name": "f", "layernorm": "all"},
    ]


@pytest.mark.parametrize(
    "variants,seeds",
    [
        (THREE, None),
        (THREE + [{"name": f"v{i}", "drop_ffn": str(i % 2)} for i in range(6)], None),
        (_teacher_recipe(), None),
        (_teacher_recipe(), [1, 2, 3]),
        ([{"name": "only"}], None),
    ],
)
def test_shards_partition_the_units_disjointly_and_completely(make_recipe, variants, seeds):
    top = {"seeds": seeds} if seeds else None
    finetune = {k: v for k, v in FINETUNE.items() if k != "seed"} if seeds else None
    recipe = load_recipe(make_recipe(variants, top=top, finetune=finetune))
    reordered = load_recipe(make_recipe(variants[::-1], name="reordered.toml", top=top, finetune=finetune))
    everything = set(recipe.units())
    for count in (1, 2, 3, 5):
        shares = partition(recipe, count)
        assert len(shares) == count
        assert sum(len(share) for share in shares) == len(everything)
        assert set().union(*map(set, shares)) == everything
        assert [set(share) for share in partition(reordered, count)] == [set(share) for share in shares]
        for share in shares:
            for unit in share:  # a teacher sits in its students' share
                teacher = recipe.variant(unit.variant).teacher
                assert teacher is None or Unit(teacher, unit.seed) in share
            order = [u for u in recipe.units() if u in share]
            assert share == order
    sizes = [len(share) for share in partition(recipe, 2)]
    assert max(sizes) - min(sizes) <= 3  # the largest teacher group has 3 units


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("0/2", "3/2", "1/0"):
        with pytest.raises(TrimbertError, match=f"--shard: need 1 <= I <= N, got {bad}"):
            parse_shard(bad)
    for bad in ("1", "a/b"):
        with pytest.raises(TrimbertError, match=f"--shard: expected I/N such as 1/4, got '{bad}'"):
            parse_shard(bad)


def test_two_shards_then_report_merges_every_variant(make_recipe, tmp_path, run_cli):
    recipe = make_recipe()
    outs = [tmp_path / "shard-1", tmp_path / "shard-2"]
    for index, out in enumerate(outs, start=1):
        code, stdout, err = run_cli("sweep", recipe, "--out", out, "--shard", f"{index}/2")
        assert code == 0, err
    ran = [{row["variant"] for row in read_jsonl(out / RESULTS_FILE)} for out in outs]
    assert ran[0].isdisjoint(ran[1]) and ran[0] | ran[1] == {"baseline", "ffn", "attn"}

    code, stdout, err = run_cli("report", *outs, "--out", tmp_path / "merged")

    assert code == 0, err
    with open(tmp_path / "merged" / "results.csv", newline="") as handle:
        rows = {row["variant"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"baseline", "ffn", "attn"}
    assert rows["baseline"]["is_baseline"] == "true"
    assert all(rows[name]["status"] == "ok" and rows[name]["paired_speedup"] for name in ("ffn", "attn"))
    assert float(rows["ffn"]["speedup"]) == pytest.approx(float(rows["ffn"]["paired_speedup"]))


# --------------------------------------------------------------------------------------------------
# Failures


def test_a_failing_variant_is_recorded_and_the_others_finish(make_recipe, tmp_path, run_cli, finetune_calls):
    out = tmp_path / "sweep"
    finetune_calls.fail["ffn"] = RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    code, stdout, err = run_cli("sweep", make_recipe(THREE[:2]), "--out", out)

    assert "failed: ffn-seed7" in err
    rows = {row["variant"]: row for row in read_jsonl(out / RESULTS_FILE)}
    assert rows["baseline"]["status"] == "ok"
    assert rows["ffn"]["status"] == "failed"
    assert rows["ffn"]["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"
    assert "Traceback" in rows["ffn"]["sweep"]["traceback"]
    assert rows["ffn"]["trim"] == {"drop_ffn": [1], "attention": "softmax", "layernorm": []}
    report = (out / "report.md").read_text()
    assert "| ffn |" in report and "failed: RuntimeError: CUDA out of memory." in report
    assert "1 ran, 0 up to date, 1 failed" in stdout
    first_code = code

    code, _, err = run_cli("sweep", make_recipe(THREE[:2]), "--out", out)  # the failed one reruns

    assert code == 0, err
    assert finetune_calls.calls == ["baseline", "ffn", "ffn"]
    assert ok_records(out).keys() == {"baseline", "ffn"}
    assert first_code == 1


def _bad_recipes(tiny_checkpoint, sst2, tmp_path):
    """(recipe text, expected key, expected problem) for each validation error."""
    data = {"task": "sst2", "data_dir": str(sst2)}
    no_dev = write_sst2(tmp_path / "broken" / "SST-2")
    (no_dev / "dev.tsv").unlink()
    ok = [THREE[0], THREE[1]]
    return {
        "unknown key": (
            recipe_text(tiny_checkpoint, data, ok, finetune={"epoch": 1}),
            "finetune.epoch",
            "unknown key",
        ),
        "unknown variant key": (
            recipe_text(tiny_checkpoint, data, [THREE[0], {"name": "x", "dropffn": "1"}]),
            "variants[1].dropffn",
            "did you mean 'drop_ffn'",
        ),
        "bad spec": (
            recipe_text(tiny_checkpoint, data, [THREE[0], {"name": "x", "drop_ffn": "5"}]),
            "variants[1].drop_ffn",
            "block index 5 out of range for a 2-block model",
        ),
        "bad layernorm": (
            recipe_text(tiny_checkpoint, data, [{"name": "x", "drop_ffn": "1", "layernorm": "1.ffn"}]),
            "variants[0].layernorm",
            "does not exist",
        ),
        "bad attention": (
            recipe_text(tiny_checkpoint, data, [{"name": "x", "attention": "tanh"}]),
            "variants[0].attention",
            "unknown normalizer 'tanh'",
        ),
        "wrong type": (
            recipe_text(tiny_checkpoint, data, ok, finetune={"lr": "fast"}),
            "finetune.lr",
            "expected a number",
        ),
        "missing data file": (
            recipe_text(tiny_checkpoint, {"task": "sst2", "data_dir": str(no_dev)}, ok),
            "data.data_dir",
            "dev.tsv does not exist",
        ),
        "missing data folder": (
            recipe_text(tiny_checkpoint, {"task": "sst2", "data_dir": str(tmp_path / "nowhere")}, ok),
            "data.data_dir",
            "does not exist",
        ),
        "missing user file": (
            recipe_text(
                tiny_checkpoint,
                {"train": "no/such.csv", "text_column": "text", "label_column": "label"},
                ok,
            ),
            "data.train",
            "no/such.csv does not exist",
        ),
        "unknown task": (
            recipe_text(tiny_checkpoint, {"task": "sst3", "data_dir": str(sst2)}, ok),
            "data.task",
            "unknown GLUE task 'sst3'",
        ),
        "duplicate variant": (
            recipe_text(tiny_checkpoint, data, [*ok, {"name": "ffn", "attention": "relu"}]),
            "variants[2].name",
            "duplicate variant name 'ffn'",
        ),
        "unknown teacher": (
            recipe_text(tiny_checkpoint, data, [THREE[0], THREE[1] | {"teacher": "basline"}]),
            "variants[1].teacher",
            "unknown variant 'basline'",
        ),
        "teacher cycle": (
            recipe_text(
                tiny_checkpoint,
                data,
                [{"name": "a", "teacher": "b"}, {"name": "b", "drop_ffn": "0", "teacher": "a"}],
            ),
            "teacher",
            "teacher cycle",
        ),
        "too long": (
            recipe_text(tiny_checkpoint, data, ok, bench=BENCH | {"seq_len": 512}),
            "bench.seq_len",
            "exceeds the model's max_position_embeddings 128",
        ),
        "missing model": (
            recipe_text(tmp_path / "no-model", data, ok),
            "model.source",
            "does not exist",
        ),
        "bad name": (
            recipe_text(tiny_checkpoint, data, [{"name": "a/b"}]),
            "variants[0].name",
            "not a valid variant name",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown key",
        "unknown variant key",
        "bad spec",
        "bad layernorm",
        "bad attention",
        "wrong type",
        "missing data file",
        "missing data folder",
        "missing user file",
        "unknown task",
        "duplicate variant",
        "unknown teacher",
        "teacher cycle",
        "too long",
        "missing model",
        "bad name",
    ],
)
def test_a_bad_recipe_fails_before_any_training(
    case, tiny_checkpoint, sst2, tmp_path, run_cli, finetune_calls, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    text, key, problem = _bad_recipes(tiny_checkpoint, sst2, tmp_path)[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)

    with pytest.raises(TrimbertError, match=re.escape(f"{path}: ")) as raised:
        load_recipe(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and key in message and problem in message, message

    code, stdout, err = run_cli("sweep", path, "--out", tmp_path / "sweep")

    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0] == f"error: {message}", err
    assert finetune_calls.calls == []
    assert not (tmp_path / "sweep").exists()


def test_a_missing_or_invalid_recipe_file_is_one_line(tmp_path, run_cli):
    code, _, err = run_cli("sweep", tmp_path / "nope.toml", "--out", tmp_path / "out")
    assert code == 2 and "recipe" in err and "does not exist" in err
    (tmp_path / "broken.toml").write_text("[model\nsource = 1\n")
    code, _, err = run_cli("sweep", tmp_path / "broken.toml", "--out", tmp_path / "out")
    assert code == 2 and "not valid TOML" in err and len(err.strip().splitlines()) == 1


def test_seeds_multiply_the_units(make_recipe):
    finetune = {k: v for k, v in FINETUNE.items() if k != "seed"}
    recipe = load_recipe(make_recipe(THREE[:2], top={"seeds": [1, 2]}, finetune=finetune))
    assert [u.name for u in recipe.units()] == ["baseline-seed1", "ffn-seed1", "baseline-seed2", "ffn-seed2"]
    assert recipe.settings_for(recipe.variant("ffn"), 2).seed == 2
    with pytest.raises(TrimbertError, match="seeds: give either"):
        load_recipe(make_recipe(THREE[:2], name="both.toml", top={"seeds": [1]}))


def test_trim_keys_are_passed_through_to_finetune(make_recipe, tmp_path, monkeypatch):
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(trimbert.sweep.run, "finetune", fake)
    variant = {"name": "full", "drop_ffn": [1], "attention": "relu", "layernorm": "half"}
    result = run_sweep(make_recipe([variant]), tmp_path / "sweep")

    assert result.failed == ["full-seed7"]
    assert seen["request"] == TrimRequest(drop_ffn="1", attention="relu", layernorm="half")
    assert seen["force"] is True and seen["progress"] is False and "teacher" not in seen
    assert seen["settings"].seed == 7 and seen["variant"] == "full"


def test_a_student_gets_its_teachers_run_folder(make_recipe, tmp_path, finetune_calls, monkeypatch):
    seen = {}
    counting = trimbert.sweep.run.finetune

    def spy(*args, **kwargs):
        seen[kwargs["variant"]] = kwargs.get("teacher")
        return counting(*args, **kwargs)

    monkeypatch.setattr(trimbert.sweep.run, "finetune", spy)
    out = tmp_path / "sweep"
    variants = [{"name": "student", "drop_ffn": "1", "teacher": "baseline"}, THREE[0]]

    result = run_sweep(make_recipe(variants), out)

    assert result.ok, [r.error for r in result.records]
    assert finetune_calls.calls == ["baseline", "student"]  # the teacher first
    assert seen == {"baseline": None, "student": str(out / "runs" / "baseline-seed7")}


# --------------------------------------------------------------------------------------------------
# Shipped recipes


def test_every_shipped_recipe_validates(monkeypatch):
    monkeypatch.delenv("TRIMBERT_GLUE_DIR", raising=False)  # data from the Hub: nothing to check offline
    paths = sorted(RECIPES.glob("*.toml"))
    assert {p.name for p in paths} >= {
        "quickstart.toml",
        "trimbert-paper.toml",
        "ffn-curve.toml",
        "compare-baselines.toml",
    }
    for path in paths:
        text = path.read_text()
        if "bert-base" in text:
            # Validated against a local BERT-base config: the real one would come from the Hub.
            recipe = load_recipe(path, config=BertConfig())
        else:
            recipe = load_recipe(path)  # minilm: the config of the bundled model
        assert recipe.task_name in ("sst2", "mrpc", "rte") and recipe.variants, path
        assert recipe.baseline is not None, path


def test_the_quickstart_has_the_papers_full_combination_and_a_cpu_budget(monkeypatch):
    monkeypatch.delenv("TRIMBERT_GLUE_DIR", raising=False)
    recipe = load_recipe(RECIPES / "quickstart.toml")
    assert recipe.model == "minilm" and recipe.num_layers == 6 and 5 <= len(recipe.variants) <= 7
    full = [v for v in recipe.variants if set(v.trim.to_dict()) == {"drop_ffn", "attention", "layernorm"}]
    assert full and full[0].spec.summary() == "ffn-[1,3,5] attn=relu ln-4"
    assert recipe.finetune.epochs == 1 and recipe.finetune.max_train_samples <= 3000
    assert recipe.finetune.max_length <= 64 and recipe.bench.repeats <= 20


def test_the_paper_recipe_has_the_grid():
    recipe = load_recipe(RECIPES / "trimbert-paper.toml", config=BertConfig())
    assert recipe.model == "bert-base-uncased" and recipe.num_layers == 12
    specs = {v.name: v.spec for v in recipe.variants}
    assert {s.attention for s in specs.values()} >= {"relu", "relu-len", "sigmoid", "softermax"}
    assert len({s.drop_ffn for s in specs.values() if s.attention == "softmax" and not s.layernorm}) >= 5
    assert any(
        s.drop_ffn == tuple(range(1, 12, 2)) and s.attention == "relu" and s.layernorm for s in specs.values()
    )
    assert recipe.finetune.epochs == 3 and recipe.finetune.max_train_samples is None


def test_the_ffn_curve_drops_zero_to_all(monkeypatch):
    monkeypatch.delenv("TRIMBERT_GLUE_DIR", raising=False)
    recipe = load_recipe(RECIPES / "ffn-curve.toml")
    assert sorted(len(v.spec.drop_ffn) for v in recipe.variants) == list(range(7))


def test_the_shipped_recipes_find_the_local_glue_data(monkeypatch, run_cli, tmp_path):
    if not (GLUE_DIR / "SST-2").is_dir():
        pytest.skip(f"GLUE data not found at {GLUE_DIR}")
    monkeypatch.setenv("TRIMBERT_GLUE_DIR", str(GLUE_DIR))
    code, stdout, err = run_cli("sweep", RECIPES / "quickstart.toml", "--out", tmp_path / "qs", "--dry-run")
    assert code == 0, err
    assert "recipe OK: 7 units selected, 7 to run" in stdout
    assert not (tmp_path / "qs").exists()
    monkeypatch.setenv("TRIMBERT_GLUE_DIR", str(tmp_path))
    code, _, err = run_cli("sweep", RECIPES / "quickstart.toml", "--out", tmp_path / "qs", "--dry-run")
    assert code == 2 and "data.data_dir (from $TRIMBERT_GLUE_DIR)" in err


def test_the_display_shows_every_unit_and_the_overall_progress():
    import io

    from rich.console import Console

    from trimbert.cli.display import SweepDisplay

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with SweepDisplay(console, title="sweep test") as display:
        display("a-seed1", "skipped", "up to date")
        display("b-seed1", "pending", "new")
        display("c-seed1", "pending", "new")
        display("b-seed1", "running", "fine-tuning")
        display("b-seed1", "done", "accuracy 0.900")
        display("c-seed1", "failed", "RuntimeError: boom")
    text = buffer.getvalue()
    for word in ("a-seed1", "skipped", "b-seed1", "done", "accuracy 0.900", "c-seed1", "failed", "3/3"):
        assert word in text, word

    plain = io.StringIO()
    with SweepDisplay(Console(file=plain, force_terminal=False), title="log") as display:
        display("b-seed1", "running", "fine-tuning")
        display("b-seed1", "done", "accuracy 0.900")
    assert "done b-seed1" in plain.getvalue()


def test_comparison_baseline_keys_are_validated_and_passed(make_recipe, tmp_path, monkeypatch):
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(trimbert.sweep.run, "finetune", fake)
    variant = {"name": "narrow", "ffn_width": 32, "drop_layers": "1", "layernorm_replacement": "identity"}
    run_sweep(make_recipe([variant]), tmp_path / "sweep")
    assert seen["request"] == TrimRequest(ffn_width="32", drop_layers="1", layernorm_replacement="identity")
    with pytest.raises(TrimbertError, match=r"variants\[0\]\.drop_layers"):
        load_recipe(make_recipe([{"name": "x", "drop_layers": "7"}]))
    with pytest.raises(TrimbertError, match=r"variants\[0\]\.ffn_width"):
        load_recipe(make_recipe([{"name": "x", "ffn_width": 4096}]))


def test_compare_baselines_remove_matched_encoder_parameters():
    """FFN drop, whole-layer drop and FFN-width pruning each remove about 3.55M encoder parameters."""
    import copy

    import trimbert
    from trimbert.measure.size import encoder_parameters

    recipe = load_recipe(RECIPES / "compare-baselines.toml")
    assert {v.teacher for v in recipe.variants if v.name.endswith("-kd")} == {"baseline"}
    model = trimbert.load("minilm")
    full = encoder_parameters(model)
    removed = {}
    for variant in recipe.variants:
        if variant.teacher is None and variant.auto_drop is None and not variant.untrimmed:
            trimmed = trimbert.trim(copy.deepcopy(model), variant.trim)
            removed[variant.name] = full - encoder_parameters(trimmed)
    assert removed == {"ffn-alternate": 3_547_008, "layers-last2": 3_548_928, "ffn-width768": 3_543_552}


@pytest.mark.parametrize("replacement", ["dyt", "identity"])
def test_a_layernorm_replacement_is_resolved_with_its_layernorms(make_recipe, replacement):
    variants = [{"name": "baseline"}, {"name": "ln", "layernorm": "half", "layernorm_replacement": replacement}]
    spec = load_recipe(make_recipe(variants)).variant("ln").spec
    assert spec.layernorm == ("0.attn", "1.attn") and spec.layernorm_replacement == replacement
