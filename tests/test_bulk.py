"""The tick's set-based writes: the rows they insert, and what they refuse."""

from datetime import UTC, date, datetime

import pytest
from django.db import DataError, connection, transaction
from django.db.models import Q

from calls import bulk
from calls.models import Call, CallStatus

pytestmark = pytest.mark.django_db
SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def call_for(user, **fields) -> Call:
    fields.setdefault("local_date", date(2026, 11, 28))
    return Call(
        user_id=user.pk,
        to_number=user.phone,
        attempt=1,
        status=CallStatus.QUEUED,
        scheduled_for=SLOT,
        **fields,
    )


def insert(calls):
    return bulk.insert_ignoring_conflicts(
        calls, conflict_fields=["user", "local_date", "attempt"], conflict_where=Q(manual=False)
    )


def test_it_inserts_rows_and_returns_only_the_ids_it_inserted(make_user):
    users = [make_user() for _ in range(3)]
    first = insert([call_for(users[0])])
    assert len(first) == 1
    again = insert([call_for(u) for u in users])  # users[0]'s row conflicts
    assert len(again) == 2 and first[0] not in again
    assert insert([call_for(users[0])]) == []  # every row conflicts
    stored = Call.objects.get(pk=first[0])
    assert (stored.provider_payloads, stored.error, stored.retry_of_id) == ([], "", None)
    assert stored.scheduled_for == SLOT and stored.created_at is not None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite does not enforce lengths")
def test_a_value_too_long_for_its_column_is_refused_not_truncated(make_user):
    user = make_user()
    with pytest.raises(DataError), transaction.atomic():
        insert([call_for(user, agent_id="a" * 200)])
    assert not Call.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="sequences are PostgreSQL's")
def test_reserved_ids_are_used_by_the_insert(make_user):
    user = make_user()
    [reserved] = bulk.reserve_ids(Call, 1)
    call = call_for(user)
    call.pk = reserved
    assert insert([call]) == [reserved]


def test_update_column_sets_each_row_its_own_value(make_user):
    users = [make_user(), make_user()]
    bulk.update_column(type(users[0]), "next_call_at", {users[0].pk: SLOT, users[1].pk: None})
    for user in users:
        user.refresh_from_db()
    assert (users[0].next_call_at, users[1].next_call_at) == (SLOT, None)


# --- The writes of the users API and the CSV import -------------------------------------------


def new_users(count, start=0):
    from users.models import User

    return [
        User(username=f"bulk{n}", external_id=f"bulk-{n}", phone=f"+9198770{n:05d}", password="!x")
        for n in range(start, start + count)
    ]


@pytest.mark.parametrize("write", [bulk.insert_rows, bulk.copy_rows], ids=["insert", "copy"])
def test_rows_carrying_reserved_ids_go_in_whole(write):
    from users.models import User

    users = new_users(3)
    ids = bulk.reserve_ids(User, 3)
    if ids is not None:
        for user, pk in zip(users, ids, strict=True):
            user.pk = pk
    write(users)
    stored = list(
        User.objects.filter(username__startswith="bulk").order_by("username").values_list("pk", "phone")
    )
    assert [phone for _, phone in stored] == [u.phone for u in users]
    if ids is not None:
        assert [pk for pk, _ in stored] == ids


@pytest.mark.parametrize("write", [bulk.insert_rows, bulk.copy_rows], ids=["insert", "copy"])
def test_a_unique_violation_is_djangos_integrity_error(write):
    from django.db import IntegrityError

    from users.models import User

    [taken] = new_users(1)
    taken.save()
    [again] = new_users(1, start=1)
    again.phone = taken.phone
    ids = bulk.reserve_ids(User, 1)
    if ids is not None:
        again.pk = ids[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        write([again])


def test_update_columns_sets_each_rows_own_values_in_several_columns():
    from datetime import time

    from users.models import User

    users = new_users(3)
    for user in users:
        user.save()
    users[0].call_time, users[0].max_retries = time(9, 0), 2
    users[1].call_time, users[1].max_retries = time(21, 15, 30), None
    users[2].name = "Unwritten"  # not among the columns written
    bulk.update_columns(users, ["call_time", "max_retries"])
    stored = list(
        User.objects.filter(pk__in=[u.pk for u in users])
        .order_by("pk")
        .values_list("call_time", "max_retries", "name")
    )
    assert stored[0][:2] == (time(9, 0), 2) and stored[1][:2] == (time(21, 15, 30), None)
    assert stored[2][2] != "Unwritten"


def test_copy_values_inserts_plain_rows():
    from django.contrib.admin.models import ADDITION, LogEntry
    from django.contrib.contenttypes.models import ContentType

    from users.models import User

    [user] = new_users(1)
    user.save()
    content_type = ContentType.objects.get_for_model(User).pk
    rows = [(SLOT, user.pk, content_type, str(n), f"user {n}", ADDITION, '[{"added": {}}]') for n in range(3)]
    bulk.copy_values(
        LogEntry,
        [
            "action_time",
            "user_id",
            "content_type_id",
            "object_id",
            "object_repr",
            "action_flag",
            "change_message",
        ],
        rows,
    )
    assert sorted(LogEntry.objects.values_list("object_repr", flat=True)) == ["user 0", "user 1", "user 2"]
    assert LogEntry.objects.first().get_change_message() == "Added."


def prepared_statements() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def run_on_array_cursor(rows: int | None, ids: list[int], *, order: str = "") -> list[int]:
    with bulk.array_cursor(rows=rows) as (cursor, a):
        cursor.execute(f"SELECT id FROM calls_call WHERE id = ANY({a}::bigint[]) ORDER BY id {order}", [ids])
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
def test_a_statement_of_a_few_rows_is_prepared_once_a_large_one_is_not(make_user, settings):
    ids = sorted(insert([call_for(make_user()) for _ in range(3)]))
    before = prepared_statements()  # (the connection's, from earlier tests)

    assert run_on_array_cursor(bulk.PREPARED_MAX_ROWS + 1, ids, order="ASC") == ids
    assert run_on_array_cursor(None, ids, order="ASC") == ids
    assert prepared_statements() == before  # large (or unsized) ones are planned each time

    assert run_on_array_cursor(3, ids) == ids
    assert run_on_array_cursor(2, ids[:2]) == ids[:2]  # the same text: prepared once
    [statement] = prepared_statements() - before
    assert statement.startswith("SELECT id FROM calls_call WHERE id = ANY($1::bigint[])")

    settings.DATABASE_PREPARED_STATEMENTS = False
    assert run_on_array_cursor(3, ids, order="DESC") == ids[::-1]
    assert prepared_statements() - before == {statement}
