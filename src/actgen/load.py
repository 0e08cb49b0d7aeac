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
MAX_YAML_DEPTH = 20  # the schema needs 4 levels (section, entry, field, list); 20 is generous


@dataclasses.dataclass(frozen=True)
class Located:
    """A YAML value with its location. Mappings hold ``dict[str, Located]``, sequences tuples."""

    value: object
    location: Location


@dataclasses.dataclass(frozen=True)
class SpecFile:
    path: str  # as given, for messages
    root: Located | None
    source: str = ""  # the stable name, for generated files (see source_name)


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


def source_name(spec: str | os.PathLike, path: Path) -> str:
    """The name of a spec file in generated headers and locations, independent of the working
    directory: ``FOLDER/FILE`` (the folder's own name) when ``--spec`` is a folder, else ``FILE``.

    So ``--spec spec``, ``--spec ./spec/`` and ``--spec /abs/path/spec`` all give
    ``spec/activations.yaml``, and a build run from another directory writes identical files.
    """
    folder = Path(spec)
    if folder.is_dir():
        return f"{folder.resolve().name}/{path.name}"
    return path.name


def display_path(path: Path) -> str:
    """A path in messages: as given on the command line, POSIX style."""
    return path.as_posix()


def load_file(path: Path, shown: str, problems: Collector, source: str | None = None) -> SpecFile:
    """Read one spec file into located values, adding every problem found to ``problems``.

    ``source`` is the file's stable name (see :func:`source_name`); ``shown`` its path as given,
    used in messages.
    """
    source = source or shown

    def at(line):
        return Location(source, line, shown)

    here = at(1)
    found = len(problems.problems)
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
        # scan the event stream first: it is produced without recursion, so deep nesting and
        # aliases (the "billion laughs") are caught before the recursive composer sees them
        _scan(text, at, problems)
        if len(problems.problems) > found:
            return SpecFile(shown, None)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problems.add(at(line), None, None, f"invalid YAML: {exc.problem}; fix the syntax at this line")
        return SpecFile(shown, None)
    except yaml.YAMLError as exc:
        problems.add(here, None, None, f"invalid YAML: {' '.join(str(exc).split())}; fix the syntax")
        return SpecFile(shown, None)
    except RecursionError:
        problems.add(here, None, None, f"YAML is nested too deeply; a spec needs at most {MAX_YAML_DEPTH} levels")
        return SpecFile(shown, None)
    if node is None:
        problems.add(here, None, None, "the spec file is empty; declare at least one of 'activations', 'losses', 'tasks' or 'identities'")
        return SpecFile(shown, None)
    constructor = yaml.SafeLoader("")
    root = _convert(node, at, constructor, problems)
    if len(problems.problems) > found:
        # a file with a YAML-level problem (tag, duplicate key, bad value) is not interpreted
        # further: its entries would only produce follow-on noise
        return SpecFile(shown, None)
    return SpecFile(shown, root, source)


def _scan(text, at, problems):
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            # one report is enough: a "billion laughs" file holds thousands of aliases
            problems.add(at(event.start_mark.line + 1), None, None, f"YAML alias '*{event.anchor}' is not allowed; write the value out in full")
            return
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                problems.add(at(event.start_mark.line + 1), None, None, f"YAML is nested more than {MAX_YAML_DEPTH} levels deep; a spec needs at most 4 (section, entry, field, list)")
                return
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _tag(tag):
    return tag.replace("tag:yaml.org,2002:", "!!")


def _construct(constructor, node, at, problems):
    try:
        return constructor.construct_object(node)
    except (ValueError, OverflowError, yaml.YAMLError):
        # e.g. an integer of more than 4300 digits
        problems.add(at(node.start_mark.line + 1), None, None, f"value '{node.value[:20]}...' cannot be read; write a shorter number or text")
        return None


def _convert(node, at, constructor, problems) -> Located | None:
    loc = at(node.start_mark.line + 1)
    if node.tag not in _SAFE_TAGS:
        if isinstance(node, yaml.ScalarNode) and node.style is None and constructor.resolve(yaml.ScalarNode, node.value, (True, False)) == node.tag:
            kind = _tag(node.tag)[2:]
            problems.add(loc, None, None, f"'{node.value[:40]}' is read as a YAML {kind}, which is not allowed; put it in quotes to make it text")
        else:
            problems.add(loc, None, None, f"YAML tag '{_tag(node.tag)}' is not allowed; write plain values without tags")
        return None
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Located] = {}
        for key_node, value_node in node.value:
            key_loc = at(key_node.start_mark.line + 1)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SAFE_TAGS:
                problems.add(key_loc, None, None, "mapping keys must be plain names; write the key as a name such as 'relu'")
                continue
            # the key as written: 'yes', 'null' or '1' stay names, not a boolean, None or a number
            key = key_node.value
            if key in out:
                problems.add(key_loc, None, None, f"duplicate key '{key}' (first at line {out[key].location.line}); remove one of them")
                continue
            value = _convert(value_node, at, constructor, problems)
            if value is not None:
                out[key] = Located(value.value, key_loc)
        return Located(out, loc)
    if isinstance(node, yaml.SequenceNode):
        items = tuple(v for v in (_convert(n, at, constructor, problems) for n in node.value) if v is not None)
        return Located(items, loc)
    return Located(_construct(constructor, node, at, problems), loc)
