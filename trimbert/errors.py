"""The one exception type for errors a user can cause.

The CLI turns a :class:`TrimbertError` into a one-line message on stderr and exit code 2.
Anything else escaping is a bug and may show a traceback.
"""


class TrimbertError(Exception):
    """A problem with the user's input: bad option, bad checkpoint, missing file, ..."""
