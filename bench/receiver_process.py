"""The benchmark's webhook receiver in a process of its own (`bench.notifications --worker-process`).

It stands for the customer's endpoint, so its CPU is not Tidings' and is reported apart. It writes
`ready <url>` once it listens, then `received <key> <time>` for every POST to `/hook?k=<key>`.
"""

from __future__ import annotations

import asyncio
import sys

from tidings.sandbox.http_endpoint import HttpEndpoint, RecordedRequest


def report(request: RecordedRequest) -> None:
    sys.stdout.write(f"received {request.query.removeprefix('k=')} {request.received_at!r}\n")
    sys.stdout.flush()


async def main() -> None:
    endpoint = await HttpEndpoint(on_request=report).start()
    sys.stdout.write(f"ready {endpoint.url}\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await endpoint.stop()


if __name__ == "__main__":
    asyncio.run(main())
