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
#: Exit code when the reader of stdout went away (`distill --help | head -1`): what a shell
#: reports for a process ended by SIGPIPE (128 + 13), as `ls | head`, `git log | head` give,
#: so `set -o pipefail` scripts see the cut the usual way. Nothing is printed for it.
EXIT_BROKEN_PIPE = 141


class DistillError(Exception):
    """A failure the user can act on; carries where it happened and what to do about it.

    `own` says whether, under several processes (torchrun, srun), the failure is this
    process's own rather than one every process meets alike. Each process reads the same
    recipe, files and flags, so a refusal of the input (exit 2) is met by all of them and said
    once, by rank 0; a stop they agree on (a NaN loss, a signal) likewise. What only one process
    can meet (its device, its node's disk: exit 1 by default) is said by that process too,
    naming its rank (`cli.entry`).
    """

    #: None: decided by the exit code (a failure of the work, exit 1, may be this process's)
    own: bool | None = None

    def __init__(
        self, what: str, where: str | None = None, hint: str | None = None, code: int = EXIT_USAGE
    ) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.hint = hint
        self.code = code

    @property
    def own_failure(self) -> bool:
        """Whether a process other than rank 0 says this error too (see the class)."""
        return self.code == EXIT_FAILURE if self.own is None else self.own

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


class AgreedStop(RunFailed):
    """A failure every process of a run meets at once, having agreed on it (a NaN loss is
    reduced across processes at log time): rank 0 says it for all of them."""

    own = False


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run started from Python (`api.run`, `api.train`) after it saved its
    position. A KeyboardInterrupt, as every Ctrl-C in Python is: raised as a `DistillError`, a
    notebook's sweep (`for lr in ...: try: api.run(...) except Exception: continue`) took the
    Ctrl-C for one failed run and went on to the next. `.error` is the line the CLI prints
    (where the position was saved; `resume=True` continues the run)."""

    def __init__(self, error: DistillError) -> None:
        super().__init__(str(error))
        self.error = error


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str | None:
    """A 'did you mean ...' hint, or None when nothing is close enough to be useful."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"
