"""Fallback load generator when wrk is not installed: processes x threads, each thread one
keep-alive http.client connection, sending precomputed signed webhook requests once each.

    python bench/loadgen.py FILE PORT [--processes 2] [--threads 8]

Prints the same RESULT line as bench/webhook.lua.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import threading
import time


def _thread(lines: list[tuple[str, bytes]], port: int, latencies: list[float], bad: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for signature, body in lines:
        start = time.perf_counter()
        conn.request(
            "POST",
            "/api/webhooks/call",
            body=body,
            headers={"Content-Type": "application/json", "X-Callkaro-Signature": signature},
        )
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            bad.append(response.status)
    conn.close()


def _process(lines: list[tuple[str, bytes]], port: int, threads: int, out) -> None:
    latencies: list[float] = []
    bad: list[int] = []
    workers = [
        threading.Thread(target=_thread, args=(lines[i::threads], port, latencies, bad))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put((latencies, len(bad)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("port", type=int)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    lines = []
    with open(args.file) as file:
        for line in file:
            signature, _, body = line.rstrip("\n").partition("\t")
            lines.append((signature, body.encode()))
    queue = multiprocessing.Queue()
    start = time.perf_counter()
    procs = [
        multiprocessing.Process(
            target=_process, args=(lines[i :: args.processes], args.port, args.threads, queue)
        )
        for i in range(args.processes)
    ]
    for proc in procs:
        proc.start()
    latencies, bad = [], 0
    for _ in procs:
        part, part_bad = queue.get(timeout=600)
        latencies.extend(part)
        bad += part_bad
    for proc in procs:
        proc.join(timeout=10)
    duration = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1e6)

    print(
        f"RESULT requests={len(latencies)} duration_us={int(duration * 1e6)} "
        f"p50_us={pct(50)} p99_us={pct(99)} "
        f"max_us={int(latencies[-1] * 1e6)} non200={bad} socket_errors=0",
        flush=True,
    )


if __name__ == "__main__":
    main()
