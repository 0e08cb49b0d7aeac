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


def _read(k: str) -> bytes | None:
    d = directory()
    if d is None:
        return None
    try:
        return (d / k[:2] / k).read_bytes()
    except OSError:
        return None


def get(k: str):
    data = _read(k)
    if data is None:
        return _MISS
    try:
        return pickle.loads(data)
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

    Each entry stores the digest of the value's canonical form (SymPy's srepr) beside it, and a
    value that does not unpickle to exactly that structure is a miss (see :func:`restore`), so a
    cached build always equals a cold one."""
    data = _read(key(kind, *parts))
    if data is None:
        return _MISS
    stored = restore(data, None)
    return stored[0] if stored is not _MISS and isinstance(stored, tuple) and len(stored) == 2 else _MISS


def restore(data: bytes, expected: str | None):
    """The value pickled in ``data`` if its digest is ``expected`` (None: ``data`` holds a pair
    (value, digest of value)), else :data:`MISS`. SymPy rebuilds a node through its constructor,
    which evaluates: an unevaluated ``Mul(1/1000, 1247 - 565 tanh(z)**2)``, as simplification leaves
    it, comes back with the number distributed over the sum. So a value that does not come back
    exactly is unpickled a second time with evaluation off, which rebuilds the stored arguments
    as they are (and only then: some nodes need their constructor's evaluation)."""
    def matches(value):
        if expected is None:
            return isinstance(value, tuple) and len(value) == 2 and digest(value[0]) == value[1]
        return digest(value) == expected

    sp = sys.modules.get("sympy")
    for evaluated in (True, False):
        if not evaluated and sp is None:
            break
        try:
            if evaluated:
                value = pickle.loads(data)
            else:
                with sp.evaluate(False):
                    value = pickle.loads(data)
        except Exception:  # noqa: BLE001 - any unreadable entry is a miss
            return _MISS
        if matches(value):
            return value
    return _MISS


def cached(kind, compute, *parts):
    """``compute()``, or its cached value for the same ``kind`` and ``parts`` (see :func:`lookup`)."""
    value = lookup(kind, *parts)
    if value is not _MISS:
        return value
    value = compute()
    put(key(kind, *parts), (value, digest(value)))
    return value

