"""Keep the garbage collector off what was loaded before a job, while the job tokenizes and plans.

Planning allocates many small containers (token lists, stems, units); each time they trip the
collector's oldest generation, it walks every object the process holds, and a process with
torch, transformers, a model and a dataset loaded holds millions: measured on 5,000 generated rows,
the walks took as long as the planning itself. Objects that exist when a job starts (the model, the
tokenizer, the rows, imported modules) outlive it, so while a job runs they are frozen out of
collection (:func:`gc.freeze`); objects the job creates are collected as usual, and everything is
handed back to the collector when the last running job is done.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_holders = 0


@contextmanager
def settled_heap() -> Iterator[None]:
    """Within this block (nested or on several threads), objects older than its first entry are not
    walked by the garbage collector."""
    global _holders
    with _lock:
        if _holders == 0:
            gc.freeze()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                gc.unfreeze()
