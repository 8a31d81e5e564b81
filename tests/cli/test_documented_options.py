"""Every option of every command is documented for users: its long flag appears in README.md or docs/*.md.

The flags come from the typer app itself (the click commands it builds; no model is loaded), so a new
option, or one generated from a new settings field, fails here until the user docs name it. Study logs
(studies/) do not count: they are not where a user looks.
"""

import re
from pathlib import Path

import typer

from trimbert.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _long_flags() -> dict[str, set[str]]:
    """Each long flag (``--name``, and ``--no-name`` of a boolean pair) → the commands that take it."""
    flags: dict[str, set[str]] = {}
    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            for flag in (*param.opts, *param.secondary_opts):
                if flag.startswith("--"):
                    flags.setdefault(flag, set()).add(name)
    return flags


def _user_docs() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def _documented(flag: str, text: str) -> bool:
    # The flag as a whole word: `--seed` is not documented by `--search-seed`, nor `--heal` by `--heal-lr`.
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def test_the_commands_have_options_to_check():
    flags = _long_flags()
    assert {"--drop-ffn", "--max-other-cpu", "--search-seed", "--out"} <= set(flags)
    assert flags["--search-seed"] == {"search"}


def test_a_flag_is_documented_only_as_a_whole_word():
    assert _documented("--seed", "use `--seed 42`")
    assert not _documented("--seed", "use `--search-seed 42`")
    assert not _documented("--heal", "`--heal-lr`, `--heal-steps`")


def test_every_option_of_every_command_is_in_the_user_docs():
    text = _user_docs()
    missing = sorted(
        f"{flag} ({', '.join(sorted(commands))})" for flag, commands in _long_flags().items() if not _documented(flag, text)
    )
    assert missing == [], "options not in README.md or docs/*.md: " + ", ".join(missing)
