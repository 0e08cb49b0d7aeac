"""A content-addressed cache of derivations, proofs and rendered output.

Keys hash the content of what a result depends on (an entry's expression and parameters, an
identity's claim) together with a fingerprint of actgen itself (the source of every module and
template, and the SymPy version), so an edit of one entry re-derives only that entry and any
change to actgen invalidates everything. Values are pickled; the cache lives in
``$ACTGEN_CACHE_DIR`` or ``$XDG_CACHE_HOME/actgen`` (``~/.cache/actgen``) and is disabled with
``ACTGEN_CACHE=0``. A corrupt or unreadable cache entry is treated as a miss.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path



@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    """Hash of actgen's own code and templates and the SymPy version (read without importing
    SymPy, so that a no-op build never pays for that import)."""
    from importlib.metadata import version

    root = Path(__file__).parent
    h = hashlib.sha256(version("sympy").encode())
    for path in sorted(list(root.rglob("*.py")) + list(root.rglob("*.j2"))):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _canonical(value):
    sp = sys.modules.get("sympy")  # no SymPy object can exist before SymPy is imported
    if sp is not None and isinstance(value, sp.Basic):
        return sp.srepr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [(f.name, _canonical(getattr(value, f.name))) for f in dataclasses.fields(value) if f.name != "location"]
        return f"{type(value).__name__}({fields!r})"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_canonical(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_canonical(k)}:{_canonical(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) + "}"
    return repr(value)


def key(kind: str, *parts) -> str:
    """A cache key for ``kind`` of result computed from ``parts`` (locations are ignored)."""
    h = hashlib.sha256(fingerprint().encode())
    h.update(kind.encode())
    for part in parts:
        h.update(b"\0")
        h.update(_canonical(part).encode())
    return h.hexdigest()


def directory() -> Path | None:
    if os.environ.get("ACTGEN_CACHE", "1") == "0":
        return None
    base = os.environ.get("ACTGEN_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "actgen"


_MISS = object()


def get(k: str):
    d = directory()
    if d is None:
        return _MISS
    path = d / k[:2] / k
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except Exception:  # noqa: BLE001 - any unreadable entry is a miss
        return _MISS


def put(k: str, value):
    d = directory()
    if d is None:
        return
    folder = d / k[:2]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / k)
    except (OSError, pickle.PicklingError, RecursionError, TypeError, AttributeError):
        pass  # a cache that cannot be written only costs time


def digest(value) -> str:
    """Hash of the canonical form of ``value`` (equal digests: equal structures, SymPy nodes included)."""
    return hashlib.sha256(_canonical(value).encode()).hexdigest()


MISS = _MISS


def lookup(kind, *parts):
    """The cached value for ``kind`` and ``parts``, or :data:`MISS`.

    Each entry stores the digest of the value's canonical form (SymPy's srepr) beside it; a value
    that does not unpickle to exactly that structure (SymPy re-evaluates some nodes when it
    rebuilds them) is a miss, so a cached build always equals a cold one."""
    stored = get(key(kind, *parts))
    if stored is not _MISS and isinstance(stored, tuple) and len(stored) == 2 and digest(stored[0]) == stored[1]:
        return stored[0]
    return _MISS


def cached(kind, compute, *parts):
    """``compute()``, or its cached value for the same ``kind`` and ``parts`` (see :func:`lookup`)."""
    value = lookup(kind, *parts)
    if value is not _MISS:
        return value
    value = compute()
    put(key(kind, *parts), (value, digest(value)))
    return value

