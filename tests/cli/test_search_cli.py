"""``trimbert search`` from the command line: outputs, the spec file round trip, one-line errors."""

import json
import statistics
from pathlib import Path

import pytest
import tomllib
from conftest import write_sst2
from recorded_latency import recorded_ms, recorded_speedup, use_recorded_latency

import trimbert
from trimbert.data.batches import make_batches
from trimbert.data.source import DataSource
from trimbert.data.tasks import get_task
from trimbert.model import checkpoint
from trimbert.search.estimator import model_metric, score_rows
from trimbert.spec import TrimSpec
from trimbert.train.settings import FinetuneSettings

FAST = (
    "--max-train-samples", "48", "--epochs", "1", "--train-batch-size", "8", "--max-length", "16", "--score-rows", "16", "--final-rows", "24",
    "--population", "3", "--generations", "1", "--probes", "6", "--repeats", "3", "--max-drop-layers", "1",
    "--batch-size", "1", "--seq-len", "16", "--threads", "1",
)


@pytest.fixture(autouse=True)
def recorded_latency(monkeypatch):
    """Every test here fits the latency predictor on recorded timings (tests/recorded_latency.py) instead of
    timing the probes on this machine, so the predicted speed-ups, and the search window they fall in, are the
    same on every run however loaded the machine is. Returns the recorded latency (ms) of a spec."""
    use_recorded_latency(monkeypatch)
    return recorded_ms  # of the tiny checkpoint's shape


def test_search_writes_the_front_and_a_spec_that_trim_applies(run_cli, tiny_checkpoint, tmp_path, recorded_latency):
    data = write_sst2(tmp_path / "SST-2", train_rows=96, dev_rows=8)
    out = tmp_path / "search"
    args = ("search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--speedup", "1.01", *FAST, "--verify", "0")
    code, stdout, err = run_cli(*args, "--cache-dir", tmp_path / "cache", "--out", out)
    assert code == 0, err
    assert "measured 7 probe trims" in stdout  # --probes 6, but every corner of the space is a probe
    result = json.loads((out / "search.json").read_text())
    low, high = result["speedup_window"]
    assert f"Pareto front (target 1.01x, candidates predicted {low:.2f}-{high:.2f}x; {len(result['candidates'])} candidates" in stdout
    assert f"chosen: {result['best']['summary']}  (" in stdout
    assert result["target_speedup"] == 1.01  # a target the untrimmed model misses (one it meets is refused)
    assert len(result["predictor"]["probes"]) == 7 and result["predictor"]["cached"] is False
    assert result["estimator"]["kind"] == "one-shot" and result["estimator"]["score_rows"] == 16
    assert result["estimator"]["score_split"] == "train (rows not trained on)"
    # drawn from 5% under the target (--undershoot 0.05) to 10% over it (--overshoot 0.1)
    assert result["speedup_window"] == [1.01 * 0.95, 1.01 * 1.1]
    assert all(1.01 * 0.95 <= item["predicted_speedup"] <= 1.01 * 1.1 for item in result["candidates"])
    # the finalists: the 8 best estimates and every pattern, re-scored on the 24 rows left; the best fresh score wins
    assert result["estimator"]["final_rows"] == 24
    finalists = result["estimator"]["finalists"]
    ranked = sorted(result["candidates"], key=lambda item: (-item["estimate"], item["predicted_ms"]))
    patterns = [item["summary"] for item in ranked[8:] if item["origin"].startswith("pattern: ")]
    assert sorted(item["summary"] for item in finalists) == sorted([item["summary"] for item in ranked[:8]] + patterns)
    assert result["best"] == finalists[0] and result["best"]["final_estimate"] == max(item["final_estimate"] for item in finalists)
    assert {pattern["name"] for pattern in result["estimator"]["patterns"]} >= {"drop-ffn first:1", "drop-layers last:1"}
    assert (out / "front.png").stat().st_size > 1000
    front = (out / "front.md").read_text().splitlines()
    assert front[0].startswith("| trim | predicted ms") and len(front) == 2 + len(result["front"]) + 5 + len(finalists)
    assert front[2 + len(result["front"]) + 1].startswith("Finalists, re-scored on 24 fresh rows (the winner is the best fresh score")
    assert "Finalists, re-scored on 24 fresh rows" in stdout and "no finalists" not in stdout
    best = json.loads((out / "best.json").read_text())
    assert best["trim_spec"] == result["best"]["spec"]
    assert best["estimate"] == result["best"]["final_estimate"] and best["search_estimate"] == result["best"]["estimate"]
    variant = tomllib.loads((out / "variant.toml").read_text())["variants"][0]
    assert variant["name"] == "searched"

    code, _, err = run_cli("trim", tiny_checkpoint, "--spec", out / "best.json", "--out", tmp_path / "trimmed",
                           "--task", "sst2", "--data-dir", data)
    assert code == 0, err
    applied = trimbert.load(tmp_path / "trimmed").config.spec
    assert applied == TrimSpec.from_dict(best["trim_spec"])

    code, stdout, err = run_cli(
        *args, "--cache-dir", tmp_path / "cache", "--out", tmp_path / "again", "--json", "--finetune", "--bench-seconds", "1"
    )
    assert code == 0, err
    again = json.loads(stdout)
    assert again["predictor"]["cached"] is True
    trained = again["finetune"]
    assert trained["metric"] == "accuracy" and trained["estimate"] == again["best"]["final_estimate"]
    # against U*: the untrimmed model in whichever installed runtime measured fastest
    runtimes = ("", "@ort", "@ort-int8", "@ov", "@ov-int8")
    assert trained["versus"] in {"baseline" + suffix for suffix in runtimes} and trained["measured_speedup"] > 0
    # distilled from the fine-tuned baseline by default, hidden states included
    assert trained["distilled"] == {"temperature": 2.0, "alpha_ce": 0.5, "alpha_kd": 0.5, "alpha_hidden": 1.0}
    recorded = json.loads((tmp_path / "again" / "finetune" / "searched" / "metrics.json").read_text())
    assert recorded["training"]["distill"]["teacher"] == str(tmp_path / "again" / "finetune" / "baseline")
    assert recorded["metrics"]["accuracy"] == trained["searched"]
    assert recorded["trim_summary"] == TrimSpec.from_dict(again["best"]["spec"]).summary()


def test_the_best_verified_finalist_wins(run_cli, tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=96, dev_rows=8)
    code, stdout, err = run_cli(
        "search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--speedup", "1.01", *FAST,
        "--cache-dir", tmp_path / "cache", "--out", tmp_path / "search", "--json",
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["estimator"]["kind"] == "one-shot" and result["estimator"]["sub_trims_drawn"] > 0
    finalists = result["estimator"]["finalists"]
    verified = [item for item in finalists if item["verified"] is not None]
    assert verified[:4] == finalists[:4]  # --verify 4 by default: the 4 best fresh scores, and maybe one pattern
    assert len(verified) <= 5 and all(item["origin"].startswith("pattern: ") for item in verified[4:])
    assert result["best"]["verified"] == max(item["verified"] for item in verified)


def test_without_spare_rows_for_finalists_the_search_says_so(run_cli, tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=96, dev_rows=8)
    code, stdout, err = run_cli(
        "search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--speedup", "1.01", *FAST, "--final-rows", "3000",
        "--cache-dir", tmp_path / "cache", "--out", tmp_path / "search",
    )
    assert code == 0, err
    assert "no finalists: fewer than 100 fresh training rows were left after the score rows" in " ".join(stdout.split())
    result = json.loads((tmp_path / "search" / "search.json").read_text())
    assert result["estimator"]["finalists"] == [] and result["estimator"]["final_rows"] == 0
    assert result["best"]["estimate"] == max(item["estimate"] for item in result["candidates"])
    # the candidates: trims the recorded timings predict from 5% under the target to 10% over it; none past
    # 1.111x (a dropped FFN: 10.4 / 7.8 = 1.33x)
    assert result["speedup_window"] == [1.01 * 0.95, 1.01 * 1.1]
    speedups = {item["summary"]: recorded_speedup(TrimSpec.from_dict(item["spec"])) for item in result["candidates"]}
    assert {item["summary"]: item["predicted_speedup"] for item in result["candidates"]} == pytest.approx(speedups)
    assert all(1.01 * 0.95 <= speedup <= 1.01 * 1.1 for speedup in speedups.values())
    assert not (tmp_path / "search" / "verify").exists()


def test_verify_fine_tunes_the_best_finalists_and_keeps_the_most_accurate_on_fresh_rows(run_cli, tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=96, dev_rows=8)
    out = tmp_path / "search"
    code, stdout, err = run_cli(
        "search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--speedup", "1.01", *FAST, "--verify", "2",
        "--verify-seeds", "2", "--cache-dir", tmp_path / "cache", "--out", out, "--json", "--finetune", "--bench-seconds", "1",
        "--no-distill",
    )
    assert code == 0, err
    result = json.loads(stdout)
    settings = FinetuneSettings(max_train_samples=48, max_length=16, seed=42)
    tokenizer = checkpoint.load_tokenizer(tiny_checkpoint)
    _, rows, _ = score_rows(DataSource(task="sst2", data_dir=str(tmp_path)), tokenizer, settings, 16, final_rows=24)
    fresh = make_batches(rows, tokenizer, batch_size=settings.eval_batch_size)
    finalists = result["estimator"]["finalists"]
    verified = [item for item in finalists if item["verified"] is not None]
    assert verified[:2] == finalists[:2]  # the 2 best fresh scores
    patterns = [item for item in finalists if item["origin"].startswith("pattern: ")]
    if patterns and not any(item["origin"].startswith("pattern: ") for item in finalists[:2]):
        assert verified[2:] == patterns[:1]  # and the best pattern, when neither is one
    else:
        assert len(verified) == 2
    best = max(verified, key=lambda item: (item["verified"], -item["predicted_ms"]))
    assert result["best"] == best and "verify_s" in result["phases_s"]
    front = (out / "front.md").read_text()
    for index, item in enumerate(verified):
        scores = []
        for seed, run in ((42, out / "verify" / f"finalist-{index}"), (43, out / "verify" / f"finalist-{index}-seed43")):
            record = json.loads((run / "metrics.json").read_text())
            assert record["trim_summary"] == item["summary"] and record["seed"] == seed
            model = trimbert.load(run)
            assert model.config.spec == TrimSpec.from_dict(item["spec"])
            scores.append(model_metric(model, get_task("sst2"), fresh))  # judged on the fresh rows, not dev
        assert item["verified_by_seed"] == scores and item["verified"] == statistics.fmean(scores)
        assert f"| {item['verified']:.4f} ({scores[0]:.4f}, {scores[1]:.4f}) | {item['origin']} |" in front
    chosen = json.loads((out / "best.json").read_text())
    assert chosen["verified"] == best["verified"]
    winner = f"verify/finalist-{verified.index(best)}"
    assert chosen["verified_run"] == winner
    # --finetune --no-distill reuses the verified run of the winner (fine-tuned plain) instead of training it again
    trained = result["finetune"]
    assert trained["distilled"] is None
    assert trained["searched_run"] == winner and not (out / "finetune" / "searched").exists()
    assert trained["searched"] == json.loads((out / winner / "metrics.json").read_text())["metrics"]["accuracy"]
    assert trained["trim"] == best["summary"] and trained["measured_speedup"] > 0


def test_search_refuses_bad_input_in_one_line(run_cli, tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=4)
    base = ("search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--out", tmp_path / "s", "--cache-dir", tmp_path / "c")
    cases = [
        ((), "error: give exactly one target: --speedup X or --latency-ms X"),
        (("--speedup", "1.5", "--latency-ms", "3"), "error: give exactly one target: --speedup X or --latency-ms X"),
        (("--speedup", "0.5"), "error: --speedup: must be at least 1.0, got 0.5"),
        (("--speedup", "1.5", "--widths", "0.5,abc"), "error: --widths: 'abc' is not a number"),
        (("--speedup", "1.5", "--max-drop-layers", "2"), "error: --max-drop-layers: 2 is not between 0 and 1"),
        (("--speedup", "1.5", "--verify", "0", "--verify-seeds", "2"), "error: --verify-seeds: nothing is verified with --verify 0"),
        (("--speedup", "1000", "--undershoot", "0", *FAST), "error: no trim in the search space is predicted to reach 1000.00x"),
        (("--speedup", "1000", *FAST), "error: no trim in the search space is predicted to reach 950.00x"),
        (("--speedup", "1.05", "--overshoot", "0", "--undershoot", "0", "--json", *FAST),
         "error: the search found no trim predicted between 1.05x and 1.05x"),
    ]
    for extra, message in cases:
        code, _, err = run_cli(*base, *extra)
        assert code == 2 and err.strip().startswith(message), (extra, err)
        assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli("search", tiny_checkpoint, "--speedup", "1.5", "--out", tmp_path / "s")
    assert code == 2 and err.strip() == "error: search needs data to estimate accuracy on: give --task (and --data-dir) or --train"
    trimmed = tmp_path / "trimmed"
    trimbert.save(trimbert.trim(trimbert.load(tiny_checkpoint), drop_ffn="0"), trimmed)
    code, _, err = run_cli("search", trimmed, "--task", "sst2", "--data-dir", data, "--speedup", "1.2", "--out", tmp_path / "s", "--cache-dir", tmp_path / "c")
    assert code == 2 and err.strip() == f"error: {trimmed} is already trimmed: search starts from an untrimmed checkpoint"
    assert not (tmp_path / "s").exists()
    code, _, err = run_cli("trim", tiny_checkpoint, "--spec", tmp_path / "none.json", "--out", tmp_path / "t")
    assert code == 2 and err.strip() == f"error: --spec: {tmp_path / 'none.json'} does not exist"
    (tmp_path / "bad.json").write_text('{"spec": {}}')
    code, _, err = run_cli("finetune", tiny_checkpoint, "--spec", tmp_path / "bad.json", "--task", "sst2", "--data-dir", data, "--out", tmp_path / "t")
    assert code == 2 and err.strip() == f"error: --spec: {tmp_path / 'bad.json'} has no trim_spec object (write one with trimbert search)"


def test_finetune_heals_and_distils_the_winner_when_asked(run_cli, tiny_checkpoint, tmp_path, recorded_latency):
    data = write_sst2(tmp_path / "SST-2", train_rows=96, dev_rows=8)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i} of plain text about a film\n" for i in range(300)))
    out = tmp_path / "search"
    # the default window, 1.045x-1.21x (--undershoot 0.05, --overshoot 0.1): the recorded timings put narrowed FFNs and
    # ReLU attention in it (an FFN at half width: 10.4 / 9.4 = 1.106x), dropped FFNs and blocks past it
    code, stdout, err = run_cli(
        "search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--speedup", "1.1", *FAST,
        "--verify", "1", "--cache-dir", tmp_path / "cache", "--out", out, "--json", "--finetune", "--bench-seconds", "1",
        "--distill-alpha-kd", "0.7", "--heal-corpus", corpus, "--heal-steps", "3",
        "--heal-lr", "2e-4", "--heal-corpus-texts", "200",
    )
    assert code == 0, err
    result = json.loads(stdout)
    trained, best = result["finetune"], json.loads((out / "best.json").read_text())
    assert not TrimSpec.from_dict(best["trim_spec"]).is_empty  # the floor, 1.045x, leaves the untrimmed model out
    # the predictor was fitted on the recorded timings, and predicts them: the winner lies in the default window
    assert [probe["measured_ms"] for probe in result["predictor"]["probes"]] == [
        recorded_latency(TrimSpec.from_dict(probe["spec"])) for probe in result["predictor"]["probes"]
    ]
    assert result["speedup_window"] == [1.1 * 0.95, 1.1 * 1.1]
    winner = TrimSpec.from_dict(best["trim_spec"])
    assert best["predicted_speedup"] == pytest.approx(recorded_latency(TrimSpec()) / recorded_latency(winner))
    assert 1.1 * 0.95 <= best["predicted_speedup"] <= 1.1 * 1.1
    # healed from the untrimmed model on the corpus (3 steps × 32 texts), then fine-tuned (not the --verify run)
    healed = trained["healed"]
    assert healed["dir"] == "finetune/healed" and healed["corpus"] == str(corpus) and healed["settings"]["steps"] == 3
    assert healed["settings"]["lr"] == 2e-4 and healed["settings"]["corpus_texts"] == 200
    heal_record = json.loads((out / "finetune" / "healed" / "heal.json").read_text())
    assert healed["tokens"] == heal_record["heal"]["tokens"] > 0 and heal_record["heal"]["teacher"] == str(tiny_checkpoint)
    assert trimbert.load(out / "finetune" / "healed").config.spec == TrimSpec.from_dict(best["trim_spec"])
    assert trained["searched_run"] == "finetune/searched"
    searched = json.loads((out / "finetune" / "searched" / "metrics.json").read_text())
    assert searched["model"] == str(out / "finetune" / "healed")
    # distilled from the baseline it was just compared with, with the weights given
    assert trained["distilled"] == {"temperature": 2.0, "alpha_ce": 0.5, "alpha_kd": 0.7, "alpha_hidden": 1.0}
    assert searched["training"]["distill"]["teacher"] == str(out / "finetune" / "baseline")
    assert trained["searched"] == searched["metrics"]["accuracy"] and trained["trim"] == best["summary"]


def test_heal_and_distill_options_refuse_what_cannot_work_in_one_line(run_cli, tiny_checkpoint, tmp_path):
    data = write_sst2(tmp_path / "SST-2", train_rows=16, dev_rows=4)
    base = ("search", tiny_checkpoint, "--task", "sst2", "--data-dir", data, "--speedup", "1.2", "--out", tmp_path / "s",
            "--cache-dir", tmp_path / "c")
    cases = [
        (("--distill",), "error: --distill, --no-distill and --heal-corpus say how --finetune trains the winner: add --finetune"),
        (("--heal-corpus", data), "error: --distill, --no-distill and --heal-corpus say how --finetune trains the winner: add --finetune"),
        (("--no-distill",), "error: --distill, --no-distill and --heal-corpus say how --finetune trains the winner: add --finetune"),
        (("--distill-alpha-kd", "1"), "error: --distill-* settings say how --finetune distils the winner: add --finetune, drop --no-distill"),
        (("--finetune", "--no-distill", "--distill-alpha-kd", "1"),
         "error: --distill-* settings say how --finetune distils the winner: add --finetune, drop --no-distill"),
        (("--finetune", "--heal-steps", "9"), "error: --heal-* settings need --heal-corpus"),
        (("--finetune", "--heal-corpus", tmp_path / "none.txt"), f"error: --heal-corpus: {tmp_path / 'none.txt'} does not exist (relative to {Path.cwd()})"),
        (("--finetune", "--heal-corpus", data, "--heal-schedule", "progressive"),
         "error: --heal-schedule progressive re-trims from the untrimmed model and cannot choose Taylor-ranked FFN neurons "
         "again: use --heal-schedule oneshot or --importance magnitude"),
        (("--finetune", "--heal-corpus", data, "--heal-steps", "0"), "error: --heal-steps: must be at least 1, got 0"),
    ]
    for extra, message in cases:
        code, _, err = run_cli(*base, *extra)
        assert code == 2 and err.strip() == message, (extra, err)
    assert not (tmp_path / "s").exists()
