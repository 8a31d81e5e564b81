"""parse_auto: the auto:N form of --drop-ffn."""

import re

import pytest

from trimbert.errors import TrimbertError
from trimbert.spec import parse_auto


def test_parse_auto():
    assert parse_auto("auto:3") == 3
    assert parse_auto("AUTO:2") == 2
    assert parse_auto("auto:0") == 0  # checked against the model later
    for other in (None, "alternate", "1,3", "last:2"):
        assert parse_auto(other) is None
    for bad in ("auto", "auto:", "auto:x", "auto:1.5"):
        with pytest.raises(TrimbertError, match=re.escape(f"--drop-ffn: {bad!r}: use auto:N with N the number of FFNs to drop")):
            parse_auto(bad)
