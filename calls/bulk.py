"""Set-based writes for the tick, where Django's bulk helpers are the bottleneck.

``bulk_update`` builds one CASE WHEN branch per row (most of a rush tick's time), and a
multi-row INSERT with thousands of placeholders costs more to build and parse than to run.
On PostgreSQL both become one statement with one array parameter per column (``unnest``),
bound in binary (``array_cursor``); SQLite, the zero-setup default, takes the portable form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Model, Q, QuerySet
from django.db.models.sql.query import Query

# Rows per multi-row INSERT on SQLite (it allows 32766 parameters per statement).
SQLITE_INSERT_CHUNK = 500


@dataclass
class Columns:
    """Rows of ``model`` given column by column, for writes of many rows where building a model
    instance per row costs more than writing it (Model.__init__ was half of a rush tick):
    ``values`` holds a list per field (one value per row), ``same`` the fields whose value is
    the same in every row. Every other concrete field takes its default (auto_now fields: the
    statement's instant). Keys are attribute names (``user_id``, not ``user``)."""

    model: type[Model]
    values: dict[str, list[Any]]
    same: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0


@lru_cache(maxsize=1)
def _preparing_cursor_class() -> type:
    import psycopg  # PostgreSQL's driver, only there

    class PreparingCursor(psycopg.Cursor):
        """Prepares every statement it runs (psycopg keeps the last 100 per connection)."""

        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

    return PreparingCursor


def _server_bound_cursor(*, prepare: bool):
    """A psycopg cursor on Django's connection that binds parameters on the server. With
    ``prepare`` and DATABASE_PREPARED_STATEMENTS on, its statements are prepared: these
    repeat with the same text (their values travel apart), and planning the larger ones (a
    day's marks and events in one statement) cost PostgreSQL more than running them."""
    import psycopg  # PostgreSQL's driver, only there

    if prepare and settings.DATABASE_PREPARED_STATEMENTS:
        return _preparing_cursor_class()(connection.connection)
    return psycopg.Cursor(connection.connection)


# A statement of at most this many rows is prepared (array_cursor's ``rows``).
PREPARED_MAX_ROWS = 50


@contextmanager
def array_cursor(*, rows: int | None = None) -> Iterator[tuple[Any, str]]:
    """A cursor for statements with array parameters, and the placeholder to write for them.

    Django's psycopg cursors bind parameters on the client, quoting every array element into
    the SQL text in Python: 9.5 ms for 1,000 timestamps, 1.5 ms for 1,000 ids. A plain psycopg
    cursor on the same connection (same transaction) sends them apart, in binary (``%b``):
    0.4 ms. ``rows``, how many rows the arrays hold: a statement of a few (a webhook's, at
    most PREPARED_MAX_ROWS) is prepared, as its planning costs more than its run
    (_server_bound_cursor); not the tick's large ones, where a plan kept for a few rows
    could be the wrong one for thousands. Where Django logs
    queries (DEBUG, tests that read the SQL) it could not show such a statement's text, so
    there, and on SQLite, the ordinary cursor is used."""
    with server_cursor(prepare=rows is not None and rows <= PREPARED_MAX_ROWS) as (cursor, bound):
        yield cursor, "%b" if bound else "%s"


@contextmanager
def server_cursor(*, prepare: bool) -> Iterator[tuple[Any, bool]]:
    """A cursor whose parameters travel apart from the SQL text, prepared with ``prepare``
    (_server_bound_cursor), and whether it is one: where Django logs queries (DEBUG, tests
    that read the SQL) and on SQLite, Django's ordinary cursor instead."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql" or connection.queries_logged:
            yield cursor, False
            return
    with connection.make_cursor(_server_bound_cursor(prepare=prepare)) as cursor:
        yield cursor, True


def values_rows(queryset: QuerySet) -> list[tuple[Any, ...]]:
    """The rows of a ``values_list()`` queryset whose fields Django converts nothing in (no
    JSON, no from_db_value), as tuples. On PostgreSQL the rows come back in binary: Django's
    own loader for timestamptz parses each value's text in Python, a sixth of a rush tick's
    CPU for one column, where psycopg's binary loader does it in C. Ordinary iteration where
    Django logs queries, and on SQLite."""
    if connection.vendor != "postgresql" or connection.queries_logged:
        return list(queryset)
    import psycopg  # PostgreSQL's driver, only there

    sql, params = queryset.query.sql_with_params()
    # Not prepared: an IN list's length makes a new statement of each query.
    raw = _server_bound_cursor(prepare=False)
    raw.format = psycopg.pq.Format.BINARY
    with connection.make_cursor(raw) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def reserve_ids(model: type[Model], count: int) -> list[int] | None:
    """Take ``count`` primary keys from the table's sequence ahead of an insert, so rows can
    be named after their ids without a second write; None where there is no sequence."""
    if connection.vendor != "postgresql" or count == 0:
        return None
    table, column = connection.ops.quote_name(model._meta.db_table), model._meta.pk.column
    with connection.cursor() as cursor:
        # One array, not a row per id (reading back 1,000 rows cost more than taking the ids),
        # and the sequence looked up once, not once per id (a catalog lookup each: 90% of it).
        cursor.execute(
            "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, %s)::regclass AS seq) "
            "SELECT array_agg(nextval(s.seq)) FROM s, generate_series(1, %s)",
            [table, column, count],
        )
        return cursor.fetchone()[0]


def check_constraints_at_once() -> None:
    """Check this transaction's deferred foreign keys at each statement's end, not at commit.

    Django declares every foreign key DEFERRABLE INITIALLY DEFERRED. For the tick's call rows
    the check at commit would lock each user's row anew (its new version, after the tick's
    UPDATE moved next_call_at on), a second write per user; checked with the insert, it meets
    the lock the tick already holds. PostgreSQL only; a no-op elsewhere."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def insert_ignoring_conflicts(
    objs: Sequence[Model] | Columns, *, conflict_fields: Sequence[str], conflict_where: Q | None = None
) -> list[int]:
    """INSERT ... ON CONFLICT (conflict_fields) DO NOTHING RETURNING id: the ids of the rows
    really inserted (Django's bulk_create(ignore_conflicts=True) cannot tell which).
    ``conflict_where`` is a partial unique index's condition, as its UniqueConstraint has it.
    The rows are model instances or Columns."""
    rows = objs if isinstance(objs, Columns) else _as_columns(objs)
    if not len(rows):
        return []
    model = rows.model
    quote = connection.ops.quote_name
    conflict = ", ".join(quote(model._meta.get_field(name).column) for name in conflict_fields)
    if conflict_where is not None:
        conflict = f"{conflict}) WHERE ({_index_predicate(model, conflict_where)}"
    return _insert(rows, suffix=f"ON CONFLICT ({conflict}) DO NOTHING")


def insert_rows(objs: Sequence[Model]) -> list[int]:
    """A plain INSERT of many rows in one statement on PostgreSQL (chunks elsewhere),
    RETURNING their ids; a unique violation raises IntegrityError as bulk_create's would.
    The rows may carry reserved ids (reserve_ids), so that each knows its own."""
    if not objs:
        return []
    return _insert(_as_columns(objs), suffix="")


def copy_rows(objs: Sequence[Model]) -> None:
    """Insert rows that carry their ids (reserve_ids) with COPY on PostgreSQL: no statement
    to build or parse, the fastest way in (a unique violation raises IntegrityError);
    insert_rows elsewhere."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        insert_rows(objs)
        return
    model = type(objs[0])
    fields = list(model._meta.concrete_fields)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    values = [_column(field, objs) for field in fields]
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for row in zip(*values, strict=True):
                copy.write_row(row)


def copy_values(model: type[Model], attnames: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert plain value tuples (one per row, in ``attnames`` order; the table fills in its
    own ids) with COPY on PostgreSQL, bulk_create elsewhere: for many rows nobody reads
    back, where making a model instance for each would cost more than writing it."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        objs = [model(**dict(zip(attnames, row, strict=True))) for row in rows]
        model._base_manager.bulk_create(objs, batch_size=SQLITE_INSERT_CHUNK)
        return
    quote = connection.ops.quote_name
    columns = ", ".join(quote(model._meta.get_field(name).column) for name in attnames)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _as_columns(objs: Sequence[Model]) -> Columns:
    """Model instances as Columns: the primary key goes in too when the rows carry reserved
    ids (reserve_ids)."""
    if not objs:
        return Columns(Model, {})
    model = type(objs[0])
    values, same = {}, {}
    for f in model._meta.concrete_fields:
        if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False):
            same[f.attname] = f.pre_save(objs[0], True)  # one instant for the whole statement
        elif not f.primary_key or objs[0].pk is not None:
            values[f.attname] = [getattr(obj, f.attname) for obj in objs]
    return Columns(model, values, same)


def _insert(rows: Columns, *, suffix: str) -> list[int]:
    model = rows.model
    count = len(rows)
    given = rows.values.keys() | rows.same.keys()
    fields = [f for f in model._meta.concrete_fields if not f.primary_key or f.attname in given]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    pk = quote(model._meta.pk.column)
    if connection.vendor == "postgresql":
        with array_cursor() as (cursor, array):
            select, params, arrays, array_casts = [], [], [], []
            for index, field in enumerate(fields):
                per_row, same = _field_values(field, rows)
                if field.get_internal_type() == "JSONField":
                    if per_row is None:
                        same = field.get_db_prep_save(same, connection)
                    else:
                        per_row = [field.get_db_prep_save(value, connection) for value in per_row]
                if per_row is not None and all(value == per_row[0] for value in per_row):
                    per_row, same = None, per_row[0]
                # (The last column goes as an array if no other did: unnest makes the rows.)
                if per_row is None and (arrays or index < len(fields) - 1):
                    # The same for every row (attempt, status, empty texts...): one parameter,
                    # not an array of thousands.
                    select.append(f"%s::{_cast_type(field)}")
                    params.append(same)
                else:
                    select.append(f"v.c{len(arrays)}")
                    arrays.append([same] * count if per_row is None else per_row)
                    array_casts.append(f"{array}::{_cast_type(field)}[]")
            names = ", ".join(f"c{i}" for i in range(len(arrays)))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {', '.join(select)} "
                f"FROM unnest({', '.join(array_casts)}) AS v({names}) "
                f"{suffix} RETURNING {pk}",
                params + arrays,
            )
            return [row[0] for row in cursor.fetchall()]
    columns_values = []
    for field in fields:
        per_row, same = _field_values(field, rows)
        columns_values.append([same] * count if per_row is None else per_row)
    inserted: list[int] = []
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, count, SQLITE_INSERT_CHUNK):
            stop = min(start + SQLITE_INSERT_CHUNK, count)
            params = [
                field.get_db_prep_save(values[i], connection)
                for i in range(start, stop)
                for field, values in zip(fields, columns_values, strict=True)
            ]
            values_sql = ", ".join([row] * (stop - start))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values_sql} {suffix} RETURNING {pk}", params
            )
            inserted.extend(r[0] for r in cursor.fetchall())
    return inserted


def _field_values(field, rows: Columns) -> tuple[list[Any] | None, Any]:
    """A field's values in ``rows``: (a list with one per row, None), or (None, the one value
    of every row: ``same``, the field's default, an auto_now instant)."""
    if field.attname in rows.values:
        return rows.values[field.attname], None
    if field.attname in rows.same:
        return None, rows.same[field.attname]
    if getattr(field, "auto_now_add", False) or getattr(field, "auto_now", False):
        return None, field.pre_save(rows.model(), True)  # one instant for the whole statement
    return None, field.get_default()


def _index_predicate(model: type[Model], condition: Q) -> str:
    """The condition as Django writes it in the partial index: SQLite matches an upsert's
    WHERE against the index's predicate as text ("NOT manual", not "manual = false")."""
    query = Query(model=model, alias_cols=False)
    compiler = query.get_compiler(connection=connection)
    sql, params = query.build_where(condition).as_sql(compiler, connection)
    if params:
        raise ValueError("a partial index condition with parameters cannot name an ON CONFLICT target")
    return sql


def _cast_type(field) -> str:
    """The column's type without a length: an explicit cast to varchar(n) would silently
    truncate a longer value, where the assignment into the column refuses it."""
    return re.sub(r"\(\d+\)", "", field.db_type(connection))


def _column(field, objs: Sequence[Model]) -> list[Any]:
    """One column's values, ready for psycopg. Plain values (int, str, date, aware datetime)
    adapt as they are; only fields with their own database form (JSON) are prepared, which
    is most of the cost of Django's per-value get_db_prep_save at tick scale."""
    if getattr(field, "auto_now_add", False) or getattr(field, "auto_now", False):
        now = field.pre_save(objs[0], True)  # one instant for the whole statement
        return [now] * len(objs)
    values = [getattr(obj, field.attname) for obj in objs]
    if field.get_internal_type() == "JSONField":
        values = [field.get_db_prep_save(value, connection) for value in values]
    return values


def update_column(model: type[Model], field_name: str, values: dict[Any, Any]) -> None:
    """Set one column to a per-row value, {pk: value}, in one statement."""
    if not values:
        return
    field = model._meta.get_field(field_name)
    if connection.vendor != "postgresql":
        objs = [model(pk=pk, **{field.attname: value}) for pk, value in values.items()]
        model._base_manager.bulk_update(objs, [field_name])
        return
    quote = connection.ops.quote_name
    pk_field = model._meta.pk
    table, column, pk = quote(model._meta.db_table), quote(field.column), quote(pk_field.column)
    new = list(values.values())
    if field.get_internal_type() == "JSONField":
        new = [field.get_db_prep_save(value, connection) for value in new]
    with array_cursor() as (cursor, array):
        if all(value == new[0] for value in new):
            # One value for all (a rush slot's next day): no array of values to send or join.
            cursor.execute(
                f"UPDATE {table} SET {column} = %s::{_cast_type(field)} "
                f"WHERE {pk} = ANY({array}::{_cast_type(pk_field)}[])",
                [new[0], list(values)],
            )
            return
        cursor.execute(
            f"UPDATE {table} AS t SET {column} = v.value "
            f"FROM unnest({array}::{_cast_type(pk_field)}[], {array}::{_cast_type(field)}[]) "
            f"AS v(pk, value) WHERE t.{pk} = v.pk",
            [list(values), new],
        )


def update_columns(objs: Sequence[Model], field_names: Sequence[str]) -> None:
    """Write ``field_names`` of each of ``objs`` (saved rows) in one statement on PostgreSQL:
    bulk_update's CASE WHEN has one branch per row in every column, which PostgreSQL walks
    for each row, so its cost grows with the square of the batch."""
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model._base_manager.bulk_update(objs, field_names, batch_size=SQLITE_INSERT_CHUNK)
        return
    quote = connection.ops.quote_name
    pk_field = model._meta.pk
    fields = [model._meta.get_field(name) for name in field_names]
    assignments = ", ".join(f"{quote(f.column)} = v.c{i}" for i, f in enumerate(fields))
    names = ", ".join(["pk"] + [f"c{i}" for i in range(len(fields))])
    with array_cursor() as (cursor, array):
        casts = ", ".join(f"{array}::{_cast_type(f)}[]" for f in [pk_field, *fields])
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} AS t SET {assignments} "
            f"FROM unnest({casts}) AS v({names}) WHERE t.{quote(pk_field.column)} = v.pk",
            [[obj.pk for obj in objs], *(_column(f, objs) for f in fields)],
        )
