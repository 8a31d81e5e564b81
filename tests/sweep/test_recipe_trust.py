"""Recipes refused before anything runs (issue 27, item 11): a heal corpus that is not text, a runtime
listed twice; and the same runtime check for ``bench --runtime``."""

import pytest
from conftest import write_sst2

from trimbert.errors import TrimbertError
from trimbert.sweep.recipe import load_recipe


def _recipe(tmp_path, tiny_checkpoint, *, bench: str = "", variant: str = "") -> str:
    data = write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=8)
    path = tmp_path / "r.toml"
    path.write_text(
        f'[model]\nsource = "{tiny_checkpoint}"\n[data]\ntask = "sst2"\ndata_dir = "{data}"\n[bench]\n{bench}\n'
        f'[[variants]]\nname = "baseline"\n[[variants]]\nname = "v"\ndrop_ffn = "1"\n{variant}\n'
    )
    return path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (bytes(range(256)) * 4, "is binary, not text (a NUL byte in its first MB)"),
        (b"caf\xe9 au lait\n", "is not UTF-8 text (byte 3 of the file: invalid continuation byte)"),
    ],
)
def test_a_heal_corpus_that_is_not_text_is_refused_by_the_dry_run(tmp_path, tiny_checkpoint, run_cli, content, problem):
    corpus = tmp_path / "binary.txt"
    corpus.write_bytes(content)
    path = _recipe(tmp_path, tiny_checkpoint, variant=f'heal = {{ corpus = "{corpus}" }}')
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path)
    assert str(raised.value) == f"{path}: variants[1].heal.corpus: {corpus} {problem}"
    code, stdout, err = run_cli("sweep", path, "--out", tmp_path / "out", "--dry-run")
    assert (code, err.strip()) == (2, f"error: {path}: variants[1].heal.corpus: {corpus} {problem}")
    assert not (tmp_path / "out").exists()


def test_a_text_corpus_passes_and_a_cut_multibyte_character_at_the_peek_is_no_error(tmp_path, tiny_checkpoint, monkeypatch):
    import trimbert.data.source

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("é" * 10 + "\n", encoding="utf-8")
    monkeypatch.setattr(trimbert.data.source, "TEXT_PEEK", 3)  # cuts the second "é" in half
    recipe = load_recipe(_recipe(tmp_path, tiny_checkpoint, variant=f'heal = {{ corpus = "{corpus}" }}'))
    assert recipe.variant("v").heal["corpus"] == str(corpus)


def test_a_runtime_listed_twice_is_refused(tmp_path, tiny_checkpoint, run_cli):
    path = _recipe(tmp_path, tiny_checkpoint, bench='runtimes = ["pytorch", "pytorch"]')
    with pytest.raises(TrimbertError) as raised:
        load_recipe(path)
    assert str(raised.value) == f"{path}: bench.runtimes: pytorch given more than once, got ['pytorch', 'pytorch']"
    code, _, err = run_cli("bench", tiny_checkpoint, "--runtime", "pytorch", "--runtime", "pytorch", "--device", "cpu")
    assert (code, err.strip()) == (2, "error: --runtime: pytorch given more than once, got ['pytorch', 'pytorch']")
