"""Fast, deterministic seeding of users and calls with COPY (psycopg 3 ``cursor.copy``).

next_call_at is computed with the app's own calls.slots.next_open_slot, once per
(time zone, minute of the day) pair rather than once per user: 31 zones x 1,440 minutes is
44,640 computations whatever the number of users, so 1M users seed in seconds.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from harness import BENCH_DSN

# ~30 IANA zones, weighted towards India (the product's first market), with the awkward
# offsets in the mix: +5:30, +5:45, +9:30/+10:30, Lord Howe's 30-minute DST shift.
ZONES: list[tuple[str, int]] = [
    ("Asia/Kolkata", 40),
    ("America/New_York", 6),
    ("America/Chicago", 3),
    ("America/Denver", 1),
    ("America/Los_Angeles", 4),
    ("America/Phoenix", 1),
    ("America/Toronto", 2),
    ("America/Mexico_City", 2),
    ("America/Sao_Paulo", 3),
    ("America/Argentina/Buenos_Aires", 1),
    ("Europe/London", 4),
    ("Europe/Berlin", 3),
    ("Europe/Paris", 2),
    ("Europe/Madrid", 1),
    ("Europe/Istanbul", 1),
    ("Europe/Moscow", 1),
    ("Africa/Lagos", 2),
    ("Africa/Nairobi", 1),
    ("Africa/Johannesburg", 1),
    ("Asia/Dubai", 4),
    ("Asia/Karachi", 2),
    ("Asia/Kathmandu", 1),
    ("Asia/Dhaka", 2),
    ("Asia/Singapore", 3),
    ("Asia/Jakarta", 2),
    ("Asia/Shanghai", 1),
    ("Asia/Tokyo", 1),
    ("Australia/Sydney", 2),
    ("Australia/Adelaide", 1),
    ("Australia/Lord_Howe", 1),
    ("Pacific/Auckland", 1),
]
DISABLED_SHARE = 0.03
NO_PHONE_SHARE = 0.02

USER_COLUMNS = (
    "id, password, last_login, is_superuser, username, first_name, last_name, email, is_staff, "
    "is_active, date_joined, name, phone, local_tz, call_enabled, call_time, next_call_at"
)
CALL_COLUMNS = (
    "to_number, agent_id, attempt, local_date, status, provider, job_id, provider_call_id, "
    "provider_payloads, error, transcript, recording_url, created_at, scheduled_for, dialed_at, "
    "last_status_at, user_id, end_reason, outcome_inferred, manual"
)
CHUNK_ROWS = 50_000


def _slot_table(zones: list[str], minutes: list[int], *, after: datetime) -> dict[tuple[str, int], str]:
    """(zone, minute of day) -> ISO text of the first slot strictly after ``after``.

    That is the state right after a tick at ``after``: every slot up to it is claimed and
    moved on, every later slot waits. window=0 makes next_open_slot return slot > after.
    """
    from calls.slots import next_open_slot

    table = {}
    for zone in zones:
        tz = ZoneInfo(zone)
        for minute in minutes:
            slot = next_open_slot(
                call_time=time(minute // 60, minute % 60), tz=tz, now=after, window=timedelta(0)
            )
            table[(zone, minute)] = slot.isoformat()
    return table


def _copy_lines(table: str, columns: str, lines) -> None:
    with psycopg.connect(BENCH_DSN) as conn:
        conn.execute("SET synchronous_commit = off")
        with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            buffer: list[str] = []
            for line in lines:
                buffer.append(line)
                if len(buffer) >= CHUNK_ROWS:
                    copy.write("".join(buffer))
                    buffer.clear()
            if buffer:
                copy.write("".join(buffer))
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )


def seed_population(*, start: int, count: int, previous_tick: datetime, seed: int = 5) -> None:
    """``count`` realistic users with ids start..start+count-1: ~31 zones, call times
    uniform over the day at minute resolution, 3% disabled, 2% without a phone."""
    rng = random.Random(seed * 1_000_003 + start)
    names = [zone for zone, _ in ZONES]
    zones = rng.choices(names, weights=[w for _, w in ZONES], k=count)
    minutes = [rng.randrange(1440) for _ in range(count)]
    flags = [rng.random() for _ in range(count)]
    slots = _slot_table(names, list(range(1440)), after=previous_tick)
    joined = "2025-01-01 00:00:00+00"

    def lines():
        for k in range(count):
            i = start + k
            zone, minute, flag = zones[k], minutes[k], flags[k]
            enabled = flag >= DISABLED_SHARE
            has_phone = not (DISABLED_SHARE <= flag < DISABLED_SHARE + NO_PHONE_SHARE)
            phone = f"+9170{i:08d}" if has_phone else "\\N"
            next_call_at = slots[(zone, minute)] if enabled and has_phone else "\\N"
            yield (
                f"{i}\t!\t\\N\tf\tu{i}\t\t\t\tf\tt\t{joined}\tUser {i}\t{phone}\t{zone}\t"
                f"{'t' if enabled else 'f'}\t{minute // 60:02d}:{minute % 60:02d}:00\t{next_call_at}\n"
            )

    _copy_lines("users_user", USER_COLUMNS, lines())


def seed_same_slot(
    *, start: int, count: int, zone: str, call_time: time, previous_tick: datetime
) -> datetime:
    """``count`` callable users who all call at ``call_time`` in ``zone``; returns their slot."""
    minute = call_time.hour * 60 + call_time.minute
    slot_text = _slot_table([zone], [minute], after=previous_tick)[(zone, minute)]
    joined = "2025-01-01 00:00:00+00"
    lines = (
        f"{i}\t!\t\\N\tf\tu{i}\t\t\t\tf\tt\t{joined}\tUser {i}\t+9180{i:08d}\t{zone}\tt\t"
        f"{call_time:%H:%M:%S}\t{slot_text}\n"
        for i in range(start, start + count)
    )
    _copy_lines("users_user", USER_COLUMNS, lines)
    return datetime.fromisoformat(slot_text)


def seed_dialing_calls(*, start_user: int, count: int, now: datetime) -> list[str]:
    """``count`` users with one call each in 'dialing' with a provider call id; returns the ids."""
    joined = "2025-01-01 00:00:00+00"
    users = (
        f"{i}\t!\t\\N\tf\tu{i}\t\t\t\tf\tt\t{joined}\tUser {i}\t+9190{i:08d}\tUTC\tt\t20:30:00\t\\N\n"
        for i in range(start_user, start_user + count)
    )
    _copy_lines("users_user", USER_COLUMNS, users)
    stamp = now.astimezone(UTC).isoformat()
    day = now.astimezone(UTC).date().isoformat()
    provider_ids = [f"wh-{i}" for i in range(start_user, start_user + count)]
    calls = (
        f"+9190{i:08d}\tagent-bench\t1\t{day}\tdialing\tcallkaro\t\twh-{i}\t[]\t\t\t\t{stamp}\t{stamp}\t"
        f"{stamp}\t{stamp}\t{i}\t\tf\tf\n"
        for i in range(start_user, start_user + count)
    )
    _copy_lines("calls_call", CALL_COLUMNS, calls)
    return provider_ids


def truncate_all() -> None:
    with psycopg.connect(BENCH_DSN) as conn:
        conn.execute("TRUNCATE users_user, calls_call RESTART IDENTITY CASCADE")


def vacuum_analyze() -> None:
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) users_user")
        conn.execute("VACUUM (ANALYZE) calls_call")
