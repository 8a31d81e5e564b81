"""search --finetune's winner options: what is refused before any search runs."""

import re
from pathlib import Path

import pytest

from trimbert.errors import TrimbertError
from trimbert.search.settings import SearchSettings
from trimbert.search.winner import check_heal_request
from trimbert.train.settings import HealSettings


def test_a_heal_request_is_checked_before_the_search(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("some text\n")
    taylor, magnitude = SearchSettings(speedup=1.5), SearchSettings(speedup=1.5, importance="magnitude")
    check_heal_request(taylor, None, None)  # nothing asked: nothing to check
    check_heal_request(taylor, HealSettings(), str(corpus))
    check_heal_request(taylor, HealSettings(), "wikitext")  # a hub dataset id: read when the heal runs
    check_heal_request(magnitude, HealSettings(schedule="progressive"), str(corpus))  # magnitude widths re-trim alike
    with pytest.raises(TrimbertError, match=rf"^--heal-corpus: .*missing\.txt does not exist \(relative to {re.escape(str(Path.cwd()))}\)$"):
        check_heal_request(taylor, HealSettings(), str(tmp_path / "missing.txt"))
    binary = tmp_path / "corpus.bin"
    binary.write_bytes(b"text\0more")
    with pytest.raises(TrimbertError, match=r"^--heal-corpus: .*corpus\.bin is binary, not text \(a NUL byte in its first MB\)$"):
        check_heal_request(taylor, HealSettings(), str(binary))
    with pytest.raises(TrimbertError, match="^--heal-schedule progressive re-trims from the untrimmed model"):
        check_heal_request(taylor, HealSettings(schedule="progressive"), str(corpus))
    fisher = SearchSettings(speedup=1.5, importance="fisher")  # ranks on data as taylor does
    with pytest.raises(TrimbertError, match="^--heal-schedule progressive .* cannot choose Fisher-ranked FFN neurons again"):
        check_heal_request(fisher, HealSettings(schedule="progressive"), str(corpus))
