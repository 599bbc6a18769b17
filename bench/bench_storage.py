"""Storage (issue 20): bytes per user per day that calls take in PostgreSQL (heap, indexes,
TOAST), and how long the retention prune takes.

Seeding: ``users`` people (seed.seed_population), then ``days`` local days of calls generated
in the server, one INSERT ... SELECT per day: every callable user's first attempt, 70%
answered with a transcript, a recording link and the provider payloads of a real call (the
documented examples in tests/fixtures: the create-call answer, a status update, the end of
call report, with its transcript), the others unanswered with one retry (~1.3 calls a user a
day, as README's figures). Transcripts are 1,000 distinct texts of ~1.5 KB drawn from a
vocabulary, so that TOAST compresses each value as it would real speech, not a repeat.

The prune is timed on that table: content of one day's calls erased, then one day's rows
deleted (after its rollup), each by calls.retention.data_prune as the nightly job runs it;
per-row rates are extrapolated to 1M users (one day's work a night) and to a 90-day backlog.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

import seed
from harness import BENCH_DSN, Table, say

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
VOCABULARY = (
    "hello this is your daily check in call how are you feeling today I slept well my knee "
    "hurts a little when I walk the doctor said to rest I took my medicine this morning and "
    "had breakfast with my daughter we talked about the weekend I will go for a walk later "
    "thank you for calling see you tomorrow yes no maybe fine tired good better worse pain "
    "appointment pharmacy lunch dinner garden weather rain sunny cold warm family friends"
).split()
TRANSCRIPTS = 1000
ANSWERED = 0.7


def _content_pool(rng: random.Random) -> list[tuple[str, str]]:
    create = json.loads((FIXTURES / "vapi" / "create_call_response.json").read_text())
    status = json.loads((FIXTURES / "vapi" / "webhook_status_update.json").read_text())
    report = json.loads((FIXTURES / "vapi" / "webhook_end_of_call_report.json").read_text())
    pool = []
    for _ in range(TRANSCRIPTS):
        lines = []
        while sum(len(line) for line in lines) < 1500:
            speaker = "AI" if len(lines) % 2 == 0 else "User"
            lines.append(f"{speaker}: " + " ".join(rng.choices(VOCABULARY, k=rng.randint(6, 20))) + ".")
        transcript = "\n".join(lines)
        end = json.loads(json.dumps(report))
        end.setdefault("message", {})["transcript"] = transcript
        pool.append((transcript, json.dumps([create, status, end])))
    return pool


def seed_calls(*, days: int, now: datetime, rng: random.Random) -> int:
    """``days`` local days of calls, the newest yesterday; created_at on each day's date."""
    pool = _content_pool(rng)
    rows = 0
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "CREATE UNLOGGED TABLE bench_content (k int PRIMARY KEY, transcript text, payloads jsonb)"
        )
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY bench_content (k, transcript, payloads) FROM STDIN") as copy,
        ):
            for k, (transcript, payloads) in enumerate(pool):
                copy.write_row((k, transcript, payloads))
        for back in range(days, 0, -1):
            day = (now - timedelta(days=back)).date()
            at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
            params = {"day": day, "at": at, "answered": ANSWERED, "n": TRANSCRIPTS}
            rows += conn.execute(
                "INSERT INTO calls_call (user_id, to_number, agent_id, attempt, local_date, status, "
                "provider, job_id, provider_call_id, provider_payloads, error, transcript, recording_url, "
                "end_reason, "
                "outcome_inferred, manual, duration_seconds, created_at, scheduled_for, dialed_at, "
                "last_status_at, completed_at) "
                "SELECT u.id, u.phone, 'agent-bench', a.attempt, %(day)s, "
                "  CASE WHEN a.answered THEN 'completed' ELSE 'no_answer' END, 'vapi', '', "
                "  'prov-' || u.id || '-' || %(day)s || '-' || a.attempt, "
                "  CASE WHEN a.answered THEN c.payloads ELSE '[]'::jsonb END, '', "
                "  CASE WHEN a.answered THEN c.transcript ELSE '' END, "
                "  CASE WHEN a.answered "
                "    THEN 'https://storage.vapi.ai/' || md5(u.id::text || %(day)s) || '.wav' ELSE '' END, "
                "  CASE WHEN a.answered THEN 'customer-ended-call' ELSE 'customer-did-not-answer' END, "
                "  false, false, CASE WHEN a.answered THEN 95 END, %(at)s, %(at)s, %(at)s, %(at)s, %(at)s "
                "FROM users_user u "
                "JOIN bench_content c ON c.k = u.id %% %(n)s "
                # Correlated (u.id), so drawn per user: uncorrelated, PostgreSQL draws it once.
                "CROSS JOIN LATERAL (SELECT random() < %(answered)s + 0 * u.id AS first_answered) f "
                "CROSS JOIN LATERAL "
                "  (VALUES (1, f.first_answered), (2, NOT f.first_answered AND random() < 0.5)) "
                "  AS a(attempt, answered) "
                "WHERE u.call_enabled AND u.phone IS NOT NULL AND (a.attempt = 1 OR NOT f.first_answered)",
                params,
            ).rowcount
        conn.execute("DROP TABLE bench_content")
        conn.execute("VACUUM (ANALYZE) calls_call")
    return rows


def storage_sizes() -> dict[str, int]:
    with psycopg.connect(BENCH_DSN) as conn:
        heap, indexes, toast, total = conn.execute(
            "SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid), "
            "coalesce(pg_relation_size(c.reltoastrelid), 0) + coalesce(pg_indexes_size(c.reltoastrelid), 0), "
            "pg_total_relation_size(c.oid) FROM pg_class c WHERE c.relname = 'calls_call'"
        ).fetchone()
        by_index = dict(
            conn.execute(
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
                "WHERE indrelid = 'calls_call'::regclass"
            ).fetchall()
        )
    return {
        "heap": heap,
        "indexes": indexes,
        "toast": toast,
        "total": total,
        **{f"index {k}": v for k, v in by_index.items()},
    }


def _per_user_day(size: int, users: int, days: int) -> str:
    return f"{size / (users * days):,.0f} B"


def run(*, users: int, days: int) -> Table:
    from django.conf import settings
    from django.db import connections

    from calls.models import Call
    from calls.retention import data_prune

    table = Table(f"Storage and retention ({users:,} users x {days} days of calls)")
    rng = random.Random(20)
    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    seed.truncate_all()
    say(f"storage: seeding {users:,} users")
    seed.seed_population(start=1, count=users, previous_tick=now)
    say(f"storage: seeding {days} days of calls")
    started = time.perf_counter()
    rows = seed_calls(days=days, now=now, rng=rng)
    seeding = time.perf_counter() - started
    sizes = storage_sizes()
    for part in ("heap", "indexes", "toast", "total"):
        table.add(
            f"calls_call {part}",
            f"{users:,} x {days} d",
            f"{sizes[part] / 2**20:,.0f} MiB",
            note=f"{_per_user_day(sizes[part], users, days)} per user per day" if part == "total" else "",
        ).ratio = _per_user_day(sizes[part], users, days) + " / user / day"
    table.notes.append(
        f"{rows:,} calls ({rows / (users * days):.2f} a user a day) seeded in {seeding:.0f} s; indexes: "
        + ", ".join(f"{k[6:]} {v / 2**20:,.0f} MiB" for k, v in sizes.items() if k.startswith("index "))
    )

    # The prune, as the nightly job runs it: one day of content past the limit, then one
    # day of rows past theirs.
    settings.RETENTION_BATCH_SIZE = 1000
    settings.RETENTION_DAYS_CONTENT = days - 1
    settings.RETENTION_DAYS_CALLS = 400
    one_day = Call.objects.filter(local_date=(now - timedelta(days=days)).date()).count()
    report = data_prune(now=now)
    content_rate = report.content["calls"] / report.seconds
    table.add(
        "prune: content of 1 day",
        f"{report.content['calls']:,} calls",
        f"{report.seconds:.1f} s",
        ratio=f"{content_rate:,.0f} calls/s",
    )
    again = data_prune(now=now)
    table.add("prune again (nothing left)", "0 calls", f"{again.seconds:.2f} s")
    settings.RETENTION_DAYS_CALLS = 35
    shifted = now + timedelta(days=35 - days + 1)
    settings.RETENTION_DAYS_CONTENT = 400
    report = data_prune(now=shifted)
    delete_rate = report.calls_deleted / report.seconds
    table.add(
        "prune: rows of 1 day (rollup first)",
        f"{report.calls_deleted:,} calls",
        f"{report.seconds:.1f} s",
        ratio=f"{delete_rate:,.0f} calls/s",
    )
    per_day_1m = 1_000_000 * one_day / users
    nightly = per_day_1m / content_rate + per_day_1m / delete_rate
    backlog = 90 * per_day_1m / content_rate
    table.notes.append(
        f"extrapolated to 1,000,000 users ({per_day_1m:,.0f} calls a day): the nightly prune (one day of "
        f"content, one day of rows) about {nightly / 60:.0f} min; a first run on 90 days of content "
        f"(1M users x 90 days, {90 * per_day_1m / 1e6:.0f}M calls) about {backlog / 3600:.1f} h, in pages of "
        "1,000 rows, each its own short transaction (linear: each page reads the partial index from where "
        "the last ended)"
    )
    connections.close_all()
    return table
