"""What every benchmark shares: the environment, the bench database and Redis, processes,
timing and the result tables.

Everything talks to 127.0.0.1 only. The bench database (relevel_bench) is created and
migrated at the start of a run and dropped at the end; Redis DB 9 is flushed before and
after.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Overridable so that two checkouts can benchmark at once without sharing data.
BENCH_DB = os.environ.get("RELEVEL_BENCH_DB", "relevel_bench")
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
BENCH_DSN = f"host=127.0.0.1 port=5432 user=postgres dbname={BENCH_DB}"
REDIS_URL = os.environ.get("RELEVEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def bench_env(*, provider_port: int, **overrides: str | int) -> dict[str, str]:
    """The environment every Django process of the benchmark runs with."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="relevel.settings",
        SECRET_KEY="bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",  # 50+ characters
        DEBUG="false",
        CALL_PROVIDER="callkaro",
        CALLKARO_API_KEY="bench",
        CALLKARO_BASE_URL=f"http://127.0.0.1:{provider_port}",
        CALLKARO_WEBHOOK_SECRET="bench-webhook-secret-0123456789abcdef",  # 32+
        CALLKARO_AGENT_ID="agent-bench",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        REDIS_URL=REDIS_URL,
        CONN_MAX_AGE="600",
        PYTHONPATH=str(ROOT),
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


# --- Database and Redis -------------------------------------------------------------------


def create_bench_db() -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")


def drop_bench_db() -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--verbosity", "0", "--no-input"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def pg_connection_budget() -> tuple[int, int]:
    """(max_connections, connections in use) of the PostgreSQL server, all databases."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
        in_use = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()[0]
    return max_connections, int(in_use)


def versions() -> dict[str, str]:
    import redis

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    info = redis.Redis.from_url(REDIS_URL).info("server")
    return {"postgresql": pg, "redis": info["redis_version"]}


def machine() -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        kib = int(meminfo.readline().split()[1])
    return {"nproc": str(os.cpu_count()), "cpu": model, "ram": f"{kib / 1024 / 1024:.1f} GiB"}


# --- Processes ----------------------------------------------------------------------------


class FakeProvider:
    """bench/fake_provider.py in a process of its own, so its CPU is not the harness's GIL."""

    def __init__(self, *, delay: float) -> None:
        self.process = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "fake_provider.py"), "--delay", str(delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("the fake provider did not start")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen, *, grace: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- Timing and tables --------------------------------------------------------------------


def timed(func: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Row:
    variant: str
    n: str
    figure: str
    ratio: str = ""
    target: str = ""
    met: str = ""
    note: str = ""


@dataclass
class Table:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args, **kwargs) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def render(self) -> str:
        headers = ["variant", "n", "median / throughput", "ratio vs alternative", "target", "met?"]
        cells = [[r.variant, r.n, r.figure, r.ratio, r.target, r.met] for r in self.rows]
        widths = [
            max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)
        ]
        lines = [f"## {self.title}", ""]
        lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in cells:
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        for row in self.rows:
            if row.note:
                lines.append(f"- {row.variant}: {row.note}")
        lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "n/a"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_ratio(ours: float, theirs: float, *, higher_is_better: bool = False) -> str:
    """'12.3x faster' style ratio of ours against the alternative."""
    if not ours or not theirs or ours != ours or theirs != theirs:
        return "n/a"
    factor = ours / theirs if higher_is_better else theirs / ours
    return f"{factor:.1f}x" if factor >= 1 else f"{factor:.2f}x"


def met(ok: bool) -> str:
    return "yes" if ok else "NO"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
