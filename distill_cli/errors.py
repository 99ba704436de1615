"""Expected failures and how they reach the user.

Anything a user can cause (a typo in a recipe, a missing file, a model name timm does not know)
raises :class:`DistillError`. The CLI turns it into one line, ``error: <what> (<where>) - <hint>``,
and an exit code, so a CI log shows the cause instead of a traceback. Bugs stay ordinary
exceptions: they should be loud.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Exit code for bad usage, a bad recipe or bad input: fix the invocation and run again.
EXIT_USAGE = 2
#: Exit code for a run or gate that failed on valid input.
EXIT_FAILURE = 1
#: Exit code of `distill students` when nothing could be timed within its limits (no answer
#: yet, as opposed to EXIT_FAILURE: timed, and nothing fits).
EXIT_NOT_MEASURED = 3


class DistillError(Exception):
    """A failure the user can act on; carries where it happened and what to do about it."""

    def __init__(
        self, what: str, where: str | None = None, hint: str | None = None, code: int = EXIT_USAGE
    ) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        text = self.what
        if self.where:
            text += f" ({self.where})"
        if self.hint:
            text += f" - {self.hint}"
        return text


class WrongType(DistillError, TypeError):
    """A Python API argument of the wrong type (a number for a path, one string where a list
    belongs): one line naming the argument like any DistillError (exit 2), and a TypeError
    for code that catches those."""


class RunFailed(DistillError):
    """The input was fine but the run could not finish (diverged, gate missed)."""

    def __init__(self, what: str, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(what, where, hint, code=EXIT_FAILURE)


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str | None:
    """A 'did you mean ...' hint, or None when nothing is close enough to be useful."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"
