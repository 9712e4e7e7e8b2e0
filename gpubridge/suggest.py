"""The closest known name to a mistyped one, for "did you mean ...?" in error messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.6
"""How alike (difflib's ratio, 0 to 1) a known name must be to be offered; ``promt`` and
``prompt`` score 0.91, ``colour`` and ``prompt`` 0.17."""


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name most like ``name`` (compared without regard to case), or None when none
    is alike enough to be what was meant."""
    choices = {candidate.lower(): candidate for candidate in known if candidate != name}
    found = difflib.get_close_matches(name.lower(), list(choices), n=1, cutoff=CUTOFF)
    return choices[found[0]] if found else None


def did_you_mean(name: str, known: Iterable[str]) -> tuple[str, str | None]:
    """``(" (did you mean `x`?)", "x")`` for the closest known name, or ``("", None)``."""
    suggestion = closest(name, known)
    if suggestion is None:
        return "", None
    return f" (did you mean `{suggestion}`?)", suggestion
