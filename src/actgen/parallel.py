"""Independent pieces of a build (one spec entry, one identity) computed in worker processes.

SymPy is single-threaded and keeps its caches per process, so a build scales across cores with a
process pool, and its peak memory stays bounded when each worker is replaced after a few entries
(SymPy's caches only grow). Workers are forked from the build process: they inherit the loaded
spec (passed as a payload, never pickled) and every imported module, so a worker starts in
milliseconds. Results come back pickled, in the order asked for, whatever order workers finish in.
Where ``fork`` does not exist (Windows) or only one job is asked for, everything runs in this
process, in order.
"""
from __future__ import annotations

import multiprocessing
import os

# entries a worker derives before it is replaced by a fresh fork of the build process: bounds the
# growth of SymPy's caches (hundreds of MB after a few dozen hard entries) at the cost of a fork
TASKS_PER_WORKER = 2

_payload = None  # what the tasks read: set in the build process before the workers are forked


def default_jobs() -> int:
    return os.cpu_count() or 1


def _call(task):
    fn, index = task
    return fn(_payload, index)


def map_indexed(fn, payload, indices, jobs=1, progress=None):
    """``[fn(payload, i) for i in indices]``, by up to ``jobs`` worker processes.

    ``fn`` must be a module-level function (it is sent to the workers by name) and its results
    picklable. ``progress(i)`` is called in this process before waiting for result i."""
    global _payload
    indices = list(indices)
    if jobs is None:
        jobs = default_jobs()
    if jobs <= 1 or len(indices) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        results = []
        for i in indices:
            if progress:
                progress(i)
            results.append(fn(payload, i))
        return results
    _payload = payload
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(min(jobs, len(indices)), maxtasksperchild=TASKS_PER_WORKER) as pool:
            arriving = pool.imap(_call, [(fn, i) for i in indices], chunksize=1)
            results = []
            for i in indices:
                if progress:
                    progress(i)
                results.append(next(arriving))
            return results
    finally:
        _payload = None
