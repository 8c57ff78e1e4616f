"""A benchmark sink in a process of its own: notes when each alert arrives, answers after a delay.

    python3 benchmarks/receiver.py [--delay SECONDS] [--status 202]

Prints its port, then serves HTTP/1.1 (kept-alive connections, each handled on its own, as a
Go or Netty server does): every POST is answered ``--delay`` seconds after it arrived (a sink
20 ms away), with ``--status`` (or 503 while down); with ``--trickle`` it sends the status line
and then one byte every 3 s, forever (stuck mid-answer). It reads the benchmark ids of the alerts
in any body the forwarder sends (Falco JSON, GELF, Loki push, OTLP/JSON), with their arrival
times. ``GET /count`` gives {"distinct", "total"}; ``GET /stats`` gives every id's arrivals in
order; ``POST /down`` and ``POST /up`` switch the outage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

# The id in output_fields (Falco JSON; Loki's line, a JSON string), as a GELF field, or as
# an OTLP attribute.
_ID = re.compile(
    rb'\\?"bench\.id\\?": ?(\d+)|"_bench_id": ?(\d+)'
    rb'|"key":"bench\.id","value":\{"intValue":"(\d+)"'
)
_REASONS = {200: b"OK", 202: b"Accepted", 204: b"No Content", 503: b"Service Unavailable"}


class Receiver:
    """What arrived, and how to answer."""

    def __init__(self, delay: float, status: int, trickle: bool):
        self.delay = delay
        self.status = status
        self.trickle = trickle
        self.down = False
        self.arrivals: list[tuple[int, float]] = []
        self.seen: set[int] = set()

    def record(self, body: bytes) -> None:
        """Note every alert id in ``body`` as arrived now."""
        now = time.monotonic()
        for match in _ID.finditer(body):
            number = int(next(group for group in match.groups() if group is not None))
            self.arrivals.append((number, now))
            self.seen.add(number)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the requests of one connection, one after the other."""
        try:
            while request := await reader.readline():
                method, path = request.split()[:2]
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if self.trickle and method == b"POST" and path not in (b"/down", b"/up"):
                    self.record(body)
                    writer.write(b"HTTP/1.1 200 OK\r\n")
                    while True:
                        await writer.drain()
                        await asyncio.sleep(3)
                        writer.write(b"X")
                status, reply = await self.answer(method, path, body)
                reason = _REASONS.get(status, b"Whatever")
                head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n" % (
                    status,
                    reason,
                    len(reply),
                )
                writer.write(head + reply)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # a sender cut off, or killed
        finally:
            writer.close()

    async def answer(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        """The status and body for one request."""
        if method == b"GET" and path == b"/count":
            return 200, json.dumps(
                {"distinct": len(self.seen), "total": len(self.arrivals)}
            ).encode()
        if method == b"GET" and path == b"/stats":
            return 200, json.dumps(self.arrivals).encode()
        if method == b"POST" and path in (b"/down", b"/up"):
            self.down = path == b"/down"
            return 200, b""
        if self.down:
            return 503, b""
        self.record(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.status, b""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=202)
    parser.add_argument("--trickle", action="store_true")
    args = parser.parse_args()
    receiver = Receiver(args.delay, args.status, args.trickle)
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
