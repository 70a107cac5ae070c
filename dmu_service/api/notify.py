"""Wake waiting long-polls and SSE streams when a mixture changes.

In one process, a change wakes every waiter at once (asyncio.Condition). Across replicas there is no
broker: each waiter also re-reads the mixture's version from the database every
``mixture_poll_interval_s`` (0.25 s by default), so a change made through another replica is seen
within that interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class MixtureNotifier:
    def __init__(self, poll_interval_s: float):
        self.poll_interval_s = poll_interval_s
        self._condition: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._condition = asyncio.Condition()

    def notify(self) -> None:
        """Safe from any thread (sync routes run in a thread pool)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._notify_all()))

    async def _notify_all(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def wait_for_newer(self, known: int, wait_s: float, read_version: Callable[[], Awaitable[int]]) -> int:
        """Return the current version once it differs from ``known``, or ``known`` after ``wait_s``."""
        if self._condition is None:  # an app used without its lifespan (e.g. mounted elsewhere)
            self.bind(asyncio.get_running_loop())
        deadline = time.monotonic() + wait_s
        while True:
            current = await read_version()
            remaining = deadline - time.monotonic()
            if current != known or remaining <= 0:
                return current
            async with self._condition:
                try:
                    await asyncio.wait_for(self._condition.wait(), timeout=min(remaining, self.poll_interval_s))
                except TimeoutError:
                    pass
