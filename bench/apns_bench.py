"""APNs provider overhead: 2,000 sends through ApnsProvider against a plain httpx HTTP/2 loop.

Both send the same requests (same headers, payload and provider token) to the local HTTP/2 APNs
stand-in with the same concurrency, in one run; rounds alternate to share the machine's noise.
It prints sends/s for each, the ratio, and the connections each opened (the provider must keep
one connection, never one per message).

    python -m bench.apns_bench [--count 2000] [--concurrency 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from tidings.activities.providers.apns import ApnsProvider, build_request
from tidings.activities.rendering import InlineRenderer
from tidings.models import Channel, Content, DeliveryInput, Destination, Priority, Recipient, delivery_id_for
from tidings.sandbox.apns import ApnsSandbox
from tidings.sandbox.credentials import private_pem, public_pem
from tidings.settings import ApnsSettings

TOPIC = "com.example.bench"


def deliveries(count: int) -> list[DeliveryInput]:
    result = []
    for i in range(count):
        token = f"{i:08x}" * 8
        recipient = Recipient.model_validate(
            {"id": f"u{i}", "devices": [{"id": "d", "platform": "apns", "token": token}]}
        )
        destination = Destination(channel=Channel.push, provider="apns", address="d", device_id="d")
        result.append(
            DeliveryInput(
                delivery_id=delivery_id_for(f"notification-bench-{i}", destination),
                workflow_id=f"notification-bench-{i}",
                notification_id=f"bench-{i}",
                destination=destination,
                recipient=recipient,
                content=Content(title="Bench", body=f"message {i}"),
                priority=Priority.high,
            )
        )
    return result


async def run_provider(provider: ApnsProvider, items: list[DeliveryInput], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    renderer = InlineRenderer()

    async def one(d: DeliveryInput) -> None:
        async with gate:
            await provider.send(d, renderer.render(d.content, d.recipient, Channel.push))

    start = time.perf_counter()
    await asyncio.gather(*(one(d) for d in items))
    return time.perf_counter() - start


async def run_plain(base: str, jwt_token: str, items: list[DeliveryInput], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    renderer = InlineRenderer()
    prepared = []
    for d in items:
        headers, body = build_request(d, renderer.render(d.content, d.recipient, Channel.push), TOPIC)
        prepared.append((f"{base}/3/device/{d.recipient.devices[0].token}", headers, body))
    async with httpx.AsyncClient(http1=False, http2=True) as client:

        async def one(url: str, headers: dict[str, str], body: bytes) -> None:
            async with gate:
                response = await client.post(
                    url, content=body, headers={**headers, "authorization": f"bearer {jwt_token}"}
                )
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(*p) for p in prepared))
        return time.perf_counter() - start


async def main(count: int, concurrency: int, rounds: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sandbox = await ApnsSandbox("TEAMBENCH1", "KEYBENCH01", public_pem(key), topics={TOPIC}).start()
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "AuthKey.p8"
        key_file.write_text(private_pem(key))
        settings = ApnsSettings(
            team_id="TEAMBENCH1",
            key_id="KEYBENCH01",
            private_key_file=key_file,
            topic=TOPIC,
            base_url=sandbox.url,
        )
        items = deliveries(count)
        provider = ApnsProvider(settings)
        token = provider.tokens.token()
        times: dict[str, list[float]] = {"provider": [], "plain httpx": []}
        connections: dict[str, int] = {}
        try:
            for _ in range(rounds):
                before = len(sandbox.connections)
                times["provider"].append(await run_provider(provider, items, concurrency))
                connections["provider"] = (
                    len(sandbox.connections) - before if not connections else connections["provider"]
                )
                before = len(sandbox.connections)
                times["plain httpx"].append(await run_plain(sandbox.url, token, items, concurrency))
                connections["plain httpx"] = len(sandbox.connections) - before
        finally:
            await provider.aclose()
            await sandbox.stop()
    total = count * rounds
    print(f"{count} APNs sends x {rounds} rounds, concurrency {concurrency}, local HTTP/2 server")
    rates = {name: total / sum(t) for name, t in times.items()}
    for name, rate in rates.items():
        print(f"{name:12} {rate:8.0f} sends/s   connections opened: {connections[name]}")
    print(f"ratio provider/plain: {rates['provider'] / rates['plain httpx']:.2f}x")
    seen = len(sandbox.provider_tokens)
    print(f"provider tokens issued: {provider.tokens.issued}, seen by the server: {seen}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.count, args.concurrency, args.rounds))
