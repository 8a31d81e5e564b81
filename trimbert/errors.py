"""The one exception type for errors a user can cause.

The CLI turns a :class:`TrimbertError` into a one-line message on stderr and exit code 2.
Anything else escaping is a bug and may show a traceback.
"""


class TrimbertError(Exception):
    """A problem with the user's input: bad option, bad checkpoint, missing file, ..."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type name when the message is empty): what a
    :class:`TrimbertError` wrapping another library's error shows."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
