"""The one-shot estimator with head choices: the head order is what trim keeps, a head-pruned candidate
scores as the trimmed model, and the super-model's sampler prunes heads."""

import copy

import pytest
import torch
from transformers import BertForSequenceClassification

from tests.conftest import tiny_config
from trimbert.data.tasks import get_task
from trimbert.importance.magnitude import magnitude
from trimbert.model.ranking import head_magnitude_importance, select_heads
from trimbert.model.structure import encoder_layers
from trimbert.model.trim import trim
from trimbert.search.estimator import Estimator, SubTrimSampler, head_order
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimSpec


@pytest.fixture
def binary_model():
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config(num_labels=2)).eval()


def test_a_prefix_of_the_head_order_is_what_trim_keeps(binary_model):
    order = head_order(binary_model)
    assert sorted(order) == [0, 1, 2, 3]
    for block, layer in enumerate(encoder_layers(binary_model)):
        assert sorted(order[block].tolist()) == [0, 1, 2, 3]
        for count in (1, 2, 3):
            kept = select_heads(head_magnitude_importance(layer), count)
            assert sorted(order[block][:count].tolist()) == kept.tolist()


def test_a_head_pruned_candidate_scores_as_the_trimmed_model(binary_model, tiny_batch):
    labels = torch.tensor([0, 1, 1])
    with torch.no_grad():
        before = binary_model(**tiny_batch).logits
    estimator = Estimator(
        "one-shot", binary_model, get_task("sst2"), [{**tiny_batch, "labels": labels}],
        magnitude(binary_model).neuron_order(), "train", 3, 0.0, scorer="head", head_order=head_order(binary_model),
    )
    spec = TrimSpec(drop_ffn=(1,), heads={0: 2, 2: 1, 3: 3})
    trimmed = trim(copy.deepcopy(binary_model), spec)
    assert trimmed.config.trim_spec["heads"] == {"0": 2, "2": 1, "3": 3}
    with torch.no_grad():
        expected = trimmed(**tiny_batch).logits  # padded rows included
    estimator.score(spec)
    assert torch.allclose(torch.from_numpy(estimator.last[1][0]), expected, atol=1e-5)
    estimator.close()
    with torch.no_grad():  # the gates are off again
        assert binary_model(**tiny_batch).logits.equal(before)


def test_the_sampler_prunes_heads_to_the_choices(binary_model):
    space = SearchSpace(4, 64, widths=(32,), num_attention_heads=4, heads=(2,))
    sampler = SubTrimSampler(space, magnitude(binary_model).neuron_order(), seed=0, head_order=head_order(binary_model))
    sampler.on_train_begin(None, None, None, model=binary_model)
    kept = set()
    for _ in range(50):
        sampler.on_step_begin(None, None, None)
        kept |= {float(mask.sum()) for mask in sampler.gates.heads.values()}
    sampler.on_train_end(None, None, None)
    assert kept == {4.0, 2.0}
