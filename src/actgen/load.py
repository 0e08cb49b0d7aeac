"""Stage 1: read spec files safely into located YAML values.

YAML is composed with PyYAML's *safe* machinery only (no ``!!python`` tags), duplicate keys are
rejected, and every value keeps the line it came from so that later stages can say where a problem
is. Nothing here interprets expressions: they stay strings until :mod:`actgen.expr` parses them.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from .errors import Collector, Location

MAX_SPEC_BYTES = 1_000_000


@dataclasses.dataclass(frozen=True)
class Located:
    """A YAML value with its location. Mappings hold ``dict[str, Located]``, sequences tuples."""

    value: object
    location: Location


@dataclasses.dataclass(frozen=True)
class SpecFile:
    path: str
    root: Located | None


_SAFE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


def spec_paths(spec: str | os.PathLike) -> list[Path]:
    """The YAML files a ``--spec`` argument names: one file, or every *.yaml/*.yml in a folder."""
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def display_path(path: Path) -> str:
    """Paths in messages and headers: relative to the working directory when below it, POSIX style."""
    try:
        return Path(os.path.relpath(path)).as_posix() if not Path(os.path.relpath(path)).as_posix().startswith("..") else path.as_posix()
    except ValueError:
        return path.as_posix()


def load_file(path: Path, shown: str, problems: Collector) -> SpecFile:
    """Read one spec file into located values, adding every problem found to ``problems``."""
    here = Location(shown, 1)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.add(here, None, None, f"cannot read the spec file ({exc.strerror}); check the --spec path")
        return SpecFile(shown, None)
    if len(raw) > MAX_SPEC_BYTES:
        problems.add(here, None, None, f"spec file is {len(raw)} bytes, over the limit of {MAX_SPEC_BYTES}; split it into several files")
        return SpecFile(shown, None)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.add(here, None, None, f"not a UTF-8 text file (byte {exc.start} is invalid); a spec must be YAML text")
        return SpecFile(shown, None)
    if "\x00" in text:
        problems.add(here, None, None, "not a text file (it contains NUL bytes); a spec must be YAML text")
        return SpecFile(shown, None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problems.add(Location(shown, line), None, None, f"invalid YAML: {exc.problem}; fix the syntax at this line")
        return SpecFile(shown, None)
    except yaml.YAMLError as exc:
        problems.add(here, None, None, f"invalid YAML: {exc}")
        return SpecFile(shown, None)
    if node is None:
        problems.add(here, None, None, "the spec file is empty; declare at least one of 'activations', 'losses', 'tasks' or 'identities'")
        return SpecFile(shown, None)
    constructor = yaml.SafeLoader("")
    return SpecFile(shown, _convert(node, shown, constructor, problems))


def _convert(node, shown, constructor, problems) -> Located | None:
    loc = Location(shown, node.start_mark.line + 1)
    if node.tag not in _SAFE_TAGS:
        problems.add(loc, None, None, f"YAML tag '{node.tag}' is not allowed; write plain values without tags")
        return None
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Located] = {}
        for key_node, value_node in node.value:
            key_loc = Location(shown, key_node.start_mark.line + 1)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SAFE_TAGS:
                problems.add(key_loc, None, None, "mapping keys must be plain names")
                continue
            key = str(constructor.construct_object(key_node))
            if key in out:
                problems.add(key_loc, None, None, f"duplicate key '{key}' (first at line {out[key].location.line}); remove one of them")
                continue
            value = _convert(value_node, shown, constructor, problems)
            if value is not None:
                out[key] = Located(value.value, key_loc)
        return Located(out, loc)
    if isinstance(node, yaml.SequenceNode):
        items = tuple(v for v in (_convert(n, shown, constructor, problems) for n in node.value) if v is not None)
        return Located(items, loc)
    return Located(constructor.construct_object(node), loc)
