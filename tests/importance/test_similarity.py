"""Linear CKA and the mean cosine: the similarities the cut analysis measures with."""

import re

import pytest
import torch

from trimbert.importance.similarity import linear_cka, mean_cosine


def test_linear_cka_is_one_for_identical_inputs():
    torch.manual_seed(0)
    x = torch.randn(200, 16)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x.clone()) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    torch.manual_seed(0)
    x = torch.randn(300, 12)
    y = x @ torch.randn(12, 20) + 0.5 * torch.randn(300, 20)  # related, not identical
    reference = linear_cka(x, y)
    assert 0.2 < reference < 0.99
    q, _ = torch.linalg.qr(torch.randn(20, 20, dtype=torch.float64))
    rotated = (y.double() @ q).float()
    assert linear_cka(x, rotated) == pytest.approx(reference, abs=1e-6)
    assert linear_cka(x, 7.5 * y) == pytest.approx(reference, abs=1e-9)
    assert linear_cka(0.01 * x, y) == pytest.approx(reference, abs=1e-9)
    assert linear_cka(y, x) == pytest.approx(reference, abs=1e-12)  # symmetric
    # orthogonal transform and scaling of x itself: still identical up to rotation and scale
    q12, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    assert linear_cka(x, 3.0 * (x.double() @ q12)) == pytest.approx(1.0, abs=1e-9)
    # shifts do not matter either (columns are centered)
    assert linear_cka(x + 5.0, y - 2.0) == pytest.approx(reference, abs=1e-6)


def test_linear_cka_of_a_constant_side():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert linear_cka(x, torch.ones(200, 4)) == 0.0
    assert linear_cka(torch.ones(200, 3), torch.full((200, 4), 2.0)) == 1.0


def test_linear_cka_low_for_unrelated_inputs_and_checks_shapes():
    torch.manual_seed(0)
    x, y = torch.randn(2000, 8), torch.randn(2000, 8)
    assert linear_cka(x, y) < 0.05
    with pytest.raises(
        ValueError, match=re.escape("linear_cka needs (n, d) matrices with the same n, got (2000, 8) and (10, 8)")
    ):
        linear_cka(x, y[:10])
    assert mean_cosine(x, x) == pytest.approx(1.0)
    assert mean_cosine(x, -x) == pytest.approx(-1.0)
    assert mean_cosine(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0]])) == pytest.approx(0.5)
