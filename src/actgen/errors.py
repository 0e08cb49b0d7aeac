"""One exception type for problems in a user's spec, collected and reported together."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, order=True)
class Location:
    """Where an entity comes from: a spec file and a 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


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
        return f"{self.location}: {where}{self.message}"


class SpecError(Exception):
    """The user's spec is wrong; carries every problem found (up to MAX_PROBLEMS)."""

    MAX_PROBLEMS = 50

    def __init__(self, problems):
        self.problems = tuple(sorted(problems, key=lambda p: (p.location, str(p))))[: self.MAX_PROBLEMS]
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
