"""One exception type for problems in a user's spec, collected and reported together."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, order=True)
class Location:
    """Where an entity comes from: a spec file and a 1-based line."""

    file: str  # the stable name, independent of the working directory (used in generated files)
    line: int
    shown: str = dataclasses.field(default="", compare=False)  # the path as the user gave it

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def display(self) -> str:
        """``PATH:LINE`` with the path as given on the command line, for messages."""
        return f"{self.shown or self.file}:{self.line}"


def printable(text: str) -> str:
    """Spec text echoed in a message, with control characters escaped (no terminal escapes)."""
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in str(text))


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem in a spec: where, which entry and field, what is wrong, how to fix it."""

    location: Location
    entry: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = ""
        if self.entry is not None:
            where = f"entry '{self.entry}'"
            if self.field:
                where += f".{self.field}"
            where += ": "
        return printable(f"{self.location.display}: {where}{self.message}")


class SpecError(Exception):
    """The user's spec is wrong; carries every problem found (up to MAX_PROBLEMS)."""

    MAX_PROBLEMS = 50

    def __init__(self, problems):
        self.problems = tuple(sorted(problems, key=lambda p: (p.location.shown or p.location.file, p.location.line, str(p))))[: self.MAX_PROBLEMS]
        super().__init__("\n".join(str(p) for p in self.problems))


class Collector:
    """Gathers problems so that a whole spec is checked before anything is reported."""

    def __init__(self):
        self.problems: list[Problem] = []

    def add(self, location, entry, field, message):
        self.problems.append(Problem(location, entry, field, message))

    def raise_if_any(self):
        if self.problems:
            raise SpecError(self.problems)


class EntryFailure(Exception):
    """Raised inside derivation/parsing for one entry; converted to a Problem by the caller."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.message = message
        self.field = field
