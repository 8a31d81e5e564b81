"""The one-shot estimator with head choices: the head order is what trim keeps, a head-pruned candidate
scores as the trimmed model, the super-model's sampler prunes heads, and the heads the estimator masks
for a candidate are the heads the pipeline keeps when it applies the search's written spec (same rule)."""

import copy
import json

import pytest
import tomllib
import torch
from transformers import BertForSequenceClassification

from tests.conftest import tiny_config, write_sst2
from trimbert.data.source import DataSource
from trimbert.data.tasks import get_task
from trimbert.importance.magnitude import head_order, magnitude
from trimbert.model.ranking import head_magnitude_importance, select_heads
from trimbert.model.structure import encoder_layers, head_rows
from trimbert.model.trim import trim
from trimbert.pipeline import apply_trim
from trimbert.search.estimator import Estimator, SubTrimSampler, build_estimator
from trimbert.search.evolve import Candidate
from trimbert.search.outputs import spec_file, variant_toml
from trimbert.search.space import SearchSpace
from trimbert.spec import TrimRequest, TrimSpec
from trimbert.train.finetune import prepare
from trimbert.train.settings import FinetuneSettings


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
        binary_model, get_task("sst2"), [{**tiny_batch, "labels": labels}],
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


def kept_heads(trimmed, original) -> dict[int, list[int]]:
    """Block -> the original heads whose query rows the trimmed model still has (in order)."""
    found = {}
    for block, (layer, before) in enumerate(zip(encoder_layers(trimmed), encoder_layers(original), strict=True)):
        query, size = before.attention.self.query.weight, before.attention.self.attention_head_size
        rows = layer.attention.self.query.weight
        heads = [head for head in range(before.attention.self.num_attention_heads)
                 if any(rows[start:start + size].equal(query[head_rows([head], size)]) for start in range(0, len(rows), size))]
        assert len(heads) * size == len(rows)
        found[block] = heads
    return found


# a heads-only candidate and one that also narrows an FFN
GENES = (TrimSpec(heads={0: 2, 1: 1}), TrimSpec(ffn_width={1: 16}, heads={0: 1, 1: 2}))


@pytest.mark.parametrize("rule", ["taylor", "fisher", "magnitude"])
def test_the_estimator_masks_the_heads_the_written_spec_keeps(rule, tiny_checkpoint, tmp_path):
    source = DataSource(task="sst2", data_dir=str(write_sst2(tmp_path / "SST-2", train_rows=48, dev_rows=8)))
    settings = FinetuneSettings(epochs=1, batch_size=8, eval_batch_size=16, max_length=16, max_train_samples=32, seed=3)
    space = SearchSpace(2, 64, widths=(16,), num_attention_heads=4, heads=(1, 2))
    estimator = build_estimator(str(tiny_checkpoint), source, space, scorer="head", settings=settings,
                                importance=rule, rows=16)
    _, tokenizer, model, encoded = prepare(str(tiny_checkpoint), source, settings)
    magnitude_heads = head_order(model)
    differs = False
    for number, spec in enumerate(GENES):
        estimator.score(spec)
        masked = {block: torch.nonzero(estimator.gates.heads[block]).flatten().tolist() for block in (0, 1)}
        path = tmp_path / f"best-{number}.json"
        path.write_text(json.dumps(spec_file(Candidate(spec, 1.0, 2.0, 0.5, "evolved", 1), rule)))
        written = json.loads(path.read_text())
        assert written["importance"] == rule
        request = TrimRequest.from_spec_file(path)
        variant = tomllib.loads(variant_toml(spec, rule))["variants"][0]
        assert TrimRequest.from_dict({key: value for key, value in variant.items() if key != "name"}) == request
        # what finetune --spec best.json does (train/finetune.py): the same sample, seed and batches
        trimmed, _ = apply_trim(copy.deepcopy(model), request, dataset=encoded["train"], tokenizer=tokenizer,
                                seed=settings.seed, max_length=settings.max_length, batch_size=settings.eval_batch_size)
        assert kept_heads(trimmed, model) == masked
        magnitude_kept = {block: sorted(magnitude_heads[block][:count].tolist()) for block, count in spec.heads}
        differs |= magnitude_kept != masked
    estimator.close()
    assert differs == (rule != "magnitude")  # a data rule picks other heads here than magnitude would
