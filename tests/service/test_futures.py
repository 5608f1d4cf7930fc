"""service.futures.done_within: a thread's future awaited on an event loop, never cancelled."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future

from service.futures import done_within


def test_a_future_resolved_by_another_thread_wakes_the_loop() -> None:
    fut: Future[int] = Future()
    threading.Timer(0.05, fut.set_result, (7,)).start()

    async def main() -> tuple[bool, float]:
        t0 = time.monotonic()
        return await done_within(fut, 10.0), time.monotonic() - t0

    done, waited = asyncio.run(main())
    assert done and fut.result() == 7 and waited < 5.0


def test_time_up_leaves_the_future_running_and_resolvable() -> None:
    fut: Future[int] = Future()
    assert asyncio.run(done_within(fut, 0.05)) is False
    assert not fut.cancelled()
    fut.set_result(1)  # the store's or the engine's thread can still resolve it
    assert asyncio.run(done_within(fut, 0.0)) is True  # already done: no wait at all


def test_a_cancelled_waiter_does_not_cancel_the_future() -> None:
    fut: Future[int] = Future()

    async def main() -> None:
        waiter = asyncio.ensure_future(done_within(fut, 10.0))
        await asyncio.sleep(0.02)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)

    asyncio.run(main())
    assert not fut.cancelled()
    fut.set_result(2)  # its wake-up finds the loop closed: nothing raised here
    assert fut.result() == 2
