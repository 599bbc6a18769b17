"""Benchmark 3: webhook throughput, gunicorn serving relevel.wsgi.

Calls are seeded in 'dialing' with a provider call id; the load generator sends, for each
call, ringing, then in_progress, then completed (all ringing first, and so on, so that one
call's events never race each other), each body signed in advance with
CALLKARO_WEBHOOK_SECRET. The load generator (wrk when installed, else bench/loadgen.py)
runs on the same cores as gunicorn, PostgreSQL and Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg
import requests

import seed
from harness import BENCH_DSN, PYTHON, ROOT, Table, flush_redis, met, say, stop_process

TARGET_RPS = 500
TARGET_P99_MS = 50
SECRET = "bench-webhook-secret-0123456789abcdef"  # harness.bench_env's CALLKARO_WEBHOOK_SECRET
EVENTS = ("ringing", "in_progress", "completed")


@dataclass(frozen=True)
class Server:
    label: str
    args: tuple[str, ...]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_requests(path: Path, provider_ids: list[str]) -> int:
    lines = []
    for status in EVENTS:
        for provider_id in provider_ids:
            payload = {"call_id": provider_id, "status": status, "timestamp": "2026-06-15T14:31:00Z"}
            if status == "completed":
                payload.update(
                    duration=42,
                    transcript="Agent: Hi, this is your daily check-in. User: Going well, thanks!",
                    recording_url=f"https://recordings.example/{provider_id}.mp3",
                )
            body = json.dumps(payload, separators=(",", ":")).encode()
            signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            lines.append(f"{signature}\t{body.decode()}\n")
    path.write_text("".join(lines))
    return len(lines)


def _start_gunicorn(server: Server, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, LOG_LEVEL="INFO")
    output = open(log, "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "relevel.wsgi",
            *server.args,
            "-b",
            f"127.0.0.1:{port}",
            "--backlog",
            "2048",
        ],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=output,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        stop_process(process)
        raise RuntimeError(f"gunicorn {server.label} did not answer /api/health; see {log}")
    # Warm every worker and thread a little (imports, database connections).
    with requests.Session() as session:
        for _ in range(50):
            session.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
    return process


def _load(file: Path, port: int, *, connections: int, timeout_s: int) -> dict[str, int]:
    wrk = shutil.which("wrk")
    if wrk:
        command = [
            wrk,
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{timeout_s}s",
            "--timeout",
            "5s",
            "-s",
            str(ROOT / "bench" / "webhook.lua"),
            f"http://127.0.0.1:{port}",
            "--",
            str(file),
            "1",
            str(file) + ".done",
        ]
        for old in file.parent.glob(file.name + ".done.*"):
            old.unlink()
    else:
        command = [
            PYTHON,
            str(ROOT / "bench" / "loadgen.py"),
            str(file),
            str(port),
            "--processes",
            "2",
            "--threads",
            str(max(1, connections // 2)),
        ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    client = psutil.Process(process.pid)
    cpu = 0.0
    try:
        while process.poll() is None:
            if wrk and Path(f"{file}.done.0").exists():
                process.send_signal(signal.SIGINT)  # wrk then prints its summary and exits
                process.wait(timeout=30)
                break
            try:
                times = client.cpu_times()
                cpu = (
                    times.user
                    + times.system
                    + sum(c.cpu_times().user + c.cpu_times().system for c in client.children(recursive=True))
                )
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.05)
        stdout = process.communicate(timeout=timeout_s + 30)[0]
    finally:
        stop_process(process)
    line = next((out for out in stdout.splitlines() if out.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"load generator printed no result: {stdout[-500:]}")
    result = {k: int(v) for k, v in (part.split("=") for part in line.split()[1:])}
    result["client_cpu_ms"] = int(cpu * 1000)
    result["tool"] = "wrk" if wrk else "loadgen.py"
    return result


def run(*, calls: int, quick: bool, logs: Path, connections: int = 16) -> Table:
    table = Table("3. Webhook throughput (gunicorn + relevel.wsgi, POST /api/webhooks/call)")
    servers = [
        Server("gunicorn -w 2 --threads 4 (gthread)", ("-w", "2", "--threads", "4")),
        Server("gunicorn -w 4 --threads 2 (gthread)", ("-w", "4", "--threads", "2")),
        Server("gunicorn -w 3 (sync, as docker-compose/Dockerfile)", ("-w", "3")),
    ]
    if quick:
        servers = servers[:2]
    file = logs / "webhook-requests.txt"
    for server in servers:
        seed.truncate_all()
        flush_redis()
        provider_ids = seed.seed_dialing_calls(start_user=1, count=calls, now=datetime.now(UTC))
        seed.vacuum_analyze()
        total = _write_requests(file, provider_ids)
        port = _free_port()
        name = server.label.split(" (")[0].replace(" ", "").replace("-", "_")
        gunicorn = _start_gunicorn(server, port, logs / f"{name}.log")
        try:
            say(f"webhook: {server.label}, {total:,} requests, {connections} connections")
            psutil.cpu_percent()
            result = _load(file, port, connections=connections, timeout_s=120)
            host_cpu = psutil.cpu_percent()
        finally:
            stop_process(gunicorn)
        with psycopg.connect(BENCH_DSN) as conn:
            statuses = dict(
                conn.execute("SELECT status, count(*) FROM calls_call GROUP BY status").fetchall()
            )
        seconds = result["duration_us"] / 1e6
        rps = result["requests"] / seconds
        p50, p99 = result["p50_us"] / 1000, result["p99_us"] / 1000
        client_s = result["client_cpu_ms"] / 1000
        ok = rps >= TARGET_RPS and p99 <= TARGET_P99_MS and result["non200"] == 0
        table.add(
            server.label,
            f"{result['requests']:,} requests",
            f"{rps:,.0f} req/s; p50 {p50:.1f} ms, p99 {p99:.1f} ms",
            f"{rps / TARGET_RPS:.2f}x the target rate",
            f">= {TARGET_RPS}/s, p99 <= {TARGET_P99_MS} ms",
            met(ok),
            note=f"{result['tool']} with {connections} keep-alive connections used "
            f"{client_s:.1f} s CPU ({client_s * 100 / seconds:.0f}% of one core) "
            f"over {seconds:.1f} s; host busy {host_cpu:.0f}% of "
            f"{os.cpu_count()} cores; non-200: {result['non200']}, socket errors: {result['socket_errors']}; "
            f"calls now {statuses}",
        )
        say(f"webhook: {server.label}: {rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    table.notes.append(
        "The load generator runs on the same 2 cores as gunicorn, PostgreSQL and Redis: every figure is "
        "a lower bound of what the server alone would do."
    )
    seed.truncate_all()
    return table
