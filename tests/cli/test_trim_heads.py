"""``trimbert trim --heads``: pruned attention heads from the command line, inspected and loaded back."""

import json

import pytest
import torch

import trimbert
from trimbert.model.structure import head_counts

PARAMS_PER_HEAD = 4 * 384 * 32 + 3 * 32  # MiniLM


def test_trim_heads_round_trip(run_cli, tmp_path, tiny_batch):
    out = tmp_path / "heads"
    code, stdout, err = run_cli("trim", "minilm", "--out", out, "--heads", "0:4,3=0+2+5", "--drop-layers", "5")
    assert code == 0, err
    assert "layers-[5] heads=4[0],3[3]" in stdout
    assert '"heads": {"0": 4, "3": 3}' in stdout and '"heads_rule": "explicit and magnitude"' in stdout
    code, stdout, _ = run_cli("inspect", out, "--json")
    data = json.loads(stdout)
    assert [block["heads"] for block in data["blocks"]] == [4, 12, 12, 3, 12, None]
    assert data["params"] == 22_713_216 - 1_774_464 - 17 * PARAMS_PER_HEAD
    assert data["trim"]["heads"] == {"0": 4, "3": 3}
    model = trimbert.load(out)
    assert head_counts(model) == {0: 4, 1: 12, 2: 12, 3: 3, 4: 12}
    direct = trimbert.trim(trimbert.load("minilm"), heads="0:4,3=0+2+5", drop_layers="5")
    with torch.no_grad():
        assert model(**tiny_batch).last_hidden_state.equal(direct(**tiny_batch).last_hidden_state)
    code, stdout, _ = run_cli("inspect", out)
    assert code == 0 and "heads" in stdout
    again = tmp_path / "again"
    code, stdout, err = run_cli("trim", out, "--out", again, "--heads", "2")
    assert code == 0, err
    assert "layers-[5] heads=2" in stdout
    assert head_counts(trimbert.load(again)) == dict.fromkeys(range(5), 2)


def test_trim_help_names_heads(run_cli):
    code, out, _ = run_cli("trim", "--help")
    assert code == 0 and "--heads" in out


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x", "error: --heads: unknown head selection 'x' (use a number like 8, block:count pairs like 0:4,3:8, or block=heads like 3=0+2+5)"),
        ("12", "error: --heads: block 0 keeps 12 heads: must be fewer than the number of attention heads (12)"),
        ("3=12", "error: --heads: block 3 has no head 12 (its 12 heads are 0-11)"),
        ("0:0", "error: --heads: block 0 must keep at least one head (got 0)"),
        ("6:2", "error: --heads: block index 6 out of range for a 6-block model"),
    ],
)
def test_bad_heads_are_one_line_errors(run_cli, tmp_path, value, message):
    out = tmp_path / "out"
    code, stdout, err = run_cli("trim", "minilm", "--out", out, "--heads", value)
    assert (code, err) == (2, message + "\n")
    assert not out.exists()


def test_trim_heads_by_fisher_on_task_data(run_cli, tmp_path, tiny_checkpoint, monkeypatch):
    from conftest import write_sst2

    from trimbert.data.batches import sample_batches
    from trimbert.importance.fisher import fisher_scores
    from trimbert.importance.rules import score

    drawn = []

    def recorded(*args, **kwargs):
        drawn.extend(sample_batches(*args, **kwargs))
        return drawn

    monkeypatch.setattr("trimbert.pipeline.sample_batches", recorded)
    data = write_sst2(tmp_path / "SST-2")
    out = tmp_path / "fisher"
    code, stdout, err = run_cli(
        "trim", tiny_checkpoint, "--out", out, "--heads", "2", "--importance", "fisher",
        "--task", "sst2", "--data-dir", data, "--samples", "16",
    )
    assert code == 0, err
    assert '"heads_rule": "fisher (hidden-gaussian)"' in stdout
    assert sum(len(batch["input_ids"]) for batch in drawn) == 16
    original = trimbert.load(tiny_checkpoint)
    expected = fisher_scores(original, drawn, has_head=False, seed=0).importance().head_order()
    by_magnitude = score(original, "magnitude").head_order()
    assert any(sorted(expected[b][:2].tolist()) != sorted(by_magnitude[b][:2].tolist()) for b in (0, 1))
    model = trimbert.load(out)
    assert head_counts(model) == {0: 2, 1: 2}
    for block in (0, 1):
        heads = original.encoder.layer[block].attention.self.query.weight.reshape(4, 8, 32)
        kept = sorted(expected[block][:2].tolist())
        assert model.encoder.layer[block].attention.self.query.weight.equal(heads[kept].reshape(16, 32))


def test_unknown_importance_rule_is_one_line(run_cli, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("trim", "minilm", "--out", out, "--heads", "2", "--importance", "bogus")
    assert (code, err) == (2, "error: --importance: unknown rule 'bogus' (choose from magnitude, taylor, fisher)\n")
    assert not out.exists()
