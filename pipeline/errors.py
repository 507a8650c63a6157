"""The one root of the errors a user is meant to see and act on.

Every expected failure (a bad param, too many rejected rows or failed clips, a store another process is
writing, features a checkpoint was not trained on, ...) derives from `MerError`; its message says what
went wrong, where, and how to fix it. The CLI prints that message without a traceback and exits 1; any
other exception is a bug and keeps its traceback. `mer --debug` or MER_DEBUG=1 shows the traceback of
expected errors too.

Subclasses keep their historic base (ValueError, RuntimeError, ...) so existing `except` clauses still
catch them.
"""

from __future__ import annotations

from pathlib import Path


class MerError(Exception):
    """An expected failure: the message is for the user (what, where, how to fix)."""

    exit_code = 1


class StoreLocked(MerError):
    """Another live process is writing the store."""

    exit_code = 75   # EX_TEMPFAIL: try again when the other writer has finished


class InputError(MerError, ValueError):
    """An input (a corpus file, a manifest, a features folder, a store) cannot be used as it is."""


class MissingInput(MerError, FileNotFoundError):
    """An input that must exist does not: usually a stage that writes it has not run yet."""


def require(path, made_by: str):
    """`path`, or a MissingInput naming it and the command that makes it."""
    if not Path(path).exists():
        raise MissingInput(f"{path} does not exist: run {made_by} first")
    return path
