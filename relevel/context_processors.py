"""Template context for relevel's operator pages."""

from __future__ import annotations

from django.http import HttpRequest


def operator_banners(request: HttpRequest) -> dict:
    """``operator_banners``: what stops calls right now (calls.banners), for staff only, and
    only when a page shows it (a lazy list: the JSON API and pages without the admin's base
    template never query)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}
    from django.utils.functional import SimpleLazyObject

    from calls.banners import banners_current

    return {"operator_banners": SimpleLazyObject(banners_current)}
