"""Recipes composed (``base``, ``unset``, ``--set``), validated by the nested settings models, ordered by
graphlib, fingerprinted from the resolved settings (and still resuming sweeps fingerprinted before)."""

from pathlib import Path

import pytest
from conftest import GLUE_DIR

from trimbert.errors import TrimbertError
from trimbert.search.settings import SearchSettings
from trimbert.sweep.compose import apply_sets, dumps, parse_set
from trimbert.sweep.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
BASE = """seeds = [1, 2]
[model]
source = "minilm"
[data]
task = "sst2"
[finetune]
epochs = 1
max_length = 32
max_train_samples = 100
[bench]
seq_len = 32
[[variants]]
name = "baseline"
[[variants]]
name = "kd"
drop_ffn = [1, 3]
teacher = "baseline"
distill = { alpha_hidden = 1.0 }
"""


@pytest.fixture(autouse=True)
def glue(monkeypatch):
    if not (GLUE_DIR / "SST-2").is_dir():
        pytest.skip(f"GLUE data not found at {GLUE_DIR}")
    monkeypatch.setenv("TRIMBERT_GLUE_DIR", str(GLUE_DIR))


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _message(path, **options) -> str:
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path, **options)
    return str(raised.value)


def test_a_base_is_merged_under_the_recipe(tmp_path):
    _write(tmp_path, "base.toml", BASE)
    child = _write(
        tmp_path, "child.toml",
        'base = "base.toml"\nunset = ["finetune.max_train_samples"]\n[data]\ntask = "mrpc"\n[finetune]\nepochs = 3\n'
        '[[variants]]\nname = "kd"\ndrop_ffn = "last:2"\n[[variants]]\nname = "relu"\nattention = "relu"\n',
    )
    recipe = load_recipe(child)
    assert recipe.task_name == "mrpc" and recipe.seeds == (1, 2) and recipe.files == [child, tmp_path / "base.toml"]
    assert (recipe.finetune.epochs, recipe.finetune.max_length, recipe.finetune.max_train_samples) == (3.0, 32, None)
    assert [(v.name, v.spec.summary(), v.teacher) for v in recipe.variants] == [
        ("baseline", "untrimmed", None), ("kd", "ffn-[4-5]", "baseline"), ("relu", "attn=relu", None)]
    assert recipe.variant("kd").distill == {"alpha_hidden": 1.0}  # kept from the base's kd
    # the sweep folder's copy is the composed recipe: it loads to the same units and fingerprints
    copy = _write(tmp_path, "copy.toml", recipe.text)
    again = load_recipe(copy)
    assert recipe.text.startswith(f"# {child}, composed from {child}, {tmp_path / 'base.toml'}\n")
    assert [again.fingerprint(v, 2) for v in again.variants] == [recipe.fingerprint(v, 2) for v in recipe.variants]


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"a.toml": 'base = "b.toml"\n', "b.toml": 'base = "a.toml"\n'}, "b.toml: base: recipes based on one another in a cycle: a.toml -> b.toml -> a.toml"),
        ({"a.toml": 'base = "nope.toml"\n'}, "a.toml: base: {tmp}/nope.toml does not exist"),
        ({"a.toml": "base = 3\n"}, "a.toml: base: expected the file name of another recipe, got 3"),
        ({"a.toml": 'unset = ["finetune.epochs"]\n'}, 'a.toml: unset: drops keys of a base recipe: give base = "other.toml" too'),
        ({"a.toml": 'base = "b.toml"\nunset = ["finetune.lr"]\n', "b.toml": BASE}, "a.toml: unset: finetune.lr: not a key of b.toml"),
    ],
)
def test_a_bad_base_is_one_line_naming_the_file(tmp_path, files, problem):
    for name, text in files.items():
        _write(tmp_path, name, text)
    assert _message(tmp_path / "a.toml") == f"{tmp_path}/" + problem.format(tmp=tmp_path)


def test_set_changes_keys_of_the_recipe_and_its_variants(tmp_path):
    path = _write(tmp_path, "r.toml", BASE)
    recipe = load_recipe(path, sets=["finetune.epochs=2", "variants.kd.drop_ffn=last:1", "data.task=mrpc", "bench.runtimes=['pytorch']"])
    assert recipe.finetune.epochs == 2.0 and recipe.task_name == "mrpc"
    assert recipe.variant("kd").spec.summary() == "ffn-[5]"
    assert recipe.text.endswith('[[variants]]\nname = "kd"\ndrop_ffn = "last:1"\nteacher = "baseline"\ndistill = { alpha_hidden = 1.0 }\n')
    assert parse_set("a.b = [1, 2]") == ("a.b", [1, 2]) and parse_set("x=alternate") == ("x", "alternate")
    assert apply_sets({"variants": [{"name": "v1.5"}]}, ["variants.v1.5.heads=8"]) == {"variants": [{"name": "v1.5", "heads": 8}]}
    assert _message(path, sets=["finetune.epochs=abc"]) == f"{path}: finetune.epochs: expected a number, got 'abc'"
    for bad, problem in [
        ("epochs", "--set epochs: expected KEY=VALUE, e.g. finetune.epochs=2"),
        ("variants.nope.drop_ffn=1", "--set variants.nope.drop_ffn=1: no variant named 'nope' (variants: baseline, kd)"),
        ("seeds.x=1", "--set seeds.x=1: seeds is not a table"),
    ]:
        assert _message(path, sets=[bad]) == problem


def test_set_on_the_command_line(tmp_path, run_cli):
    path = _write(tmp_path, "r.toml", BASE)
    code, stdout, err = run_cli("sweep", path, "--out", tmp_path / "out", "--dry-run", "--set", "variants.kd.drop_ffn=0", "--set", "seeds=[3]")
    assert code == 0, err
    assert "kd-seed3" in stdout and "ffn-[0]" in stdout and "recipe OK: 2 units selected, 2 to run" in stdout
    code, _, err = run_cli("sweep", path, "--out", tmp_path / "out", "--dry-run", "--set", "finetune.epochz=2")
    assert code == 2 and err.strip().splitlines() == [
        f"error: {path}: finetune.epochz: unknown key (known: epochs, lr, batch_size, eval_batch_size, max_length, "
        "max_train_samples, max_eval_samples, seed, warmup_ratio, weight_decay, eval_each_epoch); did you mean 'epochs'?"]


@pytest.mark.parametrize(
    ("sets", "problem"),
    [
        (['variants.baseline.teacher="kd"'], "variants[0].teacher: teacher cycle: baseline -> kd -> baseline"),
        (['variants.kd.teacher="kd"'], "variants[1].teacher: variant 'kd' cannot be its own teacher"),
        (["model=3"], "model: expected a table, got an integer"),
        (["variants.kd.finetune={seed=3}"], "variants[1].finetune.seed: set seeds for the whole recipe (seeds = [...]), not per variant"),
        (["variants.kd.importance=fast"], "variants[1].importance: unknown rule 'fast' (choose from magnitude, taylor, fisher)"),
        (["variants.baseline.distill={alpha_kd=1.0}"], 'variants[0].distill: needs a teacher (teacher = "<variant>")'),
        (["seeds=[]"], "seeds: expected a non-empty array of integers, got []"),
        (["finetune.seed=3"], "seeds: give either seeds = [...] or [finetune] seed, not both"),
        (["data.text_column=text"], "data.text_column: is for your own files (train), not for a GLUE task"),
        (["variants.kd.search={speedup=1.5}"], "variants[1].search: the search chooses the whole trim: remove drop_ffn from this variant"),
    ],
)
def test_problems_across_tables_name_the_key(tmp_path, sets, problem):
    path = _write(tmp_path, "r.toml", BASE)
    assert _message(path, sets=sets) == f"{path}: {problem}"


def test_teachers_run_first_by_graphlib_then_the_baseline_then_as_written(tmp_path):
    text = BASE + '[[variants]]\nname = "a"\nattention = "relu"\nteacher = "c"\n[[variants]]\nname = "c"\nlayernorm = "half"\n'
    recipe = load_recipe(_write(tmp_path, "r.toml", text))
    assert [v.name for v in recipe.order()] == ["baseline", "kd", "c", "a"]


def test_fingerprints_come_from_the_resolved_settings_and_old_ones_still_resume(tmp_path):
    recipe = load_recipe(_write(tmp_path, "r.toml", BASE))
    kd = recipe.variant("kd")
    entry = recipe.entry(kd, 1)
    assert entry["distill"]["temperature"] == 2.0 and entry["data"]["data_dir"] is None  # defaults spelled out
    assert entry["trim"] == {"drop_ffn": "1,3"} and entry["teacher"] == recipe.fingerprint(recipe.variant("baseline"), 1, bench=False)
    same = load_recipe(_write(tmp_path, "s.toml", BASE.replace("drop_ffn = [1, 3]", 'drop_ffn = "1,3"').replace(
        "distill = { alpha_hidden = 1.0 }", "distill = { alpha_hidden = 1.0, temperature = 2.0 }")))
    assert same.fingerprint(same.variant("kd"), 1) == recipe.fingerprint(kd, 1)
    # what trimbert recorded before the recipe models (the tables as written): still up to date
    old = BASE.replace("max_train_samples = 100\n", "")
    recipe = load_recipe(_write(tmp_path, "old.toml", old))
    assert {(v.name, seed): recipe.fingerprints(v, seed)[1] for v in recipe.variants for seed in (1, 2)} == {
        ("baseline", 1): "559e8ea98c0d0d2d", ("baseline", 2): "804b9891bc39eb35",
        ("kd", 1): "1a9d9555da02c56f", ("kd", 2): "a834c6c179ce3b07"}
    assert recipe.fingerprints(recipe.variant("kd"), 1, bench=False)[1] == "ea32e9206c150dd4"


def test_a_search_is_keyed_by_its_resolved_settings(tmp_path):
    text = BASE + '[[variants]]\nname = "s"\nsearch = { speedup = 1.5 }\n'
    spelled = BASE + '[[variants]]\nname = "s"\nsearch = { speedup = 1.5, runtime = "pytorch", probes = 16 }\n'
    one, two = load_recipe(_write(tmp_path, "a.toml", text)), load_recipe(_write(tmp_path, "b.toml", spelled))
    assert one.variant("s").search == two.variant("s").search == SearchSettings(speedup=1.5).to_dict()
    assert one.fingerprint(one.variant("s"), 1) == two.fingerprint(two.variant("s"), 1)


def test_the_compare_baselines_recipes_are_one_plus_small_ones():
    base = load_recipe(RECIPES / "compare-baselines.toml")
    for task in ("mrpc", "rte"):
        recipe = load_recipe(RECIPES / f"compare-baselines-{task}.toml")
        assert recipe.task_name == task and recipe.files[1] == RECIPES / "compare-baselines.toml"
        assert [(v.name, v.spec, v.teacher, v.distill, v.auto_drop) for v in recipe.variants] == [
            (v.name, v.spec, v.teacher, v.distill, v.auto_drop) for v in base.variants]
        assert recipe.finetune == base.finetune.updated(epochs=3.0, max_train_samples=None)
        assert recipe.bench == base.bench


def test_dumps_writes_toml_that_reads_back():
    import tomllib

    tables = {"seeds": [1], "x": {"a": float("inf"), "b": "é\"q", "c": True}, "variants": [{"name": "v", "t": {"k": [1, 2]}}]}
    assert tomllib.loads(dumps(tables, header="two\nlines")) == tables
