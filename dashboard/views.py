"""The dashboard's pages: staff only, read-only, every number from dashboard.selectors."""

from __future__ import annotations

import csv

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from calls.budget import budget_state
from web.csv_cells import csv_cell
from web.http import error_response

from . import rollups, selectors


@require_GET
@staff_member_required
def index(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    # Lazily, off the request: a job recomputes the days that are missing or stale.
    refreshing = rollups.daily_stats_refresh_if_stale(now=now)
    glance = selectors.today_at_a_glance(now=now)
    charts, rollup = selectors.dashboard_charts(now=now, glance=glance)
    context = {
        **_admin_context(request),
        "title": "Dashboard",
        "glance": glance,
        "charts": charts,
        "rollup_days": len(rollup.days_before_today),
        "rollup_missing": rollup.missing_before_today,
        "rollup_oldest": rollup.oldest_computation,
        "refresh_minutes": int(rollups.REFRESH_AFTER.total_seconds() // 60),
        "refreshing": refreshing,
        "now": now,
        "time_zone": settings.TIME_ZONE,
        # Calls paused by the monthly budget (calls.budget): said above everything else.
        "budget": budget_state(now=now),
    }
    return render(request, "dashboard/index.html", context)


@require_GET
@staff_member_required
def chart_csv(request: HttpRequest, slug: str) -> HttpResponse:
    now = timezone.now()
    chart = selectors.dashboard_chart(slug, now=now)
    if chart is None:
        return error_response(
            f"no chart named {slug!r}; the charts are: {', '.join(selectors.CHART_SLUGS)}", 404
        )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    day = selectors.dashboard_today(now=now)
    response["Content-Disposition"] = f'attachment; filename="relevel-{slug}-{day.isoformat()}.csv"'
    writer = csv.writer(response)
    writer.writerow([csv_cell(column) for column in chart.columns])
    # Variant names are an operator's text: none may run as a formula in a spreadsheet.
    writer.writerows([("" if cell is None else csv_cell(cell)) for cell in row] for row in chart.rows)
    return response


def _admin_context(request: HttpRequest) -> dict:
    # The admin's own context (site header, "View site", the user tools, dark-mode toggle).
    from django.contrib import admin

    return admin.site.each_context(request)
