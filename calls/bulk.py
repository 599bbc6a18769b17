"""Set-based writes for the tick, where Django's bulk helpers are the bottleneck.

``bulk_update`` builds one CASE WHEN branch per row (most of a rush tick's time), and a
multi-row INSERT with thousands of placeholders costs more to build and parse than to run.
On PostgreSQL both become one statement with one array parameter per column (``unnest``);
SQLite, the zero-setup default, takes the portable form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model

# Rows per multi-row INSERT on SQLite (it allows 32766 parameters per statement).
SQLITE_INSERT_CHUNK = 500


def insert_ignoring_conflicts(objs: Sequence[Model], *, conflict_fields: Sequence[str]) -> list[int]:
    """INSERT ... ON CONFLICT (conflict_fields) DO NOTHING RETURNING id: the ids of the rows
    really inserted (Django's bulk_create(ignore_conflicts=True) cannot tell which)."""
    if not objs:
        return []
    model = type(objs[0])
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    conflict = ", ".join(quote(model._meta.get_field(name).column) for name in conflict_fields)
    pk = quote(model._meta.pk.column)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = [[f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs] for f in fields]
            casts = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({casts}) "
                f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {pk}",
                arrays,
            )
            return [row[0] for row in cursor.fetchall()]
        inserted: list[int] = []
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        for start in range(0, len(objs), SQLITE_INSERT_CHUNK):
            chunk = objs[start : start + SQLITE_INSERT_CHUNK]
            params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in chunk for f in fields]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(chunk))} "
                f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {pk}",
                params,
            )
            inserted.extend(r[0] for r in cursor.fetchall())
        return inserted


def update_column(model: type[Model], field_name: str, values: dict[Any, Any]) -> None:
    """Set one column to a per-row value, {pk: value}, in one statement."""
    if not values:
        return
    field = model._meta.get_field(field_name)
    if connection.vendor != "postgresql":
        objs = [model(pk=pk, **{field_name: value}) for pk, value in values.items()]
        model._base_manager.bulk_update(objs, [field_name])
        return
    quote = connection.ops.quote_name
    pk_field = model._meta.pk
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} AS t SET {quote(field.column)} = v.value "
            f"FROM unnest(%s::{pk_field.db_type(connection)}[], %s::{field.db_type(connection)}[]) "
            f"AS v(pk, value) WHERE t.{quote(pk_field.column)} = v.pk",
            [
                list(values),
                [field.get_db_prep_save(value, connection) for value in values.values()],
            ],
        )
