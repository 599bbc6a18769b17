"""Benchmark 5: the admin's CSV import of users (django-import-export, users/resources.py).

Measures what the admin's two steps do with a file of N users, into the bench PostgreSQL:
the preview (read the CSV, validate every row, import in a transaction rolled back) and the
confirm (the same, committed, plus the admin's history entries), then a second file that
moves every user's call time (bulk updates, next_call_at recomputed, queued calls canceled).
Beside it, the library as it comes (a ModelResource with one query and one save() per row,
and its diff), on a sample, so the ratio holds on a noisy machine.
"""

from __future__ import annotations

import random

from harness import Table, fmt_s, met, say, timed

ZONES = (
    ("Asia/Kolkata", 50),
    ("America/New_York", 10),
    ("America/Los_Angeles", 5),
    ("Europe/London", 8),
    ("Europe/Berlin", 5),
    ("Asia/Dubai", 5),
    ("Asia/Singapore", 5),
    ("Australia/Sydney", 3),
    ("Australia/Lord_Howe", 1),
    ("Asia/Kathmandu", 1),
    ("America/Sao_Paulo", 4),
    ("Africa/Lagos", 3),
)
HEADER = "external_id,name,phone,local_tz,call_time,call_enabled,max_retries,retry_delay_minutes"
TARGET_SECONDS = 60.0


def users_csv(count: int, *, start: int = 0, call_time: str | None = None, seed: int = 7) -> str:
    """A file as a product would export it: numbers as people write them ("+91 9xxxx
    xxxxx", which the import normalises), zones on both sides of UTC, a few blanks."""
    rng = random.Random(seed)
    names, weights = zip(*ZONES, strict=True)
    lines = [HEADER]
    for n in range(start, start + count):
        digits = f"9{n:09d}"
        zone = rng.choices(names, weights)[0]
        time = call_time or f"{rng.randrange(7, 22):02d}:{rng.randrange(0, 60, 5):02d}"
        enabled = "false" if n % 50 == 0 else "true"
        retries = "" if n % 3 else str(n % 4)
        lines.append(
            f"crm-{n},Person {n},+91 {digits[:5]} {digits[5:]},{zone},{time},{enabled},{retries},"
            f"{'' if n % 5 else 45}"
        )
    return "\n".join(lines) + "\n"


def stock_csv(count: int, *, start: int) -> str:
    """The same users for the stock resource, which reads no typed numbers: E.164 already,
    and a username column (it makes none)."""
    lines = ["external_id,username,name,phone,local_tz,call_time,call_enabled"]
    for n in range(start, start + count):
        lines.append(f"crm-{n},ext-crm-{n},Person {n},+919{n:09d},Asia/Kolkata,20:30,true")
    return "\n".join(lines) + "\n"


def _dataset(text: str):
    from import_export.formats.base_formats import CSV

    return CSV(encoding="utf-8-sig").create_dataset(text)


def run(*, rows: int, naive_rows: int) -> Table:
    from django.contrib.admin.models import LogEntry
    from django.db import connection
    from import_export import resources

    from calls.models import Call, CallStatus
    from users import upsert
    from users.models import User
    from users.resources import UserResource

    table = Table(f"5. CSV import of users (admin, django-import-export), {rows:,} rows")
    admin = User.objects.create(username="bench-admin", is_staff=True, is_superuser=True, phone=None)
    text = users_csv(rows)
    say(f"import: {rows:,} rows, {len(text) / 1e6:.1f} MB of CSV")

    def preview():
        result = UserResource().import_data(_dataset(text), dry_run=True)
        assert not result.has_errors() and not result.has_validation_errors(), result.invalid_rows[:3]
        return result

    def confirm():
        result = UserResource().import_data(_dataset(text), dry_run=False, retain_instance_in_row_result=True)
        assert not result.has_errors() and not result.has_validation_errors()
        # What the admin adds: one history entry per user (UserAdmin.generate_log_entries).
        upsert.users_record_import_history(
            actor_id=admin.pk, created=[row.instance for row in result], updated=[]
        )
        return result

    preview_s, _ = timed(preview)
    say(f"import: preview {preview_s:.1f} s")
    confirm_s, result = timed(confirm)
    say(f"import: confirm {confirm_s:.1f} s")
    created = User.objects.filter(external_id__startswith="crm-").count()
    history = LogEntry.objects.count()
    scheduled = User.objects.filter(external_id__startswith="crm-", next_call_at__isnull=False).count()
    assert created == rows and result.totals["new"] == rows

    # Queued calls for some users, then a file that moves everyone's call time.
    some = list(User.objects.filter(external_id__startswith="crm-").values_list("pk", "phone")[: rows // 10])
    Call.objects.bulk_create(
        Call(
            user_id=pk,
            to_number=phone or "",
            local_date="2026-11-28",
            scheduled_for="2026-11-28T15:00:00Z",
            status=CallStatus.QUEUED,
        )
        for pk, phone in some
    )
    moved_text = users_csv(rows, call_time="06:15")

    def update():
        res = UserResource().import_data(
            _dataset(moved_text), dry_run=False, retain_instance_in_row_result=True
        )
        assert not res.has_errors() and not res.has_validation_errors()
        return res

    update_s, updated = timed(update)
    say(f"import: update {update_s:.1f} s")
    canceled = Call.objects.filter(
        status=CallStatus.CANCELED, error__startswith="User changed call time"
    ).count()
    assert updated.totals["update"] == rows and canceled == len(some)

    # The library as it comes, on a sample of new users.
    class StockResource(resources.ModelResource):
        class Meta:
            model = User
            fields = ("external_id", "username", "name", "phone", "local_tz", "call_time", "call_enabled")
            import_id_fields = ("external_id",)

    sample = stock_csv(naive_rows, start=10_000_000)
    stock_s, stock = timed(lambda: StockResource().import_data(_dataset(sample), dry_run=False))
    assert not stock.has_errors(), stock.base_errors[:1]
    stock_per_row = stock_s / naive_rows
    ours_per_row = confirm_s / rows
    say(f"import: stock resource {stock_s:.1f} s for {naive_rows:,} rows")

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('users_user'))")
        size = cursor.fetchone()[0]

    table.add(
        "confirm (UserResource.import_data + admin history), new users",
        f"{rows:,} rows",
        f"{fmt_s(confirm_s)} ({rows / confirm_s:,.0f} rows/s)",
        f"{stock_per_row / ours_per_row:.0f}x the stock resource per row",
        f"< {TARGET_SECONDS:.0f} s (seconds, not hours)",
        met(confirm_s < TARGET_SECONDS),
    )
    table.add(
        "preview (the same checks, nothing written)",
        f"{rows:,} rows",
        f"{fmt_s(preview_s)} ({rows / preview_s:,.0f} rows/s)",
        "",
        "",
        "",
    )
    table.add(
        "second file: every call time moved (update, reschedule, cancel)",
        f"{rows:,} rows, {len(some):,} queued calls",
        f"{fmt_s(update_s)} ({rows / update_s:,.0f} rows/s)",
        "",
        "",
        "",
        note=f"{canceled:,} queued calls canceled with the reason, in one UPDATE",
    )
    table.add(
        "stock ModelResource (no bulk, a query and save() per row, diff)",
        f"{naive_rows:,} rows",
        f"{fmt_s(stock_s)} ({naive_rows / stock_s:,.0f} rows/s)",
        "1.0x",
        "",
        "",
        note=f"at that rate {rows:,} rows would take {fmt_s(stock_per_row * rows)}",
    )
    table.notes.append(
        f"{created:,} users created, {scheduled:,} with a next call (2% have calls off), {history:,} history "
        f"entries; users_user is {size}"
    )
    return table
