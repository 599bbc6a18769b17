"""Benchmark 2: call placement throughput, end to end.

Seed due users, run one tick (claim + enqueue batch jobs), start the worker processes and
time from the first call a worker picks up (min dialed_at) to the last call marked ringing
(max last_status_at). The provider is bench/fake_provider.py answering after 200 ms.

Side by side in the same run: the physical limit (a bare ThreadPoolExecutor(200) posting
the same number of requests with one requests.Session), and the original design's setting
(5 processes, one call per job, 5 in flight).
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import requests
from requests.adapters import HTTPAdapter

import seed
from harness import (
    BENCH_DSN,
    PYTHON,
    ROOT,
    FakeProvider,
    Table,
    flush_redis,
    met,
    pg_connection_budget,
    say,
    stop_process,
)

# Issue 12: >= 80% of the bare thread pool in the same run (the absolute figure moves with
# the machine's load; the share much less).
TARGET_SHARE_OF_BARE = 0.80
TARGET_RSS_BYTES = 1.5 * 1024**3
# Connections this harness leaves for everyone else on the shared PostgreSQL server.
PG_HEADROOM = 10


@dataclass(frozen=True)
class Config:
    label: str
    processes: int  # QUEUE_CONCURRENCY
    concurrency: int  # PROVIDER_MAX_CONCURRENCY, in total
    batch: int  # CALL_BATCH_SIZE
    calls: int
    pool: bool = False  # one rqworker-pool command, as docker-compose.yml runs the workers

    @property
    def threads(self) -> int:
        return max(1, self.concurrency // self.processes)

    @property
    def db_connections(self) -> int:
        # Since ee16a76 the placement threads only dial; each worker records the answers on
        # its one connection. One more per worker to spare.
        return self.processes * 2


def _cpu_of_others(into: dict[int, tuple[str, float]]) -> None:
    """Record the CPU seconds so far of each PostgreSQL, Redis and fake provider process."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            name = proc.info["name"] or ""
            cmdline = " ".join(proc.info["cmdline"] or [])
            key = (
                "postgresql"
                if name.startswith("postgres")
                else "redis"
                if name.startswith("redis-server")
                else "provider"
                if "fake_provider.py" in cmdline
                else None
            )
            if key:
                times = proc.cpu_times()
                into[proc.pid] = (key, times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    totals = {"postgresql": 0.0, "redis": 0.0, "provider": 0.0}
    for pid, (key, seconds) in after.items():
        totals[key] += seconds - before.get(pid, (key, 0.0))[1]
    return totals


@dataclass
class Outcome:
    ringing: int
    statuses: dict[str, int]
    pickup_to_ringing_s: float
    wall_s: float
    peak_rss: int
    cpu_s: float
    # The workers' CPU from the first call picked up to the end: start-up (imports, Django's
    # set-up, ~1 s a process) left out, so that it can be divided by the calls.
    placing_cpu_s: float
    host_cpu_percent: float
    others_cpu: dict[str, float]


def bare_limit(provider: FakeProvider, *, calls: int, threads: int = 200) -> float:
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=threads))
    session.headers.update({"X-API-KEY": "bench", "Content-Type": "application/json"})
    url = f"{provider.url}/call/outbound"

    def post(i: int) -> int:
        body = {"to_number": f"+9170{i:08d}", "agent_id": "agent-bench", "metadata": {"call_id": str(i)}}
        return session.post(url, json=body, timeout=(5, 15)).status_code

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, range(min(threads, calls))))  # warm the keep-alive connections
        start = time.perf_counter()
        codes = list(pool.map(post, range(calls)))
        seconds = time.perf_counter() - start
    session.close()
    if codes.count(200) != calls:
        raise RuntimeError(f"bare limit: only {codes.count(200)} of {calls} requests answered 200")
    return calls / seconds


def _prepare(config: Config) -> None:
    from django.conf import settings
    from django.db import connections

    from calls.scheduling import calls_schedule_due

    seed.truncate_all()
    flush_redis()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    call_time = (now - timedelta(minutes=1)).time()
    seed.seed_same_slot(
        start=1, count=config.calls, zone="UTC", call_time=call_time, previous_tick=now - timedelta(minutes=5)
    )
    seed.vacuum_analyze()
    settings.CALL_BATCH_SIZE = config.batch  # the tick sizes its batch jobs from this
    summary = calls_schedule_due(now=datetime.now(UTC))
    if summary.enqueued != config.calls:
        raise RuntimeError(f"{config.label}: tick enqueued {summary.enqueued} of {config.calls}")
    connections.close_all()  # hold no connection of ours while the workers run


def _start_workers(config: Config, env: dict[str, str], log: Path) -> list[subprocess.Popen]:
    worker_env = {
        **env,
        "QUEUE_CONCURRENCY": str(config.processes),
        "PROVIDER_MAX_CONCURRENCY": str(config.concurrency),
        "CALL_BATCH_SIZE": str(config.batch),
        "LOG_LEVEL": "INFO",  # production's level: the per-call log lines are part of the cost
    }
    manage = [PYTHON, str(ROOT / "manage.py")]
    output = open(log, "ab")  # noqa: SIM115 - closed when the processes are gone
    simple = ["--worker-class", "rq.worker.SimpleWorker"]
    if config.pool:
        # docker-compose.yml's worker command, plus --burst so the pool exits once the queues
        # are empty. Its workers are forked processes that each run SimpleWorker.
        pool = ["rqworker-pool", "daily-calls-tick", "daily-calls", "--burst"]
        commands = [[*manage, *pool, "--num-workers", str(config.processes), *simple]]
    else:
        commands = [[*manage, "rqworker", "daily-calls", "--burst", *simple]] * config.processes
    return [subprocess.Popen(c, cwd=ROOT, env=worker_env, stdout=output, stderr=output) for c in commands]


def _tree(processes: list[subprocess.Popen]) -> list[psutil.Process]:
    tree = []
    for process in processes:
        try:
            parent = psutil.Process(process.pid)
            tree.append(parent)
            tree.extend(parent.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return tree


def _watch(
    config: Config, processes: list[subprocess.Popen], timeout: float, others: dict[int, tuple[str, float]]
) -> tuple[int, float, float, float, list[tuple[datetime, float]]]:
    """Sample RSS and CPU until the burst workers exit; (peak RSS, CPU s, host CPU %, wall s,
    the workers' CPU s so far at each sample). CPU of PostgreSQL backends (which end with
    the workers) is sampled into ``others``."""
    start = time.perf_counter()
    peak, cpu_by_pid, samples = 0, {}, 0
    cpu_over_time: list[tuple[datetime, float]] = []
    psutil.cpu_percent()
    while time.perf_counter() - start < timeout:
        samples += 1
        if samples % 5 == 0:
            _cpu_of_others(others)
        total = 0
        for proc in _tree(processes):
            try:
                total += proc.memory_info().rss
                times = proc.cpu_times()
                cpu_by_pid[proc.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, total)
        cpu_over_time.append((datetime.now(UTC), sum(cpu_by_pid.values())))
        if all(p.poll() is not None for p in processes):
            break
        time.sleep(0.1)
    wall = time.perf_counter() - start
    host_cpu = psutil.cpu_percent()
    for process in processes:
        stop_process(process)
    return peak, sum(cpu_by_pid.values()), host_cpu, wall, cpu_over_time


def _outcome(config: Config, watch: tuple, others: dict[str, float]) -> Outcome:
    peak, cpu, host_cpu, wall, cpu_over_time = watch
    with psycopg.connect(BENCH_DSN) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM calls_call GROUP BY status").fetchall())
        first, last = conn.execute(
            "SELECT min(dialed_at), max(last_status_at) FILTER (WHERE status = 'ringing') FROM calls_call"
        ).fetchone()
    span = (last - first).total_seconds() if first and last else float("nan")
    at_first = max((seconds for at, seconds in cpu_over_time if first and at <= first), default=0.0)
    return Outcome(
        statuses.get("ringing", 0), statuses, span, wall, peak, cpu, cpu - at_first, host_cpu, others
    )


def py_spy_record(processes: list[subprocess.Popen], out: Path, name: str) -> list[subprocess.Popen]:
    """Sample each worker with py-spy, only the thread holding the GIL: Python CPU time.
    --subprocesses: rqworker-pool's workers are forked children of the command's process,
    which itself only waits on them."""
    import shutil

    py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    return [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(p.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--nonblocking",
                "--gil",
                "--subprocesses",
                "--output",
                str(out / f"{name}-{i}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, p in enumerate(processes)
    ]


def py_spy_finish(spies: list[subprocess.Popen]) -> None:
    """Let each py-spy write its file once its process is gone (stopped if it hangs)."""
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process(spy)


def summarize_py_spy(
    files: list[Path],
    *,
    top: int = 40,
    loop_frames: tuple[str, ...] = ("BaseWorker.work ", "Thread._bootstrap "),
) -> str:
    """Inclusive and self shares of functions across py-spy's collapsed stacks; samples
    without one of ``loop_frames`` (the processes' serving loop) count as start-up."""
    from collections import Counter

    inclusive, own, total, start_up = Counter(), Counter(), 0, 0
    for file in files:
        if not file.exists():
            continue
        for line in file.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            # Leading frames name the process (--subprocesses) and the thread, not code.
            frames = [
                f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                for f in stack.split(";")
                if not f.startswith(("process ", "thread "))
            ]
            n = int(count)
            if not any(f.startswith(loop_frames) for f in frames):
                # Start-up (imports, Django's set-up, forking the pool): not per call.
                start_up += n
                continue
            total += n
            for frame in set(frames):
                inclusive[frame] += n
            if frames:
                own[frames[-1]] += n
    lines = [
        f"{total} samples of the thread holding the GIL (py-spy --gil) in the workers' loop and their "
        f"threads; {start_up} more in start-up, left out",
        "",
        "inclusive:",
    ]
    lines += [f"{c / total:6.1%}  {f}" for f, c in inclusive.most_common(top)]
    lines += ["", "self:"] + [f"{c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    return "\n".join(lines) + "\n"


def place(config: Config, env: dict[str, str], logs: Path, profile_to: Path | None = None) -> Outcome:
    _prepare(config)
    name = f"workers-{config.processes}x{config.concurrency}-b{config.batch}{'-pool' if config.pool else ''}"
    log = logs / f"{name}.log"
    before: dict[int, tuple[str, float]] = {}
    _cpu_of_others(before)
    after = dict(before)
    processes = _start_workers(config, env, log)
    spies = py_spy_record(processes, profile_to, name) if profile_to is not None else []
    # Bounded: the original setting does ~20 calls/s, the others should do hundreds.
    timeout = 30 + config.calls / (15 if config.concurrency <= 5 else 100)
    watched = _watch(config, processes, timeout, after)
    _cpu_of_others(after)
    outcome = _outcome(config, watched, _cpu_delta(before, after))
    py_spy_finish(spies)
    if profile_to is not None:
        files = [profile_to / f"{name}-{i}.txt" for i in range(len(processes))]
        (profile_to / f"{name}-summary.txt").write_text(summarize_py_spy(files))
    if outcome.ringing != config.calls:
        say(f"placement {config.label}: only {outcome.ringing} of {config.calls} ringing: {outcome.statuses}")
        say(f"placement {config.label}: see {log}")
    return outcome


def parse_config(spec: str, calls: int) -> Config:
    """'4x80b40' -> 4 processes, PROVIDER_MAX_CONCURRENCY 80, CALL_BATCH_SIZE 40; suffix '-pool'
    for one rqworker-pool command with SimpleWorker, as docker-compose.yml runs the workers."""
    pool = spec.endswith("-pool")
    processes, _, rest = spec.removesuffix("-pool").partition("x")
    concurrency, _, batch = rest.partition("b")
    threads = max(1, int(concurrency) // int(processes))
    label = f"{processes} x {concurrency} ({threads} threads each), batch {batch}"
    label += ", rqworker-pool (SimpleWorker, as docker-compose)" if pool else ""
    return Config(label, int(processes), int(concurrency), int(batch), calls, pool)


def run(
    *,
    calls: int,
    original_calls: int,
    provider: FakeProvider,
    quick: bool,
    logs: Path,
    out: Path | None,
    specs: list[str] | None = None,
) -> Table:
    import os

    table = Table("2. Call placement throughput (fake provider answering after 200 ms)")
    env = dict(os.environ)
    env["LOG_LEVEL"] = "INFO"
    original = Config("original design: 5 processes x 1 call per job (5 in flight)", 5, 5, 1, original_calls)
    specs = specs or (
        ["5x100b50-pool", "5x250b50-pool"]
        if quick
        else ["4x200b100-pool", "4x200b50-pool", "5x100b50-pool", "5x250b50-pool", "4x200b100", "2x100b50"]
    )
    configs = [original, *(parse_config(spec, calls) for spec in specs)]

    say(f"placement: bare limit, {calls:,} requests on ThreadPoolExecutor(200)")
    bare = bare_limit(provider, calls=calls)
    table.add(
        "bare limit: ThreadPoolExecutor(200) + requests.Session",
        f"{calls:,} calls",
        f"{bare:,.0f} calls/s",
        "1.0x",
        "",
        "",
    )

    max_connections, _ = pg_connection_budget()
    for config in configs:
        _, in_use = pg_connection_budget()
        free = max_connections - in_use - PG_HEADROOM
        n = f"{config.calls:,} calls"
        if config.db_connections > free:
            table.add(
                config.label,
                n,
                "not run",
                "",
                "",
                "not run",
                note=f"needs {config.db_connections} PostgreSQL connections at once; the server allows "
                f"{max_connections} and {in_use} are in use",
            )
            say(f"placement: skipped {config.label}: needs {config.db_connections} connections, {free} free")
            continue
        say(f"placement: {config.label}, {config.calls:,} calls")
        load = os.getloadavg()[0]
        # --profile samples the first setting after the original with py-spy.
        result = place(
            config, env, logs, profile_to=out if out is not None and config is configs[1] else None
        )
        rate = result.ringing / result.pickup_to_ringing_s if result.pickup_to_ringing_s else 0.0
        ms_a_call = result.placing_cpu_s / max(result.ringing, 1) * 1000
        share = rate / bare
        is_original = config.concurrency <= 5
        ok = (share >= TARGET_SHARE_OF_BARE) and result.peak_rss <= TARGET_RSS_BYTES
        extra = ""
        if is_original:
            extra = f"; at this rate 5,000 calls take {5000 / rate:,.0f} s" if rate else ""
        table.add(
            config.label,
            n,
            f"{rate:,.0f} calls/s",
            f"{share:.0%} of bare",
            "" if is_original else f">= {TARGET_SHARE_OF_BARE:.0%} of bare; RSS <= 1.5 GB",
            "" if is_original else met(ok),
            note=(
                f"{result.ringing:,}/{config.calls:,} ringing; "
                f"pickup->last ringing {result.pickup_to_ringing_s:.1f} s, "
                f"wall incl. start-up {result.wall_s:.1f} s; peak RSS {result.peak_rss / 2**20:,.0f} MiB "
                f"({config.processes} workers{' and the pool process' if config.pool else ''}); "
                f"CPU s: workers {result.cpu_s:.1f}, of which placing {result.placing_cpu_s:.1f} "
                f"({ms_a_call:.2f} ms a call), "
                + ", ".join(f"{k} {v:.1f}" for k, v in result.others_cpu.items())
                + f" (host busy {result.host_cpu_percent:.0f}% of {os.cpu_count()} cores, "
                f"load average {load:.1f} before)"
                + (f"; statuses {result.statuses}" if result.ringing != config.calls else "")
                + extra
            ),
        )
        rss_mib = result.peak_rss / 2**20
        say(
            f"placement: {config.label}: {rate:,.0f} calls/s ({share:.0%} of bare), {rss_mib:,.0f} MiB RSS, "
            f"workers {ms_a_call:.2f} ms CPU a call"
        )
    seed.truncate_all()
    flush_redis()
    return table
