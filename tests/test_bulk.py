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
