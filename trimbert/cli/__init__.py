"""The ``trimbert`` command line: a thin typer layer over the library, and the only layer that prints.

Each subcommand parses its options, calls one library function and prints the result with rich;
options of settings and trims are generated from their one declaration (:mod:`trimbert.cli.options`).
Errors a user can cause (:class:`~trimbert.errors.TrimbertError`, bad options) print one line on
stderr and exit 2. Commands import the heavy parts of the library when they run, so ``--help`` is fast.

SIGTERM (``timeout``, SLURM, a launcher stopping its workers) stops a command like Ctrl-C does: it is
raised as :class:`Terminated` (a ``KeyboardInterrupt``), so staging and temporary folders are removed
on the way out; the command prints ``terminated`` and exits 143 (Ctrl-C: ``interrupted``, 130). Under
``torchrun``, a refusal (the same on every process) is printed by every process before any exits.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator

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
from trimbert.cli import compress as _compress_commands  # noqa: E402, F401

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is (like Ctrl-C's KeyboardInterrupt), so that every ``finally``
    and context manager on the way out cleans up what it made."""


# "now": the command is on its way out (a further SIGTERM then waits for it); "terminated": by SIGTERM.
_STOPPING = {"now": False, "terminated": False}


def _on_sigterm(signum, frame) -> None:
    if _STOPPING["now"]:
        return  # already cleaning up or printing its last line: let it finish
    _STOPPING["now"] = _STOPPING["terminated"] = True
    raise Terminated()


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOPPING["now"] = _STOPPING["terminated"] = False
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _refuse_together(timeout_s: float = 30.0) -> None:
    """Under ``torchrun``, wait (at most ``timeout_s``) until every process has printed its refusal:
    the launcher stops the others as soon as one exits, and each should say why, not vanish. Uses the
    launcher's own store; without one (a single process, another launcher), returns at once."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world < 2 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return
    try:
        from torch.distributed import TCPStore

        timeout = datetime.timedelta(seconds=timeout_s)
        store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout)
        prefix = f"trimbert/refused/{os.environ.get('TORCHELASTIC_RUN_ID')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT')}/"
        store.set(prefix + os.environ.get("RANK", "0"), "1")
        store.wait([prefix + str(rank) for rank in range(world)], timeout)
    except Exception:  # no store, a process that did not refuse: exit anyway
        pass


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.showwarning = _one_line_warning
    _quiet_libraries()
    command = typer.main.get_command(app)
    DEBUG["traceback"] = False  # set again by --debug (main may run several times in one process)
    with _sigterm_stops():
        _run(command, argv)


def _run(command, argv: list[str] | None) -> None:
    try:
        try:
            code = command.main(args=argv, prog_name="trimbert", standalone_mode=False)
        except BaseException:
            _STOPPING["now"] = True  # a SIGTERM from here on waits for the line below
            raise
    except TrimbertError as error:
        say(f"error: {error}")
        _refuse_together()
        sys.exit(2)
    except click_exceptions.UsageError as error:
        where = f"{error.ctx.command_path}: " if error.ctx is not None else ""
        say(f"error: {where}{error.format_message()}")
        _refuse_together()
        sys.exit(2)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except Terminated:
        err_console.print("terminated", highlight=False)
        sys.exit(143)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except Exception as error:  # a bug: one line, unless --debug asks for the traceback
        if DEBUG["traceback"]:
            raise
        text = " ".join(str(error).split()) or "(no message)"
        say(f"error: unexpected {type(error).__name__}: {text} (run with --debug for the traceback)")
        sys.exit(1)
    # In non-standalone mode, a command's typer.Exit(code) comes back as the return value (and typer
    # turns a KeyboardInterrupt, SIGTERM's Terminated too, into Exit(130)).
    if _STOPPING["terminated"]:
        err_console.print("terminated", highlight=False)
        sys.exit(143)
    if code == 130:
        err_console.print("interrupted", highlight=False)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
