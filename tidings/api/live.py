"""Live inbox updates: one listener per API process fans store changes out to open streams.

Server-Sent Events rather than WebSockets: updates only flow server to browser (marking read is
an ordinary POST), SSE is plain HTTP (proxies, HTTP/2, CORS and load balancers need nothing
special), and `EventSource` reconnects by itself.

The hub reads `store.inbox.changes()` once per API process (PostgreSQL: LISTEN on
`tidings_inbox`, so a write by any worker or API process on any machine reaches every API
process; SQLite: triggers record each inbox write in `inbox_changes`, which the hub polls every
0.2 s, so the worker, the CLI and the API may be separate processes on the one machine) and, for
each change of a recipient with open streams, reads that recipient's counts once and hands them
to every one of that recipient's streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

from tidings.activities.store.base import InboxCounts, InboxStore

log = logging.getLogger(__name__)


class InboxHub:
    def __init__(self, inbox: InboxStore) -> None:
        self._inbox = inbox
        self._streams: dict[str, set[asyncio.Queue[InboxCounts]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="tidings-inbox-hub")

    async def _listen(self) -> None:
        changes = self._inbox.changes()
        try:
            async for recipient_id in changes:
                if not recipient_id:  # listening (again): from now on nothing is missed
                    self._ready.set()
                    for every in list(self._streams):
                        await self._push(every)
                elif recipient_id in self._streams:
                    await self._push(recipient_id)
        finally:
            await changes.aclose()  # type: ignore[attr-defined]

    async def _push(self, recipient_id: str) -> None:
        try:
            counts = await self._inbox.counts(recipient_id)
        except Exception:  # the store is down: the next change tries again
            log.warning("inbox counts unavailable for a live update", exc_info=True)
            return
        for queue in list(self._streams.get(recipient_id, ())):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(counts)

    @contextlib.asynccontextmanager
    async def subscribe(self, recipient_id: str) -> AsyncIterator[asyncio.Queue[InboxCounts]]:
        """A queue of this recipient's counts, one entry per change, while the block runs."""
        self.start()
        await self._ready.wait()
        queue: asyncio.Queue[InboxCounts] = asyncio.Queue(maxsize=100)
        self._streams[recipient_id].add(queue)
        try:
            yield queue
        finally:
            self._streams[recipient_id].discard(queue)
            if not self._streams[recipient_id]:
                del self._streams[recipient_id]

    @property
    def open_streams(self) -> int:
        return sum(len(q) for q in self._streams.values())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
