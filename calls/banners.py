"""What every operator page says at its top while calling is stopped (a pause today; a
budget stop, or anything else that stops calls for everyone, later): a list of banners.

Each source is a function returning a Banner or None, listed in BANNER_SOURCES; the
context processor relevel.context_processors.operator_banners shows them on every admin,
dashboard and queue page (templates/admin/base_site.html). A new stop adds a source here,
not a template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.urls import reverse

from web.display import admin_time

from .models import CallPolicy


@dataclass(frozen=True)
class Banner:
    slug: str  # the element's id: banner-<slug>
    title: str  # "Calls are paused"
    detail: str  # who and when, what it means
    since: datetime | None = None  # shown in the admin's one time format
    # The action that ends the stop: a POST to action_url (a button), shown to operators with
    # action_permission; everyone else gets a link to where it is decided (link_url).
    action_url: str = ""
    action_label: str = ""
    action_permission: str = ""
    link_url: str = ""
    link_label: str = ""

    @property
    def since_display(self) -> str:
        return admin_time(self.since) if self.since else ""


def pause_banner() -> Banner | None:
    """Calls paused (the call policy): who paused, when, and how to resume. One primary-key
    read, not the policy's per-process cache: the page shows what is stored now."""
    row = CallPolicy.objects.filter(pk=1, paused=True).values("paused_at", "paused_by").first()
    if row is None:
        return None
    who = f" by {row['paused_by']}" if row["paused_by"] else ""
    return Banner(
        slug="paused",
        title="Calls are paused",
        detail=f"Paused{who}: nobody is called, and daily calls whose window closes meanwhile are "
        "recorded missed.",
        since=row["paused_at"],
        action_url=reverse("admin:calls_callpolicy_resume"),
        action_label="Resume calls",
        action_permission="calls.change_callpolicy",
        link_url=reverse("admin:calls_callpolicy_change", args=[1]),
        link_label="Call policy",
    )


BANNER_SOURCES: list[Callable[[], Banner | None]] = [pause_banner]


def banners_current() -> list[Banner]:
    """Every banner that applies now, in BANNER_SOURCES' order."""
    return [banner for source in BANNER_SOURCES if (banner := source()) is not None]
