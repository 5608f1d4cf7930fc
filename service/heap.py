"""Keep the garbage collector's full passes off the request path.

A loaded server holds about half a million objects that live as long as it does: torch,
CompressAI, FastAPI, gRPC, the models. CPython's cyclic collector walks every one of them in
each full (generation 2) collection, which holds the interpreter lock throughout: ~260 ms
here, during which no request moves. Under load one comes every 10-40 s, and each lands in the
latency tail: REST x8 p99 159-210 ms with, 32.6 ms without (docs/SERVING.md "Garbage
collection").

``freeze`` moves everything alive once the server is loaded and warm into the collector's
permanent generation (``gc.freeze``), which its passes skip: what they walk is what requests
create. Reference counting still frees frozen objects that nothing refers to; only a frozen
object in a reference cycle is never collected. Models are the objects that change after
start-up, so ``refreeze`` runs after each model change (a swap, a rollback, a fleet sync): it
unfreezes, collects once (that one full pass, in the admin call that changed the models, frees
a model dropped in a cycle) and freezes again. ``thaw`` gives an embedding process (tests,
benchmarks) its ordinary collector back when the server stops.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

log = logging.getLogger("fercomp.service.heap")

_lock = threading.Lock()  # one freeze or refreeze at a time


def freeze() -> int:
    """Collect, then freeze everything alive; returns the number of objects frozen."""
    with _lock:
        return _collect_and_freeze("start-up")


def refreeze() -> None:
    """After a model change: collect the whole heap once, then freeze it again. Nothing is
    frozen (``freeze`` was not called, or ``thaw`` was): nothing to do."""
    with _lock:
        if gc.get_freeze_count() == 0:
            return
        gc.unfreeze()
        _collect_and_freeze("model change")


def thaw() -> None:
    """Give the frozen objects back to the collector (its next full pass walks them)."""
    with _lock:
        gc.unfreeze()


def _collect_and_freeze(why: str) -> int:
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "froze %d objects for the garbage collector (%s; full collection %.0f ms)",
        frozen, why, (time.perf_counter() - t0) * 1e3,
        extra={"frozen_objects": frozen},
    )  # fmt: skip
    return frozen
