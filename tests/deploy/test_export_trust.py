"""Issue 27 items 1c and 5: the fp32 check is relative; broken export folders are one TrimbertError."""

import numpy as np
import pytest

from trimbert.deploy.export import _fp32_check, export_onnx
from trimbert.deploy.runtime import load_onnx
from trimbert.errors import TrimbertError


def test_the_fp32_check_is_relative_to_the_largest_output():
    reference = [np.array([[12_000.0, -3.0]], dtype=np.float32)]
    # 9.3e-2 off on hidden states of ~1e4 (stripped LayerNorms) is 7.8e-6 of the largest output: fine
    check = _fp32_check(reference, [reference[0] + np.float32(0.093)], "ONNX Runtime", "last_hidden_state")
    assert check.fp32_max_abs_diff == pytest.approx(0.093, rel=1e-3)
    assert check.fp32_max_rel_diff == pytest.approx(0.093 / 12_000.0, rel=1e-3)
    with pytest.raises(TrimbertError) as raised:
        _fp32_check(reference, [reference[0] + np.float32(2.0)], "OpenVINO", "last_hidden_state")
    assert str(raised.value) == (
        "OpenVINO's last_hidden_state differ from PyTorch's by 2.00e+00 (1.67e-04 of the largest output, more "
        "than 0.0001): the export is wrong; nothing was written"
    )
    # outputs below 1 are held to the absolute tolerance
    small = [np.array([[0.5]], dtype=np.float32)]
    with pytest.raises(TrimbertError, match=r"by 2\.00e-04 \(2\.00e-04 of the largest output"):
        _fp32_check(small, [small[0] + np.float32(2e-4)], "ONNX Runtime", "logits")


def test_a_truncated_model_or_a_corrupt_config_is_one_error(tiny_model, tmp_path):
    export_onnx(tiny_model, tmp_path / "out")
    model_file = tmp_path / "out" / "model.onnx"
    (tmp_path / "out" / "config.json").write_text("{not json")
    with pytest.raises(TrimbertError, match=r"^.*out: unreadable config or tokenizer: "):
        load_onnx(tmp_path / "out")
    model_file.write_bytes(model_file.read_bytes()[:1000])
    with pytest.raises(TrimbertError, match=r"^ONNX Runtime cannot load .*model\.onnx: "):
        load_onnx(tmp_path / "out")
