"""Awaiting a thread's ``concurrent.futures.Future`` on an event loop, without a thread."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from typing import Any


async def done_within(fut: Future[Any], timeout: float) -> bool:
    """Whether ``fut`` is done within ``timeout`` seconds, awaited on the running loop.

    The future is only watched, never cancelled, also when the time is up or the awaiting task
    is cancelled (``asyncio.wait_for(asyncio.wrap_future(fut))`` would cancel it): what happens
    to a late prediction is its caller's rule, and a store commit must run to its end whoever
    stopped waiting for it. The engine's or the store's thread wakes the loop once, when the
    future resolves."""
    if fut.done():
        return True
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake(_: Future[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, woken)

    fut.add_done_callback(wake)
    # A timer on the loop, not asyncio.wait_for (a task and its callbacks per wait): REST
    # awaits every face here, on the one thread that runs all of REST's Python.
    timer = loop.call_later(max(timeout, 0.0), _resolve, woken)
    try:
        await woken
    finally:
        timer.cancel()
    return fut.done()


def _resolve(woken: asyncio.Future[None]) -> None:
    if not woken.done():  # woken already (the future or the timer), or its waiter cancelled
        woken.set_result(None)
