"""Creating and updating people by external_id, in bulk: the users API's PUT and the CSV
import write through users_upsert; a schedule change they make is settled by
users.services (queued calls canceled or released, the next call moved)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import BooleanField, Max, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.text import capfirst, slugify

from calls import bulk

from .calendar import users_skips_from
from .consent import opted_out_message
from .models import SCHEDULE_FIELDS, User, first_attempts
from .services import schedule_change_reason, users_cancel_pending_calls, users_still_callable

logger = logging.getLogger("relevel.users")

# Rows per IN (...) lookup and per bulk statement: well inside every backend's limits.
CHUNK = 2_000


class UsersInvalid(Exception):
    """Some rows cannot be written; ``errors`` is {row index: {field: message}}."""

    def __init__(self, errors: dict[int, dict[str, str]]) -> None:
        super().__init__(f"{len(errors)} invalid")
        self.errors = errors


@dataclass
class UpsertResult:
    # Per row, in the order given: "created", "updated" or "unchanged".
    results: list[str]
    users: list[User]
    canceled_calls: int = 0

    def count(self, result: str) -> int:
        return self.results.count(result)


def _chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _one_of(model: type, field: str, values: Sequence) -> Q | RawSQL:
    """``field IN values`` as one array parameter on PostgreSQL (``= ANY(%s)``): Django's
    IN builds a placeholder per value, which for thousands of them costs more to compose
    than the query takes to run."""
    if connection.vendor != "postgresql":
        return Q(**{f"{field}__in": values})
    column = model._meta.get_field(field).column
    table = connection.ops.quote_name(model._meta.db_table)
    return RawSQL(f"{table}.{connection.ops.quote_name(column)} = ANY(%s)", (list(values),), BooleanField())


def duplicate_errors(
    rows: Sequence[Mapping[str, Any] | None], *, label: str = "row", first_number: int = 0
) -> dict[int, dict[str, str]]:
    """Rows repeating an external_id or a phone of an earlier row in the same request or
    file, as errors on those later rows ({index: {field: message}}; None rows are skipped).
    The earlier row is named as ``label`` and its index plus ``first_number``."""
    errors: dict[int, dict[str, str]] = {}
    for field, what in (("external_id", "external id"), ("phone", "phone number")):
        first: dict[Any, int] = {}
        for index, row in enumerate(rows):
            value = row.get(field) if row else None
            if value is None:
                continue
            if value in first:
                errors.setdefault(index, {})[field] = (
                    f"The same {what} is given for {label} {first[value] + first_number}."
                )
            else:
                first[value] = index
    return errors


def users_conflicts(
    rows: Sequence[Mapping[str, Any] | None],
    *,
    existing: Mapping[str, User] | None = None,
    label: str = "row",
    first_number: int = 0,
) -> dict[int, dict[str, str]]:
    """What makes valid rows unwritable together: an external id or phone repeated in
    ``rows``, a phone another user has. None rows (invalid ones) are skipped, so that one
    answer lists every problem. Reads only; ``existing`` is looked up when not given."""
    if existing is None:
        existing = users_by_external_id([row["external_id"] for row in rows if row])
    errors = duplicate_errors(rows, label=label, first_number=first_number)
    for index, row in enumerate(rows):
        user = existing.get(row["external_id"]) if row else None
        if user is not None and user.is_operator:
            errors.setdefault(index, {})["external_id"] = OPERATOR_ID
    for index, row_errors in phone_taken_errors(rows, existing=existing).items():
        errors.setdefault(index, {}).update(row_errors)
    for index, row in enumerate(rows):
        user = existing.get(row["external_id"]) if row else None
        if user is not None and user.opted_out_at is not None and row.get("call_enabled"):
            errors.setdefault(index, {})["call_enabled"] = opted_out_message(user)
    return dict(sorted(errors.items()))


def users_by_external_id(external_ids: Sequence[str], *, lock: bool = False) -> dict[str, User]:
    """The users with these external ids, in a few queries (locked, with ``lock``)."""
    found: dict[str, User] = {}
    queryset = User.objects.select_for_update() if lock else User.objects.all()
    for chunk in _chunks(list(external_ids)):
        found.update(
            (user.external_id, user) for user in queryset.filter(_one_of(User, "external_id", chunk))
        )
    return found


def phone_owners(phones: Iterable[str]) -> dict[str, tuple[int, str | None]]:
    """{phone: (id, external id) of the user who has it} for these numbers, in a few queries."""
    owners: dict[str, tuple[int, str | None]] = {}
    for chunk in _chunks(sorted(set(phones))):
        rows = User.objects.filter(_one_of(User, "phone", chunk)).values_list("phone", "pk", "external_id")
        owners.update((phone, (pk, external_id)) for phone, pk, external_id in rows)
    return owners


PHONE_TAKEN = "Another user already has this phone number."
# People and operators share the table (users.models.OPERATORS); the users API and the
# import change people only.
OPERATOR_ID = "This external id belongs to an operator's login, not to a person to call."


def phone_taken_message(pk: int, external_id: str | None) -> str:
    """Which user has the phone (their ids, never the number), so that the caller can fix it."""
    who = f"user {pk} (external_id {external_id!r})" if external_id else f"user {pk}"
    return f"{PHONE_TAKEN[:-1]}: {who}."


def phone_taken_errors(
    rows: Sequence[Mapping[str, Any] | None], *, existing: Mapping[str, User]
) -> dict[int, dict[str, str]]:
    """Rows giving a phone another user has, naming that user (never the number)."""
    owners = phone_owners(row["phone"] for row in rows if row and row.get("phone"))
    errors: dict[int, dict[str, str]] = {}
    for index, row in enumerate(rows):
        if not row or not row.get("phone"):
            continue
        owner = owners.get(row["phone"])
        user = existing.get(row["external_id"])
        if owner is not None and (user is None or owner[0] != user.pk):
            errors[index] = {"phone": phone_taken_message(*owner)}
    return errors


def usernames_for(external_ids: Sequence[str]) -> dict[str, str]:
    """Usernames for new users made by external id: "ext-<external id>" (with ":", which
    usernames may not hold, as "_"), or with a digest of the id when that name is taken or
    two ids map to it, so every one is unique and the same id always asks for the same."""

    def preferred(external_id: str) -> str:
        return "ext-" + external_id.replace(":", "_")

    def hashed(external_id: str) -> str:
        digest = hashlib.sha256(external_id.encode()).hexdigest()[:12]
        return f"{preferred(external_id)[:120]}-{digest}"

    def taken_among(names: list[str]) -> set[str]:
        taken: set[str] = set()
        for chunk in _chunks(names):
            taken.update(
                User.objects.filter(_one_of(User, "username", chunk)).values_list("username", flat=True)
            )
        return taken

    wanted: dict[str, int] = {}
    for eid in external_ids:
        wanted[preferred(eid)] = wanted.get(preferred(eid), 0) + 1
    taken = taken_among(list(wanted))
    # The digests are looked up only for the ids whose preferred name cannot be had.
    clashing = [eid for eid in external_ids if preferred(eid) in taken or wanted[preferred(eid)] > 1]
    taken |= taken_among([hashed(eid) for eid in clashing])
    names = {}
    for eid in external_ids:
        name = preferred(eid)
        if name in taken or wanted[name] > 1:
            name = hashed(eid)
        if name in taken:  # a digest collision: never in practice, still never a 500
            name = f"ext-{uuid.uuid4().hex}"
        taken.add(name)
        names[eid] = name
    return names


EXTERNAL_ID_PREFIX = "relevel-"


def users_give_external_ids(*, users: QuerySet) -> int:
    """Give each of ``users`` who has no external id one ("relevel-<id>", or with a random
    suffix where the product already uses that), so that an export of them imports back
    onto the same people (the import's key is the external id). Returns how many got one."""
    missing = list(users.filter(external_id__isnull=True).values_list("pk", flat=True))
    if not missing:
        return 0
    wanted = {pk: f"{EXTERNAL_ID_PREFIX}{pk}" for pk in missing}
    taken: set[str] = set()
    for chunk in _chunks(list(wanted.values())):
        taken.update(
            User.objects.filter(_one_of(User, "external_id", chunk)).values_list("external_id", flat=True)
        )
    given = {
        pk: (f"{wanted_id}-{secrets.token_hex(4)}" if wanted_id in taken else wanted_id)
        for pk, wanted_id in wanted.items()
    }
    with transaction.atomic():
        # external_id is not a schedule field: no next call to recompute, no call to cancel.
        for chunk in _chunks(list(given.items())):
            bulk.update_column(User, "external_id", dict(chunk))
    logger.info("Gave an external id to %s user(s) without one", len(given))
    return len(given)


def username_for_person(*, name: str, external_id: str | None = None) -> str:
    """A username for a person added in the admin, who never logs in with it: the one an
    import gives an external id ("ext-<external id>"), or else the name as an ASCII slug
    ("asha-rao", "jose"; "person" for a name in another script: the list shows the name
    itself), with a random suffix when taken."""
    if external_id:
        return usernames_for([external_id])[external_id]
    base = slugify(name)[:120] or "person"
    if not User.objects.filter(username=base).exists():
        return base
    return f"{base}-{secrets.token_hex(3)}"


def last_first_attempts(user_ids: Sequence[int], *, now: datetime) -> dict[int, date]:
    """{user id: the last local date with a first attempt standing at ``now``}, in a few
    queries: what User.compute_next_call_at reads for one user."""
    last: dict[int, date] = {}
    for chunk in _chunks(list(user_ids)):
        rows = (
            first_attempts(now=now)
            .filter(user_id__in=chunk)
            .values("user_id")
            .annotate(last=Max("local_date"))
            .values_list("user_id", "last")
        )
        last.update(rows)
    return last


def user_new(*, external_id: str, username: str, template: User | None = None) -> User:
    """A user made by external id (not saved): the defaults, and no usable password.

    ``template``, a User() made once for many new users, is copied instead of running
    Model.__init__ (a default looked up for each of its 20-odd fields) for each of them:
    a fifth of an import's time at 100,000 rows."""
    if template is None:
        user = User()
    else:
        user = copy.copy(template)  # Model.__getstate__ gives the copy its own _state
    user.external_id = external_id
    user.username = username
    # set_unusable_password() draws its 40 random characters one by one; one draw of the
    # same length from the same source.
    user.password = UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(30)
    return user


def user_set_fields(user: User, row: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Set a row's fields on ``user`` (in memory): (the fields that changed, the schedule
    fields as they were)."""
    before = {field: getattr(user, field) for field in SCHEDULE_FIELDS}
    changed = [field for field, value in row.items() if getattr(user, field) != value]
    for field in changed:
        setattr(user, field, row[field])
    return changed, before


def users_reschedule(
    changes: Sequence[tuple[User, Mapping[str, Any] | None]], *, now: datetime
) -> dict[int, str]:
    """Recompute next_call_at (and schedule_error) of users whose schedule changed, as
    User.save would, in one query for all of them; ``changes`` pairs each user with its
    schedule fields as they were (None for a new user). Returns {user id: why their queued
    calls are canceled} for users_cancel_pending_calls."""
    existing = [user.pk for user, before in changes if before is not None]
    last = last_first_attempts(existing, now=now)
    skips = users_skips_from(existing, local_date=(now - timedelta(days=2)).date())
    # next_open_slot per distinct (zone, time, last date, calendar): a file of 100,000 users
    # has far fewer of those, so the slot math is done once for each.
    slots: dict[tuple, tuple[datetime | None, str | None]] = {}
    reasons: dict[int, str] = {}
    for user, before in changes:
        last_called = last.get(user.pk) if before is not None else None
        user_skips = skips.get(user.pk, frozenset())
        key = (
            user.local_tz,
            user.call_time,
            user.is_callable,
            last_called,
            user.call_days,
            user.pause_until,
            user_skips,
        )
        if key not in slots:
            user.refresh_schedule(last_called=last_called, now=now, skips=user_skips)
            slots[key] = (user.next_call_at, user.schedule_error)
        user.next_call_at, user.schedule_error = slots[key]
        if before is not None:
            reason = schedule_change_reason(before=before, after=user)
            if reason:
                reasons[user.pk] = reason
    return reasons


def users_apply_rows(
    rows: Sequence[Mapping[str, Any]], *, existing: Mapping[str, User], now: datetime
) -> tuple[list[User], list[User], dict[int, str], list[str]]:
    """Set each row's fields on its user (a new one if ``existing`` has none), in memory,
    with next_call_at recomputed where the schedule changed.

    Returns (users to create, users to update, {user id: why their queued calls are
    canceled}, per row "created"/"updated"/"unchanged"). Nothing is written."""
    usernames = usernames_for([row["external_id"] for row in rows if row["external_id"] not in existing])
    to_create: list[User] = []
    to_update: list[User] = []
    results: list[str] = []
    rescheduled: list[tuple[User, dict[str, Any] | None]] = []
    for row in rows:
        user = existing.get(row["external_id"])
        if user is None:
            user = user_new(external_id=row["external_id"], username=usernames[row["external_id"]])
            user_set_fields(user, row)
            to_create.append(user)
            rescheduled.append((user, None))
            results.append("created")
            continue
        changed, before = user_set_fields(user, row)
        if not changed:
            results.append("unchanged")
            continue
        to_update.append(user)
        results.append("updated")
        if SCHEDULE_FIELDS & set(changed):
            rescheduled.append((user, before))
    reasons = users_reschedule(rescheduled, now=now)
    return to_create, to_update, reasons, results


def users_write(
    *, to_create: Sequence[User], to_update: Sequence[User], fields: Iterable[str], batch_size: int = CHUNK
) -> None:
    """bulk_create and bulk_update, the latter of ``fields`` (plus the schedule columns)."""
    # calls.bulk's statements rather than bulk_create and bulk_update: one array parameter
    # per column on PostgreSQL, where Django builds a placeholder per value (and, for
    # updates, a CASE branch per row that PostgreSQL walks for every row).
    for start in range(0, len(to_create), batch_size):
        chunk = to_create[start : start + batch_size]
        ids = bulk.reserve_ids(User, len(chunk))
        if ids is None:
            User.objects.bulk_create(chunk)
            continue
        for user, pk in zip(chunk, ids, strict=True):
            user.pk = user.id = pk
        bulk.copy_rows(chunk)
        for user in chunk:
            user._state.adding, user._state.db = False, connection.alias
    update_fields = sorted({*fields, "next_call_at", "schedule_error"})
    for start in range(0, len(to_update), batch_size):
        bulk.update_columns(to_update[start : start + batch_size], update_fields)


def users_upsert(*, rows: Sequence[Mapping[str, Any]], now: datetime | None = None) -> UpsertResult:
    """Create or update users by external_id, all or nothing, in one transaction.

    ``rows`` are validated fields (users.forms.profile_from_json), each with its
    external_id and only the fields to set. Every row is checked before anything is written:
    an external id or a phone repeated in ``rows``, a phone another user has. Then the users
    are created and updated in bulk, next_call_at kept current, and the queued calls of
    users whose schedule changed are canceled (users_cancel_pending_calls), all in a few
    set-based statements whatever the number of rows. Raises UsersInvalid, or IntegrityError
    when a concurrent change took an external id or phone meanwhile.
    """
    now = now or timezone.now()
    with transaction.atomic():
        existing = users_by_external_id([row["external_id"] for row in rows], lock=True)
        errors = users_conflicts(rows, existing=existing, label="user")
        if errors:
            raise UsersInvalid(errors)
        to_create, to_update, reasons, results = users_apply_rows(rows, existing=existing, now=now)
        fields = {field for row in rows for field in row if field != "external_id"}
        users_write(to_create=to_create, to_update=to_update, fields=fields)
        canceled = users_cancel_pending_calls(
            reasons=reasons, now=now, release=users_still_callable(to_update)
        )
    users = [existing.get(row["external_id"]) for row in rows]
    created = iter(to_create)
    users = [user if user is not None else next(created) for user in users]
    logger.info(
        "Users by external id: %s created, %s updated, %s unchanged; %s queued call(s) canceled",
        results.count("created"),
        results.count("updated"),
        results.count("unchanged"),
        canceled,
    )
    return UpsertResult(results=results, users=users, canceled_calls=canceled)


def users_record_import_history(
    *, actor_id: int, created: Sequence[User], updated: Sequence[tuple[User, Sequence[str]]]
) -> None:
    """The admin's history entries for an import ("Added." / "Changed Call time and Phone.",
    by the operator who confirmed it), one per user, in one COPY: the admin's own
    LogEntry.objects.log_actions makes a model instance and a placeholder per value, which
    for 100,000 users takes longer than the import itself."""
    content_type_id = ContentType.objects.get_for_model(User).pk
    now = timezone.now()

    def label(field: str) -> str:
        return capfirst(User._meta.get_field(field).verbose_name)

    rows = [
        (now, actor_id, content_type_id, str(user.pk), str(user)[:200], ADDITION, '[{"added": {}}]')
        for user in created
    ]
    rows += [
        (
            now,
            actor_id,
            content_type_id,
            str(user.pk),
            str(user)[:200],
            CHANGE,
            json.dumps([{"changed": {"fields": [label(field) for field in changed]}}]),
        )
        for user, changed in updated
    ]
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
