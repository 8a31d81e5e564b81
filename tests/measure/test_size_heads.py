"""Size, FLOPs and the block description of a model with pruned attention heads, exactly."""

import copy

from trimbert.measure.describe import describe_model
from trimbert.measure.size import count_parameters, encoder_parameters, flops_per_sequence
from trimbert.model.trim import trim

H, D, SEQ = 384, 32, 64  # MiniLM: hidden 384, heads of 32
PARAMS_PER_HEAD = 4 * H * D + 3 * D  # Q, K, V rows and biases, output-projection columns
FLOPS_PER_HEAD = 2 * SEQ * H * D * 4 + 2 * 2 * SEQ * SEQ * D  # 4 projections, scores and context


def test_pruned_heads_leave_the_parameters_and_flops_they_take(minilm):
    params, encoder = count_parameters(minilm), encoder_parameters(minilm)
    flops = flops_per_sequence(minilm, SEQ)
    trimmed = trim(copy.deepcopy(minilm), heads="0:4,3=0+2+5")  # 8 + 9 heads removed
    assert params - count_parameters(trimmed) == 17 * PARAMS_PER_HEAD == 837_216
    assert encoder - encoder_parameters(trimmed) == 17 * PARAMS_PER_HEAD
    assert flops - flops_per_sequence(trimmed, SEQ) == 17 * FLOPS_PER_HEAD == 115_867_648


def test_describe_shows_the_heads_of_each_block(minilm):
    trimmed = trim(minilm, heads="0:4,3=0+2+5", drop_layers="5", ffn_width="3:768")
    summary = describe_model(trimmed, source="x", seq_len=16)
    assert summary.trim_summary == "layers-[5] ffn-width=768 heads=4[0],3[3]"
    assert [block.heads for block in summary.blocks] == [4, 12, 12, 3, 12, None]
    assert summary.blocks[0].params == 1_774_464 - 8 * PARAMS_PER_HEAD
    assert summary.blocks[3].params == 1_774_464 - 9 * PARAMS_PER_HEAD - 768 * (2 * H + 1)
    assert summary.to_dict()["blocks"][3]["heads"] == 3
    assert sum(block.params for block in summary.blocks) == summary.encoder_params
