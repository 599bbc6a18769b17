"""A fake CallKaro for the benchmarks: answers POST /call/outbound after a fixed delay.

Raw asyncio, HTTP/1.1 keep-alive, one coroutine per connection: holds hundreds of
concurrent connections on one core, where a thread-per-connection server would spend the
benchmark's CPU on context switches. Listens on 127.0.0.1 only; prints its port on stdout.

    python bench/fake_provider.py --delay 0.2 [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024


async def _handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delay: float, counter
) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            if len(head) > MAX_HEADER_BYTES:
                return
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if length > MAX_BODY_BYTES:
                return
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(delay)
            number = next(counter)
            body = json.dumps(
                {"status": "success", "message": "Call initiated successfully", "call_id": f"ck-{number}"}
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def _serve(port: int, delay: float, backlog: int) -> None:
    counter = itertools.count(1)
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, delay=delay, counter=counter),
        host="127.0.0.1",
        port=port,
        backlog=backlog,
        limit=MAX_HEADER_BYTES * 2,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds before each answer")
    parser.add_argument("--backlog", type=int, default=2048)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.delay, args.backlog))


if __name__ == "__main__":
    main()
