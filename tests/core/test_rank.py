"""Process rank: a process that is not part of a distributed job is the one that writes."""

from trimbert.core.rank import is_main_process


def test_the_only_process_is_the_main_process():
    assert is_main_process() is True
