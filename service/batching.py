"""The dynamic batching policy, as one pure function (tested with a fake queue and clock)."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def collect_batch(
    get: Callable[[float | None], T],
    max_size: int,
    max_delay: float,
    clock: Callable[[], float],
    first_timeout: float | None = None,
    is_last: Callable[[T], bool] | None = None,
    expected: int | None = None,
) -> list[T]:
    """Collect up to ``max_size`` items, waiting at most ``max_delay`` s after the first one.

    ``get(timeout)`` blocks up to ``timeout`` seconds (``None`` = forever) and raises
    ``queue.Empty`` when nothing came. The first item is awaited up to ``first_timeout``
    (an empty list is returned if none came); after that the batch closes when it is full, when
    ``max_delay`` has passed since the first item, or right after an item for which
    ``is_last(item)`` is true (e.g. a shutdown sentinel). Items already waiting are always taken
    (``get(0)``) even once the delay has passed, up to ``max_size``: under load, batches fill
    without anyone waiting.

    ``expected``: stop *waiting* once the batch has this many items (items already waiting are
    still taken). The engine passes its previous batch's size plus what is queued: clients
    that send their next request when the last one is answered (a closed loop, as unary
    callers are) come back as many as were answered, and waiting out ``max_delay`` for more
    that cannot come idled the worker a few ms per batch (docs/SERVING.md "Batching").
    """
    if max_size < 1:
        raise ValueError("max_size must be >= 1")
    try:
        first = get(first_timeout)
    except queue.Empty:
        return []
    batch = [first]
    if is_last is not None and is_last(first):
        return batch
    close_at = clock() + max_delay
    wait_until = max_size if expected is None else max(1, min(expected, max_size))
    while len(batch) < max_size:
        timeout = max(0.0, close_at - clock()) if len(batch) < wait_until else 0.0
        try:
            item = get(timeout)
        except queue.Empty:
            break
        batch.append(item)
        if is_last is not None and is_last(item):
            break
    return batch
