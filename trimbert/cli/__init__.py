"""The ``trimbert`` command line: a thin typer layer over the library, and the only layer that prints.

Each subcommand parses its options, calls one library function and prints the result with rich;
options of settings and trims are generated from their one declaration (:mod:`trimbert.cli.options`).
Errors a user can cause (:class:`~trimbert.errors.TrimbertError`, bad options) print one line on
stderr and exit 2. Commands import the heavy parts of the library when they run, so ``--help`` is fast.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer
from typer._click import exceptions as click_exceptions

from trimbert.cli.app import DEBUG, app, err_console, say
from trimbert.errors import TrimbertError

# isort: off
# Importing the command modules registers their commands, in this (the help's) order.
from trimbert.cli import trim as _trim_commands  # noqa: E402, F401
from trimbert.cli import train as _train_commands  # noqa: E402, F401
from trimbert.cli import measure as _measure_commands  # noqa: E402, F401
from trimbert.cli import deploy as _deploy_commands  # noqa: E402, F401
from trimbert.cli import sweep as _sweep_commands  # noqa: E402, F401
from trimbert.cli import search as _search_commands  # noqa: E402, F401

# isort: on


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    say(f"warning: {message}")


def _quiet_libraries() -> None:
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.showwarning = _one_line_warning
    _quiet_libraries()
    command = typer.main.get_command(app)
    DEBUG["traceback"] = False  # set again by --debug (main may run several times in one process)
    try:
        code = command.main(args=argv, prog_name="trimbert", standalone_mode=False)
    except TrimbertError as error:
        say(f"error: {error}")
        sys.exit(2)
    except click_exceptions.UsageError as error:
        where = f"{error.ctx.command_path}: " if error.ctx is not None else ""
        say(f"error: {where}{error.format_message()}")
        sys.exit(2)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except Exception as error:  # a bug: one line, unless --debug asks for the traceback
        if DEBUG["traceback"]:
            raise
        text = " ".join(str(error).split()) or "(no message)"
        say(f"error: unexpected {type(error).__name__}: {text} (run with --debug for the traceback)")
        sys.exit(1)
    # In non-standalone mode, a command's typer.Exit(code) comes back as the return value.
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
