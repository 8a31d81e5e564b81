"""The estimator: sub-trims sampled per step, candidates scored by masking, rows not trained on, ranks."""


import numpy as np
import pytest
import torch
from datasets import DatasetDict
from transformers import BertForSequenceClassification

from tests.conftest import GLUE_DIR, tiny_config
from trimbert.data.sampling import tokenize
from trimbert.data.source import DataSource
from trimbert.data.tasks import get_task
from trimbert.errors import TrimbertError
from trimbert.importance.magnitude import magnitude
from trimbert.model import checkpoint
from trimbert.model.trim import trim
from trimbert.search.estimator import FULL_MODEL_SHARE, Estimator, SubTrimSampler, score_rows
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimSpec
from trimbert.train.settings import FinetuneSettings


@pytest.fixture
def binary_model():
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config(num_labels=2)).eval()


def test_sampler_draws_a_sub_trim_per_step_and_the_full_model_a_quarter_of_the_time(binary_model, tiny_batch):
    space = SearchSpace(4, 64, widths=(32, 16), normalizers=("softmax", "relu"), max_drop_layers=1)
    sampler = SubTrimSampler(space, magnitude(binary_model).neuron_order(), seed=0)
    with torch.no_grad():
        before = binary_model(**tiny_batch).logits
    sampler.on_train_begin(None, None, None, model=binary_model)
    full = 0
    for _ in range(400):
        sampler.on_step_begin(None, None, None)
        gates = sampler.gates
        full += all(bool((tensor == 1).all()) for tensor in gates.tensors())
    assert sampler.drawn + full >= 400 - 5  # a random draw may be the untrimmed model itself
    assert abs(full / 400 - FULL_MODEL_SHARE) < 0.06
    sampler.on_train_end(None, None, None)
    with torch.no_grad():
        assert binary_model(**tiny_batch).logits.equal(before)


def test_scores_are_the_metric_of_the_masked_model(tiny_batch):
    # weights drawn wider than BERT's 0.02 so that the trim changes a prediction on these three rows: the untrimmed
    # model predicts 0, 0, 1 and the trimmed one 0, 0, 0 (at 0.02 both predict 1, 1, 1 and no score tells them apart)
    torch.manual_seed(0)
    config = tiny_config(num_labels=2)
    config.initializer_range = 0.2
    binary_model = BertForSequenceClassification(config).eval()
    labels = torch.tensor([0, 1, 1])
    order = magnitude(binary_model).neuron_order()
    estimator = Estimator(binary_model, get_task("sst2"), [{**tiny_batch, "labels": labels}], order, "train", 3, 0.0, scorer="head")
    spec = TrimSpec(drop_ffn=(1,), ffn_width={0: 16}, attention="relu")
    expected = {}
    for candidate in (TrimSpec(), spec):
        import copy

        model = trim(copy.deepcopy(binary_model), candidate, ffn_importance=magnitude(binary_model).neurons if candidate.ffn_width else None)
        with torch.no_grad():
            predictions = model(**tiny_batch).logits.argmax(-1)
        expected[candidate] = float((predictions == labels).float().mean())
    assert expected == {TrimSpec(): pytest.approx(2 / 3), spec: pytest.approx(1 / 3)}
    assert estimator.score(spec) == pytest.approx(expected[spec])
    assert estimator.score(TrimSpec()) == pytest.approx(expected[TrimSpec()])
    assert set(estimator.cache) == {(spec, "head", "search"), (TrimSpec(), "head", "search")}
    with pytest.raises(TrimbertError, match="the estimator has no 'final' rows to score on"):
        estimator.score(spec, rows="final")
    # three rows, labels 0, 1, 1 (too few for stratified folds): the seeded 2-fold split trains on row 0 alone and
    # predicts its class, 0, for rows 1 and 2, then on rows 1 and 2 (both 1) and predicts 1 for row 0: all wrong
    assert estimator.score(spec, "probe") == 0.0
    estimator.close()
    assert estimator.gates is None


def test_the_probe_score_is_a_linear_head_refitted_on_the_trimmed_models_features():
    import copy

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    torch.manual_seed(0)  # weights large enough (std 0.3, not 0.02) that the trim changes the features
    network = BertForSequenceClassification(tiny_config(num_labels=2, initializer_range=0.3)).eval()
    torch.manual_seed(3)
    ids = torch.randint(5, 100, (32, 10))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    spec = TrimSpec(drop_ffn=(1,), ffn_width={0: 16}, attention="relu")
    features = {}
    for candidate in (TrimSpec(), spec):  # the real trim, not the estimator's gates: its pooled features
        model = trim(copy.deepcopy(network), candidate, ffn_importance=magnitude(network).neurons if candidate.ffn_width else None)
        with torch.no_grad():
            features[candidate] = model.bert(**batch).pooler_output.numpy()
    trimmed = torch.from_numpy(features[spec][:, 0])
    labels = (trimmed > trimmed.median()).long()  # a linear function of the trimmed model's features
    order = magnitude(network).neuron_order()
    estimator = Estimator(network, get_task("sst2"), [{**batch, "labels": labels}], order, "train", 32, 0.0)
    expected = {}
    for candidate, rows in features.items():
        right = 0
        for train, held in StratifiedKFold(2, shuffle=True, random_state=0).split(rows, labels.numpy()):
            head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(rows[train], labels.numpy()[train])
            right += int((head.predict(rows[held]) == labels.numpy()[held]).sum())
        expected[candidate] = right / 32
    assert estimator.score(spec) == expected[spec] and estimator.score(TrimSpec()) == expected[TrimSpec()]
    assert expected[spec] != expected[TrimSpec()]  # the untrimmed model's features would score otherwise
    estimator.close()


def test_score_rows_are_training_rows_the_fine_tune_does_not_see(minilm_dir):
    tokenizer = checkpoint.load_tokenizer(minilm_dir)
    source = DataSource(task="rte", data_dir=str(GLUE_DIR))
    settings = FinetuneSettings(max_train_samples=500, max_length=32, seed=3)
    held, final, split = score_rows(source, tokenizer, settings, 200)
    assert split == "train (rows not trained on)" and len(held) == 200 and final is None
    train = source.load()[0]["train"].shuffle(seed=3)
    parts = {"used": train.select(range(500)), "rest": train.select(range(500, 700)), "after": train.select(range(700, 1000))}
    encoded = tokenize(DatasetDict(parts), tokenizer, 32)
    assert held["input_ids"] == encoded["rest"]["input_ids"]
    assert not {tuple(ids) for ids in encoded["used"]["input_ids"]} & {tuple(ids) for ids in held["input_ids"]}
    held, final, _ = score_rows(source, tokenizer, settings, 200, final_rows=300)
    assert held["input_ids"] == encoded["rest"]["input_ids"]
    assert final["input_ids"] == encoded["after"]["input_ids"]  # the 300 spare rows after the score rows
    _, final, _ = score_rows(source, tokenizer, settings, 200, final_rows=100_000)
    assert len(final) == len(train) - 700  # every row left
    _, final, _ = score_rows(source, tokenizer, settings, len(train) - 550, final_rows=300)
    assert final is None  # 50 rows left, under min(300, 100)
    everything = FinetuneSettings(max_length=32, seed=3)
    held, final, split = score_rows(source, tokenizer, everything, 50, final_rows=300)
    assert split == "validation (no spare training rows)" and len(held) == 50 and final is None
    assert np.all(np.array(held["input_ids"][0]) >= 0)


def test_the_probe_scorer_refits_a_linear_head_on_the_masked_features(binary_model):
    torch.manual_seed(5)
    ids = torch.randint(5, 100, (240, 8))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        pooled = binary_model.bert(**batch).pooler_output[:, 0]
    labels = (pooled > pooled.median()).long()  # a linear function of the head's input features
    order = magnitude(binary_model).neuron_order()
    estimator = Estimator(binary_model, get_task("sst2"), [{**batch, "labels": labels}], order, "train", 240, 0.0)
    passes = []
    real = estimator._outputs
    estimator._outputs = lambda batches: passes.append(len(batches)) or real(batches)
    head = estimator.score(TrimSpec(), "head")
    probe = estimator.score(TrimSpec())  # the default scorer
    assert len(passes) == 1  # both scorers of one spec read one pass over the score rows
    assert probe >= 0.9 and head < 0.75
    assert set(estimator.cache) == {(TrimSpec(), "head", "search"), (TrimSpec(), "probe", "search")}
    with pytest.raises(TrimbertError, match="--scorer: unknown scorer 'knn'"):
        estimator.score(TrimSpec(), "knn")


def test_final_rows_are_scored_apart_from_the_search_rows(binary_model, tiny_batch):
    order = magnitude(binary_model).neuron_order()
    search_rows = [{**tiny_batch, "labels": torch.tensor([0, 1, 1])}]
    final_rows = [{**tiny_batch, "labels": torch.tensor([1, 0, 0])}]  # the same texts, the opposite labels
    estimator = Estimator(
        binary_model, get_task("sst2"), search_rows, order, "train", 3, 0.0, scorer="head",
        final_batches=final_rows, final_rows=3,
    )
    spec = TrimSpec(drop_ffn=(0,))
    on_search, on_final = estimator.score(spec), estimator.score(spec, rows="final")
    assert on_search + on_final == pytest.approx(1.0)  # every prediction right on one set is wrong on the other
    assert set(estimator.cache) == {(spec, "head", "search"), (spec, "head", "final")}
    estimator.close()
