"""Set-based writes for the tick, where Django's bulk helpers are the bottleneck.

``bulk_update`` builds one CASE WHEN branch per row (most of a rush tick's time), and a
multi-row INSERT with thousands of placeholders costs more to build and parse than to run.
On PostgreSQL both become one statement with one array parameter per column (``unnest``);
SQLite, the zero-setup default, takes the portable form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model, Q
from django.db.models.sql.query import Query

# Rows per multi-row INSERT on SQLite (it allows 32766 parameters per statement).
SQLITE_INSERT_CHUNK = 500


def reserve_ids(model: type[Model], count: int) -> list[int] | None:
    """Take ``count`` primary keys from the table's sequence ahead of an insert, so rows can
    be named after their ids without a second write; None where there is no sequence."""
    if connection.vendor != "postgresql" or count == 0:
        return None
    table, column = connection.ops.quote_name(model._meta.db_table), model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def insert_ignoring_conflicts(
    objs: Sequence[Model], *, conflict_fields: Sequence[str], conflict_where: Q | None = None
) -> list[int]:
    """INSERT ... ON CONFLICT (conflict_fields) DO NOTHING RETURNING id: the ids of the rows
    really inserted (Django's bulk_create(ignore_conflicts=True) cannot tell which).
    ``conflict_where`` is a partial unique index's condition, as its UniqueConstraint has it."""
    if not objs:
        return []
    model = type(objs[0])
    quote = connection.ops.quote_name
    conflict = ", ".join(quote(model._meta.get_field(name).column) for name in conflict_fields)
    if conflict_where is not None:
        conflict = f"{conflict}) WHERE ({_index_predicate(model, conflict_where)}"
    return _insert(objs, suffix=f"ON CONFLICT ({conflict}) DO NOTHING")


def insert_rows(objs: Sequence[Model]) -> list[int]:
    """A plain INSERT of many rows in one statement on PostgreSQL (chunks elsewhere),
    RETURNING their ids; a unique violation raises IntegrityError as bulk_create's would.
    The rows may carry reserved ids (reserve_ids), so that each knows its own."""
    if not objs:
        return []
    return _insert(objs, suffix="")


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


def _insert(objs: Sequence[Model], *, suffix: str) -> list[int]:
    model = type(objs[0])
    # The primary key goes in too when the rows carry reserved ids (reserve_ids).
    fields = [f for f in model._meta.concrete_fields if not f.primary_key or objs[0].pk is not None]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    pk = quote(model._meta.pk.column)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            select, params, arrays, array_casts = [], [], [], []
            for index, field in enumerate(fields):
                values = _column(field, objs)
                # (The last column goes as an array if no other did: unnest makes the rows.)
                varying = not all(value == values[0] for value in values)
                if not varying and (arrays or index < len(fields) - 1):
                    # The same for every row (attempt, status, empty texts...): one parameter,
                    # not an array of thousands.
                    select.append(f"%s::{_cast_type(field)}")
                    params.append(values[0])
                else:
                    select.append(f"v.c{len(arrays)}")
                    arrays.append(values)
                    array_casts.append(f"%s::{_cast_type(field)}[]")
            names = ", ".join(f"c{i}" for i in range(len(arrays)))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {', '.join(select)} "
                f"FROM unnest({', '.join(array_casts)}) AS v({names}) "
                f"{suffix} RETURNING {pk}",
                params + arrays,
            )
            return [row[0] for row in cursor.fetchall()]
        inserted: list[int] = []
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        for start in range(0, len(objs), SQLITE_INSERT_CHUNK):
            chunk = objs[start : start + SQLITE_INSERT_CHUNK]
            params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in chunk for f in fields]
            values = ", ".join([row] * len(chunk))
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {values} {suffix} RETURNING {pk}", params)
            inserted.extend(r[0] for r in cursor.fetchall())
        return inserted


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
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} AS t SET {quote(field.column)} = v.value "
            f"FROM unnest(%s::{_cast_type(pk_field)}[], %s::{_cast_type(field)}[]) "
            f"AS v(pk, value) WHERE t.{quote(pk_field.column)} = v.pk",
            [
                list(values),
                [field.get_db_prep_save(value, connection) for value in values.values()],
            ],
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
    casts = ", ".join([f"%s::{_cast_type(pk_field)}[]"] + [f"%s::{_cast_type(f)}[]" for f in fields])
    names = ", ".join(["pk"] + [f"c{i}" for i in range(len(fields))])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} AS t SET {assignments} "
            f"FROM unnest({casts}) AS v({names}) WHERE t.{quote(pk_field.column)} = v.pk",
            [[obj.pk for obj in objs], *(_column(f, objs) for f in fields)],
        )
